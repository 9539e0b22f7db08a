//! Range and cross-field checks on the decoded [`Config`], each pointed at its key
//! (looked up in the same document), and line/column from byte offsets.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::*;

/// Which part of a key/value pair an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Key,
    Value,
}

/// A failed check on the finished config, before it has a line and column.
#[derive(Debug)]
pub(super) struct Problem {
    /// Keys the problem may be blamed on, best first: the first one present in the file
    /// is reported (a cross-field problem may involve a key left at its default).
    pub(super) keys: Vec<Vec<String>>,
    pub(super) part: Part,
    pub(super) message: String,
}

impl Problem {
    fn at(key: &[&str], part: Part, message: impl Into<String>) -> Self {
        Self::among(&[key], part, message)
    }

    fn among(keys: &[&[&str]], part: Part, message: impl Into<String>) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|key| key.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
            part,
            message: message.into(),
        }
    }

    /// Points the problem at the first of its keys that the document has.
    pub(super) fn locate(self, doc: &DeTable<'_>) -> Located {
        let found = self
            .keys
            .iter()
            .find_map(|key| Some((key, find(doc, key)?)));
        let (key, offset) = match found {
            Some((key, (key_span, value_span))) => {
                let span = match self.part {
                    Part::Key => key_span,
                    Part::Value => value_span,
                };
                (key.clone(), span.start)
            }
            // Not in the file (cannot happen with valid defaults): blame the first key.
            None => (self.keys.first().cloned().unwrap_or_default(), 0),
        };
        Located {
            offset,
            key,
            message: self.message,
        }
    }
}

/// The spans of the key and of the value at `path` (array elements as `[i]`; an
/// element's key span is its own).
pub(super) fn find(doc: &DeTable<'_>, path: &[String]) -> Option<(Range<usize>, Range<usize>)> {
    let (first, rest) = path.split_first()?;
    let (key, mut item) = doc.get_key_value(first.as_str())?;
    let mut key_span = key.span();
    for segment in rest {
        item = match item.get_ref() {
            DeValue::Table(table) => {
                let (key, item) = table.get_key_value(segment.as_str())?;
                key_span = key.span();
                item
            }
            DeValue::Array(items) => {
                let index = segment.strip_prefix('[')?.strip_suffix(']')?;
                let item = items.get(index.parse::<usize>().ok()?)?;
                key_span = item.span();
                item
            }
            _ => return None,
        };
    }
    Some((key_span, item.span()))
}

