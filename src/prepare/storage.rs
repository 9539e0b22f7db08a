//! dockerd's storage (SPEC §11): `[dockerd] data_root_tmpfs = "<size>"` mounts a tmpfs
//! of that size at dockerd's data-root before its first start, unless something is
//! mounted there already (a volume, `docker run --tmpfs`, a Kubernetes emptyDir).
//!
//! Why: in gVisor the sandbox's root is an overlay, on which dockerd can only use the
//! slow `vfs` driver (a full copy of every layer) and Docker 29's containerd snapshotter
//! fails; on a tmpfs it uses overlay2. The tmpfs counts as the container's memory.
//!
//! The data-root is `--data-root` (or its old alias `-g`/`--graph`) in dockerd's
//! arguments (the last one), else `/var/lib/docker`: [`data_root`], which stale-state
//! cleanup reads too. A `data-root` set in daemon.json is not read: give it as
//! `--data-root` in `dockerd.args` instead. The mount is made once, at boot, in the
//! init's mount namespace (the container's); dockerd's restarts find it there. It is
//! never unmounted: it goes with the container.
//!
//! See [tmpfs(5)](https://man7.org/linux/man-pages/man5/tmpfs.5.html) and
//! [mount(2)](https://man7.org/linux/man-pages/man2/mount.2.html).

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, MountFlags};
use tracing::info;

use crate::control::status::StorageStatus;
use crate::error::Error;
use crate::prepare::args::option_value;
use crate::prepare::cgroup::{mount_at, parse_mountinfo, visible};

/// dockerd's default data-root.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/docker";

/// dockerd's data-root, as its arguments set it: `--data-root`, last one wins; an empty
/// value is the default, as if it were not given.
///
/// `-g`/`--graph` count too. They are the data-root's old names: hidden since Docker
/// 17.05 and removed in 23.0, so Docker 20.10, which dind-init supports, still takes
/// `-g /x` as `--data-root /x` (dockerd refuses both at once). A later dockerd refuses
/// the flag and does not start, so reading it there costs nothing, while ignoring it on
/// 20.10 would put the tmpfs and the network-store cleanup on a directory dockerd does
/// not use. `-g` is read as dockerd's flag parser reads a one-letter flag (`-g /x`,
/// `-g=/x`, `-g/x`: [`option_value`]); `-G` is another flag (`--group`).
pub fn data_root(args: &[String]) -> PathBuf {
    option_value(args, &["--data-root", "--graph", "-g"])
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT))
}

/// What is mounted at `path` that a lookup reaches (the top of a stack), from
/// /proc/self/mountinfo's text: its file system type.
pub fn mounted_at(mountinfo: &str, path: &Path) -> Option<String> {
    mount_at(&visible(&parse_mountinfo(mountinfo)), path).map(|m| m.fstype.clone())
}

/// What to do, given the size asked for and what is mounted at the data-root now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `data_root_tmpfs` is "": nothing.
    Off,
    /// Something is mounted there already (its type): left as it is.
    AlreadyMounted(String),
    /// Mount a tmpfs of this size.
    Mount(String),
}

pub fn plan(size: Option<&str>, mounted: Option<String>) -> Plan {
    match (size, mounted) {
        (None, _) => Plan::Off,
        (Some(_), Some(fstype)) => Plan::AlreadyMounted(fstype),
        (Some(size), None) => Plan::Mount(size.to_owned()),
    }
}

