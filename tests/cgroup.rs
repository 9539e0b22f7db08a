//! cgroup preparation, environment detection and `dind-init check` on the real thing
//! (SPEC §4, §5): the init runs as PID 1 of its own namespaces on this machine (cgroup v1
//! hybrid), inside gVisor (runsc 0.0~20240729 and the old 0.0~20221219), and on a cgroup2
//! mounted privately over /sys/fs/cgroup; where it matters a real dockerd 20.10 then runs a
//! nested container.
//!
//! Nothing here touches the machine's own cgroups, network or /sys/fs/cgroup:
//! - the host tests run in private mount, pid, network and cgroup namespaces. The launcher
//!   first joins per-test child cgroups ([`TestCgroups`]), so the cgroup namespace is rooted
//!   there: the hierarchies the init mounts show only those subtrees, and whatever dockerd
//!   creates (`/docker/<id>`) lands inside them. They are removed afterwards. Inside the
//!   namespaces /sys/fs/cgroup is unmounted (or a cgroup2 mounted over it), so the init must
//!   build the tree itself;
//! - the gVisor tests use `runsc do`, whose root is a throwaway overlay of the machine's.
//!
//! dockerd is started by a COMMAND script with its own data root, exec root, pid file and
//! socket under the test's temp dir, `--iptables=false --bridge=none` (gVisor's netstack
//! cannot run Docker's rules; the host tests use an empty network namespace), and a nested
//! image `docker import`ed from a busybox-static tar (no registry is reachable). The init's
//! own dockerd is the fake one (`TestConfig`), so only the script's dockerd is real.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use std::time::Duration;

use common::*;

const LONG: Duration = Duration::from_secs(240);
const SHORT: Duration = Duration::from_secs(60);

/// What a nested dockerd test needs on the machine.
fn docker_requirements() -> Vec<(&'static str, bool)> {
    vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
        ("dockerd", which("dockerd").is_some()),
        ("docker", which("docker").is_some()),
        ("curl", which("curl").is_some()),
        ("busybox", which("busybox").is_some()),
        ("tar", which("tar").is_some()),
    ]
}

/// A COMMAND script: start a real dockerd, wait for /_ping, import the busybox rootfs and
/// run it as a nested container. Prints `run: nested-ok` and dockerd's cgroup view, then
/// stops dockerd. Exit 20/21/22 with dockerd's last lines when a step fails.
fn nested_docker_script(dir: &TempDir) -> PathBuf {
    let tar = busybox_rootfs_tar(dir);
    let d = dir.path().display();
    let script = format!(
        r#"set -u
D={d}
dockerd --data-root "$D/data" --exec-root "$D/dexec" --pidfile "$D/dockerd.pid" \
  -H "unix://$D/d.sock" --iptables=false --bridge=none >"$D/dockerd.log" 2>&1 &
dpid=$!
n=0
until curl -sf --unix-socket "$D/d.sock" http://docker/_ping >/dev/null 2>&1; do
  n=$((n + 1))
  if [ "$n" -gt 900 ] || ! kill -0 "$dpid" 2>/dev/null; then
    echo "dockerd did not answer /_ping"; tail -n 40 "$D/dockerd.log"; exit 20
  fi
  sleep 0.1
done
echo "ping: ok"
export DOCKER_HOST="unix://$D/d.sock"
docker import "{tar}" nested:1 >/dev/null 2>"$D/import.err" || {{ cat "$D/import.err"; tail -n 40 "$D/dockerd.log"; exit 21; }}
out=$(docker run --rm --network=none nested:1 /bin/echo nested-ok 2>&1) || {{ echo "$out"; tail -n 40 "$D/dockerd.log"; exit 22; }}
echo "run: $out"
docker info --format 'info: cgroup={{{{.CgroupVersion}}}} driver={{{{.CgroupDriver}}}} storage={{{{.Driver}}}}'
kill "$dpid"
wait "$dpid"
echo "dockerd exit: $?"
"#,
        tar = tar.display()
    );
    let path = dir.join("nested.sh");
    fs::write(&path, script).unwrap();
    path
}

