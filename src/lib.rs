//! dind-init as a library: the binary in `main.rs` is a thin shell around these
//! modules, and the integration tests in `tests/` run that binary. The README's
//! "Architecture" section shows how the parts fit together.
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod error;
pub mod log;
pub mod prepare;
pub mod run;
pub mod spelling;
pub mod sys;
