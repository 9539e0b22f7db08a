//! The status socket's protocol (SPEC §8): requests and their answers, with no I/O.
//!
//! One request per connection, a line of at most 1 KiB:
//! - `status` or an empty line: one line of status JSON, then close;
//! - `wait [DURATION]`: the status line as soon as dockerd is ready, or when the
//!   duration (default 60 s) ends, or at once when dockerd can no longer turn
//!   ready (`failed`, or the init is stopping);
//! - an HTTP/1.x request: `GET /readyz` (200 ready, else 503), `GET /livez` (200),
//!   `GET /status` (200 + JSON), `GET /metrics` (200, Prometheus text), other paths
//!   404, other methods 405;
//! - anything else: one line `error: ...`, then close.
//!
//! The answers come from [`Answers`], which the event loop's model implements: only
//! it knows the state.

use std::time::Duration;

use crate::config::parse_duration;
use crate::control::metrics::{self, ConnStats, Snapshot};

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 1024;
/// Longest HTTP request head (request line and headers) read before answering.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;
/// `wait` without a duration waits this long.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Wait(Duration),
    Http { method: String, path: String },
    Invalid(String),
}

/// Parses one request line (without its line end).
pub fn parse_request(line: &str) -> Request {
    let line = line.trim_end_matches('\r');
    let mut words = line.split_ascii_whitespace();
    match (words.next(), words.next(), words.next(), words.next()) {
        (None, ..) => Request::Status,
        (Some("status"), None, ..) => Request::Status,
        (Some("wait"), None, ..) => Request::Wait(DEFAULT_WAIT),
        (Some("wait"), Some(d), None, _) => match parse_duration(d) {
            Ok(d) => Request::Wait(d),
            Err(e) => Request::Invalid(format!("wait: {e}")),
        },
        (Some(method), Some(path), Some(version), None) if version.starts_with("HTTP/1.") => {
            Request::Http {
                method: method.to_owned(),
                path: path.to_owned(),
            }
        }
        _ => Request::Invalid(format!(
            "unknown request {:?}: expected `status`, `wait [DURATION]` or an HTTP/1.x GET",
            truncate(line, 80)
        )),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// What the event loop answers with.
pub trait Answers {
    fn is_ready(&self) -> bool;
    /// Whether dockerd can no longer turn ready (`failed`, or the init is
    /// stopping): a `wait` is then answered at once instead of running out.
    fn is_final(&self) -> bool;
    /// The status JSON document (one line, no newline), with the log tail.
    fn status_json(&self) -> String;
    /// A short text for a 503 body: the state and reason.
    fn not_ready_text(&self) -> String;
    /// What `/metrics` shows, but the listener's own counters.
    fn metrics(&self) -> Snapshot;
}

/// Builds an HTTP response.
fn http(code: u16, reason: &str, content_type: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The answer to a request that can be answered now; `None` for a `wait` that
/// must wait.
pub fn answer(request: &Request, answers: &dyn Answers, stats: ConnStats) -> Option<Vec<u8>> {
    let line = |s: String| (s + "\n").into_bytes();
    Some(match request {
        Request::Status => line(answers.status_json()),
        Request::Wait(_) if answers.is_ready() || answers.is_final() => line(answers.status_json()),
        Request::Wait(_) => return None,
        Request::Invalid(why) => line(format!("error: {why}")),
        Request::Http { method, path } if method != "GET" => http(
            405,
            "Method Not Allowed",
            "text/plain",
            &format!("method {method} not allowed\n"),
            "Allow: GET\r\n",
        ),
        Request::Http { path, .. } => match path.split('?').next().unwrap_or("") {
            "/readyz" if answers.is_ready() => http(200, "OK", "text/plain", "ready\n", ""),
            "/readyz" => http(
                503,
                "Service Unavailable",
                "text/plain",
                &format!("{}\n", answers.not_ready_text()),
                "",
            ),
            "/livez" => http(200, "OK", "text/plain", "ok\n", ""),
            "/metrics" => {
                let mut snapshot = answers.metrics();
                snapshot.connections = stats;
                http(
                    200,
                    "OK",
                    metrics::CONTENT_TYPE,
                    &metrics::encode(&snapshot),
                    "",
                )
            }
            "/status" => http(
                200,
                "OK",
                "application/json",
                &(answers.status_json() + "\n"),
                "",
            ),
            other => http(
                404,
                "Not Found",
                "text/plain",
                &format!("no such path {}\n", truncate(other, 80)),
                "",
            ),
        },
    })
}

/// The request in `input`, once it is complete: a line for the line protocol,
/// the whole head (up to the blank line) for HTTP, so that no unread request
/// bytes make the close a TCP reset that could eat the answer.
pub fn complete_request(input: &[u8]) -> Option<Request> {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        if input.len() > MAX_REQUEST_LINE {
            return Some(Request::Invalid(format!(
                "request longer than {MAX_REQUEST_LINE} bytes"
            )));
        }
        return None;
    };
    if end > MAX_REQUEST_LINE {
        return Some(Request::Invalid(format!(
            "request longer than {MAX_REQUEST_LINE} bytes"
        )));
    }
    let line = String::from_utf8_lossy(input.get(..end).unwrap_or(&[])).into_owned();
    let request = parse_request(&line);
    if matches!(request, Request::Http { .. }) {
        let head_done =
            input.windows(4).any(|w| w == b"\r\n\r\n") || input.windows(2).any(|w| w == b"\n\n");
        if !head_done && input.len() <= MAX_HTTP_HEAD {
            return None;
        }
    }
    Some(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);
    impl Answers for Fixed {
        fn is_ready(&self) -> bool {
            self.0
        }
        fn is_final(&self) -> bool {
            false
        }
        fn status_json(&self) -> String {
            r#"{"state":"x"}"#.to_owned()
        }
        fn not_ready_text(&self) -> String {
            "starting".to_owned()
        }
        fn metrics(&self) -> Snapshot {
            Snapshot {
                state: if self.0 { "ready" } else { "starting" },
                ..Snapshot::default()
            }
        }
    }

    #[test]
    fn request_parsing_table() {
        let cases = [
            ("", Request::Status),
            ("status", Request::Status),
            ("status\r", Request::Status),
            ("wait", Request::Wait(DEFAULT_WAIT)),
            ("wait 5s", Request::Wait(Duration::from_secs(5))),
            ("wait 100ms", Request::Wait(Duration::from_millis(100))),
            (
                "GET /readyz HTTP/1.1",
                Request::Http {
                    method: "GET".into(),
                    path: "/readyz".into(),
                },
            ),
            (
                "POST /status HTTP/1.0",
                Request::Http {
                    method: "POST".into(),
                    path: "/status".into(),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_request(line), want, "{line:?}");
        }
        for bad in [
            "wait 5",
            "wait 5s extra",
            "hello",
            "GET /readyz",
            "GET / HTTP/2",
            "status now",
        ] {
            assert!(matches!(parse_request(bad), Request::Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn answers_table() {
        let text = |r: &Request, ready| {
            answer(r, &Fixed(ready), ConnStats::default()).map(|b| String::from_utf8(b).unwrap())
        };
        let get = |p: &str| Request::Http {
            method: "GET".into(),
            path: p.into(),
        };
        assert_eq!(
            text(&Request::Status, false).unwrap(),
            "{\"state\":\"x\"}\n"
        );
        assert_eq!(text(&Request::Wait(DEFAULT_WAIT), false), None);
        assert!(text(&Request::Wait(DEFAULT_WAIT), true).is_some());
        assert!(text(&get("/readyz"), true)
            .unwrap()
            .starts_with("HTTP/1.1 200 "));
        assert!(text(&get("/readyz"), false)
            .unwrap()
            .starts_with("HTTP/1.1 503 "));
        assert!(text(&get("/readyz?verbose"), true)
            .unwrap()
            .starts_with("HTTP/1.1 200 "));
        assert!(text(&get("/livez"), false)
            .unwrap()
            .starts_with("HTTP/1.1 200 "));
        let status = text(&get("/status"), false).unwrap();
        assert!(
            status.starts_with("HTTP/1.1 200 ") && status.ends_with("{\"state\":\"x\"}\n"),
            "{status}"
        );
        let m = text(&get("/metrics"), true).unwrap();
        assert!(
            m.starts_with("HTTP/1.1 200 ")
                && m.contains("Content-Type: text/plain; version=0.0.4")
                && m.contains("dind_init_state{state=\"ready\"} 1"),
            "{m}"
        );
        assert!(text(&get("/nope"), true)
            .unwrap()
            .starts_with("HTTP/1.1 404 "));
        let post = Request::Http {
            method: "POST".into(),
            path: "/readyz".into(),
        };
        assert!(text(&post, true).unwrap().starts_with("HTTP/1.1 405 "));
        assert!(text(&Request::Invalid("x".into()), true)
            .unwrap()
            .starts_with("error: x"));
    }

    #[test]
    fn completeness_table() {
        assert_eq!(complete_request(b"stat"), None);
        assert_eq!(complete_request(b"status\n"), Some(Request::Status));
        assert_eq!(
            complete_request(b"GET /livez HTTP/1.1\r\nHost: x\r\n"),
            None
        );
        assert!(matches!(
            complete_request(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request::Http { .. })
        ));
        let long = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert!(matches!(complete_request(&long), Some(Request::Invalid(_))));
        let mut long_line = vec![b'a'; 2048];
        long_line.push(b'\n');
        assert!(matches!(
            complete_request(&long_line),
            Some(Request::Invalid(_))
        ));
    }

    /// A small deterministic generator (xorshift64*), so a failure names its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Mutated requests (byte flips, cuts, insertions of line ends, spaces, `?`,
    /// invalid UTF-8, huge repeats) never panic, and every answer is one of the
    /// protocol's forms: a status JSON line, an `error: ...` line, or an HTTP answer
    /// with a known status. Bounded for CI; `DIND_INIT_FUZZ_CASES` runs more.
    #[test]
    fn mutated_requests_get_well_formed_answers() {
        let seeds: &[&[u8]] = &[
            b"status\n",
            b"\n",
            b"wait 5s\n",
            b"wait\n",
            b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /metrics HTTP/1.0\r\n\r\n",
            b"POST /status HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /status?x=1 HTTP/1.1\r\n\r\n",
        ];
        let cases: usize = std::env::var("DIND_INIT_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let inserts: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b" ",
            b"\t",
            b"?",
            b"\xff\xfe",
            b"HTTP/1.1",
            b"wait",
            b"\0",
        ];
        for case in 0..cases {
            let mut input = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..1 + rng.below(4) {
                match rng.below(6) {
                    0 if !input.is_empty() => {
                        let i = rng.below(input.len());
                        input[i] ^= 1 << rng.below(8);
                    }
                    1 => input.truncate(rng.below(input.len() + 1)),
                    2 => {
                        let i = rng.below(input.len() + 1);
                        let ins = inserts[rng.below(inserts.len())];
                        input.splice(i..i, ins.iter().copied());
                    }
                    3 if !input.is_empty() => {
                        let i = rng.below(input.len());
                        input.remove(i);
                    }
                    4 if rng.below(50) == 0 => {
                        let byte = input.first().copied().unwrap_or(b'a');
                        input.splice(0..0, std::iter::repeat_n(byte, 1 + rng.below(20_000)));
                    }
                    _ => {}
                }
            }
            // As the server does: a complete request, or what was sent before EOF.
            let request = complete_request(&input).unwrap_or_else(|| {
                let mut with_end = input.clone();
                with_end.push(b'\n');
                complete_request(&with_end)
                    .unwrap_or_else(|| parse_request(&String::from_utf8_lossy(&input)))
            });
            for ready in [true, false] {
                let Some(out) = answer(&request, &Fixed(ready), ConnStats::default()) else {
                    assert!(
                        matches!(request, Request::Wait(_)),
                        "case {case}: {input:?}"
                    );
                    continue;
                };
                let text = String::from_utf8(out).unwrap();
                let ok = text.starts_with("{\"state\"")
                    || (text.starts_with("error: ")
                        && text.ends_with('\n')
                        && text.lines().count() == 1)
                    || ["200", "404", "405", "503"]
                        .iter()
                        .any(|c| text.starts_with(&format!("HTTP/1.1 {c} ")));
                assert!(ok, "case {case}: {input:?} -> {text:?}");
                assert!(
                    text.len() < 4096,
                    "case {case}: answer of {} bytes",
                    text.len()
                );
            }
        }
    }
}