pub(super) fn validate(config: &Config) -> Result<(), Problem> {
    use Part::{Key, Value};
    let d = &config.dockerd;
    let r = &config.readiness;

    if d.path.is_empty() {
        return Err(Problem::at(
            &["dockerd", "path"],
            Value,
            "must not be empty",
        ));
    }
    if d.path.contains('\0') {
        return Err(Problem::at(
            &["dockerd", "path"],
            Value,
            "must not contain NUL",
        ));
    }
    // exec(2) refuses a longer one (ENAMETOOLONG); `check` would print it thrice.
    if d.path.len() > MAX_EXEC_PATH {
        return Err(Problem::at(
            &["dockerd", "path"],
            Value,
            format!(
                "is {} bytes long; a path must be at most {MAX_EXEC_PATH}",
                d.path.len()
            ),
        ));
    }
    for (i, arg) in d.args.iter().enumerate() {
        if arg.contains('\0') {
            let index = format!("[{i}]");
            return Err(Problem::at(
                &["dockerd", "args", &index],
                Value,
                "must not contain NUL",
            ));
        }
    }
    check_socket_path(&d.socket, &["dockerd", "socket"])?;
    for (name, value) in &d.env {
        let key = ["dockerd", "env", name.as_str()];
        if name.is_empty() {
            return Err(Problem::at(
                &key,
                Key,
                "environment variable names must not be empty",
            ));
        }
        if name.contains('=') || name.contains('\0') {
            return Err(Problem::at(
                &key,
                Key,
                "environment variable names must not contain `=` or NUL",
            ));
        }
        if value.contains('\0') {
            return Err(Problem::at(&key, Value, "must not contain NUL"));
        }
    }
    if d.backoff_initial.is_zero() {
        return Err(Problem::at(
            &["dockerd", "backoff_initial"],
            Value,
            "must be more than 0s (the backoff doubles from it)",
        ));
    }
    if d.backoff_initial > d.backoff_max {
        return Err(Problem::among(
            &[&["dockerd", "backoff_initial"], &["dockerd", "backoff_max"]],
            Value,
            format!(
                "backoff_initial ({}) must not exceed backoff_max ({})",
                format_duration(d.backoff_initial),
                format_duration(d.backoff_max)
            ),
        ));
    }
    if d.restart_window.is_zero() {
        return Err(Problem::at(
            &["dockerd", "restart_window"],
            Value,
            "must be more than 0s",
        ));
    }
    if d.stop_timeout < Duration::from_secs(1) {
        return Err(Problem::at(
            &["dockerd", "stop_timeout"],
            Value,
            "must be at least 1s",
        ));
    }
    if !(1..=MAX_LOG_TAIL).contains(&d.log_tail) {
        return Err(Problem::at(
            &["dockerd", "log_tail"],
            Value,
            format!("must be between 1 and {MAX_LOG_TAIL}, got {}", d.log_tail),
        ));
    }

    check_absolute(&r.file, &["readiness", "file"])?;
    check_socket_path(&r.socket, &["readiness", "socket"])?;
    if r.socket == d.socket {
        return Err(Problem::among(
            &[&["readiness", "socket"], &["dockerd", "socket"]],
            Value,
            "readiness.socket and dockerd.socket must differ",
        ));
    }
    if r.file == r.socket || r.file == d.socket {
        return Err(Problem::among(
            &[
                &["readiness", "file"],
                &["readiness", "socket"],
                &["dockerd", "socket"],
            ],
            Value,
            "readiness.file must differ from readiness.socket and dockerd.socket",
        ));
    }
    if r.timeout.is_zero() {
        return Err(Problem::at(
            &["readiness", "timeout"],
            Value,
            "must be more than 0s",
        ));
    }
    if r.failure_threshold == 0 {
        return Err(Problem::at(
            &["readiness", "failure_threshold"],
            Value,
            "must be at least 1",
        ));
    }

    if config.command.ready_timeout.is_zero() {
        return Err(Problem::at(
            &["command", "ready_timeout"],
            Value,
            "must be more than 0s (set wait_for_ready = false to start at once)",
        ));
    }
    Ok(())
}

pub(super) fn check_absolute(path: &Path, key: &[&str]) -> Result<(), Problem> {
    if !path.is_absolute() {
        return Err(Problem::at(key, Part::Value, "must be an absolute path"));
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(Problem::at(key, Part::Value, "must not contain NUL"));
    }
    Ok(())
}

pub(super) fn check_socket_path(path: &Path, key: &[&str]) -> Result<(), Problem> {
    check_absolute(path, key)?;
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(Problem::at(
            key,
            Part::Value,
            format!("is {len} bytes long; a unix socket path must be at most {MAX_SOCKET_PATH}"),
        ));
    }
    Ok(())
}

/// `dockerd.env."A B"`, `dockerd.args[1]`: bare segments as is, others quoted. A long key
/// (hostile input) is shown as its first segments, `…` and its last; a long segment as
/// its first characters and `…`.
pub(super) fn dotted(path: &[String]) -> String {
    let shown: Vec<&str> = if path.len() > KEY_SEGMENTS_SHOWN + 1 {
        let first = path.iter().take(KEY_SEGMENTS_SHOWN).map(String::as_str);
        first
            .chain([ELLIPSIS])
            .chain(path.last().map(String::as_str))
            .collect()
    } else {
        path.iter().map(String::as_str).collect()
    };
    let mut out = String::new();
    for segment in shown {
        if segment.starts_with('[') {
            out.push_str(segment);
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        let bare = !segment.is_empty()
            && (segment == ELLIPSIS
                || segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        let segment = shorten(segment, SEGMENT_CHARS);
        if bare {
            out.push_str(&segment);
        } else {
            out.push_str(&format!("{segment:?}"));
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset. Works on bytes, so that it
/// also places an invalid UTF-8 sequence: a column counts every byte that does not
/// continue a character.
pub(super) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset.min(bytes.len())).unwrap_or_default();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let this_line = before.get(line_start..).unwrap_or_default();
    let column = this_line.iter().filter(|&&b| b & 0xc0 != 0x80).count() + 1;
    (line, column)
}
