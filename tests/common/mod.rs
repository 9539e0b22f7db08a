//! Shared harness of the integration tests: run the real `dind-init` binary as PID 1
//! of a new pid + mount namespace (`unshare --pid --fork --mount --mount-proc`), with
//! its own temp dir, and look at what happened.
//!
//! Waits use deadlines, never fixed sleeps. On failure, messages carry the command,
//! its exit status and its stderr.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const INIT: &str = env!("CARGO_BIN_EXE_dind-init");

/// The static (musl) release build of the current source, built once per test
/// process (cargo rebuilds only what changed). Tests that put the binary where no
/// library exists need it: a test image, or `verify = "container"`, which imports the
/// running binary as a one-file image.
pub fn static_init() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let out = Command::new("cargo")
                .current_dir(root)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "x86_64-unknown-linux-musl",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "static build failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            root.join("target/x86_64-unknown-linux-musl/release/dind-init")
        })
        .clone()
}
pub const FAKE: &str = env!("CARGO_BIN_EXE_fake-dockerd");

/// Whether this test can run: it needs root and `unshare`. Under CI=true a missing
/// requirement fails the test; elsewhere the test says loudly that it is skipped.
pub fn require_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let unshare = Path::new("/usr/bin/unshare").exists();
    if root && unshare {
        return true;
    }
    let why = format!("{test}: needs root and /usr/bin/unshare (root={root}, unshare={unshare})");
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED {why}");
    false
}

/// A temp dir removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dind-init-test-{}-{}-{}",
            name,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    /// Writes a config file and returns its path.
    pub fn config(&self, text: &str) -> PathBuf {
        let p = self.join("init.toml");
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A config for the init under test that keeps everything inside its dir: the
/// fake dockerd, its socket, pid file, exec root and report (`dockerd.report`), the
/// ready file (`ready`) and the status socket (`init.sock`).
pub struct TestConfig {
    /// The fake dockerd's switches; by default it is ready at once (NOTIFY_SOCKET
    /// and /_ping).
    pub fake_args: Vec<String>,
    /// Extra lines of the `[dockerd]` table.
    pub dockerd: String,
    /// Extra lines of the `[readiness]` table.
    pub readiness: String,
    /// Other tables.
    pub other: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        TestConfig {
            fake_args: vec!["--fake-ready-after-ms=0".to_owned()],
            dockerd: String::new(),
            readiness: String::new(),
            other: String::new(),
        }
    }
}

