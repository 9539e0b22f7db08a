//! dind-init: a small init (PID 1) that runs a Docker daemon inside a container.
//!
//! This file is the command line's entry point and the one exit point of the
//! process: it parses the arguments (`cli.rs`), loads the config (`config.rs`),
//! sets up logging (`log.rs`) and signals (`sys/signals.rs`), prepares what
//! dockerd needs, and hands over to the event loop (`run/`). Boot errors (usage, config, signal setup) end the
//! process here with their exit code; once the loop runs, nothing ends it but the
//! shutdown sequence.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::PathBuf;

use dind_init::cli::{self, Invocation, RunArgs};
use dind_init::client::probe;
use dind_init::config::{self, Config};
use dind_init::control::status::{CgroupStatus, EnvironmentStatus};
use dind_init::error::Error;
use dind_init::prepare::mtu::MtuPlan;
use dind_init::prepare::{cgroup, environment, launch, network, storage, tls};
use dind_init::run::{self, Init, Settings};
use dind_init::sys::poller::Poller;
use dind_init::sys::signals;
use dind_init::{check, log};
use tracing::{info, warn};

/// dlmalloc instead of musl's own allocator (mallocng), which hands freed pages
/// back to the kernel at once: the init's start made 68 mmap/munmap calls before
/// dockerd's exec, and in gVisor each costs up to milliseconds, about 20 ms in all
/// (README, design notes). dlmalloc keeps what it got.
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() {
    ensure_stdio_open();
    let code = match cli::parse(std::env::args_os().skip(1)) {
        Ok(invocation) => dispatch(invocation),
        Err(e) => {
            log::print_stderr(&format!("dind-init: {e}"));
            // probe exits 0 or 1 only: Docker's HEALTHCHECK reserves 2.
            if std::env::args_os().nth(1).is_some_and(|a| a == "probe") {
                1
            } else {
                2
            }
        }
    };
    std::process::exit(code);
}

fn dispatch(invocation: Invocation) -> i32 {
    match invocation {
        Invocation::Help => {
            log::print_stdout(cli::HELP);
            0
        }
        Invocation::HelpFor(text) => {
            log::print_stdout(text);
            0
        }
        Invocation::Version => {
            log::print_stdout(concat!("dind-init ", env!("CARGO_PKG_VERSION"), "\n"));
            0
        }
        Invocation::Run(args) => run(args),
        Invocation::Check { config } => check(config),
        Invocation::Probe { socket, wait } => {
            let socket = match socket.map_or_else(client_socket, Ok) {
                Ok(socket) => socket,
                Err(e) => {
                    // 1, not 2: Docker's HEALTHCHECK reserves 2.
                    log::print_stderr(&format!("dind-init probe: {e}"));
                    return 1;
                }
            };
            let (code, message) = probe::probe(&socket, wait);
            if let Some(m) = message {
                log::print_stderr(&format!("dind-init probe: {m}"));
            }
            code
        }
        Invocation::Status { socket, json } => {
            let socket = match socket.map_or_else(client_socket, Ok) {
                Ok(socket) => socket,
                Err(e) => {
                    log::print_stderr(&format!("dind-init status: {e}"));
                    return 2;
                }
            };
            match probe::status(&socket, json) {
                Ok(text) => {
                    log::print_stdout(&text);
                    0
                }
                Err(e) => {
                    log::print_stderr(&format!("dind-init status: {e}"));
                    1
                }
            }
        }
    }
}

/// Makes sure fds 0, 1 and 2 are open. If the init was started with one closed,
/// the next fd it opens (the signalfd, a socket) would take its number: COMMAND
/// would then inherit it as stdout, and log lines would be written into it. Opening
/// /dev/null fills the lowest free numbers first (open(2)), so this loop fills the
/// gaps among 0..=2 and stops at the first fd above them.
fn ensure_stdio_open() {
    use rustix::fs::{open, Mode, OFlags};
    loop {
        let Ok(fd) = open("/dev/null", OFlags::RDWR, Mode::empty()) else {
            return;
        };
        if fd.as_raw_fd() > 2 {
            return; // dropping `fd` closes it
        }
        // Kept open on purpose: it now serves as fd 0, 1 or 2.
        let _ = fd.into_raw_fd();
    }
}

