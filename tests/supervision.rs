//! dockerd supervision on the real binary with the fake dockerd (SPEC §6, §7):
//! spawning, restarts with backoff, giving up, exec failures, stops, SIGHUP,
//! captured output, diagnosis, stale state, leftover containerd, COMMAND gating.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;

use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const SHORT: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(120);

#[test]
fn dockerd_gets_its_flags_environment_and_a_clean_start() {
    if !require_root("dockerd_gets_its_flags_environment_and_a_clean_start") {
        return;
    }
    let dir = TempDir::new("flags");
    let mut init = Launch::new(&dir)
        .env("NOTIFY_SOCKET", "/nonexistent/upstream.sock")
        .args(&["--", FAKE, "--fake-exit-code=0"])
        .start();
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let r = report(&dir.join("dockerd.report"));
    let start = events(&r, "start")[0];
    let args: Vec<&str> = start["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let sock = format!("--host=unix://{}", dir.join("docker.sock").display());
    assert!(args.contains(&sock.as_str()), "{args:?}");
    assert!(
        args.contains(&"--shutdown-timeout=6"),
        "stop_timeout 8s - 2s: {args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--iptables")),
        "not gVisor: {args:?}"
    );
    assert_eq!(start["env"]["container"], "docker", "{start}");
    let notify = start["env"]["NOTIFY_SOCKET"].as_str().unwrap();
    assert_eq!(
        notify,
        s(&dir.join("notify.sock")),
        "the init's own socket, not the inherited one"
    );
    assert_eq!(start["blocked"], serde_json::json!([]), "{start}");
    assert_eq!(start["ignored"], serde_json::json!([]), "{start}");
    assert_eq!(start["pgid"], start["pid"], "own process group: {start}");
}

/// The static build starts its children with posix_spawn (`sys::spawn`), unless
/// libc's reserved signals (32 to 34) reach the init ignored: posix_spawn cannot
/// reset those, so it forks and resets them itself. Either way dockerd and COMMAND
/// start with no signal ignored or blocked, in their own process group, without
/// the upstream NOTIFY_SOCKET, their output captured or passed through.
#[test]
fn the_static_build_starts_children_clean_with_and_without_posix_spawn() {
    if !require_root("the_static_build_starts_children_clean_with_and_without_posix_spawn") {
        return;
    }
    let binary = static_init();
    for ignored in [vec![], vec![32, 33, 34]] {
        let dir = TempDir::new("static-spawn");
        let command_report = dir.join("command.report");
        let config = TestConfig {
            other: "[log]\nlevel = \"debug\"".into(),
            ..Default::default()
        }
        .write(&dir);
        let mut init = Launch::new(&dir)
            .binary(binary.clone())
            .ignoring(&ignored)
            .env("NOTIFY_SOCKET", "/nonexistent/upstream.sock")
            .args(&["--config", s(&config)])
            .fake_command(&command_report, &["--fake-print-long=37"])
            .start();
        assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
        // Which way each child started (the init's debug line for each spawn).
        let via = if ignored.is_empty() {
            "posix_spawn"
        } else {
            "fork"
        };
        let spawned: Vec<String> = init
            .stderr()
            .lines()
            .filter(|l| l.contains(" spawned") && l.contains("fake-dockerd"))
            .map(str::to_owned)
            .collect();
        assert!(
            spawned.len() >= 2
                && spawned
                    .iter()
                    .all(|l| l.contains(&format!("via=\"{via}\""))),
            "dockerd and COMMAND should start via {via}: {spawned:#?}\n{}",
            init.describe()
        );
        let dockerd = report(&dir.join("dockerd.report"));
        let command = report(&command_report);
        for (who, r) in [("dockerd", &dockerd), ("COMMAND", &command)] {
            let start = events(r, "start")[0];
            let what = format!("{who}, init ignoring {ignored:?}: {start}");
            assert_eq!(start["blocked"], serde_json::json!([]), "{what}");
            assert_eq!(start["ignored"], serde_json::json!([]), "{what}");
            assert_eq!(start["pgid"], start["pid"], "own process group: {what}");
            assert_eq!(start["ppid"], 1, "child of the init: {what}");
        }
        let notify = events(&dockerd, "start")[0]["env"]["NOTIFY_SOCKET"].clone();
        assert_eq!(
            notify,
            s(&dir.join("notify.sock")),
            "dockerd's is the init's"
        );
        assert!(events(&command, "start")[0]["env"]
            .get("NOTIFY_SOCKET")
            .is_none());
        assert!(
            init.stdout().contains(&"x".repeat(37)),
            "COMMAND's stdout passes through: {}",
            init.describe()
        );
    }
}