impl TestConfig {
    pub fn fake(args: &[&str]) -> Self {
        TestConfig {
            fake_args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn text(&self, dir: &TempDir) -> String {
        let d = dir.path().display();
        let mut args = vec![
            format!("--pidfile={d}/docker.pid"),
            format!("--exec-root={d}/exec"),
            format!("--fake-report={d}/dockerd.report"),
        ];
        args.extend(self.fake_args.iter().cloned());
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[dockerd]\npath = \"{FAKE}\"\nsocket = \"{d}/docker.sock\"\nargs = [{}]\n{}\n\
             [readiness]\nfile = \"{d}/ready\"\nsocket = \"{d}/init.sock\"\n{}\n{}\n",
            args.join(", "),
            self.dockerd,
            self.readiness,
            self.other
        )
    }

    /// Writes the config into `dir` and returns its path.
    pub fn write(&self, dir: &TempDir) -> PathBuf {
        dir.config(&self.text(dir))
    }
}

/// Writes the default [`TestConfig`] and returns its path.
pub fn base_config(dir: &TempDir) -> PathBuf {
    TestConfig::default().write(dir)
}

/// Writes a config for the init under test with the real dockerd (found in PATH) and
/// returns its path. Every path is inside `dir`: data root (`data`), exec root (`exec`),
/// pid file (`docker.pid`), socket (`docker.sock`), ready file (`ready`) and status
/// socket (`init.sock`). dockerd gets `--iptables=false` (the test's network namespace
/// is its own), then `args`; `dockerd` is more lines of the `[dockerd]` table, `rest`
/// more lines of `[readiness]`, then other tables.
pub fn real_dockerd_config(dir: &TempDir, args: &[&str], dockerd: &str, rest: &str) -> PathBuf {
    let d = dir.path().display();
    let paths = [
        format!("--data-root={d}/data"),
        format!("--exec-root={d}/exec"),
        format!("--pidfile={d}/docker.pid"),
    ];
    let args: Vec<String> = paths
        .iter()
        .map(String::as_str)
        .chain(["--iptables=false"])
        .chain(args.iter().copied())
        .map(|a| format!("{a:?}"))
        .collect();
    dir.config(&format!(
        "[dockerd]\nsocket = \"{d}/docker.sock\"\nargs = [{}]\n{dockerd}\n\
         [readiness]\nfile = \"{d}/ready\"\nsocket = \"{d}/init.sock\"\n{rest}\n",
        args.join(", ")
    ))
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The init under test, running as PID 1 of its own namespaces.
pub struct InitUnderTest {
    pub child: Child,
    pub cmdline: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

/// The kernel's `struct sigaction` on x86_64 and aarch64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Between fork and exec of the init: libc's reserved signals (32 to 34) at their
/// default, as runc and runsc start a container's process (a glibc parent that
/// uses posix_spawn(3), as std's `Command` does, would leave 32 and 33 ignored),
/// then `ignored` ignored. rt_sigaction(2) directly: libc refuses its own signals.
fn start_signals(ignored: &[i32]) {
    for (signals, handler) in [(&[32, 33, 34][..], 0), (ignored, 1)] {
        for &sig in signals {
            let action = KernelSigaction {
                handler, // SIG_DFL or SIG_IGN
                flags: 0,
                restorer: 0,
                mask: 0,
            };
            // SAFETY: a valid kernel sigaction that installs no handler code; the
            // old action pointer is null; 8 is the kernel's signal set size.
            unsafe {
                nix::libc::syscall(
                    nix::libc::SYS_rt_sigaction,
                    sig as nix::libc::c_long,
                    &action as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
    }
}

/// How to start the init.
pub struct Launch<'a> {
    pub dir: &'a TempDir,
    /// Extra unshare flags before the binary (e.g. "--net").
    pub unshare: Vec<String>,
    /// Arguments of dind-init.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Whether to add `--config` with [`base_config`] when the args have none.
    pub default_config: bool,
    /// The init binary: [`INIT`] unless set (e.g. [`static_init`]).
    pub binary: PathBuf,
    /// Signals the init starts with ignored (as a parent may leave them; exec keeps
    /// an ignored disposition).
    pub ignored: Vec<i32>,
}

impl<'a> Launch<'a> {
    pub fn new(dir: &'a TempDir) -> Self {
        Launch {
            dir,
            unshare: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            default_config: true,
            binary: PathBuf::from(INIT),
            ignored: Vec::new(),
        }
    }

    /// Starts the init with `signals` ignored (libc's reserved 32 to 34 included).
    pub fn ignoring(mut self, signals: &[i32]) -> Self {
        self.ignored.extend_from_slice(signals);
        self
    }

    /// Runs `binary` as the init instead of the debug build.
    pub fn binary(mut self, binary: PathBuf) -> Self {
        self.binary = binary;
        self
    }

    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args.extend(args.iter().map(|s| s.as_ref().to_owned()));
        self
    }

    /// COMMAND is the fake dockerd writing its report to `report`, with `args`.
    pub fn fake_command(self, report: &Path, args: &[&str]) -> Self {
        let report = format!("--fake-report={}", s(report));
        self.args(&["--", FAKE, &report]).args(args)
    }

    /// Starts without `--config` (to test where the config comes from).
    pub fn without_config(mut self) -> Self {
        self.default_config = false;
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Starts the init; without `--config` in the arguments, with [`base_config`].
    pub fn start(self) -> InitUnderTest {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount", "--mount-proc"])
            .args(&self.unshare)
            .arg(&self.binary);
        self.spawn(cmd)
    }

    /// Adds the init's arguments (with `--config` of [`base_config`] unless given),
    /// the environment and stdio files to `cmd`, and starts it.
    fn spawn(mut self, mut cmd: Command) -> InitUnderTest {
        if self.default_config && !self.args.iter().any(|a| a == "--config") {
            let config = base_config(self.dir);
            self.args
                .splice(0..0, ["--config".to_owned(), s(&config).to_owned()]);
        }
        let stdout_path = self.dir.join("init.stdout");
        let stderr_path = self.dir.join("init.stderr");
        cmd.args(&self.args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("DIND_INIT_CONFIG")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout_path).unwrap())
            .stderr(fs::File::create(&stderr_path).unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let ignored = self.ignored.clone();
        // SAFETY: the closure only makes rt_sigaction(2) calls, async-signal-safe,
        // installing no handler code; it allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                start_signals(&ignored);
                Ok(())
            });
        }
        let cmdline = format!("{cmd:?} ignoring {:?}", self.ignored);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
        InitUnderTest {
            child,
            cmdline,
            stdout_path,
            stderr_path,
            status: None,
        }
    }
}

impl InitUnderTest {
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// A description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.cmdline,
            self.status,
            self.stderr(),
            self.stdout()
        )
    }

