//! What happens before dockerd can start: building its command line and
//! environment, clearing stale state a previous dockerd left behind, docker:dind's TLS
//! contract (certificates and dockerd's TCP listener), and the data-root's tmpfs.
pub mod launch;
pub mod openssl;
pub mod stale;
pub mod storage;
pub mod tls;
