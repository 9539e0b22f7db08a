//! The readiness prober (SPEC §8): when to ping dockerd, and what each answer means.
//! A pure state machine `(input, now) -> actions`, like the supervisor; the event
//! loop owns the sockets, starts and drops the pings it is told to, and feeds back
//! how they ended.
//!
//! Start-up: a ping is sent at each hint that dockerd may serve now (spawned, its
//! API socket appeared, it sent `READY=1`), and kept pending until answered: dockerd
//! binds its socket before it serves, and the pending request is answered the moment
//! it does. A socket that does not exist yet waits for the next hint; one bound but
//! not listening is tried again after [`LISTEN_RETRY`], any other failure after
//! [`PING_RETRY`]. `READY=1` while a ping is pending opens a second, fresh one
//! ([`Slot::Confirm`]): dockerd (Go's net/http) serves the connections waiting in its
//! backlog newest first, so in gVisor, where each request is slow, the fresh one can
//! be answered milliseconds before the old one; the first 200 wins.
//!
//! Ready is declared once dockerd answered *and* the nested-network setup of this run
//! is done (its rules must be in place before anything relies on "ready").
//!
//! Health: while dockerd is ready (or unhealthy), a ping every `interval`, each given
//! `timeout`; the supervisor counts the failures.

use std::time::{Duration, Instant};

use crate::config::format_duration;

/// A start-up ping that failed for a reason other than "nobody listens yet"
/// (dockerd closed the connection, answered an error) is retried after this.
pub const PING_RETRY: Duration = Duration::from_millis(100);

/// A start-up ping that found the socket bound but not listening yet is retried
/// after this (the gap between bind(2) and listen(2) is short).
pub const LISTEN_RETRY: Duration = Duration::from_millis(10);

/// Which ping: at most one of each is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Startup,
    Confirm,
    Health,
}

impl Slot {
    pub const ALL: [Slot; 3] = [Slot::Startup, Slot::Confirm, Slot::Health];

    pub fn index(self) -> usize {
        match self {
            Slot::Startup => 0,
            Slot::Confirm => 1,
            Slot::Health => 2,
        }
    }
}

/// How a ping ended (or why it could not start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 200 OK.
    Ok,
    /// The socket does not exist yet.
    NoListener,
    /// The socket exists but refuses connections (bound, not listening yet).
    NotListening,
    /// Anything else, in one line.
    Failed(String),
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A new dockerd runs; `network_pending` when its nested-network setup is
    /// still running.
    Spawned {
        network_pending: bool,
    },
    /// dockerd is gone (exited, or being stopped): forget every ping.
    Gone,
    SocketAppeared,
    NotifyReady,
    /// The nested-network setup of this run is done.
    NetworkDone,
    /// A ping ended, or failed to start.
    Done(Slot, Outcome),
    /// Whether dockerd is ready or unhealthy now (health pings run then).
    Serving(bool),
}

/// What the loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a ping in this slot (replacing none: the slot is free).
    Start(Slot),
    /// Close the ping in this slot.
    Drop(Slot),
    /// dockerd is ready (feed the supervisor `Ready`); it waited this long since
    /// the ping that was answered was sent.
    Ready { waited: Duration },
    /// A health ping was answered.
    HealthOk,
    /// A health ping failed.
    HealthFailed(String),
    /// A start-up ping failed for a reason worth a debug line.
    Retry(String),
}

/// The prober's state.
#[derive(Debug, Clone)]
pub struct Prober {
    interval: Option<Duration>,
    timeout: Duration,
    /// A dockerd runs that has not been declared ready yet.
    starting: bool,
    /// When each slot's ping was sent, while it is in flight.
    in_flight: [Option<Instant>; 3],
    /// When to try the start-up ping again.
    retry_at: Option<Instant>,
    /// dockerd answered this run, but the network setup was still running.
    answered: Option<Duration>,
    network_pending: bool,
    serving: bool,
    /// When the next health ping is due.
    health_at: Option<Instant>,
}

