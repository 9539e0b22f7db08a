//! The applier: reads a snapshot, plans, carries each action out (mount(2), mkdir(2),
//! symlink(2), cgroupfs writes), logs each change once, and returns the
//! [`CgroupOutcome`] `status` shows.

use std::ffi::CString;
use std::io::{self, Write};
use std::path::Path;

use rustix::mount::MountFlags;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::prepare::environment::Environment;

use super::*;
use crate::sys::mounts::*;

/// What the preparation did and left, kept for `status` (SPEC §8 `cgroup`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupOutcome {
    /// The path taken: `off` (left alone), `v1`, `v1-gvisor` (one controller per mount,
    /// probed), `v2`; see [`Mode`].
    pub mode: String,
    /// What is mounted and writable under /sys/fs/cgroup afterwards, found or made: each v1
    /// hierarchy as /proc/self/cgroup writes it (`cpu,cpuacct`, `name=systemd`), `cgroup2`
    /// for a cgroup2 mount (at /sys/fs/cgroup on v2, at `unified` on hybrid).
    pub mounted: Vec<String>,
    /// Controllers given stub directories because they could not be mounted.
    pub stubbed: Vec<String>,
    /// cgroup v2: the controllers enabled for children in the root's `cgroup.subtree_control`.
    pub controllers: Vec<String>,
    /// Why dockerd certainly cannot work (one line: cause; fix); `None` when all is well.
    pub failure: Option<String>,
    /// Extra dockerd arguments this environment needs, e.g. `--exec-opt`
    /// `native.cgroupdriver=cgroupfs` (a stray /run/systemd/system would make dockerd on
    /// cgroup v2 pick the systemd driver).
    pub dockerd_args: Vec<String>,
    /// What this run changed, one line each, in order (empty when already prepared).
    pub actions: Vec<String>,
    /// Best-effort steps that failed (securityfs, rshared, directories), one line each.
    pub warnings: Vec<String>,
}

impl CgroupOutcome {
    fn fail(&mut self, reason: String) {
        error!(reason = %reason, "cgroup preparation failed: dockerd cannot work");
        if self.failure.is_none() {
            self.failure = Some(reason);
        }
    }

    /// Records and logs one change. The applier logs changes only through here (one
    /// tracing callsite instead of one per action keeps the static binary small).
    pub(super) fn did(&mut self, action: &'static str, target: &Path, what: String) {
        info!(action, target = %target.display(), "{what}");
        self.actions.push(what);
    }

    /// Records and logs a problem that does not stop dockerd.
    pub(super) fn warn(&mut self, what: String) {
        warn!("{what}");
        self.warnings.push(what);
    }

    /// Records a best-effort step that failed; only a debug line (expected in many
    /// containers: /sys read-only, no securityfs).
    pub(super) fn note(&mut self, what: String) {
        debug!("{what}");
        self.warnings.push(what);
    }
}

/// Prepares cgroups and the runtime directories before dockerd starts (SPEC §4 step 3, §5).
/// Never fails: problems are logged and reported in the outcome.
pub fn prepare(cfg: &Config, env: &Environment) -> CgroupOutcome {
    let mut out = CgroupOutcome::default();
    match Snapshot::read() {
        Ok(mut snap) => {
            let first = plan(&snap, env.gvisor, &cfg.cgroup);
            out.mode = first.mode.as_str().to_owned();
            if let Some(reason) = &first.failure {
                out.fail(reason.clone());
            }
            apply(&first, env, &mut out);
            if first.replan && out.failure.is_none() {
                // cgroup2 was just mounted: plan the rest on what the mount shows. Once
                // only: the second plan sees cgroup2 and never asks for another.
                match Snapshot::read() {
                    Ok(now) => {
                        let second = plan(&now, env.gvisor, &cfg.cgroup);
                        if let Some(reason) = &second.failure {
                            out.fail(reason.clone());
                        }
                        apply(&second, env, &mut out);
                        snap = now;
                    }
                    Err(e) => out.fail(format!(
                        "{e}: cannot see what is mounted; fix: mount /proc in the container"
                    )),
                }
            }
            best_effort(&snap, env, &mut out);
        }
        Err(e) => {
            out.mode = cfg.cgroup.mode.as_str().to_owned();
            out.fail(format!(
                "{e}: cannot see what is mounted; fix: mount /proc in the container"
            ));
        }
    }
    create_runtime_dirs(cfg, &mut out);
    // Offered to the launch, which leaves the pair out when the user's arguments
    // (COMMAND's included) choose a driver (launch::chooses_cgroup_driver), and logged
    // when it is passed.
    if env.stray_systemd {
        out.dockerd_args = vec![
            "--exec-opt".to_owned(),
            "native.cgroupdriver=cgroupfs".to_owned(),
        ];
    }
    summarize(&mut out);
    if out.actions.is_empty() && out.failure.is_none() {
        info!(mode = %out.mode, "cgroups already prepared; nothing changed");
    }
    out
}

