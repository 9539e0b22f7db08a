//! Starting child processes: the one place that starts programs, for dockerd,
//! COMMAND and helper processes (iptables, openssl) alike.
//!
//! Every child starts in its own process group, with default signal dispositions
//! and an empty signal mask (the init blocks and ignores signals for itself, and
//! exec keeps both: signal(7) "Execution of execve"), with the init's environment
//! minus `NOTIFY_SOCKET` (the init is the one that talks to the supervisor above;
//! SPEC §8) plus what the caller adds. COMMAND also gets the terminal when the init
//! has one: it becomes the terminal's foreground process group (tcsetpgrp(3)), so
//! Ctrl-C and job control reach it as they would in a shell.
//!
//! The static (musl) build starts children through posix_spawn(3), which musl
//! implements with `clone(CLONE_VM | CLONE_VFORK)`: the child borrows the init's
//! memory until it execs, so no address space is copied. Its attributes do the
//! child-side work: every signal to its default, an empty mask, a new process
//! group; file actions put /dev/null and the pipes on 0, 1 and 2. In gVisor, where
//! a fork builds a whole new address space in the sandbox's kernel, this saves
//! about a quarter of the time from the init's start to dockerd's exec (README,
//! design notes). Where posix_spawn cannot give that clean start (COMMAND handed
//! the terminal, which needs tcsetpgrp(3) in the child; libc's reserved signals
//! not at their default; a glibc build), std's `Command` forks and does the work
//! in `pre_exec`, where only async-signal-safe calls are allowed
//! ([`crate::sys::signals::reset_for_exec`]). Either way, pipes are made with
//! their read end non-blocking before the child exists, so that nothing can fail
//! after it does, and this module never waits for a child: the reaper does (musl's
//! posix_spawn itself reaps a child whose exec failed, before it returns the error).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::unistd::Pid;
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

/// A pipe for `out`: the parent's non-blocking read end and the child's write end.
fn pipe(out: Output) -> io::Result<(Option<OwnedFd>, Option<OwnedFd>)> {
    Ok(match out {
        Output::Pipe => {
            let (read, write) = pipe_with(PipeFlags::CLOEXEC)?;
            // Only the read end: the child's end stays blocking (O_NONBLOCK lives
            // in the open file description, which the write end does not share).
            rustix::io::ioctl_fionbio(&read, true)?;
            (Some(read), Some(above_stdio(write)?))
        }
        Output::Null | Output::Inherit => (None, None),
    })
}

/// `fd`, or a close-on-exec copy of it above 2 when it is 0, 1 or 2 itself: that
/// happens only when the init's own stdin, stdout or stderr is closed (main.rs
/// reopens them on /dev/null at start, unless even that failed). A child's 0, 1
/// and 2 are then made by dup2 in order without one overwriting another's source.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// Starts `spec`. Errors are the exec's (ENOENT, EACCES, ENOEXEC...), or the
/// pipes' or the clone's; no child is left behind by an error.
pub fn spawn(spec: &Spec<'_>) -> io::Result<Spawned> {
    let terminal = spec.take_terminal && rustix::termios::isatty(rustix::stdio::stdin());
    let (via, spawned) = if terminal || !posix_spawn_starts_clean() {
        ("fork", fork_exec(spec, terminal)?)
    } else {
        ("posix_spawn", posix_spawn(spec)?)
    };
    tracing::debug!(pid = spawned.pid, program = %spec.program.to_string_lossy(), via, "spawned");
    Ok(spawned)
}

/// Whether posix_spawn(3) gives the child every signal at its default. musl's
/// does, as long as the signals it reserves (32 to 34) are at their default in
/// the init (nothing in the init installs a handler for them, but its parent may
/// have left them ignored). glibc's never does: its child sets its reserved
/// signals (32, 33) to ignored, and exec keeps that; so a glibc build (the tests'
/// debug build) always forks. Read once: the init never changes those signals after
/// boot, and every spawn (dockerd, each iptables helper) would ask again.
fn posix_spawn_starts_clean() -> bool {
    static CLEAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CLEAN.get_or_init(|| cfg!(target_env = "musl") && signals::reserved_signals_at_default())
}

