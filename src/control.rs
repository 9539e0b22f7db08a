//! The status socket and its protocol (SPEC §8).
//!
//! A unix stream socket (mode `socket_mode`) and, when `tcp` is set, a TCP
//! listener. One request per connection, a line of at most 1 KiB:
//! - `status` or an empty line: one line of status JSON, then close;
//! - `wait [DURATION]`: the status line as soon as dockerd is ready, or when the
//!   duration (default 60 s) ends, or at once when dockerd can no longer turn
//!   ready (`failed`, or the init is stopping);
//! - an HTTP/1.x request: `GET /readyz` (200 ready, else 503), `GET /livez` (200),
//!   `GET /status` (200 + JSON), other paths 404, other methods 405;
//! - anything else: one line `error: ...`, then close.
//!
//! Every socket is non-blocking and served from the event loop: a client that
//! connects and sends nothing is dropped after [`CLIENT_TIMEOUT`] and never delays
//! reaping, signals or other clients. At most [`MAX_CONNECTIONS`] are open at once
//! (pending `wait`s included); one beyond that is closed at once.
//!
//! This module parses and transports; the event loop supplies the answers
//! (through [`Answers`]), since only it knows the state.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::SocketType;
use tracing::{debug, warn};

use crate::config::parse_duration;
use crate::readiness::bind_unix_socket;

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 1024;
/// Longest HTTP request head (request line and headers) read before answering.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections open at once, pending `wait`s included.
pub const MAX_CONNECTIONS: usize = 64;
/// Parked `wait`s at most; the other slots stay free for `status` and probes.
pub const MAX_WAITS: usize = 56;
/// After accept(2) fails (EMFILE...), the listeners rest this long.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The unix listener's backlog (the kernel caps it at its somaxconn): a burst
/// of probes waits there while the loop accepts.
const LISTEN_BACKLOG: i32 = 4096;
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
pub fn answer(request: &Request, answers: &dyn Answers) -> Option<Vec<u8>> {
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

#[derive(Debug)]
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Reading the request.
    Reading,
    /// A `wait` parked until ready or its deadline.
    Waiting,
    /// Sending the answer.
    Writing { out: Vec<u8>, sent: usize },
}

#[derive(Debug)]
struct Conn {
    stream: Stream,
    input: Vec<u8>,
    phase: Phase,
    deadline: Instant,
}

/// What a connection's fd is polled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
    /// A parked `wait`: polled for input only to notice that its client left.
    Hangup,
}

/// The listeners and open connections.
#[derive(Debug)]
pub struct ControlServer {
    unix: UnixListener,
    unix_path: PathBuf,
    tcp: Option<TcpListener>,
    conns: BTreeMap<u64, Conn>,
    next_id: u64,
    /// Whether the last accept(2) failed (EMFILE...), to log an episode once.
    accept_failing: bool,
    /// After a failed accept(2), the listeners are not watched until then.
    paused_until: Option<Instant>,
}

impl ControlServer {
    /// Binds the TCP listener if `tcp` is set, then the unix socket (replacing a
    /// stale one) with `mode`. The unix socket listens only once its mode is
    /// set, and after the TCP listener: a client that reaches the unix socket
    /// never sees the wrong mode or a TCP port not open yet.
    pub fn bind(path: &Path, mode: u32, tcp: Option<SocketAddr>) -> io::Result<Self> {
        let tcp = match tcp {
            Some(addr) => {
                let l = TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        let fd = bind_unix_socket(path, SocketType::STREAM)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
        let unix = UnixListener::from(fd);
        Ok(ControlServer {
            unix,
            unix_path: path.to_owned(),
            tcp,
            conns: BTreeMap::new(),
            next_id: 0,
            accept_failing: false,
            paused_until: None,
        })
    }

    pub fn unix_fd(&self) -> BorrowedFd<'_> {
        self.unix.as_fd()
    }

    pub fn tcp_fd(&self) -> Option<BorrowedFd<'_>> {
        self.tcp.as_ref().map(|l| l.as_fd())
    }

    /// Open connections with what to poll them for.
    pub fn connections(&self) -> impl Iterator<Item = (u64, BorrowedFd<'_>, Interest)> {
        self.conns.iter().map(|(id, c)| {
            let interest = match c.phase {
                Phase::Reading => Interest::Read,
                Phase::Waiting => Interest::Hangup,
                Phase::Writing { .. } => Interest::Write,
            };
            (*id, c.stream.fd(), interest)
        })
    }

