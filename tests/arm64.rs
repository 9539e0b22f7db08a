//! arm64 (SPEC §11): the `aarch64-unknown-linux-musl` build, linked by the toolchain's
//! own rust-lld (`.cargo/config.toml`; no cross C toolchain), run under qemu-user on
//! this x86_64 machine:
//!
//! - the binary is an aarch64 ELF with no interpreter and no dynamic section (static),
//!   and within SPEC §12's size cap;
//! - `--version`, `check` (ok, and exit 2 on a bad config) run under `qemu-aarch64-static`;
//! - as PID 1 of its own pid + mount namespace (`unshare ... qemu-aarch64-static
//!   dind-init`): it supervises a dockerd (the aarch64 build of the fake dockerd, itself
//!   under qemu) to ready, starts COMMAND, reaps the orphans COMMAND makes, and its
//!   children start with no blocked and no ignored signal although the init was started
//!   with some ignored and blocks its own (this checks `signals::reset_for_exec`'s raw
//!   rt_sigaction(2) and sigprocmask on arm64's ABI, as qemu-user implements it);
//!   its status socket answers; SIGTERM stops it (signalfd, as on x86_64) with exit 0.
//!
//! qemu is called by name, never through binfmt_misc (nothing is registered with the
//! machine's kernel). So the aarch64 init can exec only host programs or scripts: COMMAND
//! is the host (x86_64) fake dockerd, which reads what it inherited from the kernel's own
//! /proc/self/status, and dockerd is a script that runs the aarch64 fake under qemu.
//! Run times under qemu are printed, never asserted.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const TARGET: &str = "aarch64-unknown-linux-musl";
/// SPEC §12: the static binary is at most 1.25 MiB.
const SIZE_CAP: u64 = 1_310_720;
const QEMU: &str = "qemu-aarch64-static";
const WAIT: Duration = Duration::from_secs(120);

/// The directory of the aarch64 release build (dind-init and the fake dockerd), built
/// once per test process.
fn aarch64_build() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new("cargo")
                .current_dir(root)
                .args(["build", "--release", "--target", TARGET])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "aarch64 build failed (is the target installed? scripts/install-deps.sh adds it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            root.join("target").join(TARGET).join("release")
        })
        .clone()
}

fn requirements(test: &str) -> bool {
    require(
        test,
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
            (
                "qemu-aarch64-static (qemu-user-static)",
                which(QEMU).is_some(),
            ),
            ("file", which("file").is_some()),
        ],
    )
}

/// A u16/u32 of the ELF file at `off` (little endian, as both targets are).
fn le(bytes: &[u8], off: usize, len: usize) -> u64 {
    bytes[off..off + len]
        .iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// The program header types of a 64-bit little-endian ELF file; asserts its machine.
fn program_headers(bytes: &[u8], machine: u64) -> Vec<u64> {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(bytes[4], 2, "not a 64-bit ELF file");
    assert_eq!(le(bytes, 18, 2), machine, "e_machine");
    let (phoff, phentsize, phnum) = (
        le(bytes, 32, 8) as usize,
        le(bytes, 54, 2) as usize,
        le(bytes, 56, 2) as usize,
    );
    (0..phnum)
        .map(|i| le(bytes, phoff + i * phentsize, 4))
        .collect()
}

#[test]
fn aarch64_binary_is_static_and_within_the_size_cap() {
    if !requirements("aarch64_binary_is_static_and_within_the_size_cap") {
        return;
    }
    let bin = aarch64_build().join("dind-init");
    let bytes = fs::read(&bin).unwrap();
    const EM_AARCH64: u64 = 183;
    const PT_DYNAMIC: u64 = 2;
    const PT_INTERP: u64 = 3;
    let headers = program_headers(&bytes, EM_AARCH64);
    assert!(
        !headers.contains(&PT_INTERP) && !headers.contains(&PT_DYNAMIC),
        "{} has an interpreter or a dynamic section: {headers:?}",
        bin.display()
    );
    let file = Command::new("file").arg(&bin).output().unwrap();
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("ARM aarch64") && file.contains("statically linked"),
        "{file}"
    );
    let size = bytes.len() as u64;
    eprintln!("aarch64 dind-init: {size} bytes ({file})");
    assert!(size <= SIZE_CAP, "{size} bytes, over the cap of {SIZE_CAP}");
}