/// The status socket `probe` and `status` use without `--socket`: the one the
/// init's config names ($DIND_INIT_CONFIG, else /etc/dind-init/init.toml), so a
/// HEALTHCHECK finds an image's moved socket; the built-in path when there is no
/// config. A config that is there but cannot be read or is invalid is an error
/// (SPEC §3: in every mode), not a silent fall-back to the built-in path, where the
/// "is dind-init running?" that follows would hide the real problem (the init
/// itself stopped on that config with exit 2).
fn client_socket() -> Result<PathBuf, String> {
    load_config(None)
        .map(|(cfg, _)| cfg.readiness.socket)
        .map_err(|e| {
            format!(
                "{e} (the status socket's path comes from this config; --socket PATH overrides it)"
            )
        })
}

fn load_config(path: Option<PathBuf>) -> Result<(Config, config::Source), Error> {
    let env = std::env::var_os(config::ENV_VAR);
    let source = config::locate(path.as_deref(), env.as_deref());
    let cfg = config::load(&source)?;
    Ok((cfg, source))
}

fn source_text(source: &config::Source) -> String {
    match source {
        config::Source::Explicit(p) | config::Source::Default(p) => p.display().to_string(),
        config::Source::Builtin => "built-in defaults".to_owned(),
    }
}

fn check(path: Option<PathBuf>) -> i32 {
    match load_config(path) {
        Ok((cfg, source)) => {
            log::print_stdout(&format!("config: ok ({})\n", source_text(&source)));
            check::check(&cfg)
        }
        Err(e) => {
            log::print_stderr(&format!("dind-init: {e}"));
            e.exit_code()
        }
    }
}

fn run(args: RunArgs) -> i32 {
    // First, so that no signal sent to us from now on is lost (see signals.rs).
    if let Err(e) = signals::block() {
        log::print_stderr(&format!("dind-init: {e}"));
        return e.exit_code();
    }
    let (cfg, source) = match load_config(args.config.clone()) {
        Ok(loaded) => loaded,
        Err(e) => {
            log::print_stderr(&format!("dind-init: {e}"));
            return e.exit_code();
        }
    };
    if let Some(warning) = log::init(&cfg.log) {
        warn!("{warning}");
    }
    // A COMMAND that exec cannot find would only fail once dockerd is ready (or
    // after ready_timeout), after the init has mounted cgroups and started
    // dockerd for nothing: say so now, before anything is touched.
    if let Some(program) = args.command.first() {
        let path = std::env::var_os("PATH");
        // musl's execvp searches this when PATH is unset.
        let found =
            environment::locate_program(program, path.as_deref(), "/usr/local/bin:/bin:/usr/bin");
        if matches!(found, environment::DockerdBinary::NotFound { .. }) {
            let hint = program
                .to_str()
                .and_then(cli::did_you_mean)
                .map(|h| format!(" (did you mean `{h}`?)"))
                .unwrap_or_default();
            tracing::error!(
                "COMMAND `{}` not found{hint}; nothing was started",
                program.to_string_lossy()
            );
            return 127;
        }
    }
    match boot(&cfg, args, &source) {
        Ok(init) => init.run(),
        Err(e) => {
            tracing::error!(error = %e, "boot failed");
            e.exit_code()
        }
    }
}