    /// The host pid of the init (unshare's only child), once it exists.
    pub fn init_pid(&self) -> i32 {
        let unshare = self.child.id();
        let path = format!("/proc/{unshare}/task/{unshare}/children");
        let mut pid = None;
        let found = wait_until(Duration::from_secs(10), || {
            pid = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
            pid.is_some()
        });
        assert!(found, "no init process under unshare\n{}", self.describe());
        pid.unwrap_or(0)
    }

    /// Sends `sig` to the init (PID 1 inside, `init_pid` outside).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.init_pid()), sig).unwrap();
    }

    /// Waits for the init to exit, up to `timeout`; fails the test (after killing
    /// it) if it does not.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                self.status = Some(st);
                return st;
            }
            if Instant::now() >= end {
                self.kill();
                panic!("init did not exit within {timeout:?}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits and returns the exit code (a signal death fails the test).
    pub fn wait_code(&mut self, timeout: Duration) -> i32 {
        let st = self.wait(timeout);
        match st.code() {
            Some(c) => c,
            None => panic!("init died of a signal\n{}", self.describe()),
        }
    }

    fn kill(&mut self) {
        // SIGKILL of a namespace's PID 1 kills every process of the namespace.
        if let Ok(s) = fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id())) {
            for pid in s.split_whitespace().filter_map(|p| p.parse().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for InitUnderTest {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
        }
    }
}

/// Reads the fake dockerd's JSON-lines report.
pub fn report(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Events of kind `event` in a report.
pub fn events<'a>(report: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    report.iter().filter(|v| v["event"] == event).collect()
}

/// Waits until the report at `path` has an event satisfying `pred`.
pub fn wait_event(
    path: &Path,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    wait_until(timeout, || report(path).iter().any(&pred))
}

/// `p` as a `&str` for argument lists.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn os(p: &Path) -> &OsStr {
    p.as_os_str()
}

// ---------------------------------------------------------------------------
// Helpers of the cgroup tests (tests/cgroup.rs): real dockerd, runsc, private cgroups.

/// Whether each named requirement holds; under CI=true a missing one fails the test,
/// elsewhere the test says loudly that it is skipped (like [`require_root`]).
pub fn require(test: &str, requirements: &[(&str, bool)]) -> bool {
    let missing: Vec<&str> = requirements
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(what, _)| *what)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("{test}: needs {}", missing.join(", "));
    if std::env::var_os("CI").is_some_and(|v| v == "true") {
        panic!("{why}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED {why}");
    false
}

/// The first `name` in PATH, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where the README's support-table rows go (tests/matrix.rs, tests/vm.rs):
/// `$DIND_INIT_RESULTS`, else `target/support-results.jsonl`.
pub fn support_results_path() -> PathBuf {
    std::env::var_os("DIND_INIT_RESULTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/support-results.jsonl"),
        PathBuf::from,
    )
}

/// Appends one support-table row: one write(2) with O_APPEND, so rows of tests running
/// at the same time never mix.
pub fn record_support_row(row: &serde_json::Value) {
    use std::io::Write;
    let path = support_results_path();
    if let Some(parent) = path.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let line = format!("{row}\n");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(line.as_bytes())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!("support table: recorded in {}: {line}", path.display());
}

/// The runsc with the devices controller (Debian bookworm-backports 0.0~20240729).
pub const RUNSC: &str = "/usr/bin/runsc";

/// runsc's own version (`runsc version 0.0~20240729.0`: Debian's, kept as is).
pub fn runsc_version() -> String {
    Command::new(RUNSC)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2))
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default()
}

/// The old runsc 0.0~20221219 (no devices controller), as scripts/install-deps.sh
/// unpacks it; `$DIND_INIT_OLD_RUNSC` overrides.
pub fn old_runsc() -> PathBuf {
    std::env::var_os("DIND_INIT_OLD_RUNSC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/dind-init/runsc-old/usr/bin/runsc"))
}

/// A command's result, with what it printed.
pub struct Ran {
    pub cmdline: String,
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.cmdline, self.status, self.stderr, self.stdout
        )
    }
}

