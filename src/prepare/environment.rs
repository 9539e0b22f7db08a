//! Environment detection (SPEC §4 step 2): where the init runs and what dockerd will find.
//!
//! [`detect`] looks, and changes nothing: gVisor or not, cgroup v1/v2/hybrid decided as
//! dockerd decides it, what cgroups are mounted and whether they are writable, the
//! capabilities held, whether dockerd can be executed, and whether a stray
//! /run/systemd/system would make dockerd pick the systemd cgroup driver. The result is
//! logged as one summary line at boot, printed by `dind-init check`, kept for `status`
//! (`environment` in the status JSON), and steers the cgroup preparation (`cgroup.rs`).
//!
//! gVisor heuristic, strongest signal first (REFERENCE §0); any one is enough:
//! 1. uname(2) version is exactly `#1 SMP Sun Jan 10 15:06:54 PST 2016`: gVisor reports this
//!    fixed fake in every release (`pkg/sentry/kernel/version`), and no real kernel build
//!    has carried that date string with a 4.x release.
//! 2. uname release ends in `-gvisor` (gVisor's release string since 2026-04,
//!    `4.19.0-gvisor`; before that it was a plain `4.4.0`, which proves nothing alone).
//! 3. /proc/self/mountinfo shows gVisor's own `dentry_cache_limit=` super-block option on
//!    its sysfs/proc (seen in runsc 0.0~20221219 and 0.0~20240729), which a real kernel
//!    never prints.
//!
//! The kernel log's "Starting gVisor..." line is not used: reading it needs syslog(2) and
//! CAP_SYSLOG, which a container often lacks. `[environment] gvisor = "yes" | "no"` overrides.
//!
//! Not done here: anything that changes the system, and probing mounts (the preparation
//! and `check` do that).
//!
//! Man pages: [uname(2)](https://man7.org/linux/man-pages/man2/uname.2.html),
//! [capabilities(7)](https://man7.org/linux/man-pages/man7/capabilities.7.html) (CapEff),
//! [statfs(2)](https://man7.org/linux/man-pages/man2/statfs.2.html),
//! [access(2)](https://man7.org/linux/man-pages/man2/access.2.html).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::{Config, GvisorSetting};
use crate::sys::mounts::{self as cgroup, CgroupKind, Snapshot};
use crate::sys::spawn::{check_executable, search_path, Searched};

/// The uname(2) version string every gVisor release reports.
pub const GVISOR_UNAME_VERSION: &str = "#1 SMP Sun Jan 10 15:06:54 PST 2016";

/// The PATH searched for dockerd when the init's own environment has none (Docker's
/// default; the same that `sys::spawn` searches when it starts a bare name).
pub use crate::sys::spawn::DEFAULT_PATH;

/// The capability bits of capabilities(7) that dockerd needs.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;

/// What the init found about where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// Running inside gVisor (detected, or set by `[environment] gvisor`).
    pub gvisor: bool,
    /// Why `gvisor` is what it is, for `check` and the summary.
    pub gvisor_reason: String,
    /// PID 1 of its pid namespace (else a child subreaper).
    pub pid1: bool,
    pub uname_release: String,
    pub uname_version: String,
    /// How dockerd will see cgroups.
    pub cgroup: CgroupKind,
    /// What /sys/fs/cgroup is (`tmpfs`, `cgroup2`, `sysfs`, `missing`, or the magic).
    pub cgroup_fs: String,
    /// The cgroup mounts a lookup under /sys/fs/cgroup reaches.
    pub cgroup_mounts: Vec<CgroupMount>,
    pub caps: Capabilities,
    pub dockerd: DockerdBinary,
    /// /run/systemd/system exists but PID 1 is not systemd: dockerd on cgroup v2 would pick
    /// the systemd cgroup driver and fail, so it needs `native.cgroupdriver=cgroupfs`.
    pub stray_systemd: bool,
    /// AppArmor as dockerd will see it (SPEC §5: whether securityfs may be mounted).
    pub apparmor: AppArmor,
}

/// AppArmor as dockerd will see it. With securityfs mounted and AppArmor enabled in the
/// kernel, dockerd confines every container with its `docker-default` profile, which it
/// loads with `apparmor_parser` from its PATH: without one, every `docker run` fails
/// (moby `daemon/apparmor_default.go`; measured with Docker 20.10 on Debian's kernel).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppArmor {
    /// /sys/module/apparmor/parameters/enabled is `Y`.
    pub enabled: bool,
    /// `apparmor_parser` as dockerd's PATH finds it (`None`: not there, or not looked
    /// for because AppArmor is not enabled).
    pub parser: Option<PathBuf>,
}

