//! The init with the real dockerd (Debian's docker.io), as PID 1 of private pid,
//! mount, network and cgroup namespaces on this machine, and as PID 1 of a gVisor
//! sandbox (runsc 0.0~20240729): restarts after SIGKILL with nested containers
//! working each time, a dockerd that exits at once, a missing dockerd, a stop with
//! a nested container running, and readiness never before dockerd's first 200.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const SHORT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(600);

fn requirements() -> Vec<(&'static str, bool)> {
    vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
        ("dockerd", which("dockerd").is_some()),
        ("docker", which("docker").is_some()),
        ("busybox", which("busybox").is_some()),
        ("ip", which("ip").is_some()),
    ]
}

/// Starts the init with the real dockerd in private namespaces and test cgroups. Its
/// `config` is a [`real_dockerd_config`], with `--bridge=none` unless the test needs the
/// bridge (the network namespace is private anyway).
fn start_real(dir: &TempDir, cgroups: &TestCgroups, config: &Path) -> InitUnderTest {
    Launch::new(dir)
        .args(&["--config", s(config)])
        .start_isolated(cgroups, "")
}

/// Runs the docker client against the init's dockerd (a unix socket works across
/// the network namespace).
fn docker(dir: &TempDir, args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .arg("-H")
        .arg(format!("unix://{}", dir.join("docker.sock").display()))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn host_sigkill_of_dockerd_twenty_times_with_nested_containers() {
    if !require(
        "host_sigkill_of_dockerd_twenty_times_with_nested_containers",
        &requirements(),
    ) {
        return;
    }
    let dir = TempDir::new("real-kill");
    let cgroups = TestCgroups::create("realkill", true, true);
    let config = real_dockerd_config(
        &dir,
        &["--bridge=none"],
        "backoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\nmax_restarts = 0",
        "",
    );
    let mut init = start_real(&dir, &cgroups, &config);
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    let tar = busybox_rootfs_tar(&dir);
    let (ok, out) = docker(&dir, &["import", s(&tar), "nested:1"]);
    assert!(ok, "{out}\n{}", init.describe());
    let init_pid = init.init_pid();
    let mut baseline = None;
    for round in 1..=20 {
        let v = status(&dir);
        init.signal_dockerd(&v, Signal::SIGKILL);
        let v = wait_status(&dir, SHORT, |v| {
            v["state"] == "ready" && v["dockerd"]["restarts"] == round
        });
        assert_eq!(v["dockerd"]["last_exit"]["signal"], 9, "{v}");
        let (ok, out) = docker(
            &dir,
            &[
                "run",
                "--rm",
                "--network=none",
                "nested:1",
                "echo",
                &format!("nested-{round}"),
            ],
        );
        assert!(
            ok && out.contains(&format!("nested-{round}")),
            "round {round}: {out}\n{}",
            init.describe()
        );
        if round == 5 {
            baseline = Some(fds_and_rss(init_pid));
        }
    }
    assert_no_growth(init_pid, baseline.unwrap());
    // A containerd-shim of the last `docker run --rm` may still be exiting.
    let zombies = zombies_under_settled(init_pid);
    assert!(
        zombies.is_empty(),
        "zombies {zombies:?}\n{}",
        init.describe()
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

#[test]
fn host_stop_with_a_nested_container_running() {
    if !require("host_stop_with_a_nested_container_running", &requirements()) {
        return;
    }
    let dir = TempDir::new("real-stop");
    let cgroups = TestCgroups::create("realstop", true, true);
    let config = real_dockerd_config(&dir, &["--bridge=none"], "", "");
    let mut init = start_real(&dir, &cgroups, &config);
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    let tar = busybox_rootfs_tar(&dir);
    assert!(docker(&dir, &["import", s(&tar), "nested:1"]).0);
    // A container that stops on SIGTERM (busybox `sleep` as a container's PID 1
    // would ignore it, and dockerd 20.10 waits its 10 s default before SIGKILL,
    // whatever --shutdown-timeout says; the README says so).
    let (ok, out) = docker(
        &dir,
        &[
            "run",
            "-d",
            "--network=none",
            "nested:1",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1; done",
        ],
    );
    assert!(ok, "{out}");
    let (_, ps) = docker(&dir, &["ps", "-q"]);
    assert_eq!(ps.lines().count(), 1, "one nested container running: {ps}");
    // What `docker stop` does to the container of this init: SIGTERM. SHORT is only a
    // hang guard; whether the stop kept to its budget is read from the init's own log.
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let log = init.stderr();
    let took = assert_init_stopped_in_time(&log, DEFAULT_STOP_TIMEOUT, &log);
    assert!(log.contains("dockerd exited"), "{log}");
    eprintln!("the init stopped {took:?} after SIGTERM (by its own log)");
}

#[test]
fn host_dockerd_that_exits_at_once_is_restarted_then_failed() {
    if !require(
        "host_dockerd_that_exits_at_once_is_restarted_then_failed",
        &requirements(),
    ) {
        return;
    }
    let dir = TempDir::new("real-exit1");
    let cgroups = TestCgroups::create("realexit", true, true);
    let config = real_dockerd_config(
        &dir,
        &["--bridge=none", "--bogus-flag"],
        "backoff_initial = \"50ms\"\nbackoff_max = \"400ms\"\nmax_restarts = 3",
        "",
    );
    let mut init = start_real(&dir, &cgroups, &config);
    assert_eq!(init.wait_code(SHORT), 1, "{}", init.describe());
    let log = init.stderr();
    let delays = restart_delays(&log);
    assert_eq!(delays, ["50ms", "100ms", "200ms"], "{log}");
    assert!(log.contains("gave up after 3 restarts"), "{log}");
    assert!(
        log.contains("unknown flag: --bogus-flag"),
        "dockerd's stderr is in the log\n{log}"
    );
}

#[test]
fn host_ready_is_never_signalled_before_dockerd_answers() {
    if !require(
        "host_ready_is_never_signalled_before_dockerd_answers",
        &requirements(),
    ) {
        return;
    }
    let dir = TempDir::new("real-ready");
    let cgroups = TestCgroups::create("realready", true, true);
    let config = real_dockerd_config(&dir, &["--bridge=none"], "", "");
    let sock = dir.join("docker.sock");
    let ready = dir.join("ready");
    let started = Instant::now();
    let mut init = start_real(&dir, &cgroups, &config);
    // An independent poller: look at the ready file, then ping dockerd. Whenever the
    // file exists, dockerd must answer 200 (the init saw a 200 before writing it).
    // Before the file exists a short read timeout keeps the samples dense; once it
    // exists, dockerd gets a long one to answer (a fresh dockerd on busy cores can be
    // slow), but a refusal or anything other than 200 still fails.
    let mut first_ok: Option<Duration> = None;
    let mut first_file: Option<Duration> = None;
    let mut samples = 0;
    while first_file.is_none() && started.elapsed() < SHORT {
        let exists = ready.exists();
        let timeout = if exists {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(200)
        };
        let ok = ping(&sock, timeout);
        samples += 1;
        if ok && first_ok.is_none() {
            first_ok = Some(started.elapsed());
        }
        if exists {
            assert!(
                ok,
                "the ready file existed while dockerd did not answer /_ping 200\n{}",
                init.describe()
            );
            first_file = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (first_ok, first_file) = (first_ok.unwrap(), first_file.unwrap());
    eprintln!("first 200 seen at {first_ok:?}, ready file at {first_file:?} ({samples} samples)");
    let log = init.stderr();
    // Ready came from the init's own ping (logged after the ready file is written).
    assert!(log.contains("dockerd answered /_ping"), "{log}");
    assert!(log.contains("state=\"ready\""), "{log}");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

/// One `GET /_ping`, waiting up to `timeout` for the answer; true on 200.
fn ping(sock: &Path, timeout: Duration) -> bool {
    const OK: &[u8] = b"HTTP/1.1 200";
    let Ok(mut s) = UnixStream::connect(sock) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    // The status line may come in more than one read; the timeout is per read, so
    // bound the whole wait too.
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < OK.len() && Instant::now() < end {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].starts_with(OK)
}

#[test]
fn gvisor_sigkill_of_dockerd_twenty_times_then_a_clean_stop() {
    let mut req = requirements();
    req.push((
        "runsc 0.0~20240729 at /usr/bin/runsc",
        Path::new(RUNSC).exists(),
    ));
    if !require(
        "gvisor_sigkill_of_dockerd_twenty_times_then_a_clean_stop",
        &req,
    ) {
        return;
    }
    let dir = TempDir::new("real-gvisor");
    let tar = busybox_rootfs_tar(&dir);
    let d = dir.path().display();
    // Inside the sandbox the default paths are the sandbox's own.
    let config = dir.config(
        "[dockerd]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\nmax_restarts = 0\n\
         [readiness]\ninterval = \"0s\"\n[log]\nlevel = \"debug\"\n",
    );
    let script = format!(
        r#"set -u
S=/run/dind-init/init.sock
export DOCKER_HOST=unix:///var/run/docker.sock
{INIT} probe --socket $S --wait 120s || {{ echo "never ready"; exit 10; }}
docker import {tar} nested:1 >/dev/null || exit 11
status() {{ {INIT} status --socket $S --json; }}
fds() {{ ls /proc/1/fd | wc -l; }}
rss() {{ awk '/^VmRSS/ {{print $2}}' /proc/1/status; }}
zombies() {{ grep -l '^State:.*Z' /proc/[0-9]*/status 2>/dev/null | wc -l; }}
fds5=""
for i in $(seq 1 20); do
  pid=$(status | sed 's/.*"dockerd":{{"pid":\([0-9]*\).*/\1/')
  kill -9 "$pid"
  n=0
  until status | grep -q "\"restarts\":$i,"; do n=$((n+1)); [ $n -gt 600 ] && {{ echo "no restart $i"; exit 12; }}; sleep 0.05; done
  {INIT} probe --socket $S --wait 120s || {{ echo "not ready after restart $i"; status; exit 13; }}
  out=$(docker run --rm --network=none nested:1 echo nested-$i 2>&1)
  [ "$out" = "nested-$i" ] || {{ echo "round $i: $out"; exit 14; }}
  [ "$i" = 5 ] && sleep 0.2 && fds5=$(fds) && echo "fds5=$fds5 rss5=$(rss)"
done
# A status connection or a shim of the last round may still be closing: wait (up to
# 5 s) for no zombies and no more fds than at round 5; what stays is reported.
n=0
until [ "$(zombies)" = 0 ] && [ "$(fds)" -le "$fds5" ]; do
  n=$((n+1)); [ $n -gt 50 ] && break; sleep 0.1
done
echo "fds20=$(fds) rss20=$(rss)"
echo "zombies=$(zombies)"
docker run -d --network=none nested:1 sh -c 'trap "exit 0" TERM; while :; do sleep 1; done' >/dev/null || exit 15
echo "rounds: ok"
# Stop like `docker stop`: SIGTERM to PID 1. COMMAND (this shell) gets it too, and
# exits 0 from its trap; the init then stops dockerd and exits with COMMAND's 0.
trap 'exit 0' TERM
kill -TERM 1
sleep 1000 & wait
"#,
        tar = tar.display()
    );
    let script_path = dir.join("gvisor.sh");
    fs::write(&script_path, script).unwrap();
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
                s(&script_path),
            ],
        ),
        &dir,
        "runsc",
        LONG,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("rounds: ok"), "{}", ran.describe());
    let field = |name: &str| -> u64 {
        ran.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}\n{}", ran.describe()))
    };
    assert!(
        field("fds20") <= field("fds5"),
        "the init's fd count grew\n{}",
        ran.describe()
    );
    assert!(
        field("rss20") <= field("rss5") + 1024,
        "RSS did not grow\n{}",
        ran.describe()
    );
    assert_eq!(field("zombies"), 0, "{}", ran.describe());
    assert!(
        ran.stderr.contains("environment: gVisor"),
        "{}",
        ran.describe()
    );
    // gVisor passes the sending thread's id with dockerd's READY=1: still dockerd's.
    assert!(
        ran.stderr.contains("dockerd sent READY=1"),
        "{}",
        ran.describe()
    );
    // LONG is only a hang guard; the stop's budget is checked in the init's own log.
    let took = assert_init_stopped_in_time(&ran.stderr, DEFAULT_STOP_TIMEOUT, &ran.describe());
    eprintln!("the init stopped {took:?} after SIGTERM (by its own log)");
}

#[test]
fn gvisor_missing_dockerd_fails_at_once_without_restarts() {
    if !require(
        "gvisor_missing_dockerd_fails_at_once_without_restarts",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("runsc", Path::new(RUNSC).exists()),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("real-missing");
    let config = dir.config("[dockerd]\npath = \"/nonexistent/dockerd\"\n");
    let ran = run_timeout(
        &mut runsc_do(Path::new(RUNSC), &[INIT, "--config", s(&config)]),
        &dir,
        "runsc",
        SHORT,
    );
    assert_eq!(ran.code(), Some(1), "{}", ran.describe());
    assert!(
        ran.stderr
            .contains("dockerd not found: install Docker in the image"),
        "{}",
        ran.describe()
    );
    assert!(!ran.stderr.contains("restarting in"), "{}", ran.describe());
    // With COMMAND: the init stays, and status says failed with zero restarts.
    let ran = run_timeout(
        &mut runsc_do(
            Path::new(RUNSC),
            &[INIT, "--config", s(&config), "--", INIT, "status", "--json"],
        ),
        &dir,
        "runsc2",
        SHORT,
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    let v: serde_json::Value =
        serde_json::from_str(ran.stdout.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(v["dockerd"]["restarts"], 0, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("dockerd not found"),
        "{v}"
    );
}

#[test]
fn gvisor_dockerd_that_exits_at_once_is_restarted_then_failed() {
    if !require(
        "gvisor_dockerd_that_exits_at_once_is_restarted_then_failed",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("runsc", Path::new(RUNSC).exists()),
            ("dockerd", which("dockerd").is_some()),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("real-gexit1");
    let config = dir.config(
        "[dockerd]\nargs = [\"--bogus-flag\"]\nbackoff_initial = \"50ms\"\nbackoff_max = \"400ms\"\nmax_restarts = 3\n",
    );
    let ran = run_timeout(
        &mut runsc_do(Path::new(RUNSC), &[INIT, "--config", s(&config)]),
        &dir,
        "runsc",
        SHORT,
    );
    assert_eq!(ran.code(), Some(1), "{}", ran.describe());
    let delays = restart_delays(&ran.stderr);
    assert_eq!(delays, ["50ms", "100ms", "200ms"], "{}", ran.describe());
    assert!(
        ran.stderr.contains("gave up after 3 restarts"),
        "{}",
        ran.describe()
    );
    assert!(
        ran.stderr.contains("environment: gVisor"),
        "{}",
        ran.describe()
    );
}

/// SPEC §8 `verify = "container"` on the real dockerd: ready only once a test
/// container ran on the default bridge; with a runtime that fails, `degraded` with a
/// reason naming the step (ready file absent, /readyz 503, probe exit 1, COMMAND's
/// gate open with a warning); once the runtime works, `ready` without restarting
/// dockerd; and a second start of dockerd reuses the imported image.
#[test]
fn host_verify_container_degraded_then_ready_without_a_restart() {
    if !require(
        "host_verify_container_degraded_then_ready_without_a_restart",
        &requirements(),
    ) {
        return;
    }
    let runc = which("runc").unwrap_or_else(|| "/usr/sbin/runc".into());
    let dir = TempDir::new("real-verify");
    let d = dir.path().display();
    // An OCI runtime that refuses to create containers until `fixed` exists.
    let flaky = dir.join("flaky-runc");
    fs::write(
        &flaky,
        format!(
            "#!/bin/sh\nif [ -e {d}/fixed ]; then exec {} \"$@\"; fi\n\
             echo 'flaky-runc: broken on purpose' >&2; exit 1\n",
            runc.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&flaky, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cgroups = TestCgroups::create("realverify", true, true);
    let config = real_dockerd_config(
        &dir,
        &[
            &format!("--add-runtime=flaky={}", flaky.display()),
            "--default-runtime=flaky",
        ],
        "",
        "verify = \"container\"\n[command]\nready_timeout = \"10m\"",
    );
    let command_ran = dir.join("command.ran");
    // The static build: the check imports the running binary as a one-file image.
    let mut init = Launch::new(&dir)
        .binary(static_init())
        .args(&[
            "--config",
            s(&config),
            "--",
            "/bin/sh",
            "-c",
            &format!("touch {}; exec sleep 600", command_ran.display()),
        ])
        .start_isolated(&cgroups, "");
    let v = wait_status(&dir, LONG, |v| v["state"] == "degraded");
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("start failed"), "{v}");
    assert_eq!(v["verify"]["last"]["ok"], false, "{v}");
    assert_eq!(v["verify"]["last"]["step"], "start", "{v}");
    assert!(!dir.join("ready").exists(), "no ready file while degraded");
    let probe = Command::new(INIT)
        .args(["probe", "--socket", s(&dir.join("init.sock"))])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1), "{probe:?}");
    let readyz = {
        let mut c = UnixStream::connect(dir.join("init.sock")).unwrap();
        c.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    assert!(readyz.starts_with("HTTP/1.1 503 "), "{readyz}");
    // COMMAND's gate treats degraded like failed: it started, with a warning.
    assert!(
        wait_until(SHORT, || command_ran.exists()),
        "{}",
        init.describe()
    );
    assert!(
        init.stderr().contains(
            "dockerd is degraded (a test container did not run); starting COMMAND anyway"
        ),
        "{}",
        init.describe()
    );
    let pid = v["dockerd"]["pid"].clone();
    // The runtime is fixed: the next retry (1 s doubling) passes, same dockerd.
    fs::write(dir.join("fixed"), "").unwrap();
    let v = wait_status(&dir, LONG, |v| v["state"] == "ready");
    assert_eq!(v["dockerd"]["pid"], pid, "{v}");
    assert_eq!(v["dockerd"]["restarts"], 0, "{v}");
    assert_eq!(v["verify"]["last"]["ok"], true, "{v}");
    assert!(dir.join("ready").exists());
    let (ok, out) = docker(&dir, &["images", "--format", "{{.Repository}}"]);
    assert!(ok && out.contains("dind-init-verify"), "{out}");
    let (ok, out) = docker(
        &dir,
        &["ps", "-a", "--filter", "label=dind-init.verify", "-q"],
    );
    assert!(
        ok && out.trim().is_empty(),
        "test containers are removed: {out}"
    );
    // What an interrupted check would leave, and an image of another build: the
    // next run's first check tidies both up.
    let (ok, current) = docker(&dir, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let current = current
        .lines()
        .find(|l| l.starts_with("dind-init-verify:"))
        .unwrap_or_else(|| panic!("{current}"))
        .to_owned();
    assert!(ok);
    let (ok, out) = docker(&dir, &["tag", &current, "dind-init-verify:0.0.0-old"]);
    assert!(ok, "{out}");
    let (ok, out) = docker(
        &dir,
        &[
            "create",
            "--label",
            "dind-init.verify=1",
            &current,
            "/dind-init",
            "--version",
        ],
    );
    assert!(ok, "{out}");
    // A killed dockerd comes back and is checked again, without a new import.
    init.signal_dockerd(&v, Signal::SIGKILL);
    let v = wait_status(&dir, LONG, |v| {
        v["state"] == "ready" && v["dockerd"]["restarts"] == 1
    });
    assert_eq!(v["verify"]["last"]["ok"], true, "{v}");
    let (ok, out) = docker(
        &dir,
        &["ps", "-a", "--filter", "label=dind-init.verify", "-q"],
    );
    assert!(
        ok && out.trim().is_empty(),
        "the leftover was pruned: {out}"
    );
    assert!(
        wait_until(SHORT, || {
            let (_, images) = docker(&dir, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
            !images.contains("0.0.0-old") && images.contains(&current)
        }),
        "only the current build's image is kept"
    );
    let log = init.stderr();
    assert!(
        log.matches("POST /images/create").count() <= 1,
        "imported once at most"
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 143, "{}", init.describe());
}