/// Runs `cmd` with stdout/stderr in files of `dir` (prefix `name`), killing it after
/// `timeout` (then `status` is `None`).
pub fn run_timeout(cmd: &mut Command, dir: &TempDir, name: &str, timeout: Duration) -> Ran {
    let out = dir.join(&format!("{name}.stdout"));
    let err = dir.join(&format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DIND_INIT_CONFIG");
    let cmdline = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmdline}: {e}"));
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        cmdline,
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
    }
}

/// A root file system of busybox-static (`/bin/busybox` plus applet links) as a tar in
/// `dir`, for `docker import` by a nested dockerd (no registry is reachable).
pub fn busybox_rootfs_tar(dir: &TempDir) -> PathBuf {
    busybox_tar(dir, "rootfs", &["sh", "echo", "cat", "ls", "sleep"], &[])
}

/// A busybox-static tree as directory `name` in `dir`: `/bin/busybox` with links for
/// `applets`, empty /proc, /sys, /dev, /etc and /tmp, and `files` (path, text); then
/// its tar, `name.tar` in `dir`, whose path it returns.
fn busybox_tar(dir: &TempDir, name: &str, applets: &[&str], files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join(name);
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = which("busybox").unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    for (path, text) in files {
        let file = root.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
    }
    let tar = dir.join(&format!("{name}.tar"));
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of {} failed", root.display());
    tar
}

/// Child cgroups of one test in the machine's hierarchies (every v1 hierarchy of
/// /proc/self/cgroup and/or the cgroup2 one), under this process's own cgroups. A test
/// moves its launcher into them and then into a new cgroup namespace (`unshare --cgroup`),
/// so that what the init and a nested dockerd mount, create and enable stays inside these
/// cgroups: the machine's own cgroups are never touched. Removed (depth first) on drop.
pub struct TestCgroups {
    dirs: Vec<PathBuf>,
}

impl TestCgroups {
    pub fn create(name: &str, v1: bool, unified: bool) -> TestCgroups {
        let leaf = format!("dind-init-test-{name}-{}", std::process::id());
        let me = fs::read_to_string("/proc/self/cgroup").unwrap();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut dirs = Vec::new();
        for line in me.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let is_v2 = id == "0";
            if (is_v2 && !unified) || (!is_v2 && !v1) {
                continue;
            }
            let wanted: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
            let mount = mountinfo.lines().find_map(|m| {
                let f: Vec<&str> = m.split_whitespace().collect();
                let dash = f.iter().position(|x| *x == "-")?;
                let (fstype, opts) = (*f.get(dash + 1)?, *f.get(dash + 3)?);
                let opts: Vec<&str> = opts.split(',').collect();
                let ok = if is_v2 {
                    fstype == "cgroup2"
                } else {
                    fstype == "cgroup" && wanted.iter().all(|w| opts.contains(w))
                };
                ok.then(|| (f[3].to_owned(), f[4].to_owned()))
            });
            let Some((root, point)) = mount else {
                panic!("no mount for cgroup line {line:?}");
            };
            let rel = path.strip_prefix(root.as_str()).unwrap_or(path);
            let dir = Path::new(&point)
                .join(rel.trim_start_matches('/'))
                .join(&leaf);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            if wanted.contains(&"cpuset") {
                // A new v1 cpuset has no CPUs and no memory nodes: nothing could join it.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let parent = dir.parent().unwrap().join(f);
                    let v = fs::read_to_string(&parent).unwrap();
                    fs::write(dir.join(f), v.trim()).unwrap();
                }
            }
            dirs.push(dir);
        }
        TestCgroups { dirs }
    }

    /// Shell that moves the shell itself (`$$`) into every one of the cgroups.
    pub fn join_command(&self) -> String {
        self.dirs
            .iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs'", d.display()))
            .collect::<Vec<_>>()
            .join(" && ")
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        fn remove_tree(dir: &Path) -> std::io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    remove_tree(&entry.path())?;
                }
            }
            fs::remove_dir(dir)
        }
        for dir in &self.dirs {
            // The namespace's processes may take a moment to be reaped after its PID 1 died.
            let ok = wait_until(Duration::from_secs(10), || {
                remove_tree(dir).is_ok() || !dir.exists()
            });
            if !ok {
                eprintln!("warning: could not remove test cgroup {}", dir.display());
            }
        }
    }
}

impl<'a> Launch<'a> {
    /// Extra `unshare` flags (e.g. `--cgroup`, `--net`).
    pub fn unshare_args(mut self, flags: &[&str]) -> Self {
        self.unshare.extend(flags.iter().map(|f| (*f).to_owned()));
        self
    }