impl AppArmor {
    /// dockerd would confine containers with a profile it cannot load.
    pub fn parser_missing(&self) -> bool {
        self.enabled && self.parser.is_none()
    }
}

/// One cgroup mount under /sys/fs/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: String,
    /// `cpu,cpuacct`, `name=systemd`, or `cgroup2`.
    pub label: String,
    pub writable: bool,
}

/// The capabilities dockerd needs, from CapEff in /proc/self/status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub sys_admin: bool,
    pub net_admin: bool,
    pub net_raw: bool,
}

/// Whether `dockerd.path` can be executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerdBinary {
    Found(PathBuf),
    /// Nothing of that name: `searched` says where it was looked for.
    NotFound {
        searched: String,
    },
    /// A file is there but cannot be executed (why: "permission denied", "is a directory").
    NotExecutable {
        path: PathBuf,
        why: String,
    },
}

impl fmt::Display for DockerdBinary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerdBinary::Found(path) => write!(f, "{}", path.display()),
            DockerdBinary::NotFound { searched } => write!(f, "not found ({searched})"),
            DockerdBinary::NotExecutable { path, why } => {
                write!(f, "{} cannot be executed ({why})", path.display())
            }
        }
    }
}

impl Environment {
    /// `v1`, `v2` or `hybrid`, for the status JSON.
    pub fn cgroup_kind_str(&self) -> &'static str {
        self.cgroup.as_str()
    }

    /// One log line of what was found.
    pub fn summary(&self) -> String {
        let gvisor = if self.gvisor { "gVisor" } else { "not gVisor" };
        let writable = self.cgroup_mounts.iter().filter(|m| m.writable).count();
        let mut caps: Vec<&str> = Vec::new();
        for (held, name) in [
            (self.caps.sys_admin, "SYS_ADMIN"),
            (self.caps.net_admin, "NET_ADMIN"),
            (self.caps.net_raw, "NET_RAW"),
        ] {
            if held {
                caps.push(name);
            }
        }
        let caps = if caps.is_empty() {
            "none of SYS_ADMIN, NET_ADMIN, NET_RAW".to_owned()
        } else {
            caps.join(" ")
        };
        format!(
            "{gvisor} ({}); cgroup {} (/sys/fs/cgroup is {}, {} cgroup mounts, {writable} writable); \
             capabilities: {caps}; dockerd: {}; {}{}",
            self.gvisor_reason,
            self.cgroup.as_str(),
            self.cgroup_fs,
            self.cgroup_mounts.len(),
            self.dockerd,
            if self.pid1 { "PID 1" } else { "not PID 1" },
            if self.stray_systemd {
                "; /run/systemd/system exists without systemd"
            } else {
                ""
            },
        )
    }
}

