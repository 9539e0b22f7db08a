//! The clients of the status socket: `dind-init probe` and `dind-init status`.
//!
//! `probe` exits 0 when dockerd is ready and 1 otherwise, saying why on stderr
//! (never 2: Docker's HEALTHCHECK reserves it). With `--wait` it sends the `wait`
//! request, so the init answers the moment dockerd is ready: no polling.
//! `status` prints the status document as a table, or as JSON with `--json`.
//!
//! Both are short-lived processes, so plain blocking I/O with timeouts is right
//! here; nothing of this runs inside the init's event loop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::format_duration;
use crate::control::status::{LastExit, NetworkStatus, Status, StorageStatus, TlsStatus};

/// How long a `status` answer may take (the init answers at once when alive).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// How often `probe --wait` tries again while the status socket is not there yet.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Whether a failed connect means "the init has not opened its socket yet": no file
/// there (or no directory), or a socket file nothing accepts on (a previous init's).
fn not_there_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// Connects to the status socket. With a `deadline` (`probe --wait`), a socket that
/// is not there yet is tried again every [`CONNECT_RETRY`] until then: `docker run
/// -d ... && docker exec ... dind-init probe --wait 60s` may run before the init has
/// opened it. This is the only polling: once connected, the wait itself is the init's
/// `wait` request. A dead socket (ECONNREFUSED: a previous init's, which the next one
/// replaces) is waited on the same way.
fn connect(socket: &Path, deadline: Option<Instant>) -> Result<UnixStream, String> {
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(e) if not_there_yet(&e) && deadline.is_some_and(|d| Instant::now() < d) => {
                std::thread::sleep(CONNECT_RETRY);
            }
            Err(e) => {
                let waited = if deadline.is_some() && not_there_yet(&e) {
                    " until the wait ran out"
                } else {
                    ""
                };
                return Err(format!(
                    "cannot connect to the status socket {}{waited}: {e} (is dind-init running?)",
                    socket.display()
                ));
            }
        }
    }
}

/// Sends one request line and reads the one-line answer.
fn request(
    mut stream: UnixStream,
    socket: &Path,
    line: &str,
    timeout: Duration,
) -> Result<String, String> {
    let io = |e: std::io::Error| format!("status socket {}: {e}", socket.display());
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(|e| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!(
                "no answer from {} within {}",
                socket.display(),
                format_duration(timeout)
            )
        } else {
            io(e)
        }
    })?;
    if let Some(err) = answer.strip_prefix("error: ") {
        return Err(format!("the init refused the request: {}", err.trim_end()));
    }
    Ok(answer)
}

fn fetch(socket: &Path, wait: Option<Duration>) -> Result<(Status, String), String> {
    let started = Instant::now();
    let stream = connect(socket, wait.map(|d| started + d))?;
    let (line, timeout) = match wait {
        // What is left of the wait after the socket appeared (at least 1 ms, so that
        // the init still answers with the state rather than "ran out").
        Some(d) => {
            let left = d
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            (
                format!("wait {}", format_duration(left)),
                left + ANSWER_TIMEOUT,
            )
        }
        None => ("status".to_owned(), ANSWER_TIMEOUT),
    };
    let raw = request(stream, socket, &line, timeout)?;
    let status: Status = serde_json::from_str(raw.trim_end())
        .map_err(|e| format!("bad status answer: {e}: {:.200}", raw.trim_end()))?;
    Ok((status, raw))
}

/// `dind-init probe`: returns the exit code and the message for stderr.
/// The state a running init at `socket` reports, if a dind-init answers there.
pub fn state_at(socket: &Path) -> Option<String> {
    fetch(socket, None).ok().map(|(s, _)| s.state)
}

pub fn probe(socket: &Path, wait: Option<Duration>) -> (i32, Option<String>) {
    match fetch(socket, wait) {
        Ok((s, _)) if s.state == "ready" => (0, None),
        Ok((s, _)) => {
            let reason = s.reason.map(|r| format!(": {r}")).unwrap_or_default();
            (
                1,
                Some(match s.state.as_str() {
                    "failed" => format!("not ready: dockerd has failed{reason}"),
                    state => format!("not ready: dockerd is {state}{reason}"),
                }),
            )
        }
        Err(e) => (1, Some(e)),
    }
}