/// The environment a child gets: the init's, minus `NOTIFY_SOCKET`, with
/// `spec.env` added or replacing; a name `spec.env` gives twice keeps its last value
/// (as std's `Command` does: dockerd's own entries come first, the user's
/// `dockerd.env` after them). Each name appears once: Go, for one, would take the
/// first of two.
fn environment(spec: &Spec<'_>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != "NOTIFY_SOCKET" && !spec.env.iter().any(|(o, _)| o == k))
        .collect();
    for (i, (k, v)) in spec.env.iter().enumerate() {
        if !spec.env[i + 1..].iter().any(|(later, _)| later == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    env
}

/// The PATH searched when a child's environment has none: Docker's default (also the
/// init's own search for dockerd at boot, so that what boot found is what starts).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether `path` can be executed. `Err(None)`: nothing there (ENOENT, or a path
/// through a file: ENOTDIR); `Err(Some(why))`: there but not executable (not
/// executable, a directory, refused by stat).
pub fn check_executable(path: &Path) -> Result<(), Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            return Err(None)
        }
        Err(e) => return Err(Some(e.to_string())),
    };
    if meta.is_dir() {
        return Err(Some("is a directory".to_owned()));
    }
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK)
        .map_err(|e| Some(io::Error::from(e).to_string()))
}

/// What a search of a `PATH` for a program name found, by execvp(3)'s rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Searched {
    /// The first candidate [`check_executable`] accepts.
    Found(PathBuf),
    /// None can be run, but this one (the first) exists: exec's EACCES (126).
    Refused { path: PathBuf, why: String },
    /// No candidate exists: exec's ENOENT (127).
    Missing,
}

/// Searches `path_env` (`default_path` when unset; an empty entry is the current
/// directory) for the name `program` (no slash) as execvp(3) does: a candidate that
/// exists but cannot be run is remembered and the search goes on.
pub fn search_path(program: &OsStr, path_env: Option<&OsStr>, default_path: &str) -> Searched {
    let mut refused = None;
    for dir in path_env
        .unwrap_or(OsStr::new(default_path))
        .as_bytes()
        .split(|b| *b == b':')
    {
        let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
        let candidate = Path::new(OsStr::from_bytes(dir)).join(program);
        match check_executable(&candidate) {
            Ok(()) => return Searched::Found(candidate),
            Err(Some(why)) if refused.is_none() => refused = Some((candidate, why)),
            Err(_) => {}
        }
    }
    match refused {
        Some((path, why)) => Searched::Refused { path, why },
        None => Searched::Missing,
    }
}

/// `program` as execvp(3) finds it: as it is when it has a slash (exec judges it),
/// else by [`search_path`] in the child's `PATH` ([`DEFAULT_PATH`] when it has none).
/// ENOENT when no candidate exists, EACCES when some exist but none can be executed
/// (exec's 126, not 127).
fn resolve(program: &OsStr, path: Option<&OsStr>) -> io::Result<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    if program.is_empty() {
        return Err(io::Error::from_raw_os_error(nix::libc::ENOENT));
    }
    match search_path(program, path, DEFAULT_PATH) {
        Searched::Found(p) => Ok(p),
        Searched::Refused { .. } => Err(io::Error::from_raw_os_error(nix::libc::EACCES)),
        Searched::Missing => Err(io::Error::from_raw_os_error(nix::libc::ENOENT)),
    }
}

/// The file `spec` execs: [`resolve`] in the PATH of the environment the child gets.
/// After a failed spawn it tells which file exec was given (boot's diagnosis of
/// dockerd's exec error reads that file's header).
pub fn resolved(spec: &Spec<'_>) -> io::Result<PathBuf> {
    resolve_in(spec.program, &environment(spec))
}

/// [`resolve`] in the PATH of the child's environment `env`.
fn resolve_in(program: &OsStr, env: &[(OsString, OsString)]) -> io::Result<PathBuf> {
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    resolve(program, path_var)
}

/// A C string for exec; a NUL inside is EINVAL, as exec would have it.
fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))
}