#[test]
fn user_args_replace_the_added_ones_and_dind_style_command_appends() {
    if !require_root("user_args_replace_the_added_ones_and_dind_style_command_appends") {
        return;
    }
    let dir = TempDir::new("userargs");
    let cfg = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            "--shutdown-timeout=1".into(),
            format!("-H=unix://{}", dir.join("docker.sock").display()),
        ],
        dockerd: "env = { DOCKER_RAMDISK = \"true\" }".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&cfg), "--", "--debug", "--storage-driver=vfs"])
        .start();
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let r = report(&dir.join("dockerd.report"));
    let start = events(&r, "start")[0];
    let args: Vec<&str> = start["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(!args.iter().any(|a| a.starts_with("--host")), "{args:?}");
    assert_eq!(
        args.iter()
            .filter(|a| a.starts_with("--shutdown-timeout"))
            .count(),
        1,
        "{args:?}"
    );
    assert_eq!(
        args[args.len() - 2..],
        ["--debug", "--storage-driver=vfs"],
        "{args:?}"
    );
    assert_eq!(start["env"]["DOCKER_RAMDISK"], "true", "{start}");
}

/// The test config with `dockerd.path` set to `path` instead of the fake dockerd.
fn config_with_dockerd_path(dir: &TempDir, path: &str) -> std::path::PathBuf {
    let cfg = TestConfig {
        dockerd: format!("path = \"{path}\""),
        ..Default::default()
    };
    // `path` appears twice otherwise: write the config by hand.
    let text = cfg
        .text(dir)
        .replacen(&format!("path = \"{FAKE}\"\n"), "", 1);
    dir.config(&text)
}

