//! The one event loop of the run mode: dockerd's supervision, readiness, the
//! status socket, COMMAND, reaping, signals, and the shutdown of SPEC §9.
//!
//! Each turn handles what is due, tells the poller (epoll, `poller.rs`) what to
//! watch (the signalfd, dockerd's output pipes, the notify socket, the socket
//! watch, a ping in flight, the status listeners and their connections), waits
//! with the timeout set to the nearest deadline (none when idle: an idle init
//! never wakes), and dispatches what arrived. A turn that only forwarded signals
//! changed nothing and goes straight back to the wait, without allocating.
//! There are no sleeps and no timer threads. The supervisor
//! (`supervisor.rs`) decides; this module carries out its actions and feeds it
//! events.
//!
//! Shutdown runs in three stages, whatever started it (a signal, COMMAND's exit,
//! or dockerd giving up without COMMAND):
//! 1. `Main`: the shutdown signal goes to COMMAND's process group and SIGTERM to
//!    dockerd; wait for both, up to `dockerd.stop_timeout`, then SIGKILL them.
//! 2. `Remaining`: SIGTERM to every remaining descendant (so a grandchild that
//!    traps TERM runs its trap), then wait until none is left, within the same
//!    budget (at least [`MIN_REMAINING_GRACE`]).
//! 3. `Killed`: SIGKILL to whatever is still there; reap; exit.
//!
//! The process exits only through [`Init::run`] returning; nothing in the loop
//! ends it, and every error is logged once and the loop goes on.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use rustix::event::epoll::EventFlags;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, error, info, warn};

use crate::config::{format_duration, Config};
use crate::control::{Answers, ControlServer, Interest};
use crate::diagnose;
use crate::dockerd::{self, Launch};
use crate::limits;
use crate::network;
use crate::output::{LineSplitter, Stream, Tail, MAX_LINE};
use crate::poller::{self, Poller};
use crate::readiness::{self, NotifySocket, Ping, PingOutcome, ReadyFile, SocketWatch};
use crate::reaper::{self, ExitStatus};
use crate::signals::{self, Disposition};
use crate::spawn::{self, Child};
use crate::status::{self, CgroupStatus, DockerdStatus, EnvironmentStatus, Status};
use crate::supervisor::{Action, Event, Policy, State, Supervisor};

/// Stage 2 gets at least this long after SIGTERM before SIGKILL, even when the stop
/// budget is already spent (a trap needs a moment to run).
pub const MIN_REMAINING_GRACE: Duration = Duration::from_millis(500);

/// After SIGKILL to everyone, how long to wait for the last reaps before exiting
/// anyway (a process in uninterruptible sleep cannot be reaped until it wakes).
pub const AFTER_KILL_GRACE: Duration = Duration::from_secs(1);

/// A start-up ping that failed for a reason other than "nobody listens yet"
/// (dockerd closed the connection, answered an error) is retried after this.
pub const PING_RETRY: Duration = Duration::from_millis(100);

/// A start-up ping that found the socket bound but not listening yet is
/// retried after this (the gap between bind(2) and listen(2) is short).
pub const LISTEN_RETRY: Duration = Duration::from_millis(10);

/// dockerd output read from one pipe per loop turn at most, so that a chatty
/// dockerd never holds up signals, reaping or clients.
pub const MAX_READ_PER_TURN: usize = 64 * 1024;

/// Lines of cgroup actions and warnings kept for status at most.
const MAX_CGROUP_LINES: usize = 200;

/// A ready file that could not be written is tried again this often.
pub const READY_FILE_RETRY: Duration = Duration::from_secs(1);

/// The longest single wait (see `Init::run`).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// After epoll_wait failed, the loop rests on the signalfd alone this long.
const WAIT_FAILED_REST: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// How long a containerd left behind by a killed dockerd gets after SIGTERM.
pub const LEFTOVER_GRACE: Duration = Duration::from_secs(2);

/// Everything the run mode needs, decided at boot.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether the init is PID 1 of its pid namespace (else a child subreaper).
    pub pid1: bool,
    pub config: Config,
    /// COMMAND and its arguments; empty when there is none.
    pub command: Vec<OsString>,
    /// dockerd's command line.
    pub launch: Launch,
    /// Set when dockerd certainly cannot start (e.g. no devices cgroup).
    pub blocked: Option<String>,
    pub cgroup: CgroupStatus,
    pub environment: EnvironmentStatus,
    /// The init's own supervisor's NOTIFY_SOCKET, for sd_notify upward.
    pub upstream_notify: Option<OsString>,
    /// Where dockerd's NOTIFY_SOCKET is bound.
    pub notify_path: PathBuf,
    /// Nested networking in gVisor (SPEC §7a), decided at boot.
    pub network: network::Plan,
    /// What boot found (for the cgroup preparation before each restart).
    pub env: crate::environment::Environment,
}

/// Opens the status socket (and its TCP listener), creating its directory. Called
/// first thing at boot, before cgroups are prepared, so that a probe can connect
/// from the first moment: it is answered once the loop runs. A failure is logged
/// and the init runs without it.
pub fn open_status_socket(cfg: &Config) -> Option<ControlServer> {
    let dir = parent(&cfg.readiness.socket);
    if let Err(e) = fs::create_dir_all(dir) {
        error!(dir = %dir.display(), error = %e, "could not create a directory");
    }
    ControlServer::bind(
        &cfg.readiness.socket,
        cfg.readiness.socket_mode,
        cfg.readiness.tcp,
    )
    .map_err(|e| {
        error!(socket = %cfg.readiness.socket.display(), tcp = ?cfg.readiness.tcp, error = %e,
                "could not open the status socket; probe and status will not work");
    })
    .ok()
}

/// COMMAND's life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    /// No COMMAND was given.
    None,
    /// Not started yet (waiting for dockerd).
    Pending,
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
    /// The signal that asked for the shutdown, if one did.
    signal: Option<Signal>,
}

