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
//! - [`dockerd`], [`helper`], [`readiness`]: the processes and sockets those parts
//!   talk about, I/O only.
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
pub mod supervisor;

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;
use rustix::event::epoll::EventFlags;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, error, info, warn};

use crate::config::{format_duration, Config};
use crate::control::server::ControlServer;
use crate::control::status::{CgroupStatus, EnvironmentStatus};
use crate::diagnose;
use crate::error::Error;
use crate::network::{self, Plan};
use crate::prepare::launch::Launch;
use crate::prepare::stale;
use crate::sys::poller::{Poller, Token, Watched};
use crate::sys::reaper::{self, ExitStatus};
use crate::sys::signals::{self, Disposition};
use crate::sys::spawn::{self, Input, Output, Spec};

use self::dockerd::{LeftoverStep, Leftovers, Pipes};
use self::gate::Gate;
use self::helper::NetworkRun;
use self::model::{Model, Shown};
use self::output::{Stream, Tail, MAX_LINE};
use self::prober::{Prober, Slot};
use self::publisher::{Publish, Publisher};
use self::readiness::{NotifySocket, Ping, ReadyFile, SocketWatch};
use self::shutdown::{Shutdown, Step};
use self::supervisor::{Action, Event, Policy, State, Supervisor};

/// The longest single wait: capped so that the milliseconds fit epoll_wait's int (a
/// longer timeout would need epoll_pwait2, Linux 5.11); waking early is harmless.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// After epoll_wait failed, the loop rests on the signalfd alone this long.
const WAIT_FAILED_REST: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// Lines of cgroup actions and warnings kept for status at most.
const MAX_CGROUP_LINES: usize = 200;

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
    /// What boot found (for the cgroup preparation before each restart).
    pub env: crate::environment::Environment,
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
        Ok(server) => Ok(Some(server)),
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
    watch: Option<Watched<SocketWatch>>,
    gate: Gate,
    publisher: Publisher,
    ready_file: ReadyFile,
    pipes: Option<Pipes>,
    /// A restart held back until a leftover containerd is gone.
    leftovers: Option<Leftovers>,
    /// dockerd was started (or tried) at least once: later starts are restarts.
    started_once: bool,
    /// Lines of dockerd output cut at [`MAX_LINE`] in this run.
    truncated_lines: u64,
    /// Nested networking: its plan, what it found, what it logged.
    network: network::Setup,
    /// The nested-network rules being set up (helper processes).
    network_run: Option<NetworkRun>,
    children_left: bool,
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
        let watch = SocketWatch::new(&settings.launch.socket)
            .and_then(|w| {
                Watched::new(&registry, w, Token::SocketWatch, EventFlags::IN).map_err(|(_, e)| e)
            })
            .map_err(|e| {
                warn!(socket = %settings.launch.socket.display(), error = %e,
                    "could not watch for dockerd's API socket; readiness relies on sd_notify");
            })
            .ok();
        let mut ready_file = ReadyFile::new(cfg.readiness.file.clone());
        if let Err(e) = ready_file.remove() {
            warn!(path = %cfg.readiness.file.display(), error = %e, "could not remove an old ready file");
        }
        let now = Instant::now();
        let network = network::Setup::new(settings.network.clone());
        let model = Model {
            supervisor: Supervisor::new(Policy::from_config(cfg), now),
            shutdown: None,
            tail: Tail::new(cfg.dockerd.log_tail),
            limits: limits::Seen::default(),
            cgroup: settings.cgroup.clone(),
            environment: settings.environment.clone(),
            network: network.status(),
            counters: model::Counters::default(),
        };
        Ok(Init {
            my_pid: std::process::id() as i32,
            model,
            control,
            prober: Prober::new(cfg.readiness.interval, cfg.readiness.timeout),
            pings: [None, None, None],
            notify,
            watch,
            gate: Gate::new(
                !settings.command.is_empty(),
                cfg.command.wait_for_ready,
                cfg.command.ready_timeout,
            ),
            publisher: Publisher::new(),
            ready_file,
            pipes: None,
            leftovers: None,
            started_once: false,
            truncated_lines: 0,
            network,
            network_run: None,
            children_left: false,
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
                match self.model.supervisor.pid() {
                    Some(pid) => {
                        info!(
                            pid,
                            "passing SIGHUP to dockerd (it reloads its configuration)"
                        );
                        signal_pid(pid, Signal::SIGHUP);
                        self.model.counters.signals_forwarded += 1;
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
    fn signal_command(&mut self, sig: Signal) {
        if let Some(pid) = self.gate.pid() {
            self.model.counters.signals_forwarded += 1;
            // ESRCH: the group is gone (COMMAND exited, its SIGCHLD not read yet).
            if let Err(e) = killpg(Pid::from_raw(pid), sig) {
                debug!(pid, signal = sig.as_str(), error = %e, "could not signal COMMAND's group");
            }
        }
    }

    fn reap(&mut self, now: Instant) {
        // COMMAND's exit is acted on last: stopping dockerd must not signal a pid
        // whose exit is further down this same batch.
        let mut command_exit = None;
        let mut leftovers_gone = false;
        self.children_left = reaper::reap_each(|pid, status| {
            if self.gate.pid() == Some(pid) {
                command_exit = Some((pid, status));
            } else if self.model.supervisor.pid() == Some(pid) {
                self.on_dockerd_exit(status, now);
            } else if self
                .network_run
                .as_mut()
                .is_some_and(|r| r.on_exit(pid, status, self.poller.registry(), now))
            {
                debug!(pid, status = %status, "iptables finished");
            } else {
                self.model.counters.orphans_reaped += 1;
                debug!(pid, status = %status, "reaped");
                if let Some(l) = self.leftovers.as_mut() {
                    leftovers_gone |= l.reaped(pid);
                }
            }
        });
        self.network_progress(now);
        if leftovers_gone {
            debug!("the leftover containerd is gone");
            self.spawn_dockerd(now);
        }
        if let Some((pid, status)) = command_exit {
            info!(pid, status = %status, "COMMAND exited");
            self.gate.exited(status);
            self.begin_shutdown(now, None);
        }
    }

    // ----- dockerd -----

    fn apply(&mut self, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Spawn => self.spawn_dockerd(now),
                Action::Signal(sig) => {
                    if let Some(pid) = self.model.supervisor.pid() {
                        info!(pid, signal = sig.as_str(), "signalling dockerd");
                        signal_pid(pid, sig);
                    }
                }
            }
        }
    }

    /// Feeds the supervisor and carries out what it says.
    fn supervise(&mut self, event: Event, now: Instant) {
        let actions = self.model.supervisor.handle(event, now);
        self.apply(actions, now);
    }

    /// Before a restart, the cgroup preparation runs again (SPEC §5): it is
    /// idempotent, so it only acts when something undid the first run (a
    /// hierarchy unmounted, /sys/fs/cgroup hidden), and each action is logged.
    fn prepare_cgroups_again(&mut self) {
        let outcome = crate::cgroup::prepare(&self.settings.config, &self.settings.env);
        if let Some(reason) = &outcome.failure {
            warn!(reason = %reason, "cgroup preparation before the restart found a problem");
        }
        let c = &mut self.model.cgroup;
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

    /// Spawns dockerd, unless a containerd left by a killed dockerd must go first.
    fn spawn_dockerd(&mut self, now: Instant) {
        if self.model.shutdown.is_some() {
            return;
        }
        if self.leftovers.is_none() {
            let pids = stale::leftover_containerd(self.my_pid);
            if !pids.is_empty() {
                warn!(pids = ?pids, "a containerd left by the previous dockerd is still running; stopping it first");
                for pid in &pids {
                    signal_pid(*pid, Signal::SIGTERM);
                }
                self.leftovers = Some(Leftovers::new(pids, now));
                return;
            }
        }
        self.leftovers = None;
        if self.started_once {
            self.prepare_cgroups_again();
        }
        self.started_once = true;
        stale::clean(&self.settings.launch);
        if self.settings.environment.gvisor {
            stale::clean_gvisor_network(&self.settings.launch);
        }
        // Nested networking (SPEC §7a) runs beside dockerd's start; a no-op outside
        // gVisor or with mode "off".
        let network_pending = self.start_network(now);
        if signals::stop_requested() {
            // Starting dockerd now would only mean stopping it again.
            info!("a stop is pending; not starting dockerd");
            return;
        }
        self.model.tail.new_run();
        self.model.limits.clear();
        self.truncated_lines = 0;
        match dockerd::spawn(&self.settings.launch, self.poller.registry()) {
            Ok((pid, pipes)) => {
                info!(pid, program = %self.settings.launch.program,
                    args = ?self.settings.launch.args, "started dockerd");
                self.pipes = Some(pipes);
                self.model.counters.dockerd_started = Some((now, std::time::SystemTime::now()));
                self.model.counters.time_to_ready = None;
                self.supervise(Event::Spawned { pid }, now);
                self.probe(prober::Input::Spawned { network_pending }, now);
            }
            Err(f) => {
                // The reason is logged once, as the state it leads to.
                self.supervise(
                    Event::SpawnFailed {
                        reason: f.reason,
                        permanent: f.permanent,
                    },
                    now,
                );
            }
        }
    }

    fn on_dockerd_exit(&mut self, status: ExitStatus, now: Instant) {
        // Its last words are in the pipes already: read them before judging.
        self.read_output(Stream::Stdout);
        self.read_output(Stream::Stderr);
        self.pipes = None;
        let stderr_tail = self.model.tail.stderr_lines(20);
        // Only a start-up failure is diagnosed (SPEC §7): once dockerd has served,
        // its start-up complaints (e.g. gVisor's overlay probe before it settles
        // on vfs) say nothing about why it died.
        let diagnosis = if self.model.supervisor.state() == State::Starting {
            diagnose::diagnose(&stderr_tail).map(|d| d.reason)
        } else {
            None
        };
        let stopping = matches!(
            self.model.supervisor.state(),
            State::Stopping | State::Stopped
        );
        if stopping {
            info!(status = %status, "dockerd exited");
        } else {
            error!(status = %status, diagnosis = diagnosis.as_deref(), stderr_tail = ?stderr_tail, "dockerd exited");
        }
        self.probe(prober::Input::Gone, now);
        self.supervise(Event::Exited { status, diagnosis }, now);
    }

    /// Reads what dockerd wrote on `stream` and logs it line by line.
    fn read_output(&mut self, stream: Stream) {
        let Some(pipes) = self.pipes.as_mut() else {
            return;
        };
        let lines = pipes.read(stream);
        let truncated = pipes.truncated();
        if truncated > self.truncated_lines {
            debug!(truncated, "dockerd output lines cut at {MAX_LINE} bytes");
            self.truncated_lines = truncated;
        }
        for line in lines {
            info!(target: "dockerd", stream = stream.as_str(), "{line}");
            if let Some(limit) = self.model.limits.observe(&line) {
                warn!(cause = limit.cause, "{}", limit.warning);
            }
            self.model.tail.push(stream, line);
        }
    }

    // ----- nested networking -----

    /// Starts the nested-network setup for a dockerd start, unless one is still
    /// running (it then serves this start too). Returns whether it is pending.
    fn start_network(&mut self, now: Instant) -> bool {
        if self.network_run.as_ref().is_some_and(|r| !r.is_done()) {
            return true;
        }
        let Some(job) = self.network.begin(now) else {
            self.model.network = self.network.status();
            return false;
        };
        let run = NetworkRun::start(job, self.poller.registry(), now);
        self.network_run = Some(run);
        self.network_progress(now);
        self.network_run.is_some()
    }

    /// Once the setup's helpers are all done: its outcome becomes the status, and
    /// the prober learns that readiness no longer waits for it.
    fn network_progress(&mut self, now: Instant) {
        if !self.network_run.as_ref().is_some_and(NetworkRun::is_done) {
            return;
        }
        if let Some(run) = self.network_run.take() {
            self.network.finish(run.outcome(), now);
            self.model.network = self.network.status();
            self.probe(prober::Input::NetworkDone, now);
        }
    }

    // ----- readiness -----

    fn on_notify(&mut self, now: Instant) {
        let Some(n) = &self.notify else {
            return;
        };
        let mut ready = false;
        for msg in n.get().receive() {
            let from_dockerd = match (msg.pid, self.model.supervisor.pid()) {
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
            ready |= msg.ready;
        }
        if ready {
            debug!("dockerd sent READY=1; confirming with /_ping");
            self.probe(prober::Input::NotifyReady, now);
        }
    }

    /// Feeds the prober and carries out what it says.
    fn probe(&mut self, input: prober::Input, now: Instant) {
        let actions = self.prober.handle(input, now);
        self.probe_actions(actions, now);
    }

    /// Carries out the prober's actions; a ping that cannot even start is fed
    /// back to it at once.
    fn probe_actions(&mut self, actions: Vec<prober::Action>, now: Instant) {
        if actions.is_empty() {
            return;
        }
        let mut todo: VecDeque<prober::Action> = actions.into();
        while let Some(action) = todo.pop_front() {
            match action {
                prober::Action::Start(slot) => {
                    let started = Ping::start(&self.settings.launch.socket).and_then(|p| {
                        let token = Token::Ping(slot.index() as u8);
                        Watched::new(self.poller.registry(), p, token, EventFlags::IN)
                            .map_err(|(_, e)| prober::Outcome::Failed(format!("epoll: {e}")))
                    });
                    match started {
                        Ok(p) => self.pings[slot.index()] = Some(p),
                        Err(outcome) => {
                            todo.extend(self.prober.handle(prober::Input::Done(slot, outcome), now))
                        }
                    }
                }
                prober::Action::Drop(slot) => self.pings[slot.index()] = None,
                prober::Action::Ready { waited } => {
                    self.model.counters.time_to_ready = self
                        .model
                        .counters
                        .dockerd_started
                        .map(|(t, _)| now.saturating_duration_since(t));
                    self.supervise(Event::Ready, now);
                    // Signal readiness (ready file, waits, sd_notify) before any
                    // logging: in gVisor each log line is a slow write to the host.
                    self.publish(now);
                    info!(
                        waited_ms = waited.as_millis() as u64,
                        "dockerd answered /_ping"
                    );
                }
                prober::Action::HealthOk => self.supervise(Event::PingOk, now),
                prober::Action::HealthFailed(why) => {
                    self.model.counters.health_ping_failures += 1;
                    warn!(outcome = %why, "health ping failed");
                    self.supervise(Event::PingFailed, now);
                }
                prober::Action::Retry(why) => {
                    debug!(outcome = %why, "start-up ping failed; retrying")
                }
            }
        }
    }

    // ----- COMMAND -----

    fn gate_action(&mut self, action: gate::Action, now: Instant) {
        match action {
            gate::Action::Start => self.start_command(now),
            gate::Action::StartAnyway(gate::Why::Timeout) => {
                warn!(
                    ready_timeout = %format_duration(self.settings.config.command.ready_timeout),
                    "dockerd is not ready yet; starting COMMAND anyway"
                );
                self.start_command(now);
            }
            gate::Action::StartAnyway(gate::Why::Failed) => {
                warn!("dockerd failed; starting COMMAND anyway");
                self.start_command(now);
            }
            gate::Action::GiveUp => {
                error!("dockerd gave up and there is no COMMAND; exiting 1 so the container is restarted");
                self.begin_shutdown(now, None);
            }
        }
    }

    fn start_command(&mut self, now: Instant) {
        if !self.gate.may_start() {
            return;
        }
        let Some((program, args)) = self.settings.command.split_first() else {
            return;
        };
        let spec = Spec {
            program,
            args,
            env: &[],
            stdin: Input::Inherit,
            stdout: Output::Inherit,
            stderr: Output::Inherit,
            take_terminal: true,
        };
        match spawn::spawn(&spec) {
            Ok(child) => {
                info!(pid = child.pid, command = ?self.settings.command, "started COMMAND");
                self.gate.started(child.pid);
            }
            Err(source) => {
                let e = Error::SpawnCommand {
                    program: program.to_string_lossy().into_owned(),
                    source,
                };
                error!(error = %e, "COMMAND did not start; stopping");
                self.gate.spawn_failed(e.exit_code());
                self.begin_shutdown(now, None);
            }
        }
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
            run.on_time(self.poller.registry(), now);
        }
        self.network_progress(now);
        if let Some(action) = self.gate.on_time(now) {
            self.gate_action(action, now);
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
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- state -----

    /// Acts on a change of the shown state: the ready file, parked `wait`s,
    /// sd_notify upward, the log line; then the prober's health pings and
    /// COMMAND's gate. Nothing happens (and nothing is allocated) when the state
    /// did not change.
    fn publish(&mut self, now: Instant) {
        let (state, reason) = self.model.shown();
        let actions = self.publisher.on_state(state, reason);
        if actions.is_empty() {
            return;
        }
        for publish in actions {
            self.carry_out(publish, now);
        }
        let serving = matches!(state, Shown::Ready | Shown::Unhealthy);
        self.probe(prober::Input::Serving(serving), now);
        let dockerd = match state {
            Shown::Ready => gate::Dockerd::Ready,
            Shown::Failed => gate::Dockerd::Failed,
            _ => gate::Dockerd::Other,
        };
        if let Some(action) = self.gate.on_state(dockerd) {
            self.gate_action(action, now);
        }
    }

    fn carry_out(&mut self, publish: Publish, now: Instant) {
        match publish {
            Publish::WriteReadyFile => self.write_ready_file(now),
            Publish::RemoveReadyFile => {
                if let Err(e) = self.ready_file.remove() {
                    error!(path = %self.ready_file.path().display(), error = %e, "could not remove the ready file");
                }
            }
            Publish::ReleaseWaits => {
                if let Some(c) = self.control.as_mut() {
                    c.release_waits(&self.model, now);
                }
            }
            Publish::Notify(message) => self.upward(&message),
            Publish::LogState => {
                let (state, reason) = self.model.shown();
                let state = state.as_str();
                match self.model.shown().0 {
                    Shown::Failed => error!(state, reason, "dockerd state"),
                    Shown::Unhealthy | Shown::Restarting => {
                        warn!(state, reason, "dockerd state")
                    }
                    _ => info!(state, reason, "dockerd state"),
                }
            }
        }
    }

    /// Writes the ready file. A failure (a full disk, a read-only directory) is
    /// logged once and retried while dockerd stays ready.
    fn write_ready_file(&mut self, now: Instant) {
        let json = self.model.status(false).to_json();
        let result = self.ready_file.write(&json);
        let news = self.publisher.file_written(result.is_ok(), now);
        let path = self.ready_file.path().display();
        match result {
            Ok(()) if news => info!(path = %path, "wrote the ready file at last"),
            Ok(()) => {}
            Err(e) if news => {
                error!(path = %path, error = %e,
                    retry = %format_duration(publisher::READY_FILE_RETRY),
                    "could not write the ready file; trying again while dockerd is ready")
            }
            Err(_) => {}
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

    // ----- shutdown -----

    /// Starts the shutdown; `signal` is the signal that asked for it, if any.
    fn begin_shutdown(&mut self, now: Instant, signal: Option<Signal>) {
        if self.model.shutdown.is_some() {
            return;
        }
        self.model.shutdown = Some(Shutdown::begin(
            now,
            signal,
            self.settings.config.dockerd.stop_timeout,
        ));
        self.gate.stop();
        self.leftovers = None;
        if let Some(run) = self.network_run.as_mut() {
            run.abandon();
        }
        self.network_progress(now);
        self.supervise(Event::StopRequested, now);
        // The ready file goes, parked `wait`s get their answer (stopping) now
        // rather than an EOF later, STOPPING=1 goes upward.
        self.publish(now);
    }

    /// Moves the shutdown through its stages as far as it can go right now.
    /// Returns true when it is complete.
    fn advance_shutdown(&mut self, now: Instant) -> bool {
        let Some(mut sd) = self.model.shutdown else {
            return false;
        };
        loop {
            let main_running = self.gate.pid().is_some() || self.model.supervisor.pid().is_some();
            let Some(step) = sd.step(now, main_running, self.children_left) else {
                break;
            };
            match step {
                Step::KillMain => {
                    warn!(timeout = %format_duration(self.settings.config.dockerd.stop_timeout),
                        "still running after the stop timeout; sending SIGKILL");
                    self.signal_command(Signal::SIGKILL);
                    if let Some(pid) = self.model.supervisor.pid() {
                        signal_pid(pid, Signal::SIGKILL);
                    }
                }
                Step::SignalRemaining(sig) => {
                    let n = reaper::signal_remaining(sig, self.settings.pid1);
                    if sig == Signal::SIGKILL {
                        warn!(
                            signalled = n,
                            "processes still running after SIGTERM; sent SIGKILL"
                        );
                    } else {
                        debug!(signalled = n, "sent SIGTERM to the remaining processes");
                    }
                    self.model.shutdown = Some(sd);
                    self.reap(now);
                }
                Step::Abandon => {
                    error!("processes left after SIGKILL could not be reaped; exiting anyway")
                }
                Step::Finish => {}
            }
        }
        self.model.shutdown = Some(sd);
        sd.is_done()
    }

    /// Cleans up and returns the init's exit code (SPEC §9).
    fn finish(&mut self) -> i32 {
        let _ = self.ready_file.remove();
        if let Some(c) = &self.control {
            c.remove();
        }
        if let Some(n) = &self.notify {
            n.get().remove();
        }
        let signal = self.model.shutdown.as_ref().and_then(Shutdown::signal);
        let code = self.gate.exit_code(signal);
        info!(
            code,
            orphans_reaped = self.model.counters.orphans_reaped,
            "exiting"
        );
        code
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
