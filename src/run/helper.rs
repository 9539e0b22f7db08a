//! Helper processes the event loop runs without waiting for them: the iptables
//! commands of the nested-network setup (`network::RulesJob`). Each is a child of
//! the init like any other: its stderr is a pipe watched by the poller, its exit
//! comes through the reaper, its time limit is a deadline of the loop. While one
//! runs (or hangs), orphans are still reaped, signals handled and clients answered.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustix::event::epoll::EventFlags;

use crate::prepare::network::{self, Ran, RulesJob, RulesOutcome, COMMAND_TIMEOUT};
use crate::sys::poller::{Registry, Token, Watched};
use crate::sys::reaper::ExitStatus;
use crate::sys::spawn::{self, Spec};

/// The one helper child running now.
#[derive(Debug)]
struct Child {
    pid: i32,
    stderr: Option<Watched<OwnedFd>>,
    text: Vec<u8>,
    deadline: Instant,
}

/// The latest `CAP` pids of some kind the loop must recognise when the reaper
/// collects them, or must not wait for: when full, the oldest makes room.
#[derive(Debug, Default)]
pub struct RecentPids<const CAP: usize>(Vec<i32>);

/// Helpers killed (at their time limit, or because the init is stopping) and not
/// reaped yet: their exits are helpers', not orphans' (`orphans_reaped` in `status`
/// and the metrics). The one list of them, owned by the event loop rather than by the
/// job that killed them, because a killed helper is often reaped after its job ended.
///
/// A SIGKILLed child is reaped soon, and keeps its pid until then, so an entry cannot
/// come to name another process; only a helper stuck in the kernel (uninterruptible
/// sleep) stays. The list is bounded for those: when it is full the oldest entry, the
/// likeliest to be stuck for good, makes room (at worst its exit, if it ever comes,
/// counts as an orphan's).
pub type KilledHelpers = RecentPids<64>;

impl<const CAP: usize> RecentPids<CAP> {
    /// How many are remembered.
    const CAP: usize = CAP;

    /// Remembers `pid`, forgetting the oldest when full.
    pub fn push(&mut self, pid: i32) {
        if self.0.len() >= Self::CAP {
            self.0.remove(0);
        }
        self.0.push(pid);
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.0.contains(&pid)
    }

    /// The reaper collected `pid`: whether it was a killed helper (then forgotten).
    pub fn reaped(&mut self, pid: i32) -> bool {
        let Some(i) = self.0.iter().position(|p| *p == pid) else {
            return false;
        };
        self.0.remove(i);
        true
    }
}

/// A rules job in progress.
#[derive(Debug)]
pub struct NetworkRun {
    job: RulesJob,
    child: Option<Child>,
    done: bool,
}

impl NetworkRun {
    /// Starts the job's first command.
    pub fn start(job: RulesJob, registry: &Registry, now: Instant) -> NetworkRun {
        let mut run = NetworkRun {
            job,
            child: None,
            done: false,
        };
        run.advance(None, registry, now);
        run
    }

    /// Runs the job's next command, given how the last ended; commands that cannot
    /// even be started are judged at once.
    fn advance(&mut self, mut last: Option<Ran>, registry: &Registry, now: Instant) {
        loop {
            let Some(args) = self.job.step(last.take(), now) else {
                self.done = true;
                return;
            };
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            let program = self.job.program().to_path_buf();
            match spawn::spawn(&Spec::helper(program.as_os_str(), &args)) {
                Ok(s) => {
                    let stderr = s.stderr.and_then(|fd| {
                        // Unwatched, its text is lost but the exit still counts.
                        Watched::new(registry, fd, Token::Helper, EventFlags::IN).ok()
                    });
                    self.child = Some(Child {
                        pid: s.pid,
                        stderr,
                        text: Vec::new(),
                        deadline: now + COMMAND_TIMEOUT,
                    });
                    return;
                }
                Err(e) => {
                    last = Some(Ran::Failed(format!(
                        "cannot run {}: {e}",
                        program.display()
                    )));
                }
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn outcome(&self) -> &RulesOutcome {
        self.job.outcome()
    }

    /// The running helper's pid.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Its stderr is readable.
    pub fn on_stderr(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(fd) = &child.stderr {
                if network::drain(fd.get(), &mut child.text) {
                    child.stderr = None;
                }
            }
        }
    }

    /// The reaper collected `pid`: returns false when it is not this job's running
    /// child (a helper it killed is in [`KilledHelpers`]).
    pub fn on_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        if self.pid() != Some(pid) {
            return false;
        }
        if let Some(mut child) = self.child.take() {
            // Everything it wrote is in the pipe by now.
            if let Some(fd) = &child.stderr {
                network::drain(fd.get(), &mut child.text);
            }
            let ran = Ran::from_exit(status, &child.text);
            self.advance(Some(ran), registry, now);
        }
        true
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.child.as_ref().map(|c| c.deadline)
    }

    /// A helper past its time limit is killed (the reaper collects it; `killed`
    /// tells its exit from an orphan's) and the job moves on, judging it timed out.
    pub fn on_time(&mut self, registry: &Registry, now: Instant, killed: &mut KilledHelpers) {
        if self.child.as_ref().is_some_and(|c| c.deadline <= now) {
            if let Some(child) = self.child.take() {
                let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
                killed.push(child.pid);
                self.advance(Some(Ran::TimedOut), registry, now);
            }
        }
    }

    /// The init is stopping: kill the running helper (into `killed`), skip the rest.
    pub fn abandon(&mut self, killed: &mut KilledHelpers) {
        if let Some(child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
            killed.push(child.pid);
        }
        self.job.abandon("the init is stopping");
        self.done = true;
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn killed_helpers_are_forgotten_when_reaped_and_oldest_first_when_full() {
        let mut k = KilledHelpers::default();
        for pid in 1..=KilledHelpers::CAP as i32 + 2 {
            k.push(pid);
        }
        // (pid, is it a killed helper's exit)
        let table = [
            (1, false), // made room for the 65th
            (2, false), // and for the 66th
            (3, true),
            (3, false), // once only
            (66, true),
            (64, true),
            (67, false),
        ];
        for (pid, want) in table {
            assert_eq!(k.reaped(pid), want, "{pid}");
        }
        assert_eq!(k.0.len(), KilledHelpers::CAP - 3);
    }
}
