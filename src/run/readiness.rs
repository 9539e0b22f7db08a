//! Knowing when dockerd is ready, without coarse polling (SPEC §8).
//!
//! Three signals, all fds in the event loop:
//! - [`NotifySocket`]: the init's own `NOTIFY_SOCKET`, a datagram socket given to
//!   dockerd, which sends `READY=1` when it has finished starting (sd_notify(3)).
//!   The sender's pid comes with each message (SCM_CREDENTIALS, unix(7)), so only
//!   dockerd's own messages count.
//! - [`SocketWatch`]: inotify(7) on the directory of dockerd's API socket, for a
//!   dockerd that sends nothing: it fires the moment the socket is created.
//! - [`Ping`]: one non-blocking `GET /_ping` over the unix socket. dockerd binds its
//!   socket before it serves, so a socket that exists (or accepts) is not readiness:
//!   the request stays pending in the socket until dockerd serves it, and its 200
//!   answer is the moment of readiness.
//!
//! And [`ReadyFile`], the file orchestrators look for, written atomically (write
//! to a temp file, rename(2)) so that a reader never sees half a file.
//!
//! This module does only the I/O: when to ping and what an answer means for the
//! state is decided by the prober (`prober.rs`) and the supervisor.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::inotify;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::run::prober::Outcome;
use crate::sys::unix_socket;

/// Datagrams read from the notify socket per event at most.
pub const NOTIFY_PER_EVENT: usize = 32;

/// One parsed sd_notify datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
}

/// Parses the `KEY=VALUE` lines of an sd_notify datagram.
pub fn parse_notify(payload: &[u8]) -> NotifyMessage {
    let mut msg = NotifyMessage::default();
    for line in String::from_utf8_lossy(payload).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => msg.ready = true,
            Some(("STOPPING", "1")) => msg.stopping = true,
            Some(("STATUS", text)) => msg.status = Some(text.to_owned()),
            _ => {}
        }
    }
    msg
}

/// The datagram socket dockerd gets as `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct NotifySocket {
    fd: OwnedFd,
    path: PathBuf,
}

impl NotifySocket {
    /// Binds a fresh socket at `path` (a dead one from an earlier run is removed;
    /// anything else there is an error, see `sys/unix_socket.rs`).
    pub fn bind(path: &Path) -> io::Result<Self> {
        let fd = unix_socket::bind(path, SocketType::DGRAM)?;
        // Ask the kernel to attach each sender's pid/uid/gid (unix(7) SO_PASSCRED).
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        Ok(NotifySocket {
            fd,
            path: path.to_owned(),
        })
    }

    /// Reads pending datagrams, at most [`NOTIFY_PER_EVENT`] (the socket is
    /// level-triggered: the rest come on the next turn), handing each to `f` with
    /// its sender's pid when the kernel passed credentials. Nothing is kept: anything
    /// in the container can write here, and a flood must cost neither memory nor
    /// the loop's time.
    pub fn receive(&self, mut f: impl FnMut(Option<i32>, &[u8])) {
        let mut buf = [0u8; 4096];
        let mut space =
            [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(4))];
        let mut read = 0;
        while read < NOTIFY_PER_EVENT {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [io::IoSliceMut::new(&mut buf)];
            let received = rustix::net::recvmsg(
                &self.fd,
                &mut iov,
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            );
            let n = match received {
                Ok(msg) => msg.bytes,
                Err(Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: nothing more
            };
            read += 1;
            let mut pid = None;
            for message in control.drain() {
                // File descriptors someone sent are closed as the iterator drops them.
                if let RecvAncillaryMessage::ScmCredentials(cred) = message {
                    pid = Some(cred.pid.as_raw_nonzero().get());
                }
            }
            f(pid, buf.get(..n).unwrap_or(&[]));
        }
    }