/// dockerd's output pipes.
#[derive(Debug)]
struct Pipes {
    /// Makes the pipes' poller keys unique to this dockerd.
    serial: u64,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    out: LineSplitter,
    err: LineSplitter,
}

/// A ping in flight and what it is for.
#[derive(Debug)]
struct InFlight {
    ping: Ping,
    /// A health ping (while ready) rather than the start-up one.
    health: bool,
}

/// A restart held back until a leftover containerd is gone.
#[derive(Debug, Clone)]
struct HeldSpawn {
    pids: Vec<i32>,
    kill_at: Instant,
    give_up_at: Instant,
    killed: bool,
}

/// What an fd watched by the loop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Signals,
    Output(Stream),
    Notify,
    Watch,
    Ping,
    Confirm,
    ControlUnix,
    ControlTcp,
    Conn(u64),
}

/// Bits of a poller key that say which [`Token`]; the rest is a serial that
/// makes the key unique to one open file (see `poller.rs`).
const TOKEN_BITS: u32 = 4;

impl Token {
    fn kind(self) -> u64 {
        match self {
            Token::Signals => 0,
            Token::Output(Stream::Stdout) => 1,
            Token::Output(Stream::Stderr) => 2,
            Token::Notify => 3,
            Token::Watch => 4,
            Token::Ping => 5,
            Token::Confirm => 6,
            Token::ControlUnix => 7,
            Token::ControlTcp => 8,
            Token::Conn(_) => 9,
        }
    }

    /// The poller key of this token's fd; `serial` tells one open file from the
    /// next (a connection's id is its serial).
    fn key(self, serial: u64) -> u64 {
        let serial = match self {
            Token::Conn(id) => id,
            _ => serial,
        };
        (serial << TOKEN_BITS) | self.kind()
    }

    fn from_key(key: u64) -> Option<Token> {
        Some(match key & ((1 << TOKEN_BITS) - 1) {
            0 => Token::Signals,
            1 => Token::Output(Stream::Stdout),
            2 => Token::Output(Stream::Stderr),
            3 => Token::Notify,
            4 => Token::Watch,
            5 => Token::Ping,
            6 => Token::Confirm,
            7 => Token::ControlUnix,
            8 => Token::ControlTcp,
            9 => Token::Conn(key >> TOKEN_BITS),
            _ => return None,
        })
    }
}

/// The run mode's state.
#[derive(Debug)]
pub struct Init {
    settings: Settings,
    signals: SignalFd,
    /// What the loop waits on (epoll), kept in step each turn.
    poller: Poller,
    my_pid: i32,
    command: Command,
    /// When COMMAND starts anyway if dockerd is not ready (`ready_timeout`).
    command_gate: Option<Instant>,
    supervisor: Supervisor,
    pipes: Option<Pipes>,
    tail: Tail,
    notify: Option<NotifySocket>,
    watch: Option<SocketWatch>,
    ping: Option<InFlight>,
    /// A second start-up ping, opened on READY=1 (see `start_confirm_ping`).
    confirm: Option<Ping>,
    /// When the next start-up ping attempt is due (after a failed one).
    ping_retry: Option<Instant>,
    /// When the next health ping is due.
    next_health: Option<Instant>,
    control: Option<ControlServer>,
    ready_file: ReadyFile,
    /// The ready file could not be written (a full disk...): when to try again,
    /// while dockerd stays ready.
    ready_file_retry: Option<Instant>,
    held_spawn: Option<HeldSpawn>,
    /// dockerd was started (or tried) at least once: later starts are restarts.
    started_once: bool,
    shutdown: Option<Shutdown>,
    /// The state last acted on (logs, ready file, waits, sd_notify), by the
    /// name status shows.
    shown: (&'static str, Option<String>),
    /// `Supervisor::changes` when `shown` was last compared.
    shown_changes: u64,
    /// dockerd gave up and there is no COMMAND: exit 1.
    gave_up: bool,
    children_left: bool,
    orphans_reaped: u64,
    /// Lines of dockerd output cut at [`MAX_LINE`].
    truncated_lines: u64,
    /// Known limits seen in this dockerd run's output (SPEC §7).
    limits: limits::Seen,
    /// Nested networking: set up before each dockerd start; its latest outcome.
    network: network::Setup,
}

impl Init {
    /// Sets up the loop: binds the notify socket, the socket watch, the status
    /// socket. A failure of any of these is logged and the init runs without it.
    /// `control` is the status socket, opened first thing at boot
    /// ([`open_status_socket`]).
    pub fn new(
        settings: Settings,
        signals: SignalFd,
        poller: Poller,
        control: Option<ControlServer>,
    ) -> Self {
        let now = Instant::now();
        let cfg = &settings.config;
        // The status socket's directory was made by `open_status_socket`.
        for dir in [
            parent(&cfg.readiness.file),
            parent(&settings.launch.socket),
            parent(&settings.notify_path),
        ] {
            if let Err(e) = fs::create_dir_all(dir) {
                error!(dir = %dir.display(), error = %e, "could not create a directory");
            }
        }
        let notify = NotifySocket::bind(&settings.notify_path)
            .map_err(|e| {
                warn!(path = %settings.notify_path.display(), error = %e,
                    "could not bind dockerd's notify socket; readiness falls back to watching the API socket");
            })
            .ok();
        let watch = SocketWatch::new(&settings.launch.socket)
            .map_err(|e| {
                warn!(socket = %settings.launch.socket.display(), error = %e,
                    "could not watch for dockerd's API socket; readiness relies on sd_notify");
            })
            .ok();
        let mut ready_file = ReadyFile::new(cfg.readiness.file.clone());
        if let Err(e) = ready_file.remove() {
            warn!(path = %cfg.readiness.file.display(), error = %e, "could not remove an old ready file");
        }
        let command = if settings.command.is_empty() {
            Command::None
        } else {
            Command::Pending
        };
        let supervisor = Supervisor::new(Policy::from_config(cfg), now);
        Init {
            my_pid: std::process::id() as i32,
            command,
            command_gate: None,
            supervisor,
            pipes: None,
            tail: Tail::new(cfg.dockerd.log_tail),
            notify,
            watch,
            ping: None,
            confirm: None,
            ping_retry: None,
            next_health: None,
            control,
            ready_file,
            ready_file_retry: None,
            held_spawn: None,
            started_once: false,
            shutdown: None,
            shown: (State::Starting.as_str(), None),
            shown_changes: 0,
            gave_up: false,
            children_left: false,
            orphans_reaped: 0,
            truncated_lines: 0,
            limits: limits::Seen::default(),
            network: network::Setup::new(settings.network.clone()),
            signals,
            poller,
            settings,
        }
    }

