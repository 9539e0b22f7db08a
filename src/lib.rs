//! dind-init as a library: the binary in `main.rs` is a thin shell around these
//! modules, and the integration tests in `tests/` run that binary.
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod control;
pub mod diagnose;
pub mod dockerd;
pub mod environment;
pub mod error;
pub mod event_loop;
pub mod limits;
pub mod log;
pub mod netlink;
pub mod network;
pub mod output;
pub mod poller;
pub mod preflight;
pub mod probe;
pub mod readiness;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod status;
pub mod supervisor;
pub mod toml_subset;