#[test]
fn version_and_check_run_under_qemu_user() {
    if !requirements("version_and_check_run_under_qemu_user") {
        return;
    }
    let bin = aarch64_build().join("dind-init");
    let dir = TempDir::new("arm64-check");

    let started = Instant::now();
    let ran = run_timeout(
        Command::new(QEMU).arg(&bin).arg("--version"),
        &dir,
        "version",
        WAIT,
    );
    let took = started.elapsed();
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert_eq!(
        ran.stdout.trim(),
        format!("dind-init {}", env!("CARGO_PKG_VERSION")),
        "{}",
        ran.describe()
    );
    eprintln!("qemu-user: --version took {took:?}");

    // `check` with a config of its own: reads it, runs the preflight, changes nothing.
    let config = dir.config(&format!(
        "[dockerd]\npath = \"/bin/true\"\n[readiness]\nfile = \"{0}/ready\"\nsocket = \"{0}/init.sock\"\n[log]\njournald = \"off\"\n",
        dir.path().display()
    ));
    let started = Instant::now();
    let ran = run_timeout(
        Command::new(QEMU)
            .arg(&bin)
            .args(["check", "--config", s(&config)]),
        &dir,
        "check",
        WAIT,
    );
    let took = started.elapsed();
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(
        ran.stdout.contains("config: ok") && ran.stdout.contains("dockerd:       /bin/true"),
        "{}",
        ran.describe()
    );
    assert!(!dir.join("ready").exists() && !dir.join("init.sock").exists());
    // This machine's /bin/true is an x86_64 binary: the aarch64 init warns that it
    // runs only through binfmt_misc (a warning, so still exit 0).
    assert!(
        ran.stdout.contains(
            "warning: dockerd at /bin/true may not run: it is a binary for x86_64, and this dind-init is built for aarch64"
        ),
        "{}",
        ran.describe()
    );
    eprintln!("qemu-user: check took {took:?}");

    // A config error: exit 2 and one line naming the key, as on x86_64.
    let bad = dir.config("[dockerd]\nrestart = \"sometimes\"\n");
    let ran = run_timeout(
        Command::new(QEMU)
            .arg(&bin)
            .args(["check", "--config", s(&bad)]),
        &dir,
        "check-bad",
        WAIT,
    );
    assert_eq!(ran.code(), Some(2), "{}", ran.describe());
    assert!(ran.stderr.contains("dockerd.restart"), "{}", ran.describe());
}

/// A config for the aarch64 init: dockerd is a script that runs the aarch64 fake dockerd
/// under qemu (ready at once, by NOTIFY_SOCKET and /_ping); everything in `dir`.
fn pid1_config(dir: &TempDir) -> PathBuf {
    let fake = aarch64_build().join("fake-dockerd");
    let qemu = which(QEMU).unwrap();
    let script = dir.join("dockerd");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
            qemu.display(),
            fake.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.path().display();
    dir.config(&format!(
        "[dockerd]\npath = \"{d}/dockerd\"\nsocket = \"{d}/docker.sock\"\n\
         args = [\"--pidfile={d}/docker.pid\", \"--exec-root={d}/exec\", \
         \"--fake-report={d}/dockerd.report\", \"--fake-ready-after-ms=0\"]\n\
         [readiness]\nfile = \"{d}/ready\"\nsocket = \"{d}/init.sock\"\ninterval = \"0s\"\n\
         [log]\njournald = \"off\"\n"
    ))
}

/// Signals the aarch64 init is started with ignored, so that a child inheriting them
/// would show. Under qemu-user only signals whose default action is not to terminate
/// keep a host-level SIG_IGN across the emulator's own start and exec (qemu installs its
/// own handler for every default-fatal signal, and exec resets handlers), so these are
/// the ones an init that forgot to reset its children's dispositions would pass on.
const IGNORED_BY_LAUNCHER: [Signal; 4] = [
    Signal::SIGURG,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGWINCH,
];

/// The aarch64 init under qemu as PID 1 of new pid + mount namespaces, started with
/// [`IGNORED_BY_LAUNCHER`] ignored.
fn start_pid1(dir: &TempDir, args: &[&str]) -> InitUnderTest {
    let bin = aarch64_build().join("dind-init");
    let config = pid1_config(dir);
    let mut all = vec![s(&bin).to_owned(), "--config".into(), s(&config).to_owned()];
    all.extend(args.iter().map(|a| a.to_string()));
    // Launch resets the reserved signals 32 to 34 first: the test process inherits 32
    // and 33 ignored from its own parent, and under qemu-user host signal 32 has no guest
    // signal, so no emulated program could reset it (on a real arm64 kernel the init's
    // raw rt_sigaction would; tests/pid1.rs checks that on x86_64).
    Launch::new(dir)
        .without_config()
        .binary(which(QEMU).unwrap())
        .args(&all)
        .ignoring(&IGNORED_BY_LAUNCHER.map(|sig| sig as i32))
        .start()
}

