//! The cgroup preparation's unit tests, by topic: what the /proc texts say
//! ([`mountinfo`]), the v1 and gVisor plans ([`v1`]), the v2 plans and the v2
//! evacuation with fake cgroupfs files ([`v2`]); here the fixtures and actions they
//! share, and the rules that hold in every mode (config modes, reasons, securityfs,
//! runtime directories).

use std::path::{Path, PathBuf};

use super::*;
use crate::config::{CgroupConfig, CgroupMode, Config};
use crate::prepare::environment::AppArmor;
use crate::sys::mounts::*;
use rustix::mount::MountFlags;
use std::io;

mod mountinfo;
mod v1;
mod v2;

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
fn securityfs_rule() {
    let on_no_parser = AppArmor {
        enabled: true,
        parser: None,
    };
    let on_parser = AppArmor {
        enabled: true,
        parser: Some(p("/sbin/apparmor_parser")),
    };
    let off = AppArmor::default();
    // (gvisor, dir exists, mounted, apparmor) -> decision
    let table = [
        (false, true, false, &off, Securityfs::Mount),
        (false, true, false, &on_parser, Securityfs::Mount),
        (false, true, false, &on_no_parser, Securityfs::Skip),
        (false, true, true, &on_no_parser, Securityfs::Warn),
        (false, true, true, &on_parser, Securityfs::Leave),
        (false, true, true, &off, Securityfs::Leave),
        (false, false, false, &on_no_parser, Securityfs::Leave),
        (false, false, false, &off, Securityfs::Leave),
        (true, true, false, &on_no_parser, Securityfs::Leave),
        (true, true, true, &on_no_parser, Securityfs::Leave),
    ];
    for (gvisor, dir, mounted, apparmor, want) in table {
        assert_eq!(
            securityfs_decision(gvisor, dir, mounted, apparmor),
            want,
            "gvisor={gvisor} dir={dir} mounted={mounted} {apparmor:?}"
        );
    }
    let skipped = securityfs_skipped();
    assert!(!skipped.contains('\n') && skipped.contains("apparmor_parser"));
    let warn = reason_apparmor_parser_missing();
    for needle in ["apparmor package", "--security-opt apparmor=unconfined"] {
        assert!(warn.contains(needle), "{needle}: {warn}");
    }
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
    // What follows the mount depends on what it shows: planned again then.
    assert_eq!(
        p_v2.actions,
        [Action::MountCgroup2 {
            target: p(CGROUP_ROOT),
            required: true
        }]
    );
    assert!(p_v2.replan);
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
        reason_v2_busy(&Busy {
            error: io::Error::from_raw_os_error(16),
            remaining: vec!["1 (tini)".to_owned()],
            hidden: 0,
            refused: Vec::new(),
        }),
        reason_apparmor_parser_missing(),
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

#[test]
fn runtime_dirs_name_their_keys_and_losses() {
    let mut c = Config::default();
    c.readiness.file = p("/proc/nope/ready");
    c.readiness.socket = p("/proc/nope/init.sock");
    let dirs = runtime_dirs_with_keys(&c);
    let (dir, keys) = dirs.iter().find(|(d, _)| d == &p("/proc/nope")).unwrap();
    assert_eq!(
        runtime_dir_warning(keys, &format!("cannot create directory {}", dir.display())),
        "readiness.socket, readiness.file: cannot create directory /proc/nope \
         (probe and status will not work; the ready file will not be written)"
    );
}

#[test]
fn unwritable_dirs_are_seen_before_trying() {
    let tmp = std::env::temp_dir().join(format!("dind-init-unwritable-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let file = tmp.join("file");
    std::fs::write(&file, "").unwrap();
    let cases: [(PathBuf, Option<&str>); 5] = [
        (tmp.clone(), None),
        (tmp.join("a/b/c"), None),
        (file.join("sub"), Some("is not a directory")),
        (
            p("/proc/nope/deeper"),
            Some("/proc is on proc, where no directory can be made"),
        ),
        (p("/sys/nope"), Some("/sys is on sysfs")),
    ];
    for (dir, want) in cases {
        let got = unwritable_dir(&dir);
        match want {
            None => assert_eq!(got, None, "{}", dir.display()),
            Some(w) => assert!(
                got.as_deref().is_some_and(|g| g.contains(w)),
                "{}: {got:?}",
                dir.display()
            ),
        }
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
