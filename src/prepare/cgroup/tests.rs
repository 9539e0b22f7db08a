//! The cgroup preparation's unit tests: the planner on fixtures captured from real
//! systems, the v2 evacuation with fake cgroupfs files, the best-effort steps.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::{CgroupConfig, CgroupMode, Config};
use crate::prepare::environment::AppArmor;
use crate::sys::mounts::*;
use rustix::mount::MountFlags;
use std::io;

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
        "vm-bare",
        "vm-true-root",
        "vm-cgroupns-scope",
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
        cgroup_type: None,
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
        .filter(|l| !l.contains("/sys/fs/cgroup/devices") && !l.contains("/sys/fs/cgroup/unified"))
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
        cgroup_type: None,
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
                evacuate_to: Some(p("/sys/fs/cgroup/init"))
            },
        ]
    );
    assert!(!plan.replan);
    // The same in gVisor (runsc --mount-cgroup-v2).
    assert_eq!(
        super::plan(&fixture("host-v2"), true, &cfg()).actions,
        plan.actions
    );
}

/// One rule per row: the v2 layouts a real v2 kernel shows (captured in the test VM,
/// scripts/vm) and what the plan does there.
#[test]
fn v2_layouts_of_a_real_kernel() {
    let init = p("/sys/fs/cgroup/init");
    let evacuate = vec![
        mkdir_a("/sys/fs/cgroup/init"),
        Action::MovePids {
            from: p(CGROUP_ROOT),
            to: init.clone(),
        },
        Action::EnableControllers {
            cgroup: p(CGROUP_ROOT),
            evacuate_to: Some(init.clone()),
        },
    ];
    let mount = vec![Action::MountCgroup2 {
        target: p(CGROUP_ROOT),
        required: true,
    }];
    let true_root = vec![Action::EnableControllers {
        cgroup: p(CGROUP_ROOT),
        evacuate_to: None,
    }];
    let mut bare_listed = fixture("vm-bare");
    bare_listed.proc_self_cgroup = "0::/\n".to_owned();
    let mut bare_tmpfs = fixture("vm-bare");
    bare_tmpfs
        .mountinfo
        .push_str("40 30 0:40 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n");
    bare_tmpfs.statfs_magic = Some(TMPFS_MAGIC);
    let mut bare_missing = fixture("vm-bare");
    bare_missing.statfs_magic = None;
    // (case, snapshot, gVisor, mode, actions, plan again after them)
    type Row = (&'static str, Snapshot, bool, Mode, Vec<Action>, bool);
    let table: Vec<Row> = vec![
        // PID 1 of a VM booted with cgroup_no_v1=all: nothing mounted, and
        // /proc/self/cgroup empty (cgroup2 never mounted yet): mount it, look again.
        (
            "bare kernel",
            fixture("vm-bare"),
            false,
            Mode::V2,
            mount.clone(),
            true,
        ),
        (
            "bare, 0:: listed",
            bare_listed,
            false,
            Mode::V2,
            mount.clone(),
            true,
        ),
        (
            "bare, no /sys/fs/cgroup",
            bare_missing,
            false,
            Mode::V2,
            [vec![mkdir_a(CGROUP_ROOT)], mount.clone()].concat(),
            true,
        ),
        // A tmpfs there is someone's v1 tree in the making: not bare (and with no v1
        // hierarchy listed, a certain v1 failure, checked below).
        // gVisor shows an empty /proc/self/cgroup before its v1 mounts: stays v1.
        (
            "bare in gVisor",
            fixture("vm-bare"),
            true,
            Mode::V1Gvisor,
            gvisor_from_scratch(true),
            false,
        ),
        // cgroup2 at the machine's root (no cgroup.type): enable, move nothing.
        (
            "true root",
            fixture("vm-true-root"),
            false,
            Mode::V2,
            true_root,
            false,
        ),
        // A cgroup namespace rooted at a systemd scope: evacuate into init.
        (
            "scope",
            fixture("vm-cgroupns-scope"),
            false,
            Mode::V2,
            evacuate.clone(),
            false,
        ),
        (
            "docker v2",
            fixture("host-v2"),
            false,
            Mode::V2,
            evacuate,
            false,
        ),
    ];
    for (case, snap, gvisor, mode, actions, replan) in table {
        let got = plan(&snap, gvisor, &cfg());
        assert_eq!(got.mode, mode, "{case}");
        assert_eq!(got.actions, actions, "{case}");
        assert_eq!(got.replan, replan, "{case}");
        assert_eq!(got.failure, None, "{case}");
    }
    let tmpfs = plan(&bare_tmpfs, false, &cfg());
    assert_eq!(tmpfs.mode, Mode::V1);
    assert_eq!(tmpfs.failure, Some(reason_no_v1_hierarchies()));
}

#[test]
fn bare_cgroup2_kernel_is_v2_for_the_environment() {
    let bare = fixture("vm-bare");
    // dockerd would take its v1 path on the sysfs there; the environment is v2.
    assert_eq!(bare.kind(), CgroupKind::V1);
    assert_eq!(bare.environment_kind(false), CgroupKind::V2);
    assert_eq!(bare.environment_kind(true), CgroupKind::V1);
    assert!(!fixture("host-v1-hybrid").bare_cgroup2(false));
    // runsc's empty tree looks bare from its texts alone; the gVisor flag, always set
    // there, keeps it v1.
    let runsc = fixture("runsc-20221219");
    assert!(runsc.bare_cgroup2(false) && !runsc.bare_cgroup2(true));
    // The second plan after the mount, on the true root: nothing mounted any more.
    let after = fixture("vm-true-root");
    assert!(!after.bare_cgroup2(false));
    assert_eq!(after.environment_kind(false), CgroupKind::V2);
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
fn true_root_action_says_nothing_moves() {
    let a = Action::EnableControllers {
        cgroup: p(CGROUP_ROOT),
        evacuate_to: None,
    };
    assert_eq!(
        a.to_string(),
        "enable every controller of /sys/fs/cgroup/cgroup.controllers in \
         /sys/fs/cgroup/cgroup.subtree_control (the machine's root cgroup: no cgroup.type, \
         so nothing is moved)"
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
    /// The machine's root cgroup: processes in it do not make enabling EBUSY.
    exempt: bool,
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
            ("comm", false) => match path.to_str().unwrap() {
                "/proc/1/comm" => "docker-init\n".to_owned(),
                "/proc/7/comm" => "dind-init\n".to_owned(),
                "/proc/13/comm" => "stuck\n".to_owned(),
                _ => return Err(io::ErrorKind::NotFound.into()),
            },
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
                if pid == 13 {
                    return Err(io::Error::from_raw_os_error(22)); // EINVAL
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
                if !self.exempt && !self.root.is_empty() {
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
        exempt: false,
        writes: 0,
    }
}

#[test]
fn v2_enable_retries_after_ebusy() {
    let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
    let mut fs = fake(&[1, 7, 666], &[42, 43]);
    // The first move leaves 42 behind (it appeared after the read).
    let first = move_pids(&mut fs, root, init);
    assert_eq!(first.moved, ["1 (docker-init)", "7 (dind-init)"]);
    let report = enable_controllers(&mut fs, root, Some(init));
    assert_eq!(report.enabled, ["cpuset", "io", "memory", "pids"]);
    assert!(report.busy.is_none());
    assert!(report.attempts >= 2, "{report:?}");
    assert_eq!(report.moves.moved, ["42", "43"]);
    assert_eq!(fs.init, [1, 7, 42, 43]);
}

#[test]
fn v2_enable_gives_up_after_the_bound() {
    let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
    // A process that shows up on every look never lets the write through.
    let mut fs = fake(&[1], &(100..200).collect::<Vec<_>>());
    let report = enable_controllers(&mut fs, root, Some(init));
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
    assert_eq!(move_pids(&mut fs, root, init).moved, ["5"]);
    let report = enable_controllers(&mut fs, root, Some(init));
    assert!(report.enabled.is_empty() && report.attempts == 0);
    assert_eq!(fs.writes, 1, "only the one move");
}

#[test]
fn v2_moves_pid1_and_siblings_too() {
    // `docker run --init`: docker-init (tini) is PID 1, dind-init its child, a sibling
    // beside them. Every one of them must leave the namespace's root.
    let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
    let mut fs = fake(&[1, 7, 9], &[]);
    let report = move_pids(&mut fs, root, init);
    assert_eq!(report.moved, ["1 (docker-init)", "7 (dind-init)", "9"]);
    assert!(report.refused.is_empty());
    assert_eq!(fs.init, [1, 7, 9]);
    assert!(fs.root.is_empty());
}

#[test]
fn v2_busy_reason_names_who_stayed() {
    let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
    // 13 cannot be moved (EINVAL), two processes are outside the pid namespace.
    let mut fs = fake(&[0, 0, 1, 13], &[]);
    let moved = move_pids(&mut fs, root, init);
    assert_eq!(moved.moved, ["1 (docker-init)"]);
    assert_eq!(moved.refused.len(), 1);
    let report = enable_controllers(&mut fs, root, Some(init));
    let busy = report.busy.as_ref().unwrap();
    assert_eq!(busy.remaining, ["13 (stuck)"]);
    assert_eq!(busy.hidden, 2);
    let reason = reason_v2_busy(busy);
    for needle in [
        "13 (stuck): cannot move it: ",
        "2 process(es) outside this pid namespace",
        "after 10 attempts",
        "; fix: ",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    assert!(!reason.contains('\n'));
}

#[test]
fn v2_true_root_moves_nothing() {
    // The machine's root cgroup (no cgroup.type) holds the kernel's threads; it is
    // exempt from "no internal processes", so enabling works with them there.
    let root = Path::new("/cg");
    let mut fs = fake(&[1, 2, 3], &[]);
    fs.exempt = true;
    let report = enable_controllers(&mut fs, root, None);
    assert_eq!(report.enabled, ["cpuset", "io", "memory", "pids"]);
    assert_eq!(report.attempts, 1);
    assert!(report.moves.moved.is_empty() && fs.init.is_empty());
    assert_eq!(fs.root, [1, 2, 3]);
    // Were it busy anyway, nothing is moved and it is said at once.
    let mut fs = fake(&[1], &[]);
    let report = enable_controllers(&mut fs, root, None);
    assert_eq!(report.attempts, 1);
    assert!(report.busy.is_some() && fs.init.is_empty());
}

#[test]
fn v2_refused_controller_does_not_cost_the_others() {
    let (root, init) = (Path::new("/cg"), Path::new("/cg/init"));
    let mut fs = fake(&[], &[]);
    fs.refuse = Some("io");
    let report = enable_controllers(&mut fs, root, Some(init));
    assert_eq!(report.enabled, ["cpuset", "memory", "pids"]);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, "io");
}

#[test]
fn names_are_cut_after_eight() {
    let names: Vec<String> = (1..=10).map(|n| n.to_string()).collect();
    assert_eq!(name_list(&names[..2]), "1, 2");
    assert_eq!(name_list(&names), "1, 2, 3, 4, 5, 6, 7, 8 and 2 more");
}
