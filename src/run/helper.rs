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

/// A rules job in progress.
#[derive(Debug)]
pub struct NetworkRun {
    job: RulesJob,
    child: Option<Child>,
    done: bool,
    /// Helpers killed at their time limit, not reaped yet: their exits are this
    /// job's, not orphans'.
    killed: Vec<i32>,
}

impl NetworkRun {
    /// Starts the job's first command.
    pub fn start(job: RulesJob, registry: &Registry, now: Instant) -> NetworkRun {
        let mut run = NetworkRun {
            job,
            child: None,
            done: false,
            killed: Vec::new(),
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

    /// The reaper collected `pid`: returns false when it is not this job's child.
    pub fn on_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        registry: &Registry,
        now: Instant,
    ) -> bool {
        if let Some(i) = self.killed.iter().position(|p| *p == pid) {
            self.killed.swap_remove(i);
            return true;
        }
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

    /// A helper past its time limit is killed (the reaper collects it) and the job
    /// moves on, judging it timed out.
    pub fn on_time(&mut self, registry: &Registry, now: Instant) {
        if self.child.as_ref().is_some_and(|c| c.deadline <= now) {
            if let Some(child) = self.child.take() {
                let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
                self.killed.push(child.pid);
                self.advance(Some(Ran::TimedOut), registry, now);
            }
        }
    }

    /// Helpers this job killed that were not reaped yet (the job is over; the
    /// loop still tells their exits from orphans').
    pub fn take_killed(&mut self) -> Vec<i32> {
        std::mem::take(&mut self.killed)
    }

    /// The init is stopping: kill the running helper, skip the rest.
    pub fn abandon(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.pid), Signal::SIGKILL);
            self.killed.push(child.pid);
        }
        self.job.abandon("the init is stopping");
        self.done = true;
    }
}
