//! The command line of SPEC §2, parsed by hand (no parser crate: the grammar is
//! small and the binary must stay small).
//!
//! The one rule that matters most: everything after `--`, and the first word that
//! is not an option, belongs to COMMAND, so the child's own options are never read
//! as ours. A COMMAND whose first word is `dockerd` or starts with `-` is not a main
//! command but extra dockerd arguments (docker:dind compatibility, SPEC §6).
//!
//! This module only parses; it never touches the system.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::parse_duration;
use crate::spelling;

/// The default path of the status socket, shared by the server and the clients.
pub const DEFAULT_SOCKET: &str = "/run/dind-init/init.sock";

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Run as init.
    Run(RunArgs),
    /// Validate the config and print the preflight report.
    Check {
        config: Option<PathBuf>,
    },
    /// Ask the status socket whether dockerd is ready.
    Probe {
        socket: Option<PathBuf>,
        wait: Option<Duration>,
    },
    /// Print the init's status.
    Status {
        socket: Option<PathBuf>,
        json: bool,
    },
    Version,
    Help,
    /// `SUBCOMMAND --help`: that subcommand's own help text.
    HelpFor(&'static str),
}

/// The run mode's arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunArgs {
    pub config: Option<PathBuf>,
    /// The container's main process, if any.
    pub command: Vec<OsString>,
    /// Extra dockerd arguments given docker:dind-style as COMMAND.
    pub dockerd_args: Vec<OsString>,
}

/// A usage error: printed with a hint to `--help`, exit 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see `dind-init --help`)", self.0)
    }
}

impl std::error::Error for UsageError {}

pub const HELP: &str = "\
dind-init: a small init (PID 1) that runs a Docker daemon inside a container

Usage:
  dind-init [--config PATH] [-- COMMAND [ARG...]]   run as init (the ENTRYPOINT)
  dind-init probe [--socket PATH] [--wait DURATION]  readiness probe: exit 0 ready, else 1
  dind-init status [--socket PATH] [--json]          print the init's status
  dind-init check [--config PATH]                    validate config + preflight report; changes nothing
  dind-init --version | --help

