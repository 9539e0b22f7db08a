//! `dind-init check` (SPEC §2): the preflight report, printed on stdout.
//!
//! It shows what [`environment::detect`] found, the cgroup plan the init would run
//! ([`cgroup::plan`]), and every problem with its fix, then a verdict. The exit code is 1
//! when dockerd certainly cannot start (no dockerd, not root, no CAP_SYS_ADMIN, a devices
//! cgroup that cannot exist, read-only cgroups without the privilege to remount them, a
//! certain failure of the plan), else 0; warnings do not change it.
//!
//! It changes nothing: no mount stays, no directory is created. The one exception to
//! "no mounts" is gVisor, where whether the devices controller exists can only be learned
//! by trying (/proc/cgroups lists only controllers already attached): then
//! [`cgroup::probe_controller`] mounts it on a private temp directory and detaches it at once.
//!
//! Config errors are not handled here: `main` reports them (exit 2) before calling [`check`].
//!
//! Predictions (SPEC §7): some runtimes below dockerd cannot work in this environment
//! although dockerd starts and answers `/_ping`. `check` learns what it can ([`Runtime`])
//! and [`predict`] says what will fail, as warnings with cause and fix:
//! - /proc's root inode is not 1 (gVisor: 86) and the `runc` on dockerd's PATH is 1.2.8
//!   or later: runc refuses this /proc (`unsafe procfs detected`), no container starts;
//! - a netlink link-group subscription is refused (runsc's netlink has no multicast
//!   groups) and dockerd is 28 or later: Docker 28 subscribes for each container's
//!   interface, so bridge networking fails.
//!
//! To learn the versions it runs `runc --version` and `dockerd --version`, each bounded
//! by [`VERSION_TIMEOUT`], and only when the cheap fact before it (the inode, the
//! subscription) says the version matters. A dockerd configured with another default
//! runtime (`--default-runtime`) is judged by the `runc` on its PATH all the same.

use std::fmt::Write as _;

use crate::config::{CgroupMode, Config};
use crate::prepare::cgroup::{self, Action, CgroupKind, Mode, Plan, Securityfs, Snapshot};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::log;
use crate::prepare::environment::{self, DockerdBinary, Environment, Version};
use crate::prepare::network::{self, Legacy, Report};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// dockerd certainly cannot start (or run containers): exit 1.
    Error,
    /// Something will not work, or may not; dockerd can start.
    Warning,
    /// Worth knowing; nothing is wrong.
    Note,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Note => "note",
        }
    }
}

/// One finding: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub cause: String,
    pub fix: String,
}

impl Problem {
    fn new(severity: Severity, cause: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            severity,
            cause: cause.into(),
            fix: fix.into(),
        }
    }

    /// From a one-line reason written "cause; fix: fix" (the cgroup failures).
    fn from_reason(severity: Severity, reason: &str) -> Self {
        match reason.split_once("; fix: ") {
            Some((cause, fix)) => Problem::new(severity, cause, fix),
            None => Problem::new(severity, reason, ""),
        }
    }
}

/// Prints the preflight report for `cfg` and returns the exit code (0 or 1).
pub fn check(cfg: &Config) -> i32 {
    let env = environment::detect(cfg);
    let (boot_lines, boot_problems) = boot_steps(cfg, &env.dockerd);
    log::print_stdout(&boot_lines);
    let snap = Snapshot::read();
    let plan = snap
        .as_ref()
        .ok()
        .map(|s| cgroup::plan(s, env.gvisor, &cfg.cgroup));
    let devices_probe = match (&snap, &plan) {
        (Ok(s), Some(p)) if needs_devices_probe(s, p) => Some(cgroup::probe_controller("devices")),
        _ => None,
    };
    let mut problems = assess(cfg, &env, &plan, devices_probe);
    if let Err(e) = &snap {
        problems.insert(
            0,
            Problem::new(
                Severity::Error,
                format!("{e}: the mount table cannot be read"),
                "mount /proc in the container",
            ),
        );
    }
    let root = rustix::process::geteuid().is_root();
    if !root {
        problems.insert(
            0,
            Problem::new(
                Severity::Error,
                "not running as root: dockerd needs to be started with root privileges",
                "run the container as user 0",
            ),
        );
    }
    // Nested networking (SPEC §7a): what the init would set up, found by reading only.
    let net_plan = network::Plan::new(
        cfg.network.mode,
        env.gvisor,
        Some(&crate::prepare::environment::dockerd_path_env(
            cfg,
            std::env::var_os("PATH").as_deref(),
        )),
    );
    let net = network::inspect(&net_plan);
    problems.extend(network_problems(&net, env.gvisor));
    if let Ok(s) = &snap {
        problems.extend(securityfs_problems(cgroup::securityfs_here(
            &s.visible_mounts(),
            &env,
        )));
    }
    let runtime = Runtime::learn(cfg, &env);
    problems.extend(predict(&runtime));
    problems.splice(0..0, boot_problems);
    let mut text = render_report(&env, plan.as_ref(), Some(&net), &problems);
    // The facts behind the predictions go before the problems.
    if let Some(at) = text.find("\nproblems:").map(|i| i + 1) {
        text.insert_str(at, &render_runtime(&runtime));
    }
    log::print_stdout(&text);
    exit_code(&problems)
}

