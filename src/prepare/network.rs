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
//! How the iptables commands run: each is a short helper process (about 20-35 ms in
//! runsc 0.0~20240729), and the whole recipe is a few of them. They run beside dockerd's
//! start, never before it: [`Setup::begin`] makes the links and reads the uplink (file
//! operations and one netlink dump, a millisecond), and returns a [`RulesJob`], a pure
//! state machine that says which command to run next given how the last one ended. The
//! event loop runs each command as a child it watches like any other: its stderr through
//! the poller, its exit through the reaper, its time limit ([`COMMAND_TIMEOUT`], then
//! SIGKILL) as a deadline, so nothing blocks reaping, signals or clients meanwhile. Once
//! one command has timed out, or the job has run for [`SETUP_BUDGET`], the rest are
//! skipped (and tried again at the next start). dockerd is declared ready only once the
//! job is done too: a `docker build` started on "ready" needs the SNAT rules.
//!
//! Not done here: IPv6 rules (dockerd 20.10 has IPv6 off by default), DNS settings, and
//! anything outside gVisor. `check` uses [`inspect`], which only reads: a netlink dump and
//! `iptables -C`, run to their end by [`run_blocking`] (`check` is a short-lived process,
//! never the init's loop).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::NetworkMode;
use crate::control::status::NetworkStatus;
use crate::sys::netlink::{self, Route};
use crate::sys::reaper::ExitStatus;

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
pub const STDERR_CAP: usize = 4096;

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
///
/// `iptables-legacy` is searched for first, directory by directory; its siblings are
/// looked for in the directory it was found in before the others (one package installs
/// them side by side). Each miss is a path lookup, and in gVisor every lookup of a file
/// the sandbox has not seen yet is a round trip to its gofer (measured: this step took
/// 8-35 ms of the boot with a 13-directory PATH when each of the six names was searched
/// through every directory; it runs before dockerd's exec).
fn find_legacy(dind_dir: &Path, own_dir: &Path, path_env: Option<&OsStr>) -> Legacy {
    if fs::metadata(dind_dir.join("iptables")).is_ok_and(|m| m.is_file()) {
        return Legacy::Dind(dind_dir.to_path_buf());
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let candidates = path_env
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from));
    for d in candidates {
        if d.is_absolute() && d != dind_dir && d != own_dir && !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let is_file = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file());
    let Some(home) = dirs
        .iter()
        .find(|d| is_file(&d.join("iptables-legacy")))
        .cloned()
    else {
        return Legacy::Missing;
    };
    let find = |name: &str| {
        std::iter::once(&home)
            .chain(dirs.iter().filter(|d| **d != home))
            .map(|d| d.join(name))
            .find(|p| is_file(p))
    };
    // LINKS[0] is iptables -> iptables-legacy, found above.
    let first = ("iptables".to_owned(), home.join("iptables-legacy"));
    let links: Vec<(String, PathBuf)> = std::iter::once(first)
        .chain(
            LINKS
                .iter()
                .skip(1)
                .filter_map(|(name, legacy)| find(legacy).map(|t| ((*name).to_owned(), t))),
        )
        .collect();
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

    /// In gVisor with a legacy directory: the directory that must lead dockerd's PATH
    /// (the launch builder puts it there). Anywhere else none.
    pub fn path_prefix(&self) -> Option<&Path> {
        match self.mode {
            Mode::Gvisor => self.legacy.dir(),
            Mode::Off | Mode::Host => None,
        }
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

/// How one iptables command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Ok,
    /// It ran and failed, or could not be started: why, in one line.
    Failed(String),
    /// Killed after [`COMMAND_TIMEOUT`].
    TimedOut,
}

impl Ran {
    /// How a helper process ended, from its exit status and the end of its stderr.
    pub fn from_exit(status: ExitStatus, stderr: &[u8]) -> Ran {
        if status == ExitStatus::Code(0) {
            return Ran::Ok;
        }
        let how = match status {
            ExitStatus::Code(c) => format!("exit code {c}"),
            ExitStatus::Signal(_) => "killed by a signal".to_owned(),
        };
        let line = last_line(stderr);
        Ran::Failed(if line.is_empty() {
            how
        } else {
            format!("{how}: {line}{}", hint(&line))
        })
    }
}

