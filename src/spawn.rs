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

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
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

/// Where exec would find `program`, as execvp(3) looks: the name itself when it
/// contains a `/`, else the first entry of `path` (PATH; musl's default when
/// unset) that holds an executable file of that name. `None` when there is no
/// such file at all (exec would fail with ENOENT: exit 127). A file that exists
/// but cannot be executed is returned too: exec reports that one (126).
pub fn find_program(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if program.is_empty() {
        return None;
    }
    // Only "no such file" means missing: a name exec would refuse for another
    // reason (EACCES, a directory) is left for exec to report (126).
    let missing = |p: &Path| match std::fs::metadata(p) {
        Ok(_) => false,
        Err(e) => {
            let code = e.raw_os_error();
            code == Some(rustix::io::Errno::NOENT.raw_os_error())
                || code == Some(rustix::io::Errno::NOTDIR.raw_os_error())
        }
    };
    if program.as_bytes().contains(&b'/') {
        let p = Path::new(program);
        return (!missing(p)).then(|| p.to_owned());
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/bin:/usr/bin"));
    let mut fallback = None;
    for dir in path.as_bytes().split(|&b| b == b':') {
        // An empty entry means the current directory.
        let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        if missing(&candidate) {
            continue;
        }
        if !candidate.is_file() {
            // A directory, or a name stat refuses (EACCES): exec would say
            // "permission denied", so it is not "not found".
            fallback.get_or_insert(candidate);
            continue;
        }
        if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
            return Some(candidate);
        }
        fallback.get_or_insert(candidate);
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_program_looks_like_execvp() {
        let path = Some(OsStr::new("/nonexistent::/bin"));
        assert_eq!(
            find_program(OsStr::new("sh"), path),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program(OsStr::new("no-such-program-x"), path), None);
        assert_eq!(
            find_program(OsStr::new("/bin/sh"), None),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program(OsStr::new("/nonexistent/sh"), None), None);
        assert_eq!(find_program(OsStr::new(""), path), None);
        // A directory of that name: exec refuses it (EACCES, 126), so it is
        // found, not missing.
        assert_eq!(
            find_program(OsStr::new("bin"), Some(OsStr::new("/"))),
            Some(PathBuf::from("/bin"))
        );
    }
}
