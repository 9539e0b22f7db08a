//! dockerd's process as the event loop holds it: starting it (through the one
//! spawn helper, with its output on two non-blocking pipes registered in the
//! poller), reading those pipes into lines, and holding back a restart while a
//! containerd left by the previous dockerd is still there.
//!
//! The supervisor decides *when*; this module does the *how*. Nothing here waits
//! for a process (the reaper does) or blocks.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::event::epoll::EventFlags;
use rustix::io::Errno;

use crate::prepare::launch::Launch;
use crate::run::output::{LineSplitter, Stream, MAX_LINE};
use crate::sys::poller::{Registry, Token, Watched};
use crate::sys::spawn::{self, Input, Output, Spec};

/// dockerd output read from one pipe per loop turn at most, so that a chatty
/// dockerd never holds up signals, reaping or clients.
pub const MAX_READ_PER_TURN: usize = 64 * 1024;

/// What is read from one pipe at dockerd's exit at most (a containerd it left could
/// keep writing into the pipe).
pub const MAX_READ_AT_EXIT: usize = 1024 * 1024;

/// How long a containerd left by a killed dockerd gets after SIGTERM.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// After SIGKILL, how long to wait for the leftover containerd before starting
/// dockerd anyway.
pub const LEFTOVER_KILL_GRACE: Duration = Duration::from_secs(1);

/// Why dockerd could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnFailure {
    pub reason: String,
    /// Exec errors no restart can fix.
    pub permanent: bool,
}

/// A running dockerd's output pipes and what was read from them.
#[derive(Debug)]
pub struct Pipes {
    stdout: Option<Watched<OwnedFd>>,
    stderr: Option<Watched<OwnedFd>>,
    out: LineSplitter,
    err: LineSplitter,
}

/// Starts dockerd: its own process group, clean signals, the init's environment
/// minus any inherited NOTIFY_SOCKET, plus `launch.env`; stdin /dev/null, stdout
/// and stderr pipes watched by the poller.
pub fn spawn(launch: &Launch, registry: &Registry) -> Result<(i32, Pipes), SpawnFailure> {
    let args: Vec<OsString> = launch.args.iter().map(OsString::from).collect();
    let env: Vec<(OsString, OsString)> = launch
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let spawned = spawn::spawn(&Spec {
        program: launch.program.as_ref(),
        args: &args,
        env: &env,
        stdin: Input::Null,
        stdout: Output::Pipe,
        stderr: Output::Pipe,
        take_terminal: false,
    })
    .map_err(|e| spawn_failure(&launch.program, &e))?;
    let pid = spawned.pid;
    // A dockerd whose output the loop cannot watch is not kept: it is killed (the
    // reaper collects it) and the start counts as failed, to be retried with the
    // backoff.
    let abandon = |what: &str, e: io::Error| {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        SpawnFailure {
            reason: format!("could not watch dockerd's {what}: {e}"),
            permanent: false,
        }
    };
    let watch = |fd: Option<OwnedFd>, token: Token| match fd {
        Some(fd) => Watched::new(registry, fd, token, EventFlags::IN)
            .map(Some)
            .map_err(|(_, e)| e),
        None => Ok(None),
    };
    let stdout = watch(spawned.stdout, Token::Stdout).map_err(|e| abandon("stdout", e))?;
    let stderr = watch(spawned.stderr, Token::Stderr).map_err(|e| abandon("stderr", e))?;
    Ok((
        pid,
        Pipes {
            stdout,
            stderr,
            out: LineSplitter::new(MAX_LINE),
            err: LineSplitter::new(MAX_LINE),
        },
    ))
}

/// Classifies an exec error: not found and not executable are permanent.
pub fn spawn_failure(program: &str, e: &io::Error) -> SpawnFailure {
    match e.kind() {
        io::ErrorKind::NotFound => SpawnFailure {
            reason: format!(
                "dockerd not found: install Docker in the image (looked for `{program}`)"
            ),
            permanent: true,
        },
        io::ErrorKind::PermissionDenied => SpawnFailure {
            reason: format!("dockerd cannot be executed: `{program}`: {e}"),
            permanent: true,
        },
        _ if e.raw_os_error() == Some(Errno::NOEXEC.raw_os_error()) => SpawnFailure {
            reason: format!("dockerd cannot be executed: `{program}`: {e}"),
            permanent: true,
        },
        _ => SpawnFailure {
            reason: format!("could not start dockerd `{program}`: {e}"),
            permanent: false,
        },
    }
}

