//! dind-init on a real cgroup v2 kernel (SPEC §5), one VM per layout.
//!
//! This machine's kernel keeps the hybrid v1 layout, so each test boots Debian's cloud
//! kernel under qemu (software emulation: this machine's /dev/kvm cannot boot a stock
//! kernel) with `cgroup_no_v1=all` and the test image's root (the machine's Docker 20.10)
//! as an initramfs: `scripts/vm/harness.sh`. dind-init runs with `scripts/vm/guest/check`
//! as its COMMAND, which waits for readiness, runs a nested `docker run -m 64m` that reads
//! its own memory limit, prints `status` and `check`, and then sends SIGTERM to the init,
//! as `docker stop` would. Everything comes back on the VM's serial console: `@@vm KEY
//! VALUE` lines, the init's whole log between `@@vm-log-begin` and `@@vm-log-end`, and its
//! exit code (`@@vm init-exit N`, or the kernel's "Attempted to kill init! exitcode=" when
//! the init was the VM's PID 1).
//!
//! Layouts (guest/stage2): dind-init as PID 1 of the VM; as a subreaper under another
//! PID 1; as PID 1 of a container-like cgroup namespace under a systemd scope; as the child
//! of docker-init (tini) in such a namespace; and as PID 1 of a gVisor sandbox on this v2
//! host. Each appends one JSON line to `$DIND_INIT_RESULTS` (default
//! `target/support-results.jsonl`) for the README's support table, then asserts.
//!
//! The VMs run one at a time (each has both cores). Nothing here touches the machine: the
//! VM has no network (`-nic none`) and its disk is its memory.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use dind_init::prepare::environment::Version;

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/vm/harness.sh");

/// The VM's own deadline (qemu runs under `timeout`); the test waits a little longer.
/// A hang guard, not a speed check: qemu emulates (TCG, no KVM here), and the gVisor
/// mode, about 3 min on a quiet machine, passed 300 s when other test runs shared
/// the two cores (dockerd alone took 18 s to its first line).
const VM_TIMEOUT: Duration = Duration::from_secs(600);

/// The memory limit of `docker run -m 64m`, as the kernel reports it.
const LIMIT_64M: &str = "67108864";

/// One VM at a time: each uses both cores, and TCG is slow enough alone.
static VM: Mutex<()> = Mutex::new(());

/// What one VM run showed.
struct VmRun {
    mode: &'static str,
    console: String,
    /// `@@vm KEY VALUE` lines, by key, in order.
    marks: BTreeMap<String, Vec<String>>,
    /// The init's log (between the log markers; the whole console when they are missing).
    log: String,
    /// The init's exit code, when it exited.
    exit: Option<i32>,
    elapsed: Duration,
    harness: Ran,
}

impl VmRun {
    fn mark(&self, key: &str) -> Option<&str> {
        self.marks
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn marks(&self, key: &str) -> &[String] {
        self.marks.get(key).map_or(&[], Vec::as_slice)
    }

    /// The init's own log lines about cgroups.
    fn cgroup_lines(&self) -> Vec<&str> {
        self.log
            .lines()
            .filter(|l| l.contains(" dind_init::prepare::cgroup"))
            .collect()
    }

    fn status(&self) -> serde_json::Value {
        let text = self.mark("status").unwrap_or("");
        serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null)
    }

    /// The harness's output, what the guest reported and the console's last lines, for
    /// failure messages.
    fn describe(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        let tail = lines[lines.len().saturating_sub(100)..].join("\n");
        let reported: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("@@vm "))
            .collect();
        format!(
            "mode {} ({:.0} s)\n{}\n--- what the guest reported ---\n{}\n\
             --- the VM's console, last {} lines ---\n{tail}",
            self.mode,
            self.elapsed.as_secs_f64(),
            self.harness.describe(),
            reported.join("\n"),
            lines.len().min(100)
        )
    }
}

/// Parses the console of a VM run.
fn parse_console(console: &str) -> (BTreeMap<String, Vec<String>>, String, Option<i32>) {
    let mut marks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut log = String::new();
    let mut in_log = false;
    let mut exit = None;
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        // The guest's live copy of the log writes chunks, not lines, so a report may
        // begin in the middle of a console line; it always runs to the line's end.
        let at = |tag: &str| line.find(tag).map(|i| &line[i + tag.len()..]);
        if at("@@vm-log-begin").is_some() {
            in_log = true;
            continue;
        }
        if at("@@vm-log-end").is_some() {
            in_log = false;
            continue;
        }
        if in_log {
            log.push_str(line);
            log.push('\n');
            continue;
        }
        if let Some(rest) = at("@@vm ") {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            marks
                .entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
            if key == "init-exit" {
                exit = value.trim().parse().ok();
            }
        }
        // The VM's PID 1 exited: the kernel says with what (wait status: code << 8).
        if let Some(code) = line.split("Attempted to kill init! exitcode=").nth(1) {
            let hex = code.trim().trim_start_matches("0x");
            exit = i32::from_str_radix(hex, 16).ok().map(|s| (s >> 8) & 0xff);
        }
    }
    if log.is_empty() {
        log = console.to_owned();
    }
    (marks, log, exit)
}