/// Looks at the system; changes nothing.
pub fn detect(cfg: &Config) -> Environment {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy().into_owned();
    let version = uname.version().to_string_lossy().into_owned();
    let snap = Snapshot::read().unwrap_or_default();
    let (gvisor, gvisor_reason) = decide_gvisor(
        cfg.environment.gvisor,
        gvisor_evidence(&release, &version, &snap.mountinfo),
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let pid1_comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let init_path = std::env::var_os("PATH");
    Environment {
        gvisor,
        gvisor_reason,
        pid1: rustix::process::getpid().is_init(),
        uname_release: release,
        uname_version: version,
        cgroup: snap.environment_kind(gvisor),
        cgroup_fs: cgroup::fs_name(snap.statfs_magic),
        cgroup_mounts: cgroup_mounts(&snap),
        caps: parse_capabilities(&status),
        // Where the spawn helper will look: in dockerd's PATH, not the init's.
        dockerd: locate_dockerd(
            &cfg.dockerd.path,
            Some(&dockerd_path_env(cfg, init_path.as_deref())),
        ),
        stray_systemd: Path::new("/run/systemd/system").is_dir() && pid1_comm.trim() != "systemd",
        apparmor: detect_apparmor(cfg, init_path.as_deref()),
    }
}

/// dockerd's PATH, decided here only: `[dockerd] env`'s, else the init's own, else
/// Docker's default ([`DEFAULT_PATH`]). The launch builder gives it to dockerd (led by
/// the legacy iptables links in gVisor), and `check` and the AppArmor probe search it
/// for what dockerd and its children will look up.
///
/// An empty PATH counts as not set (so `dockerd.env`'s `PATH = ""` falls back to the
/// init's PATH, and an empty one there to the default). execvp(3) reads an empty
/// *element* as the current directory, and glibc and musl read an empty string as one
/// such element; Go's `exec.LookPath`, with which dockerd, containerd and runc find
/// their helpers, reads it as no directory at all. Neither is what an empty PATH in a
/// container means to whoever set it (an empty `-e PATH=` or env entry, not a wish to
/// search PID 1's working directory, or nothing), so it gets the same default as an
/// unset one, and the launch builder writes that into dockerd's environment.
pub fn dockerd_path_env(cfg: &Config, init_path: Option<&OsStr>) -> std::ffi::OsString {
    [cfg.dockerd.env.get("PATH").map(OsStr::new), init_path]
        .into_iter()
        .flatten()
        .find(|p| !p.is_empty())
        .unwrap_or(OsStr::new(DEFAULT_PATH))
        .to_owned()
}

fn detect_apparmor(cfg: &Config, init_path: Option<&OsStr>) -> AppArmor {
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.starts_with('Y'));
    apparmor_with(enabled, cfg, init_path)
}

/// The parser is looked for only where AppArmor is enabled: a search that finds nothing
/// probes every PATH directory, and in gVisor (which has no AppArmor) each probe is a
/// round trip to the gofer before dockerd's exec.
fn apparmor_with(enabled: bool, cfg: &Config, init_path: Option<&OsStr>) -> AppArmor {
    if !enabled {
        return AppArmor::default();
    }
    let path = dockerd_path_env(cfg, init_path);
    let parser = match locate_program(OsStr::new("apparmor_parser"), Some(&path), DEFAULT_PATH) {
        DockerdBinary::Found(p) => Some(p),
        DockerdBinary::NotFound { .. } | DockerdBinary::NotExecutable { .. } => None,
    };
    AppArmor { enabled, parser }
}

/// The first gVisor signature found, described; `None` when there is none.
pub fn gvisor_evidence(release: &str, version: &str, mountinfo: &str) -> Option<String> {
    if version == GVISOR_UNAME_VERSION {
        return Some(format!(
            "uname version is gVisor's fixed \"{GVISOR_UNAME_VERSION}\""
        ));
    }
    if release.ends_with("-gvisor") {
        return Some(format!("uname release \"{release}\" ends in -gvisor"));
    }
    let gvisor_option = cgroup::parse_mountinfo(mountinfo).iter().any(|m| {
        m.super_options
            .iter()
            .any(|o| o.starts_with("dentry_cache_limit="))
    });
    if gvisor_option {
        return Some("/proc/self/mountinfo shows gVisor's dentry_cache_limit= option".to_owned());
    }
    None
}

fn decide_gvisor(setting: GvisorSetting, evidence: Option<String>) -> (bool, String) {
    match (setting, evidence) {
        (GvisorSetting::Yes, _) => (true, "environment.gvisor = \"yes\"".to_owned()),
        (GvisorSetting::No, _) => (false, "environment.gvisor = \"no\"".to_owned()),
        (GvisorSetting::Auto, Some(why)) => (true, why),
        (GvisorSetting::Auto, None) => (
            false,
            "no gVisor signature in uname or mountinfo".to_owned(),
        ),
    }
}

fn cgroup_mounts(snap: &Snapshot) -> Vec<CgroupMount> {
    let root = Path::new(cgroup::CGROUP_ROOT);
    snap.visible_mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .filter(|m| Path::new(&m.mount_point).starts_with(root))
        .map(|m| CgroupMount {
            label: if m.fstype == "cgroup2" {
                "cgroup2".to_owned()
            } else {
                m.label()
            },
            writable: !m.read_only(),
            mount_point: m.mount_point,
        })
        .collect()
}

/// CapEff of /proc/self/status (a hex mask) to the capabilities dockerd needs.
pub fn parse_capabilities(status: &str) -> Capabilities {
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| eff & (1u64 << bit) != 0;
    Capabilities {
        sys_admin: has(CAP_SYS_ADMIN),
        net_admin: has(CAP_NET_ADMIN),
        net_raw: has(CAP_NET_RAW),
    }
}

