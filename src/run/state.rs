//! What the init tells: readiness (the prober's pings and the container check),
//! the state published outside (ready file, waits, sd_notify, log), and the
//! shutdown sequence. Part of [`Init`](super::Init); the decisions are the
//! prober's, the publisher's and the shutdown machine's.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;
use rustix::event::epoll::EventFlags;
use tracing::{debug, error, info, warn};

use super::checks;
use super::gate;
use super::limits;
use super::model::{self, Shown};
use super::prober;
use super::publisher::{self, Publish};
use super::readiness::{self, Ping};
use super::shutdown::{Shutdown, Step};
use super::supervisor::{Event, State};
use super::verify;
use super::{signal_pid, Init};
use crate::config::{format_duration, Verify};
use crate::sys::poller::{Token, Watched};
use crate::sys::reaper;

impl Init {
    // ----- readiness -----

    pub(super) fn on_notify(&mut self, now: Instant) {
        let Some(n) = &self.notify else {
            return;
        };
        let dockerd = self.model.supervisor.pid();
        let mut ready = false;
        n.get().receive(|sender, payload| {
            // Credentials first: only dockerd's messages are read at all.
            let from_dockerd = match (sender, dockerd) {
                // gVisor passes the sending thread's id, not the process id
                // (measured): a thread of dockerd counts as dockerd.
                (Some(sender), Some(d)) => {
                    sender == d || Path::new(&format!("/proc/{d}/task/{sender}")).exists()
                }
                (None, Some(_)) => true, // no credentials: trust the socket's path
                (_, None) => false,
            };
            if !from_dockerd {
                debug!(sender = ?sender, "ignoring a notify message not from dockerd");
                return;
            }
            let msg = readiness::parse_notify(payload);
            if let Some(text) = &msg.status {
                debug!(status = %text, "dockerd status");
            }
            if msg.stopping {
                info!("dockerd says it is stopping");
            }
            ready |= msg.ready;
        });
        if ready {
            debug!("dockerd sent READY=1; confirming with /_ping");
            self.probe(prober::Input::NotifyReady, now);
        }
    }

    /// Feeds the prober and carries out what it says.
    pub(super) fn probe(&mut self, input: prober::Input, now: Instant) {
        let actions = self.prober.handle(input, now);
        self.probe_actions(actions, now);
    }

    /// Carries out the prober's actions; a ping that cannot even start is fed
    /// back to it at once.
    pub(super) fn probe_actions(&mut self, actions: Vec<prober::Action>, now: Instant) {
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
                    // Found: nothing more to watch for.
                    self.watch = None;
                    match self.settings.config.readiness.verify {
                        Verify::Ping => {
                            self.dockerd_ready(now);
                            info!(
                                waited_ms = waited.as_millis() as u64,
                                "dockerd answered /_ping"
                            );
                        }
                        Verify::Container => {
                            info!(
                                waited_ms = waited.as_millis() as u64,
                                "dockerd answered /_ping; checking that a container runs"
                            );
                            self.start_check(now);
                        }
                    }
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

    /// dockerd is ready: tell the supervisor and the world (ready file, waits,
    /// sd_notify, before any logging: in gVisor each log line is a slow write to the
    /// host), then ask it which storage driver it uses.
    pub(super) fn dockerd_ready(&mut self, now: Instant) {
        self.model.counters.time_to_ready = self
            .model
            .counters
            .dockerd_started
            .map(|(t, _)| now.saturating_duration_since(t));
        self.supervise(Event::Ready, now);
        self.publish(now);
        let to = checks::Target {
            socket: &self.settings.launch.socket,
            registry: self.poller.registry(),
        };
        if let Some(outcome) = self.checks.query_info(to, now) {
            self.checked(outcome, now);
        }
    }

    // ----- Docker API calls: the container check, /info -----

    /// Starts a container check (`verify = "container"`), unless dockerd is gone or
    /// the init is stopping.
    pub(super) fn start_check(&mut self, now: Instant) {
        if self.model.supervisor.pid().is_none() || self.model.shutdown.is_some() {
            return;
        }
        let network = verify::network_for(&self.settings.launch.args);
        let to = checks::Target {
            socket: &self.settings.launch.socket,
            registry: self.poller.registry(),
        };
        if let Some(outcome) = self.checks.start_check(to, network, now) {
            self.checked(outcome, now);
        }
    }

    /// Acts on what a Docker API call found.
    pub(super) fn checked(&mut self, outcome: checks::Outcome, now: Instant) {
        let at = || crate::control::status::rfc3339(now, now, std::time::SystemTime::now());
        match outcome {
            checks::Outcome::Driver(driver) => {
                match driver.as_deref() {
                    Some("vfs") => warn!("{}", model::VFS_WARNING),
                    Some(d) => info!(driver = d, "dockerd's storage driver"),
                    None => debug!("dockerd's /info did not name a storage driver"),
                }
                self.model.storage_driver = driver;
            }
            checks::Outcome::Verified(took, steps) => {
                let took_ms = took.as_millis() as u64;
                self.model.verify.last = Some(crate::control::status::VerifyResult {
                    ok: true,
                    step: None,
                    message: None,
                    took_ms,
                    at: at(),
                });
                self.dockerd_ready(now);
                info!(took_ms, steps = %steps, "a test container ran: dockerd is ready");
            }
            checks::Outcome::Failed {
                failure: f,
                took,
                retry,
            } => {
                // dockerd's words, and the known limit behind them when there is one:
                // in the API's error message, or in what dockerd logged (unless the
                // init found the problem itself, which no limit of dockerd's explains).
                let limit = limits::match_line(&f.message).or_else(|| {
                    (!f.ours)
                        .then(|| self.model.limits.limits().first().copied())
                        .flatten()
                });
                let reason = match limit {
                    Some(l) => format!(
                        "{} (the test container's {} failed)",
                        l.warning,
                        f.step.as_str()
                    ),
                    None => f.reason(),
                };
                self.model.verify.last = Some(crate::control::status::VerifyResult {
                    ok: false,
                    step: Some(f.step.as_str().to_owned()),
                    message: Some(f.message.clone()),
                    took_ms: took.as_millis() as u64,
                    at: at(),
                });
                warn!(step = f.step.as_str(), message = %f.message, retry = %format_duration(retry),
                    "the test container did not run; dockerd is degraded");
                self.supervise(Event::Degraded(reason), now);
            }
            checks::Outcome::RetryDue => {
                if self.model.supervisor.state() == State::Degraded {
                    self.start_check(now);
                }
            }
        }
    }

    // ----- state -----

    /// Acts on a change of the shown state: the ready file, parked `wait`s,
    /// sd_notify upward, the log line; then the prober's health pings and
    /// COMMAND's gate. Nothing happens (and nothing is allocated) when the state
    /// did not change.
    pub(super) fn publish(&mut self, now: Instant) {
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
            Shown::Degraded => gate::Dockerd::Degraded,
            _ => gate::Dockerd::Other,
        };
        if let Some(action) = self.gate.on_state(dockerd) {
            self.gate_action(action, now);
        }
    }

