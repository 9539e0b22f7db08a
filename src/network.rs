//! Nested networking in gVisor (SPEC §7a): what dind-init sets up before each dockerd
//! start so that nested containers reach each other, find each other by name on user
//! networks, and reach the outside.
//!
//! gVisor's netstack cannot run Docker's own rules (dockerd gets `--iptables=false`,
//! SPEC §7): it has no nft backend, no MASQUERADE and no `addrtype` match. The measured
//! recipe of REFERENCE.md section 4, every step idempotent:
//!
//! 1. dockerd's PATH starts with a directory in which `iptables`, `iptables-save`,
//!    `iptables-restore` and the ip6tables ones point to their `-legacy` variants:
//!    docker:dind's [`DIND_LEGACY_DIR`] when the image has it, else [`OWN_LEGACY_DIR`],
//!    made here. dockerd installs its per-container resolver rules even with
//!    `--iptables=false`, with the first `iptables` it finds; the nft one fails in gVisor,
//!    the legacy one works, and then container names resolve on user networks (rows 8, 9).
//! 2. `FORWARD -i docker0 -o docker0 -j DROP` and `FORWARD -i br-+ -o br-+ -j DROP`:
//!    once NAT rules exist, gVisor's bridge routes frames between two containers of one
//!    bridge back onto the bridge and TCP between them is reset; with these rules it
//!    works, and `br-+` also keeps user networks apart (rows 11, 12).
//! 3. When there is an IPv4 default route on `<dev>` with address `<addr>`:
//!    `nat POSTROUTING -o <dev> -p tcp -j SNAT --to-source <addr>` and the same for udp.
//!    Without them nested containers' packets leave with their 172.x source and no reply
//!    comes back; gVisor has no MASQUERADE and NATs only tcp and udp (rows 2 to 6).
//!
//! Rules are checked with `-C` before `-A`: they survive a dockerd restart
//! (`--iptables=false` never flushes them), so the init adds each one once. They can be
//! added before dockerd creates any bridge: interface names are matched per packet.
//! Every failure is a warning, kept for `status`, logged once, and never fatal: dockerd
//! still starts, with less networking. Outside gVisor, or with `[network] mode = "off"`,
//! nothing here runs.
//!
//! Why the iptables commands run synchronously: each is a short external command
//! (measured in runsc 0.0~20240729: about 20 ms each when spawned as [`run_bounded`] does;
//! the whole setup, netlink included, 70 to 80 ms at a first start and about 70 ms at a
//! restart, when only the `-C` run). They run from the event
//! loop right before dockerd is spawned, one after another, each bounded by
//! [`COMMAND_TIMEOUT`] (then SIGKILL); once one has timed out, or the whole setup has
//! used [`SETUP_BUDGET`], the rest are skipped (and tried again at the next start), so the
//! loop is held for at most the budget plus one command's timeout, and never past a
//! stop: a SIGTERM, SIGINT or SIGQUIT waiting in the signalfd ends the setup at once
//! (`signals::stop_requested`). At that moment there is nothing to
//! supervise yet (dockerd is not running), and nothing is lost while the loop waits:
//! signals queue in the signalfd, clients in the listen backlog. Doing it in the
//! background would not make dockerd ready sooner in a useful way: readiness would have to
//! wait for the rules anyway (a `docker build` started on "ready" needs the SNAT rules).
//!
//! The init reaps every child with `wait(-1)` in its loop; this module waits only for its
//! own iptables child, by pid (`waitpid(pid, WNOHANG)` through `Child::try_wait`), before
//! it returns to the loop, so the loop's reaper never sees that child. A child killed at
//! its timeout is not waited for here: the reaper collects it with the next SIGCHLD.
//!
//! Not done here: IPv6 rules (dockerd 20.10 has IPv6 off by default), DNS settings, and
//! anything outside gVisor. `check` uses [`inspect`], which only reads: a netlink dump and
//! `iptables -C`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use tracing::{debug, info, warn};

use crate::config::NetworkMode;
use crate::dockerd::Launch;
use crate::environment::DEFAULT_PATH;
use crate::netlink::{self, Route};
use crate::status::NetworkStatus;

/// docker:dind's directory of iptables → iptables-legacy links (its Dockerfile makes it;
/// its entrypoint puts it first in PATH when nft does not work).
pub const DIND_LEGACY_DIR: &str = "/usr/local/sbin/.iptables-legacy";

/// Where dind-init makes the links when the image has no docker:dind directory.
pub const OWN_LEGACY_DIR: &str = "/run/dind-init/iptables-legacy";

/// One iptables command may take this long; then it is killed and the remaining steps
/// are skipped.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// No rule is started after the setup has run this long (a held xtables lock makes every
/// command wait for it).
pub const SETUP_BUDGET: Duration = Duration::from_secs(10);

/// How long iptables waits for the xtables lock (`-w`), within [`COMMAND_TIMEOUT`].
const LOCK_WAIT_SECS: &str = "3";

/// At most this much of an iptables command's stderr is kept (its end).
const STDERR_CAP: usize = 4096;

/// At most this many "already logged" keys are remembered (see [`Setup::first`]).
const MAX_LOGGED: usize = 256;