#[test]
fn a_dockerd_whose_interpreter_is_missing_is_named_as_such_by_boot_and_check() {
    if !require_root("a_dockerd_whose_interpreter_is_missing_is_named_as_such_by_boot_and_check") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("badinterp");
    // There and executable, but exec says ENOENT: the glibc-dockerd-in-a-musl-image
    // case, made with a script whose interpreter does not exist.
    let dockerd = dir.join("dockerd");
    std::fs::write(&dockerd, "#!/nonexistent/interp\n").unwrap();
    std::fs::set_permissions(&dockerd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = config_with_dockerd_path(&dir, s(&dockerd));
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    assert_eq!(init.wait_code(SHORT), 1, "{}", init.describe());
    let err = init.stderr();
    assert!(
        err.contains("dockerd cannot be executed")
            && err.contains("/nonexistent/interp, which does not exist"),
        "{err}"
    );
    assert!(!err.contains("not found: install Docker"), "{err}");
    assert!(!err.contains("restarting in"), "no restart: {err}");
    // `check` says the same before anything starts.
    let out = Command::new(INIT)
        .args(["check", "--config", s(&config)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot be executed: its #! line names /nonexistent/interp"),
        "{text}"
    );
}

#[test]
fn missing_dockerd_fails_without_restarts_and_exits_1() {
    if !require_root("missing_dockerd_fails_without_restarts_and_exits_1") {
        return;
    }
    let dir = TempDir::new("nodockerd");
    let config = config_with_dockerd_path(&dir, "/nonexistent/dockerd");
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    assert_eq!(init.wait_code(SHORT), 1, "{}", init.describe());
    let err = init.stderr();
    assert!(
        err.contains("dockerd not found: install Docker in the image"),
        "{err}"
    );
    assert!(!err.contains("restarting in"), "no restart: {err}");

    // With COMMAND, the init stays, reports `failed`, and runs COMMAND anyway.
    let report_path = dir.join("cmd.report");
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .fake_command(&report_path, &["--fake-sleep-ms=600000"])
        .start();
    let v = wait_status(&dir, SHORT, |v| v["state"] == "failed");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("dockerd not found"),
        "{v}"
    );
    assert_eq!(v["dockerd"]["restarts"], 0, "{v}");
    assert_eq!(v["dockerd"]["pid"], serde_json::Value::Null, "{v}");
    // `failed` is final: a `wait` is answered at once, not after its 60 s (a
    // late answer fails the read, which gives up after 30 s).
    {
        use std::io::{Read, Write};
        let mut c = std::os::unix::net::UnixStream::connect(dir.join("init.sock")).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(b"wait 60s\n").unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        let w: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(w["state"], "failed", "{w}");
    }
    assert!(
        wait_event(&report_path, SHORT, |e| e["event"] == "start"),
        "COMMAND started anyway"
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 143, "{}", init.describe());
    assert!(
        init.stderr().contains("starting COMMAND anyway"),
        "{}",
        init.describe()
    );
}

#[test]
fn crashing_dockerd_is_restarted_with_growing_delays_then_failed() {
    if !require_root("crashing_dockerd_is_restarted_with_growing_delays_then_failed") {
        return;
    }
    let dir = TempDir::new("crash");
    let config = TestConfig {
        fake_args: vec!["--fake-exit-code=1".into()],
        dockerd: "backoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\nmax_restarts = 4".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    assert_eq!(init.wait_code(SHORT), 1, "{}", init.describe());
    let err = init.stderr();
    let delays = restart_delays(&err);
    assert_eq!(delays, ["50ms", "100ms", "200ms", "200ms"], "{err}");
    assert!(err.contains("gave up after 4 restarts within 5m"), "{err}");
    let starts = events(&report(&dir.join("dockerd.report")), "start").len();
    assert_eq!(starts, 5, "first start + 4 restarts");
}

#[test]
fn restart_policies_on_a_clean_exit() {
    if !require_root("restart_policies_on_a_clean_exit") {
        return;
    }
    for (policy, want_starts) in [("never", 1), ("on-failure", 1), ("always", 3)] {
        let dir = TempDir::new("policy");
        let config = TestConfig {
            fake_args: vec!["--fake-exit-code=0".into()],
            dockerd: format!(
                "restart = \"{policy}\"\nbackoff_initial = \"10ms\"\nmax_restarts = 2"
            ),
            ..Default::default()
        }
        .write(&dir);
        let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
        assert_eq!(init.wait_code(SHORT), 1, "{policy}: {}", init.describe());
        let starts = events(&report(&dir.join("dockerd.report")), "start").len();
        assert_eq!(starts, want_starts, "{policy}: {}", init.describe());
    }
}

#[test]
fn sigterm_stops_dockerd_with_one_term_then_kill_after_stop_timeout() {
    if !require_root("sigterm_stops_dockerd_with_one_term_then_kill_after_stop_timeout") {
        return;
    }
    // A dockerd that takes 300 ms to stop: one SIGTERM, a clean exit 0.
    let dir = TempDir::new("stop");
    let config = TestConfig::fake(&[
        "--fake-ready-after-ms=0",
        "--fake-trap=TERM",
        "--fake-exit-on=TERM",
        "--fake-term-delay-ms=300",
    ])
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let r = report(&dir.join("dockerd.report"));
    assert_eq!(events(&r, "signal").len(), 1, "exactly one SIGTERM: {r:?}");
    assert_eq!(events(&r, "exit").len(), 1, "{r:?}");
    assert!(!dir.join("ready").exists(), "ready file removed at exit");

    // A dockerd that ignores SIGTERM: SIGKILL at stop_timeout.
    let dir = TempDir::new("stopkill");
    let config = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            "--fake-ignore-term".into(),
        ],
        dockerd: "stop_timeout = \"1s\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let err = init.stderr();
    assert!(err.contains("signal=\"SIGKILL\""), "{err}");
}

#[test]
fn sighup_goes_to_dockerd() {
    if !require_root("sighup_goes_to_dockerd") {
        return;
    }
    let dir = TempDir::new("hup");
    let config = TestConfig::fake(&["--fake-ready-after-ms=0", "--fake-trap=HUP"]).write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    init.signal(Signal::SIGHUP);
    let hup = Signal::SIGHUP as i32;
    assert!(
        wait_event(&dir.join("dockerd.report"), SHORT, |e| e["event"]
            == "signal"
            && e["signal"] == hup),
        "{}",
        init.describe()
    );
    assert_eq!(status(&dir)["state"], "ready", "a reload is not a restart");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

#[test]
fn output_is_captured_line_by_line_with_a_tail() {
    if !require_root("output_is_captured_line_by_line_with_a_tail") {
        return;
    }
    let dir = TempDir::new("output");
    let config = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            "--fake-print-lines=300".into(),
            "--fake-print-long=100000".into(),
            "--fake-print-unterminated=last words".into(),
        ],
        dockerd: "log_tail = 50".into(),
        other: "[log]\nformat = \"json\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    wait_status(&dir, SHORT, |v| v["state"] == "ready");
    let v = wait_status(&dir, SHORT, |v| {
        v["log_tail"]
            .as_array()
            .is_some_and(|t| t.iter().any(|l| l == "stderr: line 300"))
    });
    let tail = v["log_tail"].as_array().unwrap();
    assert!(tail.len() <= 50, "tail capped at log_tail: {}", tail.len());
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let err = init.stderr();
    let dockerd_lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "dockerd")
        .collect();
    assert!(dockerd_lines
        .iter()
        .any(|v| v["fields"]["message"] == "line 1" && v["fields"]["stream"] == "stderr"));
    let long = dockerd_lines
        .iter()
        .find(|v| v["fields"]["stream"] == "stdout")
        .expect("the long stdout line");
    let len = long["fields"]["message"].as_str().unwrap().len();
    assert!((1024..100_000).contains(&len), "long line cut: {len}");
    assert!(
        dockerd_lines
            .iter()
            .any(|v| v["fields"]["message"] == "last words"),
        "unterminated line flushed at EOF"
    );
}