    /// Like [`Launch::start`], with two shell snippets: `outer` runs in the test's own
    /// namespaces just before `unshare` (e.g. [`TestCgroups::join_command`]), and `inner`
    /// runs inside the new namespaces, as their PID 1, just before it execs the init
    /// (e.g. to unmount /sys/fs/cgroup or mount a cgroup2 there). Both stop at the first
    /// failing command.
    pub fn start_wrapped(self, outer: &str, inner: &str) -> InitUnderTest {
        let inner_path = self.dir.join("inner.sh");
        fs::write(&inner_path, format!("set -e\n{inner}\nexec \"$@\"\n")).unwrap();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("set -e\n{outer}\nexec unshare \"$@\""))
            .arg("sh")
            .args(["--pid", "--fork", "--mount", "--mount-proc"])
            .args(&self.unshare)
            .arg("/bin/sh")
            .arg(&inner_path)
            .arg(&self.binary);
        self.spawn(cmd)
    }

    /// [`Launch::start_wrapped`] in new cgroup and network namespaces, entered from
    /// `cgroups` (so the cgroup namespace is rooted there), with the new namespace's
    /// `lo` up before `inner` runs: how a real dockerd runs in a test without touching
    /// the machine's cgroups or network.
    pub fn start_isolated(self, cgroups: &TestCgroups, inner: &str) -> InitUnderTest {
        self.unshare_args(&["--cgroup", "--net"]).start_wrapped(
            &cgroups.join_command(),
            &format!("ip link set lo up\n{inner}"),
        )
    }
}

// ---------------------------------------------------------------------------
// Helpers of the end-to-end tests (tests/e2e.rs): the image assembled by
// images/test/build.sh, and a host dockerd with runsc registered as a runtime, run in
// the test's own pid, mount, network and cgroup namespaces.

/// The script that assembles the test image from the machine's Docker binaries.
pub const IMAGE_BUILD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/images/test/build.sh");

/// The docker client: docker.io's own first (it matches dockerd 20.10), else PATH's.
pub fn docker_client() -> PathBuf {
    let debian = Path::new("/usr/bin/docker");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    which("docker").unwrap_or_else(|| PathBuf::from("docker"))
}

/// What a test with a real dockerd in gVisor needs on the machine.
pub fn gvisor_docker_requirements() -> Vec<(&'static str, bool)> {
    vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
        (
            "runsc 0.0~20240729 at /usr/bin/runsc",
            Path::new(RUNSC).exists(),
        ),
        ("dockerd", which("dockerd").is_some()),
        ("docker", which("docker").is_some()),
        ("containerd", which("containerd").is_some()),
        ("busybox", which("busybox").is_some()),
        ("ldd", which("ldd").is_some()),
        ("tar", which("tar").is_some()),
        ("ip", which("ip").is_some()),
    ]
}

/// Runs images/test/build.sh with `args` (plus `--dind-init` the binary under test);
/// fails the test with its output when it fails.
pub fn build_test_image(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) {
    let mut cmd = Command::new("bash");
    cmd.arg(IMAGE_BUILD)
        .arg("--dind-init")
        .arg(static_init())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let ran = run_timeout(&mut cmd, dir, "image-build", Duration::from_secs(300));
    assert_eq!(
        ran.code(),
        Some(0),
        "images/test/build.sh failed\n{}",
        ran.describe()
    );
}

/// The test image's root file system as a directory `rootfs` in `dir` (for `runsc do
/// -root`), with `config` as its /etc/dind-init/init.toml when given.
pub fn test_rootfs(dir: &TempDir, config: Option<&Path>) -> PathBuf {
    let root = dir.join("rootfs");
    let mut args = vec!["--no-import", "--rootfs", s(&root)];
    if let Some(c) = config {
        args.extend(["--config", s(c)]);
    }
    build_test_image(dir, &args, &[]);
    root
}

/// Waits until the init under test whose status socket is `init.sock` in `dir` has a
/// ready dockerd: first the socket (it exists from the init's first moment; probe needs
/// it to be there), then `dind-init probe --wait` up to `timeout`. Fails the test with
/// the probe's and the init's output otherwise.
pub fn wait_dockerd_ready(init: &InitUnderTest, dir: &TempDir, timeout: Duration) {
    let sock = dir.join("init.sock");
    assert!(
        wait_until(Duration::from_secs(60), || sock.exists()),
        "no status socket\n{}",
        init.describe()
    );
    let wait = format!("{}s", timeout.as_secs());
    let probe = run_timeout(
        Command::new(INIT).args(["probe", "--socket", s(&sock), "--wait", &wait]),
        dir,
        "probe",
        timeout + Duration::from_secs(10),
    );
    assert_eq!(
        probe.code(),
        Some(0),
        "dockerd did not become ready\n{}\n{}",
        probe.describe(),
        init.describe()
    );
}

