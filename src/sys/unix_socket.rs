//! Binding the init's own unix sockets (the status socket, dockerd's notify socket)
//! without destroying anything (SPEC §8 "Socket paths").
//!
//! A socket file left by an earlier run must be replaced, or bind(2) fails with
//! EADDRINUSE. But only that: before unlinking what is at the path, [`bind`] checks
//! that it is a socket and that nothing accepts on it (a connect(2) is refused).
//! A regular file, a directory, a symlink or a socket some process still serves (a
//! second dind-init, or the supervisor's own NOTIFY_SOCKET) is an error that names
//! the path and what is there, and stays untouched.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// What is at a socket path before binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    /// A socket nothing accepts on: removed before binding.
    DeadSocket,
    /// A socket some process serves.
    LiveSocket,
    /// Anything else: a regular file, a directory, a symlink, a device, a FIFO.
    Other(&'static str),
}

/// Looks at `path` without changing anything.
pub fn inspect(path: &Path) -> io::Result<Found> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) => return Err(e),
    };
    let kind = meta.file_type();
    if !kind.is_socket() {
        return Ok(Found::Other(if kind.is_dir() {
            "a directory"
        } else if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_file() {
            "a regular file"
        } else {
            "not a socket"
        }));
    }
    Ok(if accepts(path)? {
        Found::LiveSocket
    } else {
        Found::DeadSocket
    })
}

/// Whether a process accepts connections (or datagrams) on the socket at `path`.
fn accepts(path: &Path) -> io::Result<bool> {
    let addr = SocketAddrUnix::new(path)?;
    // The socket's type is unknown: a stream connect to a datagram socket fails
    // with EPROTOTYPE, then a datagram connect tells.
    for kind in [SocketType::STREAM, SocketType::DGRAM] {
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            kind,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        match rustix::net::connect(&fd, &addr) {
            // EAGAIN: a stream listener whose backlog is full is alive.
            Ok(()) | Err(Errno::AGAIN) | Err(Errno::INPROGRESS) => return Ok(true),
            Err(Errno::CONNREFUSED) => return Ok(false),
            Err(Errno::PROTOTYPE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}

/// A non-blocking, close-on-exec unix socket of `kind` bound at `path`, after
/// removing a dead socket left there by an earlier run. Anything else at the path
/// is an error (`AddrInUse` for a live socket, `AlreadyExists` for the rest) whose
/// text says what is there.
pub fn bind(path: &Path, kind: SocketType) -> io::Result<OwnedFd> {
    match inspect(path)? {
        Found::Nothing => {}
        Found::DeadSocket => match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        },
        Found::LiveSocket => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is a socket another process accepts on; refusing to take it over",
                    path.display()
                ),
            ))
        }
        Found::Other(what) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is {what}, not a socket; refusing to replace it",
                    path.display()
                ),
            ))
        }
    }
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(fd)
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixListener};
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dind-init-unix-socket-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn what_is_at_the_path_decides() {
        let dir = temp("decides");
        let file = dir.join("file");
        fs::write(&file, "keep me").unwrap();
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap();
        let live = dir.join("live.sock");
        let _listener = UnixListener::bind(&live).unwrap();
        let live_dgram = dir.join("live-dgram.sock");
        let _dgram = UnixDatagram::bind(&live_dgram).unwrap();
        let dead = dir.join("dead.sock");
        drop(UnixListener::bind(&dead).unwrap());
        let dead_dgram = dir.join("dead-dgram.sock");
        drop(UnixDatagram::bind(&dead_dgram).unwrap());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let cases = [
            (dir.join("none"), Found::Nothing),
            (file.clone(), Found::Other("a regular file")),
            (sub.clone(), Found::Other("a directory")),
            (link.clone(), Found::Other("a symbolic link")),
            (live.clone(), Found::LiveSocket),
            (live_dgram.clone(), Found::LiveSocket),
            (dead.clone(), Found::DeadSocket),
            (dead_dgram.clone(), Found::DeadSocket),
        ];
        for (path, want) in cases {
            assert_eq!(inspect(&path).unwrap(), want, "{}", path.display());
        }
        // Only the dead ones are replaced; the rest are untouched.
        for path in [&dead, &dead_dgram, &dir.join("none")] {
            bind(path, SocketType::STREAM).unwrap();
        }
        for path in [&file, &sub, &link, &live, &live_dgram] {
            let e = bind(path, SocketType::STREAM).unwrap_err();
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
        assert!(sub.is_dir());
        assert_eq!(inspect(&live).unwrap(), Found::LiveSocket);
        let _ = fs::remove_dir_all(&dir);
    }
}
