//! Decoding: walks the `toml` crate's span-carrying document and fills a [`Config`],
//! each unknown key, wrong type or malformed value an error at its span.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::*;

// its error points at it; the wording follows serde's ("invalid type: integer `3`,
// expected ...") in TOML's vocabulary, as these messages always have.

/// A value of the document with its span, as the `toml` crate parses it.
pub(super) type Item<'i> = Spanned<DeValue<'i>>;

/// A key of the document with its span (quotes included, escapes decoded).
pub(super) type Key<'i> = Spanned<DeString<'i>>;

/// An error before it has a line and column: where it is, which key, and what is wrong.
#[derive(Debug)]
pub(super) struct Located {
    /// Byte offset into the text, at most its length.
    pub(super) offset: usize,
    /// The key path from the root, array elements as `[i]`; empty when not known.
    pub(super) key: Vec<String>,
    pub(super) message: String,
}

/// A value in the document and its key path (array elements as `[i]`).
pub(super) struct Field<'a, 'i> {
    pub(super) path: Vec<String>,
    pub(super) item: &'a Item<'i>,
}

impl<'a, 'i> Field<'a, 'i> {
    /// The last segment of the path: the key's own name.
    fn name(&self) -> &str {
        self.path.last().map_or("", String::as_str)
    }

    fn child(&self, segment: &str, item: &'a Item<'i>) -> Field<'a, 'i> {
        let mut path = self.path.clone();
        path.push(segment.to_owned());
        Field { path, item }
    }

    pub(super) fn error(&self, message: impl Into<String>) -> Located {
        Located {
            offset: self.item.span().start,
            key: self.path.clone(),
            message: message.into(),
        }
    }

    pub(super) fn type_error(&self, expected: &str) -> Located {
        let message = match self.item.get_ref() {
            DeValue::String(s) => {
                format!("invalid type: string {:?}, expected {expected}", short(s))
            }
            DeValue::Integer(i) => format!(
                "invalid type: integer `{}`, expected {expected}",
                short(&i.to_string())
            ),
            DeValue::Float(x) => format!(
                "invalid type: float `{}`, expected {expected}",
                short(x.as_str())
            ),
            DeValue::Boolean(b) => format!("invalid type: boolean `{b}`, expected {expected}"),
            DeValue::Datetime(d) => format!("invalid type: date-time `{d}`, expected {expected}"),
            other => format!("invalid type: {}, expected {expected}", other.type_str()),
        };
        self.error(message)
    }
}

/// The entries of `table` in the order they are written. The crate's map is ordered by
/// name; the first mistake in the file should be the one reported.
pub(super) fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Item<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Calls `set` for each entry of `table` (whose path is `prefix`), after checking that its
/// name is one of `names`: any other is an unknown key (or table) that lists them.
pub(super) fn fields<'a, 'i>(
    table: &'a DeTable<'i>,
    prefix: &[String],
    names: &[&str],
    // `dyn`: one copy of the loop rather than one per table (binary size, SPEC §12).
    set: &mut dyn FnMut(Field<'a, 'i>) -> Result<(), Located>,
) -> Result<(), Located> {
    for (key, item) in entries(table) {
        let mut path = prefix.to_vec();
        path.push(key.get_ref().to_string());
        if !names.contains(&key.get_ref().as_ref()) {
            let what = match item.get_ref() {
                DeValue::Table(_) => "unknown table",
                _ => "unknown key",
            };
            return Err(Located {
                offset: key.span().start,
                key: path,
                message: unknown_name(what, key.get_ref(), names),
            });
        }
        set(Field { path, item })?;
    }
    Ok(())
}

/// The message for a key or table (`what`) named `name` that is none of `names`: a
/// suggestion when `name` is a near miss of one, then the list. The suggestion comes
/// first and the list is shortened by whole names, so that the message stays within
/// [`MAX_MESSAGE_BYTES`] (SPEC §3's one short line) and is never cut in a name.
pub(super) fn unknown_name(what: &str, name: &str, names: &[&str]) -> String {
    let head = match crate::spelling::closest(name, names.iter().copied()) {
        Some(near) => format!("{what}; did you mean `{near}`?"),
        None => what.to_owned(),
    };
    let room = MAX_MESSAGE_BYTES.saturating_sub(head.len() + " (expected: )".len());
    format!("{head} (expected: {})", list_within(names, room))
}

/// The top-level keys, each of which must be a table.
pub(super) const TABLES: [&str; 7] = [
    "log",
    "environment",
    "cgroup",
    "dockerd",
    "network",
    "readiness",
    "command",
];