/// The init's own log lines of the targets `dind_init::prepare::cgroup::*` (what the preparation did).
fn cgroup_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" dind_init::prepare::cgroup"))
        .collect()
}

/// A mount table, without the lines of `check`'s short-lived probe directory (only made in
/// gVisor, listed here to keep the comparison honest if one ever leaks).
fn mounts(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.contains("dind-init-probe"))
        .collect()
}

#[test]
fn host_v1_tree_is_built_and_a_nested_container_runs() {
    let mut req = docker_requirements();
    req.push(("ip", which("ip").is_some()));
    if !require("host_v1_tree_is_built_and_a_nested_container_runs", &req) {
        return;
    }
    let dir = TempDir::new("cg-host");
    let cgroups = TestCgroups::create("host", true, true);
    let script = nested_docker_script(&dir);
    let config = TestConfig::default().write(&dir);
    // check as COMMAND first: on the tree the init has just built there is nothing to do.
    let command = format!(
        "{INIT} check --config {} > {d}/check.out; echo \"check exit: $?\" >> {d}/check.out; \
         cat /proc/self/mountinfo > {d}/mountinfo; exec /bin/sh {}",
        s(&config),
        s(&script),
        d = dir.path().display()
    );
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", "/bin/sh", "-c", &command])
        .start_isolated(&cgroups, "umount -R /sys/fs/cgroup");
    let code = init.wait_code(LONG);
    let out = init.stdout();
    assert_eq!(code, 0, "{}", init.describe());
    assert!(out.contains("run: nested-ok"), "{}", init.describe());
    let err = init.stderr();
    let lines = cgroup_lines(&err);
    for needle in [
        "mounted a tmpfs on /sys/fs/cgroup",
        "mounted cgroup devices on /sys/fs/cgroup/devices",
        "mounted cgroup name=systemd on /sys/fs/cgroup/systemd",
        "mounted cgroup memory on /sys/fs/cgroup/memory",
        "mounted cgroup2 on /sys/fs/cgroup/unified",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the init's log\n{}",
            init.describe()
        );
    }
    assert!(
        !err.contains("cgroup preparation failed"),
        "{}",
        init.describe()
    );
    let dockerd_log = fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
    assert!(
        !dockerd_log.contains("Devices cgroup isn't mounted"),
        "{dockerd_log}"
    );
    let check = fs::read_to_string(dir.join("check.out")).unwrap_or_default();
    assert!(
        check.contains("nothing to do: cgroups are already prepared")
            && check.contains("check exit: 0"),
        "{check}\n{}",
        init.describe()
    );
    // dockerd and its nested container stayed inside the test's cgroups.
    assert!(
        cgroups.dirs().iter().any(|d| d.join("docker").is_dir()),
        "no /docker cgroup under {:?}",
        cgroups.dirs()
    );
}

#[test]
fn host_second_preparation_changes_nothing() {
    if !require_root("host_second_preparation_changes_nothing") {
        return;
    }
    let dir = TempDir::new("cg-again");
    let dir2 = TempDir::new("cg-again2");
    let cgroups = TestCgroups::create("again", true, true);
    let config = TestConfig::default().write(&dir);
    let config2 = TestConfig::default().write(&dir2);
    let d = dir.path().display();
    // The second init is not PID 1 (a child subreaper) and prepares the same namespace.
    let command = format!(
        "cat /proc/self/mountinfo > {d}/before; \
         {INIT} --config {} -- /bin/true 2> {d}/second.log; echo $? > {d}/second.code; \
         cat /proc/self/mountinfo > {d}/after",
        s(&config2)
    );
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", "/bin/sh", "-c", &command])
        .unshare_args(&["--cgroup"])
        .start_wrapped(&cgroups.join_command(), "umount -R /sys/fs/cgroup");
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let first = cgroup_lines(&init.stderr()).len();
    assert!(first > 10, "the first run did little\n{}", init.describe());
    let before = fs::read_to_string(dir.join("before")).unwrap();
    let after = fs::read_to_string(dir.join("after")).unwrap();
    assert_eq!(mounts(&before), mounts(&after));
    let second = fs::read_to_string(dir.join("second.log")).unwrap();
    let lines = cgroup_lines(&second);
    assert_eq!(lines.len(), 1, "{second}");
    assert!(lines[0].contains("cgroups already prepared"), "{second}");
    assert_eq!(
        fs::read_to_string(dir.join("second.code")).unwrap().trim(),
        "0"
    );
}