/// The names dockerd looks up, and the legacy variant each one points to.
const LINKS: [(&str, &str); 6] = [
    ("iptables", "iptables-legacy"),
    ("iptables-save", "iptables-legacy-save"),
    ("iptables-restore", "iptables-legacy-restore"),
    ("ip6tables", "ip6tables-legacy"),
    ("ip6tables-save", "ip6tables-legacy-save"),
    ("ip6tables-restore", "ip6tables-legacy-restore"),
];

/// Searched for the legacy binaries after the init's PATH (a PATH without the sbin
/// directories is common in images).
const FALLBACK_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
];

/// The one warning when the image has no legacy iptables.
pub const NO_LEGACY_WARNING: &str = "no iptables-legacy in the image: container names will not \
    resolve on user networks, and no isolation or SNAT rules are installed, so nested \
    containers get no egress (install iptables: Debian `apt-get install iptables`, Alpine \
    `apk add iptables-legacy`)";

/// What the network setup does in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In gVisor with `mode = "auto"`: the recipe above.
    Gvisor,
    /// `mode = "off"`: nothing, the user manages networking.
    Off,
    /// Not gVisor: dockerd sets up its own networking.
    Host,
}

impl Mode {
    pub fn new(config: NetworkMode, gvisor: bool) -> Mode {
        match (config, gvisor) {
            (NetworkMode::Off, _) => Mode::Off,
            (NetworkMode::Auto, true) => Mode::Gvisor,
            (NetworkMode::Auto, false) => Mode::Host,
        }
    }

    /// The name in the status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Gvisor => "gvisor",
            Mode::Off => "off",
            Mode::Host => "host",
        }
    }
}

/// Where dockerd's legacy iptables comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Legacy {
    /// docker:dind's directory, used as it is.
    Dind(PathBuf),
    /// A directory dind-init makes, with these links (name, target): only the names whose
    /// legacy variant exists.
    Own {
        dir: PathBuf,
        links: Vec<(String, PathBuf)>,
    },
    /// No `iptables-legacy` anywhere (or not in gVisor: not looked for).
    Missing,
}

impl Legacy {
    /// The directory that leads dockerd's PATH.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Legacy::Dind(dir) | Legacy::Own { dir, .. } => Some(dir),
            Legacy::Missing => None,
        }
    }

    /// The iptables binary that runs the rules before the directory exists (`check`):
    /// the real legacy binary for [`Legacy::Own`].
    fn iptables_now(&self) -> Option<PathBuf> {
        match self {
            Legacy::Dind(dir) => Some(dir.join("iptables")),
            Legacy::Own { links, .. } => links
                .iter()
                .find(|(name, _)| name == "iptables")
                .map(|(_, target)| target.clone()),
            Legacy::Missing => None,
        }
    }
}

impl fmt::Display for Legacy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Legacy::Dind(dir) => write!(f, "{} (docker:dind's)", dir.display()),
            Legacy::Own { dir, links } => {
                let target = links
                    .iter()
                    .find(|(name, _)| name == "iptables")
                    .map(|(_, t)| t.display().to_string())
                    .unwrap_or_default();
                write!(f, "{} (links to {target} and its siblings)", dir.display())
            }
            Legacy::Missing => write!(f, "none"),
        }
    }
}

/// Finds the legacy iptables: `dind_dir` when its `iptables` resolves, else the legacy
/// binaries in `path_env` and [`FALLBACK_DIRS`] (never in `dind_dir` or `own_dir`), to be
/// linked from `own_dir`.
pub fn find_legacy(dind_dir: &Path, own_dir: &Path, path_env: Option<&OsStr>) -> Legacy {
    if fs::metadata(dind_dir.join("iptables")).is_ok_and(|m| m.is_file()) {
        return Legacy::Dind(dind_dir.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = path_env
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.extend(FALLBACK_DIRS.iter().map(PathBuf::from));
    dirs.retain(|d| d.is_absolute() && d != dind_dir && d != own_dir);
    let find = |name: &str| {
        dirs.iter()
            .map(|d| d.join(name))
            .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file()))
    };
    let links: Vec<(String, PathBuf)> = LINKS
        .iter()
        .filter_map(|(name, legacy)| find(legacy).map(|t| ((*name).to_owned(), t)))
        .collect();
    if !links.iter().any(|(name, _)| name == "iptables") {
        return Legacy::Missing;
    }
    Legacy::Own {
        dir: own_dir.to_path_buf(),
        links,
    }
}

/// What was decided at boot: the mode and where legacy iptables comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub mode: Mode,
    pub legacy: Legacy,
}

impl Plan {
    /// Decides from the config, the environment and the init's PATH; looks at files only.
    pub fn new(config: NetworkMode, gvisor: bool, path_env: Option<&OsStr>) -> Plan {
        let mode = Mode::new(config, gvisor);
        let legacy = if mode == Mode::Gvisor {
            find_legacy(
                Path::new(DIND_LEGACY_DIR),
                Path::new(OWN_LEGACY_DIR),
                path_env,
            )
        } else {
            Legacy::Missing
        };
        Plan { mode, legacy }
    }

