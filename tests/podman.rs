//! Podman and systemd with the real Podman (Debian bookworm's 4.3, conmon 2.1): what
//! passes from dind-init through conmon to the `NOTIFY_SOCKET` that systemd gives a
//! `Type=notify` unit, and the unit files of examples/podman/.
//!
//! The test plays systemd: it binds a datagram socket (with SO_PASSCRED, to see who
//! sent each message, as systemd does) and runs podman with `NOTIFY_SOCKET` naming it.
//! The image is the test image (images/test/build.sh, with dind-init and the machine's
//! Docker), imported into podman's storage with `podman import` (no registry), with
//! `verify = "container"`: ready means a nested container ran.
//!
//! Measured and checked, with runc and with runsc:
//! - `--sdnotify=container`: READY=1 arrives once, from conmon, only after dind-init's
//!   dockerd is ready (dind-init's `since` of the ready state, and `dind-init probe` in
//!   the container at that moment); podman sends MAINPID=<conmon>; nothing else arrives:
//!   dind-init's STATUS= lines (it counts them as delivered to conmon) and its
//!   STOPPING=1 at `podman stop` are dropped by conmon. The delay from dind-init's ready
//!   to READY=1 at the listener is printed.
//! - runsc without `--host-uds=open`: READY=1 never arrives; dind-init reports the
//!   failed send with that fix in `status`.
//! - `--sdnotify=conmon` (what `podman generate systemd` writes unless told otherwise,
//!   also checked): READY=1 arrives before dockerd is ready; the gap is printed.
//! - examples/podman/*.service run the way systemd runs them: ExecStartPre, ExecStart
//!   (specifiers and `${DIND_IMAGE}` expanded), READY=1 awaited, ExecStop, ExecStopPost.
//!
//! Nothing touches the machine: every podman command runs in one mount and cgroup
//! namespace per test (tmpfs on /run and /var/lib, so runc's, runsc's and podman's own
//! state and caches stay there; cgroups remounted from the test's own child cgroups), with
//! storage, config and temp dirs under the test's temp dir (`CONTAINERS_CONF`,
//! `CONTAINERS_STORAGE_CONF`) and no network (`netns = "none"`). No podman service
//! is started. runsc runs with `--network=none` (a wrapper named in containers.conf:
//! on kernels 6.11+ this runsc refuses a sandbox network, ENVIRONMENT.md).

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const PODMAN: &str = "/usr/bin/podman";
/// A podman command's own limit (podman, conmon and runc themselves).
const CMD: Duration = Duration::from_secs(120);
/// How long dind-init in a container may take to be ready on a loaded machine.
const READY_WAIT: Duration = Duration::from_secs(180);
const IMAGE: &str = "localhost/dind-init-test:podman";

/// One podman test at a time: each boots dockerds in containers.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn requirements(test: &str) -> bool {
    let mut reqs = gvisor_docker_requirements();
    reqs.extend([
        ("podman (Debian's podman 4.3)", Path::new(PODMAN).exists()),
        ("conmon", which("conmon").is_some()),
        ("runc", which("runc").is_some()),
        ("nsenter", which("nsenter").is_some()),
    ]);
    require(test, &reqs)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Runtime {
    Runc,
    /// runsc, with `--host-uds=open` among its flags or not.
    Runsc {
        host_uds_open: bool,
    },
}