/// `dind-init status`: returns the exit code and the text for stdout or stderr.
pub fn status(socket: &Path, json: bool) -> Result<String, String> {
    let (s, raw) = fetch(socket, None)?;
    if json {
        return Ok(raw);
    }
    Ok(table(&s))
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The `network:` lines of the table (none for an init that does not report it).
fn network_lines(n: &NetworkStatus) -> String {
    let mut out = network_mode_lines(n);
    if let Some(mtu) = n.uplink_mtu {
        let passed = if n.mtu_flags.is_empty() {
            "nothing passed".to_owned()
        } else {
            n.mtu_flags.join(" ")
        };
        out.push_str(&format!("mtu:         uplink {mtu}; {passed}\n"));
    }
    out
}

fn network_mode_lines(n: &NetworkStatus) -> String {
    match n.mode.as_str() {
        "" => String::new(),
        "host" => "network:     host (not gVisor: dockerd sets up its own networking)\n".to_owned(),
        "off" => {
            "network:     off (network.mode = \"off\": dind-init sets up nothing)\n".to_owned()
        }
        mode => {
            let mut out = format!(
                "network:     {mode}; uplink {}; legacy iptables on dockerd's PATH: {}\n\
                 {:13}rules: {}\n",
                n.uplink.as_deref().unwrap_or("none"),
                yes(n.legacy_iptables),
                "",
                if n.rules.is_empty() {
                    "none".to_owned()
                } else {
                    n.rules.join("; ")
                },
            );
            for w in &n.warnings {
                out.push_str(&format!("{:13}warning: {w}\n", ""));
            }
            out
        }
    }
}

/// The `tls:` line of the table (none for an init that does not report it).
fn tls_line(t: &TlsStatus) -> String {
    let dir = t.dir.as_deref().unwrap_or("-");
    let host = t.host.as_deref().unwrap_or("-");
    match t.mode.as_str() {
        "" => String::new(),
        "off" => "tls:         off (DOCKER_TLS_CERTDIR is not set: no TCP listener)\n".to_owned(),
        "args" => "tls:         dockerd's arguments name a TCP host (DOCKER_TLS_CERTDIR ignored)\n"
            .to_owned(),
        "plain" => format!("tls:         none: {host} without TLS (DOCKER_TLS_CERTDIR is empty)\n"),
        "user" => {
            format!("tls:         {host} with --tlsverify; user-managed certificates in {dir}\n")
        }
        mode => format!(
            "tls:         {host} with --tlsverify; certificates in {dir} ({mode} by dind-init)\n"
        ),
    }
}

/// The `storage:` line of the table (none for an init that does not report it).
fn storage_line(s: &StorageStatus) -> String {
    if s.data_root.is_empty() {
        return String::new();
    }
    match (&s.tmpfs, &s.action) {
        (None, _) => format!(
            "storage:     data-root {} (data_root_tmpfs off)\n",
            s.data_root
        ),
        (Some(_), Some(action)) => format!("storage:     {action}\n"),
        (Some(size), None) => format!("storage:     data-root {}, tmpfs {size}\n", s.data_root),
    }
}

/// The human table of `dind-init status`.
pub fn table(s: &Status) -> String {
    let last_exit = match s.dockerd.last_exit {
        None => "-".to_owned(),
        Some(LastExit::Code(c)) => format!("code {c}"),
        Some(LastExit::Signal(n)) => format!("signal {}", crate::sys::signals::name(n)),
    };
    let mut out = format!(
        "state:       {} (since {})\n\
         reason:      {}\n\
         dockerd:     pid {}, {} restart(s), last exit {}\n\
         cgroup:      {}; mounted: {}; stubbed: {}; {} action(s), {} warning(s) (--json lists them)\n\
         environment: gvisor {}, cgroup {}, pid1 {}\n",
        s.state,
        s.since,
        s.reason.as_deref().unwrap_or("-"),
        s.dockerd.pid.map_or("-".to_owned(), |p| p.to_string()),
        s.dockerd.restarts,
        last_exit,
        s.cgroup.mode,
        list(&s.cgroup.mounted),
        list(&s.cgroup.stubbed),
        s.cgroup.actions.len(),
        s.cgroup.warnings.len(),
        yes(s.environment.gvisor),
        s.environment.cgroup,
        yes(s.environment.pid1),
    );
    if let Some(driver) = &s.dockerd.storage_driver {
        out.push_str(&format!("storage:     {driver}\n"));
    }
    if s.verify.mode == "container" {
        let last = match &s.verify.last {
            None => "no check yet".to_owned(),
            Some(r) if r.ok => format!("a test container ran ({} ms, at {})", r.took_ms, r.at),
            Some(r) => format!(
                "the test container failed at {} ({} ms, at {}): {}",
                r.step.as_deref().unwrap_or("?"),
                r.took_ms,
                r.at,
                r.message.as_deref().unwrap_or("")
            ),
        };
        out.push_str(&format!("verify:      container; {last}\n"));
    }
    for w in &s.dockerd.warnings {
        out.push_str(&format!("warning:     {w}\n"));
    }
    out.push_str(&tls_line(&s.environment.tls));
    out.push_str(&storage_line(&s.environment.storage));
    out.push_str(&network_lines(&s.network));
    if let Some(lines) = &s.log_tail {
        let last: Vec<&String> = lines.iter().rev().take(20).collect();
        out.push_str(&format!("dockerd log (last {} lines):\n", last.len()));
        for l in last.into_iter().rev() {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// `probe`'s stderr line for each state, against a socket that answers as the
    /// init would.
    #[test]
    fn probe_says_why_per_state() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("dind-init-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("init.sock");
        let cases = [
            ("ready", "null", None),
            ("starting", "null", Some("not ready: dockerd is starting")),
            (
                "failed",
                "\"too many restarts\"",
                Some("not ready: dockerd has failed: too many restarts"),
            ),
            (
                "degraded",
                "\"containers cannot start\"",
                Some("not ready: dockerd is degraded: containers cannot start"),
            ),
            ("unhealthy", "null", Some("not ready: dockerd is unhealthy")),
            (
                "restarting",
                "null",
                Some("not ready: dockerd is restarting"),
            ),
            ("stopping", "null", Some("not ready: dockerd is stopping")),
        ];
        for (state, reason, want) in cases {
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).unwrap();
            let answer = format!(
                r#"{{"state":"{state}","reason":{reason},"since":"2026-12-02T06:04:25.123Z","dockerd":{{"pid":null,"restarts":0,"last_exit":null}},"cgroup":{{"mode":"v2","mounted":[],"stubbed":[]}},"environment":{{"gvisor":false,"cgroup":"v2","pid1":true}}}}"#
            );
            let server = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                let mut request = String::new();
                BufReader::new(&stream).read_line(&mut request).unwrap();
                (&stream)
                    .write_all(format!("{answer}\n").as_bytes())
                    .unwrap();
            });
            let (code, message) = probe(&socket, None);
            server.join().unwrap();
            assert_eq!(message.as_deref(), want, "{state}");
            assert_eq!(code, i32::from(want.is_some()), "{state}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_and_storage_lines_table() {
        let tls = |mode: &str, dir: Option<&str>, host: Option<&str>| TlsStatus {
            mode: mode.into(),
            dir: dir.map(Into::into),
            host: host.map(Into::into),
            actions: vec![],
        };
        let cases = [
            (tls("", None, None), ""),
            (
                tls("off", None, None),
                "tls:         off (DOCKER_TLS_CERTDIR is not set: no TCP listener)\n",
            ),
            (
                tls("generated", Some("/certs"), Some("tcp://0.0.0.0:2376")),
                "tls:         tcp://0.0.0.0:2376 with --tlsverify; certificates in /certs (generated by dind-init)\n",
            ),
            (
                tls("user", Some("/certs"), Some("tcp://0.0.0.0:2376")),
                "tls:         tcp://0.0.0.0:2376 with --tlsverify; user-managed certificates in /certs\n",
            ),
            (
                tls("plain", None, Some("tcp://0.0.0.0:2375")),
                "tls:         none: tcp://0.0.0.0:2375 without TLS (DOCKER_TLS_CERTDIR is empty)\n",
            ),
        ];
        for (t, want) in cases {
            assert_eq!(tls_line(&t), want, "{t:?}");
        }
        let storage = StorageStatus {
            data_root: "/var/lib/docker".into(),
            tmpfs: Some("8g".into()),
            action: Some("mounted a tmpfs of size 8g on /var/lib/docker".into()),
        };
        assert_eq!(
            storage_line(&storage),
            "storage:     mounted a tmpfs of size 8g on /var/lib/docker\n"
        );
        let off = StorageStatus {
            tmpfs: None,
            action: None,
            ..storage
        };
        assert_eq!(
            storage_line(&off),
            "storage:     data-root /var/lib/docker (data_root_tmpfs off)\n"
        );
        assert_eq!(storage_line(&StorageStatus::default()), "");
    }

    #[test]
    fn network_lines_table() {
        let gvisor = NetworkStatus {
            mode: "gvisor".into(),
            uplink: Some("eth0 10.0.0.2".into()),
            rules: vec![
                "FORWARD -i docker0 -o docker0 -j DROP".into(),
                "FORWARD -i br-+ -o br-+ -j DROP".into(),
            ],
            legacy_iptables: true,
            warnings: vec!["w1".into()],
            ..NetworkStatus::default()
        };
        assert_eq!(
            network_lines(&gvisor),
            "network:     gvisor; uplink eth0 10.0.0.2; legacy iptables on dockerd's PATH: yes\n\
             \x20            rules: FORWARD -i docker0 -o docker0 -j DROP; FORWARD -i br-+ -o br-+ -j DROP\n\
             \x20            warning: w1\n"
        );
        let bare = NetworkStatus {
            mode: "gvisor".into(),
            ..NetworkStatus::default()
        };
        assert_eq!(
            network_lines(&bare),
            "network:     gvisor; uplink none; legacy iptables on dockerd's PATH: no\n\
             \x20            rules: none\n"
        );
        let host = NetworkStatus {
            mode: "host".into(),
            ..NetworkStatus::default()
        };
        assert!(network_lines(&host).starts_with("network:     host (not gVisor"));
        assert_eq!(network_lines(&NetworkStatus::default()), "");
    }
}