/// Boots the VM in `mode` with the dind-init under test.
fn run_vm(mode: &'static str) -> Option<VmRun> {
    let mut req = vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("qemu-system-x86_64", which("qemu-system-x86_64").is_some()),
        ("zstd", which("zstd").is_some()),
        ("busybox", which("busybox").is_some()),
        ("apt-get", which("apt-get").is_some()),
        ("dpkg-deb", which("dpkg-deb").is_some()),
        ("flock", which("flock").is_some()),
        ("dockerd", which("dockerd").is_some()),
        ("containerd", which("containerd").is_some()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
    ];
    req.push((
        "runsc 0.0~20240729 at /usr/bin/runsc",
        Path::new(RUNSC).exists(),
    ));
    if !require(&format!("vm {mode}"), &req) {
        return None;
    }
    // A test that panicked while holding the lock leaves it poisoned; the VM is gone.
    let _one = VM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(&format!("vm-{mode}"));
    let console = dir.join("console");
    let mut cmd = Command::new("bash");
    cmd.arg(HARNESS)
        .args(["run", mode, "--dind-init"])
        .arg(static_init())
        .arg("--console")
        .arg(&console)
        .args(["--timeout", &VM_TIMEOUT.as_secs().to_string()]);
    let started = Instant::now();
    // The harness builds the cached base first when needed (about 10 s).
    let harness = run_timeout(
        &mut cmd,
        &dir,
        "harness",
        VM_TIMEOUT + Duration::from_secs(120),
    );
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
    let (marks, log, exit) = parse_console(&text);
    eprintln!(
        "vm {mode}: {:.1} s (harness exit {:?})",
        elapsed.as_secs_f64(),
        harness.code()
    );
    Some(VmRun {
        mode,
        console: text,
        marks,
        log,
        exit,
        elapsed,
        harness,
    })
}

/// The checks every mode makes, as the support table records them.
struct Checks {
    ready: bool,
    /// The probe's answer when COMMAND found dockerd degraded.
    degraded: Option<String>,
    run: bool,
    memory_limit: bool,
    stop: bool,
}

fn checks(vm: &VmRun) -> Checks {
    Checks {
        ready: vm.mark("ready") == Some("ok"),
        degraded: vm
            .mark("ready")
            .and_then(|m| m.strip_prefix("degraded "))
            .map(str::to_owned),
        run: vm.mark("run") == Some("ok"),
        memory_limit: vm.mark("memory").map(str::trim) == Some(LIMIT_64M),
        stop: vm.mark("done").is_some() && vm.exit == Some(0),
    }
}

/// Appends the run's row to the support-table results ([`record_support_row`]).
fn record(vm: &VmRun, runtime: &str, init: &str, checks: &Checks, note: &str) {
    let all = checks.ready && checks.run && checks.memory_limit && checks.stop;
    // Degraded for a cause the init names, with everything else working: a known limit
    // of the layout (the note says which), not a failure.
    let limit = checks.degraded.is_some() && checks.run && checks.memory_limit && checks.stop;
    // As tests/matrix.rs writes them: the numbers (`20.10.24`, not `20.10.24+dfsg1`),
    // runc's version and the Debian suite the packages came from. The VM's root is
    // made from this machine's own packages (scripts/vm/harness.sh), so the suite is
    // this machine's.
    // docker's mark is `{{.Server.Version}}` alone (an error text could hold other
    // numbers); runc's is its `runc version 1.1.5+ds1` line.
    let mark = |key: &str| vm.mark(key).map(str::trim).filter(|v| !v.is_empty());
    let docker = match mark("docker-version") {
        Some(v) => Version::parse(v).map_or_else(|| v.to_owned(), |v| v.to_string()),
        None => "unknown".to_owned(),
    };
    let runc = mark("runc-version")
        .and_then(Version::from_version_output)
        .map(|v| v.to_string());
    let suite = fs::read_to_string("/etc/os-release").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .map(|c| c.trim_matches('"').to_owned())
    });
    let mut row = serde_json::json!({
        "docker": docker,
        "runtime": runtime,
        "host_cgroup": "v2",
        "init": init,
        "checks": {
            "ready": checks.ready,
            "run": checks.run,
            "memory_limit": checks.memory_limit,
            "stop": checks.stop,
        },
        "result": if all {
            "ok"
        } else if limit {
            "known-limit"
        } else {
            "fail"
        },
        "note": note,
    });
    if let Some(runc) = runc {
        row["runc"] = serde_json::json!(runc);
    }
    if let Some(suite) = suite.filter(|s| !s.is_empty()) {
        row["suite"] = serde_json::json!(suite);
    }
    if runtime == "gvisor" {
        row["runsc"] = serde_json::json!(runsc_version());
    }
    record_support_row(&row);
}