/// A host dockerd (20.10, runc and runsc as runtimes) under a dind-init as PID 1 of the
/// test's own pid, mount, network and cgroup namespaces: data root, exec root, pid file,
/// sockets and daemon.json under its temp dir, `--iptables=false --bridge=none`, an empty
/// network namespace (only `lo`), a private tmpfs on /run (so a containerd socket of the
/// machine's is never seen, let alone adopted or removed), and child cgroups of the
/// test's ([`TestCgroups`]) for everything it and runsc create. runsc runs with
/// `--network=none --net-raw`: with a sandbox network this runsc refuses to start on
/// kernels 6.11 and later (ENVIRONMENT.md). Stopped (SIGTERM, then SIGKILL of the
/// namespace) and cleaned up on drop.
pub struct HostDocker {
    // Dropped in this order: the namespace's processes, then the cgroups, then the files.
    pub init: InitUnderTest,
    cgroups: TestCgroups,
    pub dir: TempDir,
}

impl HostDocker {
    /// Starts it and waits until dockerd is ready (fails the test otherwise).
    pub fn start(name: &str) -> HostDocker {
        let dir = TempDir::new(name);
        let cgroups = TestCgroups::create(name, true, true);
        let d = dir.path().display();
        // `runsc-net`: runsc with a sandbox network, for containers that talk to each
        // other (tests/ci_recipes.rs). This runsc refuses a network on kernels 6.11 and
        // later (its root-netns test finds /proc/sys/net/core/rmem_default in every
        // netns, gVisor issue 10704): each runsc call gets a private mount namespace
        // whose /proc/sys/net is an empty tmpfs, as REFERENCE.md section 4 did for
        // `runsc do`. The sandbox's netstack is unaffected.
        let wrapper = dir.join("runsc-net");
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec unshare --mount -- /bin/sh -c 'mount -t tmpfs tmpfs /proc/sys/net \
                 && mkdir -p /proc/sys/net/ipv4 && echo 1 > /proc/sys/net/ipv4/ip_forward \
                 && exec \"$0\" \"$@\"' {RUNSC} \"$@\"\n"
            ),
        )
        .unwrap();
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        fs::write(
            dir.join("daemon.json"),
            format!(
                "{{\"runtimes\": {{\"runsc\": {{\"path\": \"{RUNSC}\", \
                 \"runtimeArgs\": [\"--network=none\", \"--net-raw\"]}}, \
                 \"runsc-net\": {{\"path\": \"{}\", \"runtimeArgs\": [\"--net-raw\"]}}}}}}\n",
                wrapper.display()
            ),
        )
        .unwrap();
        let config = real_dockerd_config(
            &dir,
            &[
                &format!("--config-file={d}/daemon.json"),
                "--ip6tables=false",
                "--bridge=none",
            ],
            "",
            "interval = \"0s\"\n[log]\njournald = \"off\"",
        );
        let init = Launch::new(&dir)
            .args(&["--config", s(&config)])
            .start_isolated(
                &cgroups,
                "umount -R /sys/fs/cgroup\nmount -t tmpfs -o mode=0755 tmpfs /run",
            );
        wait_dockerd_ready(&init, &dir, Duration::from_secs(90));
        HostDocker { init, cgroups, dir }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// A docker client command for this dockerd (its own client config dir too).
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(docker_client());
        cmd.env("DOCKER_HOST", format!("unix://{}", s(&self.socket())))
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY");
        cmd
    }

    /// Runs `docker ARGS` with a timeout; `name` names its output files.
    pub fn run(&self, args: &[&str], name: &str, timeout: Duration) -> Ran {
        run_timeout(self.docker().args(args), &self.dir, name, timeout)
    }

    /// [`HostDocker::run`] that must exit 0 (else the test fails with the command's
    /// output and the host init's log).
    pub fn ok(&self, args: &[&str], name: &str, timeout: Duration) -> Ran {
        let ran = self.run(args, name, timeout);
        assert_eq!(
            ran.code(),
            Some(0),
            "{}\n{}",
            ran.describe(),
            self.init.describe()
        );
        ran
    }

    /// Assembles the test image (images/test/build.sh) and imports it as `tag`.
    pub fn import_test_image(&self, tag: &str) {
        let host = format!("unix://{}", s(&self.socket()));
        let config = self.dir.join("docker-config");
        build_test_image(
            &self.dir,
            &["--tag", tag],
            &[("DOCKER_HOST", &host), ("DOCKER_CONFIG", s(&config))],
        );
    }

    /// SIGTERM to the host init; its exit code (it stops dockerd and the containers'
    /// shims and sandboxes with it).
    pub fn stop(&mut self) -> i32 {
        self.init.signal(Signal::SIGTERM);
        self.init.wait_code(Duration::from_secs(60))
    }
}

