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

use std::fmt::Write as _;

use crate::cgroup::{self, Action, CgroupKind, Mode, Plan, Securityfs, Snapshot};
use crate::config::{CgroupMode, Config};
use crate::environment::{self, DockerdBinary, Environment};
use crate::error::Error;
use crate::log;
use crate::network::{self, Legacy, Report};

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
        std::env::var_os("PATH").as_deref(),
    );
    let net = network::inspect(&net_plan);
    problems.extend(network_problems(&net, env.gvisor));
    if let Ok(s) = &snap {
        problems.extend(securityfs_problems(cgroup::securityfs_here(
            &s.visible_mounts(),
            &env,
        )));
    }
    let text = render_report(&env, plan.as_ref(), Some(&net), &problems);
    log::print_stdout(&text);
    exit_code(&problems)
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
    use crate::environment::{AppArmor, Capabilities};
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
        e.cgroup_mounts.push(crate::environment::CgroupMount {
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
        use crate::netlink::Route;
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
