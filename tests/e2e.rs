//! End to end in gVisor (SPEC §4–§9 together): the real dind-init as PID 1 of a runsc
//! sandbox, a real dockerd 20.10 inside it supervised by the init (never started by a
//! script), and a nested container run by that dockerd, the way users run it:
//!
//! - `runsc --network=none --net-raw do -root <the test image's root>`: the init boots
//!   from the image's files, COMMAND waits with `dind-init probe --wait` (so that the wait
//!   itself is tested), runs a nested container, and SIGTERM to runsc (which passes it to
//!   the sandbox's PID 1) ends it with exit 0 within the stop budget (by the init's own
//!   log: no SIGKILL after the stop timeout, and its log's timestamps);
//! - a host dockerd with runsc registered as a runtime ([`HostDocker`], in the test's own
//!   namespaces and cgroups): `docker run --runtime=runsc` of the image that
//!   images/test/build.sh assembles and `docker import`s, with dind-init as its
//!   ENTRYPOINT: COMMAND's exit code comes back through `docker run`; `docker stop` of a
//!   long-running one (built with the HEALTHCHECK example, examples/docker/Dockerfile,
//!   and healthy first) is graceful (exit 0, so docker never had to SIGKILL it, and within
//!   the stop budget by the init's own log); a SIGKILLed inner dockerd is
//!   restarted and ready again, with the default bridge and user networks working (the
//!   init removed what gVisor's netlink would make the new dockerd trip over);
//! - the old runsc 0.0~20221219 (no devices cgroup controller): state `failed` with the
//!   reason naming it, `check` exits 1, dockerd is never started (no restart loop), and
//!   without COMMAND the init exits 1.
//!
//! No registry is reachable: the nested image is made inside the sandbox from the image's
//! own busybox and `docker import`ed. Nothing touches the machine's network: runsc runs
//! with `--network=none`, the host dockerd in an empty network namespace with
//! `--iptables=false --bridge=none`. The tests run one at a time ([`serial`]).

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LONG: Duration = Duration::from_secs(180);
const SHORT: Duration = Duration::from_secs(60);

/// How long gVisor's dockerd may take to become ready (or the container healthy) on a
/// slow, loaded machine (tests/network.rs waits as long).
const READY_WAIT: Duration = Duration::from_secs(120);

/// One e2e test at a time: each boots sandboxes and dockerds, and together they would
/// load a 2-core machine far more than users do.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shell for COMMAND inside the test image: a nested busybox image made from the image's
/// own busybox, `docker import`ed and run with `docker run --rm FLAGS` (the default
/// bridge when `flags` is empty). Prints `nested: nested-ok`; exits 21 when a step fails.
fn nested_run(flags: &str) -> String {
    format!(
        r#"out=""; rm -rf /tmp/nested && mkdir -p /tmp/nested/bin \
  && cp /bin/busybox /tmp/nested/bin/ && ln -s busybox /tmp/nested/bin/sh \
  && ln -s busybox /tmp/nested/bin/echo \
  && tar -C /tmp/nested -cf - . | docker import - nested:1 >/dev/null \
  && out=$(docker run --rm {flags} nested:1 echo nested-ok 2>&1) && echo "nested: $out" \
  || {{ echo "nested run failed: $out"; exit 21; }}"#
    )
}

/// The one line of status JSON in `text` that `dind-init status --json` printed after
/// `marker` (a line of its own).
fn status_after(text: &str, marker: &str) -> serde_json::Value {
    let line = text
        .lines()
        .skip_while(|l| *l != marker)
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no status JSON after {marker:?} in:\n{text}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The init's own log lines (not dockerd's).
fn init_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" dind_init::"))
        .collect()
}

fn runsc_do(runsc: &Path, root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(runsc);
    cmd.args(["--network=none", "--net-raw", "do", "-root"])
        .arg(root)
        .args(["-cwd", "/"])
        .args(args);
    cmd
}