impl Runtime {
    /// Global podman flags choosing the runtime, and the `run` flags it needs.
    fn flags(self) -> (Vec<&'static str>, Vec<&'static str>) {
        match self {
            Runtime::Runc => (vec![], vec!["--privileged"]),
            Runtime::Runsc { host_uds_open } => {
                let mut global = vec!["--runtime=runsc", "--runtime-flag=net-raw"];
                if host_uds_open {
                    global.push("--runtime-flag=host-uds=open");
                }
                (
                    global,
                    vec!["--cap-add=ALL", "--tmpfs=/var/lib/docker:rw,exec,size=8g"],
                )
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Runsc {
                host_uds_open: true,
            } => "runsc --host-uds=open",
            Runtime::Runsc {
                host_uds_open: false,
            } => "runsc",
        }
    }
}

// ---------------------------------------------------------------------------
// A private Podman: its own storage, config, namespaces and cgroups.

/// The init.toml baked into the test image: images/test/init.toml's readiness (a test
/// container must run) with dockerd's iptables off: the image has only
/// iptables-legacy, which dockerd under runc does not find (ENVIRONMENT.md), and the
/// containers have no network anyway. In gVisor dind-init passes the same flags itself.
const IMAGE_CONFIG: &str = "[dockerd]\nargs = [\"--iptables=false\", \"--ip6tables=false\"]\n\
    stop_timeout = \"8s\"\n[readiness]\nverify = \"container\"\n\
    socket = \"/run/dind-init/init.sock\"\nfile = \"/run/dind-init/ready\"\n";

struct PrivatePodman {
    // Dropped in this order: the holder of the namespaces, the cgroups, the files.
    holder: Child,
    cgroups: TestCgroups,
    dir: TempDir,
}

impl PrivatePodman {
    fn new(name: &str) -> PrivatePodman {
        let dir = TempDir::new(name);
        let cgroups = TestCgroups::create(name, true, true);
        let d = dir.path().display();
        for sub in ["graph", "run", "tmp", "volumes", "net", "units"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // runsc of Debian's bookworm-backports with a sandbox network refuses to start on
        // kernels 6.11+ (gVisor issue 10704): `--network=none` for every podman run.
        let runsc = dir.join("runsc");
        fs::write(
            &runsc,
            format!("#!/bin/sh\nexec {RUNSC} --network=none \"$@\"\n"),
        )
        .unwrap();
        fs::set_permissions(&runsc, fs::Permissions::from_mode(0o755)).unwrap();
        // podman asks runc for RLIMIT_NOFILE 1048576 and, with any ulimit configured,
        // RLIMIT_NPROC 1048576, and lowers its own RLIMIT_NPROC to 32768 (measured,
        // strace); where the hard limits are lower and CAP_SYS_RESOURCE is missing (this
        // test machine) runc then fails with EPERM. So: the limits this test has.
        let nofile = hard_limit("Max open files");
        let nproc = hard_limit("Max processes").min(32768);
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\nlog_driver = \"k8s-file\"\n\
                 default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 tmp_dir = \"{d}/tmp\"\nvolume_path = \"{d}/volumes\"\n\
                 image_copy_tmp_dir = \"{d}/tmp\"\n\
                 [engine.runtimes]\nrunsc = [\"{d}/runsc\"]\n\
                 [network]\nnetwork_config_dir = \"{d}/net\"\n"
            ),
        )
        .unwrap();
        fs::write(
            dir.join("storage.conf"),
            format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/graph\"\nrunroot = \"{d}/run\"\n"),
        )
        .unwrap();
        // The namespaces every podman command of this test enters: cgroupfs mounted
        // afresh in a cgroup namespace rooted at the test's cgroups (so podman's
        // libpod_parent and conmon's cgroups are made there), tmpfs on /run and
        // /var/lib (runc's /run/runc, runsc's /var/run/runsc, podman's
        // /var/lib/containers/cache), nothing propagated back (unshare --mount makes the
        // mounts private).
        fs::write(
            dir.join("holder.sh"),
            format!(
                r#"set -e
lines=$(cat /proc/self/cgroup)
umount -R /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup
echo "$lines" | while IFS=: read -r id list path; do
  if [ "$id" = 0 ]; then
    mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 none /sys/fs/cgroup/unified
  else
    d=${{list#name=}}; mkdir -p "/sys/fs/cgroup/$d" && mount -t cgroup -o "$list" cgroup "/sys/fs/cgroup/$d"
  fi
done
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /var/lib
touch {d}/holder.ready
exec sleep infinity
"#
            ),
        )
        .unwrap();
        let holder = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "set -e\n{}\nexec unshare --cgroup --mount /bin/sh {d}/holder.sh",
                cgroups.join_command()
            ))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("holder.out")).unwrap())
            .stderr(fs::File::create(dir.join("holder.err")).unwrap())
            .spawn()
            .unwrap();
        let podman = PrivatePodman {
            holder,
            cgroups,
            dir,
        };
        assert!(
            wait_until(Duration::from_secs(30), || podman
                .dir
                .join("holder.ready")
                .exists()),
            "the namespace holder did not start: {}",
            fs::read_to_string(podman.dir.join("holder.err")).unwrap_or_default()
        );
        podman.import_test_image();
        podman
    }

    /// A command that runs `podman ARGS` in this test's namespaces, cgroups and config
    /// (`sh` joins the cgroups, `nsenter` the namespaces, then execs podman: one pid).
    /// `notify`: the NOTIFY_SOCKET podman gets (run_timeout removes an inherited one).
    fn command(&self, args: &[&str], notify: Option<&Path>) -> Command {
        let mut cmd = Command::new("/bin/sh");
        let export = notify
            .map(|p| format!("export NOTIFY_SOCKET='{}'\n", p.display()))
            .unwrap_or_default();
        cmd.arg("-c")
            .arg(format!(
                "set -e\n{}\n{export}exec nsenter --target {} --mount --cgroup {PODMAN} \"$@\"",
                self.cgroups.join_command(),
                self.holder.id()
            ))
            .arg("sh")
            .args(args)
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"));
        cmd
    }

    fn run(&self, args: &[&str], name: &str) -> Ran {
        run_timeout(&mut self.command(args, None), &self.dir, name, CMD)
    }

    /// `podman run -d --name NAME --sdnotify=MODE` of the test image under `runtime`,
    /// with `listener` as podman's NOTIFY_SOCKET, as systemd starts a `Type=notify`
    /// unit; fails the test unless podman exits 0.
    fn run_notified(&self, runtime: Runtime, name: &str, sdnotify: &str, listener: &Listener) {
        let (global, run_flags) = runtime.flags();
        let mode = format!("--sdnotify={sdnotify}");
        let mut args = global;
        args.extend(["run", "-d", "--name", name, &mode]);
        args.extend(run_flags);
        args.push(IMAGE);
        let ran = run_timeout(
            &mut self.command(&args, Some(&listener.path)),
            &self.dir,
            &format!("run-{sdnotify}"),
            CMD,
        );
        assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    }

    /// Runs podman and fails the test unless it exits 0; its stdout.
    fn ok(&self, args: &[&str], name: &str) -> String {
        let ran = self.run(args, name);
        assert_eq!(ran.code(), Some(0), "{}", ran.describe());
        ran.stdout
    }

    fn import_test_image(&self) {
        let config = self.dir.join("image-init.toml");
        fs::write(&config, IMAGE_CONFIG).unwrap();
        let tar = self.dir.join("image.tar");
        build_test_image(
            &self.dir,
            &["--no-import", "--tar", s(&tar), "--config", s(&config)],
            &[],
        );
        self.ok(
            &[
                "import",
                "--change",
                r#"ENTRYPOINT ["dind-init", "--"]"#,
                s(&tar),
                IMAGE,
            ],
            "import",
        );
        let _ = fs::remove_file(&tar);
    }

    /// `dind-init probe --wait` in the container, up to [`READY_WAIT`]; fails the test
    /// (with the container's log) unless its dockerd becomes ready.
    fn wait_ready(&self, container: &str) {
        let wait = format!("{}s", READY_WAIT.as_secs());
        let probe = self.run(
            &["exec", container, "dind-init", "probe", "--wait", &wait],
            "probe",
        );
        assert_eq!(
            probe.code(),
            Some(0),
            "{}\n{}",
            probe.describe(),
            self.logs(container)
        );
    }

    /// `dind-init status --json` in the container.
    fn status(&self, container: &str) -> serde_json::Value {
        let out = self.ok(
            &["exec", container, "dind-init", "status", "--json"],
            "status",
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// The container's output (dind-init's log), while it exists.
    fn logs(&self, container: &str) -> String {
        let ran = self.run(&["logs", container], "logs");
        format!("{}{}", ran.stdout, ran.stderr)
    }
}

impl Drop for PrivatePodman {
    fn drop(&mut self) {
        // Every container (and with it its conmon) first, then the namespaces' holder.
        let _ = self.run(&["rm", "--all", "--force", "--time=0"], "cleanup");
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // Anything left in the test's cgroups (a conmon whose container podman lost).
        for dir in self.cgroups.dirs() {
            for pid in all_procs(dir) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Pids in a cgroup directory and every cgroup below it.
fn all_procs(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(all_procs(&entry.path()));
        }
    }
    out
}

/// This process's hard limit from /proc/self/limits (`Max open files` ...).
fn hard_limit(name: &str) -> u64 {
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
    let hard = line[name.len()..].split_whitespace().nth(1).unwrap();
    hard.parse().unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// The systemd side: a NOTIFY_SOCKET listener.

#[derive(Clone, Debug)]
struct Message {
    /// When it was received (wall clock, to compare with dind-init's timestamps).
    at: SystemTime,
    /// The sender (SCM_CREDENTIALS), and its name when it was still alive.
    pid: i32,
    comm: String,
    text: String,
}

/// A bound datagram socket that records what arrives, as systemd's notify socket does.
struct Listener {
    path: PathBuf,
    messages: Arc<Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The text a test sends itself to know that everything before it has been read.
const MARKER: &str = "X-TEST-MARKER";

impl Listener {
    fn bind(path: PathBuf) -> Listener {
        let sock = UnixDatagram::bind(&path).unwrap();
        rustix::net::sockopt::set_socket_passcred(&sock, true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (messages, stop) = (messages.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(m) = receive(&sock) {
                        messages.lock().unwrap().push(m);
                    }
                }
            })
        };
        Listener {
            path,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits for a message containing `text`.
    fn wait_for(&self, text: &str, timeout: Duration) -> Option<Message> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.messages().into_iter().find(|m| m.text.contains(text));
            found.is_some()
        });
        found
    }

    /// Every message received so far, once all that was sent before this call has been
    /// read (a marker sent now comes after them: a datagram socket keeps order).
    fn drained(&self) -> Vec<Message> {
        let me = UnixDatagram::unbound().unwrap();
        me.send_to(MARKER.as_bytes(), &self.path).unwrap();
        assert!(
            self.wait_for(MARKER, Duration::from_secs(10)).is_some(),
            "the listener did not see its own marker"
        );
        self.messages()
            .into_iter()
            .filter(|m| m.text != MARKER)
            .collect()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn receive(sock: &UnixDatagram) -> Option<Message> {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        rustix::net::RecvFlags::empty(),
    )
    .ok()?;
    let at = SystemTime::now();
    let pid = control
        .drain()
        .find_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmCredentials(c) => {
                Some(c.pid.as_raw_nonzero().get())
            }
            _ => None,
        })
        .unwrap_or(0);
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_default();
    Some(Message {
        at,
        pid,
        comm,
        text: String::from_utf8_lossy(&buf[..got.bytes]).into_owned(),
    })
}