/// Everything between a valid config and the event loop. Errors here may still
/// end the process (nothing has been started yet).
fn boot(cfg: &Config, args: RunArgs, source: &config::Source) -> Result<Init, Error> {
    let pid1 = rustix::process::getpid().is_init();
    if !pid1 {
        // Orphans of COMMAND are re-parented to us instead of to the real PID 1.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
            .map_err(|e| Error::Subreaper(e.into()))?;
    }
    let signals = signals::open()?;
    let poller = Poller::new().map_err(Error::Poll)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid1,
        config = %source_text(source),
        "dind-init starting{}",
        if pid1 { "" } else { " as a child subreaper (not PID 1)" }
    );
    // Served from the first moment: clients wait in the backlog until the loop runs.
    let control = run::open_status_socket(cfg, &poller)?;
    let inherited_notify = std::env::var_os("NOTIFY_SOCKET");
    let notify_path = run::notify_path(cfg, inherited_notify.as_deref());
    let upstream_notify = run::upstream_notify(cfg, inherited_notify.as_deref());
    let env = environment::detect(cfg);
    info!(
        gvisor = env.gvisor,
        cgroup = env.cgroup_kind_str(),
        cap_sys_admin = env.caps.sys_admin,
        cap_net_admin = env.caps.net_admin,
        dockerd = %env.dockerd,
        "environment: {}",
        env.summary()
    );
    // Never fails: a failure is in the outcome and blocks dockerd (it is certain).
    let outcome = cgroup::prepare(cfg, &env);
    let user_args = launch::user_args(cfg, &args.dockerd_args);
    // SPEC §11: before dockerd's first start; a failed mount ends the boot.
    let storage = storage::prepare(
        cfg.dockerd.data_root_tmpfs.as_deref(),
        &storage::data_root(&user_args),
    )?;
    // docker:dind's TLS contract (SPEC §6): openssl runs here, bounded and reaped,
    // before the loop; a failure ends the boot before dockerd starts.
    let certdir = std::env::var_os(tls::CERTDIR_ENV);
    let tls = tls::prepare(
        &tls::request(certdir.as_deref(), &user_args),
        std::env::var_os("PATH").as_deref(),
    )?;
    // In gVisor, dockerd's PATH starts with iptables → iptables-legacy links (SPEC §7a).
    let init_path = std::env::var_os("PATH");
    // iptables-legacy is looked for where dockerd will look (its PATH, not the init's).
    let network = network::Plan::new(
        cfg.network.mode,
        env.gvisor,
        Some(&environment::dockerd_path_env(cfg, init_path.as_deref())),
    );
    // SPEC §7: an uplink below 1500 gives dockerd --mtu (and on Docker 24+ the same
    // for new user networks).
    let dockerd_path = match &env.dockerd {
        environment::DockerdBinary::Found(p) => Some(p.as_path()),
        _ => None,
    };
    let mtu = MtuPlan::decide(&user_args, dockerd_path);
    let mtu_flags = mtu.flags(&user_args);
    if let Some((dev, value)) = &mtu.uplink {
        if !mtu_flags.is_empty() {
            info!(uplink = %dev, mtu = value, flags = ?mtu_flags, "uplink MTU below 1500: dockerd gets it too");
        }
    }
    if let Some(note) = &mtu.note {
        warn!("MTU: {note}");
    }
    let launch = launch::build(launch::Inputs {
        config: cfg,
        gvisor: env.gvisor,
        cgroup_args: &outcome.dockerd_args,
        path_prefix: network.path_prefix(),
        init_path: init_path.as_deref(),
        extra: &args.dockerd_args,
        notify: &notify_path,
        listener: &tls.listener,
        mtu: mtu.mtu,
    });
    // launch::build passes the offered pair unless the user's arguments choose a driver.
    if !outcome.dockerd_args.is_empty() && !launch::chooses_cgroup_driver(&user_args) {
        info!(
            "/run/systemd/system exists but systemd is not running: passing \
             --exec-opt native.cgroupdriver=cgroupfs to dockerd"
        );
    }
    Init::new(
        Settings {
            pid1,
            config: cfg.clone(),
            command: args.command,
            launch,
            blocked: outcome.failure.clone(),
            cgroup: CgroupStatus {
                mode: outcome.mode,
                mounted: outcome.mounted,
                stubbed: outcome.stubbed,
                actions: outcome.actions,
                warnings: outcome.warnings,
            },
            environment: EnvironmentStatus {
                gvisor: env.gvisor,
                cgroup: env.cgroup_kind_str().to_owned(),
                pid1,
                tls: tls.status,
                storage,
            },
            upstream_notify,
            notify_path,
            network,
            mtu: network::MtuShown {
                uplink: mtu.uplink.as_ref().map(|(_, m)| *m),
                flags: mtu_flags,
            },
            env,
        },
        signals,
        poller,
        control,
    )
}
