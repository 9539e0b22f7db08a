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
//! Where each part lives: the types and defaults here; `load.rs` (finding and reading
//! the file, [`ConfigError`]); `decode.rs` (the document to a [`Config`]); `values.rs`
//! (durations and sizes); `validate.rs` (ranges and cross-field checks, positions);
//! `syntax.rs` (naming the key of a syntax error, shortening what is quoted).
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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod decode;
mod load;
mod syntax;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
mod validate;
mod values;

use self::decode::*;
pub use self::load::*;
use self::syntax::*;
use self::validate::*;
pub use self::values::*;

/// The config file read when neither `--config` nor `$DIND_INIT_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/dind-init/init.toml";

/// The environment variable that names the config file when `--config` is absent.
pub const ENV_VAR: &str = "DIND_INIT_CONFIG";

/// The longest duration accepted anywhere (one year). Larger values would only invite
/// overflow when added to an `Instant`, which panics.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// `log_tail` may not exceed this many lines (memory stays bounded in PID 1).
pub const MAX_LOG_TAIL: usize = 100_000;

/// Longest path exec(2) takes: PATH_MAX is 4096 bytes including the terminating NUL.
pub(super) const MAX_EXEC_PATH: usize = 4095;
/// Longest unix socket path: `sun_path` is 108 bytes including the terminating NUL.
/// See [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html).
pub(super) const MAX_SOCKET_PATH: usize = 107;

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
    /// The size of a tmpfs to mount at dockerd's data-root before its first start, as
    /// the mount option takes it (`8g`, `512m`); `None` (the file's `""`) means none
    /// (SPEC §11).
    pub data_root_tmpfs: Option<String>,
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
            data_root_tmpfs: None,
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
pub(super) trait Choice: Copy + 'static {
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

pub(super) fn choices<T: Choice>() -> String {
    T::ALL
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}
