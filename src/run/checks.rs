//! The Docker API calls the init makes once dockerd answers: the container check of
//! `verify = "container"` (`verify.rs` decides the steps) and `GET /info` for the
//! storage driver. [`Checks`] owns the one call in flight (`api.rs`), its time
//! limit, the check in progress and its retry backoff; the loop feeds it socket
//! events and deadlines and acts on the [`Outcome`]s it returns.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;

use crate::run::api::{Answer, Body, Call, Progress};
use crate::run::verify::{self, Failure, Next, Verifier};
use crate::sys::poller::{Registry, Token, Watched};

/// The binary a check imports.
const SELF_EXE: &str = "/proc/self/exe";

/// What a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Verify,
    Info,
}

#[derive(Debug)]
struct InFlight {
    purpose: Purpose,
    call: Watched<Call>,
    deadline: Instant,
    reading: bool,
}

/// What the loop must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A test container ran, in this long; each step's time, for the log.
    Verified(Duration, String),
    /// The check failed, in this long; the next one runs after `retry`.
    Failed {
        failure: Failure,
        took: Duration,
        retry: Duration,
    },
    /// The retry of a failed check is due: the loop starts one if dockerd is still
    /// degraded.
    RetryDue,
    /// dockerd's storage driver, if `/info` named one.
    Driver(Option<String>),
}

/// Where the calls go.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub socket: &'a Path,
    pub registry: &'a Registry,
}

#[derive(Debug, Default)]
pub struct Checks {
    call: Option<InFlight>,
    verifier: Option<Verifier>,
    retry_at: Option<Instant>,
    backoff: verify::Backoff,
    /// The test image's tag, computed at the first check.
    tag: Option<String>,
    /// Whether the running binary is statically linked, read at the first check.
    is_static: Option<Option<bool>>,
    /// This dockerd run's first check has tidied up already.
    tidied: bool,
}

impl Checks {
    /// Starts a container check. `network` is the test container's network.
    pub fn start_check(
        &mut self,
        to: Target<'_>,
        network: &'static str,
        now: Instant,
    ) -> Option<Outcome> {
        self.retry_at = None;
        // A dynamically linked build (a development build) cannot run alone in a
        // one-file image: say so rather than let the container fail obscurely.
        let is_static = *self.is_static.get_or_insert_with(|| {
            fs::File::open(SELF_EXE)
                .ok()
                .and_then(|mut f| verify::is_static_elf(&mut f))
        });
        if is_static == Some(false) {
            let failure = Failure {
                step: verify::Step::Import,
                message: "this dind-init is dynamically linked, so it cannot run alone in the test image; use the static build (cargo build --release --target x86_64-unknown-linux-musl)".into(),
                ours: true,
            };
            return Some(self.failed(failure, Duration::ZERO, now));
        }
        let tag = self
            .tag
            .get_or_insert_with(|| {
                let version = env!("CARGO_PKG_VERSION");
                fs::File::open(SELF_EXE)
                    .and_then(|mut f| verify::tag_for(version, &mut f))
                    .unwrap_or_else(|_| version.to_owned())
            })
            .clone();
        // Housekeeping on the first check of each dockerd run.
        let tidy = !self.tidied;
        self.tidied = true;
        let (verifier, first) = Verifier::start(&tag, network, tidy, now);
        self.verifier = Some(verifier);
        self.call(to, Purpose::Verify, first, now)
    }

    /// Asks dockerd for its storage driver, unless a call is in flight.
    pub fn query_info(&mut self, to: Target<'_>, now: Instant) -> Option<Outcome> {
        if self.call.is_some() {
            return None;
        }
        let info = verify::Request {
            method: "GET",
            path: "/info".into(),
            body: Body::None,
        };
        self.call(to, Purpose::Info, info, now)
    }