/// Fills `mounted` (and `controllers` on v2) from a fresh look at the mount table.
pub(super) fn summarize(out: &mut CgroupOutcome) {
    let Ok(snap) = Snapshot::read() else {
        return;
    };
    let root = Path::new(CGROUP_ROOT);
    for m in snap.visible_mounts() {
        let point = Path::new(&m.mount_point);
        let under = point == root || point.parent() == Some(root);
        if !under || m.read_only() {
            continue;
        }
        match m.fstype.as_str() {
            "cgroup" => out.mounted.push(m.label()),
            "cgroup2" => out.mounted.push("cgroup2".to_owned()),
            _ => {}
        }
    }
    if snap.statfs_magic == Some(CGROUP2_SUPER_MAGIC) {
        if let Ok(text) = std::fs::read_to_string(root.join("cgroup.subtree_control")) {
            out.controllers = text.split_whitespace().map(str::to_owned).collect();
        }
    }
}

/// Runs the plan's actions in order, recording results in `out`.
pub(super) fn apply(plan: &Plan, env: &Environment, out: &mut CgroupOutcome) {
    let mut files = RealFiles;
    for action in &plan.actions {
        match action {
            Action::Mkdir { path } => {
                if let Err(e) = mkdir(path, out) {
                    out.warn(e.to_string());
                }
            }
            Action::MountTmpfs { target } => {
                let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
                match mount_fs("tmpfs", target, "tmpfs", flags, "mode=755") {
                    Ok(()) => out.did(
                        "mount",
                        target,
                        format!("mounted a tmpfs on {}", target.display()),
                    ),
                    Err(e) => {
                        // Everything after it would land in sysfs; stop here.
                        out.fail(reason_tmpfs_failed(&e));
                        return;
                    }
                }
            }
            Action::MountCgroup {
                target,
                hierarchy,
                attempt,
            } => mount_hierarchy(target, hierarchy, *attempt, env.gvisor, out),
            Action::MountCgroup2 { target, required } => {
                let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
                match mount_fs("cgroup2", target, "cgroup2", flags, "") {
                    Ok(()) => out.did(
                        "mount",
                        target,
                        format!("mounted cgroup2 on {}", target.display()),
                    ),
                    Err(e) if *required => out.fail(reason_cgroup2_failed(&e)),
                    // dockerd's v1 path does not need the unified hierarchy.
                    Err(e) => out.warn(e.to_string()),
                }
            }
            Action::Symlink { link, points_to } => {
                match std::os::unix::fs::symlink(points_to, link) {
                    Ok(()) => out.did(
                        "symlink",
                        link,
                        format!("linked {} -> {points_to}", link.display()),
                    ),
                    // A link, directory or mount of that name is already there: keep it.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        let e = Error::Fs {
                            op: format!("link {points_to} as"),
                            path: link.clone(),
                            source: e,
                        };
                        out.warn(e.to_string());
                    }
                }
            }
            Action::Stub { dir, controller } => stub(dir, controller, out),
            Action::RemountRw {
                target,
                bind,
                data,
                keep,
            } => {
                let flags = if *bind {
                    *keep | MountFlags::BIND
                } else {
                    *keep
                };
                match rustix::mount::mount_remount(target, flags, data.as_str()) {
                    Ok(()) => out.did(
                        "remount",
                        target,
                        format!("remounted {} read-write", target.display()),
                    ),
                    Err(e) => out.fail(reason_read_only(
                        target,
                        &Error::Remount {
                            target: target.clone(),
                            source: e.into(),
                        },
                    )),
                }
            }
            Action::MovePids { from, to } => {
                let report = move_pids(&mut files, from, to);
                if !report.moved.is_empty() {
                    out.did(
                        "move-pids",
                        to,
                        format!(
                            "moved {} process(es) out of the root cgroup {} into {}: {}",
                            report.moved.len(),
                            from.display(),
                            to.display(),
                            name_list(&report.moved)
                        ),
                    );
                }
                for (name, e) in &report.refused {
                    debug!(process = %name, error = %e, "cannot move a process out of the root cgroup");
                }
            }
            Action::EnableControllers {
                cgroup,
                evacuate_to,
            } => {
                let report = enable_controllers(&mut files, cgroup, evacuate_to.as_deref());
                if let (false, Some(to)) = (report.moves.moved.is_empty(), evacuate_to) {
                    out.did(
                        "move-pids",
                        to,
                        format!(
                            "moved {} process(es) that appeared in the root cgroup into {}: {}",
                            report.moves.moved.len(),
                            to.display(),
                            name_list(&report.moves.moved)
                        ),
                    );
                }
                if !report.enabled.is_empty() {
                    let how = if evacuate_to.is_some() {
                        format!("after {} writes", report.attempts)
                    } else {
                        "the machine's root cgroup: nothing moved".to_owned()
                    };
                    out.did(
                        "enable-controllers",
                        cgroup,
                        format!(
                            "enabled cgroup v2 controllers {} in {} ({how})",
                            report.enabled.join(" "),
                            cgroup.display()
                        ),
                    );
                }
                for (controller, e) in &report.refused {
                    out.warn(format!(
                        "cannot enable the cgroup v2 controller {controller}: {e}"
                    ));
                }
                if let Some(busy) = &report.busy {
                    out.fail(reason_v2_busy(busy));
                }
            }
        }
    }
}

