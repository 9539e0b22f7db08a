//! One call to the Docker API over dockerd's unix socket, never blocking: the
//! event loop watches the socket and drives the call a step at a time as the
//! socket can take the request or has answer bytes.
//!
//! Requests are HTTP/1.0 with a `Content-Length`, so dockerd (Go's net/http)
//! answers without chunked encoding and closes the connection at the end: the
//! answer is everything read until EOF. A body is either a few bytes (JSON) or the
//! init's own binary as a one-file tar archive, streamed from `/proc/self/exe` in
//! small chunks so that importing it never holds the binary in memory (the init's
//! RSS stays in its budget).
//!
//! What the calls mean is decided elsewhere (`verify.rs`, the `/info` query).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::event::epoll::EventFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Bytes of an answer kept at most (the rest is read and dropped).
pub const MAX_ANSWER: usize = 256 * 1024;

/// Bytes of the tar body read from the binary per chunk.
const CHUNK: usize = 32 * 1024;

/// The path of the binary inside the one-file image.
pub const IMAGE_PATH: &str = "dind-init";

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    None,
    Json(String),
    /// The init's own binary as a one-file tar archive.
    SelfTar,
}

/// dockerd's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a step of the call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Pending,
    Done(Answer),
    Failed(String),
}

/// Streams the tar archive: a ustar header, the binary, padding to 512 bytes, and
/// the two zero blocks that end an archive.
#[derive(Debug)]
struct TarSource {
    header: [u8; 512],
    file: File,
    size: u64,
    /// Bytes of the whole archive handed out so far.
    pos: u64,
}

impl TarSource {
    fn open(path: &Path) -> io::Result<TarSource> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(TarSource {
            header: tar_header(IMAGE_PATH, size, 0o755),
            file,
            size,
            pos: 0,
        })
    }

    fn len(&self) -> u64 {
        512 + self.size.div_ceil(512) * 512 + 1024
    }

    /// The next piece of the archive into `buf` (cleared first); empty at the end.
    fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        let total = self.len();
        if self.pos >= total {
            return Ok(());
        }
        if self.pos < 512 {
            let start = self.pos as usize;
            buf.extend_from_slice(self.header.get(start..).unwrap_or(&[]));
        } else if self.pos < 512 + self.size {
            let offset = self.pos - 512;
            let want = (self.size - offset).min(CHUNK as u64) as usize;
            buf.resize(want, 0);
            let n = self.file.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the binary got shorter while it was being sent",
                ));
            }
            buf.truncate(n);
        } else {
            // Padding and the end-of-archive blocks: zeros.
            let left = (total - self.pos).min(CHUNK as u64) as usize;
            buf.resize(left, 0);
        }
        self.pos += buf.len() as u64;
        Ok(())
    }
}

/// A ustar header for one regular file owned by root.
pub fn tar_header(name: &str, size: u64, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = h.get_mut(at + i) {
                *slot = *b;
            }
        }
    };
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A call in progress.
#[derive(Debug)]
pub struct Call {
    stream: UnixStream,
    /// What is still to be sent of the current piece.
    out: Vec<u8>,
    sent: usize,
    tar: Option<TarSource>,
    answer: Vec<u8>,
    /// The request is sent: reading the answer.
    reading: bool,
}

