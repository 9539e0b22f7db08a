//! The one error type of the init.
//!
//! Each variant names the operation that failed and carries what it failed on (a
//! path, a pid, a signal) and the OS error. `Display` is one lowercase line, e.g.
//! `failed to create signalfd: EMFILE`. Errors are either returned or logged, never
//! both; `main` prints the chain once.
//!
//! Config errors have their own type (`config::ConfigError`) because they carry a
//! line and a column; they are wrapped here so the boot path has one type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;

/// Everything that can go wrong in the init's own code.
#[derive(Debug)]
pub enum Error {
    /// init.toml could not be read or is invalid (exit 2).
    Config(ConfigError),
    /// Blocking signals or creating the signalfd failed (boot only).
    Signals { op: &'static str, source: io::Error },
    /// Becoming a child subreaper failed (boot only).
    Subreaper(io::Error),
    /// COMMAND could not be started.
    SpawnCommand { program: String, source: io::Error },
    /// Creating the event loop's epoll instance failed (boot only).
    Poll(io::Error),
    /// A socket path of the config names something that must not be replaced: a
    /// file, a directory, a socket another process serves (boot only, exit 2).
    SocketPath {
        key: &'static str,
        source: io::Error,
    },
    /// mount(2) of a file system failed (cgroup preparation, securityfs).
    Mount {
        /// What was being mounted: `tmpfs`, `cgroup cpu,cpuacct`, `cgroup2`.
        what: String,
        target: PathBuf,
        source: io::Error,
    },
    /// A read-only mount could not be remounted read-write.
    Remount { target: PathBuf, source: io::Error },
    /// docker:dind's TLS contract could not be met (`DOCKER_TLS_CERTDIR`): the
    /// certificates could not be made or the user's do not verify (boot only).
    Tls { dir: PathBuf, message: String },
    /// A file system operation on a path failed: `op` is the verb phrase
    /// (`create directory`, `read`, `write +memory to`).
    Fs {
        op: String,
        path: PathBuf,
        source: io::Error,
    },
}

impl Error {
    /// The exit code of the init when this error ends it during boot.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::SocketPath { .. } => 2,
            // Like a shell: 127 when the program is missing, 126 when it cannot run.
            Error::SpawnCommand { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => 127,
                _ => 126,
            },
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Signals { op, source } => write!(f, "failed to {op}: {source}"),
            Error::Subreaper(e) => write!(f, "failed to become a child subreaper: {e}"),
            Error::SpawnCommand { program, source } => {
                write!(f, "failed to start COMMAND `{program}`: {source}")
            }
            Error::Poll(e) => write!(f, "failed to create the event loop's epoll instance: {e}"),
            Error::SocketPath { key, source } => write!(f, "{key}: {source}"),
            Error::Mount {
                what,
                target,
                source,
            } => write!(
                f,
                "failed to mount {what} on {}: {source}",
                target.display()
            ),
            Error::Remount { target, source } => write!(
                f,
                "failed to remount {} read-write: {source}",
                target.display()
            ),
            Error::Fs { op, path, source } => {
                write!(f, "failed to {op} {}: {source}", path.display())
            }
            Error::Tls { dir, message } => {
                write!(
                    f,
                    "TLS certificates in {} (DOCKER_TLS_CERTDIR): {message}",
                    dir.display()
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Signals { source, .. }
            | Error::SpawnCommand { source, .. }
            | Error::Mount { source, .. }
            | Error::Remount { source, .. }
            | Error::Fs { source, .. }
            | Error::SocketPath { source, .. } => Some(source),
            Error::Subreaper(e) | Error::Poll(e) => Some(e),
            Error::Tls { .. } => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
