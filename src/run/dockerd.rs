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
    let spec = Spec {
        program: launch.program.as_ref(),
        args: &args,
        env: &env,
        stdin: Input::Null,
        stdout: Output::Pipe,
        stderr: Output::Pipe,
        take_terminal: false,
    };
    let spawned = spawn::spawn(&spec).map_err(|e| {
        // The file exec was given, when there is one (a bare name not found in the
        // PATH, or a path to nothing, is "not found").
        let file = spawn::resolved(&spec).ok().filter(|p| p.is_file());
        spawn_failure(&launch.program, file.as_deref(), &e)
    })?;
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

/// Classifies an exec error: not found and not executable are permanent. `resolved`
/// is the file exec was given, when there is one: then ENOENT means its loader or
/// `#!` interpreter is missing, and its header says which (`sys::exec_header`).
pub fn spawn_failure(
    program: &str,
    resolved: Option<&std::path::Path>,
    e: &io::Error,
) -> SpawnFailure {
    let unrunnable = matches!(e.kind(), io::ErrorKind::NotFound)
        || e.raw_os_error() == Some(Errno::NOEXEC.raw_os_error());
    if let Some(path) = resolved.filter(|_| unrunnable) {
        let why = crate::sys::exec_header::inspect(path)
            .reason()
            .unwrap_or_else(|| e.to_string() + " (a missing interpreter or loader?)");
        return SpawnFailure {
            reason: format!("dockerd cannot be executed: `{}`: {why}", path.display()),
            permanent: true,
        };
    }
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
        self.read_available(stream, MAX_READ_PER_TURN)
    }

    /// At dockerd's exit: everything left in `stream`'s pipe (at most
    /// [`MAX_READ_AT_EXIT`]), then the unterminated last line, if any.
    pub fn read_rest(&mut self, stream: Stream) -> Vec<String> {
        let mut lines = self.read_available(stream, MAX_READ_AT_EXIT);
        let splitter = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        lines.extend(splitter.finish());
        lines
    }

    /// Reads `stream` until its pipe is empty for now (EAGAIN), closed, or `cap`
    /// bytes were read, and returns the complete lines. At EOF (or an error, as good
    /// as one) the pipe is closed and an unterminated last line flushed.
    fn read_available(&mut self, stream: Stream, cap: usize) -> Vec<String> {
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
        let mut left = cap;
        while left > 0 {
            let want = buf.len().min(left);
            match rustix::io::read(fd, buf.get_mut(..want).unwrap_or_default()) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    left = left.saturating_sub(n);
                    lines.extend(splitter.feed(buf.get(..n).unwrap_or_default()));
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => break, // drained for now
                Err(_) => {
                    eof = true; // as good as closed
                    break;
                }
            }
        }
        // At the cap the rest stays in the pipe: for `read`, until the next turn.
        if eof {
            lines.extend(splitter.finish());
            *slot = None;
        }
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
        let f = spawn_failure("dockerd", None, &missing);
        assert!(
            f.permanent
                && f.reason
                    .starts_with("dockerd not found: install Docker in the image"),
            "{f:?}"
        );
        let denied = io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error());
        assert!(spawn_failure("dockerd", None, &denied).permanent);
        let noexec = io::Error::from_raw_os_error(Errno::NOEXEC.raw_os_error());
        assert!(spawn_failure("dockerd", None, &noexec).permanent);
        let again = io::Error::from_raw_os_error(Errno::AGAIN.raw_os_error());
        assert!(!spawn_failure("dockerd", None, &again).permanent);
        // ENOENT for a file that is there: its interpreter is missing, and the
        // reason says so instead of "not found".
        let dir = std::env::temp_dir().join(format!("dind-init-badinterp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("dockerd");
        std::fs::write(&script, "#!/nonexistent/interp\n").unwrap();
        let f = spawn_failure("dockerd", Some(&script), &missing);
        assert!(
            f.permanent
                && f.reason.starts_with("dockerd cannot be executed: `")
                && f.reason
                    .contains("/nonexistent/interp, which does not exist"),
            "{f:?}"
        );
        std::fs::write(&script, "no format at all").unwrap();
        let f = spawn_failure("dockerd", Some(&script), &noexec);
        assert!(
            f.reason.contains("neither an ELF binary nor a #! script"),
            "{f:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A pipe holding `text` (room for 256 KiB), read as dockerd's stdout; the write
    /// end is returned so that the pipe stays open, as a containerd left by dockerd
    /// may keep it.
    fn pipes_holding(text: &[u8], registry: &Registry) -> (Pipes, OwnedFd) {
        let (r, w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::NONBLOCK | rustix::pipe::PipeFlags::CLOEXEC,
        )
        .unwrap();
        rustix::pipe::fcntl_setpipe_size(&w, 256 * 1024).unwrap();
        let mut rest = text;
        while !rest.is_empty() {
            let n = rustix::io::write(&w, rest).unwrap();
            rest = &rest[n..];
        }
        let stdout = Watched::new(registry, r, Token::Stdout, EventFlags::IN).unwrap();
        let pipes = Pipes {
            stdout: Some(stdout),
            stderr: None,
            out: LineSplitter::new(MAX_LINE),
            err: LineSplitter::new(MAX_LINE),
        };
        (pipes, w)
    }

    #[test]
    fn read_takes_a_turn_s_worth_and_read_rest_the_rest() {
        let poller = crate::sys::poller::Poller::new().unwrap();
        let line = format!("{}\n", "x".repeat(999));
        let text = format!("{}tail", line.repeat(100));
        let (mut pipes, _w) = pipes_holding(text.as_bytes(), poller.registry());
        // 64 KiB: 65 lines of 1000 bytes and the start of the 66th.
        assert_eq!(pipes.read(Stream::Stdout).len(), 65);
        let rest = pipes.read_rest(Stream::Stdout);
        assert_eq!(rest.len(), 36);
        assert_eq!(rest.last().map(String::as_str), Some("tail"));
        // Drained, not closed: the writer still holds it.
        assert!(pipes.stdout.is_some());
        assert_eq!(pipes.read_rest(Stream::Stdout), Vec::<String>::new());
    }

    #[test]
    fn read_rest_reads_past_a_long_line_it_discards() {
        let poller = crate::sys::poller::Poller::new().unwrap();
        // 200 KiB without a newline: cut at MAX_LINE, the rest discarded, for more
        // than a turn's worth of reads that give no line.
        let text = format!("{}\nlast\n", "y".repeat(200 * 1024));
        let (mut pipes, w) = pipes_holding(text.as_bytes(), poller.registry());
        let lines = pipes.read_rest(Stream::Stdout);
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(lines[1], "last");
        // Closed by the writer: EOF closes our end.
        drop(w);
        assert_eq!(pipes.read_rest(Stream::Stdout), Vec::<String>::new());
        assert!(pipes.stdout.is_none());
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
