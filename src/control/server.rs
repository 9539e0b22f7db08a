//! The status socket's transport (SPEC §8): a unix stream socket (mode
//! `socket_mode`) and, when `tcp` is set, a TCP listener, with their connections,
//! all non-blocking and served from the event loop. The protocol (`protocol.rs`)
//! turns each request into its answer.
//!
//! Every listener and connection is registered in the poller when it is made and
//! removed when it is closed ([`Watched`]). A client that connects and sends nothing
//! is dropped after [`CLIENT_TIMEOUT`] and never delays reaping, signals or other
//! clients. At most [`MAX_CONNECTIONS`] are open at once (pending `wait`s included);
//! beyond that a newcomer takes the place of the oldest client that has not sent a
//! complete request ([`ControlServer::accept`]).
//!
//! The server never sees the loop's state: it is handed `&dyn Answers` (the model)
//! for each event it handles.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;
use rustix::net::SocketType;
use tracing::{debug, warn};

use crate::control::metrics::ConnStats;
use crate::control::protocol::{
    answer, complete_request, parse_request, Answers, Request, MAX_HTTP_HEAD,
};
use crate::sys::poller::{Registry, Token, Watched};
use crate::sys::unix_socket;

/// How long a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections open at once, pending `wait`s included.
pub const MAX_CONNECTIONS: usize = 64;
/// Parked `wait`s at most; the other slots stay free for `status` and probes.
pub const MAX_WAITS: usize = 56;
/// A connection that has not sent a complete request can be closed to make room
/// only once it is this old: a good client's request (over TCP especially) may
/// arrive a moment after its connection is accepted. Newcomers wait in the listen
/// backlog meanwhile.
pub const MIN_SLOW_AGE: Duration = Duration::from_millis(10);
/// After accept(2) fails (EMFILE...), the listeners rest this long.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The unix listener's backlog (the kernel caps it at its somaxconn): a burst
/// of probes waits there while the loop accepts.
const LISTEN_BACKLOG: i32 = 4096;

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
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

/// Whether a full table can take one more connection.
#[derive(Debug)]
enum Room {
    Made,
    /// Not before this: every slow candidate is younger than [`MIN_SLOW_AGE`].
    Later(Instant),
    /// Every slot holds a complete request or a parked `wait`.
    None,
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
    /// When it was accepted: a client gets [`MIN_SLOW_AGE`] before it can be taken
    /// for a slow one.
    accepted: Instant,
    stream: Watched<Stream>,
    input: Vec<u8>,
    phase: Phase,
    deadline: Instant,
}

/// The listeners and open connections.
#[derive(Debug)]
pub struct ControlServer {
    unix: Watched<UnixListener>,
    unix_path: PathBuf,
    tcp: Option<Watched<TcpListener>>,
    conns: BTreeMap<u64, Conn>,
    next_id: u64,
    registry: Registry,
    /// Whether the last accept(2) failed (EMFILE...), to log an episode once.
    accept_failing: bool,
    /// After a failed accept(2), or while the table is full of young clients, the
    /// listeners are quiet until then.
    paused_until: Option<Instant>,
    /// The pause is for room in the table: it ends as soon as a slot frees up.
    waiting_for_room: bool,
    stats: ConnStats,
}

impl ControlServer {
    /// Binds the TCP listener if `tcp` is set, then the unix socket (replacing a
    /// dead one, never anything else) with `mode`. The unix socket listens only once its mode is
    /// set, and after the TCP listener: a client that reaches the unix socket
    /// never sees the wrong mode or a TCP port not open yet.
    pub fn bind(
        path: &Path,
        mode: u32,
        tcp: Option<SocketAddr>,
        registry: &Registry,
    ) -> io::Result<Self> {
        let tcp = match tcp {
            Some(addr) => {
                let l = tcp_listener(addr)?;
                let w = Watched::new(registry, l, Token::ListenerTcp, EventFlags::IN)
                    .map_err(|(_, e)| e)?;
                Some(w)
            }
            None => None,
        };
        let fd = unix_socket::bind(path, SocketType::STREAM)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
        let unix = Watched::new(
            registry,
            UnixListener::from(fd),
            Token::ListenerUnix,
            EventFlags::IN,
        )
        .map_err(|(_, e)| e)?;
        Ok(ControlServer {
            unix,
            unix_path: path.to_owned(),
            tcp,
            conns: BTreeMap::new(),
            next_id: 0,
            registry: registry.clone(),
            accept_failing: false,
            paused_until: None,
            waiting_for_room: false,
            stats: ConnStats::default(),
        })
    }

