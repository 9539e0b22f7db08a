//! The PID 1 core on the real binary (SPEC §6, §9): reaping, exit codes, signal
//! forwarding, the three-stage shutdown, bad configs, subreaper mode, closed and
//! full stdio. Each test runs the init as PID 1 of its own pid + mount namespace.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const LONG: Duration = Duration::from_secs(120);
const SHORT: Duration = Duration::from_secs(30);

#[test]
fn reaps_twenty_thousand_orphans() {
    if !require_root("reaps_twenty_thousand_orphans") {
        return;
    }
    let dir = TempDir::new("orphans");
    let report_path = dir.join("report");
    let mut init = Launch::new(&dir)
        .fake_command(
            &report_path,
            &["--fake-orphans=20000", "--fake-wait-no-zombies=60"],
        )
        .start();
    let code = init.wait_code(LONG);
    assert_eq!(
        code,
        0,
        "COMMAND saw zombies left over\n{}",
        init.describe()
    );
    let r = report(&report_path);
    assert_eq!(events(&r, "orphans")[0]["count"], 20000, "{r:?}");
    assert_eq!(events(&r, "zombies")[0]["count"], 0, "{r:?}");
}

#[test]
fn exit_codes_pass_through_unchanged() {
    if !require_root("exit_codes_pass_through_unchanged") {
        return;
    }
    let dir = TempDir::new("codes");
    for code in 0..=255 {
        let mut init = Launch::new(&dir)
            .args(&["--", FAKE, &format!("--fake-exit-code={code}")])
            .start();
        let got = init.wait_code(SHORT);
        assert_eq!(got, code, "{}", init.describe());
    }
}

#[test]
fn command_killed_by_signal_gives_128_plus_n() {
    if !require_root("command_killed_by_signal_gives_128_plus_n") {
        return;
    }
    let dir = TempDir::new("sigcodes");
    for (sig, code) in [("TERM", 143), ("KILL", 137), ("INT", 130)] {
        let mut init = Launch::new(&dir)
            .args(&[
                "--",
                FAKE,
                &format!("--fake-die-by={sig}"),
                "--fake-exit-after-ms=0",
            ])
            .start();
        let got = init.wait_code(SHORT);
        assert_eq!(got, code, "SIG{sig}\n{}", init.describe());
    }
}

#[test]
fn missing_command_exits_127() {
    if !require_root("missing_command_exits_127") {
        return;
    }
    let dir = TempDir::new("nocmd");
    let mut init = Launch::new(&dir)
        .args(&["--", "/nonexistent/program"])
        .start();
    assert_eq!(init.wait_code(SHORT), 127, "{}", init.describe());
    let err = init.stderr();
    assert!(err.contains("/nonexistent/program"), "{}", init.describe());
    // Found out before anything is started, not once dockerd is ready.
    assert!(err.contains("nothing was started"), "{}", init.describe());
    assert!(!err.contains("started dockerd"), "{}", init.describe());
    // A mistyped subcommand is a COMMAND that does not exist, with a hint.
    let mut init = Launch::new(&dir).args(&["stauts"]).start();
    assert_eq!(init.wait_code(SHORT), 127, "{}", init.describe());
    assert!(
        init.stderr().contains("did you mean `dind-init status`?"),
        "{}",
        init.describe()
    );
}

#[test]
fn forwarded_signals_reach_command() {
    if !require_root("forwarded_signals_reach_command") {
        return;
    }
    let dir = TempDir::new("forward");
    let report_path = dir.join("report");
    let forwarded = [
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ];
    let mut init = Launch::new(&dir)
        .fake_command(
            &report_path,
            &[
                "--fake-trap=USR1,USR2,WINCH,CONT,TSTP,TTIN,TTOU",
                "--fake-sleep-ms=600000",
            ],
        )
        .start();
    assert!(
        wait_event(&report_path, SHORT, |e| e["event"] == "start"),
        "COMMAND did not start\n{}",
        init.describe()
    );
    for sig in forwarded {
        init.signal(sig);
        let signo = sig as i32;
        assert!(
            wait_event(&report_path, SHORT, |e| e["event"] == "signal"
                && e["signal"] == signo),
            "{sig} did not reach COMMAND\n{}",
            init.describe()
        );
    }
    // The init itself must still be running: none of these stops or ends it.
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 143, "{}", init.describe());
}