    pub(super) fn carry_out(&mut self, publish: Publish, now: Instant) {
        match publish {
            Publish::WriteReadyFile => self.write_ready_file(now),
            Publish::RemoveReadyFile => {
                let result = self.ready_file.remove();
                let news = self.publisher.file_written(result.is_ok(), now);
                match result {
                    Ok(()) if news => {
                        info!(path = %self.ready_file.path().display(), "removed the ready file at last")
                    }
                    Ok(()) => {}
                    Err(e) if news => {
                        error!(path = %self.ready_file.path().display(), error = %e,
                            retry = %format_duration(publisher::READY_FILE_RETRY),
                            "could not remove the ready file; trying again")
                    }
                    Err(_) => {}
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

    /// sd_notify to the init's own supervisor, if it gave us NOTIFY_SOCKET. A
    /// failure is a warning, once per kind of error, and stays in `status`.
    fn upward(&mut self, message: &str) {
        let Some(target) = &self.settings.upstream_notify else {
            return;
        };
        match readiness::sd_notify(target, message) {
            Ok(()) => self.model.sd_notify.sent += 1,
            Err(e) => {
                let warning = readiness::notify_failure(target, &e);
                if !self.model.sd_notify.warnings.contains(&warning) {
                    warn!(message, "{warning}");
                    if self.model.sd_notify.warnings.len() < 8 {
                        self.model.sd_notify.warnings.push(warning);
                    }
                }
            }
        }
    }

    // ----- shutdown -----

    /// Starts the shutdown; `signal` is the signal that asked for it, if any.
    pub(super) fn begin_shutdown(&mut self, now: Instant, signal: Option<Signal>) {
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
        self.checks.cancel();
        // No ping answered from now on may start anything (the /info query...).
        self.probe(prober::Input::Gone, now);
        if let Some(run) = self.network_run.as_mut() {
            run.abandon(&mut self.killed_helpers);
        }
        self.network_progress(now);
        self.supervise(Event::StopRequested, now);
        // The ready file goes, parked `wait`s get their answer (stopping) now
        // rather than an EOF later, STOPPING=1 goes upward.
        self.publish(now);
    }

    /// Moves the shutdown through its stages as far as it can go right now.
    /// Returns true when it is complete.
    pub(super) fn advance_shutdown(&mut self, now: Instant) -> bool {
        loop {
            let main_running = self.gate.pid().is_some() || self.model.supervisor.pid().is_some();
            let children_left = self.children_left;
            // The machine steps in place; the borrow ends before the step is carried
            // out (which may reap, and so look at the model).
            let Some(step) = self
                .model
                .shutdown
                .as_mut()
                .and_then(|sd| sd.step(now, main_running, children_left))
            else {
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
                    self.reap(now);
                }
                Step::Abandon => {
                    error!("processes left after SIGKILL could not be reaped; exiting anyway")
                }
                Step::Finish => {}
            }
        }
        self.model.shutdown.as_ref().is_some_and(Shutdown::is_done)
    }

    /// Cleans up and returns the init's exit code (SPEC §9).
    pub(super) fn finish(&mut self) -> i32 {
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