/// posix_spawn(3) with every signal at its default, an empty mask and a new
/// process group; stdin, stdout and stderr as `spec` asks.
fn posix_spawn(spec: &Spec<'_>) -> io::Result<Spawned> {
    let env = environment(spec);
    let program = c_string(resolve_in(spec.program, &env)?.into_os_string().into_vec())?;
    let mut argv = Vec::with_capacity(spec.args.len() + 1);
    argv.push(c_string(spec.program.as_bytes().to_vec())?);
    for a in spec.args {
        argv.push(c_string(a.as_bytes().to_vec())?);
    }
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k.into_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        envp.push(c_string(kv)?);
    }

    let (stdout, child_out) = pipe(spec.stdout)?;
    let (stderr, child_err) = pipe(spec.stderr)?;
    // /dev/null, when a stream goes there: opened before the child exists, so its
    // side has nothing left that can fail but the exec; close-on-exec, so only the
    // dup2'd copies reach the program.
    let wants_null =
        spec.stdin == Input::Null || spec.stdout == Output::Null || spec.stderr == Output::Null;
    let null = if wants_null {
        Some(above_stdio(rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?)?)
    } else {
        None
    };
    // The sources of 0, 1 and 2, each above 2 (see `above_stdio`), so no dup2 can
    // overwrite the source of a later one.
    let sources = [
        match spec.stdin {
            Input::Null => null.as_ref(),
            Input::Inherit => None,
        },
        match spec.stdout {
            Output::Null => null.as_ref(),
            Output::Pipe => child_out.as_ref(),
            Output::Inherit => None,
        },
        match spec.stderr {
            Output::Null => null.as_ref(),
            Output::Pipe => child_err.as_ref(),
            Output::Inherit => None,
        },
    ];
    let mut actions = PosixSpawnFileActions::init()?;
    for (target, source) in sources.iter().enumerate() {
        if let Some(fd) = source {
            actions.add_dup2(fd.as_raw_fd(), target as i32)?;
        }
    }
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )?;
    attr.set_sigdefault(&SigSet::all())?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_pgroup(Pid::from_raw(0))?;
    // Returns once the child has exec'd, or with the exec's error (musl passes it
    // back through a close-on-exec pipe and reaps the failed child itself).
    let pid = nix::spawn::posix_spawn(program.as_c_str(), &actions, &attr, &argv, &envp)?;
    // The parent's copies of the write ends go now, so the read ends see EOF once
    // the child (and whoever inherited them) is gone.
    drop((child_out, child_err, null));
    Ok(Spawned {
        pid: pid.as_raw(),
        stdout,
        stderr,
    })
}