pub(super) fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: &str,
) -> Result<(), Error> {
    let what = if data.is_empty() || fstype == "tmpfs" {
        fstype.to_owned()
    } else {
        format!("{fstype} {data}")
    };
    let err = |source: io::Error| Error::Mount {
        what: what.clone(),
        target: target.to_path_buf(),
        source,
    };
    let data = CString::new(data).map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
    let data = (!data.as_bytes().is_empty()).then_some(data.as_c_str());
    rustix::mount::mount(source, target, fstype, flags, data).map_err(|e| err(e.into()))
}

pub(super) fn mount_hierarchy(
    target: &Path,
    h: &Hierarchy,
    attempt: Attempt,
    gvisor: bool,
    out: &mut CgroupOutcome,
) {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    match mount_fs("cgroup", target, "cgroup", flags, &h.mount_options()) {
        Ok(()) => out.did(
            "mount",
            target,
            format!("mounted cgroup {} on {}", h.label(), target.display()),
        ),
        Err(e) => {
            if attempt.stub {
                if let Some(controller) = h.controllers.first() {
                    stub(target, controller, out);
                }
            }
            if attempt.required {
                let reason = if gvisor && h.has("devices") {
                    reason_gvisor_devices(&e)
                } else {
                    reason_mount_failed(h, &e)
                };
                out.fail(reason);
            } else if attempt.probe {
                // An answer, not an error: this runsc does not have it.
                out.warn(format!("this runsc lacks the cgroup {}: {e}", h.label()));
            } else {
                out.warn(e.to_string());
            }
        }
    }
}

/// Tries whether this kernel can mount the v1 `controller`, without leaving anything
/// behind: the hierarchy is mounted on a fresh private directory under the temp dir,
/// detached at once, and the directory removed. Used by `check` in gVisor, where
/// /proc/cgroups lists only controllers already attached somewhere, so trying is the only
/// way to know (REFERENCE §0: EINVAL = this runsc lacks it). A controller that did mount
/// stays attached to its (then empty) hierarchy, exactly as the init's own mount would.
pub fn probe_controller(controller: &str) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!(
        "dind-init-probe-{}-{controller}",
        rustix::process::getpid().as_raw_nonzero()
    ));
    std::fs::create_dir(&dir).map_err(|source| Error::Fs {
        op: "create directory".to_owned(),
        path: dir.clone(),
        source,
    })?;
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let result = mount_fs("cgroup", &dir, "cgroup", flags, controller);
    if result.is_ok() {
        // Nothing to do about a failure but leave it: `check` is a report.
        let _ = rustix::mount::unmount(&dir, rustix::mount::UnmountFlags::DETACH);
    }
    let _ = std::fs::remove_dir(&dir);
    result
}

/// mkdir -p that logs only what it created.
pub(super) fn mkdir(path: &Path, out: &mut CgroupOutcome) -> Result<(), Error> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|source| Error::Fs {
        op: "create directory".to_owned(),
        path: path.to_path_buf(),
        source,
    })?;
    out.did(
        "mkdir",
        path,
        format!("created directory {}", path.display()),
    );
    Ok(())
}

/// The stub files of a controller: what tools that only look at directories expect.
pub(super) fn stub_files(controller: &str) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("cgroup.procs", ""), ("tasks", "")];
    if controller == "devices" {
        files.extend([
            ("devices.allow", "a *:* rwm\n"),
            ("devices.deny", ""),
            ("devices.list", "a *:* rwm\n"),
        ]);
    }
    files
}

pub(super) fn stub(dir: &Path, controller: &str, out: &mut CgroupOutcome) {
    if let Err(e) = mkdir(dir, out) {
        out.warn(e.to_string());
        return;
    }
    let mut created = 0;
    for (name, content) in stub_files(controller) {
        let path = dir.join(name);
        // create_new: an existing file (an earlier run's stub) is left as it is.
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()));
        match result {
            Ok(()) => created += 1,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                let e = Error::Fs {
                    op: "create stub file".to_owned(),
                    path,
                    source,
                };
                out.warn(e.to_string());
            }
        }
    }
    if !out.stubbed.iter().any(|c| c == controller) {
        out.stubbed.push(controller.to_owned());
    }
    if created > 0 {
        out.did(
            "stub",
            dir,
            format!(
                "created stub files for {controller} in {} (for tools that look for \
                 directories; dockerd and runc read the mount table)",
                dir.display()
            ),
        );
    }
}
