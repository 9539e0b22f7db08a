//! The short-lived clients of a running init: `dind-init probe` and
//! `dind-init status`.
pub mod probe;