/// What a [`RulesJob`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesOutcome {
    /// Every rule in place now, in order (found or added).
    pub in_place: Vec<String>,
    /// The rules this run added.
    pub added: Vec<String>,
    pub warnings: Vec<String>,
}

/// Whether the current rule is being checked (`-C`) or added (`-A`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Check,
    Add,
}

/// Checks each rule with `-C` and adds it with `-A` when the check fails, one helper
/// process at a time: a pure state machine the event loop drives. `-C` exits 1 both for
/// "no such rule" and for other errors, so it only decides whether to try `-A`; the `-A`
/// error is the one reported. After a timeout, or past the budget, the remaining rules
/// are skipped.
#[derive(Debug, Clone)]
pub struct RulesJob {
    program: PathBuf,
    rules: Vec<Rule>,
    /// The rule being worked on.
    next: usize,
    op: Op,
    /// No command starts after this.
    budget_end: Instant,
    timed_out: bool,
    out: RulesOutcome,
}

impl RulesJob {
    pub fn new(program: PathBuf, rules: Vec<Rule>, now: Instant) -> RulesJob {
        RulesJob {
            program,
            rules,
            next: 0,
            op: Op::Check,
            budget_end: now + SETUP_BUDGET,
            timed_out: false,
            out: RulesOutcome::default(),
        }
    }

    /// The iptables binary the commands run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments of the next command, given how the last one ended (`None` the
    /// first time); `None` when the job is done.
    pub fn step(&mut self, last: Option<Ran>, now: Instant) -> Option<Vec<String>> {
        if let (Some(ran), Some(rule)) = (last, self.rules.get(self.next)) {
            let text = rule.text();
            match (self.op, ran) {
                (_, Ran::Ok) => {
                    if self.op == Op::Add {
                        self.out.added.push(text.clone());
                    }
                    self.out.in_place.push(text);
                }
                (Op::Check, Ran::Failed(_)) => {
                    self.op = Op::Add;
                    return Some(rule.args("-A"));
                }
                (Op::Add, Ran::Failed(why)) => self
                    .out
                    .warnings
                    .push(format!("could not add iptables rule `{text}`: {why}")),
                (_, Ran::TimedOut) => {
                    self.timed_out = true;
                    self.out.warnings.push(format!(
                        "could not add iptables rule `{text}`: iptables did not finish within {} s and was killed",
                        COMMAND_TIMEOUT.as_secs()
                    ));
                }
            }
            self.next += 1;
        }
        while let Some(rule) = self.rules.get(self.next) {
            let skip = if self.timed_out {
                "an earlier iptables command timed out".to_owned()
            } else if now >= self.budget_end {
                format!("the network setup used its {} s", SETUP_BUDGET.as_secs())
            } else {
                self.op = Op::Check;
                return Some(rule.args("-C"));
            };
            self.out
                .warnings
                .push(format!("skipped iptables rule `{}`: {skip}", rule.text()));
            self.next += 1;
        }
        None
    }

    /// Gives up on what is left (the init is stopping): each remaining rule is a warning.
    pub fn abandon(&mut self, why: &str) {
        while let Some(rule) = self.rules.get(self.next) {
            self.out
                .warnings
                .push(format!("skipped iptables rule `{}`: {why}", rule.text()));
            self.next += 1;
        }
    }

    pub fn outcome(&self) -> &RulesOutcome {
        &self.out
    }
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
        ..NetworkStatus::default()
    }
}

/// The network setup of the run mode: the plan, what the last setup found, and what has
/// been logged already (each step is logged once, not at every restart).
#[derive(Debug)]
pub struct Setup {
    plan: Plan,
    status: NetworkStatus,
    logged: BTreeSet<String>,
    pending: Option<Pending>,
    mtu: MtuShown,
}

/// The uplink's MTU and the flags dockerd got for it, as `status` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MtuShown {
    pub uplink: Option<u32>,
    pub flags: Vec<String>,
}

