//! cgroup preparation (SPEC §5): a pure planner, and the applier that carries the plan out.
//!
//! dockerd decides between its cgroup v1 and v2 code by `statfs("/sys/fs/cgroup")`: the
//! cgroup2 magic means v2, anything else v1 (moby `pkg/sysinfo`, runc `cgroups.IsCgroup2UnifiedMode`).
//! On v1 it refuses to start when no `cgroup` mount with `devices` is in the mount table
//! ("Devices cgroup isn't mounted"), and containerd-shim fails `docker run` when any hierarchy
//! listed in /proc/self/cgroup has no mount. On v2 every process must leave the root cgroup
//! before controllers can be enabled for children (cgroups(7), "no internal processes").
//!
//! [`plan`] turns what the system shows — the texts of /proc/self/cgroup, /proc/self/mountinfo
//! and /proc/cgroups, and the statfs magic of /sys/fs/cgroup ([`Snapshot`]) — plus the gVisor
//! flag and `[cgroup]` config into an ordered list of [`Action`]s, or a certain failure with
//! its reason. It does no I/O, so every case is unit-tested on fixtures captured from real
//! systems (`tests/fixtures/cgroup/`). Planning only from mount tables makes the result
//! idempotent: what is already mounted and writable is never planned again, so a second run
//! (dockerd restart, init re-exec) plans nothing that changes the system.
//!
//! Some outcomes cannot be known in advance: in gVisor, /proc/cgroups lists only controllers
//! already attached to a hierarchy, so each controller of a fixed list is *tried*
//! ([`Attempt::probe`]); EINVAL means this runsc lacks it. The applier records each result.
//!
//! [`prepare`] is the applier: it reads a snapshot, plans, performs each action with rustix
//! (mount(2), mkdir(2), symlink(2), writes to cgroupfs files), logs each change once (nothing
//! already in place is logged; a run that changes nothing says "already prepared" once), and
//! returns a [`CgroupOutcome`] that `status` shows. It also does SPEC §4 step 3 (the parent
//! directories of the socket, pid and ready files) and the best-effort items of §5
//! (securityfs, `/` made rshared). Nothing here is fatal to the init: every error becomes a
//! logged, reported reason.
//!
//! Not done here: deciding whether dockerd is started (the supervisor reads
//! [`CgroupOutcome::failure`]), dockerd's other flags, networking.
//!
//! Man pages: [mount(2)](https://man7.org/linux/man-pages/man2/mount.2.html),
//! [statfs(2)](https://man7.org/linux/man-pages/man2/statfs.2.html),
//! [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html),
//! [proc_pid_mountinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html),
//! [mount_namespaces(7)](https://man7.org/linux/man-pages/man7/mount_namespaces.7.html) (rshared).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, MountPropagationFlags};
use tracing::{debug, error, info, warn};

use crate::config::{CgroupConfig, CgroupMode, Config};
use crate::environment::Environment;
use crate::error::Error;

/// Where dockerd, runc and containerd look for cgroups.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// statfs(2) `f_type` of a cgroup2 file system (linux/magic.h).
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
/// statfs(2) `f_type` of a tmpfs (linux/magic.h).
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
/// statfs(2) `f_type` of sysfs (linux/magic.h): /sys/fs/cgroup with nothing mounted on it.
pub const SYSFS_MAGIC: u64 = 0x6265_6572;
/// statfs(2) `f_type` of a cgroup v1 hierarchy (linux/magic.h).
pub const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;

/// The controllers tried one per mount in gVisor (REFERENCE §0: gVisor implements these,
/// `job` being its own stub, and each hierarchy takes exactly one controller).
pub const GVISOR_CONTROLLERS: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "pids", "job",
];

/// How often the v2 evacuation is retried when enabling controllers says EBUSY (a process
/// appeared in the root cgroup between the move and the write). The moby `hack/dind` loop
/// has no bound; ours must end, because PID 1 must reach its event loop.
pub const V2_ENABLE_ATTEMPTS: u32 = 10;

/// Mount options that are flags of a cgroup v1 super block, not controllers.
const CGROUP_FLAG_OPTIONS: [&str; 10] = [
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavordynmods",
    "all",
    "none",
];

// ---------------------------------------------------------------------------
// What the system shows.

/// The inputs of the planner, as read from the system (or from a fixture directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `/proc/self/cgroup`.
    pub proc_self_cgroup: String,
    /// `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// `/proc/cgroups`.
    pub proc_cgroups: String,
    /// `f_type` of statfs(2) on /sys/fs/cgroup; `None` when the directory does not exist.
    pub statfs_magic: Option<u64>,
}

impl Snapshot {
    /// Reads the snapshot of this process. /proc/self/mountinfo must be readable (without it
    /// nothing can be planned); a missing /proc/self/cgroup or /proc/cgroups reads as empty
    /// (gVisor before any mount shows them empty anyway).
    pub fn read() -> Result<Snapshot, Error> {
        let read = |path: &str| {
            std::fs::read_to_string(path).map_err(|source| Error::Fs {
                op: "read".to_owned(),
                path: PathBuf::from(path),
                source,
            })
        };
        let mountinfo = read("/proc/self/mountinfo")?;
        let proc_self_cgroup = read("/proc/self/cgroup").unwrap_or_default();
        let proc_cgroups = read("/proc/cgroups").unwrap_or_default();
        let statfs_magic = rustix::fs::statfs(CGROUP_ROOT)
            .ok()
            // f_type is a signed word on some targets; the magic numbers are all positive.
            .map(|s| s.f_type as u64);
        Ok(Snapshot {
            proc_self_cgroup,
            mountinfo,
            proc_cgroups,
            statfs_magic,
        })
    }

    /// Reads a fixture directory: files `proc_self_cgroup`, `mountinfo`, `proc_cgroups` and
    /// `statfs` (the magic in hex, e.g. `0x1021994`, or `missing`).
    pub fn from_dir(dir: &Path) -> io::Result<Snapshot> {
        let read = |name: &str| std::fs::read_to_string(dir.join(name));
        let statfs = read("statfs")?;
        let statfs = statfs.trim();
        let statfs_magic = if statfs == "missing" {
            None
        } else {
            let hex = statfs.trim_start_matches("0x");
            Some(u64::from_str_radix(hex, 16).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad statfs magic {statfs:?}"),
                )
            })?)
        };
        Ok(Snapshot {
            proc_self_cgroup: read("proc_self_cgroup")?,
            mountinfo: read("mountinfo")?,
            proc_cgroups: read("proc_cgroups")?,
            statfs_magic,
        })
    }

    /// The mounts of the snapshot that a path lookup can reach.
    pub fn visible_mounts(&self) -> Vec<Mount> {
        visible(&parse_mountinfo(&self.mountinfo))
    }

    /// How dockerd will see cgroups.
    pub fn kind(&self) -> CgroupKind {
        classify(self.statfs_magic, &self.visible_mounts())
    }

    /// Controllers that /proc/cgroups lists as attached to a hierarchy and enabled.
    pub fn attached_controllers(&self) -> BTreeSet<String> {
        parse_proc_cgroups(&self.proc_cgroups)
            .into_iter()
            .filter(|c| c.enabled)
            .map(|c| c.name)
            .collect()
    }
}

/// The name of a statfs magic, for messages.
pub fn fs_name(magic: Option<u64>) -> String {
    match magic {
        None => "missing".to_owned(),
        Some(CGROUP2_SUPER_MAGIC) => "cgroup2".to_owned(),
        Some(TMPFS_MAGIC) => "tmpfs".to_owned(),
        Some(SYSFS_MAGIC) => "sysfs".to_owned(),
        Some(CGROUP_SUPER_MAGIC) => "cgroup".to_owned(),
        Some(other) => format!("{other:#x}"),
    }
}