    /// In gVisor with a legacy directory: puts it first in dockerd's PATH, in front of the
    /// PATH dockerd would have had (`dockerd.env`'s, else the init's `init_path`, else
    /// Docker's default). Anywhere else `launch` is left as it is.
    pub fn set_dockerd_path(&self, launch: &mut Launch, init_path: Option<&OsStr>) {
        if self.mode != Mode::Gvisor {
            return;
        }
        let Some(dir) = self.legacy.dir() else {
            return;
        };
        let dir = dir.display().to_string();
        let base = launch
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .or_else(|| init_path.map(|p| p.to_string_lossy().into_owned()))
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PATH.to_owned());
        let path = if base.split(':').next() == Some(dir.as_str()) {
            base
        } else {
            format!("{dir}:{base}")
        };
        launch.env.retain(|(k, _)| k != "PATH");
        launch.env.push(("PATH".to_owned(), path));
    }
}

/// One iptables rule of the recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    table: &'static str,
    chain: &'static str,
    spec: Vec<String>,
}

impl Rule {
    fn new(table: &'static str, chain: &'static str, spec: &[&str]) -> Rule {
        Rule {
            table,
            chain,
            spec: spec.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// iptables arguments for operation `op` (`-C` or `-A`).
    pub fn args(&self, op: &str) -> Vec<String> {
        let mut args: Vec<String> = ["-w", LOCK_WAIT_SECS, "-t", self.table, op, self.chain]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(self.spec.iter().cloned());
        args
    }

    /// As status shows it: `FORWARD -i docker0 ...`, `nat POSTROUTING ...`.
    pub fn text(&self) -> String {
        let table = if self.table == "filter" {
            String::new()
        } else {
            format!("{} ", self.table)
        };
        format!("{table}{} {}", self.chain, self.spec.join(" "))
    }
}

/// The rules for this uplink: the two FORWARD DROP rules always, the tcp and udp SNAT
/// rules when there is an uplink.
pub fn wanted_rules(uplink: Option<&Route>) -> Vec<Rule> {
    let mut rules = vec![
        Rule::new(
            "filter",
            "FORWARD",
            &["-i", "docker0", "-o", "docker0", "-j", "DROP"],
        ),
        Rule::new(
            "filter",
            "FORWARD",
            &["-i", "br-+", "-o", "br-+", "-j", "DROP"],
        ),
    ];
    if let Some(up) = uplink {
        let addr = up.addr.to_string();
        for proto in ["tcp", "udp"] {
            rules.push(Rule::new(
                "nat",
                "POSTROUTING",
                &[
                    "-o",
                    &up.dev,
                    "-p",
                    proto,
                    "-j",
                    "SNAT",
                    "--to-source",
                    &addr,
                ],
            ));
        }
    }
    rules
}

/// Why an iptables command was not run or was ended early.
const STOPPING: &str = "the init is stopping";

/// How one iptables command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Ok,
    /// It ran and failed, or could not be started: why, in one line.
    Failed(String),
    /// Killed after [`COMMAND_TIMEOUT`].
    TimedOut,
}

/// Runs iptables with some arguments. A trait so that the rule logic is tested without
/// processes.
pub trait Runner {
    fn run(&mut self, args: &[String]) -> Ran;
}

/// The real runner: one bounded child process per call.
#[derive(Debug)]
pub struct Iptables {
    pub program: PathBuf,
    pub timeout: Duration,
}

impl Runner for Iptables {
    fn run(&mut self, args: &[String]) -> Ran {
        run_bounded(&self.program, args, self.timeout)
    }
}

/// What [`ensure_rules`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesOutcome {
    /// Every rule in place now, in order (found or added).
    pub in_place: Vec<String>,
    /// The rules this run added.
    pub added: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks each rule with `-C` and adds it with `-A` when the check fails. `-C` exits 1
/// both for "no such rule" and for other errors, so it only decides whether to try `-A`;
/// the `-A` error is the one reported. After a timeout, or past `deadline`, the remaining
/// rules are skipped.
pub fn ensure_rules(runner: &mut dyn Runner, rules: &[Rule], deadline: Instant) -> RulesOutcome {
    let mut out = RulesOutcome::default();
    let mut timed_out = false;
    for rule in rules {
        let text = rule.text();
        if timed_out {
            out.warnings.push(format!(
                "skipped iptables rule `{text}`: an earlier iptables command timed out"
            ));
            continue;
        }
        if Instant::now() >= deadline {
            out.warnings.push(format!(
                "skipped iptables rule `{text}`: the network setup used its {} s",
                SETUP_BUDGET.as_secs()
            ));
            continue;
        }
        if crate::signals::stop_requested() {
            out.warnings
                .push(format!("skipped iptables rule `{text}`: {STOPPING}"));
            continue;
        }
        let result = match runner.run(&rule.args("-C")) {
            Ran::Ok => {
                out.in_place.push(text);
                continue;
            }
            Ran::TimedOut => Ran::TimedOut,
            Ran::Failed(_) => runner.run(&rule.args("-A")),
        };
        match result {
            Ran::Ok => {
                out.in_place.push(text.clone());
                out.added.push(text);
            }
            Ran::Failed(why) => out
                .warnings
                .push(format!("could not add iptables rule `{text}`: {why}")),
            Ran::TimedOut => {
                timed_out = true;
                out.warnings.push(format!(
                    "could not add iptables rule `{text}`: iptables did not finish within {} s and was killed",
                    COMMAND_TIMEOUT.as_secs()
                ));
            }
        }
    }
    out
}

/// Makes `dir` hold exactly-named symlinks to `links`' targets; a link that already points
/// right is left alone. Returns whether anything changed.
pub fn ensure_links(dir: &Path, links: &[(String, PathBuf)]) -> io::Result<bool> {
    fs::create_dir_all(dir)?;
    let mut changed = false;
    for (name, target) in links {
        let path = dir.join(name);
        match fs::read_link(&path) {
            Ok(current) if current == *target => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // A wrong link, or something that is not a link.
            _ => fs::remove_file(&path)?,
        }
        std::os::unix::fs::symlink(target, &path)?;
        changed = true;
    }
    Ok(changed)
}

/// What the last setup found and did: the `network` object of the status JSON.
fn outcome_status(
    mode: Mode,
    uplink: Option<&Route>,
    rules: &RulesOutcome,
    legacy_on_path: bool,
    warnings: Vec<String>,
) -> NetworkStatus {
    NetworkStatus {
        mode: mode.as_str().to_owned(),
        uplink: uplink.map(|r| format!("{} {}", r.dev, r.addr)),
        rules: rules.in_place.clone(),
        legacy_iptables: legacy_on_path,
        warnings,
    }
}

/// The network setup of the run mode: the plan, what the last setup found, and what has
/// been logged already (each step is logged once, not at every restart).
#[derive(Debug)]
pub struct Setup {
    plan: Plan,
    status: NetworkStatus,
    logged: BTreeSet<String>,
}

impl Setup {
    pub fn new(plan: Plan) -> Setup {
        let status = NetworkStatus {
            mode: plan.mode.as_str().to_owned(),
            ..NetworkStatus::default()
        };
        Setup {
            plan,
            status,
            logged: BTreeSet::new(),
        }
    }

