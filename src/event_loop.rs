//! The one event loop of the run mode, and the shutdown sequence of SPEC §9.
//!
//! Each turn builds the poll set, polls with the timeout set to the next deadline
//! (none when idle: an idle init never wakes), and dispatches what arrived. There
//! are no sleeps and no timer threads. Signals arrive through the signalfd
//! (`signals.rs`); children are reaped by `reaper.rs` on every SIGCHLD.
//!
//! Shutdown runs in three stages, whatever started it (a signal, or COMMAND's exit):
//! 1. `Main`: the shutdown signal goes to COMMAND's process group; wait for
//!    COMMAND, up to `dockerd.stop_timeout` from the start of the shutdown, then
//!    SIGKILL its group.
//! 2. `Remaining`: SIGTERM to every remaining descendant (so a grandchild that traps
//!    TERM runs its trap), then wait until none is left, up to the same budget (at
//!    least [`MIN_REMAINING_GRACE`]).
//! 3. `Killed`: SIGKILL to whatever is still there; reap; exit.
//!
//! The init exits only through [`Init::run`] returning; nothing in the loop ends
//! the process, and every error is logged once and the loop goes on.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, error, info, warn};

use crate::reaper::{self, ExitStatus};
use crate::signals::{self, Disposition};
use crate::spawn::{self, Child};

/// Stage 2 gets at least this long after SIGTERM before SIGKILL, even when the stop
/// budget is already spent (a trap needs a moment to run).
pub const MIN_REMAINING_GRACE: Duration = Duration::from_millis(500);

/// After SIGKILL to everyone, how long to wait for the last reaps before exiting
/// anyway (a process in uninterruptible sleep cannot be reaped until it wakes).
pub const AFTER_KILL_GRACE: Duration = Duration::from_secs(1);

/// Settings of the run mode that the loop needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether the init is PID 1 of its pid namespace (else a child subreaper).
    pub pid1: bool,
    /// The budget of the whole stop (`dockerd.stop_timeout`).
    pub stop_timeout: Duration,
    /// COMMAND and its arguments; empty when there is none.
    pub command: Vec<OsString>,
}

