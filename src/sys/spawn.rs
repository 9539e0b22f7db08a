//! Starting child processes: the one place that forks and execs, for dockerd,
//! COMMAND and helper processes (iptables) alike.
//!
//! Every child starts in its own process group, with default signal dispositions
//! and an empty signal mask (the init blocks and ignores signals for itself, and
//! exec keeps both: signal(7) "Execution of execve"), with the init's environment
//! minus `NOTIFY_SOCKET` (the init is the one that talks to the supervisor above;
//! SPEC §8) plus what the caller adds. COMMAND also gets the terminal when the init
//! has one: it becomes the terminal's foreground process group (tcsetpgrp(3)), so
//! Ctrl-C and job control reach it as they would in a shell.
//!
//! The child-side work runs in `pre_exec`, between fork and exec, where only
//! async-signal-safe calls are allowed ([`crate::sys::signals::reset_for_exec`]).
//! Output pipes are made here with their read end non-blocking before the fork,
//! so that nothing can fail after the child exists. This module never waits for
//! a child: only the reaper does.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::pipe::{pipe_with, PipeFlags};

use crate::sys::signals;

/// Where a child's stdin goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Null,
    Inherit,
}

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Null,
    Inherit,
    /// A pipe whose non-blocking read end the caller gets.
    Pipe,
}

/// What to start.
#[derive(Debug)]
pub struct Spec<'a> {
    pub program: &'a OsStr,
    pub args: &'a [OsString],
    /// Added to (or replacing in) the init's environment.
    pub env: &'a [(OsString, OsString)],
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    /// Hand the terminal on stdin (if it is one) to the child's process group.
    pub take_terminal: bool,
}

impl<'a> Spec<'a> {
    /// A helper process: stdin and stdout on /dev/null, stderr piped.
    pub fn helper(program: &'a OsStr, args: &'a [OsString]) -> Self {
        Spec {
            program,
            args,
            env: &[],
            stdin: Input::Null,
            stdout: Output::Null,
            stderr: Output::Pipe,
            take_terminal: false,
        }
    }
}

/// A started child: its pid (also its process group id) and the read ends of
/// the pipes asked for.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// A pipe for `out`: the parent's non-blocking read end and the child's side.
fn output(out: Output) -> io::Result<(Option<OwnedFd>, Stdio)> {
    Ok(match out {
        Output::Null => (None, Stdio::null()),
        Output::Inherit => (None, Stdio::inherit()),
        Output::Pipe => {
            let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
            // Only the read end: the child's end stays blocking (O_NONBLOCK lives
            // in the open file description, which the write end does not share).
            rustix::io::ioctl_fionbio(&read, true)?;
            (Some(read), Stdio::from(write))
        }
    })
}

/// Starts `spec`. Errors are the exec's (ENOENT, EACCES, ENOEXEC...), or the
/// pipes' or fork's; no child is left behind by an error.
pub fn spawn(spec: &Spec<'_>) -> io::Result<Spawned> {
    let (stdout, child_out) = output(spec.stdout)?;
    let (stderr, child_err) = output(spec.stderr)?;
    let take_terminal = spec.take_terminal && rustix::termios::isatty(rustix::stdio::stdin());
    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .env_remove("NOTIFY_SOCKET")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(match spec.stdin {
            Input::Null => Stdio::null(),
            Input::Inherit => Stdio::inherit(),
        })
        .stdout(child_out)
        .stderr(child_err)
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (getpid, tcsetpgrp, rt_sigaction,
    // sigprocmask); it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if take_terminal {
                // SIGTTOU is still blocked here (inherited mask), and the kernel
                // treats a blocked SIGTTOU like an ignored one, so a background
                // group may take the terminal (tty_check_change). Failure (not our
                // controlling terminal) is harmless: the child just does not get it.
                let _ =
                    rustix::termios::tcsetpgrp(rustix::stdio::stdin(), rustix::process::getpid());
            }
            signals::reset_for_exec();
            Ok(())
        });
    }
    // std returns once the child has exec'd (or reports the exec's error); the
    // `Child` handle is dropped without waiting: the reaper reaps it. Dropping
    // `cmd` closes the parent's copies of the pipes' write ends, so their read
    // ends see EOF when the child (and whoever inherited them) is gone.
    let child = cmd.spawn()?;
    drop(cmd);
    Ok(Spawned {
        pid: child.id() as i32,
        stdout,
        stderr,
    })
}