#[test]
fn cgroup_v2_root_is_evacuated_into_init() {
    if !require(
        "cgroup_v2_root_is_evacuated_into_init",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
            (
                "a cgroup2 hierarchy",
                fs::read_to_string("/proc/self/cgroup")
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.starts_with("0::")),
            ),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("cg-v2");
    let dir2 = TempDir::new("cg-v2b");
    // Only the cgroup2 hierarchy: a cgroup namespace rooted at a child cgroup of it, and a
    // fresh cgroup2 mount over /sys/fs/cgroup in the private mount namespace, so statfs
    // says cgroup2 and the init takes the v2 path on a subtree the test owns.
    let cgroups = TestCgroups::create("v2", false, true);
    let config = TestConfig::default().write(&dir);
    let config2 = TestConfig::default().write(&dir2);
    let d = dir.path().display();
    let command = format!(
        "cat /sys/fs/cgroup/cgroup.procs > {d}/root.procs; cat /proc/self/cgroup > {d}/self.cgroup; \
         cat /proc/self/mountinfo > {d}/before; \
         {INIT} --config {} -- /bin/true 2> {d}/second.log; \
         cat /proc/self/mountinfo > {d}/after; cat /sys/fs/cgroup/cgroup.procs > {d}/root.procs2",
        s(&config2)
    );
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", "/bin/sh", "-c", &command])
        .unshare_args(&["--cgroup"])
        .start_wrapped(
            &cgroups.join_command(),
            "umount -R /sys/fs/cgroup\nmount -t cgroup2 none /sys/fs/cgroup",
        );
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let err = init.stderr();
    assert!(
        cgroup_lines(&err).iter().any(|l| l.contains(
            "moved 1 process(es) out of the root cgroup /sys/fs/cgroup into /sys/fs/cgroup/init"
        )),
        "{}",
        init.describe()
    );
    assert!(
        err.contains("environment: not gVisor") && err.contains("cgroup v2"),
        "{err}"
    );
    // Only processes outside the pid namespace (shown as 0: the unshare parent) remain.
    for f in ["root.procs", "root.procs2"] {
        let procs = fs::read_to_string(dir.join(f)).unwrap();
        assert!(
            procs.lines().all(|p| p == "0"),
            "{f}: {procs:?}\n{}",
            init.describe()
        );
    }
    let me = fs::read_to_string(dir.join("self.cgroup")).unwrap();
    assert!(
        me.lines().any(|l| l == "0::/init"),
        "COMMAND is not in /init: {me}"
    );
    // The second preparation finds everything in place.
    let second = fs::read_to_string(dir.join("second.log")).unwrap();
    let lines = cgroup_lines(&second);
    assert!(
        lines.len() == 1 && lines[0].contains("cgroups already prepared"),
        "{second}"
    );
    let before = fs::read_to_string(dir.join("before")).unwrap();
    let after = fs::read_to_string(dir.join("after")).unwrap();
    assert_eq!(mounts(&before), mounts(&after));
}