#[test]
fn command_starts_clean() {
    if !require_root("command_starts_clean") {
        return;
    }
    let dir = TempDir::new("clean");
    let report_path = dir.join("report");
    let mut init = Launch::new(&dir)
        .env("NOTIFY_SOCKET", "/run/should-not-pass")
        .fake_command(&report_path, &[])
        .start();
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let r = report(&report_path);
    let start = events(&r, "start")[0];
    assert_eq!(start["blocked"], serde_json::json!([]), "{start}");
    assert_eq!(start["ignored"], serde_json::json!([]), "{start}");
    assert_eq!(start["pgid"], start["pid"], "own process group: {start}");
    assert_eq!(start["ppid"], 1, "child of the init: {start}");
    assert!(start["env"].get("NOTIFY_SOCKET").is_none(), "{start}");
}

#[test]
fn command_gets_the_terminal() {
    if !require_root("command_gets_the_terminal") {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to give the init a terminal");
    }
    let dir = TempDir::new("tty");
    let report_path = dir.join("report");
    // script(1) runs the init on a new pseudo-terminal that is its controlling tty.
    let inner = format!(
        "unshare --pid --fork --mount --mount-proc {INIT} --config {} -- {FAKE} --fake-report={}",
        s(&base_config(&dir)),
        s(&report_path)
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let r = report(&report_path);
    let start = events(&r, "start")[0];
    assert_eq!(
        start["tty_fg"], start["pgid"],
        "COMMAND's group is in the foreground: {start}"
    );
}

#[test]
fn sigterm_lets_a_trapping_grandchild_finish() {
    if !require_root("sigterm_lets_a_trapping_grandchild_finish") {
        return;
    }
    let dir = TempDir::new("trap");
    let report_path = dir.join("report");
    let grandchild = format!(
        "exec {FAKE} --fake-setsid --fake-report={} --fake-trap=TERM --fake-exit-on=TERM --fake-term-delay-ms=700 --fake-exit-code=0",
        s(&report_path)
    );
    let mut init = Launch::new(&dir)
        .args(&[
            "--",
            FAKE,
            &format!("--fake-spawn={grandchild}"),
            "--fake-sleep-ms=600000",
        ])
        .start();
    // The grandchild is in a session of its own: only the init's stage 2 reaches it.
    assert!(
        wait_event(&report_path, SHORT, |e| e["event"] == "start"),
        "grandchild did not start\n{}",
        init.describe()
    );
    init.signal(Signal::SIGTERM);
    let code = init.wait_code(SHORT);
    assert_eq!(code, 143, "COMMAND died of SIGTERM\n{}", init.describe());
    let r = report(&report_path);
    assert_eq!(
        events(&r, "signal").len(),
        1,
        "grandchild got SIGTERM once: {r:?}"
    );
    assert_eq!(
        events(&r, "exit").len(),
        1,
        "grandchild finished its trap before the init exited: {r:?}"
    );
}

#[test]
fn command_ignoring_sigterm_is_killed_after_the_grace() {
    if !require_root("command_ignoring_sigterm_is_killed_after_the_grace") {
        return;
    }
    let dir = TempDir::new("ignore");
    let report_path = dir.join("report");
    let config = TestConfig {
        dockerd: "stop_timeout = \"1s\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .fake_command(
            &report_path,
            &["--fake-ignore-term", "--fake-sleep-ms=600000"],
        )
        .start();
    assert!(
        wait_event(&report_path, SHORT, |e| e["event"] == "start"),
        "{}",
        init.describe()
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 137, "{}", init.describe());
    assert!(init.stderr().contains("SIGKILL"), "{}", init.describe());
}

#[test]
fn bad_configs_exit_2_and_start_nothing() {
    if !require_root("bad_configs_exit_2_and_start_nothing") {
        return;
    }
    // (config text, what stderr must name: the key and line:column)
    let cases: &[(&str, &[&str])] = &[
        ("[log]\nlevle = \"info\"\n", &["levle", ":2:1"]),
        (
            "[dockerd]\nmax_restarts = \"ten\"\n",
            &["max_restarts", ":2:"],
        ),
        (
            "[dockerd]\nstop_timeout = \"8\"\n",
            &["stop_timeout", ":2:"],
        ),
        (
            "[readiness]\ninterval = \"5 parsecs\"\n",
            &["interval", ":2:"],
        ),
        ("[bogus]\nx = 1\n", &["bogus", ":1:"]),
        ("[log]\nlevel = \"loud\"\n", &["level", ":2:"]),
    ];
    for (text, wants) in cases {
        let dir = TempDir::new("badcfg");
        let report_path = dir.join("report");
        let config = dir.config(text);
        let mut init = Launch::new(&dir)
            .args(&["--config", s(&config)])
            .fake_command(&report_path, &[])
            .start();
        assert_eq!(
            init.wait_code(SHORT),
            2,
            "config {text:?}\n{}",
            init.describe()
        );
        let err = init.stderr();
        for want in *wants {
            assert!(
                err.contains(want),
                "config {text:?}: stderr lacks {want:?}\n{}",
                init.describe()
            );
        }
        assert!(
            !report_path.exists(),
            "COMMAND was started despite a bad config"
        );
    }
    // A missing file named with --config, and with DIND_INIT_CONFIG.
    let dir = TempDir::new("nocfg");
    let missing = dir.join("missing.toml");
    let report_path = dir.join("report");
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&missing)])
        .fake_command(&report_path, &[])
        .start();
    assert_eq!(init.wait_code(SHORT), 2, "{}", init.describe());
    assert!(
        init.stderr().contains("missing.toml"),
        "{}",
        init.describe()
    );
    let mut init = Launch::new(&dir)
        .without_config()
        .env("DIND_INIT_CONFIG", s(&missing))
        .fake_command(&report_path, &[])
        .start();
    assert_eq!(init.wait_code(SHORT), 2, "{}", init.describe());
    assert!(
        !report_path.exists(),
        "COMMAND was started despite a missing config"
    );
}

