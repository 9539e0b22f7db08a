//! COMMAND's gate (SPEC §6): when the container's own command starts, and what
//! the init's exit code is. A pure state machine; the loop spawns COMMAND when told.
//!
//! COMMAND starts once dockerd is ready; or, with a warning, after `ready_timeout`;
//! or, with a warning, as soon as dockerd reaches `failed` (it will not become
//! ready) or `degraded` (it answers, but no container can run); or at once without
//! `wait_for_ready`. Without COMMAND, dockerd reaching
//! `failed` means giving up: the init stops and exits 1, so the orchestrator
//! restarts the container. Nothing starts once the init is stopping.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::sys::reaper::ExitStatus;

/// COMMAND's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// No COMMAND was given.
    None,
    /// Not started yet (waiting for dockerd).
    Pending,
    Running(i32),
    /// It exited; the init's exit code follows from this.
    Exited(ExitStatus),
    /// It could not be started; the init exits with this code (127/126).
    SpawnFailed(i32),
}

/// What the loop must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start COMMAND: dockerd is ready, or there is no reason to wait.
    Start,
    /// Start COMMAND although dockerd is not ready, saying why.
    StartAnyway(Why),
    /// dockerd failed and there is no COMMAND: stop, and exit 1.
    GiveUp,
}

/// Why COMMAND starts without a ready dockerd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `ready_timeout` passed.
    Timeout,
    /// dockerd reached `failed`.
    Failed,
    /// dockerd answers, but a test container could not run.
    Degraded,
}

/// dockerd's state as far as the gate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dockerd {
    Ready,
    /// It will not become ready (failed).
    Failed,
    /// It answers, but containers cannot run (it may recover).
    Degraded,
    /// Anything else (starting, restarting, unhealthy...).
    Other,
}

#[derive(Debug, Clone)]
pub struct Gate {
    command: Command,
    wait_for_ready: bool,
    ready_timeout: Duration,
    /// When COMMAND starts anyway.
    gate_at: Option<Instant>,
    stopping: bool,
    gave_up: bool,
}

impl Gate {
    pub fn new(has_command: bool, wait_for_ready: bool, ready_timeout: Duration) -> Self {
        Gate {
            command: if has_command {
                Command::Pending
            } else {
                Command::None
            },
            wait_for_ready,
            ready_timeout,
            gate_at: None,
            stopping: false,
            gave_up: false,
        }
    }

    pub fn command(&self) -> Command {
        self.command
    }

    /// COMMAND's pid while it runs.
    pub fn pid(&self) -> Option<i32> {
        match self.command {
            Command::Running(pid) => Some(pid),
            _ => None,
        }
    }

    /// At boot, after dockerd's first start.
    pub fn boot(&mut self, now: Instant) -> Option<Action> {
        if self.command != Command::Pending {
            return None;
        }
        if self.wait_for_ready {
            self.gate_at = Some(now + self.ready_timeout);
            None
        } else {
            Some(Action::Start)
        }
    }

    /// On each change of dockerd's state.
    pub fn on_state(&mut self, dockerd: Dockerd) -> Option<Action> {
        if self.stopping {
            return None;
        }
        match (dockerd, self.command) {
            (Dockerd::Ready, Command::Pending) => Some(Action::Start),
            (Dockerd::Failed, Command::Pending) => Some(Action::StartAnyway(Why::Failed)),
            // Like failed for COMMAND (SPEC §8); without COMMAND the init stays up
            // and keeps checking.
            (Dockerd::Degraded, Command::Pending) => Some(Action::StartAnyway(Why::Degraded)),
            (Dockerd::Failed, Command::None) => {
                self.gave_up = true;
                Some(Action::GiveUp)
            }
            _ => None,
        }
    }

    /// When `ready_timeout` has passed.
    pub fn on_time(&mut self, now: Instant) -> Option<Action> {
        if self.command == Command::Pending
            && !self.stopping
            && self.gate_at.is_some_and(|t| t <= now)
        {
            self.gate_at = None;
            return Some(Action::StartAnyway(Why::Timeout));
        }
        None
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.command {
            Command::Pending if !self.stopping => self.gate_at,
            _ => None,
        }
    }

    /// Whether COMMAND may be spawned now (the loop asks before it does).
    pub fn may_start(&self) -> bool {
        self.command == Command::Pending && !self.stopping
    }

