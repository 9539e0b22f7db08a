//! The status socket (SPEC §8): its protocol, its transport, and the status
//! document it serves (also the ready file's content and `dind-init status`), and
//! the Prometheus metrics.
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod status;