#[test]
fn runsc_do_init_runs_docker_and_stops_on_sigterm() {
    if !require(
        "runsc_do_init_runs_docker_and_stops_on_sigterm",
        &gvisor_docker_requirements(),
    ) {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("e2e-do");
    // The defaults, except that COMMAND starts at once (it then waits with `probe
    // --wait`) and ready means a container ran (SPEC §8 `verify`).
    let config = dir.config(
        "[command]\nwait_for_ready = false\n[log]\njournald = \"off\"\n[readiness]\nverify = \"container\"\n",
    );
    let root = test_rootfs(&dir, Some(&config));
    let script = format!(
        r#"set -u
dind-init probe --wait 120s; echo "probe: $?"
echo "status after probe:"; dind-init status --json
{nested}
trap 'echo "COMMAND: got SIGTERM"; exit 0' TERM
echo "COMMAND: done"
while :; do sleep 1 & wait $!; done
"#,
        nested = nested_run("")
    );
    let stdout = dir.join("runsc.stdout");
    let stderr = dir.join("runsc.stderr");
    let mut cmd = runsc_do(
        Path::new(RUNSC),
        &root,
        &["/usr/local/bin/dind-init", "--", "/bin/sh", "-c", &script],
    );
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DIND_INIT_CONFIG");
    let cmdline = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap();
    let describe = || {
        format!(
            "command: {cmdline}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            fs::read_to_string(&stdout).unwrap_or_default(),
            fs::read_to_string(&stderr).unwrap_or_default()
        )
    };
    let done = wait_until(LONG, || {
        fs::read_to_string(&stdout).is_ok_and(|s| s.contains("COMMAND: done"))
            || child.try_wait().unwrap().is_some()
    });
    if !done || child.try_wait().unwrap().is_some() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("COMMAND did not finish its work\n{}", describe());
    }
    // runsc passes SIGTERM on to the sandbox's PID 1: the init. SHORT is only a hang
    // guard (it includes runsc's sandbox teardown); the stop's budget is checked in the
    // init's own log below.
    let asked = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let mut status = None;
    wait_until(SHORT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let took = asked.elapsed();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("runsc did not exit after SIGTERM\n{}", describe());
    };
    let out = fs::read_to_string(&stdout).unwrap();
    let err = fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{}", describe());
    let init_took = assert_init_stopped_in_time(&err, DEFAULT_STOP_TIMEOUT, &describe());
    assert!(out.contains("probe: 0"), "{}", describe());
    assert!(out.contains("nested: nested-ok"), "{}", describe());
    assert!(out.contains("COMMAND: got SIGTERM"), "{}", describe());
    let st = status_after(&out, "status after probe:");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["environment"]["gvisor"], true, "{st}");
    assert_eq!(st["environment"]["pid1"], true, "{st}");
    assert_eq!(st["dockerd"]["restarts"], 0, "{st}");
    assert!(st["dockerd"]["pid"].is_u64(), "{st}");
    // Ready only once the test container ran: the check passed in gVisor.
    assert_eq!(st["verify"]["mode"], "container", "{st}");
    assert_eq!(st["verify"]["last"]["ok"], true, "{st}");
    eprintln!(
        "runsc do: container check took {} ms",
        st["verify"]["last"]["took_ms"]
    );
    assert!(
        st["cgroup"]["mounted"]
            .as_array()
            .is_some_and(|m| m.iter().any(|c| c == "devices")),
        "{st}"
    );
    let lines = init_lines(&err);
    for needle in [
        "started dockerd",
        "dockerd state state=\"ready\"",
        "shutdown requested signal=\"SIGTERM\"",
        "dockerd exited status=exit code 0",
        "exiting code=0",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the init's log\n{}",
            describe()
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("started dockerd"))
            .count(),
        1,
        "{}",
        describe()
    );
    eprintln!("runsc do: stopped {took:?} after SIGTERM (the init: {init_took:?} by its log)");
}

#[test]
fn host_docker_runsc_command_exit_code_comes_back() {
    if !require(
        "host_docker_runsc_command_exit_code_comes_back",
        &gvisor_docker_requirements(),
    ) {
        return;
    }
    let _serial = serial();
    let mut host = HostDocker::start("e2e-code");
    host.import_test_image("dind-init-test:e2e");
    let script = format!(
        "{}\necho 'status:'; dind-init status --json; echo 'check:'; \
         dind-init check; echo \"check exit: $?\"; exit 7",
        nested_run("")
    );
    let ran = host.run(
        &[
            "run",
            "--rm",
            "--runtime=runsc",
            "--network=none",
            "--cap-add=ALL",
            "dind-init-test:e2e",
            "sh",
            "-c",
            &script,
        ],
        "run-code",
        LONG,
    );
    assert_eq!(ran.code(), Some(7), "{}", ran.describe());
    assert!(
        ran.stdout.contains("nested: nested-ok"),
        "{}",
        ran.describe()
    );
    let st = status_after(&ran.stdout, "status:");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["environment"]["gvisor"], true, "{st}");
    assert_eq!(st["environment"]["pid1"], true, "{st}");
    assert!(ran.stdout.contains("check exit: 0"), "{}", ran.describe());
    // The init stopped dockerd before passing COMMAND's code on.
    let lines = init_lines(&ran.stderr);
    for needle in [
        "COMMAND exited",
        "dockerd exited status=exit code 0",
        "exiting code=7",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the init's log\n{}",
            ran.describe()
        );
    }
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