// ---------------------------------------------------------------------------
// Helpers of the nested-networking tests (tests/network.rs).

/// The page the nested image's httpd serves (`/www/index.html`).
pub const NESTED_PAGE: &str = "hello from a nested httpd";

/// Like [`busybox_rootfs_tar`], with the applets a network test needs (`httpd`, `wget`,
/// `timeout`, `md5sum`, ...) and `/www/index.html` holding [`NESTED_PAGE`]. Its own
/// directory (`netrootfs`) and tar (`netrootfs.tar`) in `dir`, so both can coexist.
pub fn busybox_net_rootfs_tar(dir: &TempDir) -> PathBuf {
    busybox_tar(
        dir,
        "netrootfs",
        &[
            "sh", "echo", "cat", "ls", "sleep", "wget", "httpd", "nc", "timeout", "md5sum", "head",
            "grep", "mkdir", "true", "false", "test", "ip",
        ],
        &[("www/index.html", NESTED_PAGE)],
    )
}

// ---------------------------------------------------------------------------
// Helpers shared by the supervision, readiness and real-dockerd tests: the status
// socket, processes of the init's namespace seen from the host.

/// How long a status request may take before the test fails.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// One `status` request on the status socket at `socket`: the JSON answer.
pub fn status_at(socket: &Path) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(STATUS_TIMEOUT)).unwrap();
    s.write_all(b"status\n").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad status {line:?}: {e}"))
}

/// The status of the init whose status socket is `init.sock` in `dir`.
pub fn status(dir: &TempDir) -> serde_json::Value {
    status_at(&dir.join("init.sock"))
}

/// Waits until the status socket at `socket` answers a status satisfying `pred`.
pub fn wait_status_at(
    socket: &Path,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(timeout, || {
        std::os::unix::net::UnixStream::connect(socket).is_ok() && {
            last = status_at(socket);
            pred(&last)
        }
    });
    assert!(ok, "status never matched; last: {last}");
    last
}

/// [`wait_status_at`] for the init whose status socket is `init.sock` in `dir`.
pub fn wait_status(
    dir: &TempDir,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_status_at(&dir.join("init.sock"), timeout, pred)
}