/// std's fork and exec, with the signals reset between the two and, for COMMAND
/// when the init has a terminal, the terminal handed to the child's group.
fn fork_exec(spec: &Spec<'_>, take_terminal: bool) -> io::Result<Spawned> {
    let (stdout, child_out) = pipe(spec.stdout)?;
    let (stderr, child_err) = pipe(spec.stderr)?;
    let stdio = |out: Output, write: Option<OwnedFd>| match (out, write) {
        (_, Some(write)) => Stdio::from(write),
        (Output::Null, None) => Stdio::null(),
        (_, None) => Stdio::inherit(),
    };
    // The same search as posix_spawn's (`resolve` in the child's PATH, Docker's default
    // when it has none), not libc's execvp, whose default list differs (glibc:
    // /bin:/usr/bin): both ways must find the same file, and boot's diagnosis of a
    // failed exec looks at that file.
    let mut cmd = Command::new(resolved(spec)?);
    cmd.arg0(spec.program)
        .args(spec.args)
        .env_remove("NOTIFY_SOCKET")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(match spec.stdin {
            Input::Null => Stdio::null(),
            Input::Inherit => Stdio::inherit(),
        })
        .stdout(stdio(spec.stdout, child_out))
        .stderr(stdio(spec.stderr, child_err))
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
    // `cmd` closes the parent's copies of the pipes' write ends.
    let child = cmd.spawn()?;
    drop(cmd);
    Ok(Spawned {
        pid: child.id() as i32,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("dind-init-spawn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    fn errno(r: io::Result<PathBuf>) -> i32 {
        r.unwrap_err().raw_os_error().unwrap()
    }

    #[test]
    fn resolve_searches_the_path_as_execvp_does() {
        let d = dir("resolve");
        let (a, b) = (d.0.join("a"), d.0.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        file(&a.join("tool"), 0o644); // not executable: skipped
        file(&b.join("tool"), 0o755);
        std::fs::create_dir_all(a.join("sub")).unwrap(); // a directory: skipped
        file(&b.join("sub"), 0o755);
        let path = std::env::join_paths([&a, &b]).unwrap();
        let cases: &[(&str, Result<PathBuf, i32>)] = &[
            ("tool", Ok(b.join("tool"))),
            ("sub", Ok(b.join("sub"))),
            ("missing", Err(nix::libc::ENOENT)),
            ("", Err(nix::libc::ENOENT)),
            // A slash: taken as it is, whether it exists or not (exec says).
            ("./x/tool", Ok(PathBuf::from("./x/tool"))),
            ("/no/such", Ok(PathBuf::from("/no/such"))),
        ];
        for (program, want) in cases {
            let got = resolve(OsStr::new(program), Some(&path));
            match want {
                Ok(p) => assert_eq!(got.unwrap(), *p, "{program}"),
                Err(e) => assert_eq!(errno(got), *e, "{program}"),
            }
        }
    }

    #[test]
    fn resolve_says_eacces_when_only_unexecutable_files_match() {
        // As root, access(X_OK) is granted when any execute bit is set, so a file
        // without any is refused for root too.
        let d = dir("eacces");
        file(&d.0.join("tool"), 0o644);
        std::fs::create_dir_all(d.0.join("onlydir")).unwrap();
        let path = d.0.clone().into_os_string();
        for program in ["tool", "onlydir"] {
            let got = resolve(OsStr::new(program), Some(&path));
            assert_eq!(errno(got), nix::libc::EACCES, "{program}");
        }
    }

    #[test]
    fn resolve_without_path_uses_dockers_default() {
        let got = resolve(OsStr::new("sh"), None).unwrap();
        let first = DEFAULT_PATH
            .split(':')
            .map(|d| Path::new(d).join("sh"))
            .find(|p| check_executable(p).is_ok())
            .unwrap();
        assert_eq!(got, first);
    }

    #[test]
    fn environment_drops_notify_socket_and_lets_the_caller_replace() {
        let env = [
            (OsString::from("PATH"), OsString::from("/only/here")),
            (
                OsString::from("DIND_INIT_SPAWN_TEST"),
                OsString::from("first"),
            ),
            (OsString::from("DIND_INIT_SPAWN_TEST"), OsString::from("1")),
        ];
        let spec = Spec {
            env: &env,
            ..Spec::helper(OsStr::new("x"), &[])
        };
        let got = environment(&spec);
        let paths: Vec<_> = got.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths.len(), 1, "{got:?}");
        assert_eq!(paths[0].1, "/only/here");
        let ours: Vec<_> = got
            .iter()
            .filter(|(k, _)| k == "DIND_INIT_SPAWN_TEST")
            .collect();
        assert_eq!(ours.len(), 1, "a name given twice appears once: {got:?}");
        assert_eq!(ours[0].1, "1", "the last value wins");
        assert!(!got.iter().any(|(k, _)| k == "NOTIFY_SOCKET"));
    }

    #[test]
    fn a_spawned_child_gets_its_output_pipe_and_exit_errors_come_back() {
        let args = [
            OsString::from("-c"),
            OsString::from("echo out; echo err >&2"),
        ];
        let mut spec = Spec::helper(OsStr::new("sh"), &args);
        spec.stdout = Output::Pipe;
        let child = spawn(&spec).unwrap();
        let status = rustix::process::waitpid(
            Some(rustix::process::Pid::from_raw(child.pid).unwrap()),
            rustix::process::WaitOptions::empty(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(status.1.exit_status(), Some(0));
        let read = |fd: Option<OwnedFd>| {
            let mut f = std::fs::File::from(fd.unwrap());
            let mut s = String::new();
            std::io::Read::read_to_string(&mut f, &mut s).unwrap();
            s
        };
        assert_eq!(read(child.stdout), "out\n");
        assert_eq!(read(child.stderr), "err\n");
        let missing = spawn(&Spec::helper(OsStr::new("/no/such/program"), &[])).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(nix::libc::ENOENT));
    }
}