    /// The `network` object of the status JSON, as of the last setup.
    pub fn status(&self) -> NetworkStatus {
        self.status.clone()
    }

    /// True the first time `key` is seen. The set is bounded: PID 1 runs for months,
    /// and a warning that carries changing text must not grow it forever (past the
    /// bound, things are logged once more).
    fn first(&mut self, key: String) -> bool {
        if self.logged.len() >= MAX_LOGGED && !self.logged.contains(&key) {
            self.logged.clear();
        }
        self.logged.insert(key)
    }

    /// Right before each dockerd start: the legacy links, the uplink, the rules. In gVisor
    /// with `mode = "auto"` only; never fails, every problem is a warning.
    pub fn before_start(&mut self) {
        if self.plan.mode != Mode::Gvisor {
            return;
        }
        let started = Instant::now();
        let mut warnings = Vec::new();
        // What is new this time, logged at the end through one call site (each call site
        // costs binary size); (message, detail, key that makes it once-only).
        let mut news: Vec<(&str, String, String)> = Vec::new();
        let legacy = self.plan.legacy.clone();
        let legacy_on_path = match &legacy {
            Legacy::Missing => {
                warnings.push(NO_LEGACY_WARNING.to_owned());
                false
            }
            Legacy::Dind(dir) => {
                let ok = fs::metadata(dir.join("iptables")).is_ok_and(|m| m.is_file());
                if ok {
                    let detail = format!("{} (docker:dind's)", dir.display());
                    news.push((
                        "dockerd's PATH starts with legacy iptables",
                        detail.clone(),
                        detail,
                    ));
                } else {
                    warnings.push(format!(
                        "{}/iptables no longer resolves: {NO_LEGACY_WARNING}",
                        dir.display()
                    ));
                }
                ok
            }
            Legacy::Own { dir, links } => match ensure_links(dir, links) {
                Ok(changed) => {
                    let detail = format!("{}, made by dind-init", dir.display());
                    // Made or repaired this time: news; else only the first time.
                    let key = if changed {
                        self.first(detail.clone());
                        String::new()
                    } else {
                        detail.clone()
                    };
                    news.push(("dockerd's PATH starts with legacy iptables", detail, key));
                    true
                }
                Err(e) => {
                    warnings.push(format!(
                        "could not make the iptables-legacy links in {}: {e}: container names will not resolve on user networks",
                        dir.display()
                    ));
                    false
                }
            },
        };
        let uplink = match netlink::default_route_v4() {
            Ok(route) => route,
            Err(e) => {
                warnings.push(format!(
                    "could not find the IPv4 default route ({e}): no SNAT rules, nested containers get no egress"
                ));
                None
            }
        };
        let shown = uplink
            .as_ref()
            .map_or("none (no IPv4 default route: no egress)".to_owned(), |r| {
                format!("{} {}", r.dev, r.addr)
            });
        news.push((
            "uplink for nested containers' egress",
            shown.clone(),
            format!("uplink {shown}"),
        ));
        // The rules run through the directory dockerd uses, so they test the same binary.
        let program = match &legacy {
            Legacy::Missing => None,
            other if legacy_on_path => other.dir().map(|d| d.join("iptables")),
            other => other.iptables_now(),
        };
        let rules = match program {
            Some(program) => {
                let mut runner = Iptables {
                    program,
                    timeout: COMMAND_TIMEOUT,
                };
                ensure_rules(
                    &mut runner,
                    &wanted_rules(uplink.as_ref()),
                    started + SETUP_BUDGET,
                )
            }
            None => RulesOutcome::default(),
        };
        for rule in &rules.in_place {
            let key = format!("rule {rule}");
            if rules.added.contains(rule) {
                // Found again at a restart: nothing new to say about it then.
                self.first(key.clone());
                news.push(("added iptables rule (legacy)", rule.clone(), String::new()));
            } else {
                news.push(("iptables rule already in place", rule.clone(), key));
            }
        }
        for (message, detail, key) in news {
            if key.is_empty() || self.first(key) {
                info!(detail = %detail, "nested networking: {message}");
            }
        }
        warnings.extend(rules.warnings.iter().cloned());
        for w in &warnings {
            if self.first(format!("warning {w}")) {
                warn!("nested networking: {w}");
            }
        }
        debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "nested networking set up"
        );
        self.status = outcome_status(
            self.plan.mode,
            uplink.as_ref(),
            &rules,
            legacy_on_path,
            warnings,
        );
    }
}