#[test]
fn startup_failure_is_diagnosed_in_the_reason() {
    if !require_root("startup_failure_is_diagnosed_in_the_reason") {
        return;
    }
    let dir = TempDir::new("diag");
    let line = "failed to start daemon: Devices cgroup isn't mounted";
    let config = TestConfig {
        fake_args: vec![
            format!("--fake-print-unterminated={line}"),
            "--fake-exit-code=1".into(),
        ],
        dockerd: "restart = \"never\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let report_path = dir.join("cmd.report");
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .fake_command(&report_path, &["--fake-sleep-ms=600000"])
        .start();
    let v = wait_status(&dir, SHORT, |v| v["state"] == "failed");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.to_lowercase().contains("devices"), "{reason}");
    assert_eq!(v["dockerd"]["last_exit"]["code"], 1, "{v}");
    assert!(
        v["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains(line)),
        "{v}"
    );
    // The error event of the exit carries the stderr tail.
    let err = init.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("dockerd exited") && l.contains("Devices cgroup")),
        "{err}"
    );
    init.signal(Signal::SIGTERM);
    init.wait(SHORT);
}

#[test]
fn stale_pid_files_are_removed_before_start() {
    if !require_root("stale_pid_files_are_removed_before_start") {
        return;
    }
    let dir = TempDir::new("stale");
    fs::write(dir.join("docker.pid"), "999999\n").unwrap();
    fs::write(dir.join("docker-old.pid"), "999998\n").unwrap();
    fs::create_dir_all(dir.join("exec/containerd")).unwrap();
    fs::write(dir.join("exec/containerd/containerd.pid"), "999997").unwrap();
    let mut init = Launch::new(&dir)
        .args(&["--", FAKE, "--fake-exit-code=0"])
        .start();
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    assert!(!dir.join("docker-old.pid").exists());
    assert!(!dir.join("exec/containerd/containerd.pid").exists());
    let removals = init.stderr().matches("removed a stale pid file").count();
    assert_eq!(removals, 3, "{}", init.describe());
}