/// Finds dockerd as execvp(3) would (see [`locate_program`]) in `path_env`, dockerd's
/// PATH ([`dockerd_path_env`]: the spawn helper searches the one in dockerd's
/// environment), or Docker's default when it is `None`.
pub fn locate_dockerd(path: &str, path_env: Option<&OsStr>) -> DockerdBinary {
    locate_program(OsStr::new(path), path_env, DEFAULT_PATH)
}

/// Finds a program as execvp(3) would: a `program` containing '/' is used as is, a
/// name is looked up in `path_env` (`default_path` when unset; an empty entry is the
/// current directory). A candidate that exists but cannot be executed (not
/// executable, a directory, refused by stat) is remembered and the search goes on;
/// it is reported only if nothing better is found: exec would fail with EACCES
/// (126), not ENOENT (127). Used for dockerd at boot and for COMMAND before
/// anything starts; the search itself is [`search_path`], the one the spawn helper
/// uses, so both always agree.
pub fn locate_program(
    program: &OsStr,
    path_env: Option<&OsStr>,
    default_path: &str,
) -> DockerdBinary {
    use std::os::unix::ffi::OsStrExt;
    let shown = program.to_string_lossy();
    if program.is_empty() {
        return DockerdBinary::NotFound {
            searched: "an empty program name".to_owned(),
        };
    }
    if program.as_bytes().contains(&b'/') {
        return match check_executable(Path::new(program)) {
            Ok(()) => DockerdBinary::Found(PathBuf::from(program)),
            Err(None) => DockerdBinary::NotFound {
                searched: format!("no file {shown}"),
            },
            Err(Some(why)) => DockerdBinary::NotExecutable {
                path: PathBuf::from(program),
                why,
            },
        };
    }
    match search_path(program, path_env, default_path) {
        Searched::Found(path) => DockerdBinary::Found(path),
        Searched::Refused { path, why } => DockerdBinary::NotExecutable { path, why },
        Searched::Missing => DockerdBinary::NotFound {
            searched: format!(
                "no {shown} in PATH {}",
                path_env
                    .unwrap_or(OsStr::new(default_path))
                    .to_string_lossy()
            ),
        },
    }
}

/// A version as `major.minor.patch`, compared number by number (1.3.0 > 1.2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// The version in a program's `--version` output: the word after `version` on the
    /// first line that has one, e.g. `runc version 1.3.6+ds1` or `Docker version
    /// 28.5.2+dfsg4, build 3ef3c07`. Up to three dot-separated numbers are read, each up
    /// to its first non-digit (`+ds1`, `-rc.1`, `,` end it); a missing minor or patch is
    /// 0. A pre-release (`1.2.0-rc.1`) therefore counts as its release.
    pub fn from_version_output(text: &str) -> Option<Version> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| w.eq_ignore_ascii_case("version"))?;
            Version::parse(words.next()?)
        })
    }

    /// `1.3.6+ds1`, `v28.5.2,`, `20.10` → the numbers; `None` without a leading number.
    pub fn parse(word: &str) -> Option<Version> {
        let word = word.strip_prefix('v').unwrap_or(word);
        let mut parts = [0u32; 3];
        let mut rest = word;
        for (i, part) in parts.iter_mut().enumerate() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                if i == 0 {
                    return None;
                }
                break;
            }
            *part = rest.get(..digits)?.parse().ok()?;
            rest = rest.get(digits..).unwrap_or_default();
            match rest.strip_prefix('.') {
                Some(more) => rest = more,
                None => break,
            }
        }
        let [major, minor, patch] = parts;
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The inode number of /proc's root directory: 1 on Linux (`PROC_ROOT_INO`), another
/// number in gVisor (86 in runsc 0.0~20240729), which runc 1.2.8 and later refuse.
pub fn procfs_root_inode() -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc").map(|m| m.ino())
}

