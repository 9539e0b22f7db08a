//! Starting child processes with the state SPEC §6 and §9 ask for.
//!
//! Every child starts in its own process group, with default signal dispositions
//! and an empty signal mask (the init blocks and ignores signals for itself; exec
//! keeps both, see signal(7) "Execution of execve"). COMMAND also gets the
//! terminal when the init has one: it becomes the terminal's foreground process
//! group (tcsetpgrp(3)), so Ctrl-C and job control reach it as they would in a
//! shell.
//!
//! The child-side work runs in `pre_exec`, between fork and exec, where only
//! async-signal-safe calls are allowed. This module does not wait for children:
//! only the reaper does.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::Error;
use crate::signals;

/// A started child: its pid, which is also its process group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    pub pid: i32,
}

/// Starts COMMAND: own process group, the terminal if stdin is one, clean signals,
/// the init's stdio, and the init's environment minus NOTIFY_SOCKET (the init is
/// the one that talks to the supervisor above; SPEC §8).
pub fn spawn_command(argv: &[OsString]) -> Result<Child, Error> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::SpawnCommand {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let take_terminal = rustix::termios::isatty(rustix::stdio::stdin());
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("NOTIFY_SOCKET").process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (getpid, tcsetpgrp, sigaction, sigprocmask);
    // it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if take_terminal {
                // SIGTTOU is still blocked here (inherited mask), and the kernel
                // treats a blocked SIGTTOU like an ignored one, so a background
                // group may take the terminal (tty_check_change). Failure (not our
                // controlling terminal) is harmless: COMMAND just does not get it.
                let _ =
                    rustix::termios::tcsetpgrp(rustix::stdio::stdin(), rustix::process::getpid());
            }
            signals::reset_for_exec();
            Ok(())
        });
    }
    match cmd.spawn() {
        // The std `Child` handle is dropped without waiting: the reaper reaps it.
        Ok(child) => Ok(Child {
            pid: child.id() as i32,
        }),
        Err(source) => Err(Error::SpawnCommand {
            program: program.to_string_lossy().into_owned(),
            source,
        }),
    }
}
