//! dockerd's supervisor: a pure state machine `(state, event, now) -> actions`.
//!
//! It decides when dockerd is (re)started, when it is signalled, and what state
//! and reason `status` shows (SPEC §7, §8). It never touches a process, a clock or
//! a socket: the event loop feeds it events with the current time, carries out
//! the actions it returns, and asks it for its next deadline. That keeps every
//! rule (backoff, restart limits, restart policy, stop escalation) testable in a
//! table without processes. Model: s6-supervise's one deadline and throttling.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::config::{format_duration, Config, RestartPolicy};
use crate::sys::reaper::ExitStatus;

/// After this long ready, the backoff starts again from `backoff_initial`.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// dockerd's state as `status` reports it (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Spawned (or about to be), not answering /_ping yet.
    Starting,
    Ready,
    /// Ready before, but `failure_threshold` pings in a row failed.
    Unhealthy,
    /// dockerd answers, but a test container could not run (`verify = "container"`).
    Degraded,
    /// Exited; waiting out the backoff before the next start.
    Restarting,
    /// Given up: not found, certain to fail, or too many restarts.
    Failed,
    /// Told to stop; waiting for it to exit.
    Stopping,
    /// Stopped on request; it will not be started again.
    Stopped,
}

impl State {
    /// The name used in status JSON (`stopped` shows as `stopping`: the init is
    /// on its way out then).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Degraded => "degraded",
            State::Restarting => "restarting",
            State::Failed => "failed",
            State::Stopping | State::Stopped => "stopping",
        }
    }
}

/// Something that happened to dockerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// dockerd certainly cannot start (e.g. no devices cgroup): never spawn it.
    Blocked(String),
    Spawned {
        pid: i32,
    },
    /// The spawn failed. `permanent` for exec errors (not found, not executable),
    /// which no restart can fix; else (e.g. EAGAIN from fork) it counts as a crash.
    SpawnFailed {
        reason: String,
        permanent: bool,
    },
    /// dockerd exited; `diagnosis` is the one-line cause found in its stderr.
    Exited {
        status: ExitStatus,
        diagnosis: Option<String>,
    },
    /// dockerd is ready: it answered its first /_ping (after READY=1 or its socket
    /// appeared) and, with `verify = "container"`, a test container ran.
    Ready,
    /// dockerd answers, but a test container could not run: why.
    Degraded(String),
    /// A health ping succeeded.
    PingOk,
    /// A health ping failed or timed out.
    PingFailed,
    /// The init is shutting down.
    StopRequested,
    /// The deadline from [`Supervisor::deadline`] has passed.
    Deadline,
}

/// What the event loop must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Clean up stale state and spawn dockerd; report `Spawned` or `SpawnFailed`.
    Spawn,
    /// Send this signal to dockerd.
    Signal(Signal),
}

/// The supervision settings, from `[dockerd]` and `[readiness]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub restart: RestartPolicy,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// 0 = unlimited.
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub stop_timeout: Duration,
    pub failure_threshold: u32,
    pub restart_on_unhealthy: bool,
}

impl Policy {
    pub fn from_config(cfg: &Config) -> Self {
        Policy {
            restart: cfg.dockerd.restart,
            backoff_initial: cfg.dockerd.backoff_initial,
            backoff_max: cfg.dockerd.backoff_max,
            max_restarts: cfg.dockerd.max_restarts,
            restart_window: cfg.dockerd.restart_window,
            stop_timeout: cfg.dockerd.stop_timeout,
            failure_threshold: cfg.readiness.failure_threshold,
            restart_on_unhealthy: cfg.readiness.restart_on_unhealthy,
        }
    }
}

/// The supervisor's state.
#[derive(Debug, Clone)]
pub struct Supervisor {
    policy: Policy,
    state: State,
    /// When `state` began.
    since: Instant,
    reason: Option<String>,
    /// Bumped whenever `state` or `reason` is set, so that the event loop can
    /// tell "nothing changed" without comparing strings each turn.
    changes: u64,
    pid: Option<i32>,
    /// Restarts since boot (the first start is not one).
    restarts: u32,
    /// When each recent restart happened, for `max_restarts` within `restart_window`.
    recent: VecDeque<Instant>,
    /// The delay before the next restart.
    backoff: Duration,
    /// When dockerd last became ready, while it still is (or unhealthy).
    ready_since: Option<Instant>,
    last_exit: Option<ExitStatus>,
    /// Failed pings in a row.
    ping_failures: u32,
    /// Restart due (Restarting) or SIGKILL due (after a SIGTERM we sent).
    deadline: Option<Instant>,
}

