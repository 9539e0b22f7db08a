//! cgroup preparation (SPEC §5): a pure planner, and the applier that carries the plan out.
//!
//! dockerd decides between its cgroup v1 and v2 code by `statfs("/sys/fs/cgroup")`: the
//! cgroup2 magic means v2, anything else v1 (moby `pkg/sysinfo`, runc `cgroups.IsCgroup2UnifiedMode`).
//! On v1 it refuses to start when no `cgroup` mount with `devices` is in the mount table
//! ("Devices cgroup isn't mounted"), and containerd-shim fails `docker run` when any hierarchy
//! listed in /proc/self/cgroup has no mount. On v2 every process must leave a namespace's
//! root cgroup before controllers can be enabled for children (cgroups(7), "no internal
//! processes"); the machine's own root cgroup (no `cgroup.type`) is exempt, and holds the
//! kernel's threads, which never move.
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
//! (securityfs, unless AppArmor would then break every `docker run`: [`Securityfs`]; `/`
//! made rshared). Nothing here is fatal to the init: every error becomes a logged,
//! reported reason.
//!
//! Not done here: deciding whether dockerd is started (the supervisor reads
//! [`CgroupOutcome::failure`]), dockerd's other flags, networking.
//!
//! Man pages: [mount(2)](https://man7.org/linux/man-pages/man2/mount.2.html),
//! [statfs(2)](https://man7.org/linux/man-pages/man2/statfs.2.html),
//! [cgroups(7)](https://man7.org/linux/man-pages/man7/cgroups.7.html),
//! [proc_pid_mountinfo(5)](https://man7.org/linux/man-pages/man5/proc_pid_mountinfo.5.html),
//! [mount_namespaces(7)](https://man7.org/linux/man-pages/man7/mount_namespaces.7.html) (rshared).

mod apply;
mod evacuate;
mod plan;
mod securityfs;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;

pub use self::apply::*;
use self::evacuate::*;
pub use self::plan::*;
pub use self::securityfs::*;
pub use crate::sys::mounts::*;

/// The controllers tried one per mount in gVisor (REFERENCE §0: gVisor implements these,
/// `job` being its own stub, and each hierarchy takes exactly one controller).
pub const GVISOR_CONTROLLERS: [&str; 7] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "pids", "job",
];

/// How often the v2 evacuation is retried when enabling controllers says EBUSY (a process
/// appeared in the root cgroup between the move and the write). The moby `hack/dind` loop
/// has no bound; ours must end, because PID 1 must reach its event loop.
pub const V2_ENABLE_ATTEMPTS: u32 = 10;
