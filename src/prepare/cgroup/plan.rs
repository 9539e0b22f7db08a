//! The pure planner: what the system shows (a [`Snapshot`]) plus the gVisor flag and
//! `[cgroup]` config, in; an ordered list of [`Action`]s or a certain failure with its
//! reason, out. No I/O: every case is a table test on a fixture.

use std::fmt;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

use crate::config::{CgroupConfig, CgroupMode};

use super::*;
use crate::sys::mounts::*;

/// Which preparation path the plan takes; `as_str` is the `cgroup.mode` of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `cgroup.mode = "off"`: cgroups are left alone.
    Off,
    /// cgroup v1 (or hybrid) under a real kernel: one mount per /proc/self/cgroup line.
    V1,
    /// cgroup v1 in gVisor: a fixed list of controllers, each tried on its own mount.
    V1Gvisor,
    /// cgroup v2: evacuate the root cgroup to `init`, enable every controller.
    V2,
}

impl Mode {
    /// `off`, `v1`, `v1-gvisor`, `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::V1 => "v1",
            Self::V1Gvisor => "v1-gvisor",
            Self::V2 => "v2",
        }
    }
}

/// What a failed [`Action::MountCgroup`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// A probe (gVisor): failure means "this runsc lacks it", an expected answer.
    pub probe: bool,
    /// dockerd cannot work without it: a failure becomes the outcome's failure.
    pub required: bool,
    /// On failure, create stub files in its directory (`stub_missing`).
    pub stub: bool,
}

/// One step of a plan, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a directory (and its parents); one that exists is left as is.
    Mkdir { path: PathBuf },
    /// Mount a tmpfs (mode 0755, nosuid, nodev, noexec) to hold the hierarchies.
    MountTmpfs { target: PathBuf },
    /// Mount a cgroup v1 hierarchy.
    MountCgroup {
        target: PathBuf,
        hierarchy: Hierarchy,
        attempt: Attempt,
    },
    /// Mount the cgroup2 hierarchy; `required` = a failure is the outcome's failure.
    MountCgroup2 { target: PathBuf, required: bool },
    /// A symlink for a co-mounted member (`cpu` → `cpu,cpuacct`); one that exists is kept.
    Symlink { link: PathBuf, points_to: String },
    /// Stub files for a controller that cannot be mounted (cosmetic: tools that only look
    /// for directories; dockerd and runc read the mount table).
    Stub { dir: PathBuf, controller: String },
    /// Remount read-write: per mount (`bind`, a ro bind) or the super block (with its
    /// cgroup options, since cgroup v1 rejects a remount that changes them).
    RemountRw {
        target: PathBuf,
        bind: bool,
        data: String,
        keep: MountFlags,
    },
    /// cgroup v2: move every process of `from` that the init can see (not only itself:
    /// PID 1 and its siblings too, when the init is not PID 1) into `to`.
    MovePids { from: PathBuf, to: PathBuf },
    /// cgroup v2: enable every controller of `cgroup.controllers` in `cgroup.subtree_control`
    /// of `cgroup`; on EBUSY move the processes into `evacuate_to` again and retry. `None`:
    /// `cgroup` is the machine's root cgroup, which the "no internal processes" rule exempts,
    /// so nothing is moved (its processes include the kernel's threads).
    EnableControllers {
        cgroup: PathBuf,
        evacuate_to: Option<PathBuf>,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Mkdir { path } => write!(f, "create directory {}", path.display()),
            Action::MountTmpfs { target } => {
                write!(f, "mount a tmpfs (mode 0755) on {}", target.display())
            }
            Action::MountCgroup {
                target,
                hierarchy,
                attempt,
            } => {
                let verb = if attempt.probe {
                    "try to mount"
                } else {
                    "mount"
                };
                write!(
                    f,
                    "{verb} cgroup {} on {}",
                    hierarchy.mount_options(),
                    target.display()
                )?;
                match (attempt.probe, attempt.stub) {
                    (true, true) => f.write_str(" (EINVAL: this runsc lacks it; then a stub)"),
                    (true, false) => f.write_str(" (EINVAL: this runsc lacks it)"),
                    (false, true) => f.write_str(" (a stub if it fails)"),
                    (false, false) => Ok(()),
                }
            }
            Action::MountCgroup2 { target, .. } => {
                write!(f, "mount cgroup2 on {}", target.display())
            }
            Action::Symlink { link, points_to } => {
                write!(f, "link {} -> {points_to}", link.display())
            }
            Action::Stub { dir, controller } => {
                write!(f, "create stub files for {controller} in {}", dir.display())
            }
            Action::RemountRw { target, .. } => {
                write!(f, "remount {} read-write", target.display())
            }
            Action::MovePids { from, to } => write!(
                f,
                "move every process of {} into {}",
                from.display(),
                to.display()
            ),
            Action::EnableControllers {
                cgroup,
                evacuate_to: Some(evacuate_to),
            } => write!(
                f,
                "enable every controller of {0}/cgroup.controllers in {0}/cgroup.subtree_control \
                 (on EBUSY move processes into {1} again, at most {V2_ENABLE_ATTEMPTS} times)",
                cgroup.display(),
                evacuate_to.display()
            ),
            Action::EnableControllers {
                cgroup,
                evacuate_to: None,
            } => write!(
                f,
                "enable every controller of {0}/cgroup.controllers in {0}/cgroup.subtree_control \
                 (the machine's root cgroup: no cgroup.type, so nothing is moved)",
                cgroup.display()
            ),
        }
    }
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub mode: Mode,
    /// How dockerd will see cgroups before the plan runs.
    pub kind: CgroupKind,
    pub actions: Vec<Action>,
    /// A failure certain before anything runs (one line: cause; fix).
    pub failure: Option<String>,
    /// The actions mount cgroup2 on /sys/fs/cgroup, and what comes next depends on what
    /// that mount shows (whether it is the machine's root cgroup): once they ran, plan
    /// again from a new snapshot.
    pub replan: bool,
}