    pub fn started(&mut self, pid: i32) {
        self.gate_at = None;
        self.command = Command::Running(pid);
    }

    pub fn spawn_failed(&mut self, code: i32) {
        self.gate_at = None;
        self.command = Command::SpawnFailed(code);
    }

    pub fn exited(&mut self, status: ExitStatus) {
        self.command = Command::Exited(status);
    }

    /// The init is stopping: nothing starts any more.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.gate_at = None;
    }

    /// The init's exit code (SPEC §9), given the signal that stopped it, if one did.
    pub fn exit_code(&self, stop_signal: Option<Signal>) -> i32 {
        match self.command {
            Command::Exited(status) => status.as_exit_code(),
            Command::SpawnFailed(code) => code,
            // Killed before its exit was seen: report like a shell would.
            Command::Running(_) => 128 + Signal::SIGKILL as i32,
            // Stopped by signal N before it could start: 128+N, as if it had run.
            Command::Pending => match stop_signal {
                Some(sig) => 128 + sig as i32,
                None => i32::from(self.gave_up),
            },
            Command::None => i32::from(self.gave_up),
        }
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn when_command_starts_table() {
        let t0 = Instant::now();
        // (has COMMAND, wait_for_ready, dockerd's state, at boot, on the state)
        let cases = [
            (true, true, Dockerd::Ready, None, Some(Action::Start)),
            (true, true, Dockerd::Other, None, None),
            (
                true,
                true,
                Dockerd::Failed,
                None,
                Some(Action::StartAnyway(Why::Failed)),
            ),
            (
                true,
                true,
                Dockerd::Degraded,
                None,
                Some(Action::StartAnyway(Why::Degraded)),
            ),
            (false, true, Dockerd::Degraded, None, None),
            (true, false, Dockerd::Other, Some(Action::Start), None),
            (false, true, Dockerd::Ready, None, None),
            (false, true, Dockerd::Failed, None, Some(Action::GiveUp)),
        ];
        for (has, wait, state, at_boot, on_state) in cases {
            let mut g = Gate::new(has, wait, T);
            let boot = g.boot(t0);
            assert_eq!(boot, at_boot, "{has} {wait} {state:?}");
            if boot == Some(Action::Start) {
                g.started(7);
            }
            assert_eq!(g.on_state(state), on_state, "{has} {wait} {state:?}");
        }
    }

    #[test]
    fn ready_timeout_starts_it_anyway_once() {
        let t0 = Instant::now();
        let mut g = Gate::new(true, true, T);
        g.boot(t0);
        assert_eq!(g.deadline(), Some(t0 + T));
        assert_eq!(g.on_time(t0 + T - Duration::from_millis(1)), None);
        assert_eq!(g.on_time(t0 + T), Some(Action::StartAnyway(Why::Timeout)));
        assert_eq!(g.on_time(t0 + T), None);
        g.started(9);
        assert_eq!(g.deadline(), None);
        assert_eq!(g.pid(), Some(9));
        // Already running: ready later starts nothing.
        assert_eq!(g.on_state(Dockerd::Ready), None);
    }

    #[test]
    fn nothing_starts_while_stopping() {
        let t0 = Instant::now();
        let mut g = Gate::new(true, true, T);
        g.boot(t0);
        g.stop();
        assert!(!g.may_start());
        assert_eq!(g.on_state(Dockerd::Ready), None);
        assert_eq!(g.on_time(t0 + T), None);
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn exit_codes_table() {
        let cases = [
            (Command::Exited(ExitStatus::Code(3)), None, false, 3),
            (Command::Exited(ExitStatus::Signal(9)), None, false, 137),
            (Command::SpawnFailed(127), None, false, 127),
            (Command::Running(5), None, false, 137),
            (Command::Pending, Some(Signal::SIGTERM), false, 143),
            (Command::Pending, None, true, 1),
            (Command::None, Some(Signal::SIGTERM), false, 0),
            (Command::None, None, true, 1),
        ];
        for (command, signal, gave_up, want) in cases {
            let g = Gate {
                command,
                wait_for_ready: true,
                ready_timeout: T,
                gate_at: None,
                stopping: true,
                gave_up,
            };
            assert_eq!(
                g.exit_code(signal),
                want,
                "{command:?} {signal:?} {gave_up}"
            );
        }
    }
}