// ---------------------------------------------------------------------------
// Times.

/// Microseconds since the epoch of an RFC 3339 UTC time (`2026-12-06T02:08:03.949Z`).
fn rfc3339_micros(text: &str) -> i64 {
    let t = text.trim().trim_end_matches('Z');
    let (date, time) = t.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let micros: i64 = format!("{frac:0<6}")[..6].parse().unwrap();
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2]) * 1_000_000) + micros
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// The timestamp of dind-init's `dockerd state state="ready"` log line (the first).
fn ready_log_micros(log: &str) -> Option<i64> {
    log.lines()
        .find(|l| l.contains("dockerd state state=\"ready\""))
        .and_then(|l| l.split_whitespace().next())
        .map(rfc3339_micros)
}

fn ms(us: i64) -> f64 {
    us as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// The tests.

/// `podman run -d --sdnotify=container` under `runtime`, with the listener as
/// NOTIFY_SOCKET: READY=1 comes once, from conmon, only after dind-init's ready; podman
/// sends MAINPID; STATUS= and STOPPING=1 never arrive. Returns the measured delay (µs)
/// from dind-init's ready state to READY=1 at the listener.
fn sdnotify_container(runtime: Runtime) -> i64 {
    let podman = PrivatePodman::new(&format!(
        "podman-{}",
        runtime.name().replace([' ', '='], "-")
    ));
    let listener = Listener::bind(podman.dir.join("notify.sock"));
    let name = "dind";
    podman.run_notified(runtime, name, "container", &listener);

    let ready = listener.wait_for("READY=1", READY_WAIT);
    let ready = ready.unwrap_or_else(|| {
        panic!(
            "{}: no READY=1 at the listener; got {:?}\n{}",
            runtime.name(),
            listener.messages(),
            podman.logs(name)
        )
    });
    // At that moment dockerd is ready: a probe in the container says so, and dind-init's
    // ready state began before READY=1 arrived.
    podman.ok(&["exec", name, "dind-init", "probe"], "probe");
    let status = podman.status(name);
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["dockerd"]["restarts"], 0, "{status}");
    let since = rfc3339_micros(status["since"].as_str().unwrap());
    let arrived = micros(ready.at);
    assert!(
        since <= arrived,
        "READY=1 arrived before dind-init was ready ({since} > {arrived})\n{status}"
    );
    // dind-init sent at least STATUS=dockerd starting, READY=1, STATUS=dockerd ready to
    // conmon's socket, all delivered; the listener got READY=1 alone from conmon.
    assert!(
        status["sd_notify"]["sent"].as_u64().unwrap() >= 3,
        "{status}"
    );
    assert_eq!(
        status["sd_notify"]["warnings"],
        serde_json::json!([]),
        "{status}"
    );
    assert_eq!(
        status["sd_notify"]["socket"], "/run/notify/notify.sock",
        "{status}"
    );
    let log = podman.logs(name);
    let logged = ready_log_micros(&log).unwrap_or_else(|| panic!("no ready line in\n{log}"));

    // Stop it as systemd's ExecStop would: dind-init sends STOPPING=1 and a STATUS=.
    podman.ok(&["stop", "-t", "10", name], "stop");
    let code = podman.ok(
        &["inspect", "--format", "{{.State.ExitCode}}", name],
        "inspect",
    );
    let log = podman.logs(name);
    assert_eq!(code.trim(), "0", "not a clean stop\n{log}");
    assert!(
        log.contains("dockerd state state=\"stopping\""),
        "dind-init never published stopping\n{log}"
    );
    assert!(
        !log.contains("sd_notify to NOTIFY_SOCKET"),
        "an upward sd_notify failed\n{log}"
    );

    let all = listener.drained();
    let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
    let mainpid = all
        .iter()
        .find(|m| m.text.starts_with("MAINPID="))
        .unwrap_or_else(|| panic!("no MAINPID: {all:?}"));
    let conmon: i32 = mainpid.text["MAINPID=".len()..].trim().parse().unwrap();
    assert_eq!(
        texts,
        [mainpid.text.as_str(), "READY=1"],
        "{}: what reached the listener: {all:?}",
        runtime.name()
    );
    assert_eq!(ready.pid, conmon, "READY=1 not from conmon: {all:?}");
    assert_eq!(ready.comm, "conmon", "{all:?}");

    let delay = arrived - since;
    eprintln!(
        "{}: READY=1 from conmon (pid {conmon}) {:.1} ms after dind-init's ready state began, \
         {:.1} ms after its ready log line; MAINPID from {} (pid {})",
        runtime.name(),
        ms(delay),
        ms(arrived - logged),
        if mainpid.comm.is_empty() {
            "podman, gone"
        } else {
            &mainpid.comm
        },
        mainpid.pid
    );
    delay
}