/// Makes the mount when the config asks for it and nothing is there. A mount that
/// fails ends the boot: the config asked for overlay2's footing, and dockerd would
/// otherwise run on the slow or failing one without anyone noticing.
pub fn prepare(size: Option<&str>, data_root: &Path) -> Result<StorageStatus, Error> {
    let mut status = StorageStatus {
        data_root: data_root.display().to_string(),
        tmpfs: size.map(str::to_owned),
        action: None,
    };
    if size.is_none() {
        return Ok(status);
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Fs {
        op: "read".to_owned(),
        path: PathBuf::from("/proc/self/mountinfo"),
        source: e,
    })?;
    match plan(size, mounted_at(&mountinfo, data_root)) {
        Plan::Off => {}
        Plan::AlreadyMounted(fstype) => {
            let line = format!(
                "{} is a mount point already ({fstype}): no tmpfs mounted",
                data_root.display()
            );
            info!(data_root = %data_root.display(), fstype = %fstype, "data_root_tmpfs: {line}");
            status.action = Some(line);
        }
        Plan::Mount(size) => {
            fs::create_dir_all(data_root).map_err(|e| Error::Fs {
                op: "create directory".to_owned(),
                path: data_root.to_path_buf(),
                source: e,
            })?;
            // 0711: what dockerd sets on its data-root (setupDaemonRoot) anyway.
            let err = |source: std::io::Error| Error::Mount {
                what: format!("a tmpfs of size {size} (data_root_tmpfs)"),
                target: data_root.to_path_buf(),
                source,
            };
            // The size was checked by config.rs: digits and a unit, no NUL.
            let data = CString::new(format!("size={size},mode=0711"))
                .map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
            mount(
                "tmpfs",
                data_root,
                "tmpfs",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(|e| err(e.into()))?;
            let line = format!("mounted a tmpfs of size {size} on {}", data_root.display());
            info!(data_root = %data_root.display(), size = %size, "data_root_tmpfs: {line}");
            status.action = Some(line);
        }
    }
    Ok(status)
}

/// What `check` says: one line, changing nothing.
pub fn inspect(size: Option<&str>, data_root: &Path) -> String {
    let mounted = fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|m| mounted_at(&m, data_root));
    match plan(size, mounted.clone()) {
        Plan::Off => format!(
            "data-root {} ({}; data_root_tmpfs is off)",
            data_root.display(),
            mounted.map_or("not a mount point".to_owned(), |t| format!("a {t} mount"))
        ),
        Plan::AlreadyMounted(t) => format!(
            "data-root {} is a mount point already ({t}): data_root_tmpfs will mount nothing",
            data_root.display()
        ),
        Plan::Mount(size) => format!(
            "a tmpfs of size {size} will be mounted on data-root {}",
            data_root.display()
        ),
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn data_root_table() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "/var/lib/docker"),
            (&["--data-root=/d"], "/d"),
            (&["--data-root", "/a", "--debug", "--data-root=/b"], "/b"),
            (&["--data-root="], "/var/lib/docker"),
            (&["--data-rootx=/no"], "/var/lib/docker"),
            // dockerd before 23.0 takes the old names for the same option.
            (&["-g", "/g"], "/g"),
            (&["-g/g"], "/g"),
            (&["-g=/g"], "/g"),
            (&["--graph=/g"], "/g"),
            (&["--data-root=/d", "--graph", "/g"], "/g"),
            (&["-G", "docker"], "/var/lib/docker"),
            (&["--group=docker"], "/var/lib/docker"),
        ];
        for (args, want) in cases {
            assert_eq!(data_root(&v(args)), PathBuf::from(want), "{args:?}");
        }
    }

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l
23 22 0:22 / /proc rw - proc proc rw
30 22 0:30 / /var/lib/docker rw - ext4 /dev/vdb rw
31 30 0:31 / /var/lib/docker rw - tmpfs tmpfs rw,size=1048576k
40 22 0:40 / /data\\040root rw - tmpfs tmpfs rw
";

    /// The same stack with the top listed first: mountinfo's order is not mount order.
    const MOUNTINFO_TOP_FIRST: &str = "\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l
31 30 0:31 / /var/lib/docker rw - tmpfs tmpfs rw,size=1048576k
30 22 0:30 / /var/lib/docker rw - ext4 /dev/vdb rw
";

    #[test]
    fn mounted_at_table() {
        let cases = [
            ("/var/lib/docker", Some("tmpfs")), // the top of the stack
            ("/var/lib/docker/", Some("tmpfs")),
            ("/var/lib", None),
            ("/data root", Some("tmpfs")), // mountinfo's octal escapes
            ("/", Some("overlay")),
            ("/srv/docker", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                mounted_at(MOUNTINFO, Path::new(path)).as_deref(),
                want,
                "{path}"
            );
        }
        assert_eq!(
            mounted_at(MOUNTINFO_TOP_FIRST, Path::new("/var/lib/docker")).as_deref(),
            Some("tmpfs")
        );
    }

    #[test]
    fn plan_table() {
        assert_eq!(plan(None, None), Plan::Off);
        assert_eq!(plan(None, Some("tmpfs".into())), Plan::Off);
        assert_eq!(plan(Some("8g"), None), Plan::Mount("8g".into()));
        assert_eq!(
            plan(Some("8g"), Some("overlay".into())),
            Plan::AlreadyMounted("overlay".into())
        );
    }
}
