//! Starting dockerd (SPEC §7): its command line, its environment, its captured
//! output pipes, and the stale state that would stop it from starting.
//!
//! The supervisor decides *when*; this module does the *how*. It never waits for
//! a process (the reaper does) and never blocks: stale-state checks are a few
//! file reads and one non-blocking connect.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use tracing::{info, warn};

use crate::config::Config;
use crate::netlink;
use crate::signals;

/// dockerd's default exec root (where containerd's pid file and socket live).
pub const DEFAULT_EXEC_ROOT: &str = "/var/run/docker";
/// dockerd's default API socket (`unix://` with no path).
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// dockerd's default pid file.
pub const DEFAULT_PID_FILE: &str = "/var/run/docker.pid";
/// The system containerd socket that dockerd 20.10 adopts when it merely exists.
pub const SYSTEM_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// dockerd's full command line and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The unix socket dind-init pings: the last `unix://` host of the user's
    /// `--host`/`-H`, else `dockerd.socket`.
    pub socket: PathBuf,
}

/// Whether `args` set option `names` (as `--x`, `--x=v`, `-H`, `-Hv`).
pub fn has_option(args: &[String], names: &[&str]) -> bool {
    args.iter().any(|a| {
        names.iter().any(|n| {
            a == n
                || a.strip_prefix(n).is_some_and(|rest| rest.starts_with('='))
                || (n.len() == 2 && !n.starts_with("--") && a.starts_with(n))
        })
    })
}

/// The value of option `names` in `args` (`--x=v` or `--x v`), last one wins.
pub fn option_value(args: &[String], names: &[&str]) -> Option<String> {
    option_values(args, names).pop()
}

/// Every value of option `names` in `args` (`--x=v`, `--x v`, and `-Hv` for a
/// one-letter name), in order.
pub fn option_values(args: &[String], names: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(a) = iter.next() {
        for n in names {
            if a == n {
                if let Some(v) = iter.peek() {
                    found.push((*v).clone());
                }
            } else if let Some(v) = a.strip_prefix(n) {
                if let Some(v) = v.strip_prefix('=') {
                    found.push(v.to_owned());
                } else if n.len() == 2 && !n.starts_with("--") && !v.is_empty() {
                    found.push(v.to_owned());
                }
            }
        }
    }
    found
}

