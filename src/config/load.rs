//! Finding the file (`--config`, `$DIND_INIT_CONFIG`, the default path, built-in
//! defaults), reading it, and the one error type of configuration.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::*;

/// Where the config comes from (SPEC §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Named by `--config` or `$DIND_INIT_CONFIG`: it must exist.
    Explicit(PathBuf),
    /// [`DEFAULT_PATH`], which exists.
    Default(PathBuf),
    /// No file: the built-in defaults.
    Builtin,
}

/// Picks the config source: `cli` (`--config`), else `env` (`$DIND_INIT_CONFIG`, an empty
/// value counts as unset), else [`DEFAULT_PATH`] if it exists, else [`Source::Builtin`].
pub fn locate(cli: Option<&Path>, env: Option<&OsStr>) -> Source {
    locate_with_default(cli, env, Path::new(DEFAULT_PATH))
}

pub(super) fn locate_with_default(
    cli: Option<&Path>,
    env: Option<&OsStr>,
    default: &Path,
) -> Source {
    if let Some(path) = cli {
        return Source::Explicit(path.to_path_buf());
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        return Source::Explicit(PathBuf::from(value));
    }
    // Only a file that is certainly absent means "use the defaults": anything else (for
    // example EACCES) is left for `load` to report, rather than silently ignoring a file.
    match std::fs::metadata(default) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Source::Builtin,
        _ => Source::Default(default.to_path_buf()),
    }
}

/// Reads and parses the config from `source`; [`Source::Builtin`] gives the defaults.
pub fn load(source: &Source) -> Result<Config, ConfigError> {
    let path = match source {
        Source::Explicit(path) | Source::Default(path) => path,
        Source::Builtin => return Ok(Config::default()),
    };
    let read_error = |source| ConfigError::Read {
        path: path.clone(),
        source,
    };
    // Bounded: `--config /dev/zero` must end in an error, not in an allocation that
    // grows until the kernel kills PID 1.
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    parse_bytes(&bytes, &path.display().to_string())
}

// ---------------------------------------------------------------------------
// Errors.

/// Why the config could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, a directory).
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not a valid config. `line` and `column` are 1-based (column in
    /// characters); `key` is the dotted key (`dockerd.stop_timeout`, `dockerd.args[1]`),
    /// absent only for syntax errors outside any key.
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => {
                write!(f, "cannot read config {}: {source}", path.display())
            }
            Self::Invalid {
                origin,
                line,
                column,
                key: Some(key),
                message,
            } => write!(f, "{origin}:{line}:{column}: {key}: {message}"),
            Self::Invalid {
                origin,
                line,
                column,
                key: None,
                message,
            } => write!(f, "{origin}:{line}:{column}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {
    // The io error's text is already part of Display; returning it here as well would
    // print it twice in an error chain.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        None
    }
}

// ---------------------------------------------------------------------------
// Parsing and validation.

/// The largest config file [`load`] reads. A real `init.toml` is a few KB; the bound keeps
/// what a hostile or mistaken file (`--config /dev/zero`) can cost PID 1 before the error.
/// The `toml` crate holds a token and an event (24 bytes each) per token of the text, and
/// a text of brackets is one token per byte: measured on the static build, 1,000,000
/// nested `[` peak at 50 MB RSS and a 2 MiB file of them at 100 MB, all freed once parsed.
/// Large enough that a 1 MiB value is still quoted (shortened) in its error.
pub const MAX_FILE_BYTES: u64 = 2 << 20;

/// Parses and validates config text. `origin` names it in errors (usually the path).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |e| invalid(text.as_bytes(), origin, e);
    let doc = DeTable::parse(text).map_err(|e| invalid(syntax_error(text, &e)))?;
    let doc = doc.get_ref();
    let config = decode(doc).map_err(invalid)?;
    validate(&config).map_err(|problem| invalid(problem.locate(doc)))?;
    Ok(config)
}

/// [`parse`] for a file as read: bytes that are not UTF-8 are an error at their line and
/// column (and key, when they are inside one), like any other. Longer than
/// [`MAX_FILE_BYTES`] is an error too.
pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Config, ConfigError> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let offset = usize::try_from(MAX_FILE_BYTES).unwrap_or(usize::MAX);
        let error = Located {
            offset,
            key: Vec::new(),
            message: format!(
                "the file is larger than {} MiB, far more than any config needs",
                MAX_FILE_BYTES >> 20
            ),
        };
        return Err(invalid(bytes, origin, error));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, origin),
        Err(e) => {
            let offset = e.valid_up_to();
            // The prefix is valid UTF-8 by definition; it tells which key is being written.
            let before = std::str::from_utf8(bytes.get(..offset).unwrap_or_default());
            let key = before.map(|text| key_at(text, offset)).unwrap_or_default();
            let byte = bytes.get(offset).copied().unwrap_or_default();
            let message = format!("invalid UTF-8 (byte 0x{byte:02x}): the file must be UTF-8");
            Err(invalid(
                bytes,
                origin,
                Located {
                    offset,
                    key,
                    message,
                },
            ))
        }
    }
}
