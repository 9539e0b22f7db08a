//! Thin, safe wrappers around what the init asks of the kernel: signals, starting
//! and reaping processes, epoll, and reading /proc. No policy lives here.
pub mod command;
pub mod exec_header;
pub mod mounts;
pub mod netlink;
pub mod poller;
pub mod procfs;
pub mod reaper;
pub mod signals;
pub mod spawn;
pub mod unix_socket;