/// The assertions every mode shares: ready, the nested container's memory limit, the
/// init's clean exit after SIGTERM.
fn assert_common(vm: &VmRun, checks: &Checks) {
    assert_common_but_state(vm, checks);
    let d = vm.describe();
    assert!(checks.ready, "dind-init did not become ready\n{d}");
    assert_eq!(vm.status()["state"], "ready", "{d}");
}

/// All of [`assert_common`] but the state.
fn assert_common_but_state(vm: &VmRun, checks: &Checks) {
    let d = vm.describe();
    assert_eq!(
        vm.harness.code(),
        Some(0),
        "the VM did not end by itself\n{d}"
    );
    assert!(
        vm.mark("setup-fail").is_none(),
        "the layout could not be set up\n{d}"
    );
    assert!(checks.run, "the nested docker run failed\n{d}");
    assert!(
        checks.memory_limit,
        "the nested container's memory limit is {:?}, not {LIMIT_64M}\n{d}",
        vm.mark("memory")
    );
    assert!(
        checks.stop,
        "dind-init did not exit 0 after SIGTERM: {:?}\n{d}",
        vm.exit
    );
    assert_eq!(vm.mark("check-exit"), Some("0"), "dind-init check\n{d}");
    assert!(
        !vm.log.contains("cgroup preparation failed"),
        "cgroup preparation failed\n{d}"
    );
}

/// Asserts that one of the init's cgroup log lines contains every needle.
fn assert_cgroup_line(vm: &VmRun, needles: &[&str]) {
    let lines = vm.cgroup_lines();
    assert!(
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "no cgroup log line with {needles:?}; the init's cgroup lines:\n{}\n{}",
        lines.join("\n"),
        vm.describe()
    );
}

fn assert_no_cgroup_line(vm: &VmRun, needle: &str) {
    let lines = vm.cgroup_lines();
    assert!(
        !lines.iter().any(|l| l.contains(needle)),
        "a cgroup log line says {needle:?}:\n{}\n{}",
        lines.join("\n"),
        vm.describe()
    );
}

/// In the kernel's root cgroup the kernel's threads must stay (kthreadd is pid 2).
fn assert_true_root_untouched(vm: &VmRun) {
    let d = vm.describe();
    assert_eq!(vm.mark("root-type"), Some("none"), "not the true root\n{d}");
    assert_eq!(
        vm.mark("kthreadd"),
        Some("root"),
        "kernel threads moved\n{d}"
    );
    assert_no_cgroup_line(vm, "moved ");
    assert!(
        !vm.cgroup_lines()
            .iter()
            .any(|l| l.contains("/sys/fs/cgroup/init")),
        "an init cgroup was made at the true root\n{d}"
    );
}

/// dind-init did not mount securityfs: AppArmor is on in Debian's kernel and the test
/// image has no apparmor_parser, and the nested run worked without any AppArmor option.
fn assert_securityfs_skipped(vm: &VmRun) {
    assert_eq!(vm.mark("apparmor"), Some("Y"), "{}", vm.describe());
    assert_cgroup_line(vm, &["not mounting securityfs", "apparmor_parser"]);
    assert_no_cgroup_line(vm, "mounted securityfs");
    assert!(vm.mark("apparmor-plain-run").is_none(), "{}", vm.describe());
}

