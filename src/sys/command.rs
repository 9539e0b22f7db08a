//! Running a short command to its end, blocking: `openssl` for the TLS contract and
//! `dockerd --version` at boot, `iptables -C` and `runc --version` in `check`. One child
//! at a time, started like every other child of the init (`sys::spawn`: its own
//! process group, an empty signal mask, no NOTIFY_SOCKET), its stdout and stderr read
//! through pipes, bounded by a deadline, and reaped by its pid before this returns.
//!
//! This blocks, which is right only at boot and in `check`: the event loop has not
//! started (or never will), dockerd is not running, and signals that arrive meanwhile
//! stay pending in the signalfd until the loop reads them. Nothing else waits here, and
//! the reaper (which waits for any child) does not run yet, so waiting for this one pid
//! takes no one else's exit. The running init's helpers are children the loop watches
//! instead (`run/helper.rs`).
//!
//! It does not decide what to run or what an answer means: its callers do.
//! See [poll(2)](https://man7.org/linux/man-pages/man2/poll.2.html) and
//! [waitpid(2)](https://man7.org/linux/man-pages/man2/waitpid.2.html).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{waitpid, WaitOptions};

use crate::sys::reaper::ExitStatus;
use crate::sys::spawn::{self, Input, Output, Spec};

/// At most this much of each output stream is kept (the rest is read and dropped), so
/// a misbehaving program cannot make PID 1 allocate without bound.
const MAX_OUTPUT: usize = 64 * 1024;

/// How a command ended, with what it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Why a command gave no result.
#[derive(Debug)]
pub enum Failure {
    /// It could not be started (ENOENT, EACCES, ...).
    Spawn(io::Error),
    /// It ran past the deadline and was killed (and reaped).
    Timeout(Duration),
    /// Watching or reaping it failed.
    Wait(io::Error),
}

/// Runs `program args` to completion, at most `timeout`.
pub fn run(program: &OsStr, args: &[OsString], timeout: Duration) -> Result<Finished, Failure> {
    let spec = Spec {
        program,
        args,
        env: &[],
        stdin: Input::Null,
        stdout: Output::Pipe,
        stderr: Output::Pipe,
        take_terminal: false,
    };
    let child = spawn::spawn(&spec).map_err(Failure::Spawn)?;
    let deadline = Instant::now() + timeout;
    let mut streams = [(child.stdout, Vec::new()), (child.stderr, Vec::new())];
    let read = drain(&mut streams, deadline);
    // Past this point the pid is ours to reap, whatever happened to the pipes.
    let status = match read {
        Ok(()) => wait_until(child.pid, deadline),
        Err(e) => Err(Failure::Wait(e)),
    };
    let status = match status {
        Ok(Some(st)) => st,
        Ok(None) => {
            kill_and_reap(child.pid);
            return Err(Failure::Timeout(timeout));
        }
        Err(e) => {
            kill_and_reap(child.pid);
            return Err(e);
        }
    };
    let [(_, out), (_, err)] = streams;
    Ok(Finished {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// Reads both pipes until each is at EOF (the child and whatever inherited them closed
/// them) or the deadline passes. The read ends are non-blocking (`sys::spawn`).
fn drain(streams: &mut [(Option<OwnedFd>, Vec<u8>); 2], deadline: Instant) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].0.is_some())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let mut fds: Vec<PollFd<'_>> = open
            .iter()
            .filter_map(|&i| streams[i].0.as_ref())
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        drop(fds);
        for i in open {
            let (fd_slot, text) = &mut streams[i];
            let Some(fd) = fd_slot.as_ref() else { continue };
            loop {
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) => {
                        *fd_slot = None;
                        break;
                    }
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(text.len());
                        text.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Waits for `pid` to exit until `deadline`; `None` when it has not by then. The pipes
/// are closed by now, so a well-behaved child is gone or about to be: the checks are
/// a few milliseconds apart.
fn wait_until(pid: i32, deadline: Instant) -> Result<Option<ExitStatus>, Failure> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| Failure::Wait(io::Error::from(io::ErrorKind::InvalidInput)))?;
    loop {
        match waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some((_, status))) => return Ok(Some(ExitStatus::from_wait(status))),
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Failure::Wait(e.into())),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        // A short sleep in poll(2) with no fds: nothing else is due at boot.
        let nap = Timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000,
        };
        let _ = poll(&mut [], Some(&nap));
    }
}

/// SIGKILL to the child's process group (it leads one: `sys::spawn`), then reaps it.
/// A SIGKILLed child exits without delay; the wait is blocking but cannot hang.
fn kill_and_reap(pid: i32) {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        loop {
            match waitpid(Some(pid), WaitOptions::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                _ => return,
            }
        }
    }
}
