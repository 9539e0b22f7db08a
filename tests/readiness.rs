//! Readiness on the real binary with the fake dockerd (SPEC §8): the status
//! socket protocol and its limits, `wait`, the ready file, probe and status,
//! health pings, and sd_notify upward.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SHORT: Duration = Duration::from_secs(30);

/// Sends `request` and reads everything until the server closes.
fn exchange(socket: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(SHORT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The status, once it says ready.
fn wait_ready(socket: &Path) -> serde_json::Value {
    wait_status_at(socket, SHORT, |v| v["state"] == "ready")
}

/// Starts an init whose fake dockerd is ready after `ready_ms` (None: never).
fn start(dir: &TempDir, ready_ms: Option<u64>, extra: TestConfig) -> InitUnderTest {
    let mut cfg = extra;
    cfg.fake_args = match ready_ms {
        Some(ms) => vec![format!("--fake-ready-after-ms={ms}")],
        None => vec!["--fake-sleep-ms=600000".to_owned()],
    };
    let config = cfg.write(dir);
    let init = Launch::new(dir).args(&["--config", s(&config)]).start();
    let sock = dir.join("init.sock");
    assert!(
        wait_until(SHORT, || UnixStream::connect(&sock).is_ok()),
        "no status socket\n{}",
        init.describe()
    );
    init
}

fn stop(mut init: InitUnderTest) {
    init.signal(Signal::SIGTERM);
    let code = init.wait_code(SHORT);
    assert_eq!(code, 0, "{}", init.describe());
}

#[test]
fn every_request_form_and_error() {
    if !require_root("every_request_form_and_error") {
        return;
    }
    let dir = TempDir::new("forms");
    let init = start(&dir, None, TestConfig::default());
    let sock = dir.join("init.sock");
    // Not ready yet.
    let v: serde_json::Value = serde_json::from_str(&exchange(&sock, b"status\n")).unwrap();
    assert_eq!(v["state"], "starting");
    assert!(
        v["log_tail"].is_array(),
        "status over the socket has the log tail: {v}"
    );
    assert!(v["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["environment"]["pid1"], true);
    let v: serde_json::Value = serde_json::from_str(&exchange(&sock, b"\n")).unwrap();
    assert_eq!(v["state"], "starting", "an empty line is `status`");
    let v: serde_json::Value = serde_json::from_str(&exchange(&sock, b"wait 100ms\n")).unwrap();
    assert_eq!(v["state"], "starting", "wait ends with the duration");
    let cases: &[(&[u8], &str)] = &[
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 503 "),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 "),
        (b"GET /status HTTP/1.0\r\n\r\n", "HTTP/1.1 200 "),
        (b"GET /nope HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
        (
            b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405 ",
        ),
        (b"DELETE /status HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "),
        (b"hello\n", "error: "),
        (b"wait 5\n", "error: wait: "),
        (b"wait 1s 2s\n", "error: "),
        (b"status extra\n", "error: "),
    ];
    for (request, want) in cases {
        let answer = exchange(&sock, request);
        assert!(
            answer.starts_with(want),
            "{:?} -> {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    let body = exchange(&sock, b"GET /readyz HTTP/1.1\r\n\r\n");
    assert!(body.ends_with("starting\n"), "503 says the state: {body:?}");
    // A request without a line end, then EOF, is still a request.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(b"status").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("{\"state\":\"starting\""), "{out:?}");
    stop(init);
}

#[test]
fn ready_answers() {
    if !require_root("ready_answers") {
        return;
    }
    let dir = TempDir::new("readyans");
    let init = start(&dir, Some(0), TestConfig::default());
    let sock = dir.join("init.sock");
    wait_ready(&sock);
    assert!(exchange(&sock, b"GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
    let status = exchange(&sock, b"GET /status HTTP/1.1\r\n\r\n");
    let json = status.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
    assert_eq!(v["state"], "ready");
    // The ready file holds the status JSON, without log lines.
    let file: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("ready")).unwrap()).unwrap();
    assert_eq!(file["state"], "ready");
    assert!(file.get("log_tail").is_none(), "{file}");
    stop(init);
    assert!(!dir.join("ready").exists(), "removed at exit");
    assert!(!dir.join("init.sock").exists(), "socket removed at exit");
}

#[test]
fn long_lines_and_silent_clients() {
    if !require_root("long_lines_and_silent_clients") {
        return;
    }
    let dir = TempDir::new("limits");
    let init = start(&dir, Some(0), TestConfig::default());
    let sock = dir.join("init.sock");
    wait_ready(&sock);
    // A 2 KiB line.
    let mut long = vec![b'a'; 2048];
    long.push(b'\n');
    let answer = exchange(&sock, &long);
    assert!(
        answer.starts_with("error: request longer than 1024 bytes"),
        "{answer:?}"
    );
    // A silent client does not delay another client's answer: the other one
    // is answered while the silent one is still open. The server drops a
    // silent client 1 s after accepting it, so only a round that took less
    // than half of that is judged (a stalled machine just tries again; a
    // server that waited for the silent client never finishes one in time).
    let mut buf = [0u8; 16];
    let mut judged = None;
    for _ in 0..10 {
        let began = Instant::now();
        let silent = UnixStream::connect(&sock).unwrap();
        let v = status_at(&sock);
        assert_eq!(v["state"], "ready");
        silent.set_nonblocking(true).unwrap();
        let open = matches!((&silent).read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
        if began.elapsed() < Duration::from_millis(500) {
            judged = Some((open, silent));
            break;
        }
    }
    let Some((still_open, mut silent)) = judged else {
        panic!("no round of connect + status within 500 ms in 10 tries");
    };
    assert!(
        still_open,
        "the other client was answered while the silent one was still open"
    );
    // ...and is itself dropped after its deadline.
    silent.set_nonblocking(false).unwrap();
    silent.set_read_timeout(Some(SHORT)).unwrap();
    assert_eq!(
        silent.read(&mut buf).unwrap(),
        0,
        "silent client closed by the server"
    );
    stop(init);
}

#[test]
fn socket_mode_is_applied() {
    if !require_root("socket_mode_is_applied") {
        return;
    }
    for (mode, want) in [
        ("", 0o660),
        ("socket_mode = \"0600\"", 0o600),
        ("socket_mode = \"0666\"", 0o666),
    ] {
        let dir = TempDir::new("mode");
        let init = start(
            &dir,
            Some(0),
            TestConfig {
                readiness: mode.into(),
                ..Default::default()
            },
        );
        let meta = fs::metadata(dir.join("init.sock")).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, want, "{mode:?}");
        stop(init);
    }
}

#[test]
fn a_thousand_clients_while_five_thousand_orphans_are_reaped() {
    if !require_root("a_thousand_clients_while_five_thousand_orphans_are_reaped") {
        return;
    }
    let dir = TempDir::new("burst");
    let config = TestConfig::default().write(&dir);
    let cmd_report = dir.join("cmd.report");
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .fake_command(
            &cmd_report,
            &["--fake-orphans=5000", "--fake-wait-no-zombies=60"],
        )
        .start();
    let sock = dir.join("init.sock");
    wait_ready(&sock);
    // 50 clients at a time (below the 64-connection limit), 1,000 in all.
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                for _ in 0..20 {
                    let mut s = UnixStream::connect(&sock).unwrap();
                    s.set_read_timeout(Some(SHORT)).unwrap();
                    s.write_all(b"status\n").unwrap();
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line).unwrap();
                    if line.starts_with("{\"state\"") {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let answered: i32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 1000);
    assert_eq!(
        init.wait_code(SHORT),
        0,
        "COMMAND saw no zombie left\n{}",
        init.describe()
    );
    let r = report(&cmd_report);
    assert_eq!(events(&r, "orphans")[0]["count"], 5000, "{r:?}");
    assert_eq!(events(&r, "zombies")[0]["count"], 0, "{r:?}");
}

#[test]
fn a_full_table_makes_room_for_requests_by_closing_silent_clients() {
    if !require_root("a_full_table_makes_room_for_requests_by_closing_silent_clients") {
        return;
    }
    let dir = TempDir::new("maxconn");
    let init = start(&dir, None, TestConfig::default());
    let sock = dir.join("init.sock");
    // MAX_WAITS (56) parked waits. The init reads requests in connection
    // order, so each of these is parked before the next request is read.
    let waits: Vec<UnixStream> = (0..56)
        .map(|_| {
            let mut s = UnixStream::connect(&sock).unwrap();
            s.write_all(b"wait 30s\n").unwrap();
            s
        })
        .collect();
    // A 57th wait is refused with an error line: room is kept for status.
    let refused = exchange(&sock, b"wait 30s\n");
    assert!(
        refused.starts_with("error: too many pending waits"),
        "{refused}"
    );
    // 8 silent clients fill the 64 slots; each new request takes the place of the
    // oldest silent one, which is closed (EOF) without an answer. Only a round done
    // well within their 1 s deadline is judged.
    let judged = (0..5).find_map(|_| {
        let began = Instant::now();
        let mut silent: Vec<UnixStream> = (0..8)
            .map(|_| UnixStream::connect(&sock).unwrap())
            .collect();
        let answered = status_after_limit(&sock).is_some();
        let judged = began.elapsed() < Duration::from_millis(500);
        let first = &mut silent[0];
        first.set_read_timeout(Some(SHORT)).unwrap();
        let mut buf = [0u8; 16];
        let evicted = first.read(&mut buf).map(|n| n == 0).unwrap_or(true);
        judged.then_some((answered, evicted))
    });
    assert_eq!(
        judged,
        Some((true, true)),
        "a request is answered; the oldest silent client makes room"
    );
    drop(waits);
    stop(init);
}

/// Asks for status; None when the server closed the connection unanswered.
fn status_after_limit(sock: &Path) -> Option<String> {
    let mut s = UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(SHORT)).unwrap();
    let _ = s.write_all(b"status\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (!out.is_empty()).then_some(out)
}

#[test]
fn wait_returns_the_moment_dockerd_turns_ready() {
    if !require_root("wait_returns_the_moment_dockerd_turns_ready") {
        return;
    }
    let dir = TempDir::new("wait");
    let init = start(&dir, Some(700), TestConfig::default());
    let sock = dir.join("init.sock");
    let started = Instant::now();
    let v: serde_json::Value = serde_json::from_str(&exchange(&sock, b"wait 60s\n")).unwrap();
    assert_eq!(v["state"], "ready", "{v}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it did not wait out the duration"
    );
    let r = report(&dir.join("dockerd.report"));
    assert_eq!(events(&r, "ready").len(), 1, "the fake turned ready: {r:?}");
    stop(init);
}

#[test]
fn ready_file_never_exists_while_not_ready_across_restarts() {
    if !require_root("ready_file_never_exists_while_not_ready_across_restarts") {
        return;
    }
    let dir = TempDir::new("readyfile");
    let init = start(
        &dir,
        Some(150),
        TestConfig {
            dockerd: "backoff_initial = \"150ms\"\nbackoff_max = \"150ms\"".into(),
            ..Default::default()
        },
    );
    let sock = dir.join("init.sock");
    let file = dir.join("ready");
    let mut checks = 0u64;
    for round in 0..5u64 {
        let v = wait_ready(&sock);
        assert_eq!(v["dockerd"]["restarts"], round);
        assert!(file.exists(), "ready and no file");
        init.signal_dockerd(&v, Signal::SIGKILL);
        // Until it is ready again: whenever two answers around a look at the file
        // both say "not ready" within one restart, the file must be absent.
        loop {
            let before = status_at(&sock);
            let exists = file.exists();
            let after = status_at(&sock);
            checks += 1;
            let same_episode = before["dockerd"]["restarts"] == after["dockerd"]["restarts"];
            if before["state"] != "ready" && after["state"] != "ready" && same_episode {
                assert!(!exists, "ready file present while {before} / {after}");
            }
            if after["state"] == "ready" && after["dockerd"]["restarts"] == round + 1 {
                break;
            }
        }
    }
    assert!(checks > 20, "the loop looked often: {checks}");
    stop(init);
}

#[test]
fn probe_and_status_commands() {
    if !require_root("probe_and_status_commands") {
        return;
    }
    let dir = TempDir::new("probe");
    let sock = dir.join("init.sock");
    let probe = |args: &[&str]| {
        let out = Command::new(INIT)
            .arg("probe")
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No init at all: at once without --wait, at the end of the wait with it.
    let (code, err) = probe(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    let (code, err) = probe(&["--wait", "300ms"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("until the wait ran out"), "{err}");
    // A dockerd that never turns ready: not ready, and a short wait runs out.
    let never = start(&dir, None, TestConfig::default());
    let (code, err) = probe(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not ready: dockerd is starting"), "{err}");
    let (code, err) = probe(&["--wait", "100ms"]);
    assert_eq!(code, Some(1), "{err}");
    stop(never);
    // A probe that starts before the init (`docker run -d ... && docker exec ...
    // probe --wait`): it waits for the socket, then for dockerd.
    let mut early = Command::new(INIT)
        .arg("probe")
        .arg("--socket")
        .arg(&sock)
        .args(["--wait", "30s"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // It is waiting (not gone with "cannot connect"), and there is no socket yet.
    assert!(
        early.try_wait().unwrap().is_none(),
        "the early probe did not wait"
    );
    assert!(!sock.exists());
    let init = start(&dir, Some(800), TestConfig::default());
    let out = early.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One that turns ready while the probe waits.
    let (code, err) = probe(&["--wait", "30s"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _) = probe(&[]);
    assert_eq!(code, Some(0));
    let out = Command::new(INIT)
        .args(["status", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("state:       ready"),
        "{text}"
    );
    assert!(text.contains("dockerd:     pid "), "{text}");
    let out = Command::new(INIT)
        .args(["status", "--json", "--socket"])
        .arg(&sock)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "ready");
    // Without --socket, probe and status use the socket the config names (the
    // config found as the init finds it: $DIND_INIT_CONFIG here).
    let config = dir.join("init.toml");
    let out = Command::new(INIT)
        .arg("probe")
        .env("DIND_INIT_CONFIG", &config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(INIT)
        .args(["status", "--json"])
        .env("DIND_INIT_CONFIG", &config)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["state"], "ready");
    // An invalid config is named, not hidden behind the built-in socket path's
    // "is dind-init running?": probe says it and exits 1 (never 2), status exits 2.
    let bad = dir.join("bad.toml");
    fs::write(&bad, "[nope]\n").unwrap();
    for (command, want) in [("probe", 1), ("status", 2)] {
        let out = Command::new(INIT)
            .arg(command)
            .env("DIND_INIT_CONFIG", &bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{command}: {err}");
        assert!(
            err.contains("bad.toml") && err.contains("nope") && err.contains("--socket PATH"),
            "{command}: {err}"
        );
    }
    stop(init);
}

#[test]
fn health_pings_make_it_unhealthy_and_ready_again() {
    if !require_root("health_pings_make_it_unhealthy_and_ready_again") {
        return;
    }
    let dir = TempDir::new("health");
    let init = start(
        &dir,
        Some(0),
        TestConfig {
            // A frozen dockerd misses two 1 s pings; a busy machine's slow
            // answers do not (a 100 ms timeout could flip it on its own).
            readiness: "interval = \"100ms\"\ntimeout = \"1s\"\nfailure_threshold = 2".into(),
            ..Default::default()
        },
    );
    let sock = dir.join("init.sock");
    let v = wait_ready(&sock);
    // A frozen dockerd answers nothing.
    let host = init.signal_dockerd(&v, Signal::SIGSTOP);
    assert!(
        wait_until(SHORT, || status_at(&sock)["state"] == "unhealthy"),
        "{}",
        init.describe()
    );
    assert!(!dir.join("ready").exists(), "no ready file while unhealthy");
    assert!(exchange(&sock, b"GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503 "));
    kill(Pid::from_raw(host), Signal::SIGCONT).unwrap();
    let v = wait_ready(&sock);
    assert_eq!(v["dockerd"]["restarts"], 0, "recovered without a restart");
    assert!(dir.join("ready").exists());
    stop(init);
}

#[test]
fn unhealthy_dockerd_is_restarted_when_configured() {
    if !require_root("unhealthy_dockerd_is_restarted_when_configured") {
        return;
    }
    let dir = TempDir::new("healthrestart");
    let init = start(
        &dir,
        Some(0),
        TestConfig {
            readiness: "interval = \"100ms\"\ntimeout = \"1s\"\nfailure_threshold = 2\nrestart_on_unhealthy = true"
                .into(),
            dockerd: "stop_timeout = \"1s\"\nbackoff_initial = \"10ms\"".into(),
            ..Default::default()
        },
    );
    let sock = dir.join("init.sock");
    let v = wait_ready(&sock);
    init.signal_dockerd(&v, Signal::SIGSTOP);
    assert!(
        wait_until(SHORT, || {
            let v = status_at(&sock);
            v["state"] == "ready" && v["dockerd"]["restarts"].as_u64() >= Some(1)
        }),
        "{}",
        init.describe()
    );
    stop(init);
}

#[test]
fn no_wakeups_when_idle_with_pings_off() {
    if !require_root("no_wakeups_when_idle_with_pings_off") {
        return;
    }
    let dir = TempDir::new("idle");
    let init = start(
        &dir,
        Some(0),
        TestConfig {
            readiness: "interval = \"0s\"".into(),
            ..Default::default()
        },
    );
    wait_ready(&dir.join("init.sock"));
    let pid = init.init_pid();
    let switches = || {
        let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        st.lines()
            .filter(|l| l.contains("ctxt_switches"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    // Let the start settle (a connection's deadline may still be pending):
    // until the count stays put for 1.2 s, longer than any client deadline.
    let settled = (0..20).any(|_| {
        let a = switches();
        std::thread::sleep(Duration::from_millis(1200));
        switches() == a
    });
    assert!(settled, "the init never went quiet\n{}", init.describe());
    let before = switches();
    std::thread::sleep(Duration::from_secs(2));
    let after = switches();
    assert_eq!(after, before, "the init woke up while idle");
    stop(init);
}

#[test]
fn sd_notify_upward() {
    if !require_root("sd_notify_upward") {
        return;
    }
    let dir = TempDir::new("sdnotify");
    let upstream = dir.join("upstream.sock");
    let listener = UnixDatagram::bind(&upstream).unwrap();
    listener.set_read_timeout(Some(SHORT)).unwrap();
    let config = TestConfig::default().write(&dir);
    let mut init = Launch::new(&dir)
        .env("NOTIFY_SOCKET", s(&upstream))
        .args(&["--config", s(&config)])
        .start();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m: &String| m == "READY=1") {
        let n = listener.recv(&mut buf).unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    init.signal(Signal::SIGTERM);
    while !seen.iter().any(|m: &String| m == "STOPPING=1") {
        let n = listener.recv(&mut buf).unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        seen.iter().any(|m| m.starts_with("STATUS=dockerd ready")),
        "{seen:?}"
    );
    // Every state change goes up as STATUS=, the first one included.
    assert_eq!(
        seen.first().map(String::as_str),
        Some("STATUS=dockerd starting"),
        "{seen:?}"
    );
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());

    // A NOTIFY_SOCKET that cannot be reached: one warning per kind, in the log and
    // in status, and the init carries on.
    let missing = dir.join("gone.sock");
    let config = TestConfig::default().write(&dir);
    let mut init = Launch::new(&dir)
        .env("NOTIFY_SOCKET", s(&missing))
        .args(&["--config", s(&config)])
        .start();
    let v = wait_status(&dir, SHORT, |v| v["state"] == "ready");
    let warnings = v["sd_notify"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(
        warnings[0].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
    assert_eq!(v["sd_notify"]["sent"], 0, "{v}");
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    let err = init.stderr();
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("sd_notify to NOTIFY_SOCKET"))
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn tcp_listener_serves_http() {
    if !require_root("tcp_listener_serves_http") {
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("tcp");
    let init = start(
        &dir,
        Some(300),
        TestConfig {
            readiness: format!("tcp = \"127.0.0.1:{port}\""),
            ..Default::default()
        },
    );
    let get = |path: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(SHORT)).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/livez").starts_with("HTTP/1.1 200 "));
    wait_ready(&dir.join("init.sock"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200 "));
    stop(init);
}

#[test]
fn deadlines_run_amid_a_stream_of_forwarded_signals() {
    if !require_root("deadlines_run_amid_a_stream_of_forwarded_signals") {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // dockerd never turns ready; no COMMAND, so SIGWINCH is only passed on
    // (to nobody): each of those turns is a quiet one for the loop.
    let dir = TempDir::new("sigstream");
    let init = start(&dir, None, TestConfig::default());
    let pid = Pid::from_raw(init.init_pid());
    let done = Arc::new(AtomicBool::new(false));
    // Three senders, three signals (each is queued once at most), so that
    // most turns of the loop are quiet ones.
    let spammers: Vec<_> = [Signal::SIGWINCH, Signal::SIGUSR1, Signal::SIGUSR2]
        .into_iter()
        .map(|sig| {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                while !done.load(Ordering::Relaxed) {
                    if kill(pid, sig).is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // The wait's deadline must still come, signals or not: a quiet turn skips
    // the deadline bookkeeping, so it must never skip a deadline that came
    // (else the read below times out and the test fails).
    let answer = exchange(&dir.join("init.sock"), b"wait 1s\n");
    done.store(true, Ordering::Relaxed);
    let sent: u64 = spammers.into_iter().map(|t| t.join().unwrap()).sum();
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["state"], "starting", "{v}\n{}", init.describe());
    assert!(sent > 100, "the signal stream was real: {sent} sent");
    stop(init);
}

#[test]
fn a_ready_file_that_cannot_be_written_is_retried_while_ready() {
    if !require_root("a_ready_file_that_cannot_be_written_is_retried_while_ready") {
        return;
    }
    let dir = TempDir::new("readyretry");
    // The ready file's directory is a regular file: every write fails (ENOTDIR),
    // as on a full or read-only disk, until the test makes room.
    let blocked = dir.join("blocked");
    fs::write(&blocked, b"in the way").unwrap();
    let d = dir.path().display().to_string();
    let text = TestConfig::default().text(&dir).replacen(
        &format!("file = \"{d}/ready\""),
        &format!("file = \"{d}/blocked/ready\""),
        1,
    );
    assert!(text.contains("/blocked/ready"), "{text}");
    let config = dir.config(&text);
    // `check` says so first, naming the key (a warning: dockerd still starts).
    let out = Command::new(INIT)
        .args(["check", "--config", s(&config)])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!(
            "warning: readiness.file: cannot create directory {d}/blocked: {d}/blocked is not a directory (the ready file will not be written)"
        )),
        "{report}"
    );
    let init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let sock = dir.join("init.sock");
    assert!(wait_until(SHORT, || UnixStream::connect(&sock).is_ok()));
    let v = wait_ready(&sock);
    // The boot's own warning names the key too.
    assert!(
        v["cgroup"]["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("readiness.file: failed to create directory")),
        "{v}"
    );
    assert!(
        wait_until(SHORT, || init
            .stderr()
            .contains("could not write the ready file")),
        "{}",
        init.describe()
    );
    // Room again: the file appears without any change of state.
    fs::remove_file(&blocked).unwrap();
    fs::create_dir(&blocked).unwrap();
    assert!(
        wait_until(SHORT, || blocked.join("ready").exists()),
        "the ready file was written once it could be\n{}",
        init.describe()
    );
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(blocked.join("ready")).unwrap()).unwrap();
    assert_eq!(v["state"], "ready", "{v}");
    stop(init);
}

/// SPEC §8 "Socket paths": the init removes only a socket nothing accepts on. A
/// regular file, a directory or a live socket at `readiness.socket` ends the boot
/// with exit 2 and one line naming the key and the path, before anything starts,
/// and stays as it was; an inherited NOTIFY_SOCKET at the path dockerd's notify
/// socket would take is left to its owner.
#[test]
fn socket_paths_never_replace_what_is_there() {
    if !require_root("socket_paths_never_replace_what_is_there") {
        return;
    }
    use std::os::unix::net::UnixListener;
    let dir = TempDir::new("sockpaths");
    let file = dir.join("file.sock");
    fs::write(&file, "precious").unwrap();
    let sub = dir.join("dir.sock");
    fs::create_dir(&sub).unwrap();
    let live = dir.join("live.sock");
    let listener = UnixListener::bind(&live).unwrap();
    for (path, what) in [
        (&file, "a regular file"),
        (&sub, "a directory"),
        (&live, "a socket another process accepts on"),
    ] {
        let config = TestConfig::default().text(&dir).replace(
            &format!("socket = \"{}\"", s(&dir.join("init.sock"))),
            &format!("socket = \"{}\"", s(path)),
        );
        let config_path = dir.join("paths.toml");
        fs::write(&config_path, config).unwrap();
        // `check` reports it too, as an error.
        let check = Command::new(INIT)
            .args(["check", "--config", s(&config_path)])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(1), "{report}");
        assert!(
            report
                .lines()
                .any(|l| l.contains("readiness.socket") && l.contains(s(path))),
            "{report}"
        );
        let mut init = Launch::new(&dir)
            .args(&["--config", s(&config_path)])
            .start();
        assert_eq!(init.wait_code(SHORT), 2, "{}", init.describe());
        let err = init.stderr();
        let line = err
            .lines()
            .find(|l| l.contains("readiness.socket"))
            .unwrap_or_else(|| panic!("no line names the key\n{}", init.describe()));
        assert!(line.contains(s(path)) && line.contains(what), "{line}");
        // dockerd never started.
        assert!(!dir.join("dockerd.report").exists(), "{}", init.describe());
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "precious");
    assert!(sub.is_dir());
    // The live socket still serves its owner.
    let _client = UnixStream::connect(&live).unwrap();
    assert!(listener.accept().is_ok());

    // The supervisor's NOTIFY_SOCKET is exactly where dockerd's would go: the
    // init binds dockerd's elsewhere, and READY=1 still reaches the supervisor.
    let upstream = dir.join("notify.sock");
    let supervisor = UnixDatagram::bind(&upstream).unwrap();
    supervisor.set_read_timeout(Some(SHORT)).unwrap();
    let config = TestConfig::default().write(&dir);
    let mut init = Launch::new(&dir)
        .env("NOTIFY_SOCKET", s(&upstream))
        .args(&["--config", s(&config)])
        .start();
    let mut buf = [0u8; 4096];
    loop {
        let n = supervisor.recv(&mut buf).unwrap();
        if &buf[..n] == b"READY=1" {
            break;
        }
    }
    let start = events(&report(&dir.join("dockerd.report")), "start")[0].clone();
    assert_eq!(
        start["env"]["NOTIFY_SOCKET"],
        s(&dir.join("dockerd-notify.sock")),
        "{start}"
    );
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
    // The supervisor's socket is still its own.
    assert!(fs::metadata(&upstream).unwrap().file_type().is_socket());
}

/// Clients that trickle one byte per `gap` and reconnect whenever they are dropped,
/// until `stop`; returns how many connections they made.
fn slow_clients(
    n: usize,
    connect: impl Fn() -> Option<Box<dyn Write + Send>> + Send + Sync + Clone + 'static,
    gap: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let connect = connect.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut made = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(mut c) = connect() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    made += 1;
                    // "st", "at", "us", ... never a complete line; dropped at 1 s.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if c.write_all(b"s").is_err() {
                            break;
                        }
                        std::thread::sleep(gap);
                    }
                }
                made
            })
        })
        .collect()
}

/// SPEC §8 fair admission: 200 slow clients that keep reconnecting, then a burst of
/// 1,000 silent connections; good `status` and `GET /readyz` requests (unix and TCP)
/// are still answered (at least 99%), and orphans are still reaped meanwhile.
#[test]
fn probes_are_answered_while_slow_clients_keep_reconnecting() {
    if !require_root("probes_are_answered_while_slow_clients_keep_reconnecting") {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("fair");
    let config = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            // Orphans keep coming while the clients abuse the socket.
            "--fake-spawn=i=0; while [ $i -lt 400 ]; do (sleep 0.01 &) ; i=$((i+1)); sleep 0.02; done".into(),
        ],
        readiness: format!("tcp = \"127.0.0.1:{port}\""),
        ..Default::default()
    }
    .write(&dir);
    let init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let sock = dir.join("init.sock");
    wait_ready(&sock);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let unix_sock = sock.clone();
    let mut slow = slow_clients(
        100,
        move || {
            UnixStream::connect(&unix_sock)
                .ok()
                .map(|s| Box::new(s) as Box<dyn Write + Send>)
        },
        Duration::from_secs(1),
        stop_flag.clone(),
    );
    slow.extend(slow_clients(
        100,
        move || {
            TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|s| Box::new(s) as Box<dyn Write + Send>)
        },
        Duration::from_secs(1),
        stop_flag.clone(),
    ));
    // Let them fill the table and start cycling.
    std::thread::sleep(Duration::from_millis(1500));
    let good_unix = |sock: &Path| -> bool {
        let Ok(mut s) = UnixStream::connect(sock) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(b"status\n").is_err() {
            return false;
        }
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("{\"state\":\"ready\"")
    };
    let good_tcp = || -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200 ")
    };
    let (mut ok, mut tried) = (0, 0);
    for i in 0..400 {
        tried += 1;
        let answered = if i % 2 == 0 {
            good_unix(&sock)
        } else {
            good_tcp()
        };
        ok += usize::from(answered);
    }
    // A burst of 1,000 silent connections (held open), with good requests among them.
    let mut burst_ok = 0;
    let mut burst_tried = 0;
    for round in 0..5 {
        let mut held: Vec<Box<dyn Send>> = Vec::new();
        for j in 0..1000 {
            if j % 2 == 0 {
                if let Ok(c) = UnixStream::connect(&sock) {
                    held.push(Box::new(c));
                }
            } else if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
                held.push(Box::new(c));
            }
            if j % 50 == 25 {
                burst_tried += 1;
                let answered = if (round + j) % 2 == 0 {
                    good_unix(&sock)
                } else {
                    good_tcp()
                };
                burst_ok += usize::from(answered);
            }
        }
        drop(held);
    }
    stop_flag.store(true, Ordering::Relaxed);
    let reconnects: u64 = slow.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        reconnects > 200,
        "the slow clients were dropped and came back: {reconnects}"
    );
    assert!(
        ok * 100 >= tried * 99,
        "good requests answered amid slow clients: {ok} of {tried}"
    );
    assert!(
        burst_ok * 100 >= burst_tried * 99,
        "good requests answered amid a burst: {burst_ok} of {burst_tried}"
    );
    // Reaping went on throughout: no zombie is left under the init.
    assert!(
        zombies_under_settled(init.init_pid()).is_empty(),
        "{}",
        init.describe()
    );
    stop(init);
}

/// promtool from Debian's prometheus package, unpacked by install-deps.sh.
fn promtool() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("DIND_INIT_PROMTOOL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/cache/dind-init/promtool/usr/bin/promtool".into());
    p.is_file().then_some(p)
}

/// `promtool check metrics` on `text`: its exit code and output.
fn promtool_check(promtool: &Path, text: &str) -> (i32, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The body of an HTTP answer.
fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The value of the sample `name` (with its labels) in exposition `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}

/// SPEC §8 `GET /metrics`: valid for promtool on the unix socket and the TCP
/// listener, and the values follow real events (a killed dockerd moves the restart
/// counter, orphans are counted, the state series switch).
#[test]
fn metrics_are_valid_and_follow_events() {
    let promtool = promtool();
    if !require(
        "metrics_are_valid_and_follow_events",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("promtool (install-deps.sh)", promtool.is_some()),
        ],
    ) {
        return;
    }
    let promtool = promtool.unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("metrics");
    let config = TestConfig {
        fake_args: vec!["--fake-ready-after-ms=0".into(), "--fake-orphans=20".into()],
        readiness: format!("tcp = \"127.0.0.1:{port}\""),
        dockerd: "backoff_initial = \"100ms\"".into(),
        ..Default::default()
    }
    .write(&dir);
    let init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let sock = dir.join("init.sock");
    let v = wait_ready(&sock);
    let get_tcp = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(SHORT)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let unix = exchange(&sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let tcp = get_tcp();
    for answer in [&unix, &tcp] {
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(
            answer.contains("Content-Type: text/plain; version=0.0.4"),
            "{answer}"
        );
        let (code, out) = promtool_check(&promtool, body(answer));
        assert_eq!(code, 0, "promtool check metrics: {out}\n{answer}");
    }
    let text = body(&tcp);
    assert_eq!(
        sample(text, "dind_init_state{state=\"ready\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(text, "dind_init_state{state=\"starting\"}"),
        Some(0.0)
    );
    assert_eq!(sample(text, "dind_init_dockerd_up"), Some(1.0));
    assert_eq!(sample(text, "dind_init_dockerd_restarts_total"), Some(0.0));
    assert!(
        sample(text, "dind_init_time_to_ready_seconds").is_some(),
        "{text}"
    );
    assert!(
        sample(text, "dind_init_status_connections_total").unwrap() >= 2.0,
        "{text}"
    );
    // The 20 orphans of the fake are counted once reaped.
    assert!(
        wait_until(SHORT, || sample(
            body(&exchange(&sock, b"GET /metrics HTTP/1.0\r\n\r\n")),
            "dind_init_orphans_reaped_total"
        )
        .is_some_and(|n| n >= 20.0)),
        "{}",
        body(&exchange(&sock, b"GET /metrics HTTP/1.0\r\n\r\n"))
    );
    // Kill dockerd: once it is back, the restart counter moved.
    init.signal_dockerd(&v, Signal::SIGKILL);
    assert!(
        wait_until(SHORT, || {
            let t = body(&get_tcp()).to_owned();
            sample(&t, "dind_init_dockerd_restarts_total") == Some(1.0)
                && sample(&t, "dind_init_state{state=\"ready\"}") == Some(1.0)
        }),
        "{}",
        body(&get_tcp())
    );
    stop(init);
}

/// A TCP port another process holds stops the boot with one line naming
/// `readiness.tcp` (exit 2), like a taken socket path; nothing is started.
#[test]
fn a_taken_tcp_port_is_a_boot_error_naming_the_key() {
    if !require_root("a_taken_tcp_port_is_a_boot_error_naming_the_key") {
        return;
    }
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("tcp-taken");
    let config = TestConfig {
        readiness: format!("tcp = \"127.0.0.1:{port}\""),
        ..Default::default()
    }
    .write(&dir);
    // The init shares the test's network namespace, so the port is taken for it.
    let mut init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    assert_eq!(init.wait_code(SHORT), 2, "{}", init.describe());
    let err = init.stderr();
    assert!(
        err.lines()
            .any(|l| l.contains("readiness.tcp") && l.contains(&format!("127.0.0.1:{port}"))),
        "{err}"
    );
    assert!(
        !dir.join("dockerd.report").exists(),
        "dockerd never started"
    );
    assert!(
        !dir.join("init.sock").exists(),
        "no status socket left behind"
    );
    drop(holder);
}

/// A client that shuts down its side after `wait` (as `printf 'wait 30s\n' | socat
/// - UNIX-CONNECT:...` does) still gets its answer when dockerd turns ready.
#[test]
fn a_half_closed_wait_is_answered() {
    if !require_root("a_half_closed_wait_is_answered") {
        return;
    }
    let dir = TempDir::new("halfwait");
    let init = start(&dir, Some(700), TestConfig::default());
    let mut c = UnixStream::connect(dir.join("init.sock")).unwrap();
    c.set_read_timeout(Some(SHORT)).unwrap();
    c.write_all(b"wait 30s\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["state"], "ready", "{out}");
    assert!(
        v.get("log_tail").is_none(),
        "a wait's answer has no log tail: {out}"
    );
    stop(init);
}

/// Clients connecting and closing in a tight loop (a storm on the listeners) never
/// keep the init from acting on SIGTERM: accepts are bounded per turn.
#[test]
fn a_connection_storm_does_not_hold_off_a_stop() {
    if !require_root("a_connection_storm_does_not_hold_off_a_stop") {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = TempDir::new("storm");
    let mut init = start(&dir, Some(0), TestConfig::default());
    let sock = dir.join("init.sock");
    wait_ready(&sock);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let storm: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            let stop_flag = stop_flag.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop_flag.load(Ordering::Relaxed) {
                    if UnixStream::connect(&sock).is_ok() {
                        n += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    init.signal(Signal::SIGTERM);
    // The storm goes on until the init has exited (or the test gives up).
    let exited = wait_until(SHORT, || init.child.try_wait().unwrap().is_some());
    stop_flag.store(true, Ordering::Relaxed);
    let made: u64 = storm.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        exited,
        "the init did not stop amid {made} connections\n{}",
        init.describe()
    );
    assert!(made > 100, "the storm was real: {made} connections");
    assert_eq!(init.wait_code(SHORT), 0, "{}", init.describe());
}

/// A check that fails for a reason the init found itself (this debug build is
/// dynamically linked, so it cannot be the test image) says that reason, even when
/// dockerd logged a known limit (here AppArmor's) that would explain a failure of
/// its own.
#[test]
fn a_failure_the_init_found_itself_is_not_blamed_on_a_limit_dockerd_logged() {
    if !require_root("a_failure_the_init_found_itself_is_not_blamed_on_a_limit_dockerd_logged") {
        return;
    }
    let dir = TempDir::new("ours");
    let cfg = TestConfig {
        fake_args: vec![
            "--fake-ready-after-ms=200".into(),
            "--fake-spawn=echo 'level=warning msg=\"AppArmor enabled on system but the \
             docker-default profile could not be loaded\"' >&2"
                .into(),
        ],
        readiness: "verify = \"container\"".into(),
        ..Default::default()
    };
    let config = cfg.write(&dir);
    let init = Launch::new(&dir).args(&["--config", s(&config)]).start();
    let sock = dir.join("init.sock");
    let mut last = serde_json::Value::Null;
    let degraded = wait_until(SHORT, || {
        if let Ok(stream) = UnixStream::connect(&sock) {
            drop(stream);
            last = status_at(&sock);
        }
        last["state"] == "degraded"
    });
    assert!(degraded, "{last}\n{}", init.describe());
    let reason = last["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("dynamically linked"), "{reason}");
    assert!(!reason.contains("AppArmor"), "{reason}");
    // The limit itself is still shown, as a warning of this dockerd run.
    assert!(
        last.to_string().contains("docker-default profile"),
        "the AppArmor limit is a warning still: {last}"
    );
    stop(init);
}
