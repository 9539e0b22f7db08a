//! The run mode: the one event loop, and the parts it drives.
//!
//! Each concern is a small part that owns its state and, where it can, is a pure
//! state machine `(input, now) -> actions` with table tests:
//! - [`supervisor`]: dockerd's starts, restarts, stops and state;
//! - [`prober`]: when to ping dockerd and what the answers mean;
//! - [`gate`]: when COMMAND starts, and the init's exit code;
//! - [`shutdown`]: the stages of the stop;
//! - [`publisher`]: what a state change means outside (ready file, waits, sd_notify);
//! - [`model`]: what the init knows and shows (read by the status socket);
//! - [`verify`]: the steps of the container check (`verify = "container"`);
//! - [`checks`]: the Docker API calls once dockerd answers (the check, /info);
//! - [`output`], [`limits`], [`diagnose`]: dockerd's output as lines, the known limits
//!   seen in it while it runs, the cause of a start-up failure;
//! - [`dockerd`], [`helper`], [`readiness`], [`api`]: the processes and sockets those
//!   parts talk about, I/O only.
//!
//! [`Init`] holds them; its methods are in three files by concern: this one (the
//! loop, dispatch, deadlines), `children.rs` (signals, reaping, dockerd, helpers,
//! COMMAND) and `state.rs` (readiness, the Docker API checks, publishing, shutdown).
//!
//! The loop ([`Init::run`]) only waits, dispatches and carries out actions. Each
//! turn it handles what is due, waits in epoll with the timeout set to the nearest
//! deadline of any part (none when idle: an idle init never wakes), and dispatches
//! what arrived. A turn that only forwarded signals changed nothing and goes
//! straight back to the wait, without allocating. There are no sleeps, no timer
//! threads, and no helper process is waited for: the reaper hears of every exit.
//!
//! The process exits only through [`Init::run`] returning; nothing in the loop
//! ends it, and every error is logged once and the loop goes on.

pub mod api;
pub mod checks;
mod children;
pub mod diagnose;
pub mod dockerd;
pub mod gate;
pub mod helper;
pub mod limits;
pub mod model;
pub mod output;
pub mod prober;
pub mod publisher;
pub mod readiness;
pub mod shutdown;
mod state;
pub mod supervisor;
pub mod verify;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use rustix::event::epoll::EventFlags;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::control::server::ControlServer;
use crate::control::status::{CgroupStatus, EnvironmentStatus};
use crate::error::Error;
use crate::prepare::launch::Launch;
use crate::prepare::network::{self, Plan};
use crate::sys::poller::{Poller, Token, Watched};
use crate::sys::signals;

use self::checks::Checks;
use self::dockerd::{LeftoverStep, Leftovers, Pipes};
use self::gate::Gate;
use self::helper::{KilledHelpers, NetworkRun, RecentPids};
use self::model::Model;
use self::output::{Stream, Tail};
use self::prober::{Prober, Slot};
use self::publisher::Publisher;
use self::readiness::{NotifySocket, Ping, ReadyFile, SocketWatch};
use self::shutdown::Shutdown;
use self::supervisor::{Event, Policy, Supervisor};

/// The longest single wait: capped so that the milliseconds fit epoll_wait's int (a
/// longer timeout would need epoll_pwait2, Linux 5.11); waking early is harmless.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// After epoll_wait failed, the loop rests on the signalfd alone this long.
const WAIT_FAILED_REST: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Lines of cgroup actions and warnings kept for status at most.
pub(crate) const MAX_CGROUP_LINES: usize = 200;

/// Everything the run mode needs, decided at boot.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether the init is PID 1 of its pid namespace (else a child subreaper).
    pub pid1: bool,
    pub config: Config,
    /// COMMAND and its arguments; empty when there is none.
    pub command: Vec<OsString>,
    /// dockerd's command line and environment.
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
    pub network: Plan,
    /// The uplink's MTU and the flags dockerd got for it (SPEC §7).
    pub mtu: network::MtuShown,
    /// What boot found (for the cgroup preparation before each restart).
    pub env: crate::prepare::environment::Environment,
}