impl Prober {
    /// `interval` zero means no health pings.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Prober {
            interval: (!interval.is_zero()).then_some(interval),
            timeout,
            starting: false,
            in_flight: [None; 3],
            retry_at: None,
            answered: None,
            network_pending: false,
            serving: false,
            health_at: None,
        }
    }

    fn flying(&self, slot: Slot) -> bool {
        self.in_flight[slot.index()].is_some()
    }

    fn start(&mut self, slot: Slot, now: Instant, out: &mut Vec<Action>) {
        self.in_flight[slot.index()] = Some(now);
        out.push(Action::Start(slot));
    }

    fn drop_slot(&mut self, slot: Slot, out: &mut Vec<Action>) {
        if self.in_flight[slot.index()].take().is_some() {
            out.push(Action::Drop(slot));
        }
    }

    /// The start-up ping, unless one is in flight or dockerd is not starting.
    fn startup_ping(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.starting && self.answered.is_none() && !self.flying(Slot::Startup) {
            self.retry_at = None;
            self.start(Slot::Startup, now, out);
        }
    }

    fn declare_ready(&mut self, waited: Duration, out: &mut Vec<Action>) {
        if self.network_pending {
            self.answered = Some(waited);
            return;
        }
        self.starting = false;
        self.answered = None;
        self.retry_at = None;
        self.drop_slot(Slot::Startup, out);
        self.drop_slot(Slot::Confirm, out);
        out.push(Action::Ready { waited });
    }

    fn schedule_health(&mut self, now: Instant) {
        self.health_at = self.interval.map(|i| now + i);
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Spawned { network_pending } => {
                for slot in Slot::ALL {
                    self.drop_slot(slot, &mut out);
                }
                self.starting = true;
                self.answered = None;
                self.retry_at = None;
                self.health_at = None;
                self.network_pending = network_pending;
                self.startup_ping(now, &mut out);
            }
            Input::Gone => {
                for slot in Slot::ALL {
                    self.drop_slot(slot, &mut out);
                }
                self.starting = false;
                self.answered = None;
                self.retry_at = None;
                self.health_at = None;
            }
            Input::SocketAppeared => self.startup_ping(now, &mut out),
            Input::NotifyReady => {
                if self.flying(Slot::Startup) {
                    if self.starting && !self.flying(Slot::Confirm) && self.answered.is_none() {
                        self.start(Slot::Confirm, now, &mut out);
                    }
                } else {
                    self.startup_ping(now, &mut out);
                }
            }
            Input::NetworkDone => {
                self.network_pending = false;
                if self.starting {
                    if let Some(waited) = self.answered.take() {
                        self.declare_ready(waited, &mut out);
                    }
                }
            }
            Input::Done(slot, outcome) => {
                let Some(sent) = self.in_flight[slot.index()].take() else {
                    return out; // a ping that was dropped already
                };
                let waited = now.saturating_duration_since(sent);
                match slot {
                    Slot::Startup | Slot::Confirm if !self.starting => {}
                    Slot::Startup => match outcome {
                        Outcome::Ok => self.declare_ready(waited, &mut out),
                        // Waits for the socket watch or READY=1.
                        Outcome::NoListener => {}
                        Outcome::NotListening => self.retry_at = Some(now + LISTEN_RETRY),
                        Outcome::Failed(why) => {
                            self.retry_at = Some(now + PING_RETRY);
                            out.push(Action::Retry(why));
                        }
                    },
                    Slot::Confirm => {
                        if outcome == Outcome::Ok {
                            self.declare_ready(waited, &mut out);
                        }
                    }
                    Slot::Health => {
                        self.schedule_health(now);
                        out.push(match outcome {
                            Outcome::Ok => Action::HealthOk,
                            Outcome::NoListener | Outcome::NotListening => {
                                Action::HealthFailed("dockerd's socket does not accept".into())
                            }
                            Outcome::Failed(why) => Action::HealthFailed(why),
                        });
                    }
                }
            }
            Input::Serving(serving) => {
                if serving && !self.serving {
                    self.schedule_health(now);
                } else if !serving {
                    self.health_at = None;
                    self.drop_slot(Slot::Health, &mut out);
                }
                self.serving = serving;
            }
        }
        out
    }

    /// Handles the deadlines that have passed.
    pub fn on_time(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.startup_ping(now, &mut out);
        }
        if let Some(sent) = self.in_flight[Slot::Health.index()] {
            if sent + self.timeout <= now {
                self.drop_slot(Slot::Health, &mut out);
                self.schedule_health(now);
                out.push(Action::HealthFailed(format!(
                    "no answer within {}",
                    format_duration(self.timeout)
                )));
            }
        } else if self.serving && self.health_at.is_some_and(|t| t <= now) {
            self.health_at = None;
            self.start(Slot::Health, now, &mut out);
        }
        out
    }

    /// The nearest deadline.
    pub fn deadline(&self) -> Option<Instant> {
        let health = match self.in_flight[Slot::Health.index()] {
            Some(sent) => Some(sent + self.timeout),
            None if self.serving => self.health_at,
            None => None,
        };
        [self.retry_at, health].into_iter().flatten().min()
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn prober() -> Prober {
        Prober::new(Duration::from_secs(5), Duration::from_secs(2))
    }

    #[test]
    fn startup_hints_table() {
        let t0 = Instant::now();
        // (inputs after Spawned, the actions of the last one)
        type Case = (Vec<Input>, Vec<Action>);
        let cases: Vec<Case> = vec![
            // The socket is not there yet: wait for a hint, then ping again.
            (
                vec![
                    Input::Done(Slot::Startup, Outcome::NoListener),
                    Input::SocketAppeared,
                ],
                vec![Action::Start(Slot::Startup)],
            ),
            // A hint while a ping is pending starts nothing more.
            (vec![Input::SocketAppeared], vec![]),
            // READY=1 while pending: a fresh confirm ping.
            (vec![Input::NotifyReady], vec![Action::Start(Slot::Confirm)]),
            // READY=1 with no ping pending: the start-up ping.
            (
                vec![
                    Input::Done(Slot::Startup, Outcome::NoListener),
                    Input::NotifyReady,
                ],
                vec![Action::Start(Slot::Startup)],
            ),
            // Answered: ready.
            (
                vec![Input::Done(Slot::Startup, Outcome::Ok)],
                vec![Action::Ready {
                    waited: Duration::ZERO,
                }],
            ),
            // The confirm ping wins: the pending one is dropped.
            (
                vec![Input::NotifyReady, Input::Done(Slot::Confirm, Outcome::Ok)],
                vec![
                    Action::Drop(Slot::Startup),
                    Action::Ready {
                        waited: Duration::ZERO,
                    },
                ],
            ),
            // A failed confirm changes nothing.
            (
                vec![
                    Input::NotifyReady,
                    Input::Done(Slot::Confirm, Outcome::Failed("x".into())),
                ],
                vec![],
            ),
            // Other failures retry after a while.
            (
                vec![Input::Done(Slot::Startup, Outcome::Failed("500".into()))],
                vec![Action::Retry("500".into())],
            ),
        ];
        for (inputs, want) in cases {
            let mut p = prober();
            assert_eq!(
                p.handle(
                    Input::Spawned {
                        network_pending: false
                    },
                    t0
                ),
                vec![Action::Start(Slot::Startup)]
            );
            let mut last = Vec::new();
            for i in inputs.iter().cloned() {
                last = p.handle(i, t0);
            }
            assert_eq!(last, want, "{inputs:?}");
        }
    }

    #[test]
    fn retries_come_due() {
        let t0 = Instant::now();
        let mut p = prober();
        p.handle(
            Input::Spawned {
                network_pending: false,
            },
            t0,
        );
        p.handle(Input::Done(Slot::Startup, Outcome::NotListening), t0);
        assert_eq!(p.deadline(), Some(t0 + LISTEN_RETRY));
        assert!(p.on_time(t0 + LISTEN_RETRY - MS).is_empty());
        assert_eq!(
            p.on_time(t0 + LISTEN_RETRY),
            vec![Action::Start(Slot::Startup)]
        );
        p.handle(Input::Done(Slot::Startup, Outcome::Failed("x".into())), t0);
        assert_eq!(p.deadline(), Some(t0 + PING_RETRY));
    }

    #[test]
    fn ready_waits_for_the_network_setup() {
        let t0 = Instant::now();
        let mut p = prober();
        p.handle(
            Input::Spawned {
                network_pending: true,
            },
            t0,
        );
        assert!(p
            .handle(Input::Done(Slot::Startup, Outcome::Ok), t0 + 5 * MS)
            .is_empty());
        // Hints after the answer start nothing.
        assert!(p.handle(Input::NotifyReady, t0 + 6 * MS).is_empty());
        assert_eq!(
            p.handle(Input::NetworkDone, t0 + 9 * MS),
            vec![Action::Ready { waited: 5 * MS }]
        );
        // The setup done first: ready at the answer.
        let mut p = prober();
        p.handle(
            Input::Spawned {
                network_pending: true,
            },
            t0,
        );
        assert!(p.handle(Input::NetworkDone, t0).is_empty());
        assert_eq!(
            p.handle(Input::Done(Slot::Startup, Outcome::Ok), t0 + 3 * MS),
            vec![Action::Ready { waited: 3 * MS }]
        );
    }

    #[test]
    fn gone_drops_every_ping_and_late_answers_are_ignored() {
        let t0 = Instant::now();
        let mut p = prober();
        p.handle(
            Input::Spawned {
                network_pending: false,
            },
            t0,
        );
        p.handle(Input::NotifyReady, t0);
        assert_eq!(
            p.handle(Input::Gone, t0),
            vec![Action::Drop(Slot::Startup), Action::Drop(Slot::Confirm)]
        );
        assert!(p
            .handle(Input::Done(Slot::Startup, Outcome::Ok), t0)
            .is_empty());
        assert!(p.handle(Input::SocketAppeared, t0).is_empty());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn health_pings_every_interval_with_a_timeout() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(5);
        let timeout = Duration::from_secs(2);
        let mut p = prober();
        p.handle(
            Input::Spawned {
                network_pending: false,
            },
            t0,
        );
        p.handle(Input::Done(Slot::Startup, Outcome::Ok), t0);
        p.handle(Input::Serving(true), t0);
        assert_eq!(p.deadline(), Some(t0 + interval));
        let t1 = t0 + interval;
        assert_eq!(p.on_time(t1), vec![Action::Start(Slot::Health)]);
        assert_eq!(p.deadline(), Some(t1 + timeout));
        assert_eq!(
            p.handle(Input::Done(Slot::Health, Outcome::Ok), t1 + MS),
            vec![Action::HealthOk]
        );
        assert_eq!(p.deadline(), Some(t1 + MS + interval));
        // No answer within the timeout: dropped, a failure, the next one scheduled.
        let t2 = t1 + MS + interval;
        p.on_time(t2);
        assert_eq!(
            p.on_time(t2 + timeout),
            vec![
                Action::Drop(Slot::Health),
                Action::HealthFailed("no answer within 2s".into())
            ]
        );
        assert_eq!(p.deadline(), Some(t2 + timeout + interval));
        // A socket that refuses is a failure too.
        let t3 = t2 + timeout + interval;
        p.on_time(t3);
        assert!(matches!(
            p.handle(Input::Done(Slot::Health, Outcome::NoListener), t3)[..],
            [Action::HealthFailed(_)]
        ));
        // Not serving any more: no pings.
        p.handle(Input::Serving(false), t3);
        assert_eq!(p.deadline(), None);
        // Interval zero: never.
        let mut p = Prober::new(Duration::ZERO, timeout);
        p.handle(Input::Serving(true), t0);
        assert_eq!(p.deadline(), None);
    }
}
