//! Logging (SPEC §10): `tracing` events to stderr as text or JSON lines, and to
//! journald when configured or auto-detected.
//!
//! PID 1 must never block or die on its own log output. stderr may be closed, a
//! pipe whose reader is gone (EPIPE: SIGPIPE is ignored), or a pipe nobody drains.
//! Setting O_NONBLOCK on fd 2 is not an option: the open file description is shared
//! with COMMAND, which would then see EAGAIN on its own writes. So [`StderrWriter`]
//! asks poll(2) with a zero timeout whether the fd can take data before each chunk
//! of at most `PIPE_BUF` bytes (such a write to a pipe never blocks once POLLOUT is
//! set, see pipe(7)), and drops what does not fit, counting the drops. Write errors
//! are swallowed: there is nowhere left to report them.
//!
//! It does not format dockerd's output; that is `output.rs`, which logs each line
//! as an event of target `dockerd`.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Log bytes dropped because stderr could not take them.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many bytes of log output were dropped because stderr was full.
pub fn dropped_bytes() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A writer to fd 2 that never blocks and never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrWriter;

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
        if !rest.is_empty() {
            DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
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
        match tracing_journald::layer() {
            Ok(layer) => Some(layer.with_syslog_identifier("dind-init".to_owned())),
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
    // `try_init` fails only if a subscriber is already set (tests); nothing to do then.
    let _ = tracing_subscriber::registry()
        .with(stderr_layer.with_filter(level))
        .with(journald_layer.with_filter(level))
        .try_init();
    warning
}