#[test]
fn vm_pid1_of_the_machine() {
    let Some(vm) = run_vm("pid1-vm") else { return };
    let c = checks(&vm);
    record(
        &vm,
        "runc-host",
        "pid1-vm",
        &c,
        &format!(
            "PID 1 of a VM (qemu, Debian kernel {}, cgroup_no_v1=all): mounts cgroup2, enables \
             the controllers at the true root, moves nothing",
            vm.mark("kernel").unwrap_or("?")
        ),
    );
    assert_common(&vm, &c);
    // auto on a cgroup2-only kernel with nothing mounted: cgroup2, then the true-root rule.
    assert_eq!(vm.status()["cgroup"]["mode"], "v2", "{}", vm.describe());
    assert_eq!(
        vm.status()["environment"]["cgroup"],
        "v2",
        "{}",
        vm.describe()
    );
    assert_cgroup_line(&vm, &["mounted cgroup2 on /sys/fs/cgroup"]);
    assert_cgroup_line(
        &vm,
        &[
            "enabled cgroup v2 controllers",
            "memory",
            "the machine's root cgroup: nothing moved",
        ],
    );
    assert_true_root_untouched(&vm);
    assert_securityfs_skipped(&vm);
}

#[test]
fn vm_subreaper_beside_the_machines_init() {
    let Some(vm) = run_vm("subreaper") else {
        return;
    };
    let c = checks(&vm);
    record(
        &vm,
        "runc-host",
        "subreaper",
        &c,
        "a child of the VM's PID 1, which mounted cgroup2 and securityfs: AppArmor is on and the \
         image has no apparmor_parser, so plain nested runs fail; dind-init stays degraded and \
         says why (status, check, probe); runs with --security-opt apparmor=unconfined work",
    );
    assert_common_but_state(&vm, &c);
    // verify = "container" (the test image's config): the init's own test container
    // cannot start either, so dockerd is degraded, not ready, with the cause and fix.
    let d = vm.describe();
    let degraded = c.degraded.as_deref().unwrap_or("");
    assert!(
        degraded.contains("AppArmor") && degraded.contains("apparmor=unconfined"),
        "COMMAND should find dockerd degraded by AppArmor: {:?}\n{d}",
        vm.mark("ready")
    );
    assert_eq!(vm.status()["state"], "degraded", "{d}");
    // The host's init enabled cpu io memory pids; dind-init adds the rest, moving nothing.
    assert_cgroup_line(
        &vm,
        &[
            "enabled cgroup v2 controllers",
            "cpuset",
            "the machine's root cgroup: nothing moved",
        ],
    );
    assert_true_root_untouched(&vm);
    // securityfs was there already: the warning, in the log, status and check, with the
    // fix, and the fix works (the memory check ran with apparmor=unconfined).
    let d = vm.describe();
    let warnings = vm.status()["cgroup"]["warnings"].to_string();
    assert!(
        warnings.contains("apparmor_parser") && warnings.contains("apparmor=unconfined"),
        "status does not warn about AppArmor: {warnings}\n{d}"
    );
    assert!(
        vm.marks("check-out")
            .iter()
            .any(|l| l.contains("warning:") && l.contains("apparmor_parser")),
        "check does not warn about AppArmor\n{d}"
    );
    let plain = vm.mark("apparmor-plain-run").unwrap_or("");
    assert!(
        plain.starts_with("fail") && plain.contains("AppArmor"),
        "a run without the fix should fail as the warning says: {plain}\n{d}"
    );
}

#[test]
fn vm_pid1_of_a_cgroup_namespace() {
    let Some(vm) = run_vm("pid1-cgroupns") else {
        return;
    };
    let c = checks(&vm);
    record(
        &vm,
        "runc-host",
        "pid1-cgroupns",
        &c,
        "PID 1 of pid, mount, net and cgroup namespaces under a systemd scope (docker run \
         --privileged on a systemd v2 host): moves itself into /init, enables the controllers",
    );
    assert_common(&vm, &c);
    assert_cgroup_line(
        &vm,
        &[
            "moved 1 process(es) out of the root cgroup /sys/fs/cgroup into /sys/fs/cgroup/init",
            "1 (dind-init)",
        ],
    );
    assert_cgroup_line(
        &vm,
        &["enabled cgroup v2 controllers", "memory", "after 1 writes"],
    );
    let d = vm.describe();
    assert_eq!(vm.mark("root-type"), Some("domain"), "{d}");
    assert_eq!(
        vm.mark("root-procs"),
        Some("0"),
        "the namespace root is not empty\n{d}"
    );
    assert_eq!(
        vm.mark("pid1-cgroup").map(str::trim),
        Some("0::/init"),
        "{d}"
    );
    assert_securityfs_skipped(&vm);
}