/// Builds dockerd's command line: what dind-init adds (`--host`, the shutdown
/// timeout, `--iptables=false --ip6tables=false` in gVisor, what cgroup preparation needs), then
/// `args` from the config, then the docker:dind-style arguments from COMMAND.
/// An option the user gives is never added a second time.
pub fn launch(
    cfg: &Config,
    gvisor: bool,
    cgroup_args: &[String],
    extra: &[OsString],
    notify: &Path,
) -> Launch {
    let mut user: Vec<String> = cfg.dockerd.args.clone();
    user.extend(extra.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut args = Vec::new();
    // dind-init needs a unix socket to ping. The user's hosts win; when none of
    // them is a unix socket (e.g. only `-H tcp://0.0.0.0:2375`), dockerd.socket is
    // added beside them, as docker:dind's entrypoint does.
    let user_unix = option_values(&user, &["--host", "-H"])
        .into_iter()
        .filter_map(|h| {
            h.strip_prefix("unix://").map(|p| match p {
                "" => PathBuf::from(DEFAULT_SOCKET),
                p => PathBuf::from(p),
            })
        })
        .next_back();
    let socket = match user_unix {
        Some(path) => path,
        None => {
            args.push(format!("--host=unix://{}", cfg.dockerd.socket.display()));
            cfg.dockerd.socket.clone()
        }
    };
    if !has_option(&user, &["--shutdown-timeout"]) {
        args.push(format!(
            "--shutdown-timeout={}",
            cfg.dockerd.shutdown_timeout().as_secs()
        ));
    }
    if gvisor && !user.iter().any(|a| a.starts_with("--iptables")) {
        // gVisor's netstack cannot run Docker's rules: dockerd would die (SPEC §7).
        args.push("--iptables=false".to_owned());
    }
    if gvisor && !user.iter().any(|a| a.starts_with("--ip6tables")) {
        // Docker 27+ enables ip6tables by default and gVisor has no ip6 NAT: the
        // failed chain setup costs 1.4-2.9 s of start-up on Docker 28 (measured).
        // Every supported dockerd (20.10 on) knows the flag.
        args.push("--ip6tables=false".to_owned());
    }
    for a in cgroup_args {
        if !user.contains(a) {
            args.push(a.clone());
        }
    }
    args.extend(user);
    let mut env = vec![
        ("container".to_owned(), "docker".to_owned()),
        ("NOTIFY_SOCKET".to_owned(), notify.display().to_string()),
    ];
    env.extend(cfg.dockerd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Launch {
        program: cfg.dockerd.path.clone(),
        args,
        env,
        socket,
    }
}

/// A started dockerd and the read ends of its output pipes (non-blocking).
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Why dockerd could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnFailure {
    pub reason: String,
    /// Exec errors no restart can fix.
    pub permanent: bool,
}

/// Spawns dockerd in its own process group with clean signals, the init's
/// environment minus any inherited NOTIFY_SOCKET, plus `launch.env`; stdin is
/// /dev/null, stdout and stderr are pipes.
pub fn spawn(launch: &Launch) -> Result<Started, SpawnFailure> {
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_remove("NOTIFY_SOCKET")
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (rt_sigaction, sigprocmask); no allocation.
    unsafe {
        cmd.pre_exec(|| {
            signals::reset_for_exec();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_failure(&launch.program, &e))?;
    let pid = child.id() as i32;
    // A dockerd whose output the loop cannot read safely is not kept: it is
    // killed (the reaper collects it) and the start counts as failed, to be
    // retried with the backoff. A blocking pipe would stall PID 1's loop.
    let abandon = |reason: String| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        SpawnFailure {
            reason,
            permanent: false,
        }
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        // Cannot happen with Stdio::piped.
        return Err(abandon("dockerd's output pipes are missing".into()));
    };
    let stdout = OwnedFd::from(out);
    let stderr = OwnedFd::from(err);
    for fd in [&stdout, &stderr] {
        if let Err(e) = rustix::io::ioctl_fionbio(fd, true) {
            return Err(abandon(format!(
                "could not make dockerd's output pipe non-blocking: {e}"
            )));
        }
    }
    // `child` is dropped without waiting: only the reaper waits.
    Ok(Started {
        pid,
        stdout,
        stderr,
    })
}

fn spawn_failure(program: &str, e: &io::Error) -> SpawnFailure {
    match e.kind() {
        io::ErrorKind::NotFound => SpawnFailure {
            reason: format!(
                "dockerd not found: install Docker in the image (looked for `{program}`)"
            ),
            permanent: true,
        },
        io::ErrorKind::PermissionDenied => SpawnFailure {
            reason: format!("dockerd cannot be executed: `{program}`: {e}"),
            permanent: true,
        },
        _ if e.raw_os_error() == Some(Errno::NOEXEC.raw_os_error()) => SpawnFailure {
            reason: format!("dockerd cannot be executed: `{program}`: {e}"),
            permanent: true,
        },
        _ => SpawnFailure {
            reason: format!("could not start dockerd `{program}`: {e}"),
            permanent: false,
        },
    }
}

/// The comm (process name) of `pid`, if it is alive.
fn comm(pid: i32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end().to_owned())
}

/// Whether `pid` is a live, non-zombie process named `name`.
fn is_live(pid: i32, name: &str) -> bool {
    if comm(pid).as_deref() != Some(name) {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_ascii_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// Removes `path` if it is a pid file that does not name a live `name`.
fn clean_pid_file(path: &Path, name: &str) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    let pid = text.trim().parse::<i32>().ok();
    if pid.is_some_and(|p| p > 0 && is_live(p, name)) {
        return;
    }
    match fs::remove_file(path) {
        Ok(()) => info!(path = %path.display(), pid = ?pid, "removed a stale pid file"),
        Err(e) => warn!(path = %path.display(), error = %e, "could not remove a stale pid file"),
    }
}

/// Removes the stale state that stops dockerd from starting (SPEC §7): pid files
/// of dead dockerds, a containerd pid file under the exec root that names no live
/// containerd, and a system containerd socket nobody accepts on.
pub fn clean_stale_state(launch: &Launch) {
    // dockerd's own pid file, and the other docker*.pid files beside it (e.g. a
    // dockerd started earlier with another name). Only that directory is looked
    // at: a pid file elsewhere is not ours to judge.
    let own = PathBuf::from(
        option_value(&launch.args, &["--pidfile", "-p"])
            .unwrap_or_else(|| DEFAULT_PID_FILE.to_owned()),
    );
    let mut pid_files: Vec<PathBuf> = vec![own.clone()];
    if let Some(dir) = own.parent() {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("docker") && name.ends_with(".pid") {
                    pid_files.push(e.path());
                }
            }
        }
    }
    pid_files.sort();
    pid_files.dedup();
    for p in &pid_files {
        clean_pid_file(p, "dockerd");
    }
    let exec_root = option_value(&launch.args, &["--exec-root"])
        .unwrap_or_else(|| DEFAULT_EXEC_ROOT.to_owned());
    clean_pid_file(
        &Path::new(&exec_root).join("containerd/containerd.pid"),
        "containerd",
    );
    clean_dead_socket(Path::new(SYSTEM_CONTAINERD_SOCKET), "containerd socket");
    // A dead API socket would make the start-up ping's ECONNREFUSED ambiguous
    // (stale, or bound and not listening yet); dockerd replaces it anyway.
    clean_dead_socket(&launch.socket, "dockerd API socket");
}

/// dockerd's default data root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/docker";

/// In gVisor before release-20260810, a restarted dockerd dies with `existing
/// interface docker0 is not a bridge`: gVisor's netlink reports no link kind, so
/// dockerd cannot recognise the bridge it made itself (SPEC §7). Before each
/// start in gVisor, when docker0 exists without a kind, this deletes docker0 and
/// every `br-<12 hex>` link and removes the network store (`local-kv.db`), which
/// would recreate them: measured, only all three together let dockerd start.
/// User-defined networks are lost; the log says so. Returns what it removed.
pub fn clean_gvisor_network(launch: &Launch) -> Vec<String> {
    let links = match netlink::links() {
        Ok(links) => links,
        Err(e) => {
            warn!(error = %e, "could not list network links to clean up after dockerd");
            return Vec::new();
        }
    };
    let stale = netlink::stale_docker_links(&links);
    if stale.is_empty() {
        return Vec::new();
    }
    let mut removed = Vec::new();
    for link in stale {
        match netlink::delete_link(link.index) {
            Ok(()) => {
                info!(link = %link.name, "deleted a network link left by the previous dockerd (gVisor reports no link kind)");
                removed.push(link.name.clone());
            }
            Err(e) => {
                warn!(link = %link.name, error = %e, "could not delete a network link left by the previous dockerd")
            }
        }
    }
    let data_root = option_value(&launch.args, &["--data-root", "-g"])
        .unwrap_or_else(|| DEFAULT_DATA_ROOT.to_owned());
    let store = Path::new(&data_root).join("network/files/local-kv.db");
    match fs::remove_file(&store) {
        Ok(()) => {
            info!(path = %store.display(), "removed dockerd's network store");
            removed.push(store.display().to_string());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %store.display(), error = %e, "could not remove dockerd's network store")
        }
    }
    warn!("user-defined networks of the previous dockerd are lost (gVisor cannot keep them across a dockerd restart)");
    removed
}

