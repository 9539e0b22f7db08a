//! The shutdown sequence (SPEC §9): a pure state machine of stages and one
//! deadline, whatever started it (a signal, COMMAND's exit, or dockerd giving up
//! without COMMAND).
//!
//! 1. `Main`: the shutdown signal went to COMMAND's process group and SIGTERM to
//!    dockerd (the loop does that when it begins); wait for both, up to
//!    `dockerd.stop_timeout`, then SIGKILL them.
//! 2. `Remaining`: SIGTERM to every remaining descendant (so a grandchild that
//!    traps TERM runs its trap), then wait until none is left, within the same
//!    budget (at least [`MIN_REMAINING_GRACE`]).
//! 3. `Killed`: SIGKILL to whatever is still there; wait [`AFTER_KILL_GRACE`] for
//!    the reaps; done.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// Stage 2 gets at least this long after SIGTERM before SIGKILL, even when the stop
/// budget is already spent (a trap needs a moment to run).
pub const MIN_REMAINING_GRACE: Duration = Duration::from_millis(500);

/// After SIGKILL to everyone, how long to wait for the last reaps before exiting
/// anyway (a process in uninterruptible sleep cannot be reaped until it wakes).
pub const AFTER_KILL_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Main,
    Remaining,
    Killed,
    Done,
}

/// One step for the loop to carry out; then it asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// SIGKILL COMMAND's group and dockerd: the stop timeout ran out.
    KillMain,
    /// Send this signal to every remaining descendant, then reap.
    SignalRemaining(Signal),
    /// Processes are left after SIGKILL and its grace: exit anyway.
    Abandon,
    /// Everything is gone: exit.
    Finish,
}

#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    started: Instant,
    stage: Stage,
    deadline: Instant,
    stop_timeout: Duration,
    /// The signal that asked for the shutdown, if one did.
    signal: Option<Signal>,
    main_killed: bool,
}

impl Shutdown {
    pub fn begin(now: Instant, signal: Option<Signal>, stop_timeout: Duration) -> Self {
        Shutdown {
            started: now,
            stage: Stage::Main,
            deadline: now + stop_timeout,
            stop_timeout,
            signal,
            main_killed: false,
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn signal(&self) -> Option<Signal> {
        self.signal
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    pub fn deadline(&self) -> Option<Instant> {
        (self.stage != Stage::Done).then_some(self.deadline)
    }

    /// The next step, given whether COMMAND or dockerd still runs and whether any
    /// child is left; `None` when there is nothing to do until something changes
    /// or the deadline comes.
    pub fn step(&mut self, now: Instant, main_running: bool, children_left: bool) -> Option<Step> {
        let due = now >= self.deadline;
        match self.stage {
            Stage::Main => {
                if main_running && !due {
                    return None;
                }
                if main_running && !self.main_killed {
                    self.main_killed = true;
                    return Some(Step::KillMain);
                }
                self.stage = Stage::Remaining;
                self.deadline = (self.started + self.stop_timeout).max(now + MIN_REMAINING_GRACE);
                Some(Step::SignalRemaining(Signal::SIGTERM))
            }
            Stage::Remaining => {
                if !children_left {
                    self.stage = Stage::Done;
                    Some(Step::Finish)
                } else if due {
                    self.stage = Stage::Killed;
                    self.deadline = now + AFTER_KILL_GRACE;
                    Some(Step::SignalRemaining(Signal::SIGKILL))
                } else {
                    None
                }
            }
            Stage::Killed => {
                if !children_left {
                    self.stage = Stage::Done;
                    Some(Step::Finish)
                } else if due {
                    self.stage = Stage::Done;
                    Some(Step::Abandon)
                } else {
                    None
                }
            }
            Stage::Done => None,
        }
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const STOP: Duration = Duration::from_secs(8);

    /// Runs steps until none is due, as the loop does; `left` says what runs.
    fn steps(sd: &mut Shutdown, now: Instant, main: bool, children: bool) -> Vec<Step> {
        let mut out = Vec::new();
        while let Some(s) = sd.step(now, main, children) {
            out.push(s);
        }
        out
    }

    #[test]
    fn sequence_table() {
        let t0 = Instant::now();
        // (main running, children left, at time, steps)
        let cases: Vec<(bool, bool, Duration, Vec<Step>)> = vec![
            // Everything exited at once.
            (
                false,
                false,
                Duration::ZERO,
                vec![Step::SignalRemaining(Signal::SIGTERM), Step::Finish],
            ),
            // dockerd still stopping, within the budget: wait.
            (true, true, Duration::from_secs(1), vec![]),
            // The budget ran out: kill, then TERM the rest.
            (
                true,
                true,
                STOP,
                vec![Step::KillMain, Step::SignalRemaining(Signal::SIGTERM)],
            ),
            // Main gone, a descendant still there: TERM, then wait.
            (
                false,
                true,
                Duration::ZERO,
                vec![Step::SignalRemaining(Signal::SIGTERM)],
            ),
        ];
        for (main, children, at, want) in cases {
            let mut sd = Shutdown::begin(t0, Some(Signal::SIGTERM), STOP);
            assert_eq!(
                steps(&mut sd, t0 + at, main, children),
                want,
                "{main} {children} {at:?}"
            );
        }
    }

    #[test]
    fn remaining_gets_a_minimum_grace_then_sigkill_then_gives_up() {
        let t0 = Instant::now();
        let mut sd = Shutdown::begin(t0, None, STOP);
        // Main took the whole budget: the rest still get the minimum grace.
        let t1 = t0 + STOP;
        steps(&mut sd, t1, true, true);
        assert_eq!(sd.deadline(), Some(t1 + MIN_REMAINING_GRACE));
        assert!(steps(&mut sd, t1 + MIN_REMAINING_GRACE / 2, false, true).is_empty());
        let t2 = t1 + MIN_REMAINING_GRACE;
        assert_eq!(
            steps(&mut sd, t2, false, true),
            vec![Step::SignalRemaining(Signal::SIGKILL)]
        );
        assert_eq!(sd.deadline(), Some(t2 + AFTER_KILL_GRACE));
        assert_eq!(
            steps(&mut sd, t2 + AFTER_KILL_GRACE, false, true),
            vec![Step::Abandon]
        );
        assert!(sd.is_done());
        assert_eq!(sd.deadline(), None);
    }

    #[test]
    fn remaining_that_leave_in_time_finish_it() {
        let t0 = Instant::now();
        let mut sd = Shutdown::begin(t0, None, STOP);
        steps(&mut sd, t0, false, true);
        assert_eq!(sd.deadline(), Some(t0 + STOP));
        assert_eq!(
            steps(&mut sd, t0 + STOP / 2, false, false),
            vec![Step::Finish]
        );
        assert!(sd.is_done());
    }
}