#[test]
fn host_docker_runsc_docker_stop_is_graceful() {
    if !require(
        "host_docker_runsc_docker_stop_is_graceful",
        &gvisor_docker_requirements(),
    ) {
        return;
    }
    let _serial = serial();
    let mut host = HostDocker::start("e2e-stop");
    host.import_test_image("dind-init-test:e2e");
    // The README's HEALTHCHECK example, built on the test image.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/docker");
    let build = host.run(
        &[
            "build",
            "--build-arg=BASE=dind-init-test:e2e",
            "-t",
            "dind-init-test:health",
            example,
        ],
        "build-health",
        SHORT,
    );
    assert_eq!(build.code(), Some(0), "{}", build.describe());
    // No COMMAND: the init supervises dockerd until it is told to stop.
    let ran = host.run(
        &[
            "run",
            "-d",
            "--name=long",
            "--runtime=runsc",
            "--network=none",
            "--cap-add=ALL",
            "dind-init-test:health",
        ],
        "run-d",
        SHORT,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    let mut health = String::new();
    let healthy = wait_until(READY_WAIT, || {
        health = host
            .run(
                &["inspect", "--format={{.State.Health.Status}}", "long"],
                "inspect-health",
                SHORT,
            )
            .stdout
            .trim()
            .to_owned();
        health == "healthy"
    });
    let logs = || host.run(&["logs", "long"], "logs", SHORT);
    assert!(
        healthy,
        "health: {health:?}\n{}\n{}",
        logs().describe(),
        host.init.describe()
    );
    // SHORT is only a hang guard: had the init outlived docker stop's 10 s, docker
    // would have SIGKILLed it and its exit code would not be 0.
    let asked = Instant::now();
    let stop = host.run(&["stop", "long"], "stop", SHORT);
    let took = asked.elapsed();
    assert_eq!(stop.code(), Some(0), "{}", stop.describe());
    let code = host.run(
        &["inspect", "--format={{.State.ExitCode}}", "long"],
        "inspect-code",
        SHORT,
    );
    let logs = logs();
    assert_eq!(
        code.stdout.trim(),
        "0",
        "the init did not exit 0 on SIGTERM\n{}",
        logs.describe()
    );
    let init_took =
        assert_init_stopped_in_time(&logs.stderr, DEFAULT_STOP_TIMEOUT, &logs.describe());
    let lines = init_lines(&logs.stderr);
    for needle in [
        "dockerd state state=\"ready\"",
        "shutdown requested signal=\"SIGTERM\"",
        "signalling dockerd",
        "dockerd exited status=exit code 0",
        "exiting code=0",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the init's log\n{}",
            logs.describe()
        );
    }
    eprintln!("docker stop took {took:?} (the init: {init_took:?} by its log)");
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

#[test]
fn host_docker_runsc_killed_dockerd_is_restarted() {
    if !require(
        "host_docker_runsc_killed_dockerd_is_restarted",
        &gvisor_docker_requirements(),
    ) {
        return;
    }
    let _serial = serial();
    let mut host = HostDocker::start("e2e-restart");
    host.import_test_image("dind-init-test:e2e");
    // COMMAND creates a user network, kills the init's dockerd (its pid from the status
    // JSON), waits for the restart and readiness, and then runs a nested container on
    // the default bridge and creates a user network again: in gVisor the init must have
    // removed docker0, the br-* link and the network store first (SPEC §7).
    let script = format!(
        r#"set -u
pid_of() {{ dind-init status --json | grep -o '"pid":[0-9]*' | head -n1 | cut -d: -f2; }}
docker network create before >/dev/null || exit 29
old=$(pid_of)
echo "dockerd pid before: $old"
kill -KILL "$old"
n=0
until dind-init status --json | grep -q '"restarts":1'; do
  n=$((n + 1))
  if [ "$n" -gt 600 ]; then echo "no restart"; dind-init status; exit 30; fi
  sleep 0.1
done
dind-init probe --wait 120s || {{ echo "not ready again"; dind-init status; exit 31; }}
echo "dockerd pid after: $(pid_of)"
echo 'status:'; dind-init status --json
{nested}
docker network create after >/dev/null && echo "user network: created after the restart"
"#,
        nested = nested_run("")
    );
    let ran = host.run(
        &[
            "run",
            "--rm",
            "--runtime=runsc",
            "--network=none",
            "--cap-add=ALL",
            "dind-init-test:e2e",
            "sh",
            "-c",
            &script,
        ],
        "run-restart",
        LONG,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    let st = status_after(&ran.stdout, "status:");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["dockerd"]["restarts"], 1, "{st}");
    assert_eq!(
        st["dockerd"]["last_exit"],
        serde_json::json!({"signal": 9}),
        "{st}"
    );
    let pid = |label: &str| {
        ran.stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|p| p.trim().to_owned())
            .unwrap_or_default()
    };
    let (before, after) = (pid("dockerd pid before:"), pid("dockerd pid after:"));
    assert!(
        !before.is_empty() && !after.is_empty() && before != after,
        "{before:?} {after:?}\n{}",
        ran.describe()
    );
    assert!(
        ran.stdout.contains("nested: nested-ok"),
        "{}",
        ran.describe()
    );
    assert!(
        ran.stdout
            .contains("user network: created after the restart"),
        "{}",
        ran.describe()
    );
    let lines = init_lines(&ran.stderr);
    for needle in [
        "dockerd exited status=signal SIGKILL",
        "deleted a network link left by the previous dockerd",
        "removed dockerd's network store",
        "user-defined networks of the previous dockerd are lost",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "no {needle:?} in the init's log\n{}",
            ran.describe()
        );
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("started dockerd"))
            .count(),
        2,
        "{}",
        ran.describe()
    );
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