    /// The earliest connection deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Accepts every pending connection on the unix (or TCP) listener.
    pub fn accept(&mut self, tcp: bool, now: Instant) {
        loop {
            let accepted = if tcp {
                match &self.tcp {
                    Some(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                    None => return,
                }
            } else {
                self.unix.accept().map(|(s, _)| Stream::Unix(s))
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: the connection stays queued and the
                    // listener readable. Stop watching the listeners for a moment
                    // (else the loop spins), and say so once per episode.
                    if !self.accept_failing {
                        warn!(error = %e, "status socket: accept failed; pausing new connections");
                    }
                    self.accept_failing = true;
                    self.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            };
            self.accept_failing = false;
            if self.conns.len() >= MAX_CONNECTIONS {
                debug!(
                    open = self.conns.len(),
                    "status socket: too many connections, closing one"
                );
                continue; // dropped: closed at once
            }
            let ok = match &stream {
                Stream::Unix(s) => s.set_nonblocking(true),
                Stream::Tcp(s) => s.set_nonblocking(true),
            };
            if ok.is_err() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            self.conns.insert(
                id,
                Conn {
                    stream,
                    input: Vec::new(),
                    phase: Phase::Reading,
                    deadline: now + CLIENT_TIMEOUT,
                },
            );
        }
    }

    /// Handles readiness of connection `id`: readable, writable, or `hangup`
    /// (POLLHUP/POLLERR: the client is gone).
    pub fn on_event(&mut self, id: u64, hangup: bool, answers: &dyn Answers, now: Instant) {
        let waiting = self.waiting();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let keep = match conn.phase {
            Phase::Reading => read_request(conn, answers, now, waiting),
            // A parked wait is polled for input only to notice that its client
            // left: EOF (a TCP peer that closed sits in CLOSE_WAIT, which never
            // raises POLLHUP) or an error closes it; stray bytes are ignored.
            Phase::Waiting => !hangup && client_still_there(conn),
            Phase::Writing { .. } => write_answer(conn),
        };
        if !keep {
            self.conns.remove(&id);
        }
    }

    /// Parked `wait`s.
    fn waiting(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.phase, Phase::Waiting))
            .count()
    }

    /// Whether the listeners should be watched now (not after a failed accept).
    pub fn listening(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|t| now >= t)
    }

    /// Answers every parked `wait` (when the state becomes ready, or final).
    pub fn release_waits(&mut self, answers: &dyn Answers, now: Instant) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Waiting))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let answer = (answers.status_json() + "\n").into_bytes();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                start_writing(conn, answer.clone(), now);
                if !write_answer(conn) {
                    self.conns.remove(&id);
                }
            }
        }
    }

    /// Handles deadlines: silent or slow clients are dropped; a `wait` whose
    /// duration ended gets the current status.
    pub fn on_deadlines(&mut self, answers: &dyn Answers, now: Instant) {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
        }
        let due: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut answer: Option<Vec<u8>> = None;
        for id in due {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if matches!(conn.phase, Phase::Waiting) {
                let out = answer.get_or_insert_with(|| (answers.status_json() + "\n").into_bytes());
                start_writing(conn, out.clone(), now);
                if write_answer(conn) {
                    continue;
                }
            }
            debug!(id, "status socket: dropping a slow client");
            self.conns.remove(&id);
        }
    }

    /// Removes the unix socket file (at exit).
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.unix_path);
    }
}

fn start_writing(conn: &mut Conn, out: Vec<u8>, now: Instant) {
    conn.phase = Phase::Writing { out, sent: 0 };
    conn.deadline = now + CLIENT_TIMEOUT;
}

/// Reads what the client sent; answers once a request is complete. Returns
/// whether the connection stays open.
fn read_request(conn: &mut Conn, answers: &dyn Answers, now: Instant, waiting: usize) -> bool {
    let mut buf = [0u8; 1024];
    let mut eof = false;
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                conn.input.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                if conn.input.len() > MAX_HTTP_HEAD {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => return false,
        }
    }
    let request = match complete_request(&conn.input) {
        Some(r) => r,
        // The client finished sending: what it sent is the whole request (a line
        // without its line end, an HTTP head without its blank line).
        None if eof && !conn.input.is_empty() => {
            let mut input = conn.input.clone();
            input.push(b'\n');
            match complete_request(&input) {
                Some(r) => r,
                None => parse_request(&String::from_utf8_lossy(&conn.input)),
            }
        }
        None if eof => return false,
        None => return true, // wait for more, until the deadline
    };
    match answer(&request, answers) {
        Some(out) => {
            start_writing(conn, out, now);
            write_answer(conn)
        }
        None => {
            let Request::Wait(d) = request else {
                return false;
            };
            if waiting >= MAX_WAITS {
                // Keep room for `status` and /readyz, whatever waits pile up.
                let out = format!("error: too many pending waits ({MAX_WAITS}); try again later\n");
                start_writing(conn, out.into_bytes(), now);
                return write_answer(conn);
            }
            conn.phase = Phase::Waiting;
            conn.deadline = now + d;
            true
        }
    }
}

/// The request in `input`, once it is complete: a line for the line protocol,
/// the whole head (up to the blank line) for HTTP, so that no unread request
/// bytes make the close a TCP reset that could eat the answer.
fn complete_request(input: &[u8]) -> Option<Request> {
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

/// Reads from a parked `wait`'s connection: false once the client is gone.
fn client_still_there(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue, // stray bytes after the request: ignored
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// Writes what the socket takes. Returns whether the connection stays open.
fn write_answer(conn: &mut Conn) -> bool {
    let Phase::Writing { out, sent } = &mut conn.phase else {
        return false;
    };
    while *sent < out.len() {
        match conn.stream.write(out.get(*sent..).unwrap_or(&[])) {
            Ok(0) => return false,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    false // all sent: close
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
        let text =
            |r: &Request, ready| answer(r, &Fixed(ready)).map(|b| String::from_utf8(b).unwrap());
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
}