    /// Removes the socket file.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// inotify on the directory of dockerd's API socket.
#[derive(Debug)]
pub struct SocketWatch {
    fd: OwnedFd,
    name: Vec<u8>,
}

impl SocketWatch {
    /// Watches `socket`'s directory (which must exist) for the socket's creation.
    pub fn new(socket: &Path) -> io::Result<Self> {
        let dir = socket.parent().unwrap_or(Path::new("/"));
        let name = socket
            .file_name()
            .map(OsStr::as_bytes)
            .unwrap_or_default()
            .to_vec();
        let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
        inotify::add_watch(
            &fd,
            dir,
            inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO,
        )?;
        Ok(SocketWatch { fd, name })
    }

    /// Reads all pending events; true if one of them created the socket.
    pub fn fired(&self) -> bool {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.fd, &mut buf);
        let mut fired = false;
        loop {
            match reader.next() {
                Ok(event) => {
                    if event
                        .file_name()
                        .is_some_and(|n| n.to_bytes() == self.name.as_slice())
                    {
                        fired = true;
                    }
                }
                Err(Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: drained
            }
        }
        fired
    }
}

impl AsFd for SocketWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One `GET /_ping` in flight, never blocking.
#[derive(Debug)]
pub struct Ping {
    stream: UnixStream,
    response: Vec<u8>,
}

/// Largest response head read before judging the status line.
const MAX_RESPONSE: usize = 4096;

const PING_REQUEST: &[u8] =
    b"GET /_ping HTTP/1.1\r\nHost: docker\r\nUser-Agent: dind-init\r\nConnection: close\r\n\r\n";

impl Ping {
    /// Connects and sends the request. The request is small enough to sit in the
    /// socket buffer, so the write completes at once.
    pub fn start(socket: &Path) -> Result<Ping, Outcome> {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Outcome::Failed(format!("socket: {e}")))?;
        let addr = SocketAddrUnix::new(socket)
            .map_err(|e| Outcome::Failed(format!("bad socket path: {e}")))?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => {}
            Err(Errno::NOENT) => return Err(Outcome::NoListener),
            Err(Errno::CONNREFUSED) => return Err(Outcome::NotListening),
            // EAGAIN: the listen backlog is full.
            Err(e) => {
                return Err(Outcome::Failed(format!(
                    "connect {}: {e}",
                    socket.display()
                )))
            }
        }
        let mut stream = UnixStream::from(fd);
        match stream.write(PING_REQUEST) {
            Ok(n) if n == PING_REQUEST.len() => {}
            Ok(_) => return Err(Outcome::Failed("short write of the ping request".into())),
            Err(e) => return Err(Outcome::Failed(format!("write: {e}"))),
        }
        Ok(Ping {
            stream,
            response: Vec::new(),
        })
    }

    /// Reads what arrived; `Some` once the outcome is known.
    pub fn on_readable(&mut self) -> Option<Outcome> {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Some(judge(&self.response)),
                Ok(n) => {
                    self.response.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if self.response.len() > MAX_RESPONSE || self.response.contains(&b'\n') {
                        return Some(judge(&self.response));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => return Some(Outcome::Failed(format!("read: {e}"))),
            }
        }
    }
}

impl AsFd for Ping {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Judges a response by its status line.
fn judge(response: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(response);
    let Some(line) = text.lines().next() else {
        return Outcome::Failed("no response".into());
    };
    let mut parts = line.split_ascii_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Outcome::Ok,
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => {
            Outcome::Failed(format!("/_ping answered {code}"))
        }
        _ if line.is_empty() => Outcome::Failed("connection closed without a response".into()),
        _ => Outcome::Failed(format!("not an HTTP response: {:.60}", line)),
    }
}

/// The ready file: present exactly while dockerd is ready.
#[derive(Debug)]
pub struct ReadyFile {
    path: PathBuf,
}

