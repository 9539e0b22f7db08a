//! Best effort (SPEC §5): securityfs (unless AppArmor would then break every `docker
//! run`), `/` made rshared, and the directories of the socket, pid and ready files.

use std::io::{self};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags};
use tracing::info;

use crate::config::Config;
use crate::prepare::environment::{AppArmor, Environment};

use super::*;
use crate::sys::mounts::*;

/// Where securityfs is mounted.
pub const SECURITYFS: &str = "/sys/kernel/security";

/// What to do about securityfs on /sys/kernel/security (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Securityfs {
    /// Nothing to do: mounted already (and harmless), no such directory, or gVisor
    /// (which has no securityfs).
    Leave,
    /// Mount it (best effort): dockerd detects AppArmor through it.
    Mount,
    /// Do not mount it: AppArmor is enabled in the kernel and dockerd has no
    /// `apparmor_parser`, so with securityfs every `docker run` would fail.
    Skip,
    /// Mounted already while AppArmor is enabled and dockerd has no `apparmor_parser`:
    /// every `docker run` fails; `status` and `check` say so, with the fix.
    Warn,
}

/// Decides about securityfs from what was found. Pure.
pub fn securityfs_decision(
    gvisor: bool,
    dir_exists: bool,
    mounted: bool,
    apparmor: &AppArmor,
) -> Securityfs {
    match (gvisor, mounted, apparmor.parser_missing()) {
        (true, _, _) => Securityfs::Leave,
        (false, true, true) => Securityfs::Warn,
        (false, true, false) => Securityfs::Leave,
        (false, false, _) if !dir_exists => Securityfs::Leave,
        (false, false, true) => Securityfs::Skip,
        (false, false, false) => Securityfs::Mount,
    }
}

/// The decision for this system: `visible` mounts, the directory, the environment.
pub fn securityfs_here(visible: &[Mount], env: &Environment) -> Securityfs {
    let dir = Path::new(SECURITYFS);
    securityfs_decision(
        env.gvisor,
        dir.is_dir(),
        mount_at(visible, dir).is_some(),
        &env.apparmor,
    )
}

/// Why securityfs is not mounted ([`Securityfs::Skip`]).
pub fn securityfs_skipped() -> String {
    format!(
        "not mounting securityfs on {SECURITYFS}: AppArmor is enabled in the kernel and \
         apparmor_parser is not on dockerd's PATH, so dockerd would fail every `docker run` \
         (\"AppArmor enabled on system but the docker-default profile could not be loaded\"); \
         without securityfs dockerd sees no AppArmor and starts nested containers without a \
         profile of their own (the outer container keeps its own)"
    )
}

/// The warning of [`Securityfs::Warn`], one line: cause; fix.
pub fn reason_apparmor_parser_missing() -> String {
    format!(
        "AppArmor is enabled in the kernel and securityfs is mounted on {SECURITYFS}, but \
         apparmor_parser is not on dockerd's PATH: dockerd cannot load its docker-default \
         profile, so every `docker run` fails with \"AppArmor enabled on system but the \
         docker-default profile could not be loaded\"; fix: install the apparmor package in \
         the image (it provides apparmor_parser), or run nested containers with \
         --security-opt apparmor=unconfined"
    )
}