/// Opens the status socket (and its TCP listener), creating its directory. Called
/// first thing at boot, before cgroups are prepared, so that a probe can connect
/// from the first moment: it is answered once the loop runs. A path that holds a
/// file, a directory or a socket another process serves ends the boot (exit 2:
/// nothing is replaced, and a second init never takes over the first one's
/// socket); any other failure is logged and the init runs without it.
pub fn open_status_socket(cfg: &Config, poller: &Poller) -> Result<Option<ControlServer>, Error> {
    let dir = parent(&cfg.readiness.socket);
    if let Err(e) = fs::create_dir_all(dir) {
        error!(dir = %dir.display(), error = %e, "could not create a directory");
    }
    match ControlServer::bind(
        &cfg.readiness.socket,
        cfg.readiness.socket_mode,
        cfg.readiness.tcp,
        poller.registry(),
    ) {
        // A port another process holds: like a socket path that is taken, the
        // orchestrator's probes could only ever reach the other process.
        Ok((server, Some(e))) if e.kind() == std::io::ErrorKind::AddrInUse => {
            server.remove();
            let addr = cfg.readiness.tcp.map(|a| a.to_string()).unwrap_or_default();
            Err(Error::SocketPath {
                key: "readiness.tcp",
                source: std::io::Error::new(
                    e.kind(),
                    format!("{addr}: another process listens there ({e})"),
                ),
            })
        }
        Ok((server, Some(e))) => {
            error!(tcp = ?cfg.readiness.tcp, error = %e,
                "could not open the TCP status listener; the unix socket is served");
            Ok(Some(server))
        }
        Ok((server, None)) => Ok(Some(server)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AlreadyExists
            ) && e.get_ref().is_some() =>
        {
            Err(Error::SocketPath {
                key: "readiness.socket",
                source: e,
            })
        }
        Err(e) => {
            error!(socket = %cfg.readiness.socket.display(), tcp = ?cfg.readiness.tcp, error = %e,
                "could not open the status socket; probe and status will not work");
            Ok(None)
        }
    }
}

/// The run mode's state: the parts, and the fds they talk about.
#[derive(Debug)]
pub struct Init {
    settings: Settings,
    poller: Poller,
    signals: Watched<SignalFd>,
    my_pid: i32,
    model: Model,
    control: Option<ControlServer>,
    prober: Prober,
    /// The pings in flight, by [`Slot`].
    pings: [Option<Watched<Ping>>; 3],
    notify: Option<Watched<NotifySocket>>,
    /// The watch for dockerd's API socket: armed at each start, dropped once dockerd
    /// is ready or gone (files made in that directory later must not wake PID 1).
    watch: Option<Watched<SocketWatch>>,
    gate: Gate,
    publisher: Publisher,
    ready_file: ReadyFile,
    pipes: Option<Pipes>,
    /// A restart held back until a leftover containerd is gone.
    leftovers: Option<Leftovers>,
    /// Leftover containerds that did not exit after SIGKILL (in uninterruptible
    /// sleep, frozen): dockerd starts without waiting for them again.
    given_up: RecentPids<16>,
    /// dockerd was started (or tried) at least once: later starts are restarts.
    started_once: bool,
    /// Lines of dockerd output cut at [`MAX_LINE`] in this run.
    truncated_lines: u64,
    /// Nested networking: its plan, what it found, what it logged.
    network: network::Setup,
    /// The nested-network rules being set up (helper processes).
    network_run: Option<NetworkRun>,
    /// Helpers killed and not reaped yet: reaped as theirs, not counted as orphans.
    killed_helpers: KilledHelpers,
    children_left: bool,
    /// The Docker API calls once dockerd answers (container check, /info).
    checks: Checks,
}