pub(super) const DOCKERD_KEYS: [&str; 12] = [
    "path",
    "args",
    "socket",
    "env",
    "restart",
    "backoff_initial",
    "backoff_max",
    "max_restarts",
    "restart_window",
    "stop_timeout",
    "log_tail",
    "data_root_tmpfs",
];

pub(super) const READINESS_KEYS: [&str; 10] = [
    "file",
    "socket",
    "socket_mode",
    "tcp",
    "interval",
    "timeout",
    "failure_threshold",
    "restart_on_unhealthy",
    "sd_notify",
    "verify",
];

/// Every key absent from the document keeps its default. In each `match` below the
/// catch-all arm is never taken: [`fields`] passes only the names it was given.
pub(super) fn decode(doc: &DeTable<'_>) -> Result<Config, Located> {
    let mut c = Config::default();
    fields(doc, &[], &TABLES, &mut |section| {
        let DeValue::Table(table) = section.item.get_ref() else {
            return Err(section.error(format!(
                "invalid type: {}, expected a table",
                section.item.get_ref().type_str()
            )));
        };
        let at = &section.path;
        match section.name() {
            "log" => fields(table, at, &["level", "format", "journald"], &mut |f| {
                match f.name() {
                    "level" => c.log.level = choice(&f)?,
                    "format" => c.log.format = choice(&f)?,
                    "journald" => c.log.journald = choice(&f)?,
                    _ => {}
                }
                Ok(())
            }),
            "environment" => fields(table, at, &["gvisor"], &mut |f| {
                c.environment.gvisor = choice(&f)?;
                Ok(())
            }),
            "cgroup" => fields(table, at, &["mode", "stub_missing"], &mut |f| {
                match f.name() {
                    "mode" => c.cgroup.mode = choice(&f)?,
                    "stub_missing" => c.cgroup.stub_missing = boolean(&f)?,
                    _ => {}
                }
                Ok(())
            }),
            "dockerd" => fields(table, at, &DOCKERD_KEYS, &mut |f| {
                let d = &mut c.dockerd;
                match f.name() {
                    "path" => d.path = string(&f, "a string")?,
                    "args" => d.args = strings(&f)?,
                    "socket" => d.socket = string(&f, PATH)?.into(),
                    "env" => d.env = env(&f)?,
                    "restart" => d.restart = choice(&f)?,
                    "backoff_initial" => d.backoff_initial = duration(&f)?,
                    "backoff_max" => d.backoff_max = duration(&f)?,
                    "max_restarts" => d.max_restarts = number(&f, U32)?,
                    "restart_window" => d.restart_window = duration(&f)?,
                    "stop_timeout" => d.stop_timeout = duration(&f)?,
                    "log_tail" => d.log_tail = number(&f, "a non-negative whole number")?,
                    "data_root_tmpfs" => d.data_root_tmpfs = size(&f)?,
                    _ => {}
                }
                Ok(())
            }),
            "network" => fields(table, at, &["mode"], &mut |f| {
                c.network.mode = choice(&f)?;
                Ok(())
            }),
            "readiness" => fields(table, at, &READINESS_KEYS, &mut |f| {
                let r = &mut c.readiness;
                match f.name() {
                    "file" => r.file = string(&f, PATH)?.into(),
                    "socket" => r.socket = string(&f, PATH)?.into(),
                    "socket_mode" => r.socket_mode = socket_mode(&f)?,
                    "tcp" => r.tcp = tcp(&f)?,
                    "interval" => r.interval = duration(&f)?,
                    "timeout" => r.timeout = duration(&f)?,
                    "failure_threshold" => r.failure_threshold = number(&f, U32)?,
                    "restart_on_unhealthy" => r.restart_on_unhealthy = boolean(&f)?,
                    "sd_notify" => r.sd_notify = choice(&f)?,
                    "verify" => r.verify = choice(&f)?,
                    _ => {}
                }
                Ok(())
            }),
            "command" => fields(table, at, &["wait_for_ready", "ready_timeout"], &mut |f| {
                match f.name() {
                    "wait_for_ready" => c.command.wait_for_ready = boolean(&f)?,
                    "ready_timeout" => c.command.ready_timeout = duration(&f)?,
                    _ => {}
                }
                Ok(())
            }),
            _ => Ok(()),
        }
    })?;
    Ok(c)
}

pub(super) const PATH: &str = "a path string";
pub(super) const U32: &str = "a whole number from 0 to 4294967295";