    /// Makes a call; one that cannot even start ends at once.
    fn call(
        &mut self,
        to: Target<'_>,
        purpose: Purpose,
        req: verify::Request,
        now: Instant,
    ) -> Option<Outcome> {
        self.call = None;
        let started = Call::start(
            to.socket,
            req.method,
            &req.path,
            &req.body,
            Path::new(SELF_EXE),
        )
        .and_then(|call| {
            let flags = call.interest();
            Watched::new(to.registry, call, Token::Api, flags).map_err(|(_, e)| e)
        });
        match started {
            Ok(call) => {
                self.call = Some(InFlight {
                    purpose,
                    call,
                    deadline: now + verify::CALL_TIMEOUT,
                    reading: false,
                });
                None
            }
            Err(e) => self.ended(to, purpose, Err(format!("connecting to dockerd: {e}")), now),
        }
    }

    /// dockerd's socket is ready for the call in flight.
    pub fn on_event(&mut self, to: Target<'_>, now: Instant) -> Option<Outcome> {
        let flight = self.call.as_mut()?;
        let purpose = flight.purpose;
        match flight.call.get_mut().on_event() {
            Progress::Pending => {
                let reading = flight.call.get().interest() == EventFlags::IN;
                if reading != flight.reading {
                    flight.reading = reading;
                    if let Err(e) = flight.call.set(flight.call.get().interest()) {
                        self.call = None;
                        return self.ended(to, purpose, Err(format!("epoll: {e}")), now);
                    }
                }
                None
            }
            Progress::Done(answer) => {
                self.call = None;
                self.ended(to, purpose, Ok(answer), now)
            }
            Progress::Failed(why) => {
                self.call = None;
                self.ended(to, purpose, Err(why), now)
            }
        }
    }

    /// A call ended.
    fn ended(
        &mut self,
        to: Target<'_>,
        purpose: Purpose,
        result: Result<Answer, String>,
        now: Instant,
    ) -> Option<Outcome> {
        match purpose {
            Purpose::Info => {
                let driver = result.ok().filter(|a| a.status == 200).and_then(|a| {
                    serde_json::from_slice::<serde_json::Value>(&a.body)
                        .ok()
                        .and_then(|v| v.get("Driver").and_then(|d| d.as_str()).map(str::to_owned))
                });
                Some(Outcome::Driver(driver))
            }
            Purpose::Verify => {
                let verifier = self.verifier.as_mut()?;
                match verifier.next(result, now) {
                    Next::Call(req) => self.call(to, Purpose::Verify, req, now),
                    Next::Done(result) => {
                        let took = now.saturating_duration_since(verifier.started);
                        let steps = verifier.timings();
                        self.verifier = None;
                        Some(match result {
                            Ok(()) => {
                                self.backoff.reset();
                                Outcome::Verified(took, steps)
                            }
                            Err(failure) => self.failed(failure, took, now),
                        })
                    }
                }
            }
        }
    }

    fn failed(&mut self, failure: Failure, took: Duration, now: Instant) -> Outcome {
        let retry = self.backoff.take();
        self.retry_at = Some(now + retry);
        Outcome::Failed {
            failure,
            took,
            retry,
        }
    }

    /// Handles the call's time limit and the retry.
    pub fn on_time(&mut self, to: Target<'_>, now: Instant) -> Option<Outcome> {
        if self.call.as_ref().is_some_and(|c| c.deadline <= now) {
            if let Some(c) = self.call.take() {
                let why = format!(
                    "no answer within {}",
                    crate::config::format_duration(verify::CALL_TIMEOUT)
                );
                return self.ended(to, c.purpose, Err(why), now);
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            return Some(Outcome::RetryDue);
        }
        None
    }

    pub fn deadline(&self) -> Option<Instant> {
        [self.call.as_ref().map(|c| c.deadline), self.retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Drops the call and the check (dockerd is gone, or the init is stopping).
    pub fn cancel(&mut self) {
        self.call = None;
        self.verifier = None;
        self.retry_at = None;
    }

    /// A new dockerd run: checks start again from the first delay, and its first
    /// check tidies up.
    pub fn new_run(&mut self) {
        self.cancel();
        self.backoff.reset();
        self.tidied = false;
    }
}
