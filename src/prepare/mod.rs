//! What happens before dockerd can start: finding out where the init runs
//! (`environment`), preparing cgroups (`cgroup`), docker:dind's TLS contract
//! (`tls`, certificates made with the image's `openssl`, and dockerd's TCP listener),
//! the data root's tmpfs (`storage`), the uplink's MTU for dockerd (`mtu`), building dockerd's command line and environment
//! from all of these (`launch`), and clearing stale state a previous dockerd left
//! behind (`stale`).
pub mod args;
pub mod cgroup;
pub mod environment;
pub mod launch;
pub mod mtu;
pub mod network;
pub mod stale;
pub mod storage;
pub mod tls;