/// The restart delays the init logged (`restarting in 50ms` ...), in order.
pub fn restart_delays(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("state=\"restarting\""))
        .filter_map(|l| l.split("restarting in ").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// Host pids of `root` and all its descendants (through /proc/<pid>/task/*/children).
fn process_tree(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        out.push(pid);
        for t in fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let c = fs::read_to_string(t.path().join("children")).unwrap_or_default();
            todo.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

impl InitUnderTest {
    /// Sends `sig` to the dockerd that `status` (an answer of the init's status socket)
    /// names; returns its host pid.
    pub fn signal_dockerd(&self, status: &serde_json::Value, sig: Signal) -> i32 {
        let ns_pid = status["dockerd"]["pid"].as_i64().unwrap() as i32;
        let host = self.host_pid(ns_pid);
        kill(Pid::from_raw(host), sig).unwrap();
        host
    }

    /// The host pid of the process that is `ns_pid` in the init's pid namespace.
    pub fn host_pid(&self, ns_pid: i32) -> i32 {
        for pid in process_tree(self.init_pid()) {
            let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let ns = st.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("");
            if ns.split_whitespace().last() == Some(ns_pid.to_string().as_str()) {
                return pid;
            }
        }
        panic!("no process {ns_pid} in the init's namespace");
    }
}

/// Zombies among `root` and its descendants.
pub fn zombies_under(root: i32) -> Vec<i32> {
    process_tree(root)
        .into_iter()
        .filter(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                == Some("Z")
        })
        .collect()
}

/// The number of open fds and the RSS (KiB) of a host process.
pub fn fds_and_rss(pid: i32) -> (usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = st
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    (fds, rss)
}

/// Checks that the host process `pid` (the init) has no more open fds and at most 1 MiB
/// more RSS than `baseline` ([`fds_and_rss`] some rounds of restarts earlier): a leak
/// per restart would show over the rounds, allocator slack stays within that MiB. The
/// fd count gets up to 5 s to come down: the last status connection may still be
/// closing on the init's side.
pub fn assert_no_growth(pid: i32, baseline: (usize, u64)) {
    let (fds0, rss0) = baseline;
    let settled = wait_until(Duration::from_secs(5), || fds_and_rss(pid).0 <= fds0);
    let (fds1, rss1) = fds_and_rss(pid);
    assert!(settled, "the init's fd count grew from {fds0} to {fds1}");
    assert!(
        rss1 <= rss0 + 1024,
        "the init's RSS grew from {rss0} KiB to {rss1} KiB"
    );
}

/// `runsc --network=none --net-raw do <args>`: a program as PID 1 of a gVisor
/// sandbox on a throwaway overlay of the host's root.
pub fn runsc_do(runsc: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(runsc);
    cmd.args(["--network=none", "--net-raw", "do"]).args(args);
    cmd
}

// ---------------------------------------------------------------------------
// Stops, judged by what the init did (its own log), not by the test's wall clock.

/// The default `[dockerd] stop_timeout`, which every stop test here runs with.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// What the init may add after `stop_timeout` by design: stage 2's minimum grace
/// (`MIN_REMAINING_GRACE`, 0.5 s) and the wait after SIGKILL (`AFTER_KILL_GRACE`, 1 s),
/// plus 1 s for a late wake-up on a loaded machine.
pub const STOP_GRACE: Duration = Duration::from_millis(2500);

/// The log line the init writes when COMMAND or dockerd outlived the stop timeout and
/// it had to SIGKILL them (src/event_loop.rs).
pub const STOP_TIMEOUT_KILL: &str = "still running after the stop timeout";

/// Milliseconds since midnight of a text log line's leading RFC 3339 timestamp
/// (`2026-12-02T06:25:26.364265Z  INFO ...`).
fn log_line_ms(line: &str) -> Option<i64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    Some(((h * 3600.0 + m * 60.0 + sec) * 1000.0) as i64)
}

/// Checks from the init's own log lines (target `dind_init::...`) in `log` that its stop
/// was its own doing: it never had to SIGKILL COMMAND or dockerd after the stop timeout,
/// and by its own timestamps its final `exiting` line came at most `stop_timeout` +
/// [`STOP_GRACE`] after `shutdown requested`. Returns that gap. `context` goes into the
/// failure messages. The exit code and a wall-clock hang guard are the caller's.
pub fn assert_init_stopped_in_time(log: &str, stop_timeout: Duration, context: &str) -> Duration {
    let own: Vec<&str> = log.lines().filter(|l| l.contains(" dind_init::")).collect();
    assert!(
        !own.iter().any(|l| l.contains(STOP_TIMEOUT_KILL)),
        "the init had to SIGKILL after the stop timeout\n{context}"
    );
    let at = |line: Option<&&str>, what: &str| -> i64 {
        line.and_then(|l| log_line_ms(l))
            .unwrap_or_else(|| panic!("no timestamped {what:?} line of the init\n{context}"))
    };
    let from = at(
        own.iter().find(|l| l.contains("shutdown requested")),
        "shutdown requested",
    );
    let to = at(
        own.iter().rev().find(|l| l.contains("exiting code=")),
        "exiting code=",
    );
    let mut gap = to - from;
    if gap < 0 {
        gap += 24 * 3600 * 1000; // the stop spanned midnight (UTC)
    }
    let gap = Duration::from_millis(gap as u64);
    assert!(
        gap <= stop_timeout + STOP_GRACE,
        "by its own log the init took {gap:?} from \"shutdown requested\" to \"exiting\", \
         more than stop_timeout {stop_timeout:?} + {STOP_GRACE:?}\n{context}"
    );
    gap
}

/// [`zombies_under`] `root`, polled for up to 5 s until there are none: a zombie whose
/// parent is about to reap it (a containerd-shim just exiting) is not a leak; one that
/// stays is. Returns the last sample (empty when they all went away).
pub fn zombies_under_settled(root: i32) -> Vec<i32> {
    let mut last = Vec::new();
    wait_until(Duration::from_secs(5), || {
        last = zombies_under(root);
        last.is_empty()
    });
    last
}