impl Plan {
    /// Whether the plan would change nothing (cgroups already usable).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Plans the preparation (SPEC §5). Pure: everything it needs is in the arguments.
pub fn plan(snap: &Snapshot, gvisor: bool, cfg: &CgroupConfig) -> Plan {
    let visible = snap.visible_mounts();
    let kind = classify(snap.statfs_magic, &visible);
    let mut plan = Plan {
        mode: Mode::Off,
        kind,
        actions: Vec::new(),
        failure: None,
        replan: false,
    };
    let root = PathBuf::from(CGROUP_ROOT);
    // dockerd 20.10 panics ("cannot statfs cgroup root") without it, whatever the mode.
    if snap.statfs_magic.is_none() {
        plan.actions.push(Action::Mkdir { path: root.clone() });
    }
    let v2 = match cfg.mode {
        CgroupMode::Off => return plan,
        CgroupMode::V2 => true,
        CgroupMode::Auto => kind == CgroupKind::V2 || snap.bare_cgroup2(gvisor),
        CgroupMode::V1 => {
            if kind == CgroupKind::V2 {
                plan.mode = Mode::V1;
                plan.failure = Some(reason_v1_on_v2());
                return plan;
            }
            false
        }
    };
    if v2 {
        plan.mode = Mode::V2;
        plan_v2(snap, &visible, gvisor, &mut plan);
    } else if gvisor {
        plan.mode = Mode::V1Gvisor;
        plan_v1_gvisor(snap, &visible, cfg, &mut plan);
    } else {
        plan.mode = Mode::V1;
        plan_v1(snap, &visible, cfg, &mut plan);
    }
    plan
}

pub(super) fn remount_action(m: &Mount) -> Action {
    let data = match m.hierarchy() {
        Some(h) if m.super_read_only() => h.mount_options(),
        _ => String::new(),
    };
    Action::RemountRw {
        target: PathBuf::from(&m.mount_point),
        // A ro super block needs a super-block remount; otherwise only the mount is ro.
        bind: !m.super_read_only(),
        data,
        keep: m.keep_flags(),
    }
}

pub(super) fn plan_v2(snap: &Snapshot, visible: &[Mount], gvisor: bool, plan: &mut Plan) {
    let root = PathBuf::from(CGROUP_ROOT);
    if snap.statfs_magic != Some(CGROUP2_SUPER_MAGIC) {
        // Not cgroup2 yet (a cgroup2-only kernel with nothing mounted, or `mode = "v2"`):
        // mount it, so that dockerd sees v2. Only possible where the kernel has cgroup2
        // with free controllers. Whether the mount shows the machine's root cgroup is
        // known only once it is there: plan the rest again then.
        if gvisor {
            plan.failure = Some(reason_gvisor_no_cgroup2());
            return;
        }
        plan.actions.push(Action::MountCgroup2 {
            target: root,
            required: true,
        });
        plan.replan = true;
        return;
    }
    if let Some(m) = mount_at(visible, &root).filter(|m| m.read_only()) {
        plan.actions.push(remount_action(m));
    }
    if snap.cgroup_type.is_none() {
        // The machine's root cgroup (dind-init as PID 1 of a VM, or beside the host's
        // init): exempt from "no internal processes", and its processes include the
        // kernel's threads, which must stay.
        plan.actions.push(Action::EnableControllers {
            cgroup: root,
            evacuate_to: None,
        });
        return;
    }
    // A namespace's root cgroup (a container): everything in it must leave.
    let init = root.join("init");
    plan.actions.push(Action::Mkdir { path: init.clone() });
    plan.actions.push(Action::MovePids {
        from: root.clone(),
        to: init.clone(),
    });
    plan.actions.push(Action::EnableControllers {
        cgroup: root,
        evacuate_to: Some(init),
    });
}

/// Whether a visible cgroup mount serves `h`, and whether it is writable.
pub(super) fn find_hierarchy<'a>(visible: &'a [Mount], h: &Hierarchy) -> Option<&'a Mount> {
    // The last visible match wins: it is the one mounted most recently.
    visible
        .iter()
        .rev()
        .find(|m| m.hierarchy().is_some_and(|mh| mh.same(h)))
}