    /// The earliest connection deadline, or the end of an accept pause.
    pub fn deadline(&self) -> Option<Instant> {
        self.conns
            .values()
            .map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
    }

    /// Makes the listeners quiet (after a failed accept) or watched again.
    fn set_listening(&self, on: bool) {
        let flags = if on {
            EventFlags::IN
        } else {
            EventFlags::empty()
        };
        let _ = self.unix.set(flags);
        if let Some(t) = &self.tcp {
            let _ = t.set(flags);
        }
    }

    /// Accepts every pending connection on the unix (or TCP) listener, and answers
    /// each one whose request has arrived already.
    ///
    /// Fair admission (SPEC §8): when the table is full, a new connection replaces
    /// the oldest one that has not sent a complete request, so slow or silent
    /// clients that keep reconnecting cannot starve a probe. Only when every slot
    /// holds a complete request or a parked `wait` is the newcomer closed at once.
    pub fn accept(&mut self, tcp: bool, answers: &dyn Answers, now: Instant) {
        loop {
            let mut full = false;
            if self.conns.len() >= MAX_CONNECTIONS {
                match self.make_room(answers, now) {
                    Room::Made => {}
                    Room::Later(at) => {
                        // Every client that may still send its request is young: the
                        // newcomers wait in the backlog until the oldest one is not,
                        // or until a slot frees up (`resume_if_room`).
                        self.paused_until = Some(at);
                        self.waiting_for_room = true;
                        self.set_listening(false);
                        return;
                    }
                    Room::None => full = true,
                }
            }
            let accepted = if tcp {
                match &self.tcp {
                    Some(l) => l.get().accept().map(|(s, _)| Stream::Tcp(s)),
                    None => return,
                }
            } else {
                self.unix.get().accept().map(|(s, _)| Stream::Unix(s))
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
                    self.set_listening(false);
                    return;
                }
            };
            self.accept_failing = false;
            self.stats.accepted += 1;
            let ok = match &stream {
                Stream::Unix(s) => s.set_nonblocking(true),
                Stream::Tcp(s) => s.set_nonblocking(true),
            };
            if ok.is_err() {
                self.stats.rejected += 1;
                continue;
            }
            let id = self.next_id;
            let Ok(stream) = Watched::new(&self.registry, stream, Token::Conn(id), EventFlags::IN)
            else {
                self.stats.rejected += 1;
                continue; // cannot be watched: closed at once
            };
            self.next_id += 1;
            let mut conn = Conn {
                accepted: now,
                stream,
                input: Vec::new(),
                phase: Phase::Reading,
                deadline: now + CLIENT_TIMEOUT,
            };
            // A good client has sent its request by the time it is accepted:
            // answered now, it never holds a slot (and is never taken for a slow one).
            if !read_request(&mut conn, answers, now, self.waiting(), self.stats()) {
                continue;
            }
            if full {
                debug!(
                    open = self.conns.len(),
                    "status socket: every slot holds a request or a wait; closing a new connection"
                );
                self.stats.rejected += 1;
                continue; // dropped: closed at once
            }
            self.conns.insert(id, conn);
        }
    }

    /// Makes room for a newer connection (SPEC §8 fair admission): the oldest
    /// connection that has not sent a complete request (a slow or silent client) is
    /// closed, once it is [`MIN_SLOW_AGE`] old. Each candidate is read once more
    /// first: one whose request has come is answered, not taken for a slow one.
    fn make_room(&mut self, answers: &dyn Answers, now: Instant) -> Room {
        let candidates: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Reading))
            .map(|(id, _)| *id)
            .collect();
        let mut young: Option<Instant> = None;
        for id in candidates {
            let waiting = self.waiting();
            let stats = self.stats();
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if !read_request(conn, answers, now, waiting, stats) {
                // Answered (or gone) just now: its slot is free.
                self.conns.remove(&id);
                return Room::Made;
            }
            if !matches!(conn.phase, Phase::Reading) {
                continue; // its request came: it is being answered or waits
            }
            let old_enough = conn.accepted + MIN_SLOW_AGE;
            if old_enough > now {
                young = Some(young.map_or(old_enough, |y| y.min(old_enough)));
                continue;
            }
            debug!(
                id,
                "status socket: table full; closing the oldest client that has sent no request"
            );
            self.conns.remove(&id);
            self.stats.evicted += 1;
            return Room::Made;
        }
        match young {
            Some(at) => Room::Later(at),
            None => Room::None,
        }
    }

    /// What the server has done since boot (for `/metrics`).
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            open: self.conns.len() as u64,
            ..self.stats
        }
    }

    /// Handles readiness of connection `id`: readable, writable, or `hangup`
    /// (EPOLLHUP/EPOLLERR: the client is gone).
    pub fn on_event(&mut self, id: u64, hangup: bool, answers: &dyn Answers, now: Instant) {
        let waiting = self.waiting();
        let stats = self.stats();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let keep = match conn.phase {
            Phase::Reading => read_request(conn, answers, now, waiting, stats),
            // A parked wait is watched for input only to notice that its client
            // left: EOF (a TCP peer that closed sits in CLOSE_WAIT, which never
            // raises EPOLLHUP) or an error closes it; stray bytes are ignored.
            Phase::Waiting => !hangup && client_still_there(conn),
            Phase::Writing { .. } => write_answer(conn),
        };
        if !keep {
            self.conns.remove(&id);
            self.resume_if_room();
        }
    }

    /// Ends a pause for room once a slot is free: newcomers waiting in the backlog
    /// are accepted at once rather than at the pause's end.
    fn resume_if_room(&mut self) {
        if self.waiting_for_room && self.conns.len() < MAX_CONNECTIONS {
            self.waiting_for_room = false;
            self.paused_until = None;
            self.set_listening(true);
        }
    }

    /// Parked `wait`s.
    fn waiting(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.phase, Phase::Waiting))
            .count()
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
                if !start_writing(conn, answer.clone(), now) {
                    self.conns.remove(&id);
                }
            }
        }
        self.resume_if_room();
    }

    /// Handles deadlines: silent or slow clients are dropped; a `wait` whose
    /// duration ended gets the current status; an accept pause ends.
    pub fn on_deadlines(&mut self, answers: &dyn Answers, now: Instant) {
        if self.paused_until.is_some_and(|t| now >= t) {
            self.paused_until = None;
            self.waiting_for_room = false;
            self.set_listening(true);
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
                if start_writing(conn, out.clone(), now) {
                    continue;
                }
            }
            debug!(id, "status socket: dropping a slow client");
            self.conns.remove(&id);
        }
        self.resume_if_room();
    }

    /// Removes the unix socket file (at exit).
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.unix_path);
    }
}