    /// Runs until the shutdown is complete; returns the init's exit code.
    pub fn run(mut self) -> i32 {
        let now = Instant::now();
        self.boot(now);
        // After a turn that only forwarded signals nothing changed: the deadlines
        // and the watched fds are the same, so the next wait skips straight to
        // epoll_wait (the hot path of a busy COMMAND's signals).
        let mut quiet = false;
        let mut next_deadline: Option<Instant> = None;
        let mut wait_failing = false;
        loop {
            let now = Instant::now();
            // A deadline that has come runs its turn even amid a stream of signals.
            if !quiet || next_deadline.is_some_and(|d| d <= now) {
                self.on_time(now);
                self.sync_state(now);
                // After sync_state: a `wait` that ends now answers the current state.
                self.control_deadlines(now);
                self.advance_shutdown(now);
                if matches!(
                    self.shutdown,
                    Some(Shutdown {
                        stage: Stage::Done,
                        ..
                    })
                ) {
                    return self.finish();
                }
                next_deadline = self.next_deadline();
                self.watch_fds(now);
                self.poller.sync();
            }
            let timeout = next_deadline.map(|d: Instant| {
                // Capped so that the milliseconds fit epoll_wait's int (a longer
                // timeout would need epoll_pwait2, Linux 5.11): waking early is
                // harmless, the next turn computes the rest.
                let left = d.saturating_duration_since(now).min(MAX_WAIT);
                Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: i64::from(left.subsec_nanos()),
                }
            });
            quiet = false;
            let ready = match self.poller.wait(timeout.as_ref()) {
                Ok(n) => {
                    wait_failing = false;
                    n
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // Nothing here can fix it; the deadlines still apply. Rest
                    // on the signalfd for a moment rather than spin.
                    if !wait_failing {
                        error!(error = %e, "epoll_wait failed; waiting on signals alone for now");
                        wait_failing = true;
                    }
                    let mut fds = [PollFd::new(&self.signals, PollFlags::IN)];
                    let _ = poll(&mut fds, Some(&WAIT_FAILED_REST));
                    continue;
                }
            };
            let now = Instant::now();
            quiet = ready > 0;
            for i in 0..ready {
                let Some((key, flags)) = self.poller.event(i) else {
                    break;
                };
                // An fd replaced earlier in this batch (dockerd's pipes after a
                // restart, a new ping): its event is stale.
                let Some(token) = Token::from_key(key).filter(|t| self.key_of(*t) == key) else {
                    continue;
                };
                quiet &= self.dispatch(token, flags, now);
                // Before the next fd: a client must never see a state that the
                // ready file, the waits and sd_notify do not show yet.
                self.sync_state(now);
            }
        }
    }

    /// The first start of dockerd and, when it need not wait, of COMMAND.
    fn boot(&mut self, now: Instant) {
        if let Some(reason) = self.settings.blocked.clone() {
            // The cause was logged where it was found; the state says it again.
            info!("not starting dockerd: it cannot start here");
            self.supervisor.handle(Event::Blocked(reason), now);
        } else {
            self.spawn_dockerd(now);
        }
        if self.command == Command::Pending {
            if self.settings.config.command.wait_for_ready {
                self.command_gate = Some(now + self.settings.config.command.ready_timeout);
            } else {
                self.start_command(now);
            }
        }
    }

    /// The poller key of `token`'s current fd (with its serial).
    fn key_of(&self, token: Token) -> u64 {
        let serial = match token {
            Token::Output(_) => self.pipes.as_ref().map_or(0, |p| p.serial),
            Token::Ping => self.ping.as_ref().map_or(0, |f| f.ping.serial),
            Token::Confirm => self.confirm.as_ref().map_or(0, |p| p.serial),
            _ => 0,
        };
        token.key(serial)
    }

    /// Tells the poller what to watch this turn: the signalfd, dockerd's output
    /// pipes, the notify socket, the socket watch, pings in flight, the status
    /// listeners (quiet while accepting rests) and their connections.
    fn watch_fds(&mut self, now: Instant) {
        let p = &mut self.poller;
        let read = EventFlags::IN;
        p.want(Token::Signals.key(0), self.signals.as_fd(), read);
        if let Some(pipes) = &self.pipes {
            if let Some(fd) = &pipes.stdout {
                let key = Token::Output(Stream::Stdout).key(pipes.serial);
                p.want(key, fd.as_fd(), read);
            }
            if let Some(fd) = &pipes.stderr {
                let key = Token::Output(Stream::Stderr).key(pipes.serial);
                p.want(key, fd.as_fd(), read);
            }
        }
        if let Some(n) = &self.notify {
            p.want(Token::Notify.key(0), n.as_fd(), read);
        }
        if let Some(w) = &self.watch {
            p.want(Token::Watch.key(0), w.as_fd(), read);
        }
        if let Some(f) = &self.ping {
            p.want(Token::Ping.key(f.ping.serial), f.ping.as_fd(), read);
        }
        if let Some(c) = &self.confirm {
            p.want(Token::Confirm.key(c.serial), c.as_fd(), read);
        }
        if let Some(c) = &self.control {
            let listen = if c.listening(now) {
                read
            } else {
                EventFlags::empty()
            };
            p.want(Token::ControlUnix.key(0), c.unix_fd(), listen);
            if let Some(fd) = c.tcp_fd() {
                p.want(Token::ControlTcp.key(0), fd, listen);
            }
            for (id, fd, interest) in c.connections() {
                let flags = match interest {
                    Interest::Read | Interest::Hangup => EventFlags::IN,
                    Interest::Write => EventFlags::OUT,
                };
                p.want(Token::Conn(id).key(0), fd, flags);
            }
        }
    }