#[test]
fn leftover_containerd_is_stopped_before_the_restart() {
    if !require_root("leftover_containerd_is_stopped_before_the_restart") {
        return;
    }
    let dir = TempDir::new("leftover");
    // A copy of the fake named `containerd`, so its comm matches.
    let containerd = dir.join("containerd");
    fs::copy(FAKE, &containerd).unwrap();
    let c_report = dir.join("containerd.report");
    let spawn = format!(
        "exec {} --fake-report={} --fake-trap=TERM --fake-exit-on=TERM --fake-term-delay-ms=200",
        s(&containerd),
        s(&c_report)
    );
    let config = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            format!("--fake-spawn={spawn}"),
        ],
        dockerd: "backoff_initial = \"10ms\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let v = wait_status(&dir, SHORT, |v| v["state"] == "ready");
    assert!(
        wait_event(&c_report, SHORT, |e| e["event"] == "start"),
        "{}",
        init.describe()
    );
    let first = v["dockerd"]["pid"].as_i64().unwrap();
    init.signal_dockerd(&v, Signal::SIGKILL);
    // containerd got SIGTERM and finished before the new dockerd started.
    let v = wait_status(&dir, SHORT, |v| {
        v["state"] == "ready" && v["dockerd"]["restarts"] == 1
    });
    let r = report(&c_report);
    assert!(
        events(&r, "signal").len() == 1 && !events(&r, "exit").is_empty(),
        "{r:?}"
    );
    assert!(
        init.stderr().contains("stopping it first"),
        "{}",
        init.describe()
    );
    assert_ne!(v["dockerd"]["pid"].as_i64().unwrap(), first);
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

#[test]
fn sigkill_of_dockerd_twenty_times_restarts_it_each_time() {
    if !require_root("sigkill_of_dockerd_twenty_times_restarts_it_each_time") {
        return;
    }
    let dir = TempDir::new("kill20");
    let config = TestConfig {
        fake_args: vec!["--fake-ready-after-ms=20".into()],
        dockerd: "backoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\nmax_restarts = 0".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let mut v = wait_status(&dir, SHORT, |v| v["state"] == "ready");
    let init_pid = init.init_pid();
    let mut first = None;
    for round in 1..=20 {
        init.signal_dockerd(&v, Signal::SIGKILL);
        v = wait_status(&dir, SHORT, |v| {
            v["state"] == "ready" && v["dockerd"]["restarts"] == round
        });
        assert_eq!(v["dockerd"]["last_exit"]["signal"], 9, "{v}");
        assert!(
            dir.join("ready").exists(),
            "ready file back after restart {round}"
        );
        if round == 5 {
            first = Some(fds_and_rss(init_pid));
        }
    }
    assert_no_growth(init_pid, first.unwrap());
    // No zombie in the namespace.
    let zombies = zombies_under(init_pid).len();
    assert_eq!(zombies, 0, "{}", init.describe());
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

#[test]
fn command_waits_for_ready() {
    if !require_root("command_waits_for_ready") {
        return;
    }
    let dir = TempDir::new("gate");
    // dockerd and COMMAND write one report, so its order is the order of events.
    let shared = dir.join("dockerd.report");
    let config = TestConfig::fake(&["--fake-ready-after-ms=400"]).write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .fake_command(&shared, &["--fake-exit-code=5"])
        .start();
    assert_eq!(init.wait_code(SHORT), 5, "{}", init.describe());
    let r = report(&shared);
    let kinds: Vec<&str> = r.iter().map(|e| e["event"].as_str().unwrap()).collect();
    let ready = kinds
        .iter()
        .position(|k| *k == "ready")
        .expect("dockerd ready");
    let starts: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == "start")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 2, "{kinds:?}");
    assert!(
        starts[1] > ready,
        "COMMAND started after dockerd was ready: {kinds:?}"
    );
}