pub(super) fn boolean(f: &Field<'_, '_>) -> Result<bool, Located> {
    match f.item.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(f.type_error("a boolean")),
    }
}

pub(super) fn string(f: &Field<'_, '_>, expected: &str) -> Result<String, Located> {
    match f.item.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(f.type_error(expected)),
    }
}

/// An integer that must fit `T` (`expected` says what that means). TOML integers are
/// 64-bit; the crate leaves the conversion to the caller, so a longer one lands here too.
pub(super) fn number<T: TryFrom<i64>>(f: &Field<'_, '_>, expected: &str) -> Result<T, Located> {
    let DeValue::Integer(i) = f.item.get_ref() else {
        return Err(f.type_error(expected));
    };
    i64::from_str_radix(i.as_str(), i.radix())
        .ok()
        .and_then(|i| T::try_from(i).ok())
        .ok_or_else(|| {
            f.error(format!(
                "invalid value: integer `{}`, expected {expected}",
                short(&i.to_string())
            ))
        })
}

/// `dockerd.args`: an array of strings.
pub(super) fn strings(f: &Field<'_, '_>) -> Result<Vec<String>, Located> {
    let DeValue::Array(items) = f.item.get_ref() else {
        return Err(f.type_error("an array"));
    };
    let element = |(i, item)| string(&f.child(&format!("[{i}]"), item), "a string");
    items.iter().enumerate().map(element).collect()
}

/// `dockerd.env`: a table of strings.
pub(super) fn env(f: &Field<'_, '_>) -> Result<BTreeMap<String, String>, Located> {
    let DeValue::Table(table) = f.item.get_ref() else {
        return Err(f.type_error("a table"));
    };
    entries(table)
        .into_iter()
        .map(|(key, item)| {
            let name = key.get_ref();
            Ok((name.to_string(), string(&f.child(name, item), "a string")?))
        })
        .collect()
}

pub(super) fn choice<T: Choice>(f: &Field<'_, '_>) -> Result<T, Located> {
    let DeValue::String(v) = f.item.get_ref() else {
        return Err(f.type_error(&format!("a string, one of: {}", choices::<T>())));
    };
    T::ALL
        .iter()
        .copied()
        .find(|c| c.name() == v)
        .ok_or_else(|| {
            f.error(format!(
                "invalid value `{}`: expected one of: {}",
                short(v),
                choices::<T>()
            ))
        })
}

pub(super) fn duration(f: &Field<'_, '_>) -> Result<Duration, Located> {
    match f.item.get_ref() {
        DeValue::String(s) => parse_duration(s).map_err(|message| f.error(message)),
        // A bare number is the commonest mistake; say how to write it.
        DeValue::Integer(i) => {
            let i = short(&i.to_string()).into_owned();
            Err(f.error(format!(
                "invalid duration `{i}`: write a quoted number with a unit, e.g. \"{i}s\""
            )))
        }
        _ => Err(f.type_error("a duration string such as \"5s\"")),
    }
}

pub(super) fn socket_mode(f: &Field<'_, '_>) -> Result<u32, Located> {
    match f.item.get_ref() {
        DeValue::String(v) => {
            let well_formed =
                (3..=4).contains(&v.len()) && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
            match u32::from_str_radix(v, 8) {
                Ok(mode) if well_formed => Ok(mode),
                _ => Err(f.error(format!(
                    "invalid mode `{}`: expected 3 or 4 octal digits, e.g. \"0660\"",
                    short(v)
                ))),
            }
        }
        // A TOML integer 660 is decimal 660 (= 0o1224), never what was meant.
        DeValue::Integer(i) => Err(f.error(format!(
            "invalid mode `{}`: write it as a quoted octal string, e.g. \"0660\"",
            short(&i.to_string())
        ))),
        _ => Err(f.type_error("an octal mode string such as \"0660\"")),
    }
}

pub(super) fn tcp(f: &Field<'_, '_>) -> Result<Option<SocketAddr>, Located> {
    let DeValue::String(v) = f.item.get_ref() else {
        return Err(f.type_error("an address string such as \"0.0.0.0:9323\", or \"\" for none"));
    };
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(Some(addr)),
        Ok(_) => Err(f.error(format!(
            "invalid address `{}`: the port must not be 0 (probes need a fixed port)",
            short(v)
        ))),
        Err(_) => Err(f.error(format!(
            "invalid address `{}`: expected IP:port, e.g. \"0.0.0.0:9323\" or \"[::]:9323\", or \"\" for no TCP listener",
            short(v)
        ))),
    }
}