Run mode:
  COMMAND is the container's main process: it runs in its own process group, gets
  the terminal, and its exit code becomes the init's (128+N when killed by signal N).
  Without COMMAND the init runs until SIGTERM, SIGINT or SIGQUIT.
  Images should set ENTRYPOINT [\"dind-init\", \"--\"] so that whatever follows is
  never read as dind-init's own options. A COMMAND whose first word is `dockerd` or
  starts with `-` adds dockerd arguments instead, as docker:dind's entrypoint does.

Config:
  --config PATH, else $DIND_INIT_CONFIG, else /etc/dind-init/init.toml if it exists,
  else built-in defaults. Every key is documented in init.toml.example.
  Durations are written like 100ms, 5s, 2m.

Signals:
  SIGTERM, SIGINT, SIGQUIT   stop: COMMAND's group gets the signal and dockerd
                             SIGTERM, and SIGKILL if still running after
                             dockerd.stop_timeout; then every remaining process
                             gets SIGTERM, and SIGKILL once dockerd.stop_timeout
                             has passed since the stop began (but at least 0.5 s
                             after that SIGTERM)
  SIGHUP                     passed to dockerd (it reloads its configuration); to
                             COMMAND's group while dockerd is not running
  SIGUSR1 SIGUSR2 SIGWINCH SIGCONT SIGTSTP SIGTTIN SIGTTOU   forwarded to COMMAND

Exit codes:
  COMMAND's code (128+N when killed by signal N); 0 after a requested stop without
  COMMAND; 1 when dockerd gave up without COMMAND; 2 for usage or config errors;
  127/126 when COMMAND cannot be found/executed (one that is not found at all is
  reported at once, before anything is mounted or started).
";

/// `dind-init probe --help`.
pub const PROBE_HELP: &str = "\
Usage: dind-init probe [--socket PATH] [--wait DURATION]

Asks the init's status socket whether dockerd is ready: exit 0 when it is, 1
otherwise, with the reason on stderr (the state and why, or that the init cannot be
reached). It never exits 2, which Docker's HEALTHCHECK reserves: a usage error
exits 1 too.

  --socket PATH      the status socket (default: the config's readiness.socket,
                     in $DIND_INIT_CONFIG, else /etc/dind-init/init.toml;
                     else /run/dind-init/init.sock; an invalid config is an error)
  --wait DURATION    wait up to DURATION (e.g. 60s) for dockerd to be ready, and
                     for the init's socket first if it is not there yet; the
                     answer comes at once when it is ready, or when it has failed
                     or the init is stopping (then it never will be)
";

/// `dind-init status --help`.
pub const STATUS_HELP: &str = "\
Usage: dind-init status [--socket PATH] [--json]

Prints the init's status: dockerd's state and why, its pid, restarts and last exit,
the cgroup summary, and dockerd's last log lines. Exit 0; 1 when the init cannot be
reached; 2 for a usage error or an invalid config.

  --socket PATH      the status socket (default: the config's readiness.socket,
                     in $DIND_INIT_CONFIG, else /etc/dind-init/init.toml;
                     else /run/dind-init/init.sock)
  --json             print the status document (JSON) instead of the table
";

/// `dind-init check --help`.
pub const CHECK_HELP: &str = "\
Usage: dind-init check [--config PATH]

Validates the config, then prints the preflight report: the environment (gVisor or
not, cgroup version and mounts, capabilities, dockerd), the cgroup plan the init
would carry out, nested networking, and each problem with its fix. It changes
nothing. Exit 0 when dockerd can start, 1 when it certainly cannot, 2 for a usage
or config error.

  --config PATH      the config (else $DIND_INIT_CONFIG, else
                     /etc/dind-init/init.toml if it exists, else the defaults)
";

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Invocation, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter().peekable();
    let first = match args.peek() {
        None => return Ok(Invocation::Run(RunArgs::default())),
        Some(a) => a.to_str().map(str::to_owned),
    };
    match first.as_deref() {
        Some("probe") => {
            args.next();
            parse_probe(args)
        }
        Some("status") => {
            args.next();
            parse_status(args)
        }
        Some("check") => {
            args.next();
            parse_check(args)
        }
        _ => parse_run(args),
    }
}

/// What a COMMAND word that exec cannot find was probably meant to be: `--help`
/// for `help`, `--version` for `version`, a subcommand for a near miss of its
/// name (`stauts`). Only a hint for the error message: a real program of that
/// name always runs.
pub fn did_you_mean(word: &str) -> Option<&'static str> {
    match word {
        "help" | "-help" => return Some("dind-init --help"),
        "version" | "-version" => return Some("dind-init --version"),
        _ => {}
    }
    let subcommands = [
        ("check", "dind-init check"),
        ("probe", "dind-init probe"),
        ("status", "dind-init status"),
    ];
    let name = spelling::closest(word, subcommands.map(|(name, _)| name))?;
    subcommands
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, hint)| hint)
}

/// Splits `--name=value` into name and value.
fn split_eq(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value)),
        _ => (arg, None),
    }
}

/// Takes an option's value: the `=value` part or the next argument.
fn value<I: Iterator<Item = OsString>>(
    name: &str,
    inline: Option<&str>,
    rest: &mut I,
) -> Result<OsString, UsageError> {
    match inline {
        Some(v) => Ok(OsString::from(v)),
        None => rest
            .next()
            .ok_or_else(|| UsageError(format!("option {name} needs a value"))),
    }
}