/// What boot would do before anything else, and what would stop it: the status
/// socket's paths (SPEC §8: never replaced), docker:dind's TLS contract
/// (`DOCKER_TLS_CERTDIR`) and the data root's tmpfs. COMMAND's dockerd words are
/// not known here.
fn boot_steps(cfg: &Config, dockerd: &DockerdBinary) -> (String, Vec<Problem>) {
    use crate::prepare::{launch, storage, tls};
    use crate::sys::unix_socket::{self, Found};
    let mut problems = Vec::new();
    // There with its execute bits, and still exec would fail: a missing loader or
    // `#!` interpreter (a glibc dockerd in a musl image), another architecture.
    if let DockerdBinary::Found(path) = dockerd {
        use crate::sys::exec_header::{inspect, Verdict};
        let fix = "install Docker built for this image (its C library and architecture), or set dockerd.path";
        match inspect(path) {
            Verdict::Runs => {}
            Verdict::Fails(why) => problems.push(Problem::new(
                Severity::Error,
                format!("dockerd at {} cannot be executed: {why}", path.display()),
                fix,
            )),
            // It runs where binfmt_misc hands it to qemu-user.
            Verdict::Foreign(why) => problems.push(Problem::new(
                Severity::Warning,
                format!(
                    "dockerd at {} may not run: {why} (only through binfmt_misc and qemu-user)",
                    path.display()
                ),
                fix,
            )),
        }
    }
    // The directories boot makes for the sockets, pid and ready files.
    for (dir, keys) in crate::prepare::cgroup::runtime_dirs_with_keys(cfg) {
        if let Some(why) = crate::sys::mounts::unwritable_dir(&dir) {
            let dockerds = keys.iter().any(|(k, _)| k.starts_with("dockerd"));
            let names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            problems.push(Problem::new(
                if dockerds {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                crate::prepare::cgroup::runtime_dir_warning(
                    &keys,
                    &format!(
                        "cannot {} directory {}: {why}",
                        if dir.is_dir() { "write in" } else { "create" },
                        dir.display()
                    ),
                ),
                format!("point {} at a writable directory", names.join(" and ")),
            ));
        }
    }
    let socket = &cfg.readiness.socket;
    let socket_line = match unix_socket::inspect(socket) {
        Ok(Found::Nothing) => "free".to_owned(),
        Ok(Found::DeadSocket) => "a socket nothing accepts on (replaced at boot)".to_owned(),
        Ok(Found::LiveSocket) => match crate::client::probe::state_at(socket) {
            // The container's own running init (`docker exec ... dind-init check`).
            Some(state) => format!("served by a running dind-init (state {state})"),
            None => {
                problems.push(Problem::new(
                    Severity::Error,
                    format!(
                        "readiness.socket: {} is a socket another process accepts on (not a dind-init), which dind-init never takes over",
                        socket.display()
                    ),
                    "stop the other process, or point readiness.socket at a free path",
                ));
                "taken (another process accepts on it)".to_owned()
            }
        },
        Ok(Found::Other(what)) => {
            problems.push(Problem::new(
                Severity::Error,
                format!(
                    "readiness.socket: {} is {what}, which dind-init never replaces",
                    socket.display()
                ),
                "point readiness.socket at a free path",
            ));
            format!("taken ({what})")
        }
        Err(e) => format!("cannot be looked at ({e})"),
    };
    let user = launch::user_args(cfg, &[]);
    let request = tls::request(std::env::var_os(tls::CERTDIR_ENV).as_deref(), &user);
    let (tls_line, tls_error) = tls::inspect(&request, std::env::var_os("PATH").as_deref());
    if tls_error {
        problems.push(Problem::new(
            Severity::Error,
            format!("TLS ({}): {tls_line}", tls::CERTDIR_ENV),
            "see the tls line above; the boot would stop there",
        ));
    }
    let storage_line = storage::inspect(
        cfg.dockerd.data_root_tmpfs.as_deref(),
        &storage::data_root(&user),
    );
    let dockerd_path = match dockerd {
        DockerdBinary::Found(p) => Some(p.as_path()),
        _ => None,
    };
    let mtu = crate::prepare::mtu::MtuPlan::decide(&user, dockerd_path);
    let flags = mtu.flags(&user);
    let mtu_line = match (&mtu.uplink, flags.is_empty()) {
        (None, _) => "no IPv4 default route: nothing to pass".to_owned(),
        (Some((dev, m)), true) => format!("uplink {dev} {m}: nothing to pass"),
        (Some((dev, m)), false) => format!("uplink {dev} {m}: dockerd gets {}", flags.join(" ")),
    };
    let mtu_line = match &mtu.note {
        Some(note) => format!("{mtu_line} ({note})"),
        None => mtu_line,
    };
    (
        format!(
            "status socket: {} ({socket_line})\ntls: {tls_line}\nstorage: {storage_line}\nmtu: {mtu_line}\n",
            socket.display()
        ),
        problems,
    )
}

/// 1 when any problem is an error.
pub fn exit_code(problems: &[Problem]) -> i32 {
    if problems.iter().any(|p| p.severity == Severity::Error) {
        1
    } else {
        0
    }
}

/// gVisor, devices would have to be mounted, and /proc/cgroups does not say it exists.
fn needs_devices_probe(snap: &Snapshot, plan: &Plan) -> bool {
    plan.mode == Mode::V1Gvisor
        && plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::MountCgroup { hierarchy, .. } if hierarchy.has("devices")))
        && !snap.attached_controllers().contains("devices")
}

