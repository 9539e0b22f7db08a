//! The configuration: turns `init.toml` (SPEC §3) into a validated [`Config`].
//!
//! Responsible for:
//! - finding the file ([`locate`]: `--config`, then `$DIND_INIT_CONFIG`, then
//!   [`DEFAULT_PATH`] if it exists, else built-in defaults) and reading it ([`load`]);
//! - parsing it ([`parse`]) with every key optional and every mistake an error that names
//!   the dotted key and its line and column: unknown keys and tables, wrong types,
//!   malformed values (durations, modes, addresses, enum spellings) and out-of-range or
//!   inconsistent values;
//! - the duration syntax shared with the command line ([`parse_duration`],
//!   [`format_duration`]).
//!
//! Not responsible for: anything on the system. It never creates directories, checks that
//! dockerd exists, or binds sockets; whether a path or binary is usable is preflight's job.
//! The only I/O is reading the config file (and a `stat` of the default path).
//!
//! How errors get their position: the `toml` crate (SPEC §3) parses the text into its
//! span-carrying document ([`toml::de::DeTable`]: every key and value with its byte span).
//! Decoding walks that tree, so unknown keys, wrong types and malformed values
//! (durations, `socket_mode`, `tcp`, enum spellings) are reported at the key or value
//! concerned; range and cross-field checks run on the finished [`Config`] and are pointed
//! at the key by looking its path up in the same tree. A syntax error from the crate has
//! a span but no key: `scan_keys` follows the crate's own event parser (`toml_parser`)
//! up to that offset to name the key it is in.
//!
//! Hostile input (SPEC §3: any input gets one line of at most ~300 bytes). Measured on
//! toml 1.2: the crate bounds nesting itself (arrays, inline tables, dotted keys and
//! headers beyond 80 levels are errors, not recursion), so 1,000,000 nested arrays or a
//! key of 200,000 segments need about 70 KB of stack in the release build and no
//! pre-scan. What this module adds: a size bound on the file ([`MAX_FILE_BYTES`]), UTF-8
//! checked here so that invalid bytes get a line and column, a position for the crate's
//! one span-less error (a key past the nesting limit), and every quoted value, key and
//! message cut to a bound.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// The config file read when neither `--config` nor `$DIND_INIT_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/dind-init/init.toml";

/// The environment variable that names the config file when `--config` is absent.
pub const ENV_VAR: &str = "DIND_INIT_CONFIG";

/// The longest duration accepted anywhere (one year). Larger values would only invite
/// overflow when added to an `Instant`, which panics.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `log_tail` may not exceed this many lines (memory stays bounded in PID 1).
pub const MAX_LOG_TAIL: usize = 100_000;

/// Longest unix socket path: `sun_path` is 108 bytes including the terminating NUL.
/// See [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html).
const MAX_SOCKET_PATH: usize = 107;

/// The whole validated configuration, one field per table of `init.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub log: LogConfig,
    pub environment: EnvironmentConfig,
    pub cgroup: CgroupConfig,
    pub dockerd: DockerdConfig,
    pub network: NetworkConfig,
    pub readiness: ReadinessConfig,
    pub command: CommandConfig,
}

/// `[log]`: where and how the init's own events (and dockerd's lines) are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
    pub journald: Journald,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Text,
            journald: Journald::Auto,
        }
    }
}

/// `[environment]`: overrides for what the init detects about where it runs (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentConfig {
    pub gvisor: GvisorSetting,
}

impl Default for EnvironmentConfig {
    fn default() -> Self {
        Self {
            gvisor: GvisorSetting::Auto,
        }
    }
}

/// `[cgroup]`: how cgroups are prepared before dockerd starts (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConfig {
    pub mode: CgroupMode,
    pub stub_missing: bool,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            mode: CgroupMode::Auto,
            stub_missing: true,
        }
    }
}

/// `[dockerd]`: how dockerd is started, restarted and stopped (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerdConfig {
    pub path: String,
    pub args: Vec<String>,
    pub socket: PathBuf,
    pub env: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_restarts: u32,
    pub restart_window: Duration,
    pub stop_timeout: Duration,
    pub log_tail: usize,
}

impl Default for DockerdConfig {
    fn default() -> Self {
        Self {
            path: "dockerd".to_owned(),
            args: Vec::new(),
            socket: PathBuf::from("/var/run/docker.sock"),
            env: BTreeMap::new(),
            restart: RestartPolicy::Always,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_restarts: 10,
            restart_window: Duration::from_secs(5 * 60),
            stop_timeout: Duration::from_secs(8),
            log_tail: 200,
        }
    }
}

impl DockerdConfig {
    /// The value for dockerd's `--shutdown-timeout`: `stop_timeout` minus 2 s (at least 0),
    /// so that dockerd's own shutdown plus the init's SIGKILL grace fit in `docker stop`'s
    /// default 10 s (SPEC §3).
    pub fn shutdown_timeout(&self) -> Duration {
        self.stop_timeout.saturating_sub(Duration::from_secs(2))
    }
}

/// `[network]`: nested networking in gVisor (SPEC §7a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            mode: NetworkMode::Auto,
        }
    }
}

/// `[readiness]`: the ready file, the status socket and health pings (SPEC §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessConfig {
    pub file: PathBuf,
    pub socket: PathBuf,
    /// Permission bits of the unix socket, written in the file as an octal string.
    pub socket_mode: u32,
    /// The TCP listener's address; `None` (the file's `""`) means no TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Health ping period while ready; zero means no periodic ping.
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub restart_on_unhealthy: bool,
    pub sd_notify: SdNotify,
    /// What "ready" means: dockerd answers `/_ping`, or a container really ran.
    pub verify: Verify,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("/run/dind-init/ready"),
            socket: PathBuf::from("/run/dind-init/init.sock"),
            socket_mode: 0o660,
            tcp: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failure_threshold: 3,
            restart_on_unhealthy: false,
            sd_notify: SdNotify::Auto,
            verify: Verify::Ping,
        }
    }
}

/// `[command]`: when the main COMMAND starts (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    pub wait_for_ready: bool,
    pub ready_timeout: Duration,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            wait_for_ready: true,
            ready_timeout: Duration::from_secs(60),
        }
    }
}

// ---------------------------------------------------------------------------
// Enumerated settings. Each is spelled in the file exactly as `as_str` returns.

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// The filter that lets this level and everything more severe through.
    pub fn as_tracing(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            Self::Error => LevelFilter::ERROR,
            Self::Warn => LevelFilter::WARN,
            Self::Info => LevelFilter::INFO,
            Self::Debug => LevelFilter::DEBUG,
            Self::Trace => LevelFilter::TRACE,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// `log.journald`: `auto` logs to journald when /run/systemd/journal/socket exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journald {
    Auto,
    On,
    Off,
}

impl Journald {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// `environment.gvisor`: `auto` detects gVisor (see `environment.rs`); `yes`/`no` override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GvisorSetting {
    Auto,
    Yes,
    No,
}

impl GvisorSetting {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Yes => "yes",
            Self::No => "no",
        }
    }
}

/// `cgroup.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    Auto,
    V1,
    V2,
    Off,
}

impl CgroupMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::Off => "off",
        }
    }
}

/// `dockerd.restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::OnFailure => "on-failure",
            Self::Never => "never",
        }
    }
}

/// `network.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Auto,
    Off,
}

impl NetworkMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Off => "off",
        }
    }
}

/// `readiness.sd_notify`: `auto` notifies `$NOTIFY_SOCKET` when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdNotify {
    Auto,
    Off,
}

impl SdNotify {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Off => "off",
        }
    }
}

/// `readiness.verify`: `ping` (ready when dockerd answers `/_ping`) or `container`
/// (ready once a test container ran; SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Ping,
    Container,
}

impl Verify {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Container => "container",
        }
    }
}