#[test]
fn vm_child_of_tini_in_a_cgroup_namespace() {
    let Some(vm) = run_vm("child-cgroupns") else {
        return;
    };
    let c = checks(&vm);
    record(
        &vm,
        "runc-host",
        "child-cgroupns",
        &c,
        "a child of docker-init (tini) as PID 1 in such a namespace (docker run --init, a \
         pod's pause): moves PID 1 and itself into /init",
    );
    assert_common(&vm, &c);
    // PID 1 (tini) would keep the namespace's root busy: it moved too, named.
    assert_cgroup_line(
        &vm,
        &[
            "moved 2 process(es) out of the root cgroup /sys/fs/cgroup into /sys/fs/cgroup/init",
            "1 (docker-init)",
            "(dind-init)",
        ],
    );
    assert_cgroup_line(&vm, &["enabled cgroup v2 controllers", "memory"]);
    let d = vm.describe();
    assert_eq!(
        vm.mark("root-procs"),
        Some("0"),
        "the namespace root is not empty\n{d}"
    );
    assert_eq!(
        vm.mark("pid1-cgroup").map(str::trim),
        Some("0::/init"),
        "{d}"
    );
    assert_eq!(vm.status()["environment"]["pid1"], false, "{d}");
    assert_securityfs_skipped(&vm);
}

#[test]
fn vm_gvisor_on_a_v2_host() {
    let Some(vm) = run_vm("gvisor") else { return };
    let c = checks(&vm);
    record(
        &vm,
        "gvisor",
        "pid1",
        &c,
        "runsc 0.0~20240729 (runsc do) on a cgroup v2 host: the sandbox shows cgroup v1; the \
         nested container's memory.limit_in_bytes is 64m",
    );
    assert_common(&vm, &c);
    let d = vm.describe();
    assert!(vm.log.contains("environment: gVisor"), "{d}");
    assert_eq!(vm.status()["cgroup"]["mode"], "v1-gvisor", "{d}");
    assert_cgroup_line(&vm, &["mounted cgroup memory on /sys/fs/cgroup/memory"]);
    assert_cgroup_line(&vm, &["mounted cgroup devices on /sys/fs/cgroup/devices"]);
}

#[test]
fn vm_busy_namespace_root_is_explained() {
    // Not a supported layout, so no row in the support table: a process outside the
    // init's pid namespace (here unshare itself) stays in the namespace's root cgroup, so
    // the controllers cannot be enabled. The reason must say who stayed.
    let Some(vm) = run_vm("busy-cgroupns") else {
        return;
    };
    let d = vm.describe();
    assert_eq!(
        vm.harness.code(),
        Some(0),
        "the VM did not end by itself\n{d}"
    );
    assert!(vm.mark("setup-fail").is_none(), "{d}");
    // What it could move, it moved (itself), named.
    assert_cgroup_line(
        &vm,
        &["moved 1 process(es) out of the root cgroup", "(dind-init)"],
    );
    let status = vm.status();
    assert_eq!(status["state"], "failed", "{d}");
    let reason = status["reason"].as_str().unwrap_or("");
    for needle in [
        "cannot enable the cgroup v2 controllers",
        "after 10 attempts",
        "processes stay in the root cgroup: 1 process(es) outside this pid namespace",
        "; fix: ",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason:?}\n{d}");
    }
    // Certain, so dockerd was never started.
    assert!(!vm.log.contains("started dockerd"), "{d}");
    assert_eq!(vm.exit, Some(0), "COMMAND's code after SIGTERM\n{d}");
}

#[test]
fn console_parsing() {
    let console = "\
[    1.0] boot\r\n\
@@vm mode subreaper\r\n\
2026 INFO dockerd: msg=\"loading plug@@vm ready ok\r\n\
in\"\r\n\
@@vm check-out a\r\n\
@@vm check-out b\r\n\
@@vm memory 67108864 \r\n\
@@vm-log-begin\r\n\
2026 INFO dind_init::prepare::cgroup::apply: moved 1\r\n\
@@vm-log-end\r\n\
@@vm init-exit 0\r\n";
    let (marks, log, exit) = parse_console(console);
    assert_eq!(marks["mode"], ["subreaper"]);
    assert_eq!(marks["ready"], ["ok"]);
    assert_eq!(marks["check-out"], ["a", "b"]);
    assert_eq!(marks["memory"], ["67108864 "]);
    assert_eq!(
        log,
        "2026 INFO dind_init::prepare::cgroup::apply: moved 1\n"
    );
    assert_eq!(exit, Some(0));
    let (_, _, exit) = parse_console(
        "[ 17.9] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n",
    );
    assert_eq!(exit, Some(1));
}
