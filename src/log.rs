//! Logging (SPEC §10): `tracing` events to stderr as text or JSON lines, and to
//! journald when configured or auto-detected.
//!
//! PID 1 must never block or die on its own log output. stderr may be closed, a
//! pipe whose reader is gone (EPIPE: SIGPIPE is ignored), or a pipe nobody drains.
//! Setting O_NONBLOCK on fd 2 is not an option: the open file description is shared
//! with COMMAND, which would then see EAGAIN on its own writes. So [`StderrWriter`]
//! asks poll(2) with a zero timeout whether the fd can take data before each chunk
//! of at most `PIPE_BUF` bytes (such a write to a pipe never blocks once POLLOUT is
//! set, see pipe(7)), and drops what does not fit. A terminal is different: POLLOUT
//! there only means some room, and a 4 KiB write can still block until the reader
//! catches up (`docker run -t` with a slow reader). So when fd 2 is a terminal, the
//! writer opens it again through /proc/self/fd/2 with O_NONBLOCK: a new open file
//! description of the same terminal, whose flag COMMAND never sees. Write errors are
//! swallowed: there is nowhere left to report them.
//!
//! journald gets the same treatment: [`JournaldWriter`] sends each event as one
//! datagram of journald's native protocol (systemd.journal-fields(7),
//! <https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>) on a non-blocking socket, and
//! drops it when journald's queue is full, instead of sleeping in send(2).
//!
//! It does not format dockerd's output; that is `output.rs`, which logs each line
//! as an event of target `dockerd`.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{Journald, LogConfig, LogFormat};

/// Where journald listens; its presence is what `journald = "auto"` looks for.
pub const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// Bytes that one write to a pipe takes atomically, and never blocks for once
/// poll(2) reports POLLOUT (pipe(7)).
const PIPE_BUF: usize = 4096;

/// A writer to fd 2 that never blocks and never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrWriter;

/// When fd 2 is a terminal: the same terminal opened again, non-blocking (see the
/// module docs). Not for pipes (POLLOUT plus PIPE_BUF already cannot block) nor for
/// files (a new description would write from offset 0 over COMMAND's output).
fn own_terminal() -> Option<&'static OwnedFd> {
    static TERMINAL: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    TERMINAL
        .get_or_init(|| {
            if !rustix::termios::isatty(rustix::stdio::stderr()) {
                return None;
            }
            use rustix::fs::{open, Mode, OFlags};
            open(
                "/proc/self/fd/2",
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        })
        .as_ref()
}

impl StderrWriter {
    /// Whether fd 2 can take a write right now without blocking.
    fn writable() -> bool {
        let stderr = rustix::stdio::stderr();
        let mut fds = [PollFd::new(&stderr, PollFlags::OUT)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(n) => n > 0 && fds[0].revents().contains(PollFlags::OUT),
            Err(_) => false,
        }
    }