/// securityfs on /sys/kernel/security (AppArmor detection in dockerd reads it; not where
/// that would break every `docker run`, see [`Securityfs`]) and `/` made rshared (so
/// mounts dockerd makes propagate to the containers' mount namespaces as on a host).
/// Neither is needed for dockerd to start; failures are debug lines and warnings.
pub(super) fn best_effort(snap: &Snapshot, env: &Environment, out: &mut CgroupOutcome) {
    let visible = snap.visible_mounts();
    let security = Path::new(SECURITYFS);
    match securityfs_here(&visible, env) {
        Securityfs::Leave => {}
        Securityfs::Mount => {
            let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
            match mount_fs("securityfs", security, "securityfs", flags, "") {
                Ok(()) => out.did(
                    "mount",
                    security,
                    format!("mounted securityfs on {}", security.display()),
                ),
                Err(e) => out.note(e.to_string()),
            }
        }
        Securityfs::Skip => info!("{}", securityfs_skipped()),
        Securityfs::Warn => out.warn(reason_apparmor_parser_missing()),
    }
    let root_shared = mount_at(&visible, Path::new("/"))
        .map(|m| m.optional.iter().any(|o| o.starts_with("shared:")));
    if root_shared == Some(true) {
        return;
    }
    let recursive = MountPropagationFlags::SHARED | MountPropagationFlags::REC;
    // Old gVisor refuses MS_REC here but takes MS_SHARED alone (measured on 0.0~20221219).
    let result = rustix::mount::mount_change("/", recursive)
        .or_else(|_| rustix::mount::mount_change("/", MountPropagationFlags::SHARED));
    match result {
        // Logged only where mountinfo showed it was not shared, so a second run is silent.
        Ok(()) if root_shared == Some(false) => {
            out.did("make-rshared", Path::new("/"), "made / rshared".to_owned())
        }
        Ok(()) => {}
        Err(e) => out.note(format!("failed to make / rshared: {}", io::Error::from(e))),
    }
}

/// dockerd's pid file: `--pidfile`/`-p` from `args`, else its default.
pub(super) fn dockerd_pidfile(args: &[String]) -> PathBuf {
    crate::prepare::args::option_value(args, &["--pidfile", "-p"])
        .map_or_else(|| PathBuf::from("/var/run/docker.pid"), PathBuf::from)
}

/// The files boot creates directories for (SPEC §4 step 3), each with the key that
/// names it and what is lost without it.
pub fn runtime_files(cfg: &Config) -> [(&'static str, PathBuf, &'static str); 4] {
    [
        (
            "dockerd.socket",
            cfg.dockerd.socket.clone(),
            "dockerd cannot listen there",
        ),
        (
            "dockerd's --pidfile",
            dockerd_pidfile(&cfg.dockerd.args),
            "dockerd cannot write its pid file and stops",
        ),
        (
            "readiness.socket",
            cfg.readiness.socket.clone(),
            "probe and status will not work",
        ),
        (
            "readiness.file",
            cfg.readiness.file.clone(),
            "the ready file will not be written",
        ),
    ]
}

/// The directories the socket, pid and ready files will be created in (SPEC §4 step
/// 3), each once, with the keys of the files in it.
pub fn runtime_dirs_with_keys(cfg: &Config) -> Vec<(PathBuf, Vec<(&'static str, &'static str)>)> {
    let mut dirs: Vec<(PathBuf, Vec<(&'static str, &'static str)>)> = Vec::new();
    for (key, file, loss) in runtime_files(cfg) {
        let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
            continue;
        };
        match dirs.iter_mut().find(|(d, _)| d == dir) {
            Some((_, keys)) => keys.push((key, loss)),
            None => dirs.push((dir.to_path_buf(), vec![(key, loss)])),
        }
    }
    dirs
}

/// The directories alone (see [`runtime_dirs_with_keys`]).
pub fn runtime_dirs(cfg: &Config) -> Vec<PathBuf> {
    runtime_dirs_with_keys(cfg)
        .into_iter()
        .map(|(dir, _)| dir)
        .collect()
}

/// `key: error (what is lost)` for each key whose directory could not be made.
pub fn runtime_dir_warning(
    keys: &[(&'static str, &'static str)],
    error: &dyn std::fmt::Display,
) -> String {
    let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    let losses: Vec<&str> = keys.iter().map(|(_, l)| *l).collect();
    format!("{}: {error} ({})", names.join(", "), losses.join("; "))
}

pub(super) fn create_runtime_dirs(cfg: &Config, out: &mut CgroupOutcome) {
    for (dir, keys) in runtime_dirs_with_keys(cfg) {
        if let Err(e) = mkdir(&dir, out) {
            out.warn(runtime_dir_warning(&keys, &e));
        }
    }
}