/// A non-blocking TCP listener on `addr` with the same backlog as the unix socket
/// ([`LISTEN_BACKLOG`]; std's `TcpListener::bind` listens with 128, and a burst of
/// probes beyond it loses SYNs, which clients retry only after a second).
fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketFlags};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    // As std does: a restarted init can bind while old connections sit in TIME_WAIT.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    Ok(TcpListener::from(fd))
}

/// Switches the connection to sending `out` and sends what the socket takes.
/// Returns whether the connection stays open.
fn start_writing(conn: &mut Conn, out: Vec<u8>, now: Instant) -> bool {
    conn.phase = Phase::Writing { out, sent: 0 };
    conn.deadline = now + CLIENT_TIMEOUT;
    if !write_answer(conn) {
        return false;
    }
    // The rest when the socket has room.
    conn.stream.set(EventFlags::OUT).is_ok()
}

/// Reads what the client sent; answers once a request is complete. Returns
/// whether the connection stays open.
fn read_request(
    conn: &mut Conn,
    answers: &dyn Answers,
    now: Instant,
    waiting: usize,
    stats: ConnStats,
) -> bool {
    let mut buf = [0u8; 1024];
    let mut eof = false;
    loop {
        match conn.stream.get_mut().read(&mut buf) {
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
    match answer(&request, answers, stats) {
        Some(out) => start_writing(conn, out, now),
        None => {
            let Request::Wait(d) = request else {
                return false;
            };
            if waiting >= MAX_WAITS {
                // Keep room for `status` and /readyz, whatever waits pile up.
                let out = format!("error: too many pending waits ({MAX_WAITS}); try again later\n");
                return start_writing(conn, out.into_bytes(), now);
            }
            conn.phase = Phase::Waiting;
            conn.deadline = now + d;
            true
        }
    }
}

/// Reads from a parked `wait`'s connection: false once the client is gone.
fn client_still_there(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match conn.stream.get_mut().read(&mut buf) {
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
        match conn.stream.get_mut().write(out.get(*sent..).unwrap_or(&[])) {
            Ok(0) => return false,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    false // all sent: close
}
