//! The init's children, as the event loop handles them: signals (reaping and
//! forwarding), dockerd's starts, exits and output, the nested-network setup's
//! helper processes, and COMMAND. Part of [`Init`](super::Init); the decisions are
//! the supervisor's and the gate's.

use std::time::Instant;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use super::dockerd::{self, Leftovers};
use super::gate;
use super::helper::NetworkRun;
use super::output::{Stream, MAX_LINE};
use super::prober;
use super::readiness::SocketWatch;
use super::supervisor::{Action, Event, State};
use super::{signal_pid, Init, MAX_CGROUP_LINES};
use crate::config::format_duration;
use crate::error::Error;
use crate::prepare::stale;
use crate::run::diagnose;
use crate::sys::poller::{Token, Watched};
use crate::sys::reaper::{self, ExitStatus};
use crate::sys::signals::{self, Disposition};
use crate::sys::spawn::{self, Input, Output, Spec};
use rustix::event::epoll::EventFlags;

impl Init {
    // ----- signals and reaping -----

    /// Acts on one signal. Returns true when it was only passed on (no state,
    /// no deadline changed).
    pub(super) fn on_signal(&mut self, signo: i32, now: Instant) -> bool {
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
    pub(super) fn signal_command(&mut self, sig: Signal) {
        if let Some(pid) = self.gate.pid() {
            self.model.counters.signals_forwarded += 1;
            // ESRCH: the group is gone (COMMAND exited, its SIGCHLD not read yet).
            if let Err(e) = killpg(Pid::from_raw(pid), sig) {
                debug!(pid, signal = sig.as_str(), error = %e, "could not signal COMMAND's group");
            }
        }
    }

    pub(super) fn reap(&mut self, now: Instant) {
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
            } else if self.killed_helpers.reaped(pid) {
                debug!(pid, status = %status, "a killed iptables was reaped");
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

    pub(super) fn apply(&mut self, actions: Vec<Action>, now: Instant) {
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
    pub(super) fn supervise(&mut self, event: Event, now: Instant) {
        let actions = self.model.supervisor.handle(event, now);
        self.apply(actions, now);
    }

    /// Before a restart, the cgroup preparation runs again (SPEC §5): it is
    /// idempotent, so it only acts when something undid the first run (a
    /// hierarchy unmounted, /sys/fs/cgroup hidden), and each action is logged.
    fn prepare_cgroups_again(&mut self) {
        let outcome = crate::prepare::cgroup::prepare(&self.settings.config, &self.settings.env);
        if let Some(reason) = &outcome.failure {
            warn!(reason = %reason, "cgroup preparation before the restart found a problem");
        }
        let c = &mut self.model.cgroup;
        c.mode = outcome.mode;
        c.mounted = outcome.mounted;
        c.stubbed = outcome.stubbed;
        // Bounded: a restart that had to act again adds its lines, up to a cap.
        // Actions are news each time (the restart had to act again); a warning is
        // kept once, however many restarts repeat it.
        let room = MAX_CGROUP_LINES.saturating_sub(c.actions.len());
        c.actions.extend(outcome.actions.into_iter().take(room));
        for w in outcome.warnings {
            if c.warnings.len() < MAX_CGROUP_LINES && !c.warnings.contains(&w) {
                c.warnings.push(w);
            }
        }
    }

    /// Spawns dockerd, unless a containerd left by a killed dockerd must go first.
    pub(super) fn spawn_dockerd(&mut self, now: Instant) {
        if self.model.shutdown.is_some() {
            return;
        }
        // Only a dockerd this init started can have left a containerd re-parented to
        // it: before the first start there is nothing to look for (in gVisor the scan
        // of /proc costs milliseconds before dockerd's exec).
        if self.started_once && self.leftovers.is_none() {
            let pids: Vec<i32> = stale::leftover_containerd(self.my_pid)
                .into_iter()
                .filter(|p| !self.given_up.contains(*p))
                .collect();
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
        if signals::stop_requested() {
            // Starting dockerd now would only mean stopping it again.
            info!("a stop is pending; not starting dockerd");
            return;
        }
        self.model.tail.new_run();
        self.model.limits.clear();
        self.model.storage_driver = None;
        self.checks.new_run();
        self.truncated_lines = 0;
        // Armed before the start, so the socket's creation is never missed.
        self.watch = SocketWatch::new(&self.settings.launch.socket)
            .and_then(|w| {
                Watched::new(
                    self.poller.registry(),
                    w,
                    Token::SocketWatch,
                    EventFlags::IN,
                )
                .map_err(|(_, e)| e)
            })
            .map_err(|e| {
                warn!(socket = %self.settings.launch.socket.display(), error = %e,
                    "could not watch for dockerd's API socket; readiness relies on sd_notify");
            })
            .ok();
        match dockerd::spawn(&self.settings.launch, self.poller.registry()) {
            Ok((pid, pipes)) => {
                info!(pid, program = %self.settings.launch.program,
                    args = ?self.settings.launch.args, "started dockerd");
                self.pipes = Some(pipes);
                self.model.counters.dockerd_started = Some((now, std::time::SystemTime::now()));
                self.model.counters.time_to_ready = None;
                self.supervise(Event::Spawned { pid }, now);
                // Nested networking (SPEC §7a) runs beside dockerd's start, begun once
                // dockerd is on its way (its first iptables use is far later than the
                // links this makes); readiness waits for it. A no-op outside gVisor or
                // with mode "off".
                let network_pending = self.start_network(now);
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
        // Its last words are in the pipes already: read them all before judging,
        // and an unterminated last line too (a containerd it left may hold the
        // pipes open, so no EOF may come).
        self.read_last_output();
        self.pipes = None;
        self.watch = None;
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
        self.checks.cancel();
        self.supervise(Event::Exited { status, diagnosis }, now);
    }

    /// At dockerd's exit: what is left in both pipes (bounded), then any
    /// unterminated last lines.
    fn read_last_output(&mut self) {
        let Some(pipes) = self.pipes.as_mut() else {
            return;
        };
        let mut lines = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            lines.extend(pipes.read_rest(stream).into_iter().map(|l| (stream, l)));
        }
        for (stream, line) in lines {
            self.log_line(stream, line);
        }
    }

    /// Reads what dockerd wrote on `stream` and logs it line by line.
    pub(super) fn read_output(&mut self, stream: Stream) {
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
            self.log_line(stream, line);
        }
    }

    /// One line of dockerd's output: logged, matched for known limits, kept.
    fn log_line(&mut self, stream: Stream, line: String) {
        info!(target: "dockerd", stream = stream.as_str(), "{line}");
        if let Some(limit) = self.model.limits.observe(&line) {
            warn!(cause = limit.cause, "{}", limit.warning);
        }
        self.model.tail.push(stream, line);
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
    pub(super) fn network_progress(&mut self, now: Instant) {
        if !self.network_run.as_ref().is_some_and(NetworkRun::is_done) {
            return;
        }
        if let Some(run) = self.network_run.take() {
            self.network.finish(run.outcome(), now);
            self.model.network = self.network.status();
            self.probe(prober::Input::NetworkDone, now);
        }
    }

    // ----- COMMAND -----

    pub(super) fn gate_action(&mut self, action: gate::Action, now: Instant) {
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
            gate::Action::StartAnyway(gate::Why::Degraded) => {
                warn!(
                    "dockerd is degraded (a test container did not run); starting COMMAND anyway"
                );
                self.start_command(now);
            }
            gate::Action::GiveUp => {
                error!("dockerd gave up and there is no COMMAND; exiting 1 so the container is restarted");
                self.begin_shutdown(now, None);
            }
        }
    }

    pub(super) fn start_command(&mut self, now: Instant) {
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
}
