//! Stale state that would stop dockerd from starting (SPEC §7), removed before each
//! start with each removal logged: pid files of dead dockerds, a containerd pid
//! file that names no live containerd, sockets nothing accepts on, and, in gVisor,
//! the network links a killed dockerd left behind. Also finds a containerd left
//! running by a killed dockerd (the event loop stops it before the next start).
//!
//! Everything here is a few file reads, one non-blocking connect per socket and a
//! netlink dump: it never waits for a process and never blocks.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use tracing::{info, warn};

use crate::prepare::args::option_value;
use crate::prepare::launch::Launch;
use crate::prepare::storage;
use crate::sys::netlink;
use crate::sys::procfs;

/// dockerd's default exec root (where containerd's pid file and socket live).
pub const DEFAULT_EXEC_ROOT: &str = "/var/run/docker";
/// dockerd's default pid file.
pub const DEFAULT_PID_FILE: &str = "/var/run/docker.pid";
/// The system containerd socket that dockerd 20.10 adopts when it merely exists.
pub const SYSTEM_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";

/// Removes `path` if it is a pid file that does not name a live `name`.
fn clean_pid_file(path: &Path, name: &str) {
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    let pid = text.trim().parse::<i32>().ok();
    if pid.is_some_and(|p| p > 0 && procfs::is_live_named(p, name)) {
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
pub fn clean(launch: &Launch) {
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
    let store = storage::data_root(&launch.args).join("network/files/local-kv.db");
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
    procfs::pids()
        .into_iter()
        .filter(|&pid| {
            procfs::stat(pid)
                .is_some_and(|s| s.name == "containerd" && s.ppid == init_pid && s.state != 'Z')
        })
        .collect()
}