#[test]
fn old_runsc_fails_with_the_devices_reason_and_no_restart_loop() {
    let old = old_runsc();
    let mut req = gvisor_docker_requirements();
    req.push((
        "the old runsc 0.0~20221219 (scripts/install-deps.sh)",
        old.exists(),
    ));
    if !require(
        "old_runsc_fails_with_the_devices_reason_and_no_restart_loop",
        &req,
    ) {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("e2e-old");
    let config = dir.config("[log]\njournald = \"off\"\n");
    let root = test_rootfs(&dir, Some(&config));

    // With COMMAND: the init stays, reports `failed`, and never starts dockerd.
    let script = "dind-init check > /tmp/check.out; echo \"check exit: $?\"; \
                  cat /tmp/check.out; sleep 2; echo 'status:'; dind-init status --json; \
                  dind-init probe; echo \"probe exit: $?\"";
    let ran = run_timeout(
        &mut runsc_do(
            &old,
            &root,
            &["/usr/local/bin/dind-init", "--", "/bin/sh", "-c", script],
        ),
        &dir,
        "old-command",
        SHORT,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("check exit: 1"), "{}", ran.describe());
    assert!(
        ran.stdout
            .contains("error: this runsc has no devices cgroup controller"),
        "{}",
        ran.describe()
    );
    assert!(ran.stdout.contains("probe exit: 1"), "{}", ran.describe());
    let st = status_after(&ran.stdout, "status:");
    assert_eq!(st["state"], "failed", "{st}");
    let reason = st["reason"].as_str().unwrap_or_default();
    for needle in [
        "this runsc has no devices cgroup controller",
        "Devices cgroup isn't mounted",
        "bookworm-backports",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {st}");
    }
    assert_eq!(st["dockerd"]["restarts"], 0, "{st}");
    assert_eq!(st["dockerd"]["pid"], serde_json::Value::Null, "{st}");
    assert_eq!(st["dockerd"]["last_exit"], serde_json::Value::Null, "{st}");
    let lines = init_lines(&ran.stderr);
    assert!(
        !lines.iter().any(|l| l.contains("started dockerd")),
        "{}",
        ran.describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("dockerd state state=\"failed\"") && l.contains("devices")),
        "{}",
        ran.describe()
    );

    // Without COMMAND: nothing to wait for, so the init exits 1 at once (the
    // orchestrator then sees the container fail, with the reason in its log).
    let t = Instant::now();
    let ran = run_timeout(
        &mut runsc_do(&old, &root, &["/usr/local/bin/dind-init"]),
        &dir,
        "old-alone",
        SHORT,
    );
    assert_eq!(ran.code(), Some(1), "{}", ran.describe());
    assert!(t.elapsed() < Duration::from_secs(20), "{}", ran.describe());
    let lines = init_lines(&ran.stderr);
    assert!(
        !lines.iter().any(|l| l.contains("started dockerd")),
        "{}",
        ran.describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("this runsc has no devices cgroup controller")),
        "{}",
        ran.describe()
    );
    assert!(
        lines.iter().any(|l| l.contains("exiting code=1")),
        "{}",
        ran.describe()
    );
}