#[test]
fn runsc_tree_is_built_and_a_nested_container_runs() {
    let mut req = docker_requirements();
    req.push((
        "runsc 0.0~20240729 at /usr/bin/runsc",
        Path::new(RUNSC).exists(),
    ));
    if !require("runsc_tree_is_built_and_a_nested_container_runs", &req) {
        return;
    }
    let dir = TempDir::new("cg-runsc");
    let dir2 = TempDir::new("cg-runsc2");
    let script = nested_docker_script(&dir);
    let config = TestConfig::default().write(&dir);
    let config2 = TestConfig::default().write(&dir2);
    let d = dir.path().display();
    // A second preparation first (compared by mount table and log), then real dockerd.
    let command = format!(
        "cat /proc/self/mountinfo > /tmp/before; \
         {INIT} --config {} -- /bin/true 2> /tmp/second.log; \
         cat /proc/self/mountinfo > /tmp/after; \
         if cmp -s /tmp/before /tmp/after; then echo 'mountinfo: same'; else diff /tmp/before /tmp/after; fi; \
         grep -c ' dind_init::prepare::cgroup' /tmp/second.log | sed 's/^/second cgroup lines: /'; \
         grep ' dind_init::prepare::cgroup' /tmp/second.log; \
         exec /bin/sh {}",
        s(&config2),
        s(&script),
    );
    let _ = d;
    let ran = run_timeout(
        &mut runsc_do(
            Path::new(RUNSC),
            &[
                INIT,
                "--config",
                s(&config),
                "--",
                "/bin/sh",
                "-c",
                &command,
            ],
        ),
        &dir,
        "runsc",
        LONG,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("ping: ok"), "{}", ran.describe());
    assert!(ran.stdout.contains("run: nested-ok"), "{}", ran.describe());
    assert!(ran.stdout.contains("info: cgroup=1"), "{}", ran.describe());
    let lines = cgroup_lines(&ran.stderr);
    for c in [
        "cpu", "cpuacct", "cpuset", "memory", "devices", "pids", "job",
    ] {
        let needle = format!("mounted cgroup {c} on /sys/fs/cgroup/{c}");
        assert!(
            lines.iter().any(|l| l.contains(&needle)),
            "{needle}\n{}",
            ran.describe()
        );
    }
    assert!(
        ran.stderr.contains("environment: gVisor"),
        "{}",
        ran.describe()
    );
    assert!(
        !ran.stderr.contains("cgroup preparation failed"),
        "{}",
        ran.describe()
    );
    assert!(ran.stdout.contains("mountinfo: same"), "{}", ran.describe());
    assert!(
        ran.stdout.contains("second cgroup lines: 1"),
        "{}",
        ran.describe()
    );
    assert!(
        ran.stdout.contains("cgroups already prepared"),
        "{}",
        ran.describe()
    );
}

