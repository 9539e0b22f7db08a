//! The version matrix (issue 12, SPEC §7): the real dind-init as PID 1 with Debian's
//! Docker of three suites, bookworm (20.10), trixie (26.1) and sid (28.5), each in a
//! gVisor sandbox and in host namespaces under runc. The roots come from
//! scripts/docker-roots.sh (mmdebstrap, cached under /var/cache/dind-init/roots); the
//! binary under test goes into each run's own overlay on top of the cached root, so the
//! cache never goes stale with it and no run writes to it.
//!
//! Each run is the way users run it, as the image's ENTRYPOINT with a COMMAND
//! (`dind-init -- /bin/sh /matrix.sh`, [`SCRIPT`]):
//! - gVisor: `runsc --network=none --net-raw do -root <overlay>` (the sandbox's root is
//!   runsc's in-memory overlay on the test's overlay of the cached root), with a tmpfs on
//!   /var/lib/docker as users mount one (`docker run --tmpfs`), so dockerd uses overlay2;
//! - host: `unshare --pid --fork --mount --mount-proc --net --cgroup` after joining the
//!   test's own child cgroups ([`TestCgroups`]), `lo` up, the overlay with its own /proc,
//!   /sys, /dev, tmpfs on /run, /tmp and /var/lib/docker, then `chroot` into it: dockerd
//!   runs under runc with its bridge and iptables rules in the test's network namespace.
//!
//! COMMAND checks, each recorded whatever the others gave: dockerd ready (`dind-init
//! probe`), a nested `docker run`, a `docker build` (COPY and RUN steps on a busybox
//! image `docker import`ed from the root's busybox: no registry is reachable), a user
//! network where one container reaches another by name, and `dind-init check`'s report.
//! Then SIGTERM (to runsc, which passes it to its PID 1, or to the init) must stop
//! everything with exit 0 and no SIGKILL after the stop timeout.
//!
//! Where gVisor cannot run containers (runc 1.2.8+ refuses its /proc; Docker 28+ needs
//! netlink multicast, which runsc 0.0~20240729 lacks) the run is a known limit, judged
//! from the versions the root really has: dockerd must be ready, the nested run must
//! fail, `status` must carry the warning that names the cause and fix, and `check` must
//! have predicted it. To see the second limit behind the first, the sid run then puts
//! trixie's runc (1.1.15) in place of its own: `--network=none` runs, a bridge does
//! not, and the link-update warning appears.
//!
//! Every run appends one JSON line to `$DIND_INIT_RESULTS` (default
//! target/support-results.jsonl) before it asserts, so failures are recorded too;
//! scripts/support-table.py renders the README's support table from those lines. Times
//! to ready are reported on stderr and in the line, never asserted.
//!
//! Runs go one at a time by default ([`parallel_runs`]; `DIND_INIT_MATRIX_PARALLEL=2`
//! for two): on a 2-core machine two dockerds at once make each slower than both in turn.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use dind_init::prepare::environment::Version;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ROOTS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docker-roots.sh");

/// A cold root build downloads about 100 MB and unpacks 400 MB.
const ROOT_BUILD_TIMEOUT: Duration = Duration::from_secs(900);
/// From the start of a run until COMMAND says it is done (a hang guard).
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// From SIGTERM until the init (or runsc) has exited (a hang guard; the stop budget is
/// judged from the init's own log).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The first runc that refuses gVisor's /proc, and the first Docker that needs netlink
/// multicast (dind_init::check's thresholds: the test judges independently).
const RUNC_PROCFS_CHECK: Version = Version::new(1, 2, 8);
const DOCKER_LINK_SUBSCRIPTION: u32 = 28;

/// The suite whose runc predates the procfs check, put in place of sid's own to show
/// the second gVisor limit.
const OLD_RUNC_SUITE: &str = "trixie";

/// What nested containers serve and the build writes.
const PAGE: &str = "hello from the matrix";