/// The problems of this environment and plan. Pure, apart from what was already probed.
pub fn assess(
    cfg: &Config,
    env: &Environment,
    plan: &Option<Plan>,
    devices_probe: Option<Result<(), Error>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    match &env.dockerd {
        DockerdBinary::Found(_) => {}
        DockerdBinary::NotFound { searched } => problems.push(Problem::new(
            Severity::Error,
            format!("dockerd not found ({searched})"),
            "install Docker in the image, or set dockerd.path",
        )),
        DockerdBinary::NotExecutable { path, why } => problems.push(Problem::new(
            Severity::Error,
            format!("dockerd at {} cannot be executed ({why})", path.display()),
            "install Docker in the image with its executable bits, or set dockerd.path",
        )),
    }
    if !env.caps.sys_admin {
        problems.push(Problem::new(
            Severity::Error,
            "the container lacks CAP_SYS_ADMIN: dockerd cannot mount its storage or prepare cgroups",
            "run the container privileged (runc), or under gVisor (runsc grants it inside the sandbox)",
        ));
    }
    if !env.caps.net_admin {
        let bridge_off = cfg.dockerd.args.iter().any(|a| a == "--bridge=none");
        problems.push(Problem::new(
            if bridge_off {
                Severity::Warning
            } else {
                Severity::Error
            },
            "the container lacks CAP_NET_ADMIN: dockerd cannot create its bridge or configure networks",
            "add CAP_NET_ADMIN (or run privileged); with dockerd.args = [\"--bridge=none\"] dockerd starts without networking",
        ));
    }
    if env.gvisor && !env.caps.net_raw {
        problems.push(Problem::new(
            Severity::Warning,
            "no CAP_NET_RAW in the sandbox: iptables cannot work, so nested containers get no egress and no name resolution",
            "start runsc with --net-raw",
        ));
    }
    if let Some(plan) = plan {
        if let Some(reason) = &plan.failure {
            problems.push(Problem::from_reason(Severity::Error, reason));
        }
        let remounts = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::RemountRw { .. }))
            .count();
        if remounts > 0 && env.caps.sys_admin {
            problems.push(Problem::new(
                Severity::Warning,
                format!("{remounts} cgroup mounts are read-only; the init will try to remount them read-write, which is refused without privileges"),
                "run the container privileged (runc) or under gVisor, so that cgroups are writable",
            ));
        }
        // Only when it matters: dockerd (v1, hybrid) needs a devices hierarchy
        // it can write to; a cgroup v2 host or one already prepared is fine.
        let devices_ready = env.cgroup == CgroupKind::V2
            || env
                .cgroup_mounts
                .iter()
                .any(|m| m.writable && m.label.split(',').any(|c| c == "devices"));
        if cfg.cgroup.mode == CgroupMode::Off && !devices_ready {
            problems.push(Problem::new(
                Severity::Warning,
                "cgroup.mode is \"off\": cgroups are left as they are, and dockerd refuses to start without a devices cgroup mount (v1)",
                "set cgroup.mode = \"auto\" unless something else prepares cgroups",
            ));
        }
    }
    match devices_probe {
        Some(Err(Error::Mount { source, .. }))
            if source.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
        {
            problems.push(Problem::from_reason(
                Severity::Error,
                &cgroup::reason_gvisor_devices(&source),
            ));
        }
        Some(Err(e)) => problems.push(Problem::new(
            Severity::Warning,
            format!("could not learn whether this runsc has the devices cgroup controller ({e})"),
            "run `dind-init` and read its log: it tries the mount itself",
        )),
        Some(Ok(())) | None => {}
    }
    if env.stray_systemd {
        problems.push(Problem::new(
            Severity::Note,
            "/run/systemd/system exists but systemd is not running: dockerd on cgroup v2 would pick the systemd cgroup driver",
            "nothing to do: dind-init passes --exec-opt native.cgroupdriver=cgroupfs",
        ));
    }
    problems
}

/// What the securityfs decision means for the user (SPEC §5, AppArmor). Pure.
pub fn securityfs_problems(decision: Securityfs) -> Vec<Problem> {
    match decision {
        Securityfs::Warn => vec![Problem::from_reason(
            Severity::Warning,
            &cgroup::reason_apparmor_parser_missing(),
        )],
        Securityfs::Skip => vec![Problem::new(
            Severity::Note,
            cgroup::securityfs_skipped(),
            "to confine nested containers with AppArmor, install the apparmor package in the image",
        )],
        Securityfs::Leave | Securityfs::Mount => Vec::new(),
    }
}

/// The problems of the nested-networking report. Pure.
pub fn network_problems(report: &Report, gvisor: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    match report.mode {
        network::Mode::Gvisor => {
            if report.legacy == Legacy::Missing {
                problems.push(Problem::new(
                    Severity::Warning,
                    "no iptables-legacy in the image: container names will not resolve on user networks, and nested containers get no egress",
                    "install iptables in the image (Debian/Ubuntu: apt-get install iptables; Alpine: apk add iptables-legacy)",
                ));
            }
            match &report.uplink {
                Err(e) => problems.push(Problem::new(
                    Severity::Warning,
                    format!("could not read the IPv4 default route ({e}): no SNAT rules, so nested containers get no egress"),
                    "",
                )),
                Ok(None) => problems.push(Problem::new(
                    Severity::Note,
                    "no IPv4 default route: nested containers will get no egress (traffic between them still works)",
                    "give the sandbox a network (e.g. runsc --network=sandbox) if they need one",
                )),
                Ok(Some(_)) => {}
            }
        }
        network::Mode::Off if gvisor => problems.push(Problem::new(
            Severity::Note,
            "network.mode is \"off\": in gVisor, nested containers get no egress and no container names unless you set up legacy iptables and SNAT yourself",
            "set network.mode = \"auto\" to let dind-init do it",
        )),
        network::Mode::Off | network::Mode::Host => {}
    }
    problems
}

/// How long `runc --version` or `dockerd --version` may take in `check`.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The first runc that refuses a /proc whose root inode is not 1 (runc's procfs
/// hardening of 2025-11, also in 1.3.3 and 1.4; every later release has it). Compared as
/// numbers, so every 1.3.x counts as later.
pub const RUNC_PROCFS_CHECK: Version = Version::new(1, 2, 8);

/// The first Docker that subscribes to netlink link updates for each container.
pub const DOCKER_LINK_SUBSCRIPTION: u32 = 28;

/// What `check` learned about the runtimes below dockerd; each `None` was not asked
/// (its answer could not change the prediction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub gvisor: bool,
    /// The inode number of /proc's root, or why it could not be read.
    pub procfs_root_inode: Result<u64, String>,
    /// `runc` on dockerd's PATH and its version, asked when the inode is not 1.
    pub runc: Option<Tool>,
    /// Whether a netlink link-group subscription was accepted (`Err`: the refusal).
    pub link_subscription: Result<(), String>,
    /// dockerd's version, asked when the subscription was refused.
    pub dockerd: Option<Tool>,
}