impl ReadyFile {
    pub fn new(path: PathBuf) -> Self {
        ReadyFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `content` atomically: a new temp file in the same directory, then
    /// rename(2) over the final name. The temp file is created with O_EXCL after
    /// removing any old one, so a symlink or FIFO planted there is never followed.
    pub fn write(&mut self, content: &str) -> io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // One write of the whole file, and the old temp file removed only when
        // one is in the way: readiness is signalled by this, and in gVisor every
        // file system call is a trip to the gofer.
        let mut body = String::with_capacity(content.len() + 1);
        body.push_str(content);
        body.push('\n');
        let create = || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
        };
        let result = (|| {
            let mut f = match create() {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    fs::remove_file(&tmp)?;
                    create()?
                }
                other => other?,
            };
            f.write_all(body.as_bytes())?;
            drop(f);
            fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the file (also one left by an earlier run). A path that cannot hold
    /// it (a parent that is not a directory) has none to remove.
    pub fn remove(&mut self) -> io::Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The warning for a failed sd_notify upward: what failed and the likely fix, the
/// same text for every failure of one kind (so it is logged once).
pub fn notify_failure(target: &OsStr, e: &io::Error) -> String {
    let socket = target.to_string_lossy();
    let fix = match e.raw_os_error().map(Errno::from_raw_os_error) {
        // Measured with Podman 4.3 and runsc 0.0~20240729: the sandbox cannot
        // connect to a host socket bind-mounted in unless runsc allows it.
        Some(Errno::INVAL) | Some(Errno::PERM) | Some(Errno::ACCESS) => {
            "the sandbox may not reach the host's socket: under runsc start it with --host-uds=open (e.g. in Podman's or containerd's runsc runtime flags)"
        }
        Some(Errno::CONNREFUSED) => "nothing listens on it any more (the supervisor above is gone?)",
        Some(Errno::NOENT) => "the path does not exist in this container: mount the supervisor's socket in, or unset NOTIFY_SOCKET",
        _ => "the supervisor above will not learn that dockerd is ready",
    };
    format!("sd_notify to NOTIFY_SOCKET={socket} failed: {e}; {fix}")
}

/// Sends one sd_notify message to `target` (a path, or `@name` for the abstract
/// namespace), from an unbound datagram socket. Used upward, to the init's own
/// supervisor.
pub fn sd_notify(target: &OsStr, message: &str) -> io::Result<()> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name)?,
        None => SocketAddrUnix::new(Path::new(target))?,
    };
    rustix::net::sendto(
        &fd,
        message.as_bytes(),
        rustix::net::SendFlags::NOSIGNAL,
        &addr,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_parsing_table() {
        let cases: &[(&[u8], bool, bool, Option<&str>)] = &[
            (b"READY=1", true, false, None),
            (
                b"READY=1\nSTATUS=Processing requests",
                true,
                false,
                Some("Processing requests"),
            ),
            (b"STOPPING=1\n", false, true, None),
            (b"READY=0", false, false, None),
            (b"MAINPID=5\nWATCHDOG=1", false, false, None),
            (b"\xff\xfe", false, false, None),
            (b"", false, false, None),
        ];
        for (payload, ready, stopping, status) in cases {
            let m = parse_notify(payload);
            assert_eq!(
                (m.ready, m.stopping, m.status.as_deref()),
                (*ready, *stopping, *status),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn response_judging_table() {
        let cases: &[(&[u8], Outcome)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
                Outcome::Ok,
            ),
            (b"HTTP/1.0 200 OK\r\n", Outcome::Ok),
            (
                b"HTTP/1.1 500 Internal Server Error\r\n",
                Outcome::Failed("/_ping answered 500".into()),
            ),
            (b"", Outcome::Failed("no response".into())),
            (
                b"garbage\n",
                Outcome::Failed("not an HTTP response: garbage".into()),
            ),
        ];
        for (response, want) in cases {
            assert_eq!(&judge(response), want, "{response:?}");
        }
    }
}