/// Removes a unix socket file that nothing accepts on.
fn clean_dead_socket(path: &Path, what: &str) {
    if !path.exists() {
        return;
    }
    let Ok(addr) = SocketAddrUnix::new(path) else {
        return;
    };
    let Ok(fd) = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    ) else {
        return;
    };
    if let Err(Errno::CONNREFUSED) = rustix::net::connect(&fd, &addr) {
        match fs::remove_file(path) {
            Ok(()) => info!(path = %path.display(), "removed a {what} nothing listens on"),
            Err(e) => warn!(path = %path.display(), error = %e, "could not remove a dead {what}"),
        }
    }
}

/// containerd processes re-parented to the init (`init_pid`): left running by a
/// dockerd that was killed. They hold dockerd's exec root and must go before the
/// next start.
pub fn leftover_containerd(init_pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map(|(_, n)| n).unwrap_or("");
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if name == "containerd" && ppid == Some(init_pid) && state != "Z" {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn option_detection_table() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["--host=unix:///x"], &["--host", "-H"], true),
            (&["-H", "tcp://0.0.0.0:2375"], &["--host", "-H"], true),
            (&["-Hunix:///x"], &["--host", "-H"], true),
            (&["--hostname-thing"], &["--host", "-H"], false),
            (&["--shutdown-timeout", "3"], &["--shutdown-timeout"], true),
            (&["--debug"], &["--shutdown-timeout"], false),
        ];
        for (args, names, want) in cases {
            assert_eq!(has_option(&v(args), names), *want, "{args:?} {names:?}");
        }
        assert_eq!(
            option_value(&v(&["--exec-root", "/e"]), &["--exec-root"]),
            Some("/e".into())
        );
        assert_eq!(
            option_value(&v(&["--exec-root=/e"]), &["--exec-root"]),
            Some("/e".into())
        );
        assert_eq!(
            option_value(&v(&["-p", "/p.pid"]), &["--pidfile", "-p"]),
            Some("/p.pid".into())
        );
        assert_eq!(option_value(&v(&["--debug"]), &["--exec-root"]), None);
    }

    #[test]
    fn launch_table() {
        let notify = Path::new("/run/dind-init/notify.sock");
        let mut cfg = Config::default();
        let l = launch(&cfg, false, &[], &[], notify);
        assert_eq!(l.program, "dockerd");
        assert_eq!(
            l.args,
            v(&["--host=unix:///var/run/docker.sock", "--shutdown-timeout=6"])
        );
        assert!(l.env.contains(&("container".into(), "docker".into())));
        assert!(l
            .env
            .contains(&("NOTIFY_SOCKET".into(), notify.display().to_string())));

        let l = launch(
            &cfg,
            true,
            &v(&["--exec-opt", "native.cgroupdriver=cgroupfs"]),
            &[],
            notify,
        );
        assert_eq!(
            l.args,
            v(&[
                "--host=unix:///var/run/docker.sock",
                "--shutdown-timeout=6",
                "--iptables=false",
                "--ip6tables=false",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs"
            ])
        );

        cfg.dockerd.args = v(&["-H", "unix:///x.sock", "--iptables=true", "--ip6tables"]);
        let extra = [
            OsString::from("--shutdown-timeout=1"),
            OsString::from("--debug"),
        ];
        let l = launch(&cfg, true, &[], &extra, notify);
        assert_eq!(
            l.args,
            v(&[
                "-H",
                "unix:///x.sock",
                "--iptables=true",
                "--ip6tables",
                "--shutdown-timeout=1",
                "--debug"
            ])
        );
    }

    #[test]
    fn spawn_failures_are_classified() {
        let missing = io::Error::from_raw_os_error(Errno::NOENT.raw_os_error());
        let f = spawn_failure("dockerd", &missing);
        assert!(
            f.permanent
                && f.reason
                    .starts_with("dockerd not found: install Docker in the image"),
            "{f:?}"
        );
        let denied = io::Error::from_raw_os_error(Errno::ACCESS.raw_os_error());
        assert!(spawn_failure("dockerd", &denied).permanent);
        let again = io::Error::from_raw_os_error(Errno::AGAIN.raw_os_error());
        assert!(!spawn_failure("dockerd", &again).permanent);
    }
}