/// The visible mount at /sys/fs/cgroup as a base for new hierarchies: `Reuse` a writable
/// tmpfs, `Remount` a read-only one, or mount a fresh tmpfs over whatever is there.
pub(super) enum Base<'a> {
    Reuse,
    Remount(&'a Mount),
    Fresh,
}

pub(super) fn base(visible: &[Mount]) -> Base<'_> {
    match mount_at(visible, Path::new(CGROUP_ROOT)) {
        Some(m) if m.fstype == "tmpfs" && m.read_only() => Base::Remount(m),
        Some(m) if m.fstype == "tmpfs" => Base::Reuse,
        _ => Base::Fresh,
    }
}

/// Plans the base at /sys/fs/cgroup (see [`Base`]); true when it is a fresh tmpfs,
/// which hides whatever was mounted below it.
pub(super) fn plan_base(visible: &[Mount], root: &Path, plan: &mut Plan) -> bool {
    match base(visible) {
        Base::Reuse => false,
        Base::Remount(m) => {
            plan.actions.push(remount_action(m));
            false
        }
        Base::Fresh => {
            plan.actions.push(Action::MountTmpfs {
                target: root.to_path_buf(),
            });
            true
        }
    }
}

pub(super) fn plan_v1(snap: &Snapshot, visible: &[Mount], cfg: &CgroupConfig, plan: &mut Plan) {
    let root = PathBuf::from(CGROUP_ROOT);
    let lines = parse_proc_self_cgroup(&snap.proc_self_cgroup);
    let hierarchies: Vec<&Hierarchy> = lines
        .iter()
        .filter(|l| l.id != 0)
        .map(|l| &l.hierarchy)
        .collect();
    let has_unified = lines.iter().any(|l| l.id == 0);
    if hierarchies.is_empty() {
        plan.failure = Some(reason_no_v1_hierarchies());
        return;
    }
    let found: Vec<(&Hierarchy, Option<&Mount>)> = hierarchies
        .iter()
        .map(|h| (*h, find_hierarchy(visible, h)))
        .collect();
    let missing: Vec<&Hierarchy> = found
        .iter()
        .filter(|(_, m)| m.is_none())
        .map(|(h, _)| *h)
        .collect();
    let devices_listed = hierarchies.iter().any(|h| h.has("devices"));

    if missing.is_empty() {
        // Everything is mounted (the privileged Docker case): only read-only mounts need work.
        for (_, m) in &found {
            if let Some(m) = m.filter(|m| m.read_only()) {
                plan.actions.push(remount_action(m));
            }
        }
    } else {
        let fresh = plan_base(visible, &root, plan);
        for (h, m) in &found {
            match m {
                // Kept unless a fresh tmpfs hides it.
                Some(m) if !fresh => {
                    if m.read_only() {
                        plan.actions.push(remount_action(m));
                    }
                }
                _ => push_v1_mount(plan, &root, h, fresh, visible, cfg, false),
            }
        }
        // systemd's hybrid layout: runc joins the unified hierarchy too when it is there.
        let unified = root.join("unified");
        let unified_mounted =
            !fresh && mount_at(visible, &unified).is_some_and(|m| m.fstype == "cgroup2");
        if has_unified && !unified_mounted {
            plan.actions.push(Action::Mkdir {
                path: unified.clone(),
            });
            plan.actions.push(Action::MountCgroup2 {
                target: unified,
                required: false,
            });
        }
    }
    if !devices_listed {
        if cfg.stub_missing {
            let dir = root.join("devices");
            plan.actions.push(Action::Mkdir { path: dir.clone() });
            plan.actions.push(Action::Stub {
                dir,
                controller: "devices".to_owned(),
            });
        }
        plan.failure = Some(reason_kernel_without_devices());
    }
}