#[test]
fn unknown_option_is_a_usage_error() {
    let out = Command::new(INIT)
        .args(["--storage-driver=vfs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--storage-driver=vfs"),
        "{out:?}"
    );
}

#[test]
fn check_validates_the_config() {
    let dir = TempDir::new("check");
    let good = dir.config("[log]\nlevel = \"debug\"\n");
    let out = Command::new(INIT)
        .args(["check", "--config", s(&good)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    fs::write(&good, "[log]\nlevel = 3\n").unwrap();
    let out = Command::new(INIT)
        .args(["check", "--config", s(&good)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("level"),
        "{out:?}"
    );
}

#[test]
fn reaps_orphans_as_a_subreaper_when_not_pid1() {
    if !require_root("reaps_orphans_as_a_subreaper_when_not_pid1") {
        return;
    }
    let dir = TempDir::new("subreaper");
    let report_path = dir.join("report");
    let stderr_path = dir.join("init.stderr");
    // A small shell is PID 1 and does not reap; the init is its child.
    let config = base_config(&dir);
    let script = format!(
        "{INIT} --config {} -- {FAKE} --fake-report={} --fake-orphans=2000 --fake-wait-no-zombies=30 2>{}; echo \"init=$?\"",
        s(&config),
        s(&report_path),
        s(&stderr_path)
    );
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let init_err = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(stdout.contains("init=0"), "{out:?}\n{init_err}");
    assert!(init_err.contains("subreaper"), "{init_err}");
    let r = report(&report_path);
    assert_eq!(events(&r, "zombies")[0]["count"], 0, "{r:?}");
    assert_ne!(
        events(&r, "start")[0]["ppid"],
        1,
        "the init was not PID 1: {r:?}"
    );
}

#[test]
fn subreaper_shutdown_spares_processes_that_are_not_descendants() {
    if !require_root("subreaper_shutdown_spares_processes_that_are_not_descendants") {
        return;
    }
    let dir = TempDir::new("spare");
    let report_path = dir.join("report");
    // PID 1 is a shell with a sibling of the init (a sleeping fake); the init is
    // told to stop and must signal only its own descendants.
    let inner_report = dir.join("inner");
    let stderr_path = dir.join("init.stderr");
    let script = format!(
        "{FAKE} --fake-report={r} --fake-trap=TERM --fake-sleep-ms=3000 & \
         {INIT} --config {c} -- {FAKE} --fake-report={ir} --fake-sleep-ms=600000 2>{e} & init=$!; \
         while [ ! -s {ir} ]; do sleep 0.05; done; \
         kill -TERM $init; wait $init; echo \"init=$?\"; wait",
        r = s(&report_path),
        ir = s(&inner_report),
        e = s(&stderr_path),
        c = s(&base_config(&dir)),
    );
    let out = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let init_err = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("init=143"),
        "{out:?}\n{init_err}"
    );
    assert!(init_err.contains("shutdown requested"), "{init_err}");
    assert!(init_err.contains("exiting"), "{init_err}");
    let r = report(&report_path);
    assert!(
        events(&r, "signal").is_empty(),
        "a non-descendant got a signal: {r:?}"
    );
}

#[test]
fn runs_with_stdout_and_stderr_closed() {
    if !require_root("runs_with_stdout_and_stderr_closed") {
        return;
    }
    let dir = TempDir::new("closed");
    let script = format!(
        "exec unshare --pid --fork --mount --mount-proc {INIT} --config {} -- {FAKE} --fake-print-lines=50 --fake-orphans=100 --fake-exit-code=7 >&- 2>&-",
        s(&base_config(&dir))
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

#[test]
fn a_full_stderr_never_blocks_the_init() {
    if !require_root("a_full_stderr_never_blocks_the_init") {
        return;
    }
    let dir = TempDir::new("fullerr");
    let config = TestConfig {
        other: "[log]\nlevel = \"debug\"".into(),
        ..Default::default()
    }
    .write(&dir);
    // A pipe whose read end stays open but is never read: after 64 KiB it is full.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let mut child = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--mount",
            "--mount-proc",
            INIT,
            "--config",
            s(&config),
            "--",
        ])
        .args([
            FAKE,
            "--fake-orphans=3000",
            "--fake-wait-no-zombies=60",
            "--fake-exit-code=0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write_end))
        .spawn()
        .unwrap();
    let ok = wait_until(LONG, || child.try_wait().unwrap().is_some());
    if !ok {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let _ = read_end.as_raw_fd();
    drop(read_end);
    assert!(ok, "the init blocked on a full stderr");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn sigint_and_sigquit_stop_the_init_like_sigterm() {
    if !require_root("sigint_and_sigquit_stop_the_init_like_sigterm") {
        return;
    }
    let dir = TempDir::new("intquit");
    for (sig, code) in [(Signal::SIGINT, 130), (Signal::SIGQUIT, 131)] {
        let report_path = dir.join(&format!("report-{}", sig.as_str()));
        let mut init = Launch::new(&dir)
            .fake_command(&report_path, &["--fake-sleep-ms=600000"])
            .start();
        assert!(
            wait_event(&report_path, SHORT, |e| e["event"] == "start"),
            "COMMAND did not start\n{}",
            init.describe()
        );
        init.signal(sig);
        // COMMAND's group got the same signal and died of it; the init stopped
        // dockerd and exited with 128+N.
        assert_eq!(init.wait_code(SHORT), code, "{sig}\n{}", init.describe());
        assert!(
            init.stderr().contains("shutdown requested"),
            "{}",
            init.describe()
        );
    }
}