#[test]
fn pid1_under_qemu_user_reaps_orphans_and_starts_children_clean() {
    if !requirements("pid1_under_qemu_user_reaps_orphans_and_starts_children_clean") {
        return;
    }
    let dir = TempDir::new("arm64-pid1");
    let report_path = dir.join("command.report");
    let started = Instant::now();
    let mut init = start_pid1(
        &dir,
        &[
            "--",
            FAKE,
            &format!("--fake-report={}", s(&report_path)),
            "--fake-orphans=500",
            "--fake-wait-no-zombies=60",
        ],
    );
    let code = init.wait_code(WAIT);
    let took = started.elapsed();
    assert_eq!(
        code,
        0,
        "COMMAND failed or saw zombies\n{}",
        init.describe()
    );
    eprintln!("qemu-user: PID 1 run (dockerd ready, COMMAND, 500 orphans, stop) took {took:?}");

    let r = report(&report_path);
    assert_eq!(events(&r, "orphans")[0]["count"], 500, "{r:?}");
    assert_eq!(events(&r, "zombies")[0]["count"], 0, "{r:?}");
    let start = events(&r, "start")[0];
    assert_eq!(start["blocked"], serde_json::json!([]), "{start}");
    assert_eq!(start["ignored"], serde_json::json!([]), "{start}");
    assert_eq!(start["ppid"], 1, "child of the init: {start}");
    assert_eq!(start["pgid"], start["pid"], "own process group: {start}");

    // dockerd (the aarch64 fake, under qemu) got the same clean start and was ready
    // before COMMAND ran.
    let d = report(&dir.join("dockerd.report"));
    let dstart = events(&d, "start")[0];
    assert_eq!(dstart["blocked"], serde_json::json!([]), "{dstart}");
    assert_eq!(dstart["ignored"], serde_json::json!([]), "{dstart}");
    assert!(!events(&d, "ready").is_empty(), "{d:?}");
}

/// Signal numbers set in a hex mask line (`SigIgn:`...) of a /proc status file.
fn mask(status: &str, key: &str) -> Vec<u32> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .unwrap_or("0");
    let bits = u64::from_str_radix(hex, 16).unwrap();
    (1..=64).filter(|n| bits & (1u64 << (n - 1)) != 0).collect()
}

#[test]
fn pid1_under_qemu_user_serves_status_and_stops_on_sigterm() {
    if !requirements("pid1_under_qemu_user_serves_status_and_stops_on_sigterm") {
        return;
    }
    let dir = TempDir::new("arm64-stop");
    let started = Instant::now();
    let mut init = start_pid1(&dir, &[]);
    assert!(
        wait_until(WAIT, || dir.join("ready").exists()),
        "never ready\n{}",
        init.describe()
    );
    eprintln!("qemu-user: PID 1 to ready took {:?}", started.elapsed());
    // The aarch64 init's status socket answers the host (x86_64) client.
    let st = status(&dir);
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["environment"]["pid1"], true, "{st}");
    // The control for the clean-start test: the init itself (qemu maps the guest's
    // dispositions and mask onto the host process) ignores what it inherited ignored, and
    // SIGPIPE, and blocks the signals it reads from its signalfd.
    let proc_status = fs::read_to_string(format!("/proc/{}/status", init.init_pid())).unwrap();
    let ignored = mask(&proc_status, "SigIgn:");
    for sig in IGNORED_BY_LAUNCHER.into_iter().chain([Signal::SIGPIPE]) {
        assert!(
            ignored.contains(&(sig as u32)),
            "{sig} not ignored by the init: {proc_status}"
        );
    }
    let blocked = mask(&proc_status, "SigBlk:");
    for sig in [Signal::SIGTERM, Signal::SIGCHLD] {
        assert!(
            blocked.contains(&(sig as u32)),
            "{sig} not blocked by the init: {proc_status}"
        );
    }

    let stop = Instant::now();
    init.signal(Signal::SIGTERM);
    assert_eq!(init.wait_code(WAIT), 0, "{}", init.describe());
    eprintln!("qemu-user: SIGTERM to exit took {:?}", stop.elapsed());
    assert!(!dir.join("ready").exists(), "ready file left behind");
    // The fake dockerd does not trap SIGTERM: it dies of it, at once.
    let log = init.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("dockerd exited") && l.contains("SIGTERM")),
        "dockerd did not die of SIGTERM\n{}",
        init.describe()
    );
    assert!(!log.contains(STOP_TIMEOUT_KILL), "{}", init.describe());
}