/// COMMAND inside the root: each check prints `MATRIX check NAME ok|fail` (and `ERR
/// NAME ...` lines on failure), facts print `MATRIX KEY VALUE`, `dind-init check`'s
/// report is copied with `CHECK ` in front; then it waits for SIGTERM, which it answers
/// with exit 0.
const SCRIPT: &str = r#"set -u
PAGE='@PAGE@'
# printf, not echo: dash's echo would read the backslashes of the status JSON.
say() { printf 'MATRIX %s\n' "$*"; }
res() { if [ "$2" = 0 ]; then say "check $1 ok"; else say "check $1 fail"; fi; }
err() { sed "s/^/ERR $1 /" | head -n 20; }
trap 'say sigterm; exit 0' TERM

dind-init probe --wait 120s >/tmp/probe.txt 2>&1; r=$?; res ready $r
[ $r = 0 ] || err ready </tmp/probe.txt
say dockerd "$(dockerd --version)"
say runc "$(runc --version | head -n 1)"
dind-init check >/tmp/check.txt 2>&1; say check-rc $?
sed 's/^/CHECK /' /tmp/check.txt

# A nested image from the root's own busybox: no registry is reachable.
mkdir -p /tmp/img/bin /tmp/img/www /tmp/img/tmp
cp /bin/busybox /tmp/img/bin/
for a in sh echo cat wget httpd sleep timeout true; do ln -s busybox /tmp/img/bin/$a; done
echo "$PAGE" >/tmp/img/www/index.html
tar -C /tmp/img -cf - . | docker import - matrix:1 >/tmp/import.txt 2>&1; r=$?; say import $r
[ $r = 0 ] || err import </tmp/import.txt

out=$(docker run --rm matrix:1 echo nested-run-ok 2>&1)
[ "$out" = nested-run-ok ]; r=$?; res run $r
[ $r = 0 ] || echo "$out" | err run

mkdir -p /tmp/ctx/sub
echo one >/tmp/ctx/a.txt
echo three >/tmp/ctx/sub/b.txt
cat >/tmp/ctx/Dockerfile <<'EOF'
FROM matrix:1
COPY a.txt /a.txt
RUN cat /a.txt >/out.txt && echo two >>/out.txt
COPY sub/ /sub/
RUN cat /sub/b.txt >>/out.txt
EOF
docker build -t matrix-built:1 /tmp/ctx >/tmp/build.txt 2>&1 \
  && out=$(docker run --rm matrix-built:1 cat /out.txt 2>&1) \
  && [ "$(echo $out)" = "one two three" ]
r=$?; res build $r
[ $r = 0 ] || { tail -n 8 /tmp/build.txt; echo "${out:-}"; } | err build

# A user network: the client reaches the server by its name (Docker's embedded DNS).
fetch='i=0; while [ $i -lt 50 ]; do out=$(timeout 5 wget -q -O - http://matrix-srv/index.html 2>&1) && echo "$out" && exit 0; i=$((i+1)); sleep 0.2; done; echo "$out"; exit 1'
{ docker network create matrix-net \
  && docker run -d --name matrix-srv --network matrix-net matrix:1 httpd -f -p 80 -h /www \
  && out=$(docker run --rm --network matrix-net matrix:1 sh -c "$fetch" 2>&1) \
  && [ "$out" = "$PAGE" ]; } >/tmp/net.txt 2>&1
r=$?; res user_network_dns $r
[ $r = 0 ] || { cat /tmp/net.txt; echo "${out:-}"; } | err user_network_dns
# The uplink's MTU (1400 in the host runs) on the default bridge and a user network.
mtu_of() { docker network inspect "$1" --format '{{index .Options "com.docker.network.driver.mtu"}}' 2>/dev/null; }
say "mtu bridge $(mtu_of bridge)"
say "mtu user $(mtu_of matrix-net)"
docker rm -f matrix-srv >/dev/null 2>&1
docker network rm matrix-net >/dev/null 2>&1

# The second gVisor limit, behind the first: an older runc in place of this one.
if [ -x /opt/matrix/runc-old ]; then
  cp /opt/matrix/runc-old "$(command -v runc)"
  say runc-swapped "$(runc --version | head -n 1)"
  out=$(docker run --rm --network none matrix:1 echo none-ok 2>&1)
  [ "$out" = none-ok ]; r=$?; res old_runc_network_none $r
  [ $r = 0 ] || echo "$out" | err old_runc_network_none
  out=$(docker run --rm matrix:1 echo bridge-ok 2>&1)
  [ "$out" = bridge-ok ]; r=$?; res old_runc_bridge $r
  [ $r = 0 ] || echo "$out" | err old_runc_bridge