/// cgroup v1, v2, or v1 with a cgroup2 beside it, decided as dockerd decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupKind {
    V1,
    /// v1 with a cgroup2 mounted at /sys/fs/cgroup/unified (systemd's hybrid layout).
    /// dockerd 20.10 takes its v1 path; runc also joins the unified hierarchy.
    Hybrid,
    V2,
}

impl CgroupKind {
    /// The status JSON spelling: `v1`, `hybrid`, `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Hybrid => "hybrid",
            Self::V2 => "v2",
        }
    }
}

/// statfs says cgroup2 → v2; else hybrid when a cgroup2 is mounted at
/// /sys/fs/cgroup/unified; else v1 (a missing /sys/fs/cgroup included: dockerd 20.10
/// panics there, and the plan creates it).
pub fn classify(statfs_magic: Option<u64>, visible: &[Mount]) -> CgroupKind {
    if statfs_magic == Some(CGROUP2_SUPER_MAGIC) {
        return CgroupKind::V2;
    }
    let unified = Path::new(CGROUP_ROOT).join("unified");
    if visible
        .iter()
        .any(|m| m.fstype == "cgroup2" && Path::new(&m.mount_point) == unified)
    {
        CgroupKind::Hybrid
    } else {
        CgroupKind::V1
    }
}

/// A cgroup v1 hierarchy, as /proc/self/cgroup or a mount's options name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hierarchy {
    /// Controllers in the kernel's order (`cpu`, `cpuacct`); empty for a named-only hierarchy.
    pub controllers: Vec<String>,
    /// The `name=` of a named hierarchy (`systemd`).
    pub name: Option<String>,
}

impl Hierarchy {
    /// One controller, or `name=X` when `what` starts with `name=`.
    pub fn single(what: &str) -> Hierarchy {
        match what.strip_prefix("name=") {
            Some(name) => Hierarchy {
                controllers: Vec::new(),
                name: Some(name.to_owned()),
            },
            None => Hierarchy {
                controllers: vec![what.to_owned()],
                name: None,
            },
        }
    }

    /// From a comma-separated list as /proc/self/cgroup writes it (`cpu,cpuacct`,
    /// `name=systemd`).
    fn from_list(list: &str) -> Hierarchy {
        let mut h = Hierarchy {
            controllers: Vec::new(),
            name: None,
        };
        for item in list.split(',').filter(|s| !s.is_empty()) {
            match item.strip_prefix("name=") {
                Some(name) => h.name = Some(name.to_owned()),
                None => h.controllers.push(item.to_owned()),
            }
        }
        h
    }

    /// Identity for comparison: sorted members (the order differs between sources).
    fn key(&self) -> BTreeSet<String> {
        let mut key: BTreeSet<String> = self.controllers.iter().cloned().collect();
        if let Some(name) = &self.name {
            key.insert(format!("name={name}"));
        }
        key
    }

    fn same(&self, other: &Hierarchy) -> bool {
        !self.key().is_empty() && self.key() == other.key()
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// As /proc/self/cgroup writes it: `cpu,cpuacct`, `name=systemd`.
    pub fn label(&self) -> String {
        let mut parts = self.controllers.clone();
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        parts.join(",")
    }

    /// The directory under /sys/fs/cgroup, named as Docker and systemd name it:
    /// `cpu,cpuacct`, and `systemd` for `name=systemd`.
    pub fn dir_name(&self) -> String {
        if self.controllers.is_empty() {
            self.name.clone().unwrap_or_default()
        } else {
            self.controllers.join(",")
        }
    }

    /// The data argument of mount(2). A named hierarchy without controllers needs `none`:
    /// otherwise Linux (and gVisor, which then answers EBUSY) would take it as "all".
    pub fn mount_options(&self) -> String {
        match (&self.name, self.controllers.is_empty()) {
            (Some(name), true) => format!("none,name={name}"),
            (Some(name), false) => format!("{},name={name}", self.controllers.join(",")),
            (None, _) => self.controllers.join(","),
        }
    }
}

/// One line of /proc/self/cgroup: `ID:CONTROLLERS:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroupLine {
    pub id: u32,
    pub hierarchy: Hierarchy,
    pub path: String,
}

/// Parses /proc/self/cgroup; malformed lines are skipped. The cgroup2 line is `0::PATH`.
pub fn parse_proc_self_cgroup(text: &str) -> Vec<ProcCgroupLine> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let list = parts.next()?;
            let path = parts.next()?.to_owned();
            Some(ProcCgroupLine {
                id,
                hierarchy: Hierarchy::from_list(list),
                path,
            })
        })
        .collect()
}

/// One controller line of /proc/cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCgroupsEntry {
    pub name: String,
    /// The hierarchy id; 0 when the controller is not on a v1 hierarchy.
    pub hierarchy: u32,
    pub enabled: bool,
}

/// Parses /proc/cgroups (the header line and malformed lines are skipped).
pub fn parse_proc_cgroups(text: &str) -> Vec<ProcCgroupsEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(ProcCgroupsEntry {
                name: (*f.first()?).to_owned(),
                hierarchy: f.get(1)?.parse().ok()?,
                enabled: *f.get(3)? == "1",
            })
        })
        .collect()
}

/// One line of /proc/self/mountinfo (proc_pid_mountinfo(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// The path inside the file system that is mounted (for cgroups, the cgroup).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw`, `ro`, `nosuid`, ...).
    pub mount_options: Vec<String>,
    /// Optional fields (`shared:1`, `master:2`).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-super-block options (for cgroup v1, the controllers).
    pub super_options: Vec<String>,
}

impl Mount {
    /// Read-only either per mount (a ro bind, as Docker makes them) or per super block.
    pub fn read_only(&self) -> bool {
        self.per_mount_read_only() || self.super_read_only()
    }

    fn per_mount_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }

    fn super_read_only(&self) -> bool {
        self.super_options.iter().any(|o| o == "ro")
    }

    /// For a `cgroup` (v1) mount, the hierarchy its options name. gVisor drops `name=` from
    /// the options of a named hierarchy, so such a mount has neither controllers nor name.
    pub fn hierarchy(&self) -> Option<Hierarchy> {
        if self.fstype != "cgroup" {
            return None;
        }
        let mut h = Hierarchy {
            controllers: Vec::new(),
            name: None,
        };
        for o in &self.super_options {
            if let Some(name) = o.strip_prefix("name=") {
                h.name = Some(name.to_owned());
            } else if !o.contains('=') && !CGROUP_FLAG_OPTIONS.contains(&o.as_str()) {
                h.controllers.push(o.clone());
            }
        }
        Some(h)
    }

    /// A label for `status`: the hierarchy's label, or for a gVisor named hierarchy (no
    /// options), `name=` plus its directory's name.
    pub fn label(&self) -> String {
        match self.hierarchy() {
            Some(h) if !h.key().is_empty() => h.label(),
            Some(_) => {
                let dir = Path::new(&self.mount_point)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!("name={dir}")
            }
            None => self.fstype.clone(),
        }
    }

    /// The flags to keep when remounting: without them a bind remount would drop
    /// nosuid/nodev/noexec, which a container's mounts may be locked to.
    fn keep_flags(&self) -> MountFlags {
        let mut flags = MountFlags::empty();
        for (name, flag) in [
            ("nosuid", MountFlags::NOSUID),
            ("nodev", MountFlags::NODEV),
            ("noexec", MountFlags::NOEXEC),
        ] {
            if self.mount_options.iter().any(|o| o == name) {
                flags |= flag;
            }
        }
        flags
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo; malformed lines are skipped. gVisor writes an empty optional
/// field as a double space, which splitting on whitespace absorbs.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            if dash < 6 {
                return None;
            }
            let split = |s: &str| -> Vec<String> {
                s.split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            Some(Mount {
                id: fields.first()?.parse().ok()?,
                parent: fields.get(1)?.parse().ok()?,
                root: unescape(fields.get(3)?),
                mount_point: unescape(fields.get(4)?),
                mount_options: split(fields.get(5)?),
                optional: fields
                    .get(6..dash)?
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                fstype: (*fields.get(dash + 1)?).to_owned(),
                source: unescape(fields.get(dash + 2).copied().unwrap_or("none")),
                super_options: split(fields.get(dash + 3).copied().unwrap_or("")),
            })
        })
        .collect()
}