/// What `check` reports about nested networking; found without changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub mode: Mode,
    pub legacy: Legacy,
    /// The uplink, none, or why it could not be read.
    pub uplink: Result<Option<Route>, String>,
    /// Each wanted rule and whether `-C` found it.
    pub rules: Vec<(String, bool)>,
}

/// Looks, for `check`: the uplink (a netlink dump) and each rule with `iptables -C`
/// (bounded). Only in gVisor mode; otherwise just the mode.
pub fn inspect(plan: &Plan) -> Report {
    if plan.mode != Mode::Gvisor {
        return Report {
            mode: plan.mode,
            legacy: plan.legacy.clone(),
            uplink: Ok(None),
            rules: Vec::new(),
        };
    }
    let uplink = netlink::default_route_v4().map_err(|e| e.to_string());
    let wanted = wanted_rules(uplink.as_ref().ok().and_then(Option::as_ref));
    let rules = match plan.legacy.iptables_now() {
        Some(program) => {
            let mut runner = Iptables {
                program,
                timeout: COMMAND_TIMEOUT,
            };
            let mut timed_out = false;
            wanted
                .iter()
                .map(|r| {
                    let found = !timed_out
                        && match runner.run(&r.args("-C")) {
                            Ran::Ok => true,
                            Ran::Failed(_) => false,
                            Ran::TimedOut => {
                                timed_out = true;
                                false
                            }
                        };
                    (r.text(), found)
                })
                .collect()
        }
        None => wanted.iter().map(|r| (r.text(), false)).collect(),
    };
    Report {
        mode: plan.mode,
        legacy: plan.legacy.clone(),
        uplink,
        rules,
    }
}

/// Runs `program args` with stdin and stdout on /dev/null and stderr captured, for at
/// most `timeout`; then SIGKILL. Waits only for this child, by pid.
///
/// No `pre_exec` here, unlike dockerd and COMMAND: without one, std starts the child with
/// posix_spawn(3) (a vfork-style clone) instead of fork, which in gVisor saves about 15 ms
/// per command (measured in runsc 0.0~20240729: about 21 ms against 35 ms for one
/// `iptables-legacy -C`). std's posix_spawn resets SIGPIPE, the only signal the init
/// ignores (`signals.rs`), to its default (`POSIX_SPAWN_SETSIGDEF`), but it leaves the
/// signal mask as the init's: the child starts with the init's handled signals blocked
/// (checked: /proc/PID/status `SigBlk`). iptables neither waits for nor handles
/// signals, so that costs nothing here, and the timeout kills with SIGKILL, which no
/// mask holds back. (COMMAND and dockerd, which must get every signal, are spawned
/// with a reset in `pre_exec`.)
pub fn run_bounded(program: &Path, args: &[String], timeout: Duration) -> Ran {
    // A stop waiting in the signalfd must not wait for iptables (`docker stop`
    // gives 10 s): run nothing more, and end a command that runs.
    if crate::signals::stop_requested() {
        return Ran::Failed(STOPPING.to_owned());
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Ran::Failed(format!("cannot run {}: {e}", program.display())),
    };
    let mut stderr: Option<OwnedFd> = child.stderr.take().map(OwnedFd::from);
    if let Some(fd) = &stderr {
        if rustix::io::ioctl_fionbio(fd, true).is_err() {
            // A blocking read could hang past the deadline: do without the text.
            stderr = None;
        }
    }
    let deadline = Instant::now() + timeout;
    let mut text = Vec::new();
    loop {
        if let Some(fd) = &stderr {
            if drain(fd, &mut text) {
                stderr = None;
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                if let Some(fd) = &stderr {
                    drain(fd, &mut text);
                }
                if status.success() {
                    return Ran::Ok;
                }
                let how = match status.code() {
                    Some(c) => format!("exit code {c}"),
                    None => "killed by a signal".to_owned(),
                };
                let line = last_line(&text);
                return Ran::Failed(if line.is_empty() {
                    how
                } else {
                    format!("{how}: {line}{}", hint(&line))
                });
            }
            Ok(None) => {}
            Err(e) => return Ran::Failed(format!("cannot wait for {}: {e}", program.display())),
        }
        let now = Instant::now();
        if now >= deadline {
            // Not waited for here: the loop's reaper collects it with the next SIGCHLD.
            let _ = child.kill();
            return Ran::TimedOut;
        }
        if crate::signals::stop_requested() {
            let _ = child.kill();
            return Ran::Failed(STOPPING.to_owned());
        }
        // Wait for output or the child's end: on the pipe while it is open (EOF comes at
        // exit), else in short steps (the exit follows the pipe's EOF closely).
        let step = (deadline - now).min(Duration::from_millis(5));
        match &stderr {
            Some(fd) => {
                let mut fds = [PollFd::new(fd, PollFlags::IN)];
                let ts = Timespec {
                    tv_sec: 0,
                    tv_nsec: i64::from(step.subsec_nanos()),
                };
                let _ = poll(&mut fds, Some(&ts));
            }
            None => std::thread::sleep(step.min(Duration::from_millis(1))),
        }
    }
}