#[test]
fn sdnotify_container_runc_ready_only_once_docker_is() {
    if !requirements("sdnotify_container_runc_ready_only_once_docker_is") {
        return;
    }
    let _serial = serial();
    sdnotify_container(Runtime::Runc);
}

#[test]
fn sdnotify_container_runsc_host_uds_open_ready_only_once_docker_is() {
    if !requirements("sdnotify_container_runsc_host_uds_open_ready_only_once_docker_is") {
        return;
    }
    let _serial = serial();
    sdnotify_container(Runtime::Runsc {
        host_uds_open: true,
    });
}

#[test]
fn runsc_without_host_uds_open_never_reports_ready() {
    if !requirements("runsc_without_host_uds_open_never_reports_ready") {
        return;
    }
    let _serial = serial();
    let podman = PrivatePodman::new("podman-runsc-no-uds");
    let listener = Listener::bind(podman.dir.join("notify.sock"));
    let runtime = Runtime::Runsc {
        host_uds_open: false,
    };
    let name = "dind";
    podman.run_notified(runtime, name, "container", &listener);
    // dind-init becomes ready, but cannot tell anyone upward.
    podman.wait_ready(name);
    let status = podman.status(name);
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["sd_notify"]["sent"], 0, "{status}");
    let warnings = status["sd_notify"]["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("--host-uds=open")),
        "no warning with the fix: {status}"
    );
    podman.ok(&["stop", "-t", "10", name], "stop");
    // conmon is gone: whatever it would have passed on has arrived.
    let all = listener.drained();
    assert!(
        all.iter().all(|m| !m.text.contains("READY=1")),
        "READY=1 arrived without --host-uds=open: {all:?}"
    );
    assert!(
        all.iter().any(|m| m.text.starts_with("MAINPID=")),
        "{all:?}"
    );
    eprintln!("runsc without --host-uds=open: the listener got only {all:?}");
}