/// What [`choice`] needs: every value, and its spelling.
trait Choice: Copy + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl Choice for LogLevel {
    const ALL: &'static [Self] = &[
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for LogFormat {
    const ALL: &'static [Self] = &[Self::Text, Self::Json];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for Journald {
    const ALL: &'static [Self] = &[Self::Auto, Self::On, Self::Off];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for GvisorSetting {
    const ALL: &'static [Self] = &[Self::Auto, Self::Yes, Self::No];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for CgroupMode {
    const ALL: &'static [Self] = &[Self::Auto, Self::V1, Self::V2, Self::Off];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for RestartPolicy {
    const ALL: &'static [Self] = &[Self::Always, Self::OnFailure, Self::Never];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for NetworkMode {
    const ALL: &'static [Self] = &[Self::Auto, Self::Off];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for SdNotify {
    const ALL: &'static [Self] = &[Self::Auto, Self::Off];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl Choice for Verify {
    const ALL: &'static [Self] = &[Self::Ping, Self::Container];
    fn name(self) -> &'static str {
        self.as_str()
    }
}

fn choices<T: Choice>() -> String {
    T::ALL
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Decoding: the document tree to a Config. Each value is checked where it is written, so
// its error points at it; the wording follows serde's ("invalid type: integer `3`,
// expected ...") in TOML's vocabulary, as these messages always have.

/// A value of the document with its span, as the `toml` crate parses it.
type Item<'i> = Spanned<DeValue<'i>>;

/// A key of the document with its span (quotes included, escapes decoded).
type Key<'i> = Spanned<DeString<'i>>;

/// An error before it has a line and column: where it is, which key, and what is wrong.
#[derive(Debug)]
struct Located {
    /// Byte offset into the text, at most its length.
    offset: usize,
    /// The key path from the root, array elements as `[i]`; empty when not known.
    key: Vec<String>,
    message: String,
}

/// A value in the document and its key path (array elements as `[i]`).
struct Field<'a, 'i> {
    path: Vec<String>,
    item: &'a Item<'i>,
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

    fn error(&self, message: impl Into<String>) -> Located {
        Located {
            offset: self.item.span().start,
            key: self.path.clone(),
            message: message.into(),
        }
    }

    fn type_error(&self, expected: &str) -> Located {
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
fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Item<'i>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// Calls `set` for each entry of `table` (whose path is `prefix`), after checking that its
/// name is one of `names`: any other is an unknown key (or table) that lists them.
fn fields<'a, 'i>(
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
                message: format!("{what} (expected one of: {})", names.join(", ")),
            });
        }
        set(Field { path, item })?;
    }
    Ok(())
}

/// The top-level keys, each of which must be a table.
const TABLES: [&str; 7] = [
    "log",
    "environment",
    "cgroup",
    "dockerd",
    "network",
    "readiness",
    "command",
];

const DOCKERD_KEYS: [&str; 11] = [
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
];

const READINESS_KEYS: [&str; 10] = [
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
fn decode(doc: &DeTable<'_>) -> Result<Config, Located> {
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

const PATH: &str = "a path string";
const U32: &str = "a whole number from 0 to 4294967295";

fn boolean(f: &Field<'_, '_>) -> Result<bool, Located> {
    match f.item.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(f.type_error("a boolean")),
    }
}

fn string(f: &Field<'_, '_>, expected: &str) -> Result<String, Located> {
    match f.item.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(f.type_error(expected)),
    }
}

/// An integer that must fit `T` (`expected` says what that means). TOML integers are
/// 64-bit; the crate leaves the conversion to the caller, so a longer one lands here too.
fn number<T: TryFrom<i64>>(f: &Field<'_, '_>, expected: &str) -> Result<T, Located> {
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
fn strings(f: &Field<'_, '_>) -> Result<Vec<String>, Located> {
    let DeValue::Array(items) = f.item.get_ref() else {
        return Err(f.type_error("an array"));
    };
    let element = |(i, item)| string(&f.child(&format!("[{i}]"), item), "a string");
    items.iter().enumerate().map(element).collect()
}

/// `dockerd.env`: a table of strings.
fn env(f: &Field<'_, '_>) -> Result<BTreeMap<String, String>, Located> {
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

fn choice<T: Choice>(f: &Field<'_, '_>) -> Result<T, Located> {
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

fn duration(f: &Field<'_, '_>) -> Result<Duration, Located> {
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

fn socket_mode(f: &Field<'_, '_>) -> Result<u32, Located> {
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

fn tcp(f: &Field<'_, '_>) -> Result<Option<SocketAddr>, Located> {
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

// ---------------------------------------------------------------------------
// Durations.

const DURATION_EXPECTED: &str = "expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)";

/// Parses a duration as written in `init.toml` and on the command line.
///
/// Grammar: one or more `<digits><unit>` groups with no spaces, signs or fractions, units
/// `h`, `m`, `s`, `ms` (lowercase), each at most once and from largest to smallest:
/// `100ms`, `5s`, `2m`, `1h`, `0s`, `1m30s`, `1s500ms`. A bare number (`5`, even `0`) is
/// rejected, since its unit would be a guess. At most [`MAX_DURATION`] (`8760h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("empty duration: {DURATION_EXPECTED}"));
    }
    let invalid = |why: &str| format!("invalid duration `{}`: {why}", short(text));
    let max_ms = MAX_DURATION.as_millis();
    let mut rest = text;
    let mut total_ms: u128 = 0;
    // Units by size: 3 = h, 2 = m, 1 = s, 0 = ms. Each group must use a smaller one.
    let mut previous_rank = u8::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid(DURATION_EXPECTED));
        }
        let (number, tail) = rest.split_at(digits);
        if tail.starts_with('.') {
            return Err(invalid(
                "fractions are not supported, use a smaller unit (e.g. 1500ms)",
            ));
        }
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let (rank, unit_ms): (u8, u128) = match unit {
            "h" => (3, 3_600_000),
            "m" => (2, 60_000),
            "s" => (1, 1_000),
            "ms" => (0, 1),
            _ => return Err(invalid(DURATION_EXPECTED)),
        };
        if rank >= previous_rank {
            return Err(invalid(
                "units must go from largest to smallest, each at most once (e.g. 1m30s)",
            ));
        }
        previous_rank = rank;
        // Only digits remain, so parsing fails only on overflow.
        let too_large = || invalid("too large (at most 8760h)");
        let value: u64 = number.parse().map_err(|_| too_large())?;
        total_ms += u128::from(value) * unit_ms;
        if total_ms > max_ms {
            return Err(too_large());
        }
        rest = tail;
    }
    let millis = u64::try_from(total_ms).map_err(|_| invalid("too large (at most 8760h)"))?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way [`parse_duration`] reads it: `0s`, `100ms`, `5s`, `2m`,
/// `1m30s`, `1h`. Sub-millisecond parts are dropped (config values never have them).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, unit_ms) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = ms / unit_ms;
        ms %= unit_ms;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(unit);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Finding and loading the file.

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

fn locate_with_default(cli: Option<&Path>, env: Option<&OsStr>, default: &Path) -> Source {
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

/// Turns the crate's syntax error into a [`Located`] one, with the key it is in.
fn syntax_error(text: &str, e: &toml::de::Error) -> Located {
    let message = e.message();
    match e.span() {
        // The crate's error for a missing value reads "string values must be quoted":
        // true of `level = info`, misleading for `level =` with nothing after it.
        Some(span) if span.is_empty() && message.starts_with("string values must be quoted") => {
            Located {
                offset: span.start,
                key: key_at(text, span.start),
                message: "missing value after `=`".to_owned(),
            }
        }
        // "expected nothing" is how the crate ends some messages (`010`: "unexpected
        // leading zero, expected nothing"); it adds nothing.
        Some(span) => Located {
            offset: span.start,
            key: key_at(text, span.start),
            message: message
                .strip_suffix(", expected nothing")
                .unwrap_or(message)
                .to_owned(),
        },
        // The one error the crate reports without a span (measured, toml 1.2): a dotted
        // key or table header of more segments than its recursion limit (80). Point at
        // the longest key, which is that one.
        None => {
            let keys = scan_keys(text, None);
            let message = match keys.longest {
                Some((_, parts, _)) => {
                    format!(
                        "a key of {parts} dotted parts is more than the parser allows ({message})"
                    )
                }
                None => message.to_owned(),
            };
            let (offset, key) = keys
                .longest
                .map(|(offset, _, key)| (offset, key))
                .unwrap_or_default();
            Located {
                offset,
                key,
                message,
            }
        }
    }
}

/// The key path in effect at `offset`: the table header's keys followed by the key of the
/// key/value pair being written there (and those of the inline tables around it).
fn key_at(text: &str, offset: usize) -> Vec<String> {
    scan_keys(text, Some(offset)).at.unwrap_or_default()
}

/// Runs the crate's own tokenizer and parser over `text` (the `toml` crate gives no key
/// for a syntax error, only its span) and follows the keys it reports. Only an error
/// takes this path, so a valid file is parsed once.
fn scan_keys(text: &str, offset: Option<usize>) -> KeyScan<'_> {
    use toml_parser::parser::{parse_document, RecursionGuard};
    let source = toml_parser::Source::new(text);
    let tokens = source.lex().into_vec();
    let mut scan = KeyScan {
        source,
        offset,
        header: Vec::new(),
        in_header: false,
        pair: Vec::new(),
        frames: Vec::new(),
        open_arrays: 0,
        key_done: true,
        key_start: 0,
        at: None,
        longest: None,
    };
    // The same depth bound as the toml crate's: its parser recurses once per nested
    // array or inline table, and the guard stops it there.
    let mut guard = RecursionGuard::new(&mut scan, MAX_NESTING);
    parse_document(&tokens, &mut guard, &mut ());
    // An offset at the very end (an unclosed string, text cut before invalid UTF-8) is
    // reached by no event: the key in effect at the end is the one.
    if scan.offset.is_some() && scan.at.is_none() {
        scan.at = Some(scan.path());
    }
    scan
}

/// How deep [`scan_keys`] lets arrays and inline tables nest (the toml crate's own limit).
const MAX_NESTING: u32 = 80;

/// The state of [`scan_keys`]: which key the parser is in.
struct KeyScan<'i> {
    source: toml_parser::Source<'i>,
    /// Where the wanted key is; `None` when only the longest key is wanted.
    offset: Option<usize>,
    /// The segments of the last `[table]` header.
    header: Vec<toml_parser::parser::Event>,
    in_header: bool,
    /// The key of the pair being written, after those of the inline tables around it.
    pair: Vec<toml_parser::parser::Event>,
    /// For each open inline table, how many segments of `pair` lead to it.
    frames: Vec<usize>,
    open_arrays: usize,
    /// The last key is complete (its `=` seen): the next segment starts a new one.
    key_done: bool,
    /// Where the current key expression (`a.b.c` or `[a.b.c]`) starts, and how many
    /// segments of `pair` (or `header`) precede it.
    key_start: usize,
    /// The key path at `offset`, once the parser has got there.
    at: Option<Vec<String>>,
    /// The key expression with the most segments: (offset, segments, key path).
    longest: Option<(usize, usize, Vec<String>)>,
}

impl KeyScan<'_> {
    /// The decoded key path of the header and pair segments now in effect.
    fn path(&self) -> Vec<String> {
        let pair: &[_] = if self.in_header { &[] } else { &self.pair };
        // A hostile key of 200,000 segments is shown shortened anyway (see `dotted`):
        // decode the first and last few only, and mark the gap with an empty-named
        // `…` segment.
        let all: Vec<_> = self.header.iter().chain(pair).collect();
        let decode = |event: &&toml_parser::parser::Event| {
            let mut name = std::borrow::Cow::Borrowed("");
            if let Some(raw) = self.source.get(**event) {
                raw.decode_key(&mut name, &mut ());
            }
            name.into_owned()
        };
        if all.len() <= KEY_SEGMENTS_SHOWN + 1 {
            return all.iter().map(decode).collect();
        }
        let mut path: Vec<String> = all.iter().take(KEY_SEGMENTS_SHOWN).map(decode).collect();
        path.push(ELLIPSIS.to_owned());
        path.extend(all.last().map(decode));
        path
    }

    /// Notes an event at `span`: once the parser reaches the offset, the key in effect is
    /// the answer. A key segment counts as reached when it covers the offset (a duplicate
    /// key's error points at the key itself); anything else counts before it is applied.
    fn reach(&mut self, span: toml_parser::Span) {
        if let Some(offset) = self.offset {
            if self.at.is_none() && (span.end() > offset || span.start() >= offset) {
                self.at = Some(self.path());
            }
        }
    }

    /// A key expression has ended: remember it when it is the longest yet.
    fn end_key(&mut self) {
        let segments = if self.in_header {
            self.header.len()
        } else {
            self.pair.len()
        };
        let parts = segments.saturating_sub(self.key_start);
        let longer = self
            .longest
            .as_ref()
            .is_none_or(|(_, most, _)| parts > *most);
        if self.offset.is_none() && parts > 1 && longer {
            let start = self.key_start_offset();
            self.longest = Some((start, parts, self.path()));
        }
    }

    fn key_start_offset(&self) -> usize {
        let segments = if self.in_header {
            &self.header
        } else {
            &self.pair
        };
        segments
            .get(self.key_start)
            .map_or(0, |event| event.span().start())
    }
}