/// A program and its version, as far as they could be learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// Not on the PATH (the text says where it was looked for).
    NotFound(String),
    /// There, but its version could not be read (why).
    Unknown {
        path: PathBuf,
        why: String,
    },
    Found {
        path: PathBuf,
        version: Version,
    },
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tool::NotFound(searched) => write!(f, "not found ({searched})"),
            Tool::Unknown { path, why } => {
                write!(f, "{}, version unknown ({why})", path.display())
            }
            Tool::Found { path, version } => write!(f, "{} {version}", path.display()),
        }
    }
}

impl Tool {
    /// Runs `program --version` (bounded) and reads the version.
    fn ask(program: DockerdBinary) -> Tool {
        let path = match program {
            DockerdBinary::Found(path) => path,
            DockerdBinary::NotFound { searched } => return Tool::NotFound(searched),
            DockerdBinary::NotExecutable { path, why } => return Tool::Unknown { path, why },
        };
        match environment::version_output(&path, VERSION_TIMEOUT) {
            Ok(out) => match Version::from_version_output(&out) {
                Some(version) => Tool::Found { path, version },
                None => Tool::Unknown {
                    path,
                    why: format!("no version in {:?}", out.lines().next().unwrap_or_default()),
                },
            },
            Err(why) => Tool::Unknown { path, why },
        }
    }
}

impl Runtime {
    /// Looks, and runs `runc --version` / `dockerd --version` only when needed.
    pub fn learn(cfg: &Config, env: &Environment) -> Runtime {
        let procfs_root_inode = environment::procfs_root_inode().map_err(|e| e.to_string());
        // dockerd, containerd and its shim find runc on dockerd's PATH.
        let path_env = environment::dockerd_path_env(cfg, std::env::var_os("PATH").as_deref());
        let runc = match procfs_root_inode {
            Ok(1) => None,
            _ => Some(Tool::ask(environment::locate_program(
                std::ffi::OsStr::new("runc"),
                Some(&path_env),
                environment::DEFAULT_PATH,
            ))),
        };
        let link_subscription =
            crate::sys::netlink::subscribe_link_updates().map_err(|e| e.to_string());
        let dockerd = match (&link_subscription, &env.dockerd) {
            (Ok(()), _) => None,
            (Err(_), binary) => Some(Tool::ask(binary.clone())),
        };
        Runtime {
            gvisor: env.gvisor,
            procfs_root_inode,
            runc,
            link_subscription,
            dockerd,
        }
    }
}

/// What will fail in this runtime although dockerd starts. Pure.
pub fn predict(rt: &Runtime) -> Vec<Problem> {
    let mut problems = Vec::new();
    let where_ = if rt.gvisor { "gVisor's" } else { "this" };
    if let (Ok(inode), Some(runc)) = (&rt.procfs_root_inode, &rt.runc) {
        if *inode != 1 {
            match runc {
                Tool::Found { path, version } if *version >= RUNC_PROCFS_CHECK => {
                    problems.push(Problem::new(
                        Severity::Warning,
                        format!(
                            "containers cannot start: runc {version} ({}) refuses {where_} /proc (root inode {inode}; runc {RUNC_PROCFS_CHECK} and later want 1 and fail with \"unsafe procfs detected\")",
                            path.display()
                        ),
                        format!("use runc older than {RUNC_PROCFS_CHECK} in the image (Debian trixie's runc 1.1.15 works), or a newer runsc"),
                    ));
                }
                Tool::Unknown { path, why } => problems.push(Problem::new(
                    Severity::Note,
                    format!(
                        "{where_} /proc has root inode {inode}: runc {RUNC_PROCFS_CHECK} and later refuse it (\"unsafe procfs detected\"), and the version of {} could not be read ({why})",
                        path.display()
                    ),
                    format!("make sure the image's runc is older than {RUNC_PROCFS_CHECK}, or use a newer runsc"),
                )),
                Tool::Found { .. } | Tool::NotFound(_) => {}
            }
        }
    }
    if let Err(refused) = &rt.link_subscription {
        let netlink = if rt.gvisor {
            "this runsc's netlink has no multicast groups".to_owned()
        } else {
            "this network stack refuses netlink multicast subscriptions".to_owned()
        };
        match &rt.dockerd {
            Some(Tool::Found { version, .. }) if version.major >= DOCKER_LINK_SUBSCRIPTION => {
                problems.push(Problem::new(
                    Severity::Warning,
                    format!(
                        "bridge networking cannot work: {netlink} (a link-update subscription was refused: {refused}), and Docker {version} subscribes to link updates for each container's interface (Docker {DOCKER_LINK_SUBSCRIPTION}+: \"failed to subscribe to link updates\"); only --network=none and --network=host containers will run"
                    ),
                    format!("use Docker {} or older in the image, or a newer runsc", DOCKER_LINK_SUBSCRIPTION - 1),
                ));
            }
            Some(Tool::Found { .. }) | Some(Tool::NotFound(_)) | None => {}
            Some(Tool::Unknown { path, why }) => problems.push(Problem::new(
                Severity::Note,
                format!(
                    "{netlink} (a link-update subscription was refused: {refused}): Docker {DOCKER_LINK_SUBSCRIPTION} and later cannot give containers bridge networking here, and the version of {} could not be read ({why})",
                    path.display()
                ),
                format!("use Docker {} or older in the image, or a newer runsc", DOCKER_LINK_SUBSCRIPTION - 1),
            )),
        }
    }
    problems
}