/// Reads what is available into `buf`, keeping its last [`STDERR_CAP`] bytes; true at
/// EOF.
fn drain(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                // The end is what matters (the error is the last line): keep the tail.
                buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                if buf.len() > STDERR_CAP {
                    buf.drain(..buf.len() - STDERR_CAP);
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false, // EAGAIN: nothing more for now
        }
    }
}

/// The line of iptables' stderr that says what failed: the last non-empty one, skipping
/// its generic follow-ups ("Perhaps iptables or your kernel needs to be upgraded.",
/// "Try `iptables -h' ..."); at most 300 characters.
fn last_line(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Perhaps iptables") && !l.starts_with("Try `"))
        .unwrap_or("");
    line.chars().take(300).collect()
}

/// A hint for the one failure with a known cause outside the sandbox.
fn hint(line: &str) -> &'static str {
    if line.contains("can't initialize iptables table") {
        " (without CAP_NET_RAW gVisor has no iptables: start runsc with --net-raw)"
    } else {
        ""
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::net::Ipv4Addr;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dind-init-network-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn mode_table() {
        let cases = [
            (NetworkMode::Auto, true, Mode::Gvisor, "gvisor"),
            (NetworkMode::Auto, false, Mode::Host, "host"),
            (NetworkMode::Off, true, Mode::Off, "off"),
            (NetworkMode::Off, false, Mode::Off, "off"),
        ];
        for (config, gvisor, want, name) in cases {
            let got = Mode::new(config, gvisor);
            assert_eq!(got, want, "{config:?} {gvisor}");
            assert_eq!(got.as_str(), name);
        }
        // Outside gVisor nothing is looked for.
        let plan = Plan::new(NetworkMode::Auto, false, None);
        assert_eq!(plan.legacy, Legacy::Missing);
    }

    #[test]
    fn legacy_is_found_dind_first_then_in_path() {
        let root = temp("find");
        let dind = root.join("dind");
        let own = root.join("own");
        let sbin = root.join("sbin");
        // Nothing anywhere (the fallback dirs are the machine's: only check the shape).
        let empty = std::env::join_paths([root.join("none")]).unwrap();
        let got = find_legacy(&dind, &own, Some(&empty));
        assert!(
            matches!(&got, Legacy::Missing | Legacy::Own { .. }),
            "{got:?}"
        );
        // In PATH: links for what exists, iptables first.
        executable(&sbin.join("iptables-legacy"));
        executable(&sbin.join("iptables-legacy-save"));
        let path = std::env::join_paths([&sbin]).unwrap();
        match find_legacy(&dind, &own, Some(&path)) {
            Legacy::Own { dir, links } => {
                assert_eq!(dir, own);
                assert_eq!(links[0], ("iptables".into(), sbin.join("iptables-legacy")));
                assert_eq!(
                    links[1],
                    ("iptables-save".into(), sbin.join("iptables-legacy-save"))
                );
            }
            other => panic!("{other:?}"),
        }
        // docker:dind's directory wins when its iptables resolves.
        fs::create_dir_all(&dind).unwrap();
        std::os::unix::fs::symlink(sbin.join("iptables-legacy"), dind.join("iptables")).unwrap();
        assert_eq!(
            find_legacy(&dind, &own, Some(&path)),
            Legacy::Dind(dind.clone())
        );
        // A dangling one does not count.
        fs::remove_file(dind.join("iptables")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), dind.join("iptables")).unwrap();
        assert!(matches!(
            find_legacy(&dind, &own, Some(&path)),
            Legacy::Own { .. }
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn links_are_made_once_and_repaired() {
        let root = temp("links");
        let dir = root.join("legacy");
        let links = vec![
            (
                "iptables".to_owned(),
                PathBuf::from("/usr/sbin/iptables-legacy"),
            ),
            (
                "iptables-save".to_owned(),
                PathBuf::from("/usr/sbin/iptables-legacy-save"),
            ),
        ];
        assert!(ensure_links(&dir, &links).unwrap());
        assert!(!ensure_links(&dir, &links).unwrap(), "idempotent");
        assert_eq!(
            fs::read_link(dir.join("iptables")).unwrap(),
            PathBuf::from("/usr/sbin/iptables-legacy")
        );
        // A wrong link and a plain file are replaced.
        fs::remove_file(dir.join("iptables")).unwrap();
        std::os::unix::fs::symlink("/usr/sbin/iptables-nft", dir.join("iptables")).unwrap();
        fs::remove_file(dir.join("iptables-save")).unwrap();
        fs::write(dir.join("iptables-save"), "x").unwrap();
        assert!(ensure_links(&dir, &links).unwrap());
        assert_eq!(
            fs::read_link(dir.join("iptables-save")).unwrap(),
            PathBuf::from("/usr/sbin/iptables-legacy-save")
        );
        fs::remove_dir_all(&root).unwrap();
    }

    fn launch(env: &[(&str, &str)]) -> Launch {
        Launch {
            program: "dockerd".into(),
            args: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            socket: PathBuf::from("/var/run/docker.sock"),
        }
    }

    fn path_of(l: &Launch) -> Option<&str> {
        l.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn dockerd_path_table() {
        let own = Plan {
            mode: Mode::Gvisor,
            legacy: Legacy::Own {
                dir: PathBuf::from("/run/dind-init/iptables-legacy"),
                links: Vec::new(),
            },
        };
        let dind = Plan {
            mode: Mode::Gvisor,
            legacy: Legacy::Dind(PathBuf::from(DIND_LEGACY_DIR)),
        };
        let missing = Plan {
            mode: Mode::Gvisor,
            legacy: Legacy::Missing,
        };
        let host = Plan {
            mode: Mode::Host,
            legacy: own.legacy.clone(),
        };
        let off = Plan {
            mode: Mode::Off,
            legacy: own.legacy.clone(),
        };
        let init = Some(OsStr::new("/usr/bin:/bin"));
        // (plan, dockerd.env, the init's PATH, dockerd's PATH)
        type Case<'a> = (
            &'a Plan,
            Vec<(&'a str, &'a str)>,
            Option<&'a OsStr>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                &own,
                vec![],
                init,
                Some("/run/dind-init/iptables-legacy:/usr/bin:/bin"),
            ),
            (
                &dind,
                vec![],
                init,
                Some("/usr/local/sbin/.iptables-legacy:/usr/bin:/bin"),
            ),
            // dockerd.env's PATH is the base, and appears once.
            (
                &own,
                vec![("PATH", "/opt/bin")],
                init,
                Some("/run/dind-init/iptables-legacy:/opt/bin"),
            ),
            // No PATH at all: Docker's default.
            (
                &own,
                vec![],
                None,
                Some("/run/dind-init/iptables-legacy:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            // Already first: not added twice.
            (
                &own,
                vec![("PATH", "/run/dind-init/iptables-legacy:/bin")],
                init,
                Some("/run/dind-init/iptables-legacy:/bin"),
            ),
            (&missing, vec![], init, None),
            (&host, vec![], init, None),
            (&off, vec![], init, None),
        ];
        for (plan, env, init_path, want) in cases {
            let mut l = launch(&env);
            plan.set_dockerd_path(&mut l, init_path);
            assert_eq!(path_of(&l), want, "{plan:?} {env:?}");
            assert!(l.env.iter().filter(|(k, _)| k == "PATH").count() <= 1);
        }
    }

    #[test]
    fn wanted_rules_with_and_without_uplink() {
        let texts =
            |u: Option<&Route>| -> Vec<String> { wanted_rules(u).iter().map(Rule::text).collect() };
        assert_eq!(
            texts(None),
            [
                "FORWARD -i docker0 -o docker0 -j DROP",
                "FORWARD -i br-+ -o br-+ -j DROP"
            ]
        );
        let up = Route {
            dev: "eth0".into(),
            addr: Ipv4Addr::new(10, 0, 0, 2),
        };
        let with = texts(Some(&up));
        assert_eq!(with.len(), 4);
        assert_eq!(
            with[2],
            "nat POSTROUTING -o eth0 -p tcp -j SNAT --to-source 10.0.0.2"
        );
        assert_eq!(
            with[3],
            "nat POSTROUTING -o eth0 -p udp -j SNAT --to-source 10.0.0.2"
        );
        assert_eq!(
            wanted_rules(Some(&up))[3].args("-C"),
            [
                "-w",
                "3",
                "-t",
                "nat",
                "-C",
                "POSTROUTING",
                "-o",
                "eth0",
                "-p",
                "udp",
                "-j",
                "SNAT",
                "--to-source",
                "10.0.0.2"
            ]
        );
    }

    /// Answers from a script, and records what it was asked.
    struct Scripted {
        answers: VecDeque<Ran>,
        asked: Vec<String>,
    }

    impl Runner for Scripted {
        fn run(&mut self, args: &[String]) -> Ran {
            self.asked.push(args.join(" "));
            self.answers.pop_front().unwrap_or(Ran::Ok)
        }
    }

    #[test]
    fn a_pending_stop_skips_the_rules() {
        crate::signals::with_signal_pending(nix::sys::signal::Signal::SIGTERM, || {
            let mut r = Scripted {
                answers: Default::default(),
                asked: Vec::new(),
            };
            let rules = wanted_rules(None);
            let out = ensure_rules(&mut r, &rules, Instant::now() + SETUP_BUDGET);
            assert!(r.asked.is_empty(), "nothing run: {:?}", r.asked);
            assert_eq!(out.warnings.len(), rules.len());
            assert!(
                out.warnings.iter().all(|w| w.ends_with(STOPPING)),
                "{out:?}"
            );
            // No process either.
            let ran = run_bounded(Path::new("/bin/true"), &[], COMMAND_TIMEOUT);
            assert_eq!(ran, Ran::Failed(STOPPING.to_owned()));
        });
    }

    #[test]
    fn rules_check_before_add_table() {
        let fail = |s: &str| Ran::Failed(s.to_owned());
        let rules = wanted_rules(None);
        // (answers in order, in place, added, warnings, commands run)
        let cases: Vec<(Vec<Ran>, usize, usize, usize, usize)> = vec![
            // Both present: two -C, nothing added.
            (vec![Ran::Ok, Ran::Ok], 2, 0, 0, 2),
            // Both absent: -C, -A, -C, -A.
            (
                vec![fail("no rule"), Ran::Ok, fail("no rule"), Ran::Ok],
                2,
                2,
                0,
                4,
            ),
            // The first cannot be added, the second is present.
            (
                vec![
                    fail("no rule"),
                    fail("exit code 1: Invalid argument"),
                    Ran::Ok,
                ],
                1,
                0,
                1,
                3,
            ),
            // A timeout skips the rest.
            (vec![Ran::TimedOut], 0, 0, 2, 1),
            (vec![fail("no rule"), Ran::TimedOut], 0, 0, 2, 2),
        ];
        for (answers, in_place, added, warnings, asked) in cases {
            let mut r = Scripted {
                answers: answers.clone().into(),
                asked: Vec::new(),
            };
            let out = ensure_rules(&mut r, &rules, Instant::now() + SETUP_BUDGET);
            assert_eq!(
                (
                    out.in_place.len(),
                    out.added.len(),
                    out.warnings.len(),
                    r.asked.len()
                ),
                (in_place, added, warnings, asked),
                "{answers:?}: {out:?} {:?}",
                r.asked
            );
            assert!(r.asked[0].contains(" -C FORWARD "), "{:?}", r.asked);
        }
        let mut r = Scripted {
            answers: vec![fail("x"), fail("exit code 1: Invalid argument")].into(),
            asked: Vec::new(),
        };
        let out = ensure_rules(&mut r, &rules[..1], Instant::now() + SETUP_BUDGET);
        assert_eq!(
            out.warnings,
            ["could not add iptables rule `FORWARD -i docker0 -o docker0 -j DROP`: exit code 1: Invalid argument"]
        );
        assert!(r.asked[1].contains(" -A FORWARD "), "{:?}", r.asked);
        // Past the budget nothing more is run.
        let mut r = Scripted {
            answers: VecDeque::new(),
            asked: Vec::new(),
        };
        let out = ensure_rules(&mut r, &rules, Instant::now());
        assert!(r.asked.is_empty());
        assert_eq!(out.warnings.len(), 2);
        assert!(out.warnings[0].contains("the network setup used its 10 s"));
    }

    #[test]
    fn bounded_commands() {
        let sh = Path::new("/bin/sh");
        let args = |s: &str| vec!["-c".to_owned(), s.to_owned()];
        assert_eq!(run_bounded(sh, &args("exit 0"), COMMAND_TIMEOUT), Ran::Ok);
        assert_eq!(
            run_bounded(
                sh,
                &args("echo \"iptables v1.8.9 (legacy): can't initialize iptables table \\`filter'\" >&2; echo 'Perhaps iptables or your kernel needs to be upgraded.' >&2; exit 3"),
                COMMAND_TIMEOUT
            ),
            Ran::Failed(
                "exit code 3: iptables v1.8.9 (legacy): can't initialize iptables table `filter' (without CAP_NET_RAW gVisor has no iptables: start runsc with --net-raw)"
                    .to_owned()
            )
        );
        // Far more stderr than a pipe holds does not block it.
        assert_eq!(
            run_bounded(
                sh,
                &args("i=0; while [ $i -lt 3000 ]; do echo 0123456789012345678901234567890123456789 >&2; i=$((i+1)); done; exit 1"),
                COMMAND_TIMEOUT
            ),
            Ran::Failed("exit code 1: 0123456789012345678901234567890123456789".to_owned())
        );
        let started = Instant::now();
        assert_eq!(
            run_bounded(sh, &args("exec sleep 30"), Duration::from_millis(200)),
            Ran::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            run_bounded(Path::new("/nonexistent/iptables"), &[], COMMAND_TIMEOUT),
            Ran::Failed(why) if why.starts_with("cannot run /nonexistent/iptables")
        ));
    }
}