impl Pipes {
    /// Reads what dockerd wrote on `stream` (at most [`MAX_READ_PER_TURN`] bytes)
    /// and returns the complete lines; at EOF the pipe is closed and an
    /// unterminated last line flushed.
    pub fn read(&mut self, stream: Stream) -> Vec<String> {
        let (slot, splitter) = match stream {
            Stream::Stdout => (&mut self.stdout, &mut self.out),
            Stream::Stderr => (&mut self.stderr, &mut self.err),
        };
        let Some(fd) = slot.as_ref() else {
            return Vec::new();
        };
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        let mut eof = false;
        let mut read_bytes = 0;
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    read_bytes += n;
                    lines.extend(splitter.feed(buf.get(..n).unwrap_or(&[])));
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break, // drained for now
                Err(_) => {
                    eof = true; // as good as closed
                    break;
                }
            }
            if read_bytes >= MAX_READ_PER_TURN {
                break; // let the loop turn; the rest is read on the next one
            }
        }
        if eof {
            lines.extend(splitter.finish());
            *slot = None;
        }
        lines
    }

    /// At dockerd's exit: everything left in `stream`'s pipe (at most
    /// [`MAX_READ_AT_EXIT`]), then the unterminated last line, if any.
    pub fn read_rest(&mut self, stream: Stream) -> Vec<String> {
        let mut lines = Vec::new();
        let mut read = 0;
        while read < MAX_READ_AT_EXIT {
            let before = lines.len();
            let open = match stream {
                Stream::Stdout => self.stdout.is_some(),
                Stream::Stderr => self.stderr.is_some(),
            };
            if !open {
                break;
            }
            let got = self.read(stream);
            let done = got.is_empty();
            lines.extend(got);
            read += MAX_READ_PER_TURN;
            if done && lines.len() == before {
                break;
            }
        }
        let splitter = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        lines.extend(splitter.finish());
        lines
    }

    /// Lines cut at [`MAX_LINE`] so far, on both streams.
    pub fn truncated(&self) -> u64 {
        self.out.truncated() + self.err.truncated()
    }
}

/// A restart held back until a containerd left by the previous dockerd is gone.
#[derive(Debug, Clone)]
pub struct Leftovers {
    pids: Vec<i32>,
    kill_at: Instant,
    give_up_at: Instant,
    killed: bool,
}

/// What to do about the leftovers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeftoverStep {
    /// SIGKILL these: the grace after SIGTERM ran out.
    Kill(Vec<i32>),
    /// They did not exit after SIGKILL either: start dockerd anyway.
    GiveUp(Vec<i32>),
}

impl Leftovers {
    /// `pids` were just sent SIGTERM.
    pub fn new(pids: Vec<i32>, now: Instant) -> Self {
        Leftovers {
            pids,
            kill_at: now + LEFTOVER_GRACE,
            give_up_at: now + LEFTOVER_GRACE + LEFTOVER_KILL_GRACE,
            killed: false,
        }
    }

    /// `pid` was reaped. Returns true once all are gone.
    pub fn reaped(&mut self, pid: i32) -> bool {
        self.pids.retain(|p| *p != pid);
        self.pids.is_empty()
    }

    pub fn deadline(&self) -> Instant {
        if self.killed {
            self.give_up_at
        } else {
            self.kill_at
        }
    }

    pub fn on_time(&mut self, now: Instant) -> Option<LeftoverStep> {
        if now >= self.give_up_at {
            return Some(LeftoverStep::GiveUp(std::mem::take(&mut self.pids)));
        }
        if now >= self.kill_at && !self.killed {
            self.killed = true;
            return Some(LeftoverStep::Kill(self.pids.clone()));
        }
        None
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn spawn_failures_are_classified() {
        let missing = io::Error::from_raw_os_error(Errno::NOENT.raw_os_error());
        let f = spawn_failure("dockerd", &missing);
        assert!(
            f.permanent
                && f.reason
                    .starts_with("dockerd not found: install Docker in the image"),
            "{f:?}"
        );
        let denied = io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error());
        assert!(spawn_failure("dockerd", &denied).permanent);
        let noexec = io::Error::from_raw_os_error(Errno::NOEXEC.raw_os_error());
        assert!(spawn_failure("dockerd", &noexec).permanent);
        let again = io::Error::from_raw_os_error(Errno::AGAIN.raw_os_error());
        assert!(!spawn_failure("dockerd", &again).permanent);
    }

    #[test]
    fn leftovers_are_killed_then_given_up_on() {
        let t0 = Instant::now();
        let mut l = Leftovers::new(vec![10, 11], t0);
        assert_eq!(l.deadline(), t0 + LEFTOVER_GRACE);
        assert_eq!(l.on_time(t0), None);
        assert_eq!(
            l.on_time(t0 + LEFTOVER_GRACE),
            Some(LeftoverStep::Kill(vec![10, 11]))
        );
        assert_eq!(l.on_time(t0 + LEFTOVER_GRACE), None);
        assert!(!l.reaped(10));
        assert_eq!(l.deadline(), t0 + LEFTOVER_GRACE + LEFTOVER_KILL_GRACE);
        assert_eq!(
            l.on_time(t0 + LEFTOVER_GRACE + LEFTOVER_KILL_GRACE),
            Some(LeftoverStep::GiveUp(vec![11]))
        );
        let mut l = Leftovers::new(vec![10], t0);
        assert!(l.reaped(10));
    }
}