    /// Handles one ready fd. Returns whether that was all quiet: signals that
    /// were only passed on, which change no state and no deadline.
    fn dispatch(&mut self, token: Token, flags: EventFlags, now: Instant) -> bool {
        match token {
            Token::Signals => {
                let mut batch = signals::Batch::default();
                let mut quiet = true;
                while signals::read_batch(&self.signals, &mut batch) {
                    for &signo in batch.signals() {
                        quiet &= self.on_signal(signo, now);
                    }
                }
                return quiet;
            }
            Token::Output(stream) => self.read_output(stream),
            Token::Notify => self.on_notify(now),
            Token::Watch => {
                if self.watch.as_ref().is_some_and(SocketWatch::fired) {
                    debug!("dockerd's API socket appeared");
                    self.start_startup_ping(now);
                }
            }
            Token::Ping => self.on_ping(now),
            Token::Confirm => self.on_confirm(now),
            Token::ControlUnix | Token::ControlTcp => {
                if let Some(c) = self.control.as_mut() {
                    c.accept(token == Token::ControlTcp, now);
                }
            }
            Token::Conn(id) => {
                let hangup = flags.intersects(EventFlags::HUP | EventFlags::ERR);
                let mut control = self.control.take();
                if let Some(c) = control.as_mut() {
                    c.on_event(id, hangup, &*self, now);
                }
                self.control = control;
            }
        }
        false
    }

    // ----- signals and reaping -----