impl toml_parser::parser::EventReceiver for KeyScan<'_> {
    fn std_table_open(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.header.clear();
        self.pair.clear();
        self.frames.clear();
        self.open_arrays = 0;
        self.in_header = true;
        self.key_start = 0;
    }
    fn std_table_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.end_key();
        self.in_header = false;
        self.key_done = true;
    }
    fn array_table_open(&mut self, span: toml_parser::Span, e: &mut dyn toml_parser::ErrorSink) {
        self.std_table_open(span, e);
    }
    fn array_table_close(&mut self, span: toml_parser::Span, e: &mut dyn toml_parser::ErrorSink) {
        self.std_table_close(span, e);
    }
    fn inline_table_open(
        &mut self,
        span: toml_parser::Span,
        _: &mut dyn toml_parser::ErrorSink,
    ) -> bool {
        self.reach(span);
        self.frames.push(self.pair.len());
        self.key_done = true;
        true
    }
    fn inline_table_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        if let Some(len) = self.frames.pop() {
            self.pair.truncate(len);
        }
        self.key_done = true;
    }
    fn array_open(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) -> bool {
        self.reach(span);
        self.open_arrays += 1;
        true
    }
    fn array_close(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.open_arrays = self.open_arrays.saturating_sub(1);
    }
    fn simple_key(
        &mut self,
        span: toml_parser::Span,
        encoding: Option<toml_parser::decoder::Encoding>,
        _: &mut dyn toml_parser::ErrorSink,
    ) {
        let event = toml_parser::parser::Event::new_unchecked(
            toml_parser::parser::EventKind::SimpleKey,
            encoding,
            span,
        );
        if self.in_header {
            self.header.push(event);
        } else {
            if self.key_done {
                let base = self.frames.last().copied().unwrap_or(0);
                self.pair.truncate(base);
                self.key_start = base;
                self.key_done = false;
            }
            self.pair.push(event);
        }
        self.reach(span);
    }
    fn key_val_sep(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        self.end_key();
        self.key_done = true;
    }
    fn scalar(
        &mut self,
        span: toml_parser::Span,
        _: Option<toml_parser::decoder::Encoding>,
        _: &mut dyn toml_parser::ErrorSink,
    ) {
        self.reach(span);
    }
    fn value_sep(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
    fn comment(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
    fn newline(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
        // A pair ends with its line, unless an array or inline table is still open.
        if self.frames.is_empty() && self.open_arrays == 0 && !self.in_header {
            self.pair.clear();
            self.key_done = true;
        }
    }
    fn error(&mut self, span: toml_parser::Span, _: &mut dyn toml_parser::ErrorSink) {
        self.reach(span);
    }
}

/// Gives an error its line, column and dotted key.
fn invalid(bytes: &[u8], origin: &str, e: Located) -> ConfigError {
    let (line, column) = line_column(bytes, e.offset);
    ConfigError::Invalid {
        origin: origin.to_owned(),
        line,
        column,
        key: (!e.key.is_empty()).then(|| cut(&printable(&dotted(&e.key)), MAX_KEY_BYTES)),
        message: cut(&printable(&e.message), MAX_MESSAGE_BYTES),
    }
}

/// Messages quote values as written; a control character in one (a newline in an
/// enum spelling, an escape sequence) must not break the one-line error or the terminal.
fn printable(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error is one line of at most ~300 bytes whatever the input (SPEC §3): the key and
/// the message are each cut to a bound, values quoted in messages to [`QUOTED_CHARS`].
const MAX_KEY_BYTES: usize = 64;
const MAX_MESSAGE_BYTES: usize = 160;
const QUOTED_CHARS: usize = 40;
/// Key segments shown before the gap in a longer key, and the longest segment shown.
const KEY_SEGMENTS_SHOWN: usize = 3;
const SEGMENT_CHARS: usize = 24;
const ELLIPSIS: &str = "…";

/// A value as quoted in a message: its first [`QUOTED_CHARS`] characters, then `…`.
fn short(value: &str) -> std::borrow::Cow<'_, str> {
    shorten(value, QUOTED_CHARS)
}

fn shorten(value: &str, chars: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(chars) {
        Some((end, _)) => format!("{}{ELLIPSIS}", value.get(..end).unwrap_or_default()).into(),
        None => value.into(),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", text.get(..end).unwrap_or_default())
}

/// Which part of a key/value pair an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Key,
    Value,
}

/// A failed check on the finished config, before it has a line and column.
#[derive(Debug)]
struct Problem {
    /// Keys the problem may be blamed on, best first: the first one present in the file
    /// is reported (a cross-field problem may involve a key left at its default).
    keys: Vec<Vec<String>>,
    part: Part,
    message: String,
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
    fn locate(self, doc: &DeTable<'_>) -> Located {
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
fn find(doc: &DeTable<'_>, path: &[String]) -> Option<(Range<usize>, Range<usize>)> {
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

fn validate(config: &Config) -> Result<(), Problem> {
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

fn check_absolute(path: &Path, key: &[&str]) -> Result<(), Problem> {
    if !path.is_absolute() {
        return Err(Problem::at(key, Part::Value, "must be an absolute path"));
    }
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(Problem::at(key, Part::Value, "must not contain NUL"));
    }
    Ok(())
}

fn check_socket_path(path: &Path, key: &[&str]) -> Result<(), Problem> {
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
fn dotted(path: &[String]) -> String {
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
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
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

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(text, "t.toml") {
            Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_spec() {
        let c = Config::default();
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.journald, Journald::Auto);
        assert_eq!(c.environment.gvisor, GvisorSetting::Auto);
        assert_eq!(c.cgroup.mode, CgroupMode::Auto);
        assert!(c.cgroup.stub_missing);
        assert_eq!(c.dockerd.path, "dockerd");
        assert!(c.dockerd.args.is_empty());
        assert_eq!(c.dockerd.socket, Path::new("/var/run/docker.sock"));
        assert!(c.dockerd.env.is_empty());
        assert_eq!(c.dockerd.restart, RestartPolicy::Always);
        assert_eq!(c.dockerd.backoff_initial, Duration::from_millis(100));
        assert_eq!(c.dockerd.backoff_max, Duration::from_secs(30));
        assert_eq!(c.dockerd.max_restarts, 10);
        assert_eq!(c.dockerd.restart_window, Duration::from_secs(300));
        assert_eq!(c.dockerd.stop_timeout, Duration::from_secs(8));
        assert_eq!(c.dockerd.shutdown_timeout(), Duration::from_secs(6));
        assert_eq!(c.dockerd.log_tail, 200);
        assert_eq!(c.network.mode, NetworkMode::Auto);
        assert_eq!(c.readiness.file, Path::new("/run/dind-init/ready"));
        assert_eq!(c.readiness.socket, Path::new("/run/dind-init/init.sock"));
        assert_eq!(c.readiness.socket_mode, 0o660);
        assert_eq!(c.readiness.tcp, None);
        assert_eq!(c.readiness.interval, Duration::from_secs(5));
        assert_eq!(c.readiness.timeout, Duration::from_secs(2));
        assert_eq!(c.readiness.failure_threshold, 3);
        assert!(!c.readiness.restart_on_unhealthy);
        assert_eq!(c.readiness.sd_notify, SdNotify::Auto);
        assert!(c.command.wait_for_ready);
        assert_eq!(c.command.ready_timeout, Duration::from_secs(60));
    }

    #[test]
    fn empty_text_and_empty_tables_give_defaults() {
        for text in [
            "",
            "\n# nothing\n",
            "[log]\n[environment]\n[cgroup]\n[dockerd]\n[network]\n[readiness]\n[command]\n",
        ] {
            assert_eq!(
                parse(text, "t.toml").unwrap(),
                Config::default(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn example_file_parses_to_defaults() {
        let text = include_str!("../init.toml.example");
        assert_eq!(parse(text, "init.toml.example").unwrap(), Config::default());
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
[log]
level = "debug"
format = "json"
journald = "off"

[environment]
gvisor = "yes"

[cgroup]
mode = "v1"
stub_missing = false

[dockerd]
path = "/usr/local/bin/dockerd"
args = ["--storage-driver=vfs", "--debug"]
socket = "/run/docker.sock"
env = { HTTP_PROXY = "http://proxy:3128", "A.B" = "1" }
restart = "on-failure"
backoff_initial = "1s"
backoff_max = "1m30s"
max_restarts = 0
restart_window = "1h"
stop_timeout = "1s"
log_tail = 100000

[network]
mode = "off"

[readiness]
file = "/tmp/ready"
socket = "/tmp/init.sock"
socket_mode = "600"
tcp = "[::1]:9323"
interval = "0s"
timeout = "500ms"
failure_threshold = 1
restart_on_unhealthy = true
sd_notify = "off"
verify = "container"

[command]
wait_for_ready = false
ready_timeout = "2m"
"#;
        let c = parse(text, "t.toml").unwrap();
        let expected = Config {
            log: LogConfig {
                level: LogLevel::Debug,
                format: LogFormat::Json,
                journald: Journald::Off,
            },
            environment: EnvironmentConfig {
                gvisor: GvisorSetting::Yes,
            },
            cgroup: CgroupConfig {
                mode: CgroupMode::V1,
                stub_missing: false,
            },
            dockerd: DockerdConfig {
                path: "/usr/local/bin/dockerd".to_owned(),
                args: vec!["--storage-driver=vfs".to_owned(), "--debug".to_owned()],
                socket: PathBuf::from("/run/docker.sock"),
                env: BTreeMap::from([
                    ("A.B".to_owned(), "1".to_owned()),
                    ("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned()),
                ]),
                restart: RestartPolicy::OnFailure,
                backoff_initial: Duration::from_secs(1),
                backoff_max: Duration::from_secs(90),
                max_restarts: 0,
                restart_window: Duration::from_secs(3600),
                stop_timeout: Duration::from_secs(1),
                log_tail: 100_000,
            },
            network: NetworkConfig {
                mode: NetworkMode::Off,
            },
            readiness: ReadinessConfig {
                file: PathBuf::from("/tmp/ready"),
                socket: PathBuf::from("/tmp/init.sock"),
                socket_mode: 0o600,
                tcp: Some("[::1]:9323".parse().unwrap()),
                interval: Duration::ZERO,
                timeout: Duration::from_millis(500),
                failure_threshold: 1,
                restart_on_unhealthy: true,
                sd_notify: SdNotify::Off,
                verify: Verify::Container,
            },
            command: CommandConfig {
                wait_for_ready: false,
                ready_timeout: Duration::from_secs(120),
            },
        };
        assert_eq!(c, expected);
        assert_eq!(c.dockerd.shutdown_timeout(), Duration::ZERO);
    }

    #[test]
    fn dotted_keys_and_inline_tables_work() {
        let c = parse(
            "dockerd.path = \"/d\"\nreadiness = { tcp = \"127.0.0.1:1\" }\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.dockerd.path, "/d");
        assert_eq!(c.readiness.tcp, Some("127.0.0.1:1".parse().unwrap()));
    }

    /// (what, text, expected message prefix "t.toml:L:C: key: ", expected fragment)
    const ERRORS: &[(&str, &str, &str, &str)] = &[
        // unknown keys and tables
        ("unknown top-level key", "levle = \"info\"\n", "t.toml:1:1: levle: ", "unknown key (expected one of: log, environment, cgroup, dockerd, network, readiness, command)"),
        ("unknown key in table", "[log]\nlevel = \"info\"\nlevle = \"info\"\n", "t.toml:3:1: log.levle: ", "unknown key (expected one of: level, format, journald)"),
        ("unknown key, single choice", "[network]\nmod = \"off\"\n", "t.toml:2:1: network.mod: ", "unknown key (expected one of: mode)"),
        ("unknown table", "[log]\n\n[logging]\nlevel = \"x\"\n", "t.toml:3:2: logging: ", "unknown table (expected one of: log, environment, cgroup"),
        ("unknown subtable", "[dockerd.extra]\nx = 1\n", "t.toml:1:10: dockerd.extra: ", "unknown table (expected one of: path, args"),
        ("unknown dotted key", "log.colour = true\n", "t.toml:1:5: log.colour: ", "unknown key"),
        // wrong types
        ("string for bool", "[cgroup]\nstub_missing = \"yes\"\n", "t.toml:2:16: cgroup.stub_missing: ", "invalid type: string \"yes\", expected a boolean"),
        ("integer for table", "log = 5\n", "t.toml:1:7: log: ", "invalid type: integer, expected a table"),
        ("empty array for table", "\nlog = []\n", "t.toml:2:7: log: ", "invalid type: array, expected a table"),
        ("array for table", "log = [\"debug\"]\n", "t.toml:1:7: log: ", "invalid type: array, expected a table"),
        ("array of tables", "[[dockerd]]\npath = \"x\"\n", "t.toml:1:1: dockerd: ", "invalid type: array, expected a table"),
        ("string for integer", "[dockerd]\nmax_restarts = \"3\"\n", "t.toml:2:16: dockerd.max_restarts: ", "expected a whole number from 0 to 4294967295"),
        ("negative u32", "[dockerd]\nmax_restarts = -1\n", "t.toml:2:16: dockerd.max_restarts: ", "invalid value: integer `-1`"),
        ("float for usize", "[dockerd]\nlog_tail = 1.5\n", "t.toml:2:12: dockerd.log_tail: ", "expected a non-negative whole number"),
        ("integer in args", "[dockerd]\nargs = [\"-D\",\n  7]\n", "t.toml:3:3: dockerd.args[1]: ", "invalid type: integer `7`, expected a string"),
        ("args not array", "[dockerd]\nargs = \"-D\"\n", "t.toml:2:8: dockerd.args: ", "expected an array"),
        ("env not table", "[dockerd]\nenv = []\n", "t.toml:2:7: dockerd.env: ", "expected a table"),
        ("env value not string", "[dockerd]\nenv = { A = 1 }\n", "t.toml:2:13: dockerd.env.A: ", "invalid type: integer `1`, expected a string"),
        ("env subtable value", "[dockerd.env]\nB = \"x\"\nA = true\n", "t.toml:3:5: dockerd.env.A: ", "expected a string"),
        ("path integer", "[readiness]\nfile = 1\n", "t.toml:2:8: readiness.file: ", "expected a path string"),
        // durations
        ("duration without unit", "[dockerd]\n\n\n\n\n\nstop_timeout = \"8\"\n", "t.toml:7:16: dockerd.stop_timeout: ", "invalid duration `8`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
        ("duration bad unit", "[dockerd]\nbackoff_max = \"5x\"\n", "t.toml:2:15: dockerd.backoff_max: ", "invalid duration `5x`: expected a number followed by ms, s, m or h"),
        ("duration integer", "[command]\nready_timeout = 60\n", "t.toml:2:17: command.ready_timeout: ", "invalid duration `60`: write a quoted number with a unit, e.g. \"60s\""),
        ("duration negative", "[readiness]\ninterval = \"-1s\"\n", "t.toml:2:12: readiness.interval: ", "invalid duration `-1s`"),
        ("duration space", "[readiness]\ninterval = \"5 s\"\n", "t.toml:2:12: readiness.interval: ", "invalid duration `5 s`"),
        ("duration empty", "[readiness]\ninterval = \"\"\n", "t.toml:2:12: readiness.interval: ", "empty duration"),
        ("duration fraction", "[readiness]\ninterval = \"1.5s\"\n", "t.toml:2:12: readiness.interval: ", "fractions are not supported"),
        ("duration order", "[readiness]\ninterval = \"30s1m\"\n", "t.toml:2:12: readiness.interval: ", "largest to smallest"),
        ("duration overflow", "[readiness]\ninterval = \"99999999999999999999999h\"\n", "t.toml:2:12: readiness.interval: ", "too large"),
        ("duration float", "[readiness]\ntimeout = 1.5\n", "t.toml:2:11: readiness.timeout: ", "expected a duration string such as \"5s\""),
        // enums
        ("bad level", "[log]\nlevel = \"verbose\"\n", "t.toml:2:9: log.level: ", "invalid value `verbose`: expected one of: error, warn, info, debug, trace"),
        ("uppercase level", "[log]\nlevel = \"INFO\"\n", "t.toml:2:9: log.level: ", "invalid value `INFO`"),
        ("level integer", "[log]\nlevel = 3\n", "t.toml:2:9: log.level: ", "invalid type: integer `3`, expected a string, one of: error, warn, info, debug, trace"),
        ("bad restart", "[dockerd]\nrestart = \"on_failure\"\n", "t.toml:2:11: dockerd.restart: ", "expected one of: always, on-failure, never"),
        ("bad gvisor", "[environment]\ngvisor = \"true\"\n", "t.toml:2:10: environment.gvisor: ", "invalid value `true`: expected one of: auto, yes, no"),
        ("gvisor boolean", "[environment]\ngvisor = true\n", "t.toml:2:10: environment.gvisor: ", "invalid type: boolean `true`, expected a string, one of: auto, yes, no"),
        ("unknown environment key", "[environment]\ngvisor = \"auto\"\nrunsc = \"yes\"\n", "t.toml:3:1: environment.runsc: ", "unknown key (expected one of: gvisor)"),
        ("bad cgroup mode", "[cgroup]\nmode = \"hybrid\"\n", "t.toml:2:8: cgroup.mode: ", "expected one of: auto, v1, v2, off"),
        ("bad journald", "[log]\njournald = \"yes\"\n", "t.toml:2:12: log.journald: ", "expected one of: auto, on, off"),
        ("bad network", "[network]\nmode = \"on\"\n", "t.toml:2:8: network.mode: ", "expected one of: auto, off"),
        ("bad sd_notify", "[readiness]\nsd_notify = \"on\"\n", "t.toml:2:13: readiness.sd_notify: ", "expected one of: auto, off"),
        ("bad format", "[log]\nformat = \"logfmt\"\n", "t.toml:2:10: log.format: ", "expected one of: text, json"),
        // socket_mode
        ("mode not octal", "[readiness]\nsocket_mode = \"0980\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `0980`: expected 3 or 4 octal digits"),
        ("mode too long", "[readiness]\nsocket_mode = \"00660\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `00660`"),
        ("mode too short", "[readiness]\nsocket_mode = \"66\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `66`"),
        ("mode sign", "[readiness]\nsocket_mode = \"+660\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `+660`"),
        ("mode integer", "[readiness]\nsocket_mode = 660\n", "t.toml:2:15: readiness.socket_mode: ", "write it as a quoted octal string"),
        // tcp
        ("tcp hostname", "[readiness]\ntcp = \"localhost:9323\"\n", "t.toml:2:7: readiness.tcp: ", "invalid address `localhost:9323`: expected IP:port"),
        ("tcp no port", "[readiness]\ntcp = \"0.0.0.0\"\n", "t.toml:2:7: readiness.tcp: ", "invalid address `0.0.0.0`"),
        ("tcp port 0", "[readiness]\ntcp = \"0.0.0.0:0\"\n", "t.toml:2:7: readiness.tcp: ", "port must not be 0"),
        ("tcp integer", "[readiness]\ntcp = 9323\n", "t.toml:2:7: readiness.tcp: ", "invalid type: integer `9323`"),
        // out-of-range numbers
        ("u32 overflow", "[readiness]\nfailure_threshold = 4294967296\n", "t.toml:2:21: readiness.failure_threshold: ", "invalid value"),
        ("failure_threshold 0", "[readiness]\nfailure_threshold = 0\n", "t.toml:2:21: readiness.failure_threshold: ", "must be at least 1"),
        ("log_tail 0", "[dockerd]\nlog_tail = 0\n", "t.toml:2:12: dockerd.log_tail: ", "must be between 1 and 100000, got 0"),
        ("log_tail huge", "[dockerd]\nlog_tail = 100001\n", "t.toml:2:12: dockerd.log_tail: ", "must be between 1 and 100000"),
        ("stop_timeout too short", "[dockerd]\nstop_timeout = \"999ms\"\n", "t.toml:2:16: dockerd.stop_timeout: ", "must be at least 1s"),
        ("restart_window zero", "[dockerd]\nrestart_window = \"0s\"\n", "t.toml:2:18: dockerd.restart_window: ", "must be more than 0s"),
        ("backoff_initial zero", "[dockerd]\nbackoff_initial = \"0ms\"\n", "t.toml:2:19: dockerd.backoff_initial: ", "must be more than 0s"),
        ("timeout zero", "[readiness]\ntimeout = \"0s\"\n", "t.toml:2:11: readiness.timeout: ", "must be more than 0s"),
        ("ready_timeout zero", "[command]\nready_timeout = \"0s\"\n", "t.toml:2:17: command.ready_timeout: ", "must be more than 0s"),
        // cross-field and strings
        ("backoff order, both set", "[dockerd]\nbackoff_max = \"1s\"\nbackoff_initial = \"2s\"\n", "t.toml:3:19: dockerd.backoff_initial: ", "backoff_initial (2s) must not exceed backoff_max (1s)"),
        ("backoff order, initial set", "[dockerd]\nbackoff_initial = \"1m\"\n", "t.toml:2:19: dockerd.backoff_initial: ", "backoff_initial (1m) must not exceed backoff_max (30s)"),
        ("backoff order, max set", "[dockerd]\nbackoff_max = \"50ms\"\n", "t.toml:2:15: dockerd.backoff_max: ", "backoff_initial (100ms) must not exceed backoff_max (50ms)"),
        ("empty dockerd path", "[dockerd]\npath = \"\"\n", "t.toml:2:8: dockerd.path: ", "must not be empty"),
        ("NUL in args", "[dockerd]\nargs = [\"a\", \"b\\u0000\"]\n", "t.toml:2:14: dockerd.args[1]: ", "must not contain NUL"),
        ("relative socket", "[dockerd]\nsocket = \"docker.sock\"\n", "t.toml:2:10: dockerd.socket: ", "must be an absolute path"),
        ("relative ready file", "[readiness]\nfile = \"ready\"\n", "t.toml:2:8: readiness.file: ", "must be an absolute path"),
        ("relative status socket", "[readiness]\nsocket = \"./init.sock\"\n", "t.toml:2:10: readiness.socket: ", "must be an absolute path"),
        ("long socket path", "[readiness]\nsocket = \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n", "t.toml:2:10: readiness.socket: ", "is 108 bytes long"),
        ("same sockets", "[readiness]\nsocket = \"/var/run/docker.sock\"\n", "t.toml:2:10: readiness.socket: ", "readiness.socket and dockerd.socket must differ"),
        ("same sockets, dockerd set", "[dockerd]\nsocket = \"/run/dind-init/init.sock\"\n", "t.toml:2:10: dockerd.socket: ", "readiness.socket and dockerd.socket must differ"),
        ("ready file is dockerd socket", "[dockerd]\nsocket = \"/run/dind-init/ready\"\n", "t.toml:2:10: dockerd.socket: ", "readiness.file must differ"),
        ("ready file is socket", "[readiness]\nfile = \"/run/dind-init/init.sock\"\n", "t.toml:2:8: readiness.file: ", "must differ"),
        ("env empty name", "[dockerd.env]\n\"\" = \"x\"\n", "t.toml:2:1: dockerd.env.\"\": ", "names must not be empty"),
        ("env name with =", "[dockerd]\nenv = { \"A=B\" = \"x\" }\n", "t.toml:2:9: dockerd.env.\"A=B\": ", "must not contain `=` or NUL"),
        ("env NUL value", "[dockerd.env]\nA = \"\\u0000\"\n", "t.toml:2:5: dockerd.env.A: ", "must not contain NUL"),
        // syntax
        ("duplicate key", "[log]\nlevel = \"info\"\nlevel = \"warn\"\n", "t.toml:3:1: log.level: ", "duplicate key"),
        ("unquoted string", "[dockerd]\nstop_timeout = 8s\n", "t.toml:2:16: dockerd.stop_timeout: ", "string values must be quoted"),
        ("missing value", "[log]\nlevel =\n", "t.toml:2:8: log.level: ", ""),
    ];

    #[test]
    fn errors_name_key_line_and_column() {
        for (what, text, prefix, fragment) in ERRORS {
            let message = err(text);
            assert!(
                message.starts_with(prefix) && message.contains(fragment),
                "{what}: got {message:?}, want prefix {prefix:?} and {fragment:?}"
            );
            assert!(!message.contains('\n'), "{what}: multi-line {message:?}");
        }
    }

    #[test]
    fn syntax_error_outside_a_key_still_has_a_position() {
        let message = err("[log]\n[dockerd\n");
        assert!(message.starts_with("t.toml:2:9: "), "{message}");
    }

    #[test]
    fn invalid_error_fields() {
        match parse("\n[log]\nlevel = \"x\"\n", "/etc/x.toml") {
            Err(ConfigError::Invalid {
                origin,
                line,
                column,
                key,
                ..
            }) => {
                assert_eq!(origin, "/etc/x.toml");
                assert_eq!((line, column), (3, 9));
                assert_eq!(key.as_deref(), Some("log.level"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn columns_count_characters() {
        let message = err("[dockerd]\nenv = { \"é\" = \"x\", \"A=\" = \"y\" }\n");
        assert!(
            message.starts_with("t.toml:2:20: dockerd.env.\"A=\": "),
            "{message}"
        );
    }

    #[test]
    fn accepted_values() {
        type Check = fn(&Config) -> bool;
        let ok: &[(&str, Check)] = &[
            ("[readiness]\nsocket_mode = \"0660\"", |c| {
                c.readiness.socket_mode == 0o660
            }),
            ("[readiness]\nsocket_mode = \"7777\"", |c| {
                c.readiness.socket_mode == 0o7777
            }),
            ("[readiness]\nsocket_mode = \"000\"", |c| {
                c.readiness.socket_mode == 0
            }),
            ("[readiness]\ntcp = \"\"", |c| c.readiness.tcp.is_none()),
            ("[readiness]\ntcp = \"0.0.0.0:9323\"", |c| {
                c.readiness.tcp == Some(SocketAddr::from(([0, 0, 0, 0], 9323)))
            }),
            ("[readiness]\ninterval = \"0s\"", |c| {
                c.readiness.interval.is_zero()
            }),
            ("[dockerd]\nbackoff_initial = \"30s\"", |c| {
                c.dockerd.backoff_initial == c.dockerd.backoff_max
            }),
            ("[dockerd]\nlog_tail = 1", |c| c.dockerd.log_tail == 1),
            ("[dockerd]\nmax_restarts = 4294967295", |c| {
                c.dockerd.max_restarts == u32::MAX
            }),
            ("[dockerd]\nrestart = \"never\"", |c| {
                c.dockerd.restart == RestartPolicy::Never
            }),
            ("[log]\nlevel = \"trace\"", |c| {
                c.log.level == LogLevel::Trace
            }),
            ("[cgroup]\nmode = \"v2\"", |c| {
                c.cgroup.mode == CgroupMode::V2
            }),
            ("[environment]\ngvisor = \"no\"", |c| {
                c.environment.gvisor == GvisorSetting::No
            }),
            ("[log]\njournald = \"on\"", |c| {
                c.log.journald == Journald::On
            }),
        ];
        for (text, check) in ok {
            let config = parse(text, "t.toml").unwrap();
            assert!(check(&config), "{text}: {config:?}");
        }
    }

    #[test]
    fn enum_spellings_round_trip() {
        fn round_trip<T: Choice + std::fmt::Debug + PartialEq>(
            table: &str,
            key: &str,
            get: fn(&Config) -> T,
        ) {
            for value in T::ALL {
                let text = format!("[{table}]\n{key} = {:?}\n", value.name());
                let config = parse(&text, "t.toml").unwrap();
                assert_eq!(get(&config), *value, "{text}");
            }
        }
        round_trip("log", "level", |c| c.log.level);
        round_trip("log", "format", |c| c.log.format);
        round_trip("log", "journald", |c| c.log.journald);
        round_trip("environment", "gvisor", |c| c.environment.gvisor);
        round_trip("cgroup", "mode", |c| c.cgroup.mode);
        round_trip("dockerd", "restart", |c| c.dockerd.restart);
        round_trip("network", "mode", |c| c.network.mode);
        round_trip("readiness", "sd_notify", |c| c.readiness.sd_notify);
        round_trip("readiness", "verify", |c| c.readiness.verify);
    }

    /// The `toml` crate's own rejections (syntax, TOML's rules) and TOML types that no key
    /// takes: each still names the key, line and column. The messages after the key are
    /// the crate's wording.
    const TOML_ERRORS: &[(&str, &str, &str)] = &[
        (
            "[command]\nready_timeout = 1979-05-27\n",
            "t.toml:2:17: command.ready_timeout: ",
            "invalid type: date-time `1979-05-27`, expected a duration string such as \"5s\"",
        ),
        (
            "[cgroup]\nstub_missing = 1.0\n",
            "t.toml:2:16: cgroup.stub_missing: ",
            "invalid type: float `1.0`, expected a boolean",
        ),
        (
            "[dockerd]\nmax_restarts = 010\n",
            "t.toml:2:16: dockerd.max_restarts: ",
            "unexpected leading zero",
        ),
        (
            "[dockerd]\npath = \"\\q\"\n",
            "t.toml:2:10: dockerd.path: ",
            "missing escaped value",
        ),
        ("[log]\n[log]\n", "t.toml:2:2: log: ", "duplicate key"),
        (
            "dockerd = { path = \"/d\" }\n[dockerd]\n",
            "t.toml:2:2: dockerd: ",
            "duplicate key",
        ),
        (
            "[dockerd]\nenv = { A = \"x\" }\n[dockerd.env]\n",
            "t.toml:3:10: dockerd.env: ",
            "duplicate key",
        ),
        (
            "[[dockerd.env]]\n",
            "t.toml:1:1: dockerd.env: ",
            "invalid type: array, expected a table",
        ),
        (
            "[log]\nlevel = \"x\" junk\n",
            "t.toml:2:13: log.level: ",
            "unexpected key or value",
        ),
        (
            "[log]\nlevel = \"a\\nb\"\n",
            "t.toml:2:9: log.level: ",
            "invalid value `a\\nb`",
        ),
        (
            "[dockerd]\nargs = [\"a\", [\"b\"]]\n",
            "t.toml:2:14: dockerd.args[1]: ",
            "invalid type: array, expected a string",
        ),
        (
            "[dockerd]\nargs = [\"a\",\n  \"b\" \"c\"]\n",
            "t.toml:3:7: dockerd.args: ",
            "missing comma between array elements",
        ),
        (
            "[readiness]\ntcp = { a = 1 }\n",
            "t.toml:2:7: readiness.tcp: ",
            "invalid type: table, expected an address string",
        ),
        (
            "[dockerd.env]\nA.B = \"x\"\n",
            "t.toml:2:1: dockerd.env.A: ",
            "invalid type: table, expected a string",
        ),
        (
            "[dockerd]\nmax_restarts = 99999999999999999999\n",
            "t.toml:2:16: dockerd.max_restarts: ",
            "invalid value: integer `99999999999999999999`, expected a whole number from 0",
        ),
        (
            "[dockerd]\nlog_tail = -1\n",
            "t.toml:2:12: dockerd.log_tail: ",
            "invalid value: integer `-1`, expected a non-negative whole number",
        ),
        // The key of a syntax error: inside an inline table, after a comment line, in a
        // header, in a multi-line array, and none on a line of its own.
        (
            "[dockerd]\nenv = { A = \"x\", B = 1979-13-01 }\n",
            "t.toml:2:22: dockerd.env.B: ",
            "",
        ),
        (
            "[log]\nlevel = \"info\"\n# note\nformat = json\n",
            "t.toml:4:10: log.format: ",
            "string values must be quoted",
        ),
        (
            "[log]\n[dockerd.\"x\n",
            "t.toml:2:12: dockerd.x: ",
            "unclosed table",
        ),
        (
            "[dockerd]\nargs = [\n  \"a\",\n  b,\n]\n",
            "t.toml:4:3: dockerd.args: ",
            "string values must be quoted",
        ),
        ("[log]\nlevel = \"info\"\n= 1\n", "t.toml:3:1: ", ""),
        (
            "[log]\nlevel =   # no value\n",
            "t.toml:2:11: log.level: ",
            "missing value",
        ),
    ];

    #[test]
    fn toml_errors_name_key_line_and_column() {
        for (text, prefix, fragment) in TOML_ERRORS {
            let message = err(text);
            assert!(
                message.starts_with(prefix) && message.contains(fragment),
                "{text:?}: got {message:?}, want prefix {prefix:?} and {fragment:?}"
            );
            assert!(!message.contains('\n'), "{text:?}: multi-line {message:?}");
        }
        // No key at all: the error is `file:line:col: message`.
        let message = err("[log]\nlevel = \"info\"\n= 1\n");
        assert!(!message.contains("log.level"), "{message}");
    }

    /// TOML 1.1 forms the crate reads that the old hand-written subset rejected.
    #[test]
    fn toml_1_1_forms_are_accepted() {
        let text = "[dockerd]\nmax_restarts = 0x10\npath = \"\"\"/d\"\"\"\n\
                    env = { A = \"x\",\n B = \"\\x41\" }\nargs = ['''a''']\n";
        let c = parse(text, "t.toml").unwrap();
        assert_eq!(c.dockerd.max_restarts, 16);
        assert_eq!(c.dockerd.path, "/d");
        assert_eq!(c.dockerd.args, ["a"]);
        assert_eq!(c.dockerd.env.get("B").map(String::as_str), Some("A"));
    }

    /// SPEC §3: whatever the input, one line of at most ~300 bytes with line:column and
    /// the key where known; quoted values shortened. The integration tests run the same
    /// kinds of input through the binary, in `check` and as PID 1.
    #[test]
    fn hostile_input_gives_one_short_line() {
        let deep_key = format!("{}=1\n", vec!["a"; 200_000].join("."));
        let deep_header = format!("[{}]\n", vec!["a"; 200_000].join("."));
        let arrays = format!("x = {}\n", "[".repeat(1_000_000));
        let tables = format!("x = {}\n", "{a=".repeat(300_000));
        let long_string = format!("[log]\nlevel = \"{}\"\n", "a".repeat(1 << 20));
        let long_bare = format!("[log]\nlevel = {}\n", "a".repeat(1 << 20));
        let long_key = format!("[dockerd.env]\n\"{}\" = 1\n", "k".repeat(1 << 20));
        let long_duration = format!("[dockerd]\nstop_timeout = \"{}\"\n", "9".repeat(1 << 20));
        let long_integer = format!("[dockerd]\nlog_tail = {}\n", "9".repeat(1 << 20));
        let controls = format!("[log]\nlevel = \"{}\"\n", "\\u001b".repeat(1000));
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "deep key",
                deep_key.as_bytes(),
                "t.toml:1:1: a.a.a.….a: a key of 200000 dotted parts is more than",
            ),
            (
                "deep header",
                deep_header.as_bytes(),
                "t.toml:1:2: a.a.a.….a: a key of 200000 dotted parts is more than",
            ),
            ("nested arrays", arrays.as_bytes(), "t.toml:1:"),
            ("nested inline tables", tables.as_bytes(), "t.toml:1:"),
            (
                "invalid UTF-8",
                b"[log]\nlevel = \"in\xfffo\"\n",
                "t.toml:2:12: log.level: invalid UTF-8 (byte 0xff)",
            ),
            (
                "invalid UTF-8 in a key",
                b"[log]\nle\xc3vel = 1\n",
                "t.toml:2:3: ",
            ),
            (
                "long string",
                long_string.as_bytes(),
                "t.toml:2:9: log.level: invalid value `aaaaaaaa",
            ),
            (
                "long bare value",
                long_bare.as_bytes(),
                "t.toml:2:9: log.level: string values must be quoted",
            ),
            (
                "long key",
                long_key.as_bytes(),
                "t.toml:2:1048582: dockerd.env.kkkkkkkkkkkkkkkkkkkkkkkk…: invalid type",
            ),
            (
                "long duration",
                long_duration.as_bytes(),
                "t.toml:2:16: dockerd.stop_timeout: invalid duration `9999",
            ),
            (
                "long integer",
                long_integer.as_bytes(),
                "t.toml:2:12: dockerd.log_tail: invalid value: integer `9999",
            ),
            (
                "control characters",
                controls.as_bytes(),
                "t.toml:2:9: log.level: invalid value `\\u{1b}",
            ),
        ];
        for (what, input, prefix) in cases {
            let message = match parse_bytes(input, "t.toml") {
                Ok(config) => panic!("{what}: accepted as {config:?}"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.starts_with(prefix),
                "{what}: {message:?} lacks {prefix:?}"
            );
            assert!(
                message.len() <= 250,
                "{what}: {} bytes: {message:?}",
                message.len()
            );
            assert!(
                !message.chars().any(char::is_control),
                "{what}: {message:?}"
            );
        }
        let too_big = vec![b' '; usize::try_from(MAX_FILE_BYTES).unwrap() + 1];
        let message = parse_bytes(&too_big, "t.toml").unwrap_err().to_string();
        assert!(
            message.starts_with("t.toml:1:2097153: the file is larger than 2 MiB"),
            "{message}"
        );
    }

    #[test]
    fn toml_forms_parse_alike() {
        let plain = parse(
            "[dockerd]\nargs = [\"a\", \"b\"]\nenv = { A = \"1\" }\n",
            "t.toml",
        )
        .unwrap();
        for text in [
            "dockerd.args = ['a', 'b']\ndockerd.env.A = '1'\n",
            "[dockerd]\r\nargs = [ # comment\r\n  \"a\",\r\n  \"\\u0062\", # b\r\n]\r\n[dockerd.env]\r\n\"A\" = \"1\"\r\n",
            "\u{feff}dockerd = { args = [\"a\", \"b\"], env = { A = \"1\" } }",
            "[dockerd.env]\nA = \"1\"\n[dockerd]\nargs = [\"a\", \"b\",]\n",
        ] {
            assert_eq!(parse(text, "t.toml").unwrap(), plain, "{text:?}");
        }
    }

    #[test]
    fn log_levels_map_to_tracing() {
        use tracing::level_filters::LevelFilter;
        let table = [
            (LogLevel::Error, LevelFilter::ERROR),
            (LogLevel::Warn, LevelFilter::WARN),
            (LogLevel::Info, LevelFilter::INFO),
            (LogLevel::Debug, LevelFilter::DEBUG),
            (LogLevel::Trace, LevelFilter::TRACE),
        ];
        for (level, filter) in table {
            assert_eq!(level.as_tracing(), filter);
        }
    }

    #[test]
    fn shutdown_timeout_saturates() {
        let table = [
            (8_000, 6_000),
            (2_000, 0),
            (1_000, 0),
            (2_500, 500),
            (60_000, 58_000),
        ];
        for (stop, shutdown) in table {
            let d = DockerdConfig {
                stop_timeout: Duration::from_millis(stop),
                ..DockerdConfig::default()
            };
            assert_eq!(
                d.shutdown_timeout(),
                Duration::from_millis(shutdown),
                "{stop}"
            );
        }
    }

    #[test]
    fn parse_duration_accepts() {
        let table = [
            ("0s", 0),
            ("0ms", 0),
            ("100ms", 100),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h0m5s", 3_605_000),
            ("1s500ms", 1_500),
            ("007s", 7_000),
            ("90s", 90_000),
            ("8760h", 8760 * 3_600_000),
        ];
        for (text, ms) in table {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_duration_rejects() {
        let table = [
            ("", "empty duration: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
            ("5", "invalid duration `5`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
            ("0", "invalid duration `0`: expected"),
            ("5x", "invalid duration `5x`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
            ("-1s", "invalid duration `-1s`: expected"),
            ("+1s", "invalid duration `+1s`: expected"),
            ("5 s", "invalid duration `5 s`: expected"),
            (" 5s", "invalid duration ` 5s`: expected"),
            ("5s ", "invalid duration `5s `: expected"),
            ("5S", "invalid duration `5S`: expected"),
            ("s", "invalid duration `s`: expected"),
            ("5us", "invalid duration `5us`: expected"),
            ("1d", "invalid duration `1d`: expected"),
            ("1.5s", "invalid duration `1.5s`: fractions are not supported"),
            ("30s1m", "invalid duration `30s1m`: units must go from largest to smallest"),
            ("1s1s", "invalid duration `1s1s`: units must go from largest to smallest"),
            ("8761h", "invalid duration `8761h`: too large (at most 8760h)"),
            ("8760h1ms", "invalid duration `8760h1ms`: too large"),
            ("18446744073709551616ms", "invalid duration `18446744073709551616ms`: too large"),
            ("5s5", "invalid duration `5s5`: expected"),
        ];
        for (text, want) in table {
            let got = parse_duration(text).unwrap_err();
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn format_duration_forms() {
        let table = [
            (0, "0s"),
            (100, "100ms"),
            (5_000, "5s"),
            (120_000, "2m"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (3_605_000, "1h5s"),
            (1_500, "1s500ms"),
            (300_000, "5m"),
        ];
        for (ms, text) in table {
            assert_eq!(format_duration(Duration::from_millis(ms)), text);
        }
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1ms");
    }

    #[test]
    fn durations_round_trip() {
        let samples = [
            0,
            1,
            999,
            1_000,
            59_999,
            60_000,
            61_001,
            3_599_999,
            86_400_000,
            8760 * 3_600_000,
        ];
        for ms in samples {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
        for text in ["100ms", "5s", "2m", "1h", "1m30s", "1h1m1s1ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn locate_precedence() {
        let dir =
            std::env::temp_dir().join(format!("dind-init-config-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let present = dir.join("init.toml");
        std::fs::write(&present, "").unwrap();
        let absent = dir.join("absent.toml");
        let cli = Path::new("/cli.toml");
        let env = OsStr::new("/env.toml");
        let empty = OsStr::new("");

        let check = |cli: Option<&Path>, env: Option<&OsStr>, default: &Path, want: Source| {
            assert_eq!(
                locate_with_default(cli, env, default),
                want,
                "{cli:?} {env:?} {default:?}"
            );
        };
        check(Some(cli), Some(env), &present, Source::Explicit(cli.into()));
        check(Some(cli), None, &absent, Source::Explicit(cli.into()));
        check(None, Some(env), &present, Source::Explicit(env.into()));
        check(None, Some(env), &absent, Source::Explicit(env.into()));
        check(
            None,
            Some(empty),
            &present,
            Source::Default(present.clone()),
        );
        check(None, None, &present, Source::Default(present.clone()));
        check(None, Some(empty), &absent, Source::Builtin);
        check(None, None, &absent, Source::Builtin);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_sources() {
        assert_eq!(load(&Source::Builtin).unwrap(), Config::default());

        let missing = Path::new("/nonexistent/dind-init/init.toml");
        let e = load(&Source::Explicit(missing.into())).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert_eq!(
            e.to_string(),
            "cannot read config /nonexistent/dind-init/init.toml: No such file or directory (os error 2)"
        );

        let dir =
            std::env::temp_dir().join(format!("dind-init-config-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("init.toml");
        std::fs::write(&file, "[dockerd]\nlog_tail = 5\n").unwrap();
        assert_eq!(
            load(&Source::Default(file.clone()))
                .unwrap()
                .dockerd
                .log_tail,
            5
        );
        std::fs::write(&file, "[dockerd]\nlog_tail = 0\n").unwrap();
        let e = load(&Source::Explicit(file.clone())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2:12: dockerd.log_tail: must be between 1 and 100000, got 0",
                file.display()
            )
        );
        // A directory is not a config file.
        assert!(matches!(
            load(&Source::Explicit(dir.clone())),
            Err(ConfigError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