#[test]
fn command_starts_after_ready_timeout_with_a_warning() {
    if !require_root("command_starts_after_ready_timeout_with_a_warning") {
        return;
    }
    let dir = TempDir::new("gatetimeout");
    let config = TestConfig {
        fake_args: vec!["--fake-sleep-ms=600000".into()],
        other: "[command]\nready_timeout = \"300ms\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", FAKE, "--fake-exit-code=3"])
        .start();
    assert_eq!(init.wait_code(SHORT), 3, "{}", init.describe());
    assert!(
        init.stderr().contains("starting COMMAND anyway"),
        "{}",
        init.describe()
    );
    let _ = LONG;
}

#[test]
fn command_starts_at_once_without_wait_for_ready() {
    if !require_root("command_starts_at_once_without_wait_for_ready") {
        return;
    }
    let dir = TempDir::new("nogate");
    let config = TestConfig {
        fake_args: vec!["--fake-sleep-ms=600000".into()],
        other: "[command]\nwait_for_ready = false".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", FAKE, "--fake-exit-code=4"])
        .start();
    assert_eq!(init.wait_code(SHORT), 4, "{}", init.describe());
    assert!(
        !init.stderr().contains("starting COMMAND anyway"),
        "{}",
        init.describe()
    );
}

#[test]
fn only_startup_failures_are_diagnosed() {
    if !require_root("only_startup_failures_are_diagnosed") {
        return;
    }
    let dir = TempDir::new("diagready");
    // A start-up complaint dockerd survives (gVisor's overlay probe), then ready.
    let line = "time=\"x\" level=error msg=\"failed to mount overlay: invalid argument\" storage-driver=overlay2\n";
    let config = TestConfig {
        fake_args: vec![
            format!("--fake-print-unterminated={line}"),
            "--fake-ready-after-ms=0".into(),
        ],
        // Long enough that the test always sees `restarting`; SIGTERM ends it.
        dockerd: "backoff_initial = \"60s\"\nbackoff_max = \"60s\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let v = wait_status(&dir, SHORT, |v| v["state"] == "ready");
    init.signal_dockerd(&v, Signal::SIGKILL);
    let v = wait_status(&dir, SHORT, |v| v["state"] == "restarting");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("dockerd exited (signal SIGKILL)"),
        "{reason}"
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

#[test]
fn known_limits_in_running_output_become_status_warnings() {
    if !require_root("known_limits_in_running_output_become_status_warnings") {
        return;
    }
    let dir = TempDir::new("limits");
    // dockerd is ready, then (as on a failed `docker run`) logs runc's refusal, twice.
    let line = r#"level=error msg="Handler for POST /v1.51/containers/x/start returned error: OCI runtime create failed: runc create failed: unsafe procfs detected: incorrect procfs root inode number 86: unknown""#;
    let print = format!("sleep 0.3; echo '{line}' >&2; echo '{line}' >&2");
    let config = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            format!("--fake-spawn={print}"),
        ],
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let v = wait_status(&dir, SHORT, |v| {
        v["state"] == "ready"
            && v["dockerd"]["warnings"]
                .as_array()
                .is_some_and(|w| !w.is_empty())
    });
    let warnings = v["dockerd"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "once per run: {v}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("unsafe procfs") && w.contains("use runc older than 1.2.8"),
        "{w}"
    );
    // The human table shows it too.
    let table = Command::new(INIT)
        .args(["status", "--socket", s(&dir.join("init.sock"))])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("warning:     containers cannot start"),
        "{table}"
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let err = init.stderr();
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("runc refuses gVisor's /proc"))
            .count(),
        1,
        "logged once: {err}"
    );
}
