//! docker:dind's TLS contract (SPEC §6), with the real things: dind-init as PID 1 of
//! private pid, mount, cgroup and network namespaces with the real dockerd (Debian's
//! docker.io 20.10), the real `openssl` making the certificates, and real `docker`
//! clients (docker.io's 20.10 and, when installed, a newer one) in ANOTHER network
//! namespace, joined to the init's by a veth pair (10.77.15.1 on the init's side,
//! 10.77.15.2 on the client's), as REFERENCE.md section 4 sets such pairs up:
//!
//! - `DOCKER_TLS_CERTDIR` set: the client talks to dockerd over TLS on 2376 with the
//!   generated client certificates, and is refused without them (no TLS, TLS without a
//!   client certificate, plain 2375); the server's names include the container's address
//!   and `$DOCKER_TLS_SAN`; the keys' modes are docker:dind's; a second boot with the
//!   same directory keeps the CA key and the server and client keys, renews the three
//!   certificates, and a client that kept the first boot's `client/` still gets in;
//! - user-managed certificates (server's three files, no CA key) are used as they are:
//!   nothing in the directory changes, and a client signed by the user's CA gets in;
//! - `DOCKER_TLS_CERTDIR=""`: plain TCP on 2375, and dockerd does not sleep 15 s for it
//!   (`--tls=false`);
//! - failures end the boot with one line before dockerd starts (fake dockerd: a key that
//!   does not match, no openssl in PATH, a CA certificate without its key, a bad
//!   `$DOCKER_TLS_SAN`); a TCP host in dockerd's arguments turns it all off;
//! - the boot-time runner of openssl: output, exit status, output bound, timeout.
//!
//! The client's namespace is held by a `sleep` of the test's (`unshare --net`), killed
//! by pid; the veth pair is made inside the init's namespace with its peer moved
//! straight into the client's, so nothing touches the machine's network. The real-dockerd
//! tests run one at a time.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use dind_init::sys::command;
use dind_init::sys::reaper::ExitStatus;
use nix::sys::signal::Signal;

/// How long dockerd may take to be ready (`probe --wait`).
const READY_WAIT: Duration = Duration::from_secs(110);

/// One real dockerd at a time: on a 2-core machine more make every wait meaningless.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn requirements() -> Vec<(&'static str, bool)> {
    vec![
        ("root", nix::unistd::geteuid().is_root()),
        ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
        ("nsenter", which("nsenter").is_some()),
        ("dockerd", which("dockerd").is_some()),
        ("docker", which("docker").is_some()),
        ("openssl", which("openssl").is_some()),
        ("ip", which("ip").is_some()),
        ("sleep", which("sleep").is_some()),
    ]
}

/// The init's side of the veth pair, and the client's.
const SERVER_IP: &str = "10.77.15.1";
const CLIENT_IP: &str = "10.77.15.2";

/// A network namespace of the test's, held by a `sleep`: the client's side.
struct ClientNet {
    holder: Child,
}

impl ClientNet {
    fn new() -> ClientNet {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = holder.id();
        // unshare execs sleep once the namespace exists.
        assert!(
            wait_until(Duration::from_secs(10), || {
                fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|e| e.to_string_lossy().contains("sleep"))
            }),
            "the client namespace's holder did not start"
        );
        ClientNet { holder }
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `cmd` with `nsenter --net` into this namespace in front of it.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Waits for the veth peer that the init's namespace moved here, and brings it up
    /// with [`CLIENT_IP`].
    fn configure(&self, link: &str) {
        let ns = format!("--net=/proc/{}/ns/net", self.pid());
        let appeared = wait_until(Duration::from_secs(30), || {
            Command::new("nsenter")
                .args([&ns, "--", "ip", "link", "show", link])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            appeared,
            "the veth peer {link} never reached the client's namespace"
        );
        let script = format!(
            "ip link set lo up && ip addr add {CLIENT_IP}/24 dev {link} && ip link set {link} up"
        );
        let st = Command::new("nsenter")
            .args([&ns, "--", "sh", "-c", &script])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "could not configure {link} in the client's namespace"
        );
    }
}