/// The facts behind the predictions, for the report.
fn render_runtime(rt: &Runtime) -> String {
    let mut out = String::from("runtime below dockerd:\n");
    let inode = match &rt.procfs_root_inode {
        Ok(1) => "1".to_owned(),
        Ok(n) => format!("{n} (not 1: runc {RUNC_PROCFS_CHECK} and later refuse it)"),
        Err(e) => format!("unknown ({e})"),
    };
    let _ = writeln!(out, "  /proc root inode:     {inode}");
    if let Some(runc) = &rt.runc {
        let _ = writeln!(out, "  runc:                 {runc}");
    }
    let subscription = match &rt.link_subscription {
        Ok(()) => "accepted".to_owned(),
        Err(e) => {
            format!("refused ({e}): Docker {DOCKER_LINK_SUBSCRIPTION}+ bridge networking fails")
        }
    };
    let _ = writeln!(out, "  netlink link updates: {subscription}");
    if let Some(dockerd) = &rt.dockerd {
        let _ = writeln!(out, "  dockerd version:      {dockerd}");
    }
    out
}

/// The nested-networking section of the report.
fn render_network(out: &mut String, report: &Report) {
    match report.mode {
        network::Mode::Host => {
            let _ = writeln!(
                out,
                "network: host (not gVisor: dockerd sets up its own networking)"
            );
        }
        network::Mode::Off => {
            let _ = writeln!(
                out,
                "network: off (network.mode = \"off\": dind-init sets up nothing)"
            );
        }
        network::Mode::Gvisor => {
            let _ = writeln!(
                out,
                "network: gvisor (set up by dind-init before each dockerd start)"
            );
            let on_path = if report.legacy == Legacy::Missing {
                String::new()
            } else {
                ", first on dockerd's PATH".to_owned()
            };
            let _ = writeln!(out, "  legacy iptables: {}{on_path}", report.legacy);
            let uplink = match &report.uplink {
                Ok(Some(r)) => format!("{} {}", r.dev, r.addr),
                Ok(None) => "none (no IPv4 default route)".to_owned(),
                Err(e) => format!("unknown ({e})"),
            };
            let _ = writeln!(out, "  uplink:          {uplink}");
            let _ = writeln!(out, "  rules:");
            for (rule, found) in &report.rules {
                let state = if *found {
                    "in place"
                } else if report.legacy == Legacy::Missing {
                    "cannot be added: no iptables-legacy"
                } else {
                    "added when dind-init starts dockerd"
                };
                let _ = writeln!(out, "    {rule} ({state})");
            }
        }
    }
}

/// The report's text.
pub fn render(env: &Environment, plan: Option<&Plan>, problems: &[Problem]) -> String {
    render_report(env, plan, None, problems)
}