fn parse_run<I: Iterator<Item = OsString>>(mut args: I) -> Result<Invocation, UsageError> {
    let mut run = RunArgs::default();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--" {
            command.extend(args);
            break;
        }
        let Some(text) = arg.to_str() else {
            // Not UTF-8, so not one of our options: the start of COMMAND.
            command.push(arg);
            command.extend(args);
            break;
        };
        if !text.starts_with('-') || text == "-" {
            command.push(arg);
            command.extend(args);
            break;
        }
        match split_eq(text) {
            ("--config" | "-c", inline) => {
                run.config = Some(PathBuf::from(value("--config", inline, &mut args)?));
            }
            ("--help" | "-h", None) => return Ok(Invocation::Help),
            ("--version" | "-V", None) => return Ok(Invocation::Version),
            _ => {
                return Err(UsageError(format!(
                    "unknown option `{text}`; to pass options to COMMAND or dockerd, put them after `--`"
                )))
            }
        }
    }
    split_command(&mut run, command);
    Ok(Invocation::Run(run))
}

/// Applies the docker:dind rule: `dockerd ARGS` or `-ARGS` are dockerd arguments.
fn split_command(run: &mut RunArgs, command: Vec<OsString>) {
    let Some(first) = command.first() else {
        return;
    };
    if first == OsStr::new("dockerd") {
        run.dockerd_args = command.into_iter().skip(1).collect();
    } else if first.as_encoded_bytes().starts_with(b"-") {
        run.dockerd_args = command;
    } else {
        run.command = command;
    }
}

fn parse_check<I: Iterator<Item = OsString>>(mut args: I) -> Result<Invocation, UsageError> {
    let mut config = None;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match split_eq(&text) {
            ("--config" | "-c", inline) => {
                config = Some(PathBuf::from(value("--config", inline, &mut args)?));
            }
            ("--help" | "-h", None) => return Ok(Invocation::HelpFor(CHECK_HELP)),
            _ => return Err(UsageError(format!("check: unexpected argument `{text}`"))),
        }
    }
    Ok(Invocation::Check { config })
}

/// A client's unknown argument; `--config` (which the init and `check` take) gets a
/// pointer to what the clients read instead.
fn unexpected(command: &str, text: &str) -> UsageError {
    let hint = if split_eq(text).0 == "--config" {
        format!(
            " ({command} reads the config from ${} or /etc/dind-init/init.toml; --socket PATH names the status socket directly)",
            crate::config::ENV_VAR
        )
    } else {
        String::new()
    };
    UsageError(format!("{command}: unexpected argument `{text}`{hint}"))
}

fn parse_probe<I: Iterator<Item = OsString>>(mut args: I) -> Result<Invocation, UsageError> {
    let mut socket = None;
    let mut wait = None;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match split_eq(&text) {
            ("--socket" | "-s", inline) => {
                socket = Some(PathBuf::from(value("--socket", inline, &mut args)?));
            }
            ("--wait" | "-w", inline) => {
                let v = value("--wait", inline, &mut args)?;
                let d = parse_duration(&v.to_string_lossy())
                    .map_err(|e| UsageError(format!("probe: --wait: {e}")))?;
                wait = Some(d);
            }
            ("--help" | "-h", None) => return Ok(Invocation::HelpFor(PROBE_HELP)),
            _ => return Err(unexpected("probe", &text)),
        }
    }
    Ok(Invocation::Probe { socket, wait })
}

