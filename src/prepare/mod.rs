//! What happens before dockerd can start: finding out where the init runs
//! (`environment`), preparing cgroups (`cgroup`), building dockerd's command line and
//! environment (`launch`), and clearing stale state a previous dockerd left behind
//! (`stale`).
pub mod cgroup;
pub mod environment;
pub mod launch;
pub mod stale;