/// The report's text, with the nested-networking section when given.
pub fn render_report(
    env: &Environment,
    plan: Option<&Plan>,
    network: Option<&Report>,
    problems: &[Problem],
) -> String {
    let mut out = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(out, "environment: {}", env.summary());
    let _ = writeln!(
        out,
        "  gVisor:        {} ({})",
        yes_no(env.gvisor),
        env.gvisor_reason
    );
    let _ = writeln!(
        out,
        "  kernel:        {} {}",
        env.uname_release, env.uname_version
    );
    let _ = writeln!(
        out,
        "  cgroup:        {} (/sys/fs/cgroup is {})",
        env.cgroup_kind_str(),
        env.cgroup_fs
    );
    let mounts = if env.cgroup_mounts.is_empty() {
        "none".to_owned()
    } else {
        env.cgroup_mounts
            .iter()
            .map(|m| {
                format!(
                    "{} ({}, {})",
                    m.label,
                    m.mount_point,
                    if m.writable { "rw" } else { "ro" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "  cgroup mounts: {mounts}");
    let _ = writeln!(
        out,
        "  capabilities:  CAP_SYS_ADMIN {}, CAP_NET_ADMIN {}, CAP_NET_RAW {}",
        yes_no(env.caps.sys_admin),
        yes_no(env.caps.net_admin),
        yes_no(env.caps.net_raw)
    );
    let _ = writeln!(out, "  dockerd:       {}", env.dockerd);
    let _ = writeln!(out, "  PID 1:         {}", yes_no(env.pid1));
    match plan {
        Some(plan) => {
            let _ = writeln!(out, "cgroup plan (mode {}):", plan.mode.as_str());
            if plan.actions.is_empty() {
                let what = if plan.mode == Mode::Off {
                    "nothing: cgroup.mode is \"off\""
                } else {
                    "nothing to do: cgroups are already prepared"
                };
                let _ = writeln!(out, "  {what}");
            }
            for (i, action) in plan.actions.iter().enumerate() {
                let _ = writeln!(out, "  {}. {action}", i + 1);
            }
            if plan.replan {
                let _ = writeln!(
                    out,
                    "  then plan again on what the new cgroup2 mount shows: at the machine's \
                     root cgroup enable every controller and move nothing, else move every \
                     process of the root cgroup into init first"
                );
            }
        }
        None => {
            let _ = writeln!(out, "cgroup plan: none (the mount table cannot be read)");
        }
    }
    if let Some(report) = network {
        render_network(&mut out, report);
    }
    if problems.is_empty() {
        let _ = writeln!(out, "problems: none");
    } else {
        let _ = writeln!(out, "problems:");
        for p in problems {
            let _ = writeln!(out, "  {}: {}", p.severity.as_str(), p.cause);
            if !p.fix.is_empty() {
                let _ = writeln!(out, "    fix: {}", p.fix);
            }
        }
    }
    let count = |s: Severity| problems.iter().filter(|p| p.severity == s).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let verdict = if errors > 0 {
        format!(
            "dockerd cannot start ({}, {})",
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    } else {
        format!("ok: dockerd can start ({})", plural(warnings, "warning"))
    };
    let _ = writeln!(out, "result: {verdict}");
    out
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::prepare::environment::{AppArmor, Capabilities};
    use std::path::{Path, PathBuf};

    fn env(gvisor: bool) -> Environment {
        Environment {
            gvisor,
            gvisor_reason: "test".to_owned(),
            pid1: true,
            uname_release: "4.4.0".to_owned(),
            uname_version: "#1".to_owned(),
            cgroup: CgroupKind::V1,
            cgroup_fs: "sysfs".to_owned(),
            cgroup_mounts: Vec::new(),
            caps: Capabilities {
                sys_admin: true,
                net_admin: true,
                net_raw: true,
            },
            dockerd: DockerdBinary::Found(PathBuf::from("/usr/bin/dockerd")),
            stray_systemd: false,
            apparmor: AppArmor::default(),
        }
    }

    fn fixture_plan(case: &str, gvisor: bool) -> (Snapshot, Plan) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(case);
        let snap = Snapshot::from_dir(&dir).unwrap();
        let plan = cgroup::plan(&snap, gvisor, &Config::default().cgroup);
        (snap, plan)
    }

    fn einval() -> Error {
        Error::Mount {
            what: "cgroup devices".to_owned(),
            target: PathBuf::from("/tmp/x"),
            source: std::io::Error::from_raw_os_error(22),
        }
    }

    #[test]
    fn mode_off_warns_only_without_a_writable_devices_hierarchy() {
        let mut cfg = Config::default();
        cfg.cgroup.mode = CgroupMode::Off;
        let (snap, _) = fixture_plan("host-v1-hybrid", false);
        let plan = Some(cgroup::plan(&snap, false, &cfg.cgroup));
        let warned = |env: &Environment| {
            assess(&cfg, env, &plan, None)
                .iter()
                .any(|p| p.cause.contains("cgroup.mode is \"off\""))
        };
        let mut e = env(false);
        assert!(warned(&e), "no cgroup mounts at all");
        e.cgroup_mounts
            .push(crate::prepare::environment::CgroupMount {
                mount_point: "/sys/fs/cgroup/devices".to_owned(),
                label: "devices".to_owned(),
                writable: false,
            });
        assert!(warned(&e), "read-only devices");
        e.cgroup_mounts[0].writable = true;
        assert!(!warned(&e), "a writable devices hierarchy");
        let mut v2 = env(false);
        v2.cgroup = CgroupKind::V2;
        assert!(!warned(&v2), "cgroup v2");
    }

    #[test]
    fn network_section_and_problems() {
        use crate::sys::netlink::Route;
        let report = Report {
            mode: network::Mode::Gvisor,
            legacy: Legacy::Own {
                dir: PathBuf::from("/run/dind-init/iptables-legacy"),
                links: vec![(
                    "iptables".to_owned(),
                    PathBuf::from("/usr/sbin/iptables-legacy"),
                )],
            },
            uplink: Ok(Some(Route {
                dev: "eth0".to_owned(),
                addr: std::net::Ipv4Addr::new(10, 0, 0, 2),
            })),
            rules: vec![
                ("FORWARD -i docker0 -o docker0 -j DROP".to_owned(), true),
                (
                    "nat POSTROUTING -o eth0 -p tcp -j SNAT --to-source 10.0.0.2".to_owned(),
                    false,
                ),
            ],
        };
        assert_eq!(network_problems(&report, true), []);
        let text = render_report(&env(true), None, Some(&report), &[]);
        assert!(
            text.contains(
                "network: gvisor (set up by dind-init before each dockerd start)\n\
                 \x20 legacy iptables: /run/dind-init/iptables-legacy (links to /usr/sbin/iptables-legacy and its siblings), first on dockerd's PATH\n\
                 \x20 uplink:          eth0 10.0.0.2\n\
                 \x20 rules:\n\
                 \x20   FORWARD -i docker0 -o docker0 -j DROP (in place)\n\
                 \x20   nat POSTROUTING -o eth0 -p tcp -j SNAT --to-source 10.0.0.2 (added when dind-init starts dockerd)\n"
            ),
            "{text}"
        );
        // No legacy binary: one warning, still exit 0; no uplink: a note.
        let bare = Report {
            legacy: Legacy::Missing,
            uplink: Ok(None),
            ..report.clone()
        };
        let problems = network_problems(&bare, true);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].severity, Severity::Warning);
        assert!(problems[0]
            .cause
            .contains("container names will not resolve"));
        assert_eq!(problems[1].severity, Severity::Note);
        assert_eq!(exit_code(&problems), 0);
        let text = render_report(&env(true), None, Some(&bare), &problems);
        assert!(
            text.contains("  uplink:          none (no IPv4 default route)\n"),
            "{text}"
        );
        assert!(
            text.contains("(cannot be added: no iptables-legacy)"),
            "{text}"
        );
        // Outside gVisor: one line, no problems.
        let host = Report {
            mode: network::Mode::Host,
            legacy: Legacy::Missing,
            uplink: Ok(None),
            rules: vec![],
        };
        assert_eq!(network_problems(&host, false), []);
        assert!(render_report(&env(false), None, Some(&host), &[])
            .contains("network: host (not gVisor: dockerd sets up its own networking)\n"));
        let off = Report {
            mode: network::Mode::Off,
            ..host
        };
        assert_eq!(network_problems(&off, true)[0].severity, Severity::Note);
        assert_eq!(network_problems(&off, false), []);
    }

    #[test]
    fn old_runsc_devices_probe_is_certain_failure() {
        let (snap, plan) = fixture_plan("runsc-20221219", true);
        assert!(needs_devices_probe(&snap, &plan));
        let problems = assess(
            &Config::default(),
            &env(true),
            &Some(plan.clone()),
            Some(Err(einval())),
        );
        assert_eq!(exit_code(&problems), 1);
        assert!(problems[0].cause.contains("Devices cgroup isn't mounted"));
        assert!(problems[0].fix.contains("bookworm-backports"));
        let text = render(&env(true), Some(&plan), &problems);
        assert!(
            text.contains("result: dockerd cannot start (1 error, 0 warnings)"),
            "{text}"
        );
        assert!(
            text.contains("  2. create directory /sys/fs/cgroup/cpu\n"),
            "{text}"
        );
    }

    #[test]
    fn new_runsc_needs_no_probe() {
        // /proc/cgroups lists devices: it exists, only the mount is missing.
        let (snap, plan) = fixture_plan("runsc-20240729", true);
        assert!(!needs_devices_probe(&snap, &plan));
        let problems = assess(&Config::default(), &env(true), &Some(plan), None);
        assert_eq!(exit_code(&problems), 0, "{problems:?}");
    }

    #[test]
    fn already_prepared_host_is_ok() {
        let (_, plan) = fixture_plan("host-v1-hybrid", false);
        let problems = assess(&Config::default(), &env(false), &Some(plan.clone()), None);
        assert_eq!(problems, []);
        let text = render(&env(false), Some(&plan), &problems);
        assert!(
            text.contains("nothing to do: cgroups are already prepared"),
            "{text}"
        );
        assert!(
            text.ends_with("result: ok: dockerd can start (0 warnings)\n"),
            "{text}"
        );
    }

    #[test]
    fn certain_failures() {
        let (_, plan) = fixture_plan("host-v1-hybrid", false);
        let plan = Some(plan);
        let cases: Vec<(&str, Environment, Config)> = vec![
            (
                "no dockerd",
                Environment {
                    dockerd: DockerdBinary::NotFound {
                        searched: "no dockerd in PATH /bin".to_owned(),
                    },
                    ..env(false)
                },
                Config::default(),
            ),
            (
                "no CAP_SYS_ADMIN",
                Environment {
                    caps: Capabilities {
                        sys_admin: false,
                        net_admin: true,
                        net_raw: true,
                    },
                    ..env(false)
                },
                Config::default(),
            ),
            (
                "no CAP_NET_ADMIN",
                Environment {
                    caps: Capabilities {
                        sys_admin: true,
                        net_admin: false,
                        net_raw: true,
                    },
                    ..env(false)
                },
                Config::default(),
            ),
        ];
        for (what, e, c) in cases {
            let problems = assess(&c, &e, &plan, None);
            assert_eq!(exit_code(&problems), 1, "{what}: {problems:?}");
        }
        let mut c = Config::default();
        c.dockerd.args = vec!["--bridge=none".to_owned()];
        let e = Environment {
            caps: Capabilities {
                sys_admin: true,
                net_admin: false,
                net_raw: true,
            },
            ..env(false)
        };
        assert_eq!(exit_code(&assess(&c, &e, &plan, None)), 0);
    }

    #[test]
    fn read_only_cgroups() {
        let (_, plan) = fixture_plan("docker-runc-readonly", false);
        let plan = Some(plan);
        let problems = assess(&Config::default(), &env(false), &plan, None);
        assert_eq!(exit_code(&problems), 0);
        assert!(
            problems[0].cause.contains("9 cgroup mounts are read-only"),
            "{problems:?}"
        );
        // Without the privilege to remount: certain.
        let e = Environment {
            caps: Capabilities {
                sys_admin: false,
                net_admin: true,
                net_raw: true,
            },
            ..env(false)
        };
        assert_eq!(exit_code(&assess(&Config::default(), &e, &plan, None)), 1);
    }

    fn runtime(inode: u64, runc: Option<Tool>, refused: bool, dockerd: Option<Tool>) -> Runtime {
        Runtime {
            gvisor: true,
            procfs_root_inode: Ok(inode),
            runc,
            link_subscription: if refused {
                Err("Permission denied (os error 13)".to_owned())
            } else {
                Ok(())
            },
            dockerd,
        }
    }

    fn found(path: &str, v: &str) -> Option<Tool> {
        Some(Tool::Found {
            path: PathBuf::from(path),
            version: Version::parse(v).unwrap(),
        })
    }

    #[test]
    fn predictions_from_procfs_runc_and_netlink() {
        let runc = "/usr/sbin/runc";
        let dockerd = "/usr/sbin/dockerd";
        // (case, runtime, causes that must be predicted, each with its severity)
        type Case = (&'static str, Runtime, Vec<(Severity, &'static str)>);
        let cases: Vec<Case> = vec![
            ("a host", runtime(1, None, false, None), vec![]),
            (
                "gVisor, Docker 28.5 with runc 1.3.6 (measured: nothing runs)",
                runtime(86, found(runc, "1.3.6"), true, found(dockerd, "28.5.2")),
                vec![
                    (Severity::Warning, "containers cannot start: runc 1.3.6 (/usr/sbin/runc) refuses gVisor's /proc (root inode 86;"),
                    (Severity::Warning, "bridge networking cannot work: this runsc's netlink has no multicast groups"),
                ],
            ),
            (
                "gVisor, Docker 26.1 with runc 1.1.15 (measured: works)",
                runtime(86, found(runc, "1.1.15"), true, found(dockerd, "26.1.5")),
                vec![],
            ),
            (
                "runc 1.2.8 exactly",
                runtime(86, found(runc, "1.2.8"), false, None),
                vec![(Severity::Warning, "runc 1.2.8 (/usr/sbin/runc) refuses")],
            ),
            ("runc 1.2.7", runtime(86, found(runc, "1.2.7"), false, None), vec![]),
            (
                "runc 1.10.0 (a number, not text)",
                runtime(86, found(runc, "1.10.0"), false, None),
                vec![(Severity::Warning, "runc 1.10.0")],
            ),
            (
                "a runc whose version cannot be read",
                runtime(86, Some(Tool::Unknown { path: PathBuf::from(runc), why: "timed out".to_owned() }), false, None),
                vec![(Severity::Note, "/proc has root inode 86: runc 1.2.8 and later refuse it")],
            ),
            ("no runc", runtime(86, Some(Tool::NotFound("no runc in PATH /bin".to_owned())), false, None), vec![]),
            (
                "Docker 28.0.0, runc fine",
                runtime(86, found(runc, "1.1.15"), true, found(dockerd, "28.0.0")),
                vec![(Severity::Warning, "and Docker 28.0.0 subscribes to link updates")],
            ),
            ("Docker 27.5.1", runtime(86, found(runc, "1.1.15"), true, found(dockerd, "27.5.1")), vec![]),
            (
                "Docker 28 where the subscription works",
                runtime(1, None, false, found(dockerd, "28.5.2")),
                vec![],
            ),
            (
                "a dockerd whose version cannot be read",
                runtime(1, None, true, Some(Tool::Unknown { path: PathBuf::from(dockerd), why: "exit status 2".to_owned() })),
                vec![(Severity::Note, "Docker 28 and later cannot give containers bridge networking here")],
            ),
        ];
        for (case, rt, want) in cases {
            let got = predict(&rt);
            assert_eq!(got.len(), want.len(), "{case}: {got:?}");
            for (p, (severity, cause)) in got.iter().zip(&want) {
                assert_eq!(p.severity, *severity, "{case}: {p:?}");
                assert!(
                    p.cause.contains(cause),
                    "{case}: {:?} lacks {cause:?}",
                    p.cause
                );
                assert!(!p.fix.is_empty(), "{case}: no fix");
                assert!(!p.cause.contains('\n'), "{case}");
            }
            // A prediction never makes `check` fail: dockerd itself starts.
            assert_eq!(exit_code(&got), 0, "{case}");
        }
        let both = predict(&runtime(
            86,
            found(runc, "1.3.6"),
            true,
            found(dockerd, "28.5.2"),
        ));
        assert_eq!(both[0].fix, "use runc older than 1.2.8 in the image (Debian trixie's runc 1.1.15 works), or a newer runsc");
        assert!(
            both[1]
                .cause
                .ends_with("only --network=none and --network=host containers will run"),
            "{}",
            both[1].cause
        );
        assert_eq!(
            both[1].fix,
            "use Docker 27 or older in the image, or a newer runsc"
        );
        // Outside gVisor the words do not blame runsc.
        let mut host = runtime(5, found(runc, "1.3.6"), true, found(dockerd, "28.5.2"));
        host.gvisor = false;
        let p = predict(&host);
        assert!(p[0].cause.contains("refuses this /proc"), "{p:?}");
        assert!(
            p[1].cause
                .contains("this network stack refuses netlink multicast"),
            "{p:?}"
        );
    }

    #[test]
    fn runtime_section_of_the_report() {
        let rt = runtime(
            86,
            found("/usr/sbin/runc", "1.3.6"),
            true,
            found("/usr/sbin/dockerd", "28.5.2"),
        );
        assert_eq!(
            render_runtime(&rt),
            "runtime below dockerd:\n\
             \x20 /proc root inode:     86 (not 1: runc 1.2.8 and later refuse it)\n\
             \x20 runc:                 /usr/sbin/runc 1.3.6\n\
             \x20 netlink link updates: refused (Permission denied (os error 13)): Docker 28+ bridge networking fails\n\
             \x20 dockerd version:      /usr/sbin/dockerd 28.5.2\n"
        );
        assert_eq!(
            render_runtime(&runtime(1, None, false, None)),
            "runtime below dockerd:\n  /proc root inode:     1\n  netlink link updates: accepted\n"
        );
    }

    #[test]
    fn plan_failure_is_an_error_with_its_fix() {
        let mut c = Config::default();
        c.cgroup.mode = CgroupMode::V1;
        let (snap, _) = fixture_plan("host-v2", false);
        let plan = cgroup::plan(&snap, false, &c.cgroup);
        let problems = assess(&c, &env(false), &Some(plan), None);
        assert_eq!(exit_code(&problems), 1);
        assert_eq!(problems[0].fix, "set cgroup.mode = \"auto\" (or \"v2\")");
    }

    #[test]
    fn apparmor_without_parser_warns_with_the_fix() {
        let warn = securityfs_problems(Securityfs::Warn);
        assert_eq!(warn.len(), 1);
        assert_eq!(warn[0].severity, Severity::Warning);
        assert!(warn[0].cause.contains("docker-default"), "{:?}", warn[0]);
        assert!(
            warn[0].fix.contains("install the apparmor package")
                && warn[0].fix.contains("--security-opt apparmor=unconfined"),
            "{:?}",
            warn[0]
        );
        // A warning: dockerd starts, `docker run` fails; check still exits 0.
        assert_eq!(exit_code(&warn), 0);
        let skip = securityfs_problems(Securityfs::Skip);
        assert_eq!(skip.len(), 1);
        assert_eq!(skip[0].severity, Severity::Note);
        assert!(securityfs_problems(Securityfs::Mount).is_empty());
        assert!(securityfs_problems(Securityfs::Leave).is_empty());
    }

    #[test]
    fn bare_cgroup2_kernel_plan_is_shown_with_its_second_step() {
        let (_, plan) = fixture_plan("vm-bare", false);
        let text = render(
            &Environment {
                cgroup: CgroupKind::V2,
                ..env(false)
            },
            Some(&plan),
            &[],
        );
        assert!(text.contains("cgroup plan (mode v2):"), "{text}");
        assert!(
            text.contains("1. mount cgroup2 on /sys/fs/cgroup"),
            "{text}"
        );
        assert!(text.contains("then plan again"), "{text}");
        let (_, root) = fixture_plan("vm-true-root", false);
        let text = render(&env(false), Some(&root), &[]);
        assert!(text.contains("nothing is moved"), "{text}");
        assert!(!text.contains("then plan again"), "{text}");
    }
}
