//! What the system shows about mounts and cgroups: /proc/self/mountinfo, the texts of
//! /proc/self/cgroup and /proc/cgroups, and the statfs magic of /sys/fs/cgroup, read into
//! a [`Snapshot`] and parsed into plain values. Reads only, and pure parsing, so that the
//! cgroup planner (`prepare/cgroup`) and environment detection (`prepare/environment`)
//! work on the same facts and are unit-tested on fixtures captured from real systems
//! (`tests/fixtures/cgroup/`).
//!
//! See [proc_pid_mountinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html),
//! [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html),
//! [statfs(2)](https://man7.org/linux/man-pages/man2/statfs.2.html).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::MountFlags;

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
/// statfs(2) `f_type` of procfs (linux/magic.h).
pub const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// Why no directory (and no file) can be made at `dir`, if something shows it
/// before trying: its nearest existing ancestor is not a directory, is on a
/// read-only file system or on one that holds only the kernel's own entries (proc,
/// sysfs, cgroup), or is not writable. `None` when nothing speaks against it; what
/// exists is never changed.
pub fn unwritable_dir(dir: &Path) -> Option<String> {
    use rustix::fs::{access, statfs, statvfs, Access, StatVfsMountFlags};
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => return Some(format!("{} is not a directory", at.display())),
            // ENOTDIR: a file on the way, which the next round names.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                at = at.parent()?
            }
            Err(e) => return Some(format!("{}: {e}", at.display())),
        }
    }
    // The kernel's own file systems first: /sys is often read-only as well, and
    // "sysfs" says more.
    if at != dir {
        // f_type is a signed word on some targets; the magic numbers are all positive.
        let kernel_fs = match statfs(at).map(|s| s.f_type as u64) {
            Ok(PROC_SUPER_MAGIC) => Some("proc"),
            Ok(SYSFS_MAGIC) => Some("sysfs"),
            Ok(CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC) => Some("a cgroup file system"),
            _ => None,
        };
        if let Some(fs) = kernel_fs {
            return Some(format!(
                "{} is on {fs}, where no directory can be made",
                at.display()
            ));
        }
    }
    if statvfs(at).is_ok_and(|v| v.f_flag.contains(StatVfsMountFlags::RDONLY)) {
        return Some(format!("{} is on a read-only file system", at.display()));
    }
    if access(at, Access::WRITE_OK | Access::EXEC_OK).is_err() {
        return Some(format!("{} is not writable", at.display()));
    }
    None
}

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
    /// `/sys/fs/cgroup/cgroup.type` when /sys/fs/cgroup is cgroup2; `None` when that file
    /// does not exist: the kernel gives it to every cgroup but the root of the hierarchy,
    /// so `None` on a cgroup2 mount means the machine's true root cgroup.
    pub cgroup_type: Option<String>,
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
        let cgroup_type = if statfs_magic == Some(CGROUP2_SUPER_MAGIC) {
            std::fs::read_to_string(Path::new(CGROUP_ROOT).join("cgroup.type")).ok()
        } else {
            None
        };
        Ok(Snapshot {
            proc_self_cgroup,
            mountinfo,
            proc_cgroups,
            statfs_magic,
            cgroup_type,
        })
    }

    /// Reads a fixture directory: files `proc_self_cgroup`, `mountinfo`, `proc_cgroups`,
    /// `statfs` (the magic in hex, e.g. `0x1021994`, or `missing`) and, where
    /// /sys/fs/cgroup had one, `cgroup_type`.
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
        let cgroup_type = match read("cgroup_type") {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(Snapshot {
            proc_self_cgroup: read("proc_self_cgroup")?,
            mountinfo: read("mountinfo")?,
            proc_cgroups: read("proc_cgroups")?,
            statfs_magic,
            cgroup_type,
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

    /// A kernel that offers cgroup2 alone, before anything was mounted for it: nothing
    /// mounted on or under /sys/fs/cgroup and no v1 hierarchy in /proc/self/cgroup (only
    /// `0::/`, or nothing: the kernel shows the `0::` line only once cgroup2 has been
    /// mounted somewhere, `cgrp_dfl_visible` in kernel/cgroup/cgroup.c). dind-init as PID 1
    /// of a VM booted with `cgroup_no_v1=all` sees this. Never in gVisor, whose
    /// /proc/self/cgroup is empty too before its v1 controllers are mounted.
    pub fn bare_cgroup2(&self, gvisor: bool) -> bool {
        if gvisor || !matches!(self.statfs_magic, None | Some(SYSFS_MAGIC)) {
            return false;
        }
        let root = Path::new(CGROUP_ROOT);
        let mounted = self
            .visible_mounts()
            .iter()
            .any(|m| Path::new(&m.mount_point).starts_with(root));
        let v1_listed = parse_proc_self_cgroup(&self.proc_self_cgroup)
            .iter()
            .any(|l| l.id != 0);
        !mounted && !v1_listed
    }

    /// How the environment's cgroups are, for `environment.cgroup` of `status`: as
    /// [`Snapshot::kind`], except that a [bare cgroup2](Snapshot::bare_cgroup2) kernel is v2.
    pub fn environment_kind(&self, gvisor: bool) -> CgroupKind {
        if self.bare_cgroup2(gvisor) {
            CgroupKind::V2
        } else {
            self.kind()
        }
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
    pub(crate) fn from_list(list: &str) -> Hierarchy {
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
    pub(crate) fn key(&self) -> BTreeSet<String> {
        let mut key: BTreeSet<String> = self.controllers.iter().cloned().collect();
        if let Some(name) = &self.name {
            key.insert(format!("name={name}"));
        }
        key
    }

    pub(crate) fn same(&self, other: &Hierarchy) -> bool {
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

    pub(crate) fn per_mount_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }

    pub(crate) fn super_read_only(&self) -> bool {
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
    pub(crate) fn keep_flags(&self) -> MountFlags {
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
pub(crate) fn unescape(field: &str) -> String {
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

pub(crate) fn is_strict_ancestor(ancestor: &str, path: &str) -> bool {
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

/// The visible mount at exactly `path` (compared as paths: `/x/` is `/x`): the one a
/// lookup of `path` reaches, the top of a stack. [`visible`] has already dropped the
/// mounts under the top, from ids, whatever order mountinfo lists them in, so there is
/// one answer and which end of the list it is searched from does not matter. The one
/// exception is side by side mounts (the same parent and mount point, neither on the
/// other: the shadow mounts that propagation made before Linux 4.11, which `visible`
/// keeps both of); the kernel of that time put the later one behind the earlier in its
/// lookup, so the first listed is the one reached. The cgroup planner and the data-root
/// tmpfs (`prepare/storage`) both ask this.
pub(crate) fn mount_at<'a>(visible: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    visible.iter().find(|m| Path::new(&m.mount_point) == path)
}