/// Runs `program --version` and returns what it printed on stdout (at most 64 KiB), for
/// `check`, and at boot when dockerd's version matters (MTU). A short command run to
/// its end (`sys::command`): the running init's loop never calls it. The program gets
/// no stdin, and it is killed when it has not finished within `timeout`.
pub fn version_output(program: &Path, timeout: std::time::Duration) -> Result<String, String> {
    use crate::sys::command::{self, Failure};
    let shown = program.display();
    let args = [std::ffi::OsString::from("--version")];
    match command::run(program.as_os_str(), &args, timeout) {
        Ok(done) if done.status != crate::sys::reaper::ExitStatus::Code(0) => {
            Err(format!("{shown} --version failed ({})", done.status))
        }
        Ok(done) if done.stdout.is_empty() => Err(format!("{shown} --version printed nothing")),
        Ok(done) => Ok(done.stdout),
        Err(Failure::Spawn(e)) => Err(format!("cannot run {shown} --version: {e}")),
        Err(Failure::Timeout(t)) => Err(format!(
            "{shown} --version did not finish within {} ms",
            t.as_millis()
        )),
        Err(Failure::Wait(e)) => Err(format!("cannot wait for {shown} --version: {e}")),
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn fixture_mountinfo(case: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(case)
            .join("mountinfo");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn gvisor_signatures() {
        let host = fixture_mountinfo("host-v1-hybrid");
        let table: &[(&str, &str, &str, Option<&str>)] = &[
            ("4.4.0", GVISOR_UNAME_VERSION, "", Some("uname version")),
            ("4.19.0-gvisor", "#1 SMP", "", Some("ends in -gvisor")),
            ("6.18.44-fc-v1045", "#1 SMP PREEMPT_DYNAMIC @0", &host, None),
            ("4.4.0", "#1 SMP Mon Jan 1", &host, None),
        ];
        for (release, version, mountinfo, want) in table {
            let got = gvisor_evidence(release, version, mountinfo);
            match want {
                Some(fragment) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(fragment)),
                    "{release} {version}: {got:?}"
                ),
                None => assert_eq!(got, None, "{release} {version}"),
            }
        }
        // Both runsc releases are recognised by their mount table alone.
        for case in ["runsc-20221219", "runsc-20240729", "runsc-20240729-docker"] {
            let got = gvisor_evidence("5.15.0", "#1 SMP", &fixture_mountinfo(case));
            assert!(
                got.is_some_and(|g| g.contains("dentry_cache_limit")),
                "{case}"
            );
        }
    }

    #[test]
    fn config_overrides_detection() {
        let yes = decide_gvisor(GvisorSetting::Yes, None);
        assert!(yes.0 && yes.1.contains("\"yes\""));
        let no = decide_gvisor(GvisorSetting::No, Some("uname".to_owned()));
        assert!(!no.0 && no.1.contains("\"no\""));
        assert_eq!(
            decide_gvisor(GvisorSetting::Auto, Some("uname".to_owned())),
            (true, "uname".to_owned())
        );
        assert!(!decide_gvisor(GvisorSetting::Auto, None).0);
    }

    #[test]
    fn capabilities_from_cap_eff() {
        let table = [
            // This machine: everything but CAP_SYS_RESOURCE.
            ("CapEff:\t000001fffeffffff\n", (true, true, true)),
            (
                "CapInh:\t0\nCapEff:\t0000000000200000\n",
                (true, false, false),
            ),
            // Docker's default set: NET_RAW, no NET_ADMIN, no SYS_ADMIN.
            ("CapEff:\t00000000a80425fb\n", (false, false, true)),
            ("CapEff:\t0000000000003000\n", (false, true, true)),
            ("", (false, false, false)),
        ];
        for (status, (sys, net, raw)) in table {
            let c = parse_capabilities(status);
            assert_eq!(
                (c.sys_admin, c.net_admin, c.net_raw),
                (sys, net, raw),
                "{status:?}"
            );
        }
    }

    #[test]
    fn dockerd_lookup() {
        let dir = std::env::temp_dir().join(format!("dind-init-env-{}", std::process::id()));
        let bin = dir.join("bin");
        let noexec = dir.join("noexec");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&noexec).unwrap();
        std::fs::create_dir_all(dir.join("isdir/dockerd")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let exe = bin.join("dockerd");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = noexec.join("dockerd");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();

        let path = |dirs: &[&Path]| std::env::join_paths(dirs).unwrap();
        // The first executable wins, past a non-executable one and a directory.
        let p = path(&[&dir.join("isdir"), &noexec, &bin]);
        assert_eq!(
            locate_dockerd("dockerd", Some(&p)),
            DockerdBinary::Found(exe.clone())
        );
        // Only a non-executable one: reported as such (root passes X_OK only with an x bit).
        let p = path(&[&noexec]);
        assert!(matches!(
            locate_dockerd("dockerd", Some(&p)),
            DockerdBinary::NotExecutable { .. }
        ));
        let p = path(&[&dir.join("none")]);
        assert!(matches!(
            locate_dockerd("dockerd", Some(&p)),
            DockerdBinary::NotFound { .. }
        ));
        // A path with '/' is not searched.
        assert_eq!(
            locate_dockerd(exe.to_str().unwrap(), None),
            DockerdBinary::Found(exe.clone())
        );
        assert!(matches!(
            locate_dockerd("/nonexistent/dockerd", None),
            DockerdBinary::NotFound { .. }
        ));
        assert!(matches!(
            locate_dockerd(dir.join("isdir/dockerd").to_str().unwrap(), None),
            DockerdBinary::NotExecutable { why, .. } if why == "is a directory"
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Where exec would find it (found, or there but refused), as the COMMAND
    /// check sees it.
    fn find_program(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
        match locate_program(program, path, "/usr/local/bin:/bin:/usr/bin") {
            DockerdBinary::Found(p) | DockerdBinary::NotExecutable { path: p, .. } => Some(p),
            DockerdBinary::NotFound { .. } => None,
        }
    }

    #[test]
    fn find_program_looks_like_execvp() {
        let path = Some(OsStr::new("/nonexistent::/bin"));
        assert_eq!(
            find_program(OsStr::new("sh"), path),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program(OsStr::new("no-such-program-x"), path), None);
        assert_eq!(
            find_program(OsStr::new("/bin/sh"), None),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program(OsStr::new("/nonexistent/sh"), None), None);
        assert_eq!(find_program(OsStr::new(""), path), None);
        // A directory of that name: exec refuses it (EACCES, 126), so it is
        // found, not missing.
        assert_eq!(
            find_program(OsStr::new("bin"), Some(OsStr::new("/"))),
            Some(PathBuf::from("/bin"))
        );
    }

    #[test]
    fn versions_from_version_output() {
        type Case = (&'static str, Option<(u32, u32, u32)>);
        let table: &[Case] = &[
            (
                "runc version 1.3.6+ds1\ncommit: v1.3.6\nspec: 1.2.1\n",
                Some((1, 3, 6)),
            ),
            ("runc version 1.1.5+ds1\n", Some((1, 1, 5))),
            ("runc version 1.2.0-rc.1\n", Some((1, 2, 0))),
            (
                "Docker version 28.5.2+dfsg4, build 3ef3c07c883b\n",
                Some((28, 5, 2)),
            ),
            (
                "Docker version 20.10.24+dfsg1, build 5d6db84\n",
                Some((20, 10, 24)),
            ),
            ("Docker version 27.3.1, build ce12230\n", Some((27, 3, 1))),
            ("Docker version v29.0.0\n", Some((29, 0, 0))),
            ("Docker version 26.1\n", Some((26, 1, 0))),
            ("some banner\nrunc version 1.2.8\n", Some((1, 2, 8))),
            ("runc version unknown\n", None),
            ("runc version\n", None),
            ("1.3.6\n", None),
            ("", None),
            ("runc version 99999999999.1.1\n", None),
        ];
        for (text, want) in table {
            let got = Version::from_version_output(text).map(|v| (v.major, v.minor, v.patch));
            assert_eq!(got, *want, "{text:?}");
        }
        assert_eq!(Version::new(1, 3, 6).to_string(), "1.3.6");
    }

    #[test]
    fn versions_compare_number_by_number() {
        let v = |s: &str| Version::parse(s).unwrap();
        // As text "1.3.0" < "1.2.8" would be wrong the other way round for 1.10.
        assert!(v("1.3.0") > v("1.2.8"));
        assert!(v("1.2.10") > v("1.2.8"));
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("1.2.7") < v("1.2.8"));
        assert!(v("1.1.15") < v("1.2.8"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("1.2.8+ds1"), Version::new(1, 2, 8));
        assert!(v("28.0.0") >= Version::new(28, 0, 0));
        assert!(v("27.5.1") < Version::new(28, 0, 0));
    }

    #[test]
    fn version_output_runs_with_a_deadline() {
        use std::time::{Duration, Instant};
        let dir = std::env::temp_dir().join(format!("dind-init-ver-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let script = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        // A script just written may be held open for writing by a child that another
        // test thread forked meanwhile: exec then fails with ETXTBSY for a moment.
        let run = |p: &Path, t: Duration| loop {
            match version_output(p, t) {
                Err(e) if e.contains("Text file busy") => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => break other,
            }
        };
        let ok = script("ok", "echo \"runc version 1.3.6+ds1 $1\"; echo noise >&2");
        assert_eq!(
            run(&ok, Duration::from_secs(10)).unwrap(),
            "runc version 1.3.6+ds1 --version\n"
        );
        let fails = script("fails", "echo broken; exit 3");
        let e = run(&fails, Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("failed"), "{e}");
        let hangs = script("hangs", "exec sleep 30");
        let started = Instant::now();
        let e = run(&hangs, Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let e = version_output(&dir.join("missing"), Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dockerd_path_is_the_one_dockerd_gets() {
        // (dockerd.env's PATH, the init's PATH, dockerd's PATH)
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (None, None, DEFAULT_PATH),
            (None, Some("/a:/b"), "/a:/b"),
            (Some("/opt/bin"), Some("/a:/b"), "/opt/bin"),
            (Some("/opt/bin"), None, "/opt/bin"),
            // Empty counts as not set: never "search the current directory".
            (None, Some(""), DEFAULT_PATH),
            (Some(""), Some("/a:/b"), "/a:/b"),
            (Some(""), Some(""), DEFAULT_PATH),
            (Some(""), None, DEFAULT_PATH),
            // An empty element inside a PATH is execvp's, passed on as it is.
            (None, Some("/a::/b"), "/a::/b"),
        ];
        for (env, init, want) in cases {
            let mut cfg = Config::default();
            if let Some(env) = env {
                cfg.dockerd.env.insert("PATH".to_owned(), (*env).to_owned());
            }
            assert_eq!(
                dockerd_path_env(&cfg, init.map(OsStr::new)),
                *want,
                "{env:?} {init:?}"
            );
        }
    }

    #[test]
    fn apparmor_parser_is_looked_for_on_dockerds_path() {
        let dir = std::env::temp_dir().join(format!("dind-init-aa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let parser = dir.join("apparmor_parser");
        std::fs::write(&parser, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&parser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cfg = Config::default();
        let found = apparmor_with(true, &cfg, Some(dir.as_os_str()));
        assert_eq!(found.parser, Some(parser.clone()));
        // Not looked for where AppArmor is off: nothing is missing there.
        assert_eq!(
            apparmor_with(false, &cfg, Some(dir.as_os_str())),
            AppArmor::default()
        );
        // dockerd's own PATH (from [dockerd] env) is the one that counts.
        cfg.dockerd
            .env
            .insert("PATH".to_owned(), "/nonexistent".to_owned());
        assert_eq!(
            apparmor_with(true, &cfg, Some(dir.as_os_str())).parser,
            None
        );
        let missing = AppArmor {
            enabled: true,
            parser: None,
        };
        assert!(missing.parser_missing());
        assert!(!AppArmor {
            enabled: false,
            parser: None
        }
        .parser_missing());
        assert!(!AppArmor {
            enabled: true,
            parser: Some(parser)
        }
        .parser_missing());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn summary_is_one_line() {
        let env = Environment {
            gvisor: true,
            gvisor_reason: "uname version".to_owned(),
            pid1: true,
            uname_release: "4.4.0".to_owned(),
            uname_version: GVISOR_UNAME_VERSION.to_owned(),
            cgroup: CgroupKind::V1,
            cgroup_fs: "tmpfs".to_owned(),
            cgroup_mounts: vec![CgroupMount {
                mount_point: "/sys/fs/cgroup/cpu".to_owned(),
                label: "cpu".to_owned(),
                writable: true,
            }],
            caps: Capabilities {
                sys_admin: true,
                net_admin: true,
                net_raw: false,
            },
            dockerd: DockerdBinary::Found(PathBuf::from("/usr/bin/dockerd")),
            stray_systemd: true,
            apparmor: AppArmor::default(),
        };
        let s = env.summary();
        assert!(!s.contains('\n'));
        assert_eq!(
            s,
            "gVisor (uname version); cgroup v1 (/sys/fs/cgroup is tmpfs, 1 cgroup mounts, 1 writable); \
             capabilities: SYS_ADMIN NET_ADMIN; dockerd: /usr/bin/dockerd; PID 1; \
             /run/systemd/system exists without systemd"
        );
        assert_eq!(env.cgroup_kind_str(), "v1");
    }
}