impl Setup {
    /// `mtu`: the uplink's MTU and the flags dockerd got for it, shown in every
    /// status (they apply in and out of gVisor).
    pub fn new(plan: Plan, mtu: MtuShown) -> Setup {
        let status = NetworkStatus {
            mode: plan.mode.as_str().to_owned(),
            uplink_mtu: mtu.uplink,
            mtu_flags: mtu.flags.clone(),
            ..NetworkStatus::default()
        };
        Setup {
            plan,
            status,
            logged: BTreeSet::new(),
            pending: None,
            mtu,
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

    /// At each dockerd start: the legacy links and the uplink, done at once (file
    /// operations and a netlink dump), and the rules as a job for the event loop to run
    /// beside dockerd's start. `None` when there is nothing to run (not gVisor, mode
    /// "off", no legacy iptables): the setup is complete then. In gVisor with `mode =
    /// "auto"` only; never fails, every problem is a warning.
    pub fn begin(&mut self, now: Instant) -> Option<RulesJob> {
        if self.plan.mode != Mode::Gvisor {
            return None;
        }
        let mut warnings = Vec::new();
        let mut news: Vec<(&'static str, String, String)> = Vec::new();
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
        let job = program.map(|p| RulesJob::new(p, wanted_rules(uplink.as_ref()), now));
        self.pending = Some(Pending {
            started: now,
            uplink,
            legacy_on_path,
            warnings,
            news,
        });
        match job {
            Some(job) => Some(job),
            None => {
                self.finish(&RulesOutcome::default(), now);
                None
            }
        }
    }

    /// The job is done (or was abandoned): logs what is new and updates the status.
    pub fn finish(&mut self, rules: &RulesOutcome, now: Instant) {
        let Some(Pending {
            started,
            uplink,
            legacy_on_path,
            mut warnings,
            mut news,
        }) = self.pending.take()
        else {
            return;
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
        info!(
            took_ms = now.saturating_duration_since(started).as_millis() as u64,
            "nested networking set up"
        );
        self.status = NetworkStatus {
            uplink_mtu: self.mtu.uplink,
            mtu_flags: self.mtu.flags.clone(),
            ..outcome_status(
                self.plan.mode,
                uplink.as_ref(),
                rules,
                legacy_on_path,
                warnings,
            )
        };
    }
}

/// What [`Setup::begin`] found, kept until the rules job is done.
#[derive(Debug)]
struct Pending {
    started: Instant,
    uplink: Option<Route>,
    legacy_on_path: bool,
    warnings: Vec<String>,
    /// What is new this time, logged at the end through one call site (each call site
    /// costs binary size): (message, detail, key that makes it once-only).
    news: Vec<(&'static str, String, String)>,
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
            let mut timed_out = false;
            wanted
                .iter()
                .map(|r| {
                    let found = !timed_out
                        && match run_blocking(&program, &r.args("-C"), COMMAND_TIMEOUT) {
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

/// Runs `program args` (an iptables command) to its end, for at most `timeout`; then
/// SIGKILL. For `check` only (`sys::command`); the init's loop never blocks on a helper
/// (it runs [`RulesJob`]'s commands as watched children).
pub fn run_blocking(program: &Path, args: &[String], timeout: Duration) -> Ran {
    use crate::sys::command::{self, Failure};
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    match command::run(program.as_os_str(), &args, timeout) {
        Ok(done) => Ran::from_exit(done.status, done.stderr.as_bytes()),
        Err(Failure::Timeout(_)) => Ran::TimedOut,
        Err(Failure::Spawn(e)) => Ran::Failed(format!("cannot run {}: {e}", program.display())),
        Err(Failure::Wait(e)) => Ran::Failed(format!("cannot wait for {}: {e}", program.display())),
    }
}

/// Reads what is available into `buf`, keeping its last [`STDERR_CAP`] bytes; true at
/// EOF.
pub fn drain(fd: &OwnedFd, buf: &mut Vec<u8>) -> bool {
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
            Err(rustix::io::Errno::AGAIN) => return false, // nothing more for now
            Err(_) => return true,                         // as good as the end
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
        // The siblings are taken from iptables-legacy's directory first, even when an
        // earlier PATH directory (here named twice) has one of them.
        let early = root.join("early");
        executable(&early.join("iptables-legacy-save"));
        executable(&early.join("ip6tables-legacy"));
        let path = std::env::join_paths([&early, &sbin, &early, &sbin]).unwrap();
        match find_legacy(&dind, &own, Some(&path)) {
            Legacy::Own { links, .. } => {
                assert_eq!(links[0].1, sbin.join("iptables-legacy"));
                assert_eq!(links[1].1, sbin.join("iptables-legacy-save"));
                // Not beside iptables-legacy: the other directories are searched.
                assert_eq!(
                    links.iter().find(|(n, _)| n == "ip6tables"),
                    Some(&("ip6tables".into(), early.join("ip6tables-legacy")))
                );
            }
            other => panic!("{other:?}"),
        }
        let path = std::env::join_paths([&sbin]).unwrap();
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

    #[test]
    fn path_prefix_table() {
        let own = Legacy::Own {
            dir: PathBuf::from("/run/dind-init/iptables-legacy"),
            links: Vec::new(),
        };
        let dind = Legacy::Dind(PathBuf::from(DIND_LEGACY_DIR));
        let cases = [
            (
                Mode::Gvisor,
                own.clone(),
                Some("/run/dind-init/iptables-legacy"),
            ),
            (Mode::Gvisor, dind, Some(DIND_LEGACY_DIR)),
            (Mode::Gvisor, Legacy::Missing, None),
            (Mode::Host, own.clone(), None),
            (Mode::Off, own, None),
        ];
        for (mode, legacy, want) in cases {
            let plan = Plan { mode, legacy };
            assert_eq!(plan.path_prefix(), want.map(Path::new), "{plan:?}");
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

    /// Runs a job against scripted answers; returns the outcome and the commands run.
    fn run_job(rules: &[Rule], answers: &[Ran], now: Instant) -> (RulesOutcome, Vec<String>) {
        let mut job = RulesJob::new(PathBuf::from("/x/iptables"), rules.to_vec(), now);
        let mut answers: VecDeque<Ran> = answers.iter().cloned().collect();
        let mut asked = Vec::new();
        let mut last = None;
        while let Some(args) = job.step(last.take(), now) {
            asked.push(args.join(" "));
            last = Some(answers.pop_front().unwrap_or(Ran::Ok));
        }
        (job.outcome().clone(), asked)
    }

    #[test]
    fn rules_check_before_add_table() {
        let fail = |s: &str| Ran::Failed(s.to_owned());
        let rules = wanted_rules(None);
        let now = Instant::now();
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
            let (out, run) = run_job(&rules, &answers, now);
            assert_eq!(
                (
                    out.in_place.len(),
                    out.added.len(),
                    out.warnings.len(),
                    run.len()
                ),
                (in_place, added, warnings, asked),
                "{answers:?}: {out:?} {run:?}"
            );
            assert!(run[0].contains(" -C FORWARD "), "{run:?}");
        }
        let (out, run) = run_job(
            &rules[..1],
            &[fail("x"), fail("exit code 1: Invalid argument")],
            now,
        );
        assert_eq!(
            out.warnings,
            ["could not add iptables rule `FORWARD -i docker0 -o docker0 -j DROP`: exit code 1: Invalid argument"]
        );
        assert!(run[1].contains(" -A FORWARD "), "{run:?}");
        // Past the budget nothing more is run.
        let mut job = RulesJob::new(PathBuf::from("/x/iptables"), rules.clone(), now);
        assert!(job.step(None, now + SETUP_BUDGET).is_none());
        assert_eq!(job.outcome().warnings.len(), 2);
        assert!(job.outcome().warnings[0].contains("the network setup used its 10 s"));
        // Abandoned half way: the rest are warnings.
        let mut job = RulesJob::new(PathBuf::from("/x/iptables"), rules, now);
        assert!(job.step(None, now).is_some());
        job.abandon("the init is stopping");
        assert_eq!(job.outcome().warnings.len(), 2);
        assert!(job.step(None, now).is_none());
    }

    #[test]
    fn helper_exits_are_judged_from_status_and_stderr() {
        assert_eq!(Ran::from_exit(ExitStatus::Code(0), b"noise"), Ran::Ok);
        assert_eq!(
            Ran::from_exit(
                ExitStatus::Code(3),
                b"iptables v1.8.9 (legacy): can't initialize iptables table `filter'\nPerhaps iptables or your kernel needs to be upgraded.\n"
            ),
            Ran::Failed(
                "exit code 3: iptables v1.8.9 (legacy): can't initialize iptables table `filter' (without CAP_NET_RAW gVisor has no iptables: start runsc with --net-raw)"
                    .to_owned()
            )
        );
        assert_eq!(
            Ran::from_exit(ExitStatus::Signal(9), b""),
            Ran::Failed("killed by a signal".to_owned())
        );
    }
}
