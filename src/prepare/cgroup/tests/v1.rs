//! The v1 plans (`tests/fixtures/cgroup`): Docker's read-only mounts, a tree built
//! from nothing, co-mounted controllers, and gVisor's runsc trees old and new.

use super::*;

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