    /// Acts on one signal. Returns true when it was only passed on (no state,
    /// no deadline changed).
    fn on_signal(&mut self, signo: i32, now: Instant) -> bool {
        let Some((sig, disposition)) = signals::disposition(signo) else {
            debug!(signal = %signals::name(signo), "ignoring unexpected signal");
            return true;
        };
        match disposition {
            Disposition::Reap => {
                self.reap(now);
                false
            }
            Disposition::Shutdown => {
                info!(signal = sig.as_str(), "shutdown requested");
                self.signal_command(sig);
                self.begin_shutdown(now, Some(sig));
                false
            }
            Disposition::Reload => {
                match self.supervisor.pid() {
                    Some(pid) => {
                        info!(
                            pid,
                            "passing SIGHUP to dockerd (it reloads its configuration)"
                        );
                        signal_pid(pid, Signal::SIGHUP);
                    }
                    None => self.signal_command(sig),
                }
                true
            }
            Disposition::Forward => {
                debug!(signal = sig.as_str(), "forwarding signal to COMMAND");
                self.signal_command(sig);
                true
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

    fn reap(&mut self, now: Instant) {
        // COMMAND's exit is acted on last: stopping dockerd must not signal a pid
        // whose exit is further down this same batch.
        let mut command_exit = None;
        self.children_left = reaper::reap_each(|pid, status| {
            if matches!(self.command, Command::Running(c) if c.pid == pid) {
                command_exit = Some((pid, status));
            } else if self.supervisor.pid() == Some(pid) {
                self.on_dockerd_exit(status, now);
            } else {
                self.orphans_reaped += 1;
                debug!(pid, status = %status, "reaped");
                if let Some(held) = self.held_spawn.as_mut() {
                    held.pids.retain(|p| *p != pid);
                }
            }
        });
        if self.held_spawn.as_ref().is_some_and(|h| h.pids.is_empty()) {
            debug!("the leftover containerd is gone");
            self.spawn_dockerd(now);
        }
        if let Some((pid, status)) = command_exit {
            info!(pid, status = %status, "COMMAND exited");
            self.command = Command::Exited(status);
            self.begin_shutdown(now, None);
        }
    }

    // ----- dockerd -----

    fn apply(&mut self, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Spawn => self.spawn_dockerd(now),
                Action::Signal(sig) => {
                    if let Some(pid) = self.supervisor.pid() {
                        info!(pid, signal = sig.as_str(), "signalling dockerd");
                        signal_pid(pid, sig);
                    }
                }
            }
        }
    }

    /// Spawns dockerd, unless a containerd left by a killed dockerd must go first.
    /// Before a restart, the cgroup preparation runs again (SPEC §5): it is
    /// idempotent, so it only acts when something undid the first run (a
    /// hierarchy unmounted, /sys/fs/cgroup hidden), and each action is logged.
    fn prepare_cgroups_again(&mut self) {
        let outcome = crate::cgroup::prepare(&self.settings.config, &self.settings.env);
        if let Some(reason) = &outcome.failure {
            warn!(reason = %reason, "cgroup preparation before the restart found a problem");
        }
        let c = &mut self.settings.cgroup;
        c.mode = outcome.mode;
        c.mounted = outcome.mounted;
        c.stubbed = outcome.stubbed;
        // Bounded: a restart that had to act again adds its lines, up to a cap.
        for (list, new) in [
            (&mut c.actions, outcome.actions),
            (&mut c.warnings, outcome.warnings),
        ] {
            let room = MAX_CGROUP_LINES.saturating_sub(list.len());
            list.extend(new.into_iter().take(room));
        }
    }

    fn spawn_dockerd(&mut self, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        if self.held_spawn.is_none() {
            let leftovers = dockerd::leftover_containerd(self.my_pid);
            if !leftovers.is_empty() {
                warn!(pids = ?leftovers, "a containerd left by the previous dockerd is still running; stopping it first");
                for pid in &leftovers {
                    signal_pid(*pid, Signal::SIGTERM);
                }
                self.held_spawn = Some(HeldSpawn {
                    pids: leftovers,
                    kill_at: now + LEFTOVER_GRACE,
                    give_up_at: now + LEFTOVER_GRACE + AFTER_KILL_GRACE,
                    killed: false,
                });
                return;
            }
        }
        self.held_spawn = None;
        if self.started_once {
            self.prepare_cgroups_again();
        }
        self.started_once = true;
        dockerd::clean_stale_state(&self.settings.launch);
        if self.settings.environment.gvisor {
            dockerd::clean_gvisor_network(&self.settings.launch);
        }
        // Nested networking (SPEC §7a); a no-op outside gVisor or with mode "off".
        self.network.before_start();
        if signals::stop_requested() {
            // The setup gave way to a stop the loop has not read yet: starting
            // dockerd now would only mean stopping it again.
            info!("a stop is pending; not starting dockerd");
            return;
        }
        self.tail.new_run();
        self.truncated_lines = 0;
        self.limits.clear();
        match dockerd::spawn(&self.settings.launch) {
            Ok(started) => {
                info!(pid = started.pid, program = %self.settings.launch.program,
                    args = ?self.settings.launch.args, "started dockerd");
                self.pipes = Some(Pipes {
                    serial: poller::next_serial(),
                    stdout: Some(started.stdout),
                    stderr: Some(started.stderr),
                    out: LineSplitter::new(MAX_LINE),
                    err: LineSplitter::new(MAX_LINE),
                });
                self.ping = None;
                self.confirm = None;
                self.ping_retry = None;
                self.supervisor
                    .handle(Event::Spawned { pid: started.pid }, now);
                self.start_startup_ping(now);
            }
            Err(f) => {
                // The reason is logged once, as the state it leads to.
                let actions = self.supervisor.handle(
                    Event::SpawnFailed {
                        reason: f.reason,
                        permanent: f.permanent,
                    },
                    now,
                );
                self.apply(actions, now);
            }
        }
    }

    fn on_dockerd_exit(&mut self, status: ExitStatus, now: Instant) {
        // Its last words are in the pipes already: read them before judging.
        self.read_output(Stream::Stdout);
        self.read_output(Stream::Stderr);
        let stderr_tail = self.tail.stderr_lines(20);
        // Only a start-up failure is diagnosed (SPEC §7): once dockerd has served,
        // its start-up complaints (e.g. gVisor's overlay probe before it settles
        // on vfs) say nothing about why it died.
        let diagnosis = if self.supervisor.state() == State::Starting {
            diagnose::diagnose(&stderr_tail).map(|d| d.reason)
        } else {
            None
        };
        let was_stopping = matches!(self.supervisor.state(), State::Stopping | State::Stopped);
        if was_stopping {
            info!(status = %status, "dockerd exited");
        } else {
            error!(status = %status, diagnosis = diagnosis.as_deref(), stderr_tail = ?stderr_tail, "dockerd exited");
        }
        self.ping = None;
        self.confirm = None;
        self.ping_retry = None;
        self.next_health = None;
        let actions = self
            .supervisor
            .handle(Event::Exited { status, diagnosis }, now);
        self.apply(actions, now);
    }

    /// Reads what dockerd wrote on `stream` and logs it line by line.
    fn read_output(&mut self, stream: Stream) {
        let Some(pipes) = self.pipes.as_mut() else {
            return;
        };
        let (slot, splitter) = match stream {
            Stream::Stdout => (&mut pipes.stdout, &mut pipes.out),
            Stream::Stderr => (&mut pipes.stderr, &mut pipes.err),
        };
        let Some(fd) = slot.as_ref() else {
            return;
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
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: drained for now
            }
            if read_bytes >= MAX_READ_PER_TURN {
                break; // let the loop turn; the rest is read on the next one
            }
        }
        if eof {
            lines.extend(splitter.finish());
            *slot = None;
        }
        // Both streams of this dockerd; the count starts again at each spawn.
        let truncated = pipes.out.truncated() + pipes.err.truncated();
        if truncated > self.truncated_lines {
            debug!(truncated, "dockerd output lines cut at {MAX_LINE} bytes");
            self.truncated_lines = truncated;
        }
        for line in lines {
            info!(target: "dockerd", stream = stream.as_str(), "{line}");
            if let Some(limit) = self.limits.observe(&line) {
                warn!(cause = limit.cause, "{}", limit.warning);
            }
            self.tail.push(stream, line);
        }
    }

    // ----- readiness -----

    fn on_notify(&mut self, now: Instant) {
        let Some(n) = &self.notify else {
            return;
        };
        for msg in n.receive() {
            let from_dockerd = match (msg.pid, self.supervisor.pid()) {
                // gVisor passes the sending thread's id, not the process id
                // (measured): a thread of dockerd counts as dockerd.
                (Some(sender), Some(d)) => {
                    sender == d || Path::new(&format!("/proc/{d}/task/{sender}")).exists()
                }
                (None, Some(_)) => true, // no credentials: trust the socket's path
                (_, None) => false,
            };
            if !from_dockerd {
                debug!(sender = ?msg.pid, "ignoring a notify message not from dockerd");
                continue;
            }
            if let Some(text) = &msg.status {
                debug!(status = %text, "dockerd status");
            }
            if msg.stopping {
                info!("dockerd says it is stopping");
            }
            if msg.ready {
                debug!("dockerd sent READY=1; confirming with /_ping");
                if self.ping.is_some() {
                    self.start_confirm_ping(now);
                } else {
                    self.start_startup_ping(now);
                }
            }
        }
    }