/// Mkdir + mount for one hierarchy, plus symlinks for the members of a co-mount.
pub(super) fn push_v1_mount(
    plan: &mut Plan,
    root: &Path,
    h: &Hierarchy,
    fresh: bool,
    visible: &[Mount],
    cfg: &CgroupConfig,
    probe: bool,
) {
    let target = root.join(h.dir_name());
    plan.actions.push(Action::Mkdir {
        path: target.clone(),
    });
    plan.actions.push(Action::MountCgroup {
        target,
        hierarchy: h.clone(),
        attempt: Attempt {
            probe,
            // Every listed hierarchy: containerd-shim fails `docker run` on any missing one.
            required: !probe || h.has("devices"),
            stub: cfg.stub_missing && !h.controllers.is_empty(),
        },
    });
    if h.controllers.len() > 1 {
        for member in &h.controllers {
            let link = root.join(member);
            if fresh || mount_at(visible, &link).is_none() {
                plan.actions.push(Action::Symlink {
                    link,
                    points_to: h.dir_name(),
                });
            }
        }
    }
}

pub(super) fn plan_v1_gvisor(
    snap: &Snapshot,
    visible: &[Mount],
    cfg: &CgroupConfig,
    plan: &mut Plan,
) {
    let root = PathBuf::from(CGROUP_ROOT);
    let lines = parse_proc_self_cgroup(&snap.proc_self_cgroup);
    let listed: Vec<&Hierarchy> = lines
        .iter()
        .filter(|l| l.id != 0)
        .map(|l| &l.hierarchy)
        .collect();
    let devices = Hierarchy::single("devices");
    // Already usable: runsc mounted the controllers itself (release-20231218.0 and later,
    // when the spec mounts /sys/fs/cgroup), or an earlier run did.
    let all_listed_mounted = listed.iter().all(|h| find_hierarchy(visible, h).is_some());
    let devices_mount = find_hierarchy(visible, &devices);
    if devices_mount.is_some() && all_listed_mounted {
        for h in listed.iter().copied().chain([&devices]) {
            if let Some(m) = find_hierarchy(visible, h).filter(|m| m.read_only()) {
                let action = remount_action(m);
                if !plan.actions.contains(&action) {
                    plan.actions.push(action);
                }
            }
        }
        return;
    }
    let fresh = plan_base(visible, &root, plan);
    // The fixed list, then whatever else /proc/self/cgroup names (a newer runsc), each alone:
    // gVisor lets a controller join only a hierarchy of exactly the same set.
    let mut wanted: Vec<Hierarchy> = GVISOR_CONTROLLERS
        .iter()
        .map(|c| Hierarchy::single(c))
        .collect();
    for h in listed {
        for c in &h.controllers {
            let single = Hierarchy::single(c);
            if !wanted.contains(&single) {
                wanted.push(single);
            }
        }
    }
    for h in &wanted {
        match find_hierarchy(visible, h) {
            Some(m) if !fresh => {
                if m.read_only() {
                    plan.actions.push(remount_action(m));
                }
            }
            _ => push_v1_mount(plan, &root, h, fresh, visible, cfg, true),
        }
    }
    // name=systemd: gVisor shows no `name=` in mountinfo, so look by mount point.
    let systemd_dir = root.join("systemd");
    if fresh || mount_at(visible, &systemd_dir).is_none() {
        plan.actions.push(Action::Mkdir {
            path: systemd_dir.clone(),
        });
        plan.actions.push(Action::MountCgroup {
            target: systemd_dir,
            hierarchy: Hierarchy::single("name=systemd"),
            attempt: Attempt {
                probe: true,
                required: false,
                stub: false,
            },
        });
    }
}

// ---------------------------------------------------------------------------
// Failure reasons: one line each, the cause, then "; fix: " and the fix.

/// The devices controller could not be mounted in gVisor.
pub fn reason_gvisor_devices(error: &dyn fmt::Display) -> String {
    format!(
        "this runsc has no devices cgroup controller (mounting it failed: {error}; gVisor added \
         it in release-20230801.0), so dockerd will refuse to start with \"Devices cgroup isn't \
         mounted\" (it reads the mount table: stub directories cannot satisfy it); fix: run a \
         newer runsc, e.g. Debian's bookworm-backports build 0.0~20240729, or run the container \
         under runc"
    )
}