impl Call {
    /// Connects to `socket` and queues the request. `exe` is the binary a
    /// [`Body::SelfTar`] streams.
    pub fn start(
        socket: &Path,
        method: &str,
        path: &str,
        body: &Body,
        exe: &Path,
    ) -> io::Result<Call> {
        let fd: OwnedFd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        match rustix::net::connect(&fd, &SocketAddrUnix::new(socket)?) {
            Ok(()) => {}
            Err(Errno::AGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "dockerd's listen backlog is full",
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let (tar, content_type, len, bytes) = match body {
            Body::None => (None, None, 0, Vec::new()),
            Body::Json(text) => (
                None,
                Some("application/json"),
                text.len() as u64,
                text.clone().into_bytes(),
            ),
            Body::SelfTar => {
                let tar = TarSource::open(exe)?;
                let len = tar.len();
                (Some(tar), Some("application/x-tar"), len, Vec::new())
            }
        };
        let mut out =
            format!("{method} {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: dind-init\r\n")
                .into_bytes();
        if let Some(ct) = content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
        out.extend_from_slice(&bytes);
        Ok(Call {
            stream: UnixStream::from(fd),
            out,
            sent: 0,
            tar,
            answer: Vec::new(),
            reading: false,
        })
    }

    /// What to watch the socket for now.
    pub fn interest(&self) -> EventFlags {
        if self.reading {
            EventFlags::IN
        } else {
            EventFlags::OUT
        }
    }

    /// Sends what the socket takes, or reads what arrived.
    pub fn on_event(&mut self) -> Progress {
        if !self.reading {
            if let Err(e) = self.send() {
                return Progress::Failed(format!("sending the request: {e}"));
            }
            if !self.reading {
                return Progress::Pending;
            }
        }
        self.receive()
    }

    fn send(&mut self) -> io::Result<()> {
        loop {
            while self.sent < self.out.len() {
                match self.stream.write(self.out.get(self.sent..).unwrap_or(&[])) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            self.sent = 0;
            match self.tar.as_mut() {
                Some(tar) => {
                    tar.next(&mut self.out)?;
                    if self.out.is_empty() {
                        self.tar = None;
                    }
                }
                None => self.out.clear(),
            }
            if self.out.is_empty() {
                self.reading = true;
                return Ok(());
            }
        }
    }

    fn receive(&mut self) -> Progress {
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return parse_answer(&self.answer),
                Ok(n) => {
                    let room = MAX_ANSWER.saturating_sub(self.answer.len());
                    self.answer
                        .extend_from_slice(buf.get(..n.min(room)).unwrap_or(&[]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) => return Progress::Failed(format!("reading the answer: {e}")),
            }
        }
    }
}

impl AsFd for Call {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Splits an HTTP/1.x answer into status and body.
pub fn parse_answer(raw: &[u8]) -> Progress {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Progress::Failed(if raw.is_empty() {
            "dockerd closed the connection without an answer".into()
        } else {
            "an answer without a complete head".into()
        });
    };
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or(&[]));
    let status = head.lines().next().and_then(|l| {
        let mut parts = l.split_ascii_whitespace();
        let version = parts.next()?;
        version.starts_with("HTTP/1.").then_some(())?;
        parts.next()?.parse::<u16>().ok()
    });
    match status {
        Some(status) => Progress::Done(Answer {
            status,
            body: raw.get(end + 4..).unwrap_or(&[]).to_vec(),
        }),
        None => Progress::Failed(format!("not an HTTP answer: {:.60}", head)),
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_table() {
        assert_eq!(
            parse_answer(
                b"HTTP/1.0 201 Created\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"ab\"}"
            ),
            Progress::Done(Answer {
                status: 201,
                body: b"{\"Id\":\"ab\"}".to_vec()
            })
        );
        assert_eq!(
            parse_answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Progress::Done(Answer {
                status: 204,
                body: Vec::new()
            })
        );
        assert!(matches!(parse_answer(b""), Progress::Failed(_)));
        assert!(matches!(parse_answer(b"HTTP/1.0 200"), Progress::Failed(_)));
        assert!(matches!(
            parse_answer(b"SSH-2.0\r\n\r\n"),
            Progress::Failed(_)
        ));
    }

    #[test]
    fn tar_header_is_valid_ustar() {
        let h = tar_header("dind-init", 1_100_224, 0o755);
        assert_eq!(&h[0..9], b"dind-init");
        assert_eq!(&h[124..136], b"00004144700\0");
        assert_eq!(&h[257..263], b"ustar\0");
        // The checksum field holds the sum of the header with the field as spaces.
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        let field = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(u32::from_str_radix(field, 8).unwrap(), sum);
    }

    #[test]
    fn the_archive_streams_in_pieces_of_the_right_total_length() {
        let path = std::env::temp_dir().join(format!("dind-init-tar-{}", std::process::id()));
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut tar = TarSource::open(&path).unwrap();
        let mut all = Vec::new();
        let mut buf = Vec::new();
        loop {
            tar.next(&mut buf).unwrap();
            if buf.is_empty() {
                break;
            }
            assert!(buf.len() <= CHUNK.max(512));
            all.extend_from_slice(&buf);
        }
        assert_eq!(all.len() as u64, tar.len());
        assert_eq!(all.len() % 512, 0);
        assert_eq!(&all[512..512 + content.len()], &content[..]);
        assert!(all[512 + content.len()..].iter().all(|b| *b == 0));
        std::fs::remove_file(&path).unwrap();
    }
}