fn is_strict_ancestor(ancestor: &str, path: &str) -> bool {
    if ancestor == path {
        return false;
    }
    ancestor == "/"
        || path
            .strip_prefix(ancestor)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The mounts a path lookup can reach, in mountinfo order. A mount is hidden when another is
/// stacked on it (same mount point, the other's parent is it), when a sibling was mounted
/// later over a directory above it, or when its parent is hidden. Decided from ids, not from
/// line order, because mountinfo does not list mounts strictly in mount order (this machine
/// lists /proc before /). A root that is its own parent (gVisor) ends the walk.
pub fn visible(mounts: &[Mount]) -> Vec<Mount> {
    // Another mount stacked on `m` (mounted on its root) hides `m` and everything under it.
    let stacked_on = |m: &Mount| {
        mounts
            .iter()
            .any(|c| c.id != m.id && c.parent == m.id && c.mount_point == m.mount_point)
    };
    // A sibling mounted later over a directory above `m` hides it.
    let shadowed = |m: &Mount| {
        mounts.iter().any(|c| {
            c.id != m.id
                && c.parent == m.parent
                && c.parent != c.id
                && is_strict_ancestor(&c.mount_point, &m.mount_point)
        })
    };
    mounts
        .iter()
        .filter(|m| {
            if stacked_on(m) {
                return false;
            }
            let mut current = *m;
            // Bounded: a corrupt table with a parent cycle must not hang PID 1.
            for _ in 0..64 {
                if shadowed(current) {
                    return false;
                }
                let Some(parent) = mounts
                    .iter()
                    .find(|p| p.id == current.parent && p.id != current.id)
                else {
                    return true;
                };
                // The parent must be reachable too. When `current` is the mount stacked on
                // it, the parent being covered is `current` itself, which is fine.
                if current.mount_point != parent.mount_point && stacked_on(parent) {
                    return false;
                }
                current = parent;
            }
            true
        })
        .cloned()
        .collect()
}

/// The visible mount at exactly `path`.
fn mount_at<'a>(visible: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    visible.iter().find(|m| Path::new(&m.mount_point) == path)
}

// ---------------------------------------------------------------------------
// The plan.

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
    /// cgroup v2: move every process of `from` into `to`.
    MovePids { from: PathBuf, to: PathBuf },
    /// cgroup v2: enable every controller of `cgroup.controllers` in `cgroup.subtree_control`
    /// of `cgroup`; on EBUSY move the processes into `evacuate_to` again and retry.
    EnableControllers {
        cgroup: PathBuf,
        evacuate_to: PathBuf,
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
                evacuate_to,
            } => write!(
                f,
                "enable every controller of {0}/cgroup.controllers in {0}/cgroup.subtree_control \
                 (on EBUSY move processes into {1} again, at most {V2_ENABLE_ATTEMPTS} times)",
                cgroup.display(),
                evacuate_to.display()
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
    };
    let root = PathBuf::from(CGROUP_ROOT);
    // dockerd 20.10 panics ("cannot statfs cgroup root") without it, whatever the mode.
    if snap.statfs_magic.is_none() {
        plan.actions.push(Action::Mkdir { path: root.clone() });
    }
    let v2 = match cfg.mode {
        CgroupMode::Off => return plan,
        CgroupMode::V2 => true,
        CgroupMode::Auto => kind == CgroupKind::V2,
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

fn remount_action(m: &Mount) -> Action {
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

fn plan_v2(snap: &Snapshot, visible: &[Mount], gvisor: bool, plan: &mut Plan) {
    let root = PathBuf::from(CGROUP_ROOT);
    if snap.statfs_magic != Some(CGROUP2_SUPER_MAGIC) {
        // `mode = "v2"` where /sys/fs/cgroup is not cgroup2 yet: mount it, so that dockerd
        // sees v2. Only possible where the kernel has cgroup2 with free controllers.
        if gvisor {
            plan.failure = Some(reason_gvisor_no_cgroup2());
            return;
        }
        plan.actions.push(Action::MountCgroup2 {
            target: root.clone(),
            required: true,
        });
    } else if let Some(m) = mount_at(visible, &root).filter(|m| m.read_only()) {
        plan.actions.push(remount_action(m));
    }
    let init = root.join("init");
    plan.actions.push(Action::Mkdir { path: init.clone() });
    plan.actions.push(Action::MovePids {
        from: root.clone(),
        to: init.clone(),
    });
    plan.actions.push(Action::EnableControllers {
        cgroup: root,
        evacuate_to: init,
    });
}

/// Whether a visible cgroup mount serves `h`, and whether it is writable.
fn find_hierarchy<'a>(visible: &'a [Mount], h: &Hierarchy) -> Option<&'a Mount> {
    // The last visible match wins: it is the one mounted most recently.
    visible
        .iter()
        .rev()
        .find(|m| m.hierarchy().is_some_and(|mh| mh.same(h)))
}

/// The visible mount at /sys/fs/cgroup as a base for new hierarchies: `Reuse` a writable
/// tmpfs, `Remount` a read-only one, or mount a fresh tmpfs over whatever is there.
enum Base<'a> {
    Reuse,
    Remount(&'a Mount),
    Fresh,
}

fn base(visible: &[Mount]) -> Base<'_> {
    match mount_at(visible, Path::new(CGROUP_ROOT)) {
        Some(m) if m.fstype == "tmpfs" && m.read_only() => Base::Remount(m),
        Some(m) if m.fstype == "tmpfs" => Base::Reuse,
        _ => Base::Fresh,
    }
}