fn parse_status<I: Iterator<Item = OsString>>(mut args: I) -> Result<Invocation, UsageError> {
    let mut socket = None;
    let mut json = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        match split_eq(&text) {
            ("--socket" | "-s", inline) => {
                socket = Some(PathBuf::from(value("--socket", inline, &mut args)?));
            }
            ("--json", None) => json = true,
            ("--help" | "-h", None) => return Ok(Invocation::HelpFor(STATUS_HELP)),
            _ => return Err(unexpected("status", &text)),
        }
    }
    Ok(Invocation::Status { socket, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(config: Option<&str>, command: &[&str], dockerd: &[&str]) -> Invocation {
        Invocation::Run(RunArgs {
            config: config.map(PathBuf::from),
            command: os(command),
            dockerd_args: os(dockerd),
        })
    }

    #[test]
    fn run_mode_table() {
        let cases: &[(&[&str], Invocation)] = &[
            (&[], run(None, &[], &[])),
            (&["--", "sh", "-c", "x"], run(None, &["sh", "-c", "x"], &[])),
            (
                &["sh", "-c", "--config", "x"],
                run(None, &["sh", "-c", "--config", "x"], &[]),
            ),
            (
                &["--config", "/c.toml", "--", "make", "-j"],
                run(Some("/c.toml"), &["make", "-j"], &[]),
            ),
            (
                &["--config=/c.toml", "make"],
                run(Some("/c.toml"), &["make"], &[]),
            ),
            (&["-c", "/c.toml"], run(Some("/c.toml"), &[], &[])),
            (&["--", "--", "x"], run(None, &[], &["--", "x"])),
            (&["--", "dockerd", "--debug"], run(None, &[], &["--debug"])),
            (
                &["--", "--storage-driver=vfs"],
                run(None, &[], &["--storage-driver=vfs"]),
            ),
            (&["dockerd"], run(None, &[], &[])),
            (
                &["--", "dockerd-rootless.sh"],
                run(None, &["dockerd-rootless.sh"], &[]),
            ),
            (&["--", "probe"], run(None, &["probe"], &[])),
            (&["--help"], Invocation::Help),
            (&["--version"], Invocation::Version),
            (&["--", "--help"], run(None, &[], &["--help"])),
        ];
        for (args, want) in cases {
            assert_eq!(p(args).as_ref(), Ok(want), "args {args:?}");
        }
    }

    #[test]
    fn subcommands_table() {
        let cases: &[(&[&str], Invocation)] = &[
            (&["check"], Invocation::Check { config: None }),
            (&["check", "--help"], Invocation::HelpFor(CHECK_HELP)),
            (&["probe", "-h"], Invocation::HelpFor(PROBE_HELP)),
            (&["status", "--help"], Invocation::HelpFor(STATUS_HELP)),
            (
                &["check", "--config", "/x"],
                Invocation::Check {
                    config: Some("/x".into()),
                },
            ),
            (
                &["probe"],
                Invocation::Probe {
                    socket: None,
                    wait: None,
                },
            ),
            (
                &["probe", "--socket=/s", "--wait", "2s"],
                Invocation::Probe {
                    socket: Some("/s".into()),
                    wait: Some(Duration::from_secs(2)),
                },
            ),
            (
                &["status", "--json"],
                Invocation::Status {
                    socket: None,
                    json: true,
                },
            ),
            (
                &["status", "-s", "/s"],
                Invocation::Status {
                    socket: Some("/s".into()),
                    json: false,
                },
            ),
        ];
        for (args, want) in cases {
            assert_eq!(p(args).as_ref(), Ok(want), "args {args:?}");
        }
    }

    #[test]
    fn hints_for_words_that_look_like_ours() {
        for (word, hint) in [
            ("help", Some("dind-init --help")),
            ("version", Some("dind-init --version")),
            ("stauts", Some("dind-init status")),
            ("statu", Some("dind-init status")),
            ("chek", Some("dind-init check")),
            ("prob", Some("dind-init probe")),
            ("ls", None),
            ("sleep", None),
            ("docker", None),
            ("bash", None),
        ] {
            assert_eq!(did_you_mean(word), hint, "{word}");
        }
    }

    #[test]
    fn usage_errors_table() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["--storage-driver=vfs"],
                "unknown option `--storage-driver=vfs`",
            ),
            (&["--config"], "option --config needs a value"),
            (&["--bogus", "--", "x"], "unknown option `--bogus`"),
            (&["check", "extra"], "check: unexpected argument `extra`"),
            (&["probe", "--wait", "5"], "probe: --wait:"),
            (&["probe", "--wait"], "option --wait needs a value"),
            (
                &["status", "--yaml"],
                "status: unexpected argument `--yaml`",
            ),
            (
                &["probe", "--config", "x.toml"],
                "probe: unexpected argument `--config` (probe reads the config from $DIND_INIT_CONFIG",
            ),
            (
                &["status", "--config=x.toml"],
                "--socket PATH names the status socket directly)",
            ),
        ];
        for (args, want) in cases {
            let err = p(args).expect_err("must fail");
            assert!(err.to_string().contains(want), "args {args:?}: got `{err}`");
        }
    }
}