    /// Writes as much of `buf` as stderr takes without blocking; drops the rest.
    pub fn write_all_or_drop(buf: &[u8]) {
        if let Some(tty) = own_terminal() {
            let mut rest = buf;
            while !rest.is_empty() {
                match rustix::io::write(tty, rest) {
                    Ok(0) => break,
                    Ok(n) => rest = rest.get(n..).unwrap_or(&[]),
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break, // EAGAIN: the terminal is full; drop the rest
                }
            }
            return;
        }
        let stderr = rustix::stdio::stderr();
        let mut rest = buf;
        while !rest.is_empty() {
            if !Self::writable() {
                break;
            }
            let chunk = &rest[..rest.len().min(PIPE_BUF)];
            match rustix::io::write(stderr, chunk) {
                Ok(0) => break,
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    }
}

impl Write for StderrWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::write_all_or_drop(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = StderrWriter;

    fn make_writer(&'a self) -> Self::Writer {
        StderrWriter
    }
}

/// Prints a message on stderr outside of `tracing` (usage and config errors, which
/// come before logging is set up), with the same never-block, never-fail rules.
pub fn print_stderr(message: &str) {
    let mut line = String::with_capacity(message.len() + 1);
    line.push_str(message);
    if !line.ends_with('\n') {
        line.push('\n');
    }
    StderrWriter::write_all_or_drop(line.as_bytes());
}

/// Prints to stdout (`--help`, `--version`, `status`), ignoring a closed stdout.
pub fn print_stdout(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Sends log events to journald, one datagram each, never blocking.
#[derive(Debug)]
pub struct JournaldWriter {
    fd: OwnedFd,
}

impl JournaldWriter {
    /// A datagram socket connected to journald's socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&fd, &SocketAddrUnix::new(path)?)?;
        Ok(JournaldWriter { fd })
    }
}

/// One journal entry being written: its priority, sent on each write.
#[derive(Debug)]
pub struct JournaldEntry<'a> {
    fd: BorrowedFd<'a>,
    priority: u8,
}

/// The journal entry for one formatted event: PRIORITY, SYSLOG_IDENTIFIER and
/// MESSAGE, the latter in the binary form when it spans lines.
pub fn journal_entry(priority: u8, message: &[u8]) -> Vec<u8> {
    let message = message.strip_suffix(b"\n").unwrap_or(message);
    let mut out = format!("PRIORITY={priority}\nSYSLOG_IDENTIFIER=dind-init\n").into_bytes();
    if message.contains(&b'\n') {
        out.extend_from_slice(b"MESSAGE\n");
        out.extend_from_slice(&(message.len() as u64).to_le_bytes());
        out.extend_from_slice(message);
        out.push(b'\n');
    } else {
        out.extend_from_slice(b"MESSAGE=");
        out.extend_from_slice(message);
        out.push(b'\n');
    }
    out
}

impl Write for JournaldEntry<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // EAGAIN (journald behind), EMSGSIZE, ECONNREFUSED: the entry is dropped.
        let _ = rustix::net::send(
            self.fd,
            &journal_entry(self.priority, buf),
            rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
        );
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for JournaldWriter {
    type Writer = JournaldEntry<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        JournaldEntry {
            fd: self.fd.as_fd(),
            priority: 6,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        // syslog(3) priorities: err, warning, info, debug.
        let priority = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        JournaldEntry {
            fd: self.fd.as_fd(),
            priority,
        }
    }
}

/// Installs the global subscriber for `config`. Returns a warning to log once
/// logging works, when journald was asked for (`on`) but is not reachable.
pub fn init(config: &LogConfig) -> Option<String> {
    let level = config.level.as_tracing();
    let stderr_layer = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(StderrWriter)
            .with_ansi(false)
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(StderrWriter)
            .with_target(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
    };
    let want_journald = match config.journald {
        Journald::Off => false,
        Journald::On => true,
        Journald::Auto => Path::new(JOURNALD_SOCKET).exists(),
    };
    let mut warning = None;
    let journald_layer = if want_journald {
        match JournaldWriter::connect(Path::new(JOURNALD_SOCKET)) {
            Ok(writer) => Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(false)
                    .with_target(true)
                    .without_time()
                    .with_level(false),
            ),
            Err(e) => {
                // `auto` falls back quietly; `on` says once why journald is missing.
                if config.journald == Journald::On {
                    warning = Some(format!(
                        "journald = \"on\" but {JOURNALD_SOCKET} is not reachable ({e}); logging to stderr only"
                    ));
                }
                None
            }
        }
    } else {
        None
    };
    // One global level filter, not one per layer: tracing then knows which
    // callsites can never be enabled and skips them at the macro (per-layer
    // filters make every disabled `debug!` in the reaping and signal paths pay
    // for a trip through the registry).
    // `try_init` fails only if a subscriber is already set (tests); nothing to do then.
    let _ = tracing_subscriber::registry()
        .with(level)
        .with(stderr_layer)
        .with(journald_layer)
        .try_init();
    warning
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_table() {
        assert_eq!(
            journal_entry(6, b"dind_init: started\n"),
            b"PRIORITY=6\nSYSLOG_IDENTIFIER=dind-init\nMESSAGE=dind_init: started\n".to_vec()
        );
        let multi = journal_entry(3, b"a\nb\n");
        let mut want = b"PRIORITY=3\nSYSLOG_IDENTIFIER=dind-init\nMESSAGE\n".to_vec();
        want.extend_from_slice(&3u64.to_le_bytes());
        want.extend_from_slice(b"a\nb\n");
        assert_eq!(multi, want);
    }

    #[test]
    fn journald_gets_one_datagram_per_event_and_never_blocks() {
        let dir = std::env::temp_dir().join(format!("dind-init-journal-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("socket");
        let _ = std::fs::remove_file(&path);
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let writer = JournaldWriter::connect(&path).unwrap();
        writer.make_writer().write_all(b"hello\n").unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert!(buf[..n].ends_with(b"MESSAGE=hello\n"));
        // Nobody reads: the queue fills, writes keep returning at once.
        for _ in 0..10_000 {
            writer.make_writer().write_all(&[b'x'; 512]).unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