/// COMMAND's life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// No COMMAND was given.
    None,
    /// Not started yet.
    Pending(Vec<OsString>),
    Running(Child),
    /// It exited; the init's exit code follows from this.
    Exited(ExitStatus),
    /// It could not be started; the init exits with this code (127/126).
    SpawnFailed(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Main,
    Remaining,
    Killed,
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Shutdown {
    started: Instant,
    stage: Stage,
    deadline: Instant,
}

/// The run mode's state.
#[derive(Debug)]
pub struct Init {
    settings: Settings,
    signals: SignalFd,
    command: Command,
    shutdown: Option<Shutdown>,
    /// Whether the last reap found children still alive.
    children_left: bool,
    /// Orphans reaped so far (not COMMAND).
    orphans_reaped: u64,
}

impl Init {
    /// Sets up the loop; `signals` must already be blocked and the fd open.
    pub fn new(settings: Settings, signals: SignalFd) -> Self {
        let command = if settings.command.is_empty() {
            Command::None
        } else {
            Command::Pending(settings.command.clone())
        };
        Init {
            settings,
            signals,
            command,
            shutdown: None,
            children_left: false,
            orphans_reaped: 0,
        }
    }

    /// Runs until the shutdown is complete; returns the init's exit code.
    pub fn run(mut self) -> i32 {
        self.start_command();
        loop {
            let now = Instant::now();
            self.advance_shutdown(now);
            if matches!(
                self.shutdown,
                Some(Shutdown {
                    stage: Stage::Done,
                    ..
                })
            ) {
                return self.exit_code();
            }
            let timeout = self.next_deadline().map(|d| {
                let left = d.saturating_duration_since(now);
                Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                }
            });
            let mut fds = [PollFd::new(&self.signals, PollFlags::IN)];
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // EINVAL/ENOMEM cannot be fixed here; the deadlines still apply.
                    error!(error = %e, "poll failed");
                    continue;
                }
            }
            if fds[0].revents().contains(PollFlags::IN) {
                for signo in signals::drain(&self.signals) {
                    self.on_signal(signo);
                }
            }
        }
    }

    fn start_command(&mut self) {
        let Command::Pending(argv) = &self.command else {
            return;
        };
        match spawn::spawn_command(argv) {
            Ok(child) => {
                info!(pid = child.pid, command = ?argv, "started COMMAND");
                self.command = Command::Running(child);
            }
            Err(e) => {
                error!(error = %e, "COMMAND did not start; stopping");
                self.command = Command::SpawnFailed(e.exit_code());
                self.begin_shutdown(Instant::now());
            }
        }
    }

    fn on_signal(&mut self, signo: i32) {
        let Some((sig, disposition)) = signals::disposition(signo) else {
            debug!(signal = %signals::name(signo), "ignoring unexpected signal");
            return;
        };
        match disposition {
            Disposition::Reap => self.reap(),
            Disposition::Shutdown => {
                info!(signal = sig.as_str(), "shutdown requested");
                self.signal_command(sig);
                self.begin_shutdown(Instant::now());
            }
            // No dockerd yet in this loop: SIGHUP goes to COMMAND.
            Disposition::Reload | Disposition::Forward => {
                debug!(signal = sig.as_str(), "forwarding signal to COMMAND");
                self.signal_command(sig);
            }
        }
    }

    /// Sends `sig` to COMMAND's process group, if COMMAND runs.
    fn signal_command(&self, sig: Signal) {
        if let Command::Running(child) = self.command {
            // ESRCH: the group is gone (COMMAND exited, its SIGCHLD not read yet).
            if let Err(e) = killpg(Pid::from_raw(child.pid), sig) {
                debug!(pid = child.pid, signal = sig.as_str(), error = %e, "could not signal COMMAND's group");
            }
        }
    }

    fn reap(&mut self) {
        let reaped = reaper::reap_all();
        self.children_left = reaped.children_left;
        for (pid, status) in reaped.exits {
            match self.command {
                Command::Running(child) if child.pid == pid => {
                    info!(pid, status = %status, "COMMAND exited");
                    self.command = Command::Exited(status);
                    self.begin_shutdown(Instant::now());
                }
                _ => {
                    self.orphans_reaped += 1;
                    debug!(pid, status = %status, "reaped");
                }
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown.is_none() {
            self.shutdown = Some(Shutdown {
                started: now,
                stage: Stage::Main,
                deadline: now + self.settings.stop_timeout,
            });
        }
    }

    /// Whether a main process (COMMAND; later dockerd) is still running.
    fn main_running(&self) -> bool {
        matches!(self.command, Command::Running(_))
    }

    /// Moves the shutdown through its stages as far as it can go right now.
    fn advance_shutdown(&mut self, now: Instant) {
        let Some(mut sd) = self.shutdown else {
            return;
        };
        loop {
            let before = sd.stage;
            match sd.stage {
                Stage::Main => {
                    if self.main_running() && now >= sd.deadline {
                        warn!(
                            timeout = ?self.settings.stop_timeout,
                            "COMMAND still running after the stop timeout; sending SIGKILL"
                        );
                        self.signal_command(Signal::SIGKILL);
                    }
                    if !self.main_running() || now >= sd.deadline {
                        sd.stage = Stage::Remaining;
                        sd.deadline = (sd.started + self.settings.stop_timeout)
                            .max(now + MIN_REMAINING_GRACE);
                        let n = reaper::signal_remaining(Signal::SIGTERM, self.settings.pid1);
                        debug!(signalled = n, "sent SIGTERM to the remaining processes");
                        self.reap();
                    }
                }
                Stage::Remaining => {
                    if !self.children_left {
                        sd.stage = Stage::Done;
                    } else if now >= sd.deadline {
                        let n = reaper::signal_remaining(Signal::SIGKILL, self.settings.pid1);
                        warn!(
                            signalled = n,
                            "processes still running after SIGTERM; sent SIGKILL"
                        );
                        sd.stage = Stage::Killed;
                        sd.deadline = now + AFTER_KILL_GRACE;
                        self.reap();
                    }
                }
                Stage::Killed => {
                    if !self.children_left {
                        sd.stage = Stage::Done;
                    } else if now >= sd.deadline {
                        error!("processes left after SIGKILL could not be reaped; exiting anyway");
                        sd.stage = Stage::Done;
                    }
                }
                Stage::Done => {}
            }
            if sd.stage == before {
                break;
            }
        }
        self.shutdown = Some(sd);
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self.shutdown {
            Some(sd) if sd.stage != Stage::Done => Some(sd.deadline),
            _ => None,
        }
    }

    /// The init's exit code (SPEC §9).
    fn exit_code(&self) -> i32 {
        let code = match self.command {
            Command::Exited(status) => status.as_exit_code(),
            Command::SpawnFailed(code) => code,
            // Killed before its exit was seen: report like a shell would.
            Command::Running(_) => 128 + Signal::SIGKILL as i32,
            Command::None | Command::Pending(_) => 0,
        };
        info!(code, orphans_reaped = self.orphans_reaped, "exiting");
        code
    }
}
