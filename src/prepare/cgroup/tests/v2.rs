//! The v2 plans on a real v2 kernel's layouts, and the evacuation that enables the
//! controllers (processes out of the root cgroup, EBUSY retries) on a cgroupfs in
//! memory.

use std::collections::VecDeque;

use super::*;

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