fi

say status "$(dind-init status --json)"
say done
while :; do sleep 1 & wait $!; done
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Gvisor,
    RuncHost,
}

impl Runtime {
    fn as_str(self) -> &'static str {
        match self {
            Runtime::Gvisor => "gvisor",
            Runtime::RuncHost => "runc-host",
        }
    }
}

// ---------------------------------------------------------------------------
// One run at a time (or `DIND_INIT_MATRIX_PARALLEL`), whatever cargo's test threads.

fn parallel_runs() -> usize {
    std::env::var("DIND_INIT_MATRIX_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

static RUNNING: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

struct Slot;

impl Slot {
    fn take() -> Slot {
        let limit = parallel_runs();
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= limit {
            running = FREED.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        FREED.notify_one();
    }
}

// ---------------------------------------------------------------------------
// Roots.

/// The cached root of `suite`, built by scripts/docker-roots.sh when missing.
fn root_of(suite: &str, dir: &TempDir) -> PathBuf {
    let started = Instant::now();
    let ran = run_timeout(
        Command::new("bash").arg(ROOTS_SCRIPT).arg(suite),
        dir,
        &format!("roots-{suite}"),
        ROOT_BUILD_TIMEOUT,
    );
    assert_eq!(
        ran.code(),
        Some(0),
        "scripts/docker-roots.sh {suite} failed\n{}",
        ran.describe()
    );
    let root = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{suite} ")))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no root for {suite} in\n{}", ran.describe()));
    let how = if ran.stderr.contains("cached") {
        "cached"
    } else {
        "built"
    };
    eprintln!(
        "matrix: root {suite}: {how} in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        root.display()
    );
    root
}

fn requirements(runtime: Runtime) -> Vec<(&'static str, bool)> {
    let mut req = vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
        ("mmdebstrap", which("mmdebstrap").is_some()),
        ("bash", which("bash").is_some()),
        ("chroot", which("chroot").is_some()),
    ];
    match runtime {
        Runtime::Gvisor => req.push((
            "runsc 0.0~20240729 at /usr/bin/runsc",
            Path::new(RUNSC).exists(),
        )),
        Runtime::RuncHost => req.push(("ip (iproute2)", which("ip").is_some())),
    }
    req
}

// ---------------------------------------------------------------------------
// One run.

/// What a run printed, read back.
struct Outcome {
    stdout: String,
    stderr: String,
    exit: Option<i32>,
}

impl Outcome {
    /// `MATRIX KEY VALUE` lines: the first value of `key`.
    fn fact(&self, key: &str) -> Option<&str> {
        let prefix = format!("MATRIX {key} ");
        self.stdout.lines().find_map(|l| l.strip_prefix(&prefix))
    }

    fn check(&self, name: &str) -> bool {
        let ok = format!("MATRIX check {name} ok");
        self.stdout.lines().any(|l| l == ok)
    }