impl Supervisor {
    /// A supervisor that has not started dockerd yet.
    pub fn new(policy: Policy, now: Instant) -> Self {
        let backoff = policy.backoff_initial;
        Supervisor {
            policy,
            state: State::Starting,
            since: now,
            reason: None,
            changes: 0,
            pid: None,
            restarts: 0,
            recent: VecDeque::new(),
            backoff,
            ready_since: None,
            last_exit: None,
            ping_failures: 0,
            deadline: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn since(&self) -> Instant {
        self.since
    }
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    /// A counter bumped each time the state or the reason is set.
    pub fn changes(&self) -> u64 {
        self.changes
    }
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }
    pub fn restarts(&self) -> u32 {
        self.restarts
    }
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }
    /// When the event loop must send [`Event::Deadline`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn set_state(&mut self, state: State, reason: Option<String>, now: Instant) {
        if state != self.state {
            self.since = now;
        }
        self.state = state;
        self.reason = reason;
        self.changes += 1;
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Blocked(reason) => {
                self.deadline = None;
                self.set_state(State::Failed, Some(reason), now);
                Vec::new()
            }
            Event::Spawned { pid } => {
                self.pid = Some(pid);
                self.ping_failures = 0;
                // The last crash stays in `last_exit` and the log; a fresh start
                // has no reason to show.
                self.set_state(State::Starting, None, now);
                Vec::new()
            }
            Event::SpawnFailed { reason, permanent } => {
                if permanent {
                    self.deadline = None;
                    self.set_state(State::Failed, Some(reason), now);
                    Vec::new()
                } else {
                    self.after_exit(Some(reason), now)
                }
            }
            Event::Exited { status, diagnosis } => {
                self.pid = None;
                self.last_exit = Some(status);
                self.deadline = None;
                if matches!(self.state, State::Stopping | State::Stopped) {
                    self.set_state(State::Stopped, None, now);
                    return Vec::new();
                }
                let reason = diagnosis.unwrap_or_else(|| format!("dockerd exited ({status})"));
                if self.policy.restart == RestartPolicy::Never
                    || (self.policy.restart == RestartPolicy::OnFailure
                        && status == ExitStatus::Code(0))
                {
                    let why = format!(
                        "{reason}; not restarted (restart = \"{}\")",
                        self.policy.restart.as_str()
                    );
                    self.ready_since = None;
                    self.set_state(State::Failed, Some(why), now);
                    return Vec::new();
                }
                self.after_exit(Some(reason), now)
            }
            Event::Ready => {
                if matches!(
                    self.state,
                    State::Starting | State::Unhealthy | State::Degraded
                ) && self.pid.is_some()
                {
                    if matches!(self.state, State::Starting | State::Degraded) {
                        self.ready_since = Some(now);
                    }
                    self.ping_failures = 0;
                    self.set_state(State::Ready, None, now);
                }
                Vec::new()
            }
            Event::Degraded(reason) => {
                if matches!(self.state, State::Starting | State::Degraded) && self.pid.is_some() {
                    self.set_state(State::Degraded, Some(reason), now);
                }
                Vec::new()
            }
            Event::PingOk => {
                self.ping_failures = 0;
                if self.state == State::Unhealthy && self.deadline.is_none() {
                    self.set_state(State::Ready, None, now);
                }
                Vec::new()
            }
            Event::PingFailed => {
                if !matches!(self.state, State::Ready | State::Unhealthy) {
                    return Vec::new();
                }
                self.ping_failures = self.ping_failures.saturating_add(1);
                if self.state == State::Ready && self.ping_failures >= self.policy.failure_threshold
                {
                    let why = format!(
                        "dockerd did not answer /_ping {} times in a row",
                        self.ping_failures
                    );
                    self.set_state(State::Unhealthy, Some(why), now);
                    if self.policy.restart_on_unhealthy && self.pid.is_some() {
                        self.deadline = Some(now + self.policy.stop_timeout);
                        return vec![Action::Signal(Signal::SIGTERM)];
                    }
                }
                Vec::new()
            }
            Event::StopRequested => match self.state {
                State::Stopping | State::Stopped => Vec::new(),
                _ if self.pid.is_some() => {
                    self.deadline = Some(now + self.policy.stop_timeout);
                    self.set_state(State::Stopping, None, now);
                    // One SIGTERM only: dockerd force-quits on the fourth.
                    vec![Action::Signal(Signal::SIGTERM)]
                }
                _ => {
                    self.deadline = None;
                    self.set_state(State::Stopped, None, now);
                    Vec::new()
                }
            },
            Event::Deadline => {
                let Some(due) = self.deadline else {
                    return Vec::new();
                };
                if now < due {
                    return Vec::new();
                }
                self.deadline = None;
                match self.state {
                    State::Restarting => {
                        self.restarts = self.restarts.saturating_add(1);
                        // Only a limit needs the history; without one it would grow.
                        if self.policy.max_restarts > 0 {
                            self.recent.push_back(now);
                        }
                        self.set_state(State::Starting, self.reason.clone(), now);
                        vec![Action::Spawn]
                    }
                    // A SIGTERM we sent (stop, or restart when unhealthy) ran out.
                    _ if self.pid.is_some() => vec![Action::Signal(Signal::SIGKILL)],
                    _ => Vec::new(),
                }
            }
        }
    }

    /// dockerd is gone (or could not be spawned): restart after the backoff, or
    /// give up when the restart limit is reached.
    fn after_exit(&mut self, reason: Option<String>, now: Instant) -> Vec<Action> {
        if let Some(ready) = self.ready_since.take() {
            if now.saturating_duration_since(ready) >= BACKOFF_RESET_AFTER {
                self.backoff = self.policy.backoff_initial;
            }
        }
        let window_start = now.checked_sub(self.policy.restart_window);
        while let (Some(first), Some(start)) = (self.recent.front(), window_start) {
            if *first < start {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        let reason = reason.unwrap_or_else(|| "dockerd exited".to_owned());
        if self.policy.max_restarts > 0 && self.recent.len() >= self.policy.max_restarts as usize {
            let why = format!(
                "gave up after {} restarts within {}: {reason}",
                self.recent.len(),
                format_duration(self.policy.restart_window)
            );
            self.set_state(State::Failed, Some(why), now);
            return Vec::new();
        }
        let delay = self.backoff;
        self.backoff = (self.backoff.saturating_mul(2)).min(self.policy.backoff_max);
        self.deadline = Some(now + delay);
        let why = format!("{reason}; restarting in {}", format_duration(delay));
        self.set_state(State::Restarting, Some(why), now);
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            restart: RestartPolicy::Always,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            max_restarts: 10,
            restart_window: Duration::from_secs(300),
            stop_timeout: Duration::from_secs(8),
            failure_threshold: 3,
            restart_on_unhealthy: false,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Crashes dockerd right after each spawn and returns the restart delays seen.
    fn crash_loop(sup: &mut Supervisor, t0: Instant, crashes: usize) -> (Vec<Duration>, Instant) {
        let mut now = t0;
        let mut delays = Vec::new();
        sup.handle(Event::Spawned { pid: 10 }, now);
        for _ in 0..crashes {
            sup.handle(
                Event::Exited {
                    status: ExitStatus::Code(1),
                    diagnosis: None,
                },
                now,
            );
            let Some(due) = sup.deadline() else { break };
            delays.push(due - now);
            now = due;
            assert_eq!(sup.handle(Event::Deadline, now), vec![Action::Spawn]);
            sup.handle(Event::Spawned { pid: 10 }, now);
        }
        (delays, now)
    }

    #[test]
    fn backoff_doubles_from_initial_to_the_cap() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        let (delays, _) = crash_loop(&mut sup, t0, 6);
        assert_eq!(
            delays,
            vec![MS(100), MS(200), MS(400), MS(800), MS(1000), MS(1000)]
        );
        assert_eq!(sup.restarts(), 6);
    }

    #[test]
    fn backoff_resets_after_sixty_seconds_ready() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        let (_, now) = crash_loop(&mut sup, t0, 4); // next delay would be 1000ms
        sup.handle(Event::Ready, now);
        // Ready for 59 s: no reset.
        let later = now + Duration::from_secs(59);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Signal(9),
                diagnosis: None,
            },
            later,
        );
        assert_eq!(sup.deadline(), Some(later + MS(1000)));
        let now = later + MS(1000);
        sup.handle(Event::Deadline, now);
        sup.handle(Event::Spawned { pid: 11 }, now);
        sup.handle(Event::Ready, now);
        // Ready for 60 s: back to the initial delay.
        let later = now + Duration::from_secs(60);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Signal(9),
                diagnosis: None,
            },
            later,
        );
        assert_eq!(sup.deadline(), Some(later + MS(100)));
    }

    #[test]
    fn max_restarts_within_the_window_leads_to_failed() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(
            Policy {
                max_restarts: 3,
                ..policy()
            },
            t0,
        );
        let (delays, _) = crash_loop(&mut sup, t0, 10);
        assert_eq!(delays.len(), 3, "three restarts, then failed");
        assert_eq!(sup.state(), State::Failed);
        let reason = sup.reason().unwrap();
        assert!(
            reason.contains("gave up after 3 restarts within 5m"),
            "{reason}"
        );
        assert_eq!(sup.deadline(), None);
    }

    #[test]
    fn restarts_outside_the_window_do_not_count() {
        let t0 = Instant::now();
        let p = Policy {
            max_restarts: 2,
            restart_window: Duration::from_secs(10),
            ..policy()
        };
        let mut sup = Supervisor::new(p, t0);
        let mut now = t0;
        sup.handle(Event::Spawned { pid: 1 }, now);
        for _ in 0..5 {
            sup.handle(
                Event::Exited {
                    status: ExitStatus::Code(1),
                    diagnosis: None,
                },
                now,
            );
            assert_eq!(sup.state(), State::Restarting);
            now = sup.deadline().unwrap();
            sup.handle(Event::Deadline, now);
            sup.handle(Event::Spawned { pid: 1 }, now);
            now += Duration::from_secs(11); // each crash long after the previous restart
        }
        assert_eq!(sup.restarts(), 5);
    }

    #[test]
    fn zero_max_restarts_is_unlimited() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(
            Policy {
                max_restarts: 0,
                ..policy()
            },
            t0,
        );
        let (delays, _) = crash_loop(&mut sup, t0, 50);
        assert_eq!(delays.len(), 50);
        assert_eq!(sup.state(), State::Starting);
    }

    #[test]
    fn restart_policy_table() {
        use RestartPolicy::*;
        let cases = [
            (Always, ExitStatus::Code(0), State::Restarting),
            (Always, ExitStatus::Code(1), State::Restarting),
            (Always, ExitStatus::Signal(9), State::Restarting),
            (OnFailure, ExitStatus::Code(0), State::Failed),
            (OnFailure, ExitStatus::Code(1), State::Restarting),
            (OnFailure, ExitStatus::Signal(9), State::Restarting),
            (Never, ExitStatus::Code(0), State::Failed),
            (Never, ExitStatus::Code(1), State::Failed),
            (Never, ExitStatus::Signal(9), State::Failed),
        ];
        for (restart, status, want) in cases {
            let t0 = Instant::now();
            let mut sup = Supervisor::new(
                Policy {
                    restart,
                    ..policy()
                },
                t0,
            );
            sup.handle(Event::Spawned { pid: 5 }, t0);
            sup.handle(
                Event::Exited {
                    status,
                    diagnosis: None,
                },
                t0,
            );
            assert_eq!(sup.state(), want, "{restart:?} {status:?}");
            assert_eq!(sup.last_exit(), Some(status));
        }
    }

    #[test]
    fn exec_failure_is_failed_without_restart() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        let reason = "dockerd not found: install Docker in the image".to_owned();
        let actions = sup.handle(
            Event::SpawnFailed {
                reason: reason.clone(),
                permanent: true,
            },
            t0,
        );
        assert!(actions.is_empty());
        assert_eq!(sup.state(), State::Failed);
        assert_eq!(sup.reason(), Some(reason.as_str()));
        assert_eq!(sup.deadline(), None);
        assert_eq!(sup.restarts(), 0);
    }

    #[test]
    fn transient_spawn_failure_is_retried() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(
            Event::SpawnFailed {
                reason: "fork: EAGAIN".into(),
                permanent: false,
            },
            t0,
        );
        assert_eq!(sup.state(), State::Restarting);
        assert_eq!(sup.deadline(), Some(t0 + MS(100)));
    }

    #[test]
    fn blocked_never_spawns() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Blocked("devices cgroup missing".into()), t0);
        assert_eq!(sup.state(), State::Failed);
        assert_eq!(
            sup.handle(Event::Deadline, t0 + Duration::from_secs(100)),
            vec![]
        );
        assert_eq!(sup.handle(Event::StopRequested, t0), vec![]);
        assert_eq!(sup.state(), State::Stopped);
    }

    #[test]
    fn diagnosis_becomes_the_reason() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(
            Policy {
                restart: RestartPolicy::Never,
                ..policy()
            },
            t0,
        );
        sup.handle(Event::Spawned { pid: 5 }, t0);
        let diagnosis = Some("iptables: use --iptables=false".to_owned());
        sup.handle(
            Event::Exited {
                status: ExitStatus::Code(1),
                diagnosis,
            },
            t0,
        );
        assert!(sup
            .reason()
            .unwrap()
            .starts_with("iptables: use --iptables=false"));
    }

    #[test]
    fn stop_sends_one_term_then_kill_at_the_timeout() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(Event::Ready, t0);
        assert_eq!(
            sup.handle(Event::StopRequested, t0),
            vec![Action::Signal(Signal::SIGTERM)]
        );
        assert_eq!(sup.state(), State::Stopping);
        assert_eq!(
            sup.handle(Event::StopRequested, t0),
            vec![],
            "only one SIGTERM"
        );
        assert_eq!(sup.handle(Event::Deadline, t0 + MS(7999)), vec![]);
        let kill = sup.handle(Event::Deadline, t0 + Duration::from_secs(8));
        assert_eq!(kill, vec![Action::Signal(Signal::SIGKILL)]);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Signal(9),
                diagnosis: None,
            },
            t0,
        );
        assert_eq!(sup.state(), State::Stopped);
        assert_eq!(sup.deadline(), None, "no restart after a stop");
    }

    #[test]
    fn stop_while_waiting_to_restart_cancels_the_restart() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Code(1),
                diagnosis: None,
            },
            t0,
        );
        assert_eq!(sup.handle(Event::StopRequested, t0), vec![]);
        assert_eq!(sup.state(), State::Stopped);
        assert_eq!(
            sup.handle(Event::Deadline, t0 + Duration::from_secs(1)),
            vec![]
        );
    }

    #[test]
    fn health_pings_unhealthy_and_back() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(Event::Ready, t0);
        sup.handle(Event::PingFailed, t0);
        sup.handle(Event::PingFailed, t0);
        assert_eq!(
            sup.state(),
            State::Ready,
            "two failures are below the threshold"
        );
        sup.handle(Event::PingOk, t0);
        sup.handle(Event::PingFailed, t0);
        sup.handle(Event::PingFailed, t0);
        assert_eq!(
            sup.state(),
            State::Ready,
            "the count restarts after a good ping"
        );
        assert_eq!(sup.handle(Event::PingFailed, t0), vec![]);
        assert_eq!(sup.state(), State::Unhealthy);
        assert!(sup.reason().unwrap().contains("3 times"));
        sup.handle(Event::PingOk, t0);
        assert_eq!(sup.state(), State::Ready);
        assert_eq!(sup.reason(), None);
    }

    #[test]
    fn unhealthy_restarts_when_configured() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(
            Policy {
                restart_on_unhealthy: true,
                ..policy()
            },
            t0,
        );
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(Event::Ready, t0);
        sup.handle(Event::PingFailed, t0);
        sup.handle(Event::PingFailed, t0);
        assert_eq!(
            sup.handle(Event::PingFailed, t0),
            vec![Action::Signal(Signal::SIGTERM)]
        );
        let kill = sup.handle(Event::Deadline, t0 + Duration::from_secs(8));
        assert_eq!(kill, vec![Action::Signal(Signal::SIGKILL)]);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Signal(9),
                diagnosis: None,
            },
            t0,
        );
        assert_eq!(sup.state(), State::Restarting);
    }

    #[test]
    fn ready_only_counts_while_starting() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Ready, t0);
        assert_eq!(
            sup.state(),
            State::Starting,
            "no pid yet: a stale ready is ignored"
        );
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Code(1),
                diagnosis: None,
            },
            t0,
        );
        sup.handle(Event::Ready, t0);
        assert_eq!(sup.state(), State::Restarting);
    }

    #[test]
    fn degraded_until_a_container_runs_then_ready() {
        let t0 = Instant::now();
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(Event::Degraded("start failed".into()), t0);
        assert_eq!(sup.state(), State::Degraded);
        assert_eq!(sup.reason(), Some("start failed"));
        // Health pings say nothing about containers.
        sup.handle(Event::PingFailed, t0);
        assert_eq!(sup.state(), State::Degraded);
        sup.handle(Event::Degraded("still".into()), t0);
        assert_eq!(sup.reason(), Some("still"));
        sup.handle(Event::Ready, t0);
        assert_eq!(sup.state(), State::Ready);
        // Once ready, a late failure report does not take it back.
        sup.handle(Event::Degraded("late".into()), t0);
        assert_eq!(sup.state(), State::Ready);
        // A degraded dockerd that exits is restarted like any other.
        let mut sup = Supervisor::new(policy(), t0);
        sup.handle(Event::Spawned { pid: 5 }, t0);
        sup.handle(Event::Degraded("x".into()), t0);
        sup.handle(
            Event::Exited {
                status: ExitStatus::Code(1),
                diagnosis: None,
            },
            t0,
        );
        assert_eq!(sup.state(), State::Restarting);
    }
}