/// Plans the base at /sys/fs/cgroup (see [`Base`]); true when it is a fresh tmpfs,
/// which hides whatever was mounted below it.
fn plan_base(visible: &[Mount], root: &Path, plan: &mut Plan) -> bool {
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

fn plan_v1(snap: &Snapshot, visible: &[Mount], cfg: &CgroupConfig, plan: &mut Plan) {
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
fn push_v1_mount(
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

fn plan_v1_gvisor(snap: &Snapshot, visible: &[Mount], cfg: &CgroupConfig, plan: &mut Plan) {
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

fn reason_mount_failed(h: &Hierarchy, error: &dyn fmt::Display) -> String {
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

fn reason_tmpfs_failed(error: &dyn fmt::Display) -> String {
    format!(
        "cannot mount a tmpfs on {CGROUP_ROOT} to hold the cgroup hierarchies ({error}), so \
         dockerd will refuse to start with \"Devices cgroup isn't mounted\"; fix: run the \
         container privileged (it needs CAP_SYS_ADMIN) or under gVisor"
    )
}

fn reason_read_only(target: &Path, error: &dyn fmt::Display) -> String {
    format!(
        "the cgroup mount {} is read-only and remounting it read-write failed ({error}): dockerd \
         may start, but every `docker run` fails with \"mkdir /sys/fs/cgroup/...: read-only \
         file system\"; fix: the container needs writable cgroups: run it privileged (runc) or \
         under gVisor (runsc)",
        target.display()
    )
}

fn reason_kernel_without_devices() -> String {
    "the kernel offers no devices cgroup controller (/proc/self/cgroup does not list it), so \
     dockerd will refuse to start with \"Devices cgroup isn't mounted\"; fix: run on a kernel \
     built with CONFIG_CGROUP_DEVICE, or on a cgroup v2 host"
        .to_owned()
}

fn reason_no_v1_hierarchies() -> String {
    "/proc/self/cgroup lists no cgroup v1 hierarchy although /sys/fs/cgroup is not cgroup2, \
     so dockerd (which takes its v1 path) will refuse to start with \"Devices cgroup isn't \
     mounted\"; fix: mount cgroup2 on /sys/fs/cgroup (cgroup.mode = \"v2\") or run on a host \
     with cgroup v1 controllers"
        .to_owned()
}

fn reason_v1_on_v2() -> String {
    "cgroup.mode is \"v1\" but /sys/fs/cgroup is a cgroup2 file system, and dockerd chooses its \
     cgroup code by that; fix: set cgroup.mode = \"auto\" (or \"v2\")"
        .to_owned()
}

fn reason_gvisor_no_cgroup2() -> String {
    "cgroup.mode is \"v2\" but /sys/fs/cgroup is not cgroup2, and gVisor offers cgroup2 only \
     from release-20260706.0 with runsc --mount-cgroup-v2; fix: set cgroup.mode = \"auto\""
        .to_owned()
}

fn reason_cgroup2_failed(error: &dyn fmt::Display) -> String {
    format!(
        "cannot mount cgroup2 on {CGROUP_ROOT} ({error}) although cgroup.mode is \"v2\"; fix: \
         set cgroup.mode = \"auto\", or run on a cgroup v2 host"
    )
}

fn reason_v2_busy(error: &dyn fmt::Display) -> String {
    format!(
        "cannot enable the cgroup v2 controllers in {CGROUP_ROOT}/cgroup.subtree_control ({error} \
         after {V2_ENABLE_ATTEMPTS} attempts: processes this init cannot see or move stay in \
         the root cgroup), so `docker run` will fail with \"cannot enter cgroupv2 ... invalid \
         state\"; fix: give the container its own cgroup namespace (docker run \
         --cgroupns=private) and run dind-init as its PID 1"
    )
}

// ---------------------------------------------------------------------------
// The applier.

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
    fn did(&mut self, action: &'static str, target: &Path, what: String) {
        info!(action, target = %target.display(), "{what}");
        self.actions.push(what);
    }

    /// Records and logs a problem that does not stop dockerd.
    fn warn(&mut self, what: String) {
        warn!("{what}");
        self.warnings.push(what);
    }

    /// Records a best-effort step that failed; only a debug line (expected in many
    /// containers: /sys read-only, no securityfs).
    fn note(&mut self, what: String) {
        debug!("{what}");
        self.warnings.push(what);
    }
}

/// Prepares cgroups and the runtime directories before dockerd starts (SPEC §4 step 3, §5).
/// Never fails: problems are logged and reported in the outcome.
pub fn prepare(cfg: &Config, env: &Environment) -> CgroupOutcome {
    let mut out = CgroupOutcome::default();
    match Snapshot::read() {
        Ok(snap) => {
            let plan = plan(&snap, env.gvisor, &cfg.cgroup);
            out.mode = plan.mode.as_str().to_owned();
            if let Some(reason) = &plan.failure {
                out.fail(reason.clone());
            }
            apply(&plan, env, &mut out);
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
    if env.stray_systemd && !mentions(&cfg.dockerd.args, "native.cgroupdriver") {
        info!(
            "/run/systemd/system exists but systemd is not running: passing \
             --exec-opt native.cgroupdriver=cgroupfs to dockerd"
        );
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

fn mentions(args: &[String], what: &str) -> bool {
    args.iter().any(|a| a.contains(what))
}

/// Fills `mounted` (and `controllers` on v2) from a fresh look at the mount table.
fn summarize(out: &mut CgroupOutcome) {
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
fn apply(plan: &Plan, env: &Environment, out: &mut CgroupOutcome) {
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
                let only = (!env.pid1).then(|| rustix::process::getpid().as_raw_nonzero().get());
                let moved = move_pids(&mut files, from, to, only);
                if moved > 0 {
                    out.did(
                        "move-pids",
                        to,
                        format!(
                            "moved {moved} process(es) out of the root cgroup {} into {}",
                            from.display(),
                            to.display()
                        ),
                    );
                }
            }
            Action::EnableControllers {
                cgroup,
                evacuate_to,
            } => {
                let only = (!env.pid1).then(|| rustix::process::getpid().as_raw_nonzero().get());
                let report = enable_controllers(&mut files, cgroup, evacuate_to, only);
                if report.moved > 0 {
                    out.did(
                        "move-pids",
                        evacuate_to,
                        format!(
                            "moved {} process(es) that appeared in the root cgroup into {}",
                            report.moved,
                            evacuate_to.display()
                        ),
                    );
                }
                if !report.enabled.is_empty() {
                    out.did(
                        "enable-controllers",
                        cgroup,
                        format!(
                            "enabled cgroup v2 controllers {} (after {} writes)",
                            report.enabled.join(" "),
                            report.attempts
                        ),
                    );
                }
                for (controller, e) in &report.refused {
                    out.warn(format!(
                        "cannot enable the cgroup v2 controller {controller}: {e}"
                    ));
                }
                if let Some(e) = report.busy {
                    out.fail(reason_v2_busy(&e));
                }
            }
        }
    }
}

fn mount_fs(
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

fn mount_hierarchy(
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
fn mkdir(path: &Path, out: &mut CgroupOutcome) -> Result<(), Error> {
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
fn stub_files(controller: &str) -> Vec<(&'static str, &'static str)> {
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

fn stub(dir: &Path, controller: &str, out: &mut CgroupOutcome) {
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

// ---------------------------------------------------------------------------
// cgroup v2 evacuation.

/// The cgroupfs reads and writes the v2 evacuation needs: a trait so that the EBUSY retry
/// is unit-tested without a kernel.
trait CgroupFiles {
    fn read(&mut self, path: &Path) -> io::Result<String>;
    /// One write(2) of `data` (cgroupfs takes one value per write).
    fn write(&mut self, path: &Path, data: &str) -> io::Result<()>;
}

struct RealFiles;

impl CgroupFiles for RealFiles {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let n = f.write(data.as_bytes())?;
        if n == data.len() {
            Ok(())
        } else {
            Err(io::ErrorKind::WriteZero.into())
        }
    }
}

/// Moves the processes of `from` into `to`, returning how many moved. Pid 0 in cgroup.procs
/// is a process outside our pid namespace: it cannot be named, and writing "0" would move
/// the writer itself. `only` restricts the move to one pid: a non-PID 1 init must not move
/// processes that are not its own (it may share the machine's pid namespace). ESRCH (the
/// process exited) is not an error; other refusals are logged and left for the EBUSY retry.
fn move_pids(files: &mut impl CgroupFiles, from: &Path, to: &Path, only: Option<i32>) -> usize {
    let procs = match files.read(&from.join("cgroup.procs")) {
        Ok(text) => text,
        Err(e) => {
            debug!(error = %e, from = %from.display(), "cannot read cgroup.procs");
            return 0;
        }
    };
    let target = to.join("cgroup.procs");
    let mut moved = 0;
    for pid in procs
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid == 0 || only.is_some_and(|o| o != pid) {
            continue;
        }
        match files.write(&target, &pid.to_string()) {
            Ok(()) => moved += 1,
            Err(e) if is_errno(&e, rustix::io::Errno::SRCH) => {}
            Err(e) => debug!(pid, error = %e, "cannot move a process out of the root cgroup"),
        }
    }
    moved
}

fn is_errno(e: &io::Error, errno: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// What enabling the v2 controllers did.
#[derive(Debug, Default)]
struct EnableReport {
    /// Controllers newly enabled.
    enabled: Vec<String>,
    /// Processes moved by the retries.
    moved: usize,
    /// Writes made (1 when the first one worked).
    attempts: u32,
    /// Controllers the kernel refused for another reason than EBUSY.
    refused: Vec<(String, io::Error)>,
    /// Still EBUSY after every attempt.
    busy: Option<io::Error>,
}

/// Enables every controller of `cgroup.controllers` not yet in `cgroup.subtree_control`
/// (hack/dind), all in one write; on EBUSY (a process is still in the root cgroup: "no
/// internal processes") moves processes into `evacuate_to` again and retries, at most
/// [`V2_ENABLE_ATTEMPTS`] writes. Another error makes it try each controller alone, so that
/// one refused controller does not cost the others.
fn enable_controllers(
    files: &mut impl CgroupFiles,
    cgroup: &Path,
    evacuate_to: &Path,
    only: Option<i32>,
) -> EnableReport {
    let mut report = EnableReport::default();
    let available = files
        .read(&cgroup.join("cgroup.controllers"))
        .unwrap_or_default();
    let enabled = files
        .read(&cgroup.join("cgroup.subtree_control"))
        .unwrap_or_default();
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .map(str::to_owned)
        .collect();
    if missing.is_empty() {
        return report;
    }
    let control = cgroup.join("cgroup.subtree_control");
    let all = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    loop {
        report.attempts += 1;
        match files.write(&control, &all) {
            Ok(()) => {
                report.enabled = missing;
                return report;
            }
            Err(e) if is_errno(&e, rustix::io::Errno::BUSY) => {
                if report.attempts >= V2_ENABLE_ATTEMPTS {
                    report.busy = Some(e);
                    return report;
                }
                report.moved += move_pids(files, cgroup, evacuate_to, only);
            }
            Err(_) => break,
        }
    }
    for c in missing {
        match files.write(&control, &format!("+{c}")) {
            Ok(()) => report.enabled.push(c),
            Err(e) => report.refused.push((c, e)),
        }
    }
    report
}

// ---------------------------------------------------------------------------
// Best effort: securityfs, rshared; and the runtime directories.

/// securityfs on /sys/kernel/security (AppArmor detection in dockerd reads it) and `/` made
/// rshared (so mounts dockerd makes propagate to the containers' mount namespaces as on a
/// host). Neither is needed for dockerd to start; failures are debug lines and warnings.
fn best_effort(snap: &Snapshot, env: &Environment, out: &mut CgroupOutcome) {
    let visible = snap.visible_mounts();
    let security = Path::new("/sys/kernel/security");
    // gVisor has no securityfs (REFERENCE §1.0 step 6): trying would only log noise.
    if !env.gvisor && security.is_dir() && mount_at(&visible, security).is_none() {
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
fn dockerd_pidfile(args: &[String]) -> PathBuf {
    crate::prepare::launch::option_value(args, &["--pidfile", "-p"])
        .map_or_else(|| PathBuf::from("/var/run/docker.pid"), PathBuf::from)
}

/// The directories the socket, pid and ready files will be created in (SPEC §4 step 3).
pub fn runtime_dirs(cfg: &Config) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for file in [
        cfg.dockerd.socket.clone(),
        dockerd_pidfile(&cfg.dockerd.args),
        cfg.readiness.socket.clone(),
        cfg.readiness.file.clone(),
    ] {
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    dirs
}

fn create_runtime_dirs(cfg: &Config, out: &mut CgroupOutcome) {
    for dir in runtime_dirs(cfg) {
        if let Err(e) = mkdir(&dir, out) {
            out.warn(e.to_string());
        }
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn fixture(case: &str) -> Snapshot {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(case);
        Snapshot::from_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    }

    fn cfg() -> CgroupConfig {
        CgroupConfig::default()
    }

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn mkdir_a(path: &str) -> Action {
        Action::Mkdir { path: p(path) }
    }

    fn cg(target: &str, what: &str, probe: bool, required: bool, stub: bool) -> Action {
        Action::MountCgroup {
            target: p(target),
            hierarchy: Hierarchy::from_list(what),
            attempt: Attempt {
                probe,
                required,
                stub,
            },
        }
    }

    fn tmpfs() -> Action {
        Action::MountTmpfs {
            target: p(CGROUP_ROOT),
        }
    }

    /// The gVisor plan from nothing: tmpfs, then each controller alone, then name=systemd.
    fn gvisor_from_scratch(stub: bool) -> Vec<Action> {
        let mut want = vec![tmpfs()];
        for c in GVISOR_CONTROLLERS {
            let dir = format!("/sys/fs/cgroup/{c}");
            want.push(mkdir_a(&dir));
            want.push(cg(&dir, c, true, c == "devices", stub));
        }
        want.push(mkdir_a("/sys/fs/cgroup/systemd"));
        want.push(cg(
            "/sys/fs/cgroup/systemd",
            "name=systemd",
            true,
            false,
            false,
        ));
        want
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let lines = parse_proc_self_cgroup(
            "9:name=systemd:/\n2:cpu,cpuacct:/docker/x\n0::/init\nbad\n3:net_cls,net_prio,name=n:/\n",
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].hierarchy.label(), "name=systemd");
        assert_eq!(lines[0].hierarchy.dir_name(), "systemd");
        assert_eq!(lines[0].hierarchy.mount_options(), "none,name=systemd");
        assert_eq!(lines[1].hierarchy.controllers, ["cpu", "cpuacct"]);
        assert_eq!(lines[1].hierarchy.dir_name(), "cpu,cpuacct");
        assert_eq!(lines[1].path, "/docker/x");
        assert_eq!(lines[2].id, 0);
        assert!(lines[2].hierarchy.key().is_empty());
        assert_eq!(
            lines[3].hierarchy.mount_options(),
            "net_cls,net_prio,name=n"
        );
    }

    #[test]
    fn parses_mountinfo_of_every_fixture() {
        for case in [
            "host-v1-hybrid",
            "runsc-20221219",
            "runsc-20240729",
            "runsc-20240729-docker",
            "docker-runc-readonly",
            "host-v2",
        ] {
            let snap = fixture(case);
            let all = parse_mountinfo(&snap.mountinfo);
            assert_eq!(
                all.len(),
                snap.mountinfo.lines().count(),
                "{case}: a line was not parsed"
            );
            assert!(
                visible(&all).iter().any(|m| m.mount_point == "/"),
                "{case}: root not visible"
            );
        }
        let m = &parse_mountinfo(
            "41 31 0:38 / /sys/fs/cgroup/a\\040b rw,nosuid shared:9 master:2 - cgroup cgroup ro,cpu,cpuacct,release_agent=/x,xattr\n",
        )[0];
        assert_eq!(m.mount_point, "/sys/fs/cgroup/a b");
        assert_eq!(m.optional, ["shared:9", "master:2"]);
        assert!(m.read_only() && m.super_read_only() && !m.per_mount_read_only());
        assert_eq!(m.hierarchy().unwrap().controllers, ["cpu", "cpuacct"]);
        assert_eq!(m.keep_flags(), MountFlags::NOSUID);
    }

    #[test]
    fn stacked_and_covered_mounts_are_hidden() {
        let text = "\
1 0 8:1 / / rw - ext4 /dev/sda rw
2 1 0:2 / /sys rw - sysfs sysfs rw
3 2 0:3 / /sys/fs/cgroup rw - tmpfs tmpfs rw
4 3 0:4 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
5 3 0:5 / /sys/fs/cgroup rw - tmpfs tmpfs rw
6 5 0:6 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
7 2 0:7 / /sys/fs rw - tmpfs tmpfs rw
";
        let points: Vec<u64> = visible(&parse_mountinfo(text))
            .iter()
            .map(|m| m.id)
            .collect();
        // 3 is covered by 5, 4 is under 3; 5 and 6 are under /sys/fs, covered by 7.
        assert_eq!(points, [1, 2, 7]);
        let points: Vec<u64> = visible(&parse_mountinfo(
            &text.replace("7 2 0:7 / /sys/fs rw - tmpfs tmpfs rw\n", ""),
        ))
        .iter()
        .map(|m| m.id)
        .collect();
        assert_eq!(points, [1, 2, 5, 6]);
    }

    #[test]
    fn classifies_as_dockerd_does() {
        let table = [
            ("host-v1-hybrid", CgroupKind::Hybrid),
            ("runsc-20221219", CgroupKind::V1),
            ("runsc-20240729", CgroupKind::V1),
            ("runsc-20240729-docker", CgroupKind::V1),
            ("docker-runc-readonly", CgroupKind::V1),
            ("docker-runc-privileged", CgroupKind::V1),
            ("host-v2", CgroupKind::V2),
            ("host-v2-readonly", CgroupKind::V2),
        ];
        for (case, kind) in table {
            assert_eq!(fixture(case).kind(), kind, "{case}");
        }
        assert_eq!(classify(None, &[]), CgroupKind::V1);
    }

    #[test]
    fn this_machine_is_already_usable() {
        let plan = plan(&fixture("host-v1-hybrid"), false, &cfg());
        assert_eq!(plan.mode, Mode::V1);
        assert_eq!(plan.kind, CgroupKind::Hybrid);
        assert_eq!(plan.actions, []);
        assert_eq!(plan.failure, None);
    }

    #[test]
    fn privileged_docker_is_left_alone() {
        let plan = plan(&fixture("docker-runc-privileged"), false, &cfg());
        assert_eq!((plan.actions, plan.failure), (vec![], None));
    }

    #[test]
    fn read_only_docker_mounts_are_remounted_per_mount() {
        let plan = plan(&fixture("docker-runc-readonly"), false, &cfg());
        assert_eq!(plan.failure, None);
        let targets: Vec<String> = plan
            .actions
            .iter()
            .map(|a| match a {
                Action::RemountRw {
                    target, bind, keep, ..
                } => {
                    assert!(bind, "{a:?}: Docker's ro is per mount");
                    assert_eq!(
                        *keep,
                        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
                    );
                    target.display().to_string()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/blkio",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/devices",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/cpu",
            ]
        );
    }

    #[test]
    fn super_block_read_only_is_remounted_with_its_options() {
        let mut snap = fixture("docker-runc-privileged");
        snap.mountinfo = snap
            .mountinfo
            .replace("cgroup cgroup rw,cpu\n", "cgroup cgroup ro,cpu\n");
        let plan = plan(&snap, false, &cfg());
        assert_eq!(
            plan.actions,
            [Action::RemountRw {
                target: p("/sys/fs/cgroup/cpu"),
                bind: false,
                data: "cpu".to_owned(),
                keep: MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            }]
        );
    }

    #[test]
    fn v1_from_nothing_mounts_every_listed_hierarchy() {
        // This machine's /proc files with /sys/fs/cgroup unmounted (what the integration
        // test does in its private mount namespace), in a cgroup namespace.
        let mut snap = fixture("host-v1-hybrid");
        snap.mountinfo = snap
            .mountinfo
            .lines()
            .filter(|l| !l.contains("/sys/fs/cgroup"))
            .map(|l| format!("{l}\n"))
            .collect();
        snap.statfs_magic = Some(SYSFS_MAGIC);
        let plan = plan(&snap, false, &cfg());
        let mut want = vec![tmpfs()];
        for what in [
            "name=systemd",
            "pids",
            "blkio",
            "freezer",
            "devices",
            "memory",
            "cpuset",
            "cpuacct",
            "cpu",
        ] {
            let h = Hierarchy::from_list(what);
            let dir = format!("/sys/fs/cgroup/{}", h.dir_name());
            want.push(mkdir_a(&dir));
            want.push(cg(&dir, what, false, true, h.name.is_none()));
        }
        want.push(mkdir_a("/sys/fs/cgroup/unified"));
        want.push(Action::MountCgroup2 {
            target: p("/sys/fs/cgroup/unified"),
            required: false,
        });
        assert_eq!(plan.actions, want);
        assert_eq!(plan.failure, None);
        assert_eq!(plan.kind, CgroupKind::V1);
    }

    #[test]
    fn co_mounted_controllers_get_symlinks() {
        let snap = Snapshot {
            proc_self_cgroup: "3:cpu,cpuacct:/\n2:net_cls,net_prio:/\n1:devices:/\n".to_owned(),
            mountinfo: "1 0 8:1 / / rw - ext4 /dev/sda rw\n".to_owned(),
            proc_cgroups: String::new(),
            statfs_magic: Some(SYSFS_MAGIC),
        };
        let plan = plan(
            &snap,
            false,
            &CgroupConfig {
                stub_missing: false,
                ..cfg()
            },
        );
        let links: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Symlink { link, points_to } => {
                    Some(format!("{} -> {points_to}", link.display()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            links,
            [
                "/sys/fs/cgroup/cpu -> cpu,cpuacct",
                "/sys/fs/cgroup/cpuacct -> cpu,cpuacct",
                "/sys/fs/cgroup/net_cls -> net_cls,net_prio",
                "/sys/fs/cgroup/net_prio -> net_cls,net_prio",
            ]
        );
        assert!(plan.actions.contains(&cg(
            "/sys/fs/cgroup/cpu,cpuacct",
            "cpu,cpuacct",
            false,
            true,
            false
        )));
    }

    #[test]
    fn partial_tree_mounts_only_what_is_missing() {
        let mut snap = fixture("host-v1-hybrid");
        snap.mountinfo = snap
            .mountinfo
            .lines()
            .filter(|l| {
                !l.contains("/sys/fs/cgroup/devices") && !l.contains("/sys/fs/cgroup/unified")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        snap.proc_self_cgroup = snap.proc_self_cgroup.replace("0::/\n", "");
        let plan = plan(&snap, false, &cfg());
        assert_eq!(
            plan.actions,
            [
                mkdir_a("/sys/fs/cgroup/devices"),
                cg("/sys/fs/cgroup/devices", "devices", false, true, true)
            ]
        );
    }

    #[test]
    fn kernel_without_devices_fails_with_stub() {
        let snap = Snapshot {
            proc_self_cgroup: "1:cpu:/\n".to_owned(),
            mountinfo: "1 0 8:1 / / rw - ext4 /dev/sda rw\n2 1 0:2 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n3 2 0:3 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n".to_owned(),
            proc_cgroups: String::new(),
            statfs_magic: Some(TMPFS_MAGIC),
        };
        let plan = plan(&snap, false, &cfg());
        assert_eq!(
            plan.actions,
            [
                mkdir_a("/sys/fs/cgroup/devices"),
                Action::Stub {
                    dir: p("/sys/fs/cgroup/devices"),
                    controller: "devices".to_owned()
                }
            ]
        );
        assert!(plan
            .failure
            .unwrap()
            .contains("Devices cgroup isn't mounted"));
    }

    #[test]
    fn old_runsc_tries_each_controller_alone() {
        let plan = plan(&fixture("runsc-20221219"), true, &cfg());
        assert_eq!(plan.mode, Mode::V1Gvisor);
        assert_eq!(plan.kind, CgroupKind::V1);
        assert_eq!(plan.actions, gvisor_from_scratch(true));
        // Whether devices exists is learned by trying: no failure is certain yet.
        assert_eq!(plan.failure, None);
    }

    #[test]
    fn new_runsc_do_still_needs_mounts() {
        // /proc/cgroups lists all seven, but nothing is in the mount table: dockerd would
        // still say "Devices cgroup isn't mounted".
        let plan = plan(&fixture("runsc-20240729"), true, &cfg());
        assert_eq!(plan.actions, gvisor_from_scratch(true));
        let plan2 = super::plan(
            &fixture("runsc-20240729"),
            true,
            &CgroupConfig {
                stub_missing: false,
                ..cfg()
            },
        );
        assert_eq!(plan2.actions, gvisor_from_scratch(false));
    }

    #[test]
    fn runsc_mounted_controllers_are_used_as_they_are() {
        // docker run --runtime=runsc: runsc bound each controller's subtree, rw, on a tmpfs
        // that is ro (non-privileged) or rw (privileged). Both are usable.
        for case in ["runsc-20240729-docker", "runsc-20240729-docker-privileged"] {
            let plan = plan(&fixture(case), true, &cfg());
            assert_eq!((plan.actions, plan.failure), (vec![], None), "{case}");
        }
    }

    #[test]
    fn runsc_mounted_read_only_binds_are_remounted() {
        let mut snap = fixture("runsc-20240729-docker");
        snap.mountinfo = snap.mountinfo.replace(
            "/sys/fs/cgroup/devices rw - cgroup",
            "/sys/fs/cgroup/devices ro - cgroup",
        );
        let plan = plan(&snap, true, &cfg());
        assert_eq!(
            plan.actions,
            [Action::RemountRw {
                target: p("/sys/fs/cgroup/devices"),
                bind: true,
                data: String::new(),
                keep: MountFlags::empty(),
            }]
        );
    }

    #[test]
    fn prepared_trees_plan_nothing() {
        // Captured after dind-init prepared them: the idempotence of a second run.
        for (case, gvisor) in [
            ("runsc-20240729-prepared", true),
            ("host-v1-prepared", false),
        ] {
            let plan = plan(&fixture(case), gvisor, &cfg());
            assert_eq!((plan.actions, plan.failure), (vec![], None), "{case}");
        }
    }

    #[test]
    fn old_runsc_prepared_retries_only_devices() {
        // After a first run on runsc 0.0~20221219 devices is still missing; the second plan
        // reuses the tmpfs and the mounts and tries devices alone (its stub exists already).
        let plan = plan(&fixture("runsc-20221219-prepared"), true, &cfg());
        assert_eq!(
            plan.actions,
            [
                mkdir_a("/sys/fs/cgroup/devices"),
                cg("/sys/fs/cgroup/devices", "devices", true, true, true)
            ]
        );
    }

    #[test]
    fn gvisor_read_only_tmpfs_with_missing_controllers_is_remounted() {
        let mut snap = fixture("runsc-20240729-docker");
        snap.mountinfo = snap
            .mountinfo
            .lines()
            .filter(|l| !l.contains("/sys/fs/cgroup/devices"))
            .map(|l| format!("{l}\n"))
            .collect();
        let plan = plan(&snap, true, &cfg());
        let tmpfs_mount = parse_mountinfo(&snap.mountinfo)
            .into_iter()
            .find(|m| m.mount_point == CGROUP_ROOT)
            .unwrap();
        let mut want = vec![remount_action(&tmpfs_mount)];
        want.push(mkdir_a("/sys/fs/cgroup/devices"));
        want.push(cg("/sys/fs/cgroup/devices", "devices", true, true, true));
        want.push(mkdir_a("/sys/fs/cgroup/systemd"));
        want.push(cg(
            "/sys/fs/cgroup/systemd",
            "name=systemd",
            true,
            false,
            false,
        ));
        assert_eq!(plan.actions, want);
    }

    #[test]
    fn v2_evacuates_and_enables() {
        let plan = plan(&fixture("host-v2"), false, &cfg());
        assert_eq!(plan.mode, Mode::V2);
        assert_eq!(
            plan.actions,
            [
                mkdir_a("/sys/fs/cgroup/init"),
                Action::MovePids {
                    from: p("/sys/fs/cgroup"),
                    to: p("/sys/fs/cgroup/init")
                },
                Action::EnableControllers {
                    cgroup: p("/sys/fs/cgroup"),
                    evacuate_to: p("/sys/fs/cgroup/init")
                },
            ]
        );
        // The same in gVisor (runsc --mount-cgroup-v2).
        assert_eq!(
            super::plan(&fixture("host-v2"), true, &cfg()).actions,
            plan.actions
        );
    }

    #[test]
    fn v2_read_only_is_remounted_first() {
        let plan = plan(&fixture("host-v2-readonly"), false, &cfg());
        assert!(
            matches!(&plan.actions[0], Action::RemountRw { target, bind: true, .. } if target == Path::new(CGROUP_ROOT)),
            "{:?}",
            plan.actions
        );
        assert_eq!(plan.actions.len(), 4);
    }

    #[test]
    fn modes_from_config() {
        let off = CgroupConfig {
            mode: CgroupMode::Off,
            ..cfg()
        };
        let p_off = plan(&fixture("runsc-20221219"), true, &off);
        assert_eq!(
            (p_off.mode, p_off.actions, p_off.failure),
            (Mode::Off, vec![], None)
        );

        let v1 = CgroupConfig {
            mode: CgroupMode::V1,
            ..cfg()
        };
        let p_v1 = plan(&fixture("host-v2"), false, &v1);
        assert!(p_v1.failure.unwrap().contains("cgroup.mode is \"v1\""));

        let v2 = CgroupConfig {
            mode: CgroupMode::V2,
            ..cfg()
        };
        let p_v2 = plan(&fixture("host-v1-hybrid"), false, &v2);
        assert_eq!(p_v2.mode, Mode::V2);
        assert_eq!(
            p_v2.actions[0],
            Action::MountCgroup2 {
                target: p(CGROUP_ROOT),
                required: true
            }
        );
        let p_v2g = plan(&fixture("runsc-20240729"), true, &v2);
        assert!(p_v2g.failure.unwrap().contains("--mount-cgroup-v2"));
    }

    #[test]
    fn missing_cgroup_dir_is_created_first() {
        let mut snap = fixture("runsc-20221219");
        snap.statfs_magic = None;
        for mode in [CgroupMode::Off, CgroupMode::Auto] {
            let plan = plan(&snap, true, &CgroupConfig { mode, ..cfg() });
            assert_eq!(plan.actions[0], mkdir_a(CGROUP_ROOT), "{mode:?}");
        }
    }

    #[test]
    fn reasons_are_one_line_with_a_fix() {
        let e = io::Error::from_raw_os_error(22);
        let h = Hierarchy::single("devices");
        for reason in [
            reason_gvisor_devices(&e),
            reason_mount_failed(&h, &e),
            reason_mount_failed(&Hierarchy::single("name=systemd"), &e),
            reason_tmpfs_failed(&e),
            reason_read_only(Path::new("/sys/fs/cgroup/cpu"), &e),
            reason_kernel_without_devices(),
            reason_no_v1_hierarchies(),
            reason_v1_on_v2(),
            reason_gvisor_no_cgroup2(),
            reason_cgroup2_failed(&e),
            reason_v2_busy(&e),
        ] {
            assert!(!reason.contains('\n'), "{reason}");
            assert_eq!(reason.matches("; fix: ").count(), 1, "{reason}");
        }
        let devices = reason_gvisor_devices(&e);
        for needle in [
            "devices",
            "Devices cgroup isn't mounted",
            "bookworm-backports",
            "release-20230801.0",
        ] {
            assert!(devices.contains(needle), "{needle}: {devices}");
        }
    }

    #[test]
    fn action_lines_read_well() {
        let lines: Vec<String> = gvisor_from_scratch(true)
            .iter()
            .take(3)
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            lines,
            [
                "mount a tmpfs (mode 0755) on /sys/fs/cgroup",
                "create directory /sys/fs/cgroup/cpu",
                "try to mount cgroup cpu on /sys/fs/cgroup/cpu (EINVAL: this runsc lacks it; then a stub)",
            ]
        );
    }

    #[test]
    fn runtime_dirs_follow_config() {
        let mut c = Config::default();
        assert_eq!(runtime_dirs(&c), [p("/var/run"), p("/run/dind-init")]);
        c.dockerd.args = vec!["--pidfile".to_owned(), "/x/d.pid".to_owned()];
        c.readiness.file = p("/ready/f");
        assert_eq!(
            runtime_dirs(&c),
            [p("/var/run"), p("/x"), p("/run/dind-init"), p("/ready")]
        );
        c.dockerd.args = vec!["--pidfile=/y/d.pid".to_owned()];
        assert!(runtime_dirs(&c).contains(&p("/y")));
    }

    /// A cgroupfs in memory: processes in the root and `init`, EBUSY while the root has any
    /// and a controller is enabled (the "no internal processes" rule), and processes that
    /// appear in the root after the first move (forked meanwhile).
    struct FakeCgroupFs {
        root: Vec<i32>,
        init: Vec<i32>,
        available: String,
        enabled: Vec<String>,
        appear: VecDeque<i32>,
        refuse: Option<&'static str>,
        writes: u32,
    }

    impl CgroupFiles for FakeCgroupFs {
        fn read(&mut self, path: &Path) -> io::Result<String> {
            let name = path.file_name().unwrap().to_str().unwrap();
            let in_init = path.parent() == Some(Path::new("/cg/init"));
            Ok(match (name, in_init) {
                ("cgroup.procs", false) => {
                    let text = self.root.iter().map(|p| format!("{p}\n")).collect();
                    // One newcomer per look: it arrives after this read.
                    if let Some(p) = self.appear.pop_front() {
                        self.root.push(p);
                    }
                    text
                }
                ("cgroup.procs", true) => String::new(),
                ("cgroup.controllers", false) => self.available.clone(),
                ("cgroup.subtree_control", false) => self.enabled.join(" "),
                _ => return Err(io::ErrorKind::NotFound.into()),
            })
        }

        fn write(&mut self, path: &Path, data: &str) -> io::Result<()> {
            self.writes += 1;
            match path.to_str().unwrap() {
                "/cg/init/cgroup.procs" => {
                    let pid: i32 = data.parse().unwrap();
                    if pid == 0 {
                        panic!("wrote pid 0");
                    }
                    if pid == 666 {
                        // It exited between the read and the write.
                        self.root.retain(|p| *p != pid);
                        return Err(io::Error::from_raw_os_error(3)); // ESRCH
                    }
                    self.root.retain(|p| *p != pid);
                    self.init.push(pid);
                    Ok(())
                }
                "/cg/cgroup.subtree_control" => {
                    if let Some(bad) = self.refuse {
                        if data.contains(bad) {
                            return Err(io::Error::from_raw_os_error(22));
                        }
                    }
                    if self.root.iter().any(|p| *p != 0) {
                        return Err(io::Error::from_raw_os_error(16)); // EBUSY
                    }
                    for c in data.split_whitespace() {
                        self.enabled.push(c.trim_start_matches('+').to_owned());
                    }
                    Ok(())
                }
                other => panic!("write to {other}"),
            }
        }
    }

    fn fake(root: &[i32], appear: &[i32]) -> FakeCgroupFs {
        FakeCgroupFs {
            root: root.to_vec(),
            init: Vec::new(),
            available: "cpuset cpu io memory pids".to_owned(),
            enabled: vec!["cpu".to_owned()],
            appear: appear.iter().copied().collect(),
            refuse: None,
            writes: 0,
        }
    }

    #[test]
    fn v2_enable_retries_after_ebusy() {
        let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
        let mut fs = fake(&[1, 7, 666], &[42, 43]);
        // The first move leaves 42 behind (it appeared after the read).
        assert_eq!(move_pids(&mut fs, root, init, None), 2);
        let report = enable_controllers(&mut fs, root, init, None);
        assert_eq!(report.enabled, ["cpuset", "io", "memory", "pids"]);
        assert!(report.busy.is_none());
        assert!(report.attempts >= 2, "{report:?}");
        assert_eq!(report.moved, 2);
        assert_eq!(fs.init, [1, 7, 42, 43]);
    }

    #[test]
    fn v2_enable_gives_up_after_the_bound() {
        let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
        // A process that shows up on every look never lets the write through.
        let mut fs = fake(&[1], &(100..200).collect::<Vec<_>>());
        let report = enable_controllers(&mut fs, root, init, None);
        assert_eq!(report.attempts, V2_ENABLE_ATTEMPTS);
        assert!(report.busy.is_some());
        assert!(report.enabled.is_empty());
    }

    #[test]
    fn v2_enable_is_idempotent_and_skips_pid_0() {
        let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
        let mut fs = fake(&[0, 5], &[]);
        fs.enabled = ["cpuset", "cpu", "io", "memory", "pids"]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(move_pids(&mut fs, root, init, None), 1);
        let report = enable_controllers(&mut fs, root, init, None);
        assert!(report.enabled.is_empty() && report.attempts == 0);
        assert_eq!(fs.writes, 1, "only the one move");
    }

    #[test]
    fn v2_only_moves_itself_when_not_pid1() {
        let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
        let mut fs = fake(&[1, 5, 9], &[]);
        assert_eq!(move_pids(&mut fs, root, init, Some(5)), 1);
        assert_eq!(fs.init, [5]);
    }

    #[test]
    fn v2_refused_controller_does_not_cost_the_others() {
        let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
        let mut fs = fake(&[], &[]);
        fs.refuse = Some("io");
        let report = enable_controllers(&mut fs, root, init, None);
        assert_eq!(report.enabled, ["cpuset", "memory", "pids"]);
        assert_eq!(report.refused.len(), 1);
        assert_eq!(report.refused[0].0, "io");
    }
}
