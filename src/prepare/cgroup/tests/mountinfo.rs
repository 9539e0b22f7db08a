//! What the system's texts say, parsed: /proc/self/cgroup, /proc/self/mountinfo
//! (which mounts a lookup reaches), and how dockerd and the environment classify the
//! cgroup layout, on fixtures captured from real systems.

use super::*;

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
