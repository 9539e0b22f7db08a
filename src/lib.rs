//! dind-init as a library: the binary in `main.rs` is a thin shell around these modules.
pub mod config;