    /// Starts the start-up ping, unless one is in flight or dockerd is not starting.
    fn start_startup_ping(&mut self, now: Instant) {
        if self.supervisor.state() != State::Starting
            || self.supervisor.pid().is_none()
            || self.ping.is_some()
        {
            return;
        }
        self.ping_retry = None;
        match Ping::start(&self.settings.launch.socket, now, None) {
            Ok(ping) => {
                self.ping = Some(InFlight {
                    ping,
                    health: false,
                })
            }
            // No socket yet: the socket watch or READY=1 will wake us.
            Err(PingOutcome::NoListener(why)) => {
                debug!(why = %why, "dockerd's socket does not exist yet")
            }
            // Bound, listen(2) not called yet: a moment away.
            Err(PingOutcome::NotListening(why)) => {
                debug!(why = %why, "dockerd's socket is not listening yet");
                self.ping_retry = Some(now + LISTEN_RETRY);
            }
            Err(other) => {
                debug!(outcome = %other, "start-up ping failed; retrying");
                self.ping_retry = Some(now + PING_RETRY);
            }
        }
    }

    /// On READY=1 while the start-up ping is still pending: a second, fresh ping.
    /// dockerd (Go's net/http) serves the connections waiting in its backlog
    /// newest first, so in gVisor, where each request is slow, the fresh one can
    /// be answered milliseconds before the old one; the first 200 wins.
    fn start_confirm_ping(&mut self, now: Instant) {
        if self.confirm.is_some() || self.supervisor.state() != State::Starting {
            return;
        }
        if let Ok(ping) = Ping::start(&self.settings.launch.socket, now, None) {
            self.confirm = Some(ping);
        }
    }

    fn on_confirm(&mut self, now: Instant) {
        let Some(ping) = self.confirm.as_mut() else {
            return;
        };
        let Some(outcome) = ping.on_readable() else {
            return;
        };
        let took = now.saturating_duration_since(ping.started);
        self.confirm = None;
        if outcome == PingOutcome::Ok && self.supervisor.state() == State::Starting {
            // The pending start-up ping is moot now.
            self.ping = None;
            self.ping_done(outcome, false, took, now);
        }
    }

    fn on_ping(&mut self, now: Instant) {
        let Some(flight) = self.ping.as_mut() else {
            return;
        };
        let Some(outcome) = flight.ping.on_readable() else {
            return;
        };
        let health = flight.health;
        let took = now.saturating_duration_since(flight.ping.started);
        self.ping = None;
        self.ping_done(outcome, health, took, now);
    }

    fn ping_done(&mut self, outcome: PingOutcome, health: bool, took: Duration, now: Instant) {
        if health {
            self.next_health = self.health_interval().map(|i| now + i);
            let event = if outcome == PingOutcome::Ok {
                Event::PingOk
            } else {
                warn!(outcome = %outcome, "health ping failed");
                Event::PingFailed
            };
            let actions = self.supervisor.handle(event, now);
            self.apply(actions, now);
        } else if outcome == PingOutcome::Ok {
            let actions = self.supervisor.handle(Event::Ready, now);
            self.apply(actions, now);
            // Signal readiness (ready file, waits, sd_notify) before any logging:
            // in gVisor each log line is a slow write to the host.
            self.sync_state(now);
            info!(
                waited_ms = took.as_millis() as u64,
                "dockerd answered /_ping"
            );
        } else {
            debug!(outcome = %outcome, "start-up ping failed; retrying");
            self.ping_retry = Some(now + PING_RETRY);
        }
    }

    fn health_interval(&self) -> Option<Duration> {
        let i = self.settings.config.readiness.interval;
        (!i.is_zero()).then_some(i)
    }

    // ----- COMMAND -----

    fn start_command(&mut self, now: Instant) {
        self.command_gate = None;
        if self.command != Command::Pending || self.shutdown.is_some() {
            return;
        }
        match spawn::spawn_command(&self.settings.command) {
            Ok(child) => {
                info!(pid = child.pid, command = ?self.settings.command, "started COMMAND");
                self.command = Command::Running(child);
            }
            Err(e) => {
                error!(error = %e, "COMMAND did not start; stopping");
                self.command = Command::SpawnFailed(e.exit_code());
                self.begin_shutdown(now, None);
            }
        }
    }

    // ----- time -----

    /// Handles every deadline that has passed.
    fn on_time(&mut self, now: Instant) {
        if self.supervisor.deadline().is_some_and(|d| d <= now) {
            let actions = self.supervisor.handle(Event::Deadline, now);
            self.apply(actions, now);
        }
        // A leftover containerd is our child (re-parented to us): its exit comes
        // through reap(), which starts dockerd once all are gone. Here only the
        // deadlines: SIGKILL after the grace, start anyway after one more.
        if let Some(held) = self.held_spawn.as_mut() {
            if now >= held.give_up_at {
                warn!(pids = ?held.pids, "leftover containerd did not exit after SIGKILL; starting dockerd anyway");
                held.pids.clear();
                self.spawn_dockerd(now);
            } else if now >= held.kill_at && !held.killed {
                for pid in &held.pids {
                    signal_pid(*pid, Signal::SIGKILL);
                }
                held.killed = true;
            }
        }
        if self.ready_file_retry.is_some_and(|d| d <= now) {
            if self.supervisor.state() == State::Ready && self.shutdown.is_none() {
                self.write_ready_file(now);
            } else {
                self.ready_file_retry = None;
            }
        }
        if self.ping_retry.is_some_and(|d| d <= now) {
            self.ping_retry = None;
            self.start_startup_ping(now);
        }
        if let Some(flight) = &self.ping {
            if flight.ping.deadline.is_some_and(|d| d <= now) {
                let health = flight.health;
                let took = now.saturating_duration_since(flight.ping.started);
                self.ping = None;
                let why = format!("no answer within {}", format_duration(took));
                self.ping_done(PingOutcome::Failed(why), health, took, now);
            }
        }
        if self.ping.is_none() && self.next_health.is_some_and(|d| d <= now) {
            self.next_health = None;
            let timeout = Some(self.settings.config.readiness.timeout);
            match Ping::start(&self.settings.launch.socket, now, timeout) {
                Ok(ping) => self.ping = Some(InFlight { ping, health: true }),
                Err(outcome) => self.ping_done(outcome, true, Duration::ZERO, now),
            }
        }
        if self.command == Command::Pending && self.command_gate.is_some_and(|d| d <= now) {
            warn!(
                ready_timeout = %format_duration(self.settings.config.command.ready_timeout),
                "dockerd is not ready yet; starting COMMAND anyway"
            );
            self.start_command(now);
        }
    }