impl Init {
    /// Sets up the loop: binds the notify socket and the socket watch, each
    /// registered in the poller. A failure of either is logged and the init runs
    /// without it. `control` is the status socket, opened first thing at boot
    /// ([`open_status_socket`]).
    pub fn new(
        settings: Settings,
        signals: SignalFd,
        poller: Poller,
        control: Option<ControlServer>,
    ) -> Result<Self, Error> {
        let registry = poller.registry().clone();
        let signals = Watched::new(&registry, signals, Token::Signals, EventFlags::IN)
            .map_err(|(_, e)| Error::Poll(e))?;
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
            .and_then(|n| {
                Watched::new(&registry, n, Token::Notify, EventFlags::IN).map_err(|(_, e)| e)
            })
            .map_err(|e| {
                warn!(path = %settings.notify_path.display(), error = %e,
                    "could not bind dockerd's notify socket; readiness falls back to watching the API socket");
            })
            .ok();
        let mut ready_file = ReadyFile::new(cfg.readiness.file.clone());
        if let Err(e) = ready_file.remove() {
            warn!(path = %cfg.readiness.file.display(), error = %e, "could not remove an old ready file");
        }
        let now = Instant::now();
        let network = network::Setup::new(settings.network.clone(), settings.mtu.clone());
        let model = Model {
            supervisor: Supervisor::new(Policy::from_config(cfg), now),
            shutdown: None,
            tail: Tail::new(cfg.dockerd.log_tail),
            limits: limits::Seen::default(),
            cgroup: settings.cgroup.clone(),
            environment: settings.environment.clone(),
            network: network.status(),
            counters: model::Counters::default(),
            verify: crate::control::status::VerifyStatus {
                mode: cfg.readiness.verify.as_str().to_owned(),
                last: None,
            },
            storage_driver: None,
            sd_notify: crate::control::status::SdNotifyStatus {
                socket: settings
                    .upstream_notify
                    .as_ref()
                    .map(|s| s.to_string_lossy().into_owned()),
                sent: 0,
                warnings: Vec::new(),
            },
        };
        Ok(Init {
            my_pid: std::process::id() as i32,
            model,
            control,
            prober: Prober::new(cfg.readiness.interval, cfg.readiness.timeout),
            pings: [None, None, None],
            notify,
            watch: None,
            gate: Gate::new(
                !settings.command.is_empty(),
                cfg.command.wait_for_ready,
                cfg.command.ready_timeout,
            ),
            publisher: Publisher::new(),
            ready_file,
            pipes: None,
            leftovers: None,
            given_up: RecentPids::default(),
            started_once: false,
            truncated_lines: 0,
            network,
            network_run: None,
            killed_helpers: KilledHelpers::default(),
            children_left: false,
            checks: Checks::default(),
            signals,
            poller,
            settings,
        })
    }

    /// Runs until the shutdown is complete; returns the init's exit code.
    pub fn run(mut self) -> i32 {
        let now = Instant::now();
        self.boot(now);
        // After a turn that only forwarded signals nothing changed: the deadlines
        // are the same, so the next wait skips straight to epoll_wait (the hot path
        // of a busy COMMAND's signals).
        let mut quiet = false;
        let mut next_deadline: Option<Instant> = None;
        let mut wait_failing = false;
        loop {
            let now = Instant::now();
            // A deadline that has come runs its turn even amid a stream of signals.
            if !quiet || next_deadline.is_some_and(|d| d <= now) {
                self.on_time(now);
                self.publish(now);
                // After publish: a `wait` that ends now answers the current state.
                if let Some(c) = self.control.as_mut() {
                    if c.deadline().is_some_and(|d| d <= now) {
                        c.on_deadlines(&self.model, now);
                    }
                }
                if self.advance_shutdown(now) {
                    return self.finish();
                }
                next_deadline = self.next_deadline();
            }
            let timeout = next_deadline.map(|d: Instant| {
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
                    let mut fds = [PollFd::new(self.signals.get(), PollFlags::IN)];
                    let _ = poll(&mut fds, Some(&WAIT_FAILED_REST));
                    continue;
                }
            };
            let now = Instant::now();
            quiet = ready > 0;
            for i in 0..ready {
                let Some((token, flags)) = self.poller.event(i) else {
                    continue;
                };
                quiet &= self.dispatch(token, flags, now);
                // Before the next fd: a client must never see a state that the
                // ready file, the waits and sd_notify do not show yet.
                self.publish(now);
            }
        }
    }

    /// The first start of dockerd and, when it need not wait, of COMMAND.
    fn boot(&mut self, now: Instant) {
        if let Some(reason) = self.settings.blocked.clone() {
            // The cause was logged where it was found; the state says it again.
            info!("not starting dockerd: it cannot start here");
            self.model.supervisor.handle(Event::Blocked(reason), now);
        } else {
            self.spawn_dockerd(now);
        }
        if let Some(action) = self.gate.boot(now) {
            self.gate_action(action, now);
        }
    }