    fn errors(&self, name: &str) -> Vec<&str> {
        let prefix = format!("ERR {name} ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect()
    }

    fn check_report(&self) -> String {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("CHECK "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn status(&self) -> serde_json::Value {
        self.fact("status")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null)
    }

    fn warnings(&self) -> Vec<String> {
        self.status()["dockerd"]["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "exit: {:?}\n--- stdout ---\n{}\n--- stderr (last 150 lines) ---\n{}",
            self.exit,
            self.stdout,
            tail(&self.stderr, 150)
        )
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Milliseconds since midnight of a log line's leading RFC 3339 timestamp.
fn line_ms(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let time = ts.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some((h * 3600.0 + m * 60.0 + s) * 1000.0)
}

/// From the init's own log: (its first line → dockerd ready, dockerd started → ready),
/// in milliseconds.
fn time_to_ready(log: &str) -> Option<(u64, u64)> {
    let own: Vec<&str> = log.lines().filter(|l| l.contains(" dind_init::")).collect();
    let first = line_ms(own.first()?)?;
    let started = line_ms(own.iter().find(|l| l.contains("started dockerd"))?)?;
    let ready = line_ms(
        own.iter()
            .find(|l| l.contains("dockerd state state=\"ready\""))?,
    )?;
    let ms = |from: f64| {
        let d = ready - from;
        (if d < 0.0 { d + 86_400_000.0 } else { d }) as u64
    };
    Some((ms(first), ms(started)))
}

/// A started run: the process to signal and wait for, and where its output goes.
struct Running {
    child: Child,
    /// The pid that gets SIGTERM: runsc (which passes it to its PID 1) or the init.
    target: i32,
    stdout: PathBuf,
    stderr: PathBuf,
    cmdline: String,
}

impl Running {
    fn read(&self) -> (String, String) {
        (
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGKILL of the init kills its namespace. runsc's sandbox and gofer are
            // its children and may outlive it (seen when a nested container hung), so
            // the whole tree goes, by pid.
            for pid in descendants(self.child.id() as i32) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(self.target), Signal::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Host pids of every descendant of `root` (through /proc/<pid>/task/*/children).
fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for task in fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|p| p.parse().ok()) {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

fn spawn(mut cmd: Command, dir: &TempDir) -> Child {
    let stdout = dir.join("run.stdout");
    let stderr = dir.join("run.stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DIND_INIT_CONFIG")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// Shell that mounts the run's overlay of `root` at `<dir>/merged` and puts the binary
/// under test, the script and the config (and, when given, an old runc) into it.
fn overlay_setup(dir: &TempDir, root: &Path, old_runc: Option<&Path>) -> String {
    let d = dir.path().display();
    let mut sh = format!(
        "mkdir -p {d}/upper {d}/work {d}/merged\n\
         mount -t overlay overlay -o lowerdir={root},upperdir={d}/upper,workdir={d}/work {d}/merged\n\
         m={d}/merged\n\
         mkdir -p $m/usr/local/bin $m/etc/dind-init\n\
         cp {init} $m/usr/local/bin/dind-init\n\
         cp {d}/matrix.sh $m/matrix.sh\n\
         cp {d}/init.toml $m/etc/dind-init/init.toml\n",
        root = root.display(),
        init = INIT,
    );
    if let Some(runc) = old_runc {
        sh.push_str(&format!(
            "mkdir -p $m/opt/matrix\ncp {} $m/opt/matrix/runc-old\n",
            runc.display()
        ));
    }
    sh
}

/// Starts dind-init as PID 1 of a gVisor sandbox on the overlay.
fn start_gvisor(dir: &TempDir, root: &Path, old_runc: Option<&Path>) -> Running {
    // dockerd's data root on a tmpfs, as users give it (`docker run --tmpfs
    // /var/lib/docker`): on the sandbox's overlay root dockerd would fall back to vfs.
    // The shell mounts it and execs the init, which stays PID 1.
    let outer = format!(
        "set -e\n{}exec {RUNSC} --network=none --net-raw do -root \"$m\" -cwd / \
         /bin/sh -c 'mkdir -p /var/lib/docker && busybox mount -t tmpfs -o size=4g tmpfs /var/lib/docker \
         && exec /usr/local/bin/dind-init -- /bin/sh /matrix.sh'\n",
        overlay_setup(dir, root, old_runc)
    );
    fs::write(dir.join("outer.sh"), outer).unwrap();
    // A private mount namespace of the test's, for the overlay; runsc execs in place of
    // unshare and sh, so the child is runsc.
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "/bin/sh"])
        .arg(dir.join("outer.sh"));
    let cmdline = format!("{cmd:?}");
    let child = spawn(cmd, dir);
    let target = child.id() as i32;
    Running {
        child,
        target,
        stdout: dir.join("run.stdout"),
        stderr: dir.join("run.stderr"),
        cmdline,
    }
}

/// Starts dind-init as PID 1 of the test's own namespaces, chrooted into the overlay.
/// The MTU of the host runs' uplink.
const HOST_MTU: u32 = 1400;

fn start_host(dir: &TempDir, root: &Path, cgroups: &TestCgroups) -> Running {
    // An uplink of MTU 1400 (a veth pair, and a default route through it), as on a
    // cloud network or a tunnel: dockerd must pass it on (SPEC §7).
    let inner = format!(
        "set -e\nip link set lo up\n\
         ip link add up0 mtu {HOST_MTU} type veth peer name up1 mtu {HOST_MTU}\n\
         ip link set up1 up\nip link set up0 up\nip addr add 10.99.0.2/24 dev up0\n\
         ip route add default via 10.99.0.1\n{}\
         mount -t proc proc $m/proc\n\
         mount -t sysfs sysfs $m/sys\n\
         mount --rbind /dev $m/dev\n\
         for p in run tmp var/lib/docker; do mkdir -p $m/$p; mount -t tmpfs tmpfs $m/$p; done\n\
         chmod 1777 $m/tmp\n\
         exec chroot $m /usr/local/bin/dind-init -- /bin/sh /matrix.sh\n",
        overlay_setup(dir, root, None)
    );
    fs::write(dir.join("inner.sh"), inner).unwrap();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!(
        "set -e\n{}\nexec unshare --pid --fork --mount --mount-proc --net --cgroup /bin/sh {}",
        cgroups.join_command(),
        dir.join("inner.sh").display()
    ));
    let cmdline = format!("{cmd:?}");
    let child = spawn(cmd, dir);
    // The init is unshare's only child (the inner shell execs chroot, which execs it).
    let unshare = child.id();
    let mut target = None;
    let found = wait_until(Duration::from_secs(30), || {
        target = fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        target.is_some()
    });
    let mut running = Running {
        child,
        target: target.unwrap_or(0),
        stdout: dir.join("run.stdout"),
        stderr: dir.join("run.stderr"),
        cmdline,
    };
    if !found {
        let (out, err) = running.read();
        let _ = running.child.kill();
        panic!("no init under unshare: {}\n{out}\n{err}", running.cmdline);
    }
    running
}

/// Waits for COMMAND's `done`, then SIGTERM, then the exit.
fn finish(mut running: Running) -> Outcome {
    let done = wait_until(RUN_TIMEOUT, || {
        running.read().0.contains("MATRIX done") || matches!(running.child.try_wait(), Ok(Some(_)))
    });
    let exit = if done && matches!(running.child.try_wait(), Ok(None)) {
        kill(Pid::from_raw(running.target), Signal::SIGTERM).unwrap();
        let mut status = None;
        wait_until(STOP_TIMEOUT, || {
            status = running.child.try_wait().unwrap();
            status.is_some()
        });
        status.and_then(|s| s.code())
    } else {
        running
            .child
            .try_wait()
            .ok()
            .flatten()
            .and_then(|s| s.code())
    };
    // The sandbox's last lines may reach the file a moment after runsc exited.
    wait_until(Duration::from_secs(5), || {
        running.read().0.contains("MATRIX sigterm") || exit.is_none()
    });
    let (stdout, stderr) = running.read();
    // Still running (a hang, or no `done`): dropping it SIGKILLs it.
    drop(running);
    Outcome {
        stdout,
        stderr,
        exit,
    }
}

// ---------------------------------------------------------------------------
// Results.

/// `v1` or `v2`: how dockerd on this machine sees /sys/fs/cgroup (a hybrid is v1).
fn host_cgroup() -> &'static str {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    match rustix::fs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.f_type == CGROUP2_SUPER_MAGIC => "v2",
        _ => "v1",
    }
}

// ---------------------------------------------------------------------------
// The test of one (suite, runtime).

fn matrix_run(suite: &str, runtime: Runtime) {
    let test = format!("matrix {suite} {}", runtime.as_str());
    if !require(&test, &requirements(runtime)) {
        return;
    }
    let _slot = Slot::take();
    let started = Instant::now();
    let dir = TempDir::new(&format!("matrix-{suite}-{}", runtime.as_str()));
    let root = root_of(suite, &dir);
    fs::write(dir.join("matrix.sh"), SCRIPT.replace("@PAGE@", PAGE)).unwrap();
    dir.config("[log]\njournald = \"off\"\n[readiness]\ninterval = \"0s\"\n");

    // The root's own versions decide what gVisor can do (the test judges for itself).
    let runc_version = chroot_version(&root, "/usr/sbin/runc");
    let dockerd_version = chroot_version(&root, "/usr/sbin/dockerd");
    let gvisor = runtime == Runtime::Gvisor;
    let procfs_limit = gvisor && runc_version >= RUNC_PROCFS_CHECK;
    let link_limit = gvisor && dockerd_version.major >= DOCKER_LINK_SUBSCRIPTION;
    // With both, the second shows only with an older runc in place.
    let old_runc = (procfs_limit && link_limit).then(|| {
        let old_root = root_of(OLD_RUNC_SUITE, &dir);
        let runc = old_root.join("usr/sbin/runc");
        assert!(
            chroot_version(&old_root, "/usr/sbin/runc") < RUNC_PROCFS_CHECK,
            "{OLD_RUNC_SUITE}'s runc is no longer older than {RUNC_PROCFS_CHECK}"
        );
        runc
    });

    let cgroups;
    let running = match runtime {
        Runtime::Gvisor => start_gvisor(&dir, &root, old_runc.as_deref()),
        Runtime::RuncHost => {
            cgroups = TestCgroups::create(&format!("matrix-{suite}"), true, true);
            start_host(&dir, &root, &cgroups)
        }
    };
    let cmdline = running.cmdline.clone();
    let out = finish(running);
    let took = started.elapsed();
    let context = format!("{test}\ncommand: {cmdline}\n{}", out.describe());

    // What happened, recorded before any assertion.
    let stopped = out.exit == Some(0)
        && out.stdout.contains("MATRIX sigterm")
        && out.stderr.contains("exiting code=0")
        && !out.stderr.contains(STOP_TIMEOUT_KILL);
    let checks = serde_json::json!({
        "ready": out.check("ready"),
        "run": out.check("run"),
        "build": out.check("build"),
        "user_network_dns": out.check("user_network_dns"),
        "stop": stopped,
    });
    let all_ok = checks
        .as_object()
        .unwrap()
        .values()
        .all(|v| v.as_bool() == Some(true));
    let warnings = out.warnings();
    let warned = |phrase: &str| warnings.iter().any(|w| w.contains(phrase));
    let report = out.check_report();
    let expect_limit = procfs_limit || link_limit;
    let mut notes = Vec::new();
    if procfs_limit {
        notes.push(format!(
            "runsc 0.0~20240729: runc {runc_version} refuses gVisor's /proc (`unsafe procfs detected`), so no container starts; fix: runc older than {RUNC_PROCFS_CHECK} in the image, or a newer runsc."
        ));
    }
    if link_limit {
        let seen = match (
            old_runc.is_some(),
            out.check("old_runc_network_none"),
            out.check("old_runc_bridge"),
        ) {
            (false, _, _) => "",
            (true, true, false) => {
                " With runc 1.1.15 in its place, `--network=none` containers run and bridged ones fail."
            }
            (true, _, _) => " Not seen as expected with runc 1.1.15 in its place.",
        };
        notes.push(format!(
            "Docker {dockerd_version} needs netlink multicast for each container's interface, which this runsc lacks (`failed to subscribe to link updates`): only `--network=none` and `--network=host` can work.{seen} Fix: Docker 27 or older, or a newer runsc."
        ));
    }
    if expect_limit {
        notes.push(
            "`dind-init status` warns with cause and fix; `dind-init check` predicts it."
                .to_owned(),
        );
    }
    let result = if !expect_limit && all_ok {
        "ok"
    } else if expect_limit
        && out.check("ready")
        && !out.check("run")
        && stopped
        && (!procfs_limit || warned("unsafe procfs"))
        && (old_runc.is_none()
            || (out.check("old_runc_network_none")
                && !out.check("old_runc_bridge")
                && warned("subscribe to link updates")))
    {
        "known-limit"
    } else {
        "fail"
    };
    if result == "fail" {
        for name in ["ready", "run", "build", "user_network_dns"] {
            if let Some(e) = out.errors(name).first() {
                notes.push(format!("{name}: {e}"));
                break;
            }
        }
        if !stopped {
            notes.push(format!("stop: exit {:?}", out.exit));
        }
    }
    let ready = time_to_ready(&out.stderr);
    let docker = out
        .fact("dockerd")
        .and_then(Version::from_version_output)
        .unwrap_or(dockerd_version);
    let mut row = serde_json::json!({
        "docker": docker.to_string(),
        "runtime": runtime.as_str(),
        "host_cgroup": host_cgroup(),
        "init": "pid1",
        "checks": checks,
        "result": result,
        "note": notes.join(" "),
        "suite": suite,
        "runc": runc_version.to_string(),
        "ready_ms": ready.map(|r| r.1),
        "test_seconds": (took.as_secs_f64() * 10.0).round() / 10.0,
    });
    if gvisor {
        row["runsc"] = serde_json::json!(runsc_version());
    }
    record_support_row(&row);
    match ready {
        Some((from_init, from_dockerd)) => eprintln!(
            "matrix: {test}: Docker {docker}: ready {from_dockerd} ms after dockerd started, \
             {from_init} ms after the init's first line; whole run {:.1} s; {result}",
            took.as_secs_f64()
        ),
        None => eprintln!(
            "matrix: {test}: never ready; whole run {:.1} s",
            took.as_secs_f64()
        ),
    }

    // The verdict.
    assert!(out.check("ready"), "dockerd was not ready\n{context}");
    if !gvisor {
        // SPEC §7: the uplink's MTU reaches the default bridge always, and new user
        // networks on Docker 24 and later (--default-network-opt).
        assert_eq!(
            out.fact("mtu bridge"),
            Some(HOST_MTU.to_string().as_str()),
            "the default bridge's MTU\n{context}"
        );
        if dockerd_version.major >= 24 {
            assert_eq!(
                out.fact("mtu user"),
                Some(HOST_MTU.to_string().as_str()),
                "a user network's MTU\n{context}"
            );
        }
    }
    assert!(
        stopped,
        "SIGTERM did not stop it with exit 0 in time\n{context}"
    );
    assert_eq!(
        out.fact("check-rc"),
        Some("0"),
        "dind-init check failed\n{context}"
    );
    let predicted_procfs = report.contains(&format!(
        "warning: containers cannot start: runc {runc_version} ("
    ));
    let predicted_link = report.contains("warning: bridge networking cannot work:");
    assert_eq!(
        predicted_procfs, procfs_limit,
        "check's procfs prediction\n{report}\n{context}"
    );
    assert_eq!(
        predicted_link, link_limit,
        "check's link-update prediction\n{report}\n{context}"
    );
    if !expect_limit {
        assert!(all_ok, "{checks}\n{context}");
        assert_eq!(warnings, Vec::<String>::new(), "{context}");
        return;
    }
    // A known limit (SPEC §7): ready, but containers cannot run, and status says why.
    assert!(
        !out.check("run"),
        "the nested run worked: is this limit gone?\n{context}"
    );
    if procfs_limit {
        let w = warnings
            .iter()
            .find(|w| w.contains("unsafe procfs"))
            .unwrap_or_else(|| panic!("no unsafe-procfs warning in {warnings:?}\n{context}"));
        assert!(w.contains("use runc older than 1.2.8"), "{w}");
        assert!(
            out.errors("run")
                .iter()
                .any(|e| e.contains("unsafe procfs detected")),
            "{context}"
        );
    }
    if old_runc.is_some() {
        assert!(
            out.check("old_runc_network_none"),
            "--network=none with runc 1.1.15\n{context}"
        );
        assert!(
            !out.check("old_runc_bridge"),
            "a bridge with runc 1.1.15 worked: is this limit gone?\n{context}"
        );
        let w = warnings
            .iter()
            .find(|w| w.contains("subscribe to link updates"))
            .unwrap_or_else(|| panic!("no link-update warning in {warnings:?}\n{context}"));
        assert!(w.contains("Docker 27 or older"), "{w}");
    }
    assert_eq!(result, "known-limit", "{context}");
}

/// The version a program of `root` reports, run inside it with `chroot`.
fn chroot_version(root: &Path, program: &str) -> Version {
    let out = Command::new("chroot")
        .arg(root)
        .args([program, "--version"])
        .output()
        .unwrap_or_else(|e| panic!("chroot {} {program}: {e}", root.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    Version::from_version_output(&text)
        .unwrap_or_else(|| panic!("no version from {program} in {}: {text}", root.display()))
}

#[test]
fn gvisor_bookworm() {
    matrix_run("bookworm", Runtime::Gvisor);
}

#[test]
fn host_bookworm() {
    matrix_run("bookworm", Runtime::RuncHost);
}

#[test]
fn gvisor_trixie() {
    matrix_run("trixie", Runtime::Gvisor);
}

#[test]
fn host_trixie() {
    matrix_run("trixie", Runtime::RuncHost);
}

#[test]
fn gvisor_sid() {
    matrix_run("sid", Runtime::Gvisor);
}

#[test]
fn host_sid() {
    matrix_run("sid", Runtime::RuncHost);
}

#[test]
fn time_to_ready_from_the_init_log() {
    let log = "\
2026-12-06T00:59:54.900000Z  INFO dind_init::main: boot\n\
2026-12-06T00:59:55.000000Z  INFO dind_init::event_loop: started dockerd pid=6\n\
2026-12-06T00:59:55.100000Z  INFO dockerd: time=... stream=\"stderr\"\n\
2026-12-06T00:59:56.418000Z  INFO dind_init::event_loop: dockerd state state=\"ready\"\n";
    assert_eq!(time_to_ready(log), Some((1518, 1418)));
    assert_eq!(time_to_ready("nothing"), None);
}

#[test]
fn support_table_renders_the_newest_row_of_each_kind() {
    if !require(
        "support_table_renders_the_newest_row_of_each_kind",
        &[("python3", which("python3").is_some())],
    ) {
        return;
    }
    let dir = TempDir::new("support-table");
    let row = |docker: &str, runtime: &str, run: bool, result: &str, note: &str| {
        serde_json::json!({
            "docker": docker, "runtime": runtime, "host_cgroup": "v1", "init": "pid1",
            "checks": {"ready": true, "run": run, "build": run, "user_network_dns": run, "stop": true},
            "result": result, "note": note, "runc": "1.3.6", "ready_ms": 412,
        })
        .to_string()
    };
    let results = dir.join("results.jsonl");
    let lines = [
        row("28.5.2", "gvisor", true, "fail", "an old failure"),
        row("20.10.24", "runc-host", true, "ok", ""),
        row(
            "28.5.2",
            "gvisor",
            false,
            "known-limit",
            "runc refuses /proc | fix",
        ),
        row(
            "3.0.0",
            "gvisor",
            false,
            "known-limit",
            "runc refuses /proc | fix",
        ),
    ];
    fs::write(&results, lines.join("\n") + "\n").unwrap();
    let readme = dir.join("README.md");
    fs::write(
        &readme,
        "# x\n\n<!-- support-table:begin -->\nold\n<!-- support-table:end -->\n\nafter\n",
    )
    .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/support-table.py");
    let ran = run_timeout(
        Command::new("python3")
            .arg(script)
            .arg("--results")
            .arg(&results)
            .arg("--readme")
            .arg(&readme),
        &dir,
        "table",
        Duration::from_secs(60),
    );
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    let text = fs::read_to_string(&readme).unwrap();
    let table: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| ---"))
        .collect();
    // A header and three rows: the older 28.5.2 gVisor row gave way to the newer one;
    // sorted by version as numbers (3.0.0 before 20.10.24).
    assert_eq!(table.len(), 4, "{text}");
    assert!(table[1].starts_with("| 3.0.0 |"), "{text}");
    assert!(table[2].starts_with("| 20.10.24 |"), "{text}");
    assert!(
        table[3].contains(
            "| gVisor | v1 | PID 1 | yes | no | no | no | yes | known limit [1] | 0.4 s |"
        ),
        "{text}"
    );
    // One footnote for the same note.
    assert!(text.contains("\n[1] runc refuses /proc | fix\n"), "{text}");
    assert!(!text.contains("[2]") && !text.contains("old failure") && !text.contains("\nold\n"));
    assert!(
        text.starts_with("# x\n\n<!-- support-table:begin -->\n| Docker |"),
        "{text}"
    );
    assert!(
        text.ends_with("<!-- support-table:end -->\n\nafter\n"),
        "{text}"
    );
    // No rows: an error, the README untouched.
    fs::write(&results, "").unwrap();
    let ran = run_timeout(
        Command::new("python3")
            .arg(script)
            .arg("--results")
            .arg(&results)
            .arg("--readme")
            .arg(&readme),
        &dir,
        "table-empty",
        Duration::from_secs(60),
    );
    assert_ne!(ran.code(), Some(0), "{}", ran.describe());
    assert_eq!(fs::read_to_string(&readme).unwrap(), text);
}