#[test]
fn sdnotify_conmon_reports_ready_before_docker_is() {
    if !requirements("sdnotify_conmon_reports_ready_before_docker_is") {
        return;
    }
    let _serial = serial();
    let podman = PrivatePodman::new("podman-conmon");
    // `podman generate systemd --new` writes --sdnotify=conmon unless the container was
    // created with another mode.
    podman.ok(&["create", "--name", "plain", IMAGE], "create");
    let unit = podman.ok(
        &["generate", "systemd", "--new", "--name", "plain"],
        "generate",
    );
    assert!(unit.contains("--sdnotify=conmon"), "{unit}");
    assert!(
        unit.contains("Type=notify") && unit.contains("NotifyAccess=all"),
        "{unit}"
    );
    podman.ok(&["rm", "plain"], "rm");

    for (index, runtime) in [
        Runtime::Runc,
        Runtime::Runsc {
            host_uds_open: true,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let listener = Listener::bind(podman.dir.join(&format!("notify-{index}.sock")));
        let name = "early";
        podman.run_notified(runtime, name, "conmon", &listener);
        let ready = listener
            .wait_for("READY=1", CMD)
            .unwrap_or_else(|| panic!("no READY=1: {:?}", listener.messages()));
        podman.wait_ready(name);
        let status = podman.status(name);
        // The container got no NOTIFY_SOCKET: dind-init has nobody to tell.
        assert_eq!(
            status["sd_notify"]["socket"],
            serde_json::Value::Null,
            "{status}"
        );
        let since = rfc3339_micros(status["since"].as_str().unwrap());
        let arrived = micros(ready.at);
        assert!(
            arrived < since,
            "{}: with --sdnotify=conmon READY=1 came after dockerd was ready?\n{status}",
            runtime.name()
        );
        eprintln!(
            "{}, --sdnotify=conmon: READY=1 ({:?} from pid {}) {:.0} ms before dind-init's dockerd was ready",
            runtime.name(),
            ready.text,
            ready.pid,
            ms(since - arrived)
        );
        podman.ok(&["rm", "--force", "--time=10", name], "rm");
    }
}

// ---------------------------------------------------------------------------
// examples/podman/*.service, run as systemd would.

/// The parts of a unit's [Service] section that this test runs.
#[derive(Debug, Default)]
struct Unit {
    keys: BTreeMap<String, Vec<String>>,
}

impl Unit {
    fn parse(text: &str) -> Unit {
        let mut unit = Unit::default();
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            let line = raw.trim();
            if pending.is_empty() && (line.starts_with('#') || line.is_empty()) {
                continue;
            }
            if let Some(rest) = line.strip_suffix('\\') {
                pending.push_str(rest);
                pending.push(' ');
                continue;
            }
            let full = format!("{pending}{line}");
            pending.clear();
            if full.starts_with('[') {
                section = full;
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            let (k, v) = full.split_once('=').unwrap();
            unit.keys
                .entry(k.trim().to_owned())
                .or_default()
                .push(v.trim().to_owned());
        }
        unit
    }

    fn one(&self, key: &str) -> &str {
        match self.keys.get(key).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn all(&self, key: &str) -> &[String] {
        self.keys.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The Environment= assignments, then `overrides` (a drop-in's, as `systemctl edit`
    /// writes).
    fn environment(&self, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .all("Environment")
            .iter()
            .map(|a| {
                assert!(!a.contains(['"', '\'', ' ']), "quoted Environment={a}");
                let (k, v) = a.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect();
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env
    }

    /// An Exec line as systemd runs it: `-` prefix (failure ignored), specifiers
    /// (`%t` the runtime directory, `%n` the unit's name, `%%`), `${VAR}` from the
    /// environment, split on white space. This test's units use no quoting.
    fn exec(
        line: &str,
        unit_name: &str,
        runtime_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> (bool, Vec<String>) {
        let (ignore, line) = match line.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        assert!(!line.contains(['"', '\'']), "quoting in {line}");
        let mut out = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '%' => match chars.next() {
                    Some('t') => out.push_str(s(runtime_dir)),
                    Some('n') => out.push_str(unit_name),
                    Some('%') => out.push('%'),
                    other => panic!("specifier %{other:?} in {line}"),
                },
                '$' => {
                    assert_eq!(chars.next(), Some('{'), "only ${{VAR}} in {line}");
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    out.push_str(env.get(&name).unwrap_or_else(|| panic!("no {name}")));
                }
                c => out.push(c),
            }
        }
        (ignore, out.split_whitespace().map(str::to_owned).collect())
    }
}

/// Runs examples/podman/`file` as systemd would start and stop it, with `DIND_IMAGE`
/// overridden to the test image.
fn run_example_unit(file: &str, container: &str, label: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/podman")
        .join(file);
    let unit = Unit::parse(&fs::read_to_string(&path).unwrap());
    assert_eq!(unit.one("Type"), "notify");
    assert_eq!(unit.one("NotifyAccess"), "all");
    assert!(unit.one("ExecStart").contains("--sdnotify=container"));
    let podman = PrivatePodman::new(&format!("podman-unit-{label}"));
    let runtime_dir = podman.dir.join("units");
    let env = unit.environment(&[("DIND_IMAGE", IMAGE)]);
    let listener = Listener::bind(podman.dir.join("notify.sock"));

    // Runs one Exec line; podman commands go through the test's private podman.
    let exec = |key: &str, line: &str, notify: bool| -> Ran {
        let (ignore, argv) = Unit::exec(line, file, &runtime_dir, &env);
        let mut cmd = if argv[0] == PODMAN {
            let rest: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
            podman.command(&rest, notify.then_some(listener.path.as_path()))
        } else {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        };
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let ran = run_timeout(&mut cmd, &podman.dir, key, CMD);
        if !ignore {
            assert_eq!(ran.code(), Some(0), "{key}={line}\n{}", ran.describe());
        }
        ran
    };

    for line in unit.all("ExecStartPre") {
        exec("ExecStartPre", line, false);
    }
    // systemd starts ExecStart and waits for READY=1 (Type=notify), up to
    // TimeoutStartSec; with `podman run -d` the ExecStart process itself exits first.
    let start = unit.one("ExecStart");
    let ran = exec("ExecStart", start, true);
    let cidfile = runtime_dir.join(format!("{file}.ctr-id"));
    let cid = fs::read_to_string(&cidfile)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", cidfile.display(), ran.describe()));
    assert!(ran.stdout.contains(cid.trim()), "{}", ran.describe());
    let timeout: u64 = unit.one("TimeoutStartSec").parse().unwrap();
    let ready = listener
        .wait_for("READY=1", Duration::from_secs(timeout))
        .unwrap_or_else(|| {
            panic!(
                "{file}: no READY=1 within TimeoutStartSec; got {:?}\n{}",
                listener.messages(),
                podman.logs(container)
            )
        });
    // `systemctl start` would return now; Docker must be there.
    podman.ok(&["exec", container, "dind-init", "probe"], "probe");
    let status = podman.status(container);
    let since = rfc3339_micros(status["since"].as_str().unwrap());
    assert!(since <= micros(ready.at), "{status}");
    let messages = listener.drained();
    let mainpid = messages
        .iter()
        .find(|m| m.text.starts_with("MAINPID="))
        .unwrap_or_else(|| panic!("{messages:?}"));
    let conmon: i32 = mainpid.text["MAINPID=".len()..].trim().parse().unwrap();
    assert_eq!(ready.pid, conmon, "{messages:?}");
    assert!(
        Path::new(&format!("/proc/{conmon}")).exists(),
        "MAINPID {conmon} is not alive"
    );
    eprintln!(
        "{file}: READY=1 {:.1} ms after dind-init's ready state began; messages: {:?}",
        ms(micros(ready.at) - since),
        messages
            .iter()
            .map(|m| (&m.text, &m.comm))
            .collect::<Vec<_>>()
    );

    // systemctl stop: ExecStop, then ExecStopPost; the main process (conmon) ends.
    for line in unit.all("ExecStop") {
        exec("ExecStop", line, false);
    }
    assert!(
        wait_until(Duration::from_secs(30), || !Path::new(&format!(
            "/proc/{conmon}"
        ))
        .exists()),
        "conmon (MAINPID) still runs after ExecStop"
    );
    for line in unit.all("ExecStopPost") {
        exec("ExecStopPost", line, false);
    }
    // `--rm` took the container and its log; podman's event log keeps the exit code.
    // dind-init exits 0 after a requested stop; 137 would mean podman had to SIGKILL it.
    let died = podman.ok(
        &[
            "events",
            "--stream=false",
            "--filter",
            "event=died",
            "--filter",
            &format!("container={}", cid.trim()),
            "--format",
            "{{.ContainerExitCode}}",
        ],
        "events",
    );
    assert_eq!(died.trim(), "0", "{file}: not a clean stop");
    let left = podman.ok(&["ps", "--all", "--quiet"], "ps");
    assert_eq!(left.trim(), "", "containers left after ExecStopPost");
    let after = listener.drained();
    assert_eq!(
        after.iter().filter(|m| m.text.contains("READY=1")).count(),
        1,
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .all(|m| !m.text.contains("STOPPING") && !m.text.contains("STATUS")),
        "{after:?}"
    );
}

#[test]
fn example_unit_runc() {
    if !requirements("example_unit_runc") {
        return;
    }
    let _serial = serial();
    run_example_unit("dind-init.service", "dind", "runc");
}

#[test]
fn example_unit_gvisor() {
    if !requirements("example_unit_gvisor") {
        return;
    }
    let _serial = serial();
    run_example_unit("dind-init-gvisor.service", "dind-gvisor", "gvisor");
}

#[test]
fn rfc3339_parsing() {
    assert_eq!(rfc3339_micros("1970-01-01T00:00:00Z"), 0);
    assert_eq!(rfc3339_micros("1970-01-02T00:00:01.5Z"), 86_401_500_000);
    // `date -d 2026-12-06T02:08:03.949Z +%s` = 1796522883
    assert_eq!(
        rfc3339_micros("2026-12-06T02:08:03.949Z"),
        1_796_522_883_949_000
    );
    assert_eq!(
        rfc3339_micros("2024-02-29T23:59:59.123456Z"),
        1_709_251_199_123_456
    );
}