    /// Handles one ready fd. Returns whether that was all quiet: signals that
    /// were only passed on, which change no state and no deadline.
    fn dispatch(&mut self, token: Token, flags: EventFlags, now: Instant) -> bool {
        match token {
            Token::Signals => {
                let mut batch = signals::Batch::default();
                let mut quiet = true;
                while signals::read_batch(self.signals.get(), &mut batch) {
                    for &signo in batch.signals() {
                        quiet &= self.on_signal(signo, now);
                    }
                }
                return quiet;
            }
            Token::Stdout => self.read_output(Stream::Stdout),
            Token::Stderr => self.read_output(Stream::Stderr),
            Token::Notify => self.on_notify(now),
            Token::SocketWatch => {
                if self.watch.as_ref().is_some_and(|w| w.get().fired()) {
                    debug!("dockerd's API socket appeared");
                    self.probe(prober::Input::SocketAppeared, now);
                }
            }
            Token::Ping(i) => {
                let Some(slot) = Slot::ALL.get(usize::from(i)).copied() else {
                    return false;
                };
                let outcome = self.pings[slot.index()]
                    .as_mut()
                    .and_then(|p| p.get_mut().on_readable());
                if let Some(outcome) = outcome {
                    self.pings[slot.index()] = None;
                    self.probe(prober::Input::Done(slot, outcome), now);
                }
            }
            Token::ListenerUnix | Token::ListenerTcp => {
                if let Some(c) = self.control.as_mut() {
                    c.accept(token == Token::ListenerTcp, &self.model, now);
                }
            }
            Token::Conn(id) => {
                let hangup = flags.intersects(EventFlags::HUP | EventFlags::ERR);
                if let Some(c) = self.control.as_mut() {
                    c.on_event(id, hangup, &self.model, now);
                }
            }
            Token::Helper => {
                if let Some(run) = self.network_run.as_mut() {
                    run.on_stderr();
                }
            }
            Token::Api => {
                let to = checks::Target {
                    socket: &self.settings.launch.socket,
                    registry: self.poller.registry(),
                };
                if let Some(outcome) = self.checks.on_event(to, now) {
                    self.checked(outcome, now);
                }
            }
        }
        false
    }

    // ----- time -----

    /// Handles every deadline that has passed.
    fn on_time(&mut self, now: Instant) {
        if self.model.supervisor.deadline().is_some_and(|d| d <= now) {
            self.supervise(Event::Deadline, now);
        }
        // A leftover containerd is our child (re-parented to us): its exit comes
        // through reap(), which starts dockerd once all are gone. Here only the
        // deadlines: SIGKILL after the grace, start anyway after one more.
        match self.leftovers.as_mut().and_then(|l| l.on_time(now)) {
            Some(LeftoverStep::Kill(pids)) => {
                for pid in pids {
                    signal_pid(pid, Signal::SIGKILL);
                }
            }
            Some(LeftoverStep::GiveUp(pids)) => {
                warn!(pids = ?pids, "leftover containerd did not exit after SIGKILL; starting dockerd anyway");
                self.leftovers = None;
                // Bounded: only the latest ones matter (pids are reused).
                for pid in pids {
                    self.given_up.push(pid);
                }
                self.spawn_dockerd(now);
            }
            None => {}
        }
        if let Some(publish) = self.publisher.on_time(now) {
            self.carry_out(publish, now);
        }
        let actions = self.prober.on_time(now);
        self.probe_actions(actions, now);
        if let Some(run) = self.network_run.as_mut() {
            run.on_time(self.poller.registry(), now, &mut self.killed_helpers);
        }
        self.network_progress(now);
        if let Some(action) = self.gate.on_time(now) {
            self.gate_action(action, now);
        }
        if self.checks.deadline().is_some_and(|d| d <= now) {
            let to = checks::Target {
                socket: &self.settings.launch.socket,
                registry: self.poller.registry(),
            };
            if let Some(outcome) = self.checks.on_time(to, now) {
                self.checked(outcome, now);
            }
        }
    }

    /// The nearest deadline of anything.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.model.shutdown.as_ref().and_then(Shutdown::deadline),
            self.model.supervisor.deadline(),
            self.leftovers.as_ref().map(Leftovers::deadline),
            self.publisher.deadline(),
            self.prober.deadline(),
            self.network_run.as_ref().and_then(NetworkRun::deadline),
            self.gate.deadline(),
            self.control.as_ref().and_then(ControlServer::deadline),
            self.checks.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
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

/// Where dockerd's NOTIFY_SOCKET goes: beside the status socket, and never at the
/// path of the init's own inherited NOTIFY_SOCKET (`upstream`), which belongs to
/// the supervisor above.
pub fn notify_path(cfg: &Config, upstream: Option<&OsStr>) -> PathBuf {
    let dir = parent(&cfg.readiness.socket);
    let path = dir.join("notify.sock");
    if upstream.is_some_and(|u| Path::new(u) == path) {
        dir.join("dockerd-notify.sock")
    } else {
        path
    }
}

/// The init's own NOTIFY_SOCKET, when sd_notify upward is on.
pub fn upstream_notify(cfg: &Config, env: Option<&OsStr>) -> Option<OsString> {
    use crate::config::SdNotify;
    match cfg.readiness.sd_notify {
        SdNotify::Off => None,
        SdNotify::Auto => env.filter(|v| !v.is_empty()).map(OsStr::to_owned),
    }
}