pub(super) fn reason_mount_failed(h: &Hierarchy, error: &dyn fmt::Display) -> String {
    let symptom = if h.has("devices") {
        "dockerd will refuse to start with \"Devices cgroup isn't mounted\""
    } else {
        "`docker run` will fail with \"cannot find cgroup mount destination\""
    };
    format!(
        "cannot mount the cgroup hierarchy {} ({error}): {symptom}, since dockerd and \
         containerd need every hierarchy of /proc/self/cgroup mounted; fix: run the container \
         privileged (it needs CAP_SYS_ADMIN and writable cgroups) or under gVisor",
        h.label()
    )
}

pub(super) fn reason_tmpfs_failed(error: &dyn fmt::Display) -> String {
    format!(
        "cannot mount a tmpfs on {CGROUP_ROOT} to hold the cgroup hierarchies ({error}), so \
         dockerd will refuse to start with \"Devices cgroup isn't mounted\"; fix: run the \
         container privileged (it needs CAP_SYS_ADMIN) or under gVisor"
    )
}

pub(super) fn reason_read_only(target: &Path, error: &dyn fmt::Display) -> String {
    format!(
        "the cgroup mount {} is read-only and remounting it read-write failed ({error}): dockerd \
         may start, but every `docker run` fails with \"mkdir /sys/fs/cgroup/...: read-only \
         file system\"; fix: the container needs writable cgroups: run it privileged (runc) or \
         under gVisor (runsc)",
        target.display()
    )
}

pub(super) fn reason_kernel_without_devices() -> String {
    "the kernel offers no devices cgroup controller (/proc/self/cgroup does not list it), so \
     dockerd will refuse to start with \"Devices cgroup isn't mounted\"; fix: run on a kernel \
     built with CONFIG_CGROUP_DEVICE, or on a cgroup v2 host"
        .to_owned()
}

pub(super) fn reason_no_v1_hierarchies() -> String {
    "/proc/self/cgroup lists no cgroup v1 hierarchy although /sys/fs/cgroup is not cgroup2, \
     so dockerd (which takes its v1 path) will refuse to start with \"Devices cgroup isn't \
     mounted\"; fix: mount cgroup2 on /sys/fs/cgroup (cgroup.mode = \"v2\") or run on a host \
     with cgroup v1 controllers"
        .to_owned()
}

pub(super) fn reason_v1_on_v2() -> String {
    "cgroup.mode is \"v1\" but /sys/fs/cgroup is a cgroup2 file system, and dockerd chooses its \
     cgroup code by that; fix: set cgroup.mode = \"auto\" (or \"v2\")"
        .to_owned()
}

pub(super) fn reason_gvisor_no_cgroup2() -> String {
    "cgroup.mode is \"v2\" but /sys/fs/cgroup is not cgroup2, and gVisor offers cgroup2 only \
     from release-20260706.0 with runsc --mount-cgroup-v2; fix: set cgroup.mode = \"auto\""
        .to_owned()
}

pub(super) fn reason_cgroup2_failed(error: &dyn fmt::Display) -> String {
    format!(
        "cannot mount cgroup2 on {CGROUP_ROOT} ({error}) although cgroup.mode is \"v2\"; fix: \
         set cgroup.mode = \"auto\", or run on a cgroup v2 host"
    )
}

pub(super) fn reason_v2_busy(busy: &Busy) -> String {
    let mut stayed: Vec<String> = Vec::new();
    for name in &busy.remaining {
        match busy.refused.iter().find(|(n, _)| n == name) {
            Some((_, e)) => stayed.push(format!("{name}: cannot move it: {e}")),
            None => stayed.push(name.clone()),
        }
    }
    if busy.hidden > 0 {
        stayed.push(format!(
            "{} process(es) outside this pid namespace (pid 0 in cgroup.procs)",
            busy.hidden
        ));
    }
    let stayed = if stayed.is_empty() {
        "none left when looked at, but new ones kept appearing".to_owned()
    } else {
        name_list(&stayed)
    };
    format!(
        "cannot enable the cgroup v2 controllers in {CGROUP_ROOT}/cgroup.subtree_control ({} \
         after {V2_ENABLE_ATTEMPTS} attempts): processes stay in the root cgroup: {stayed}, so \
         `docker run` will fail with \"cannot enter cgroupv2 ... invalid state\"; fix: give the \
         container its own cgroup namespace (docker run --cgroupns=private) and run every \
         process of its root cgroup in dind-init's pid namespace, where it can move them \
         (dind-init as PID 1, or behind an init such as tini)",
        busy.error
    )
}