    /// Drops silent clients and answers `wait`s whose duration ended.
    fn control_deadlines(&mut self, now: Instant) {
        let due = self.control.as_ref().and_then(ControlServer::deadline);
        if due.is_some_and(|d| d <= now) {
            let mut control = self.control.take();
            if let Some(c) = control.as_mut() {
                c.on_deadlines(&*self, now);
            }
            self.control = control;
        }
    }

    /// The nearest deadline of anything.
    fn next_deadline(&self) -> Option<Instant> {
        let shutdown = match self.shutdown {
            Some(sd) if sd.stage != Stage::Done => Some(sd.deadline),
            _ => None,
        };
        let held = self
            .held_spawn
            .as_ref()
            .map(|h| if h.killed { h.give_up_at } else { h.kill_at });
        [
            shutdown,
            self.supervisor.deadline(),
            held,
            self.ping_retry,
            self.ready_file_retry,
            self.ping.as_ref().and_then(|p| p.ping.deadline),
            if self.ping.is_none() {
                self.next_health
            } else {
                None
            },
            if self.command == Command::Pending {
                self.command_gate
            } else {
                None
            },
            self.control.as_ref().and_then(ControlServer::deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- state -----

    /// Acts on a change of dockerd's state: log it, the ready file, parked
    /// `wait`s, sd_notify upward, COMMAND's gate, giving up without COMMAND.
    fn sync_state(&mut self, now: Instant) {
        if self.supervisor.changes() == self.shown_changes {
            return; // the common case: nothing was set since the last look
        }
        self.shown_changes = self.supervisor.changes();
        let state = self.supervisor.state();
        if state.as_str() == self.shown.0 && self.supervisor.reason() == self.shown.1.as_deref() {
            return;
        }
        let reason = self.supervisor.reason().map(str::to_owned);
        let was_ready = self.shown.0 == State::Ready.as_str();
        self.shown = (state.as_str(), reason.clone());
        if state == State::Ready {
            self.confirm = None;
            self.write_ready_file(now);
            self.release_waits(now);
            if !was_ready {
                self.upward("READY=1");
            }
            self.next_health = self.health_interval().map(|i| now + i);
        } else {
            self.ready_file_retry = None;
            if let Err(e) = self.ready_file.remove() {
                error!(path = %self.ready_file.path().display(), error = %e, "could not remove the ready file");
            }
            if state != State::Unhealthy {
                self.next_health = None;
            }
        }
        // Logged after the ready file and the waits: those are what readiness
        // is measured by.
        match state {
            State::Failed => error!(
                state = state.as_str(),
                reason = reason.as_deref(),
                "dockerd state"
            ),
            State::Unhealthy | State::Restarting => {
                warn!(
                    state = state.as_str(),
                    reason = reason.as_deref(),
                    "dockerd state"
                )
            }
            _ => info!(
                state = state.as_str(),
                reason = reason.as_deref(),
                "dockerd state"
            ),
        }
        let status_line = match &reason {
            Some(r) => format!("STATUS=dockerd {}: {r}", state.as_str()),
            None => format!("STATUS=dockerd {}", state.as_str()),
        };
        self.upward(&status_line);
        if state == State::Ready {
            // After the state's log line, so that the log reads in order.
            self.start_command(now);
        }
        if state == State::Failed {
            // Failed is final: a `wait` would only run out; answer it now.
            self.release_waits(now);
            match self.command {
                Command::Pending => {
                    warn!("dockerd failed; starting COMMAND anyway");
                    self.start_command(now);
                }
                Command::None => {
                    error!("dockerd gave up and there is no COMMAND; exiting 1 so the container is restarted");
                    self.gave_up = true;
                    self.begin_shutdown(now, None);
                }
                _ => {}
            }
        }
    }

    /// Writes the ready file. A failure (a full disk, a read-only directory) is
    /// logged once and retried every [`READY_FILE_RETRY`] while dockerd stays
    /// ready, so the file appears as soon as it can.
    fn write_ready_file(&mut self, now: Instant) {
        let json = self.status(false).to_json();
        match self.ready_file.write(&json) {
            Ok(()) => {
                if self.ready_file_retry.take().is_some() {
                    info!(path = %self.ready_file.path().display(), "wrote the ready file at last");
                }
            }
            Err(e) => {
                if self.ready_file_retry.is_none() {
                    error!(path = %self.ready_file.path().display(), error = %e,
                        retry = %format_duration(READY_FILE_RETRY),
                        "could not write the ready file; trying again while dockerd is ready");
                }
                self.ready_file_retry = Some(now + READY_FILE_RETRY);
            }
        }
    }

    /// sd_notify to the init's own supervisor, if it gave us NOTIFY_SOCKET.
    fn upward(&self, message: &str) {
        if let Some(target) = &self.settings.upstream_notify {
            if let Err(e) = readiness::sd_notify(target, message) {
                debug!(error = %e, message, "sd_notify upward failed");
            }
        }
    }

    /// The status document.
    pub fn status(&self, with_tail: bool) -> Status {
        let now = Instant::now();
        let (state, reason, since) = if let Some(sd) = self.shutdown {
            ("stopping".to_owned(), None, sd.started)
        } else {
            (
                self.supervisor.state().as_str().to_owned(),
                self.supervisor.reason().map(str::to_owned),
                self.supervisor.since(),
            )
        };
        Status {
            state,
            reason,
            since: status::rfc3339(since, now, SystemTime::now()),
            dockerd: DockerdStatus {
                pid: self.supervisor.pid(),
                restarts: self.supervisor.restarts(),
                last_exit: self.supervisor.last_exit().map(Into::into),
                warnings: self.limits.warnings(),
            },
            cgroup: self.settings.cgroup.clone(),
            environment: self.settings.environment.clone(),
            network: self.network.status(),
            log_tail: with_tail.then(|| {
                self.tail
                    .lines()
                    .map(|l| format!("{}: {}", l.stream.as_str(), l.text))
                    .collect()
            }),
        }
    }

    // ----- shutdown -----

    /// Starts the shutdown; `signal` is the signal that asked for it, if any.
    fn begin_shutdown(&mut self, now: Instant, signal: Option<Signal>) {
        if self.shutdown.is_some() {
            return;
        }
        self.shutdown = Some(Shutdown {
            started: now,
            stage: Stage::Main,
            deadline: now + self.settings.config.dockerd.stop_timeout,
            signal,
        });
        self.command_gate = None;
        self.held_spawn = None;
        self.upward("STOPPING=1");
        // sync_state reports a failure to remove it, on the state change below.
        let _ = self.ready_file.remove();
        let actions = self.supervisor.handle(Event::StopRequested, now);
        self.apply(actions, now);
        // Parked `wait`s get their answer (stopping) now rather than an EOF later.
        self.release_waits(now);
    }

    /// Answers every parked `wait` with the current status.
    fn release_waits(&mut self, now: Instant) {
        let mut control = self.control.take();
        if let Some(c) = control.as_mut() {
            c.release_waits(&*self, now);
        }
        self.control = control;
    }

    /// Whether a main process (COMMAND or dockerd) is still running.
    fn main_running(&self) -> bool {
        matches!(self.command, Command::Running(_)) || self.supervisor.pid().is_some()
    }

    /// Moves the shutdown through its stages as far as it can go right now.
    fn advance_shutdown(&mut self, now: Instant) {
        let Some(mut sd) = self.shutdown else {
            return;
        };
        let stop_timeout = self.settings.config.dockerd.stop_timeout;
        loop {
            let before = sd.stage;
            match sd.stage {
                Stage::Main => {
                    if self.main_running() && now >= sd.deadline {
                        warn!(timeout = %format_duration(stop_timeout),
                            "still running after the stop timeout; sending SIGKILL");
                        self.signal_command(Signal::SIGKILL);
                        if let Some(pid) = self.supervisor.pid() {
                            signal_pid(pid, Signal::SIGKILL);
                        }
                    }
                    if !self.main_running() || now >= sd.deadline {
                        sd.stage = Stage::Remaining;
                        sd.deadline = (sd.started + stop_timeout).max(now + MIN_REMAINING_GRACE);
                        let n = reaper::signal_remaining(Signal::SIGTERM, self.settings.pid1);
                        debug!(signalled = n, "sent SIGTERM to the remaining processes");
                        self.reap(now);
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
                        self.reap(now);
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

    /// Cleans up and returns the init's exit code (SPEC §9).
    fn finish(&mut self) -> i32 {
        let _ = self.ready_file.remove();
        if let Some(c) = &self.control {
            c.remove();
        }
        if let Some(n) = &self.notify {
            n.remove();
        }
        let code = match self.command {
            Command::Exited(status) => status.as_exit_code(),
            Command::SpawnFailed(code) => code,
            // Killed before its exit was seen: report like a shell would.
            Command::Running(_) => 128 + Signal::SIGKILL as i32,
            // Stopped by signal N before it could start: 128+N, as if it had run.
            Command::Pending => match self.shutdown.and_then(|sd| sd.signal) {
                Some(sig) => 128 + sig as i32,
                None => i32::from(self.gave_up),
            },
            Command::None => i32::from(self.gave_up),
        };
        info!(code, orphans_reaped = self.orphans_reaped, "exiting");
        code
    }
}

impl Answers for Init {
    fn is_ready(&self) -> bool {
        self.shutdown.is_none() && self.supervisor.state() == State::Ready
    }

    fn is_final(&self) -> bool {
        self.shutdown.is_some() || self.supervisor.state() == State::Failed
    }

    fn status_json(&self) -> String {
        self.status(true).to_json()
    }

    fn not_ready_text(&self) -> String {
        let s = self.status(false);
        match s.reason {
            Some(r) => format!("{}: {r}", s.state),
            None => s.state,
        }
    }
}

/// Sends `sig` to one process; ESRCH (already gone) is fine.
fn signal_pid(pid: i32, sig: Signal) {
    if let Err(e) = kill(Pid::from_raw(pid), sig) {
        debug!(pid, signal = sig.as_str(), error = %e, "could not signal");
    }
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

/// Where dockerd's NOTIFY_SOCKET goes: beside the status socket.
pub fn notify_path(cfg: &Config) -> PathBuf {
    parent(&cfg.readiness.socket).join("notify.sock")
}

/// The init's own NOTIFY_SOCKET, when sd_notify upward is on.
pub fn upstream_notify(cfg: &Config, env: Option<&OsStr>) -> Option<OsString> {
    use crate::config::SdNotify;
    match cfg.readiness.sd_notify {
        SdNotify::Off => None,
        SdNotify::Auto => env.filter(|v| !v.is_empty()).map(OsStr::to_owned),
    }
}
