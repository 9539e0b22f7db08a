//! Reaping and signalling the init's descendants.
//!
//! This module is the loop's one caller of wait(2) for any child (others wait only
//! for a pid of their own: `sys::command` at boot and in `check`, and musl's
//! posix_spawn for a child whose exec failed), and it reaps until nothing is left, so one
//! SIGCHLD (signals coalesce) clears every zombie, whoever started it: orphans are
//! re-parented to PID 1, or to the init as a child subreaper (PR_SET_CHILD_SUBREAPER,
//! prctl(2)). rustix's `waitpid(None, ..)` would wait on the caller's process group
//! only; `wait` is wait(-1) semantics. See wait(2).
//!
//! "Every remaining process" (SPEC §9) means the init's own descendants. As PID 1 of
//! its pid namespace, `kill(-1, sig)` reaches exactly those (the kernel confines it
//! to the namespace and spares the caller). Not as PID 1 it would reach every process
//! the user may signal on the machine, so there the descendants are found by
//! walking /proc (each process's parent, from `/proc/<pid>/stat`) and signalled one
//! by one.

use std::collections::{HashMap, HashSet};
use std::fmt;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::process::{wait, WaitOptions};
use tracing::debug;

use crate::sys::procfs;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// From wait(2)'s status of a child that ended (the reaper and `sys::command`).
    pub fn from_wait(status: rustix::process::WaitStatus) -> ExitStatus {
        match status.terminating_signal() {
            Some(sig) => ExitStatus::Signal(sig),
            None => ExitStatus::Code(status.exit_status().unwrap_or(0)),
        }
    }

    /// The code a shell would report: the exit code, or 128+N for signal N.
    pub fn as_exit_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {}", crate::sys::signals::name(*s)),
        }
    }
}

/// Reaps every child that has exited, calling `on_exit` with each pid and status
/// as it is reaped (no list is built: a backlog of 20,000 orphans costs one
/// wait4(2) each and no memory). Never blocks. Returns whether any child (running
/// or stopped) remains.
pub fn reap_each(mut on_exit: impl FnMut(i32, ExitStatus)) -> bool {
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) => {
                on_exit(pid.as_raw_nonzero().get(), ExitStatus::from_wait(status));
            }
            // Children exist, none has exited yet.
            Ok(None) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            // ECHILD: no children at all.
            Err(_) => return false,
        }
    }
}

/// Sends `sig` to every remaining descendant of the init. Returns how many were
/// signalled (as PID 1: 1 if any process was found, since kill(-1) does not count).
pub fn signal_remaining(sig: Signal, pid1: bool) -> usize {
    if pid1 {
        // The kernel limits kill(-1) to this pid namespace and skips the caller.
        match kill(Pid::from_raw(-1), sig) {
            Ok(()) => 1,
            Err(_) => 0, // ESRCH: nobody left
        }
    } else {
        let mut count = 0;
        for pid in descendants(std::process::id() as i32) {
            if kill(Pid::from_raw(pid), sig).is_ok() {
                count += 1;
            }
        }
        if count > 0 {
            debug!(signal = sig.as_str(), count, "signalled descendants");
        }
        count
    }
}

/// Every live descendant of `root`, found from the parent pids in /proc/*/stat.
/// A process may exit or fork while this runs; callers repeat the signal in the
/// next shutdown stage, so a snapshot is enough.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in procfs::pids() {
        if let Some(stat) = procfs::stat(pid) {
            children.entry(stat.ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Code(0).as_exit_code(), 0);
        assert_eq!(ExitStatus::Code(255).as_exit_code(), 255);
        assert_eq!(ExitStatus::Signal(15).as_exit_code(), 143);
        assert_eq!(ExitStatus::Signal(9).as_exit_code(), 137);
        assert_eq!(ExitStatus::Signal(9).to_string(), "signal SIGKILL");
    }
}
