//! What happens before dockerd can start: building its command line and
//! environment, and clearing stale state a previous dockerd left behind.
pub mod launch;
pub mod stale;