#[test]
fn old_runsc_names_the_missing_devices_controller_and_check_fails() {
    let old = old_runsc();
    if !require(
        "old_runsc_names_the_missing_devices_controller_and_check_fails",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            (
                "the old runsc 0.0~20221219 (scripts/install-deps.sh)",
                old.exists(),
            ),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("cg-oldrunsc");
    let config = TestConfig::default().write(&dir);

    // `check` in a fresh sandbox: it probes devices, learns EINVAL, exits 1.
    let check = run_timeout(
        &mut runsc_do(&old, &[INIT, "check", "--config", s(&config)]),
        &dir,
        "check",
        SHORT,
    );
    assert_eq!(check.code(), Some(1), "{}", check.describe());
    for needle in [
        "gVisor:        yes",
        "try to mount cgroup devices on /sys/fs/cgroup/devices",
        "error: this runsc has no devices cgroup controller",
        "Devices cgroup isn't mounted",
        "fix: run a newer runsc, e.g. Debian's bookworm-backports build 0.0~20240729",
        "result: dockerd cannot start",
    ] {
        assert!(
            check.stdout.contains(needle),
            "{needle}\n{}",
            check.describe()
        );
    }
    assert!(
        !check.stdout.contains("dind-init-probe"),
        "{}",
        check.describe()
    );

    // The init: one line with cause and fix; dockerd is not started; check again inside.
    let command = format!(
        "{INIT} check --config {} > /tmp/check.out; echo \"check exit: $?\"; \
         busybox ls /sys/fs/cgroup/devices; {INIT} status --socket {} --json",
        s(&config),
        s(&dir.join("init.sock")),
    );
    let ran = run_timeout(
        &mut runsc_do(
            &old,
            &[
                INIT,
                "--config",
                s(&config),
                "--",
                "/bin/sh",
                "-c",
                &command,
            ],
        ),
        &dir,
        "init",
        SHORT,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    let failures: Vec<&str> = cgroup_lines(&ran.stderr)
        .into_iter()
        .filter(|l| l.contains(" ERROR "))
        .collect();
    assert_eq!(failures.len(), 1, "{}", ran.describe());
    for needle in [
        "this runsc has no devices cgroup controller",
        "Devices cgroup isn't mounted",
        "fix: run a newer runsc, e.g. Debian's bookworm-backports build 0.0~20240729",
    ] {
        assert!(failures[0].contains(needle), "{needle}\n{}", ran.describe());
    }
    assert!(ran.stdout.contains("check exit: 1"), "{}", ran.describe());
    // The stub is there (for tools that look for directories) and said so.
    assert!(ran.stdout.contains("devices.allow"), "{}", ran.describe());
    let status_line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no status JSON\n{}", ran.describe()));
    let status: serde_json::Value = serde_json::from_str(status_line).unwrap();
    assert_eq!(status["cgroup"]["mode"], "v1-gvisor", "{status}");
    assert_eq!(
        status["cgroup"]["stubbed"],
        serde_json::json!(["devices"]),
        "{status}"
    );
    assert_eq!(status["environment"]["gvisor"], true, "{status}");
    assert_eq!(status["state"], "failed", "{status}");
    assert!(
        status["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("devices"),
        "{status}"
    );
}

#[test]
fn a_restart_prepares_cgroups_again() {
    if !require_root("a_restart_prepares_cgroups_again") {
        return;
    }
    let dir = TempDir::new("cg-restart");
    let cgroups = TestCgroups::create("restart", true, true);
    let config = TestConfig::default().write(&dir);
    let d = dir.path().display();
    // COMMAND (in the init's mount namespace) undoes part of the preparation,
    // kills the (fake) dockerd, and looks again once the restart is ready.
    let command = format!(
        "set -e; sock={d}/init.sock; \
         {INIT} probe --socket $sock --wait 30s; \
         umount /sys/fs/cgroup/pids; \
         pid=$({INIT} status --json --socket $sock | sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p'); \
         kill -9 $pid; \
         i=0; until {INIT} status --json --socket $sock | grep -q '\"restarts\":1' \
           && {INIT} probe --socket $sock; do i=$((i+1)); [ $i -lt 300 ]; sleep 0.1; done; \
         if grep -q ' /sys/fs/cgroup/pids ' /proc/self/mountinfo; then echo 'pids: mounted again'; fi; \
         {INIT} status --json --socket $sock > {d}/status.json"
    );
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", "/bin/sh", "-c", &command])
        .unshare_args(&["--cgroup"])
        .start_wrapped(&cgroups.join_command(), "umount -R /sys/fs/cgroup");
    assert_eq!(init.wait_code(LONG), 0, "{}", init.describe());
    assert!(
        init.stdout().contains("pids: mounted again"),
        "{}",
        init.describe()
    );
    let err = init.stderr();
    let pids_mounts = cgroup_lines(&err)
        .iter()
        .filter(|l| l.contains("mounted cgroup pids on /sys/fs/cgroup/pids"))
        .count();
    assert_eq!(pids_mounts, 2, "at boot and before the restart\n{err}");
    // status lists what the preparation did, both times.
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("status.json")).unwrap()).unwrap();
    let actions = v["cgroup"]["actions"].as_array().unwrap();
    let pids = actions
        .iter()
        .filter(|a| a.as_str().unwrap_or("").contains("mounted cgroup pids"))
        .count();
    assert_eq!(pids, 2, "{v}");
}