impl Drop for ClientNet {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The real dockerd under dind-init as PID 1 of the test's namespaces (like
/// `HostDocker`, without runsc), its network namespace joined to `net` by a veth pair.
struct TlsDocker {
    init: InitUnderTest,
    _cgroups: TestCgroups,
}

/// Starts a [`TlsDocker`] with `env` and waits until its dockerd is ready (fails the
/// test otherwise).
fn start_tls_docker(dir: &TempDir, net: &ClientNet, name: &str, env: &[(&str, &str)]) -> TlsDocker {
    let cgroups = TestCgroups::create(name, true, true);
    let config = real_dockerd_config(
        dir,
        &["--ip6tables=false", "--bridge=none"],
        "",
        "interval = \"0s\"\n[log]\njournald = \"off\"",
    );
    let mut launch = Launch::new(dir)
        .args(&["--config", s(&config)])
        .unshare_args(&["--cgroup", "--net"]);
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    // The pair is made inside the init's new network namespace, with its peer moved
    // straight into the client's: nothing in the machine's namespace. The client's
    // namespace comes in as fd 9, opened before unshare (the new /proc has no pid of the
    // holder), and is closed before the init starts. The address is in place before the
    // init starts, so the certificate names it.
    let outer = format!(
        "{}\nexec 9</proc/{}/ns/net",
        cgroups.join_command(),
        net.pid()
    );
    let inner = format!(
        "ip link set lo up\n\
         ip link add tls0 type veth peer name tls1 netns /proc/self/fd/9\n\
         exec 9<&-\n\
         ip addr add {SERVER_IP}/24 dev tls0\n\
         ip link set tls0 up\n\
         umount -R /sys/fs/cgroup\n\
         mount -t tmpfs -o mode=0755 tmpfs /run"
    );
    let init = launch.start_wrapped(&outer, &inner);
    net.configure("tls1");
    wait_dockerd_ready(&init, dir, READY_WAIT);
    TlsDocker {
        init,
        _cgroups: cgroups,
    }
}

impl TlsDocker {
    fn stop(&mut self) {
        self.init.signal(Signal::SIGTERM);
        let code = self.init.wait_code(Duration::from_secs(60));
        assert_eq!(code, 0, "{}", self.init.describe());
    }
}

/// The docker clients to try: docker.io's (matches dockerd 20.10) and, when there is
/// one, the newer client first in PATH.
fn clients() -> Vec<PathBuf> {
    let mut out = vec![docker_client()];
    if let Some(other) = which("docker") {
        if !out.contains(&other) {
            out.push(other);
        }
    }
    out
}

/// `docker ARGS` from the client's namespace, with a clean client environment.
fn client_run(net: &ClientNet, dir: &TempDir, client: &Path, args: &[&str], name: &str) -> Ran {
    let mut cmd = net.command(client);
    cmd.args(args)
        .env("DOCKER_CONFIG", dir.join("client-config"))
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONTEXT");
    run_timeout(&mut cmd, dir, name, Duration::from_secs(60))
}

/// `docker --tlsverify` with the three files of `certs` (a `client/` directory).
fn tls_info(net: &ClientNet, dir: &TempDir, client: &Path, certs: &Path, name: &str) -> Ran {
    let ca = format!("--tlscacert={}", certs.join("ca.pem").display());
    let cert = format!("--tlscert={}", certs.join("cert.pem").display());
    let key = format!("--tlskey={}", certs.join("key.pem").display());
    let host = format!("tcp://{SERVER_IP}:2376");
    client_run(
        net,
        dir,
        client,
        &[
            "--tlsverify",
            &ca,
            &cert,
            &key,
            "-H",
            &host,
            "info",
            "--format",
            "{{.ServerVersion}}",
        ],
        name,
    )
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn openssl_out(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serial_of(cert: &Path) -> String {
    openssl_out(&["x509", "-noout", "-serial", "-in", s(cert)])
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generated_certificates_admit_the_client_refuse_others_and_survive_a_restart() {
    let test = "generated_certificates_admit_the_client_refuse_others_and_survive_a_restart";
    if !require(test, &requirements()) {
        return;
    }
    let _one = serial();
    let dir = TempDir::new("tls-gen");
    let net = ClientNet::new();
    let certs = dir.join("certs");
    let env = [
        ("DOCKER_TLS_CERTDIR", s(&certs)),
        ("DOCKER_TLS_SAN", "DNS:dind.example.test IP:10.77.15.9"),
    ];
    let mut docker = start_tls_docker(&dir, &net, "tls-gen", &env);

    // What was made, with docker:dind's names and modes.
    for f in [
        "ca/cert.pem",
        "ca/key.pem",
        "server/ca.pem",
        "server/cert.pem",
        "server/key.pem",
        "client/ca.pem",
        "client/cert.pem",
        "client/key.pem",
    ] {
        assert!(
            certs.join(f).is_file(),
            "no {f}\n{}",
            docker.init.describe()
        );
    }
    assert_eq!(mode(&certs.join("ca/key.pem")), 0o600);
    assert_eq!(mode(&certs.join("server/key.pem")), 0o600);
    assert_eq!(mode(&certs.join("client/key.pem")), 0o644);
    assert_eq!(mode(&certs.join("client/cert.pem")), 0o644);
    let sans = openssl_out(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        s(&certs.join("server/cert.pem")),
    ]);
    for want in [
        "DNS:docker",
        "DNS:localhost",
        "IP Address:10.77.15.1",
        "IP Address:127.0.0.1",
        "DNS:dind.example.test",
        "IP Address:10.77.15.9",
    ] {
        assert!(sans.contains(want), "{want} not in {sans}");
    }
    let leftovers: Vec<_> = snapshot(&certs)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".tmp") || n.contains("openssl.cnf")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let st = status(&dir);
    assert_eq!(st["environment"]["tls"]["mode"], "generated", "{st}");
    assert_eq!(
        st["environment"]["tls"]["host"], "tcp://0.0.0.0:2376",
        "{st}"
    );
    assert_eq!(st["environment"]["tls"]["dir"], s(&certs), "{st}");

    for (i, client) in clients().iter().enumerate() {
        let ran = tls_info(
            &net,
            &dir,
            client,
            &certs.join("client"),
            &format!("tls-{i}"),
        );
        assert_eq!(
            ran.code(),
            Some(0),
            "{} with the client certificates\n{}\n{}",
            client.display(),
            ran.describe(),
            docker.init.describe()
        );
        assert!(ran.stdout.trim().starts_with("20.10"), "{}", ran.describe());
    }

    // Refused: without TLS, with TLS but no client certificate, and on 2375.
    let client = docker_client();
    let host = format!("tcp://{SERVER_IP}:2376");
    let no_tls = client_run(&net, &dir, &client, &["-H", &host, "info"], "no-tls");
    assert_ne!(no_tls.code(), Some(0), "{}", no_tls.describe());
    let ca = format!("--tlscacert={}", certs.join("client/ca.pem").display());
    let no_cert = client_run(
        &net,
        &dir,
        &client,
        &["--tls", &ca, "-H", &host, "info"],
        "no-cert",
    );
    assert_ne!(no_cert.code(), Some(0), "{}", no_cert.describe());
    // The 20.10 client prints the server's refusal among its info, on stdout.
    let said = format!("{}{}", no_cert.stdout, no_cert.stderr);
    assert!(
        said.contains("bad certificate") || said.contains("certificate required"),
        "the server should refuse the handshake without a client certificate\n{}",
        no_cert.describe()
    );
    let plain_host = format!("tcp://{SERVER_IP}:2375");
    let plain = client_run(&net, &dir, &client, &["-H", &plain_host, "info"], "plain");
    assert_ne!(plain.code(), Some(0), "{}", plain.describe());

    // A second boot with the same directory: keys kept, certificates renewed.
    let before = |rel: &str| fs::read(certs.join(rel)).unwrap();
    let (ca_key, server_key, client_key) = (
        before("ca/key.pem"),
        before("server/key.pem"),
        before("client/key.pem"),
    );
    let serials: Vec<String> = ["ca/cert.pem", "server/cert.pem", "client/cert.pem"]
        .iter()
        .map(|c| serial_of(&certs.join(c)))
        .collect();
    let kept_client = dir.join("old-client");
    copy_dir(&certs.join("client"), &kept_client);
    docker.stop();
    drop(docker);

    let mut again = start_tls_docker(&dir, &net, "tls-gen2", &env);
    assert_eq!(before("ca/key.pem"), ca_key, "the CA key must be kept");
    assert_eq!(before("server/key.pem"), server_key);
    assert_eq!(before("client/key.pem"), client_key);
    for (c, old) in ["ca/cert.pem", "server/cert.pem", "client/cert.pem"]
        .iter()
        .zip(&serials)
    {
        assert_ne!(&serial_of(&certs.join(c)), old, "{c} was not renewed");
    }
    assert_eq!(before("server/ca.pem"), before("ca/cert.pem"));
    assert_eq!(before("client/ca.pem"), before("ca/cert.pem"));
    let st = status(&dir);
    let actions = st["environment"]["tls"]["actions"].to_string();
    assert!(actions.contains("kept ca/key.pem"), "{st}");
    let new = tls_info(&net, &dir, &client, &certs.join("client"), "tls-new");
    assert_eq!(
        new.code(),
        Some(0),
        "{}\n{}",
        new.describe(),
        again.init.describe()
    );
    let old = tls_info(&net, &dir, &client, &kept_client, "tls-old");
    assert_eq!(
        old.code(),
        Some(0),
        "a client that kept the first boot's certificates\n{}\n{}",
        old.describe(),
        again.init.describe()
    );
    again.stop();
}

/// A CA, a server certificate for [`SERVER_IP`] and a client certificate, made the way
/// a user would (RSA 2048 here, so the user's key type differs from dind-init's).
fn user_certificates(root: &Path) {
    let server = root.join("certs/server");
    let client = root.join("client");
    fs::create_dir_all(&server).unwrap();
    fs::create_dir_all(&client).unwrap();
    let ext = root.join("ext.cnf");
    fs::write(
        &ext,
        format!(
            "[s]\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:{SERVER_IP}\n\
             [c]\nextendedKeyUsage = clientAuth\n"
        ),
    )
    .unwrap();
    for (cn, key, cert, ext) in [
        ("user CA", "ca.key", "ca.pem", None),
        (
            "user server",
            "certs/server/key.pem",
            "certs/server/cert.pem",
            Some("s"),
        ),
        (
            "user client",
            "client/key.pem",
            "client/cert.pem",
            Some("c"),
        ),
    ] {
        user_req(root, cn, key, cert, ext);
    }
    fs::copy(root.join("ca.pem"), server.join("ca.pem")).unwrap();
    fs::copy(root.join("ca.pem"), client.join("ca.pem")).unwrap();
}

/// One `openssl req -x509` of [`user_certificates`]: a new RSA 2048 key at `key` and a
/// 30-day certificate for `/CN=<cn>` at `cert` (both under `root`): self-signed, or with
/// `ext` signed by `root`'s `ca.pem` and `ca.key` with that section of `ext.cnf`.
fn user_req(root: &Path, cn: &str, key: &str, cert: &str, ext: Option<&str>) {
    let p = |rel: &str| s(&root.join(rel)).to_owned();
    let (key, cert, subj) = (p(key), p(cert), format!("/CN={cn}"));
    let (ca, ca_key, config) = (p("ca.pem"), p("ca.key"), p("ext.cnf"));
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-noenc", "-keyout", &key, "-out", &cert, "-subj",
        &subj, "-days", "30",
    ];
    if let Some(section) = ext {
        args.extend(["-CA", &ca, "-CAkey", &ca_key]);
        args.extend(["-config", &config, "-extensions", section]);
    }
    openssl_out(&args);
}

#[test]
fn user_managed_certificates_are_used_as_they_are() {
    let test = "user_managed_certificates_are_used_as_they_are";
    if !require(test, &requirements()) {
        return;
    }
    let _one = serial();
    let dir = TempDir::new("tls-user");
    user_certificates(dir.path());
    let certs = dir.join("certs");
    let before = snapshot(&certs);
    let net = ClientNet::new();
    let env = [("DOCKER_TLS_CERTDIR", s(&certs))];
    let mut docker = start_tls_docker(&dir, &net, "tls-user", &env);
    assert_eq!(
        snapshot(&certs),
        before,
        "user-managed certificates were changed"
    );
    assert!(!certs.join("ca").exists() && !certs.join("client").exists());
    let st = status(&dir);
    assert_eq!(st["environment"]["tls"]["mode"], "user", "{st}");
    let ran = tls_info(
        &net,
        &dir,
        &docker_client(),
        &dir.join("client"),
        "user-tls",
    );
    assert_eq!(
        ran.code(),
        Some(0),
        "{}\n{}",
        ran.describe(),
        docker.init.describe()
    );
    docker.stop();
}

#[test]
fn empty_certdir_gives_plain_tcp_on_2375_without_the_slowdown() {
    let test = "empty_certdir_gives_plain_tcp_on_2375_without_the_slowdown";
    if !require(test, &requirements()) {
        return;
    }
    let _one = serial();
    let dir = TempDir::new("tls-plain");
    let net = ClientNet::new();
    let mut docker = start_tls_docker(&dir, &net, "tls-plain", &[("DOCKER_TLS_CERTDIR", "")]);
    let host = format!("tcp://{SERVER_IP}:2375");
    let ran = client_run(
        &net,
        &dir,
        &docker_client(),
        &["-H", &host, "info", "--format", "{{.ServerVersion}}"],
        "plain-info",
    );
    assert_eq!(
        ran.code(),
        Some(0),
        "{}\n{}",
        ran.describe(),
        docker.init.describe()
    );
    let st = status(&dir);
    assert_eq!(st["environment"]["tls"]["mode"], "plain", "{st}");
    assert_eq!(
        st["environment"]["tls"]["host"], "tcp://0.0.0.0:2375",
        "{st}"
    );
    let log = docker.init.stderr();
    assert!(log.contains("\"--tls=false\""), "{log}");
    // dockerd warns about TCP without TLS, but does not sleep 15 s over it.
    assert!(
        !log.contains("Startup is intentionally being slowed down"),
        "{log}"
    );
    docker.stop();
}

// ---------------------------------------------------------------------------
// Failures, fast: the fake dockerd, no network.

/// Runs the init with the fake dockerd and `env`; returns its exit code and stderr,
/// and whether the fake dockerd ever started (its report exists).
fn boot_with(dir: &TempDir, env: &[(&str, &str)], extra_args: &[&str]) -> (i32, String, bool) {
    let mut text = TestConfig::default().text(dir);
    if !extra_args.is_empty() {
        let quoted: Vec<String> = extra_args.iter().map(|a| format!("{a:?}, ")).collect();
        text = text.replacen("args = [", &format!("args = [{}", quoted.join("")), 1);
    }
    let config = dir.config(&text);
    let mut launch = Launch::new(dir).args(&["--config", s(&config), "--", "/bin/true"]);
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    let mut init = launch.start();
    let code = init.wait_code(Duration::from_secs(60));
    let started = dir.join("dockerd.report").exists();
    (code, init.stderr(), started)
}

#[test]
fn failures_end_the_boot_before_dockerd_with_one_line() {
    if !require_root("failures_end_the_boot_before_dockerd_with_one_line")
        || !require("tls failures", &[("openssl", which("openssl").is_some())])
    {
        return;
    }
    let dir = TempDir::new("tls-fail");
    // A user-managed server certificate whose key is another one.
    let bad = dir.join("mismatch");
    user_certificates(&bad);
    let other = dir.join("other.pem");
    openssl_out(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        s(&other),
    ]);
    fs::copy(&other, bad.join("certs/server/key.pem")).unwrap();
    // A CA certificate without its key, server files incomplete.
    let incomplete = dir.join("incomplete");
    fs::create_dir_all(incomplete.join("ca")).unwrap();
    fs::copy(bad.join("ca.pem"), incomplete.join("ca/cert.pem")).unwrap();
    let fresh = dir.join("fresh");
    let bad_certs = bad.join("certs");
    // A PATH with `unshare` (which the test runs) and no openssl.
    let no_openssl = dir.join("bin");
    fs::create_dir_all(&no_openssl).unwrap();
    std::os::unix::fs::symlink("/usr/bin/unshare", no_openssl.join("unshare")).unwrap();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DOCKER_TLS_CERTDIR", s(&bad_certs))],
            "server/cert.pem does not belong to server/key.pem",
        ),
        (
            vec![("DOCKER_TLS_CERTDIR", s(&fresh)), ("PATH", s(&no_openssl))],
            "install openssl in the image",
        ),
        (
            vec![("DOCKER_TLS_CERTDIR", s(&incomplete))],
            "ca/cert.pem is there without ca/key.pem",
        ),
        (
            vec![
                ("DOCKER_TLS_CERTDIR", s(&fresh)),
                ("DOCKER_TLS_SAN", "DNS:a$b"),
            ],
            "DOCKER_TLS_SAN: entry `DNS:a$b`",
        ),
    ];
    for (i, (env, want)) in cases.into_iter().enumerate() {
        let case_dir = TempDir::new(&format!("tls-fail-{i}"));
        let (code, stderr, started) = boot_with(&case_dir, &env, &[]);
        assert_eq!(code, 1, "{env:?}\n{stderr}");
        assert!(!started, "dockerd was started: {env:?}\n{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{env:?}\n{stderr}");
        assert!(errors[0].contains(want), "{want:?} not in {:?}", errors[0]);
    }
    // Nothing was written for a failed fresh directory but what openssl never made.
    assert!(!fresh.join("server/cert.pem").exists());

    // A TCP host in dockerd's arguments: the contract stays out of the way.
    let case_dir = TempDir::new("tls-args");
    let certdir = case_dir.join("certs");
    let (code, stderr, started) = boot_with(
        &case_dir,
        &[("DOCKER_TLS_CERTDIR", s(&certdir))],
        &["-H", "tcp://127.0.0.1:2377"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(started);
    assert!(!certdir.exists(), "certificates were made: {stderr}");
    assert!(!stderr.contains("--host=tcp://0.0.0.0:2376"), "{stderr}");
}

#[test]
fn check_reports_the_tls_mode_and_missing_openssl() {
    let dir = TempDir::new("tls-check");
    let config = dir.config("[dockerd]\ndata_root_tmpfs = \"1g\"\n");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(INIT);
        cmd.args(["check", "--config", s(&config)]);
        cmd.env_remove("DOCKER_TLS_CERTDIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let certs = dir.join("certs");
    let (_, out) = run(&[]);
    assert!(
        out.contains("tls: off (DOCKER_TLS_CERTDIR is not set"),
        "{out}"
    );
    assert!(
        out.contains("storage: a tmpfs of size 1g will be mounted on data-root /var/lib/docker"),
        "{out}"
    );
    let (_, out) = run(&[("DOCKER_TLS_CERTDIR", s(&certs))]);
    assert!(
        out.contains("tls: tcp://0.0.0.0:2376 with --tlsverify"),
        "{out}"
    );
    assert!(!certs.exists(), "check changed something");
    let (code, out) = run(&[("DOCKER_TLS_CERTDIR", s(&certs)), ("PATH", "/nonexistent")]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("install openssl in the image"), "{out}");
}

#[test]
fn openssl_runner_reports_output_status_and_kills_at_the_deadline() {
    let sh = OsStr::new("/bin/sh");
    let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
    let done = command::run(
        sh,
        &args(&["-c", "echo out; echo err >&2; exit 3"]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(done.status, ExitStatus::Code(3));
    assert_eq!(done.stdout, "out\n");
    assert_eq!(done.stderr, "err\n");

    // A child that keeps its pipes open and never exits is killed at the deadline.
    let t0 = Instant::now();
    let slow = command::run(sh, &args(&["-c", "sleep 30"]), Duration::from_millis(300));
    assert!(
        matches!(slow, Err(command::Failure::Timeout(_))),
        "{slow:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20));

    // A child that closes its pipes but stays: also killed at the deadline.
    let closed = command::run(
        sh,
        &args(&["-c", "exec >/dev/null 2>&1; sleep 30"]),
        Duration::from_millis(300),
    );
    assert!(
        matches!(closed, Err(command::Failure::Timeout(_))),
        "{closed:?}"
    );

    // Output beyond the bound is read and dropped.
    let big = command::run(
        sh,
        &args(&["-c", "head -c 200000 /dev/zero"]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(big.stdout.len(), 64 * 1024);

    let missing = command::run(
        OsStr::new("/nonexistent/openssl"),
        &[],
        Duration::from_secs(1),
    );
    assert!(
        matches!(missing, Err(command::Failure::Spawn(_))),
        "{missing:?}"
    );
}
