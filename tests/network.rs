//! Nested networking in gVisor (SPEC §7a), with the real dockerd (Debian's docker.io
//! 20.10) inside runsc 0.0~20240729 and dind-init as the sandbox's PID 1; a busybox
//! image with `httpd` and `wget` is `docker import`ed by the nested dockerd.
//!
//! - `gvisor_names_bridges_published_port_and_restart` (`runsc --network=none --net-raw
//!   do`): on a user network a container reaches another by name, from a second user
//!   network neither the name resolves nor the address answers; container-to-container
//!   TCP works on the default bridge and on a user network; `-p 8080:80` answers on the
//!   sandbox's 127.0.0.1; after SIGKILL of dockerd it is ready again, a new user network
//!   works, and the rules were added once (checked with `-C` at the restart). `status` and
//!   `check` show the mode, the rules, legacy iptables on dockerd's PATH and no uplink.
//! - `gvisor_egress_from_nested_containers_and_docker_build`: the sandbox gets a network
//!   of its own, built as REFERENCE.md section 4 describes: two network namespaces of the
//!   test joined by a veth pair (10.77.0.1 with an HTTP server, 10.77.0.2), and `runsc
//!   --network=sandbox --net-raw do` started in the second, in a private mount namespace
//!   whose /proc/sys/net is an empty tmpfs (runsc 0.0~20240729 refuses to start with a
//!   network on kernels 6.11 and later: its root-netns test looks for
//!   /proc/sys/net/core/rmem_default, gVisor issue 10704). A nested container on the
//!   default bridge and one on a user network download a file from the server intact;
//!   containers still reach each other with the SNAT rules in place; `docker build` (the
//!   classic builder and BuildKit) runs a RUN step that downloads from the server.
//! - `forced_gvisor_mode_on_the_host_with_a_fake_dockerd` (fast, no runsc):
//!   `[environment] gvisor = "yes"` on this machine, in private namespaces: dockerd's PATH
//!   starts with the links and the FORWARD rules are in place; with no legacy binary in
//!   the image there is exactly one warning and nothing else; `network.mode = "off"` does
//!   nothing.
//!
//! Nothing touches the machine's own network: the namespaces are the test's own (the
//! veth pair is created inside the second namespace with its peer moved straight into
//! the first), `runsc do` adds its veth pair, its namespace and its MASQUERADE rule inside
//! the second namespace and removes them at exit, its `ip netns add` writes to a tmpfs on
//! /run of the private mount namespace, the addresses are private test ranges, and nested
//! dockerd's DNS points at 10.77.0.1, inside the test's namespaces. The server is killed
//! by pid; when the last process of a namespace exits, the namespace and its links go.
//! The test checks afterwards that the machine's links are the same as before.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// One sandbox with a dockerd at a time: on a 2-core machine two of them at once make
/// every step twice as slow and the timeouts meaningless.
static SANDBOX: Mutex<()> = Mutex::new(());

const LONG: Duration = Duration::from_secs(600);

fn requirements() -> Vec<(&'static str, bool)> {
    let mut req = gvisor_docker_requirements();
    req.extend([
        ("nsenter", which("nsenter").is_some()),
        ("md5sum", which("md5sum").is_some()),
        (
            "iptables-legacy (Debian's iptables)",
            which("iptables-legacy").is_some() || Path::new("/usr/sbin/iptables-legacy").exists(),
        ),
    ]);
    req
}

/// `run_timeout`'s stdout was read at the moment runsc exited; the sandbox's last lines
/// may reach the file a moment later. Re-reads it until `marker` is there (or 10 s).
fn settled_stdout(dir: &TempDir, name: &str, ran: &Ran, marker: &str) -> String {
    let path = dir.join(&format!("{name}.stdout"));
    let mut out = ran.stdout.clone();
    wait_until(Duration::from_secs(10), || {
        out = fs::read_to_string(&path).unwrap_or_default();
        out.contains(marker)
    });
    out
}

/// The status JSON printed after `prefix` on a line of `out`.
fn status_line(out: &str, prefix: &str) -> serde_json::Value {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in\n{out}"));
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn rules(status: &serde_json::Value) -> Vec<String> {
    status["network"]["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no network.rules in {status}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// The shell helpers every in-sandbox script starts with.
fn script_prelude() -> String {
    format!(
        r#"set -u
INIT={init}
D={docker}
S=/run/dind-init/init.sock
PAGE='{page}'
export DOCKER_HOST=unix:///var/run/docker.sock
fail() {{ echo "FAIL: $*"; $INIT status; exit 1; }}
ok() {{ echo "ok: $*"; }}
# `wget -T` of this busybox segfaults inside nested containers in gVisor: use timeout(1).
fetch() {{ net=$1; shift; $D run --rm --network "$net" net:1 timeout "$@"; }}
$INIT probe --socket $S --wait 120s || fail "dockerd never became ready"
"#,
        init = INIT,
        docker = docker_client().display(),
        page = NESTED_PAGE,
    )
}

#[test]
fn gvisor_names_bridges_published_port_and_restart() {
    if !require(
        "gvisor_names_bridges_published_port_and_restart",
        &requirements(),
    ) {
        return;
    }
    let _one = SANDBOX.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("net-names");
    let tar = busybox_net_rootfs_tar(&dir);
    let config = dir.config(
        "[dockerd]\nbackoff_initial = \"50ms\"\n[readiness]\ninterval = \"0s\"\n[log]\njournald = \"off\"\n",
    );
    let script = format!(
        r#"{prelude}
$D import {tar} net:1 >/dev/null || fail "docker import"
printf 'STATUS1 %s\n' "$($INIT status --json)"

# User networks: by name on the same one; neither name nor address from another one.
$D network create n1 >/dev/null && $D network create n2 >/dev/null || fail "network create"
$D run -d --name srv --network n1 net:1 httpd -f -p 80 -h /www >/dev/null || fail "run srv"
out=$(fetch n1 30 wget -q -O - http://srv/index.html 2>&1)
[ "$out" = "$PAGE" ] || fail "n1 -> srv by name: $out"
ok "n1 reaches srv by name"
out=$(fetch n2 30 wget -q -O - http://srv/index.html 2>&1) && fail "n2 -> srv by name worked: $out"
echo "$out" | grep -q "bad address 'srv'" || fail "n2 -> srv by name: $out"
ok "n2 cannot resolve srv"
ip1=$($D inspect -f '{{{{range .NetworkSettings.Networks}}}}{{{{.IPAddress}}}}{{{{end}}}}' srv)
out=$(fetch n2 3 wget -q -O - http://$ip1/index.html 2>&1) && fail "n2 -> $ip1 worked: $out"
ok "n2 cannot reach srv at $ip1"

# The default bridge: TCP between containers (by address: it has no names), and a
# published port on the sandbox's loopback (docker-proxy).
$D run -d --name dsrv -p 8080:80 net:1 httpd -f -p 80 -h /www >/dev/null || fail "run dsrv"
ip0=$($D inspect -f '{{{{.NetworkSettings.IPAddress}}}}' dsrv)
out=$(fetch bridge 30 wget -q -O - http://$ip0/index.html 2>&1)
[ "$out" = "$PAGE" ] || fail "bridge -> $ip0: $out"
ok "default bridge TCP to $ip0"
n=0
until out=$(busybox wget -q -O - http://127.0.0.1:8080/index.html 2>&1) && [ "$out" = "$PAGE" ]; do
  n=$((n+1)); [ $n -gt 100 ] && fail "127.0.0.1:8080: $out"; sleep 0.1
done
ok "published port 8080 answers on 127.0.0.1"

$INIT check > /tmp/check.txt; rc=$?
echo "CHECK rc=$rc"; sed 's/^/CHECK /' /tmp/check.txt

# SIGKILL dockerd: the init restarts it (gVisor restart cleanup, rules checked again).
pid=$($INIT status --json | sed 's/.*"dockerd":{{"pid":\([0-9]*\).*/\1/')
kill -9 "$pid" || fail "kill dockerd $pid"
n=0
until $INIT status --json | grep -q '"restarts":1,'; do
  n=$((n+1)); [ $n -gt 600 ] && fail "dockerd was not restarted"; sleep 0.05
done
$INIT probe --socket $S --wait 120s || fail "dockerd not ready after the restart"
ok "dockerd ready again after SIGKILL"
$D network create n3 >/dev/null || fail "network create n3 after the restart"
$D run -d --name srv3 --network n3 net:1 httpd -f -p 80 -h /www >/dev/null || fail "run srv3"
out=$(fetch n3 30 wget -q -O - http://srv3/index.html 2>&1)
[ "$out" = "$PAGE" ] || fail "n3 -> srv3 by name after the restart: $out"
ok "a new user network works after the restart, names included"
printf 'STATUS2 %s\n' "$($INIT status --json)"
echo "ALL OK"
"#,
        prelude = script_prelude(),
        tar = tar.display(),
    );
    let script_path = dir.join("names.sh");
    fs::write(&script_path, script).unwrap();
    let mut cmd = Command::new(RUNSC);
    cmd.args(["--network=none", "--net-raw", "do", INIT, "--config"])
        .arg(&config)
        .args(["--", "/bin/sh"])
        .arg(&script_path);
    let ran = run_timeout(&mut cmd, &dir, "runsc", LONG);
    let out = settled_stdout(&dir, "runsc", &ran, "ALL OK");
    assert_eq!(ran.code(), Some(0), "{out}\n{}", ran.describe());
    assert!(out.contains("ALL OK"), "{out}\n{}", ran.describe());

    let s1 = status_line(&out, "STATUS1 ");
    assert_eq!(s1["network"]["mode"], "gvisor", "{s1}");
    assert_eq!(s1["network"]["legacy_iptables"], true, "{s1}");
    assert_eq!(s1["network"]["uplink"], serde_json::Value::Null, "{s1}");
    assert_eq!(s1["network"]["warnings"], serde_json::json!([]), "{s1}");
    assert_eq!(
        rules(&s1),
        [
            "FORWARD -i docker0 -o docker0 -j DROP",
            "FORWARD -i br-+ -o br-+ -j DROP"
        ],
        "{s1}"
    );
    let s2 = status_line(&out, "STATUS2 ");
    assert_eq!(s2["dockerd"]["restarts"], 1, "{s2}");
    assert_eq!(rules(&s2), rules(&s1), "{s2}");
    assert_eq!(s2["network"]["warnings"], serde_json::json!([]), "{s2}");

    assert!(out.contains("CHECK rc=0"), "{out}");
    for line in [
        "CHECK network: gvisor (set up by dind-init before each dockerd start)",
        "CHECK   legacy iptables: /run/dind-init/iptables-legacy (links to ",
        "CHECK   uplink:          none (no IPv4 default route)",
        "CHECK     FORWARD -i docker0 -o docker0 -j DROP (in place)",
        "CHECK     FORWARD -i br-+ -o br-+ -j DROP (in place)",
    ] {
        assert!(out.contains(line), "no {line:?} in\n{out}");
    }

    // Each rule was added once; at the restart `-C` found it and nothing was added again.
    let log = &ran.stderr;
    assert_eq!(
        log.matches("added iptables rule (legacy)").count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("nested networking: dockerd's PATH starts with legacy iptables")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("user-defined networks of the previous dockerd are lost"),
        "{log}"
    );
}

/// Deterministic bytes that do not compress (an LCG), so a cut or mangled transfer shows.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect()
}

/// The names of the links of the test's own network namespace (the machine's).
fn machine_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect();
    names.sort();
    names
}

/// A process of the test that is killed and reaped on drop, whatever happens.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gvisor_egress_from_nested_containers_and_docker_build() {
    if !require(
        "gvisor_egress_from_nested_containers_and_docker_build",
        &requirements(),
    ) {
        return;
    }
    let _one = SANDBOX.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("net-egress");
    let tar = busybox_net_rootfs_tar(&dir);
    let www = dir.join("www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("file"), payload(4 << 20)).unwrap();
    let md5 = Command::new("md5sum")
        .arg(www.join("file"))
        .output()
        .unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let links_before = machine_links();
    let run_netns_before = Path::new("/run/netns").exists();

    // Namespace A: the server, alone in a new network namespace (10.77.0.1 comes below).
    let busybox = which("busybox").unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    let server = Killed(
        Command::new("unshare")
            .arg("--net")
            .arg(&busybox)
            .args(["httpd", "-f", "-p", "8000", "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let server_pid = server.0.id();
    // unshare execs busybox once the namespace exists.
    assert!(
        wait_until(Duration::from_secs(10), || {
            fs::read_link(format!("/proc/{server_pid}/exe")).is_ok_and(|e| e == busybox)
        }),
        "the server did not start"
    );

    // Namespace B: the link to A, a default route through it, then runsc with a network.
    let config = dir.config(
        "[dockerd]\nargs = [\"--dns=10.77.0.1\"]\n[readiness]\ninterval = \"0s\"\n[log]\njournald = \"off\"\n",
    );
    let outer = dir.join("netns-b.sh");
    fs::write(
        &outer,
        r#"set -eu
A=$1; shift
ip link set lo up
# Both ends are created here, in B, and the peer goes straight into A: nothing in the
# machine's namespace.
ip link add vb type veth peer name va netns "$A"
ip addr add 10.77.0.2/24 dev vb
ip link set vb up
nsenter --net=/proc/$A/ns/net sh -c 'ip link set lo up && ip addr add 10.77.0.1/24 dev va && ip link set va up'
ip route add default via 10.77.0.1
# runsc do forwards from its own veth pair through B (this is B's ip_forward).
sysctl -qw net.ipv4.ip_forward=1
# Private mounts (unshare --mount): `ip netns add` writes under /run, and runsc's
# root-netns test finds no /proc/sys/net/core/rmem_default. runsc do then writes
# ip_forward into the dummy file.
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /proc/sys/net
mkdir -p /proc/sys/net/ipv4
echo 1 > /proc/sys/net/ipv4/ip_forward
exec runsc --network=sandbox --net-raw do "$@"
"#,
    )
    .unwrap();
    let script = format!(
        r#"{prelude}
$D import {tar} net:1 >/dev/null || fail "docker import"
printf 'STATUS %s\n' "$($INIT status --json)"
sum() {{ echo "$1" | sed 's/ .*//'; }}

out=$(fetch bridge 60 sh -c 'wget -q -O - http://10.77.0.1:8000/file | md5sum' 2>&1)
[ "$(sum "$out")" = {md5} ] || fail "default bridge egress: $out"
ok "default bridge: 4 MiB from 10.77.0.1 intact"
$D network create eg >/dev/null || fail "network create"
out=$(fetch eg 60 sh -c 'wget -q -O - http://10.77.0.1:8000/file | md5sum' 2>&1)
[ "$(sum "$out")" = {md5} ] || fail "user network egress: $out"
ok "user network: 4 MiB from 10.77.0.1 intact"

# With the SNAT rules in place, containers of one bridge still talk TCP (the FORWARD
# DROP rules stop gVisor's bridge from routing their frames back onto it).
$D run -d --name dsrv net:1 httpd -f -p 80 -h /www >/dev/null || fail "run dsrv"
ip0=$($D inspect -f '{{{{.NetworkSettings.IPAddress}}}}' dsrv)
out=$(fetch bridge 30 wget -q -O - http://$ip0/index.html 2>&1)
[ "$out" = "$PAGE" ] || fail "bridge -> $ip0 with SNAT rules: $out"
$D run -d --name usrv --network eg net:1 httpd -f -p 80 -h /www >/dev/null || fail "run usrv"
out=$(fetch eg 30 wget -q -O - http://usrv/index.html 2>&1)
[ "$out" = "$PAGE" ] || fail "eg -> usrv with SNAT rules: $out"
ok "container to container TCP with the SNAT rules in place"

mkdir -p /tmp/ctx
printf 'FROM net:1\nRUN timeout 60 wget -q -O /got http://10.77.0.1:8000/file && md5sum /got > /got.md5\n' > /tmp/ctx/Dockerfile
for kit in 0 1; do
  DOCKER_BUILDKIT=$kit $D build -q -t built:$kit /tmp/ctx || fail "docker build (DOCKER_BUILDKIT=$kit)"
  out=$($D run --rm --network none built:$kit cat /got.md5 2>&1)
  [ "$(sum "$out")" = {md5} ] || fail "the RUN step's download (DOCKER_BUILDKIT=$kit): $out"
  ok "docker build with DOCKER_BUILDKIT=$kit: the RUN step downloaded the file"
done
echo "ALL OK"
"#,
        prelude = script_prelude(),
        tar = tar.display(),
    );
    let script_path = dir.join("egress.sh");
    fs::write(&script_path, script).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "/bin/sh"])
        .arg(&outer)
        .arg(server_pid.to_string())
        .arg(INIT)
        .arg("--config")
        .arg(&config)
        .args(["--", "/bin/sh"])
        .arg(&script_path);
    let ran = run_timeout(&mut cmd, &dir, "runsc", LONG);
    let out = settled_stdout(&dir, "runsc", &ran, "ALL OK");
    drop(server);

    assert_eq!(ran.code(), Some(0), "{out}\n{}", ran.describe());
    assert!(out.contains("ALL OK"), "{out}\n{}", ran.describe());
    let s = status_line(&out, "STATUS ");
    let uplink = s["network"]["uplink"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // runsc do names its veth ve-<container id> and gives the sandbox 192.168.10.2.
    assert!(
        uplink.starts_with("ve-runsc-") && uplink.ends_with(" 192.168.10.2"),
        "{s}"
    );
    let dev = uplink.split(' ').next().unwrap();
    assert_eq!(
        rules(&s),
        [
            "FORWARD -i docker0 -o docker0 -j DROP".to_owned(),
            "FORWARD -i br-+ -o br-+ -j DROP".to_owned(),
            format!("nat POSTROUTING -o {dev} -p tcp -j SNAT --to-source 192.168.10.2"),
            format!("nat POSTROUTING -o {dev} -p udp -j SNAT --to-source 192.168.10.2"),
        ],
        "{s}"
    );
    assert_eq!(s["network"]["warnings"], serde_json::json!([]), "{s}");

    // Nothing of the test is left in the machine's network namespace or its /run.
    assert_eq!(machine_links(), links_before);
    assert_eq!(Path::new("/run/netns").exists(), run_netns_before);
}

/// The host-side cases, fast and without runsc: `[environment] gvisor = "yes"` makes the
/// init take its gVisor path on this machine, with the fake dockerd, as PID 1 of private
/// pid, mount and network namespaces with a tmpfs on /run (so the links, the xtables lock
/// and the rules stay in the test's namespaces; the host kernel's legacy iptables runs in
/// the test's own network namespace). Returns the status JSON COMMAND saw, the rules
/// `iptables-legacy -S` listed, dockerd's environment, and the init's log.
fn forced_gvisor_run(
    name: &str,
    network: &str,
    inner: &str,
) -> (serde_json::Value, String, serde_json::Value, String) {
    let dir = TempDir::new(name);
    let tc = TestConfig {
        readiness: "interval = \"0s\"".to_owned(),
        other: format!(
            "[environment]\ngvisor = \"yes\"\n[cgroup]\nmode = \"off\"\n[network]\nmode = \"{network}\"\n[log]\njournald = \"off\"\n"
        ),
        ..TestConfig::default()
    };
    let config = tc.write(&dir);
    let d = dir.path().display();
    // COMMAND runs once dockerd is ready; what it writes is the result.
    let command = format!(
        "{INIT} status --socket {d}/init.sock --json > {d}/status.json; \
         (iptables-legacy -S 2>&1 || true) > {d}/rules.txt"
    );
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config), "--", "/bin/sh", "-c", &command])
        .unshare_args(&["--net"])
        .start_wrapped(
            "",
            &format!("ip link set lo up\nmount -t tmpfs tmpfs /run\n{inner}"),
        );
    let code = init.wait_code(Duration::from_secs(60));
    assert_eq!(code, 0, "{}", init.describe());
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("status.json")).unwrap()).unwrap();
    let rules = fs::read_to_string(dir.join("rules.txt")).unwrap();
    let report = report(&dir.join("dockerd.report"));
    let start = events(&report, "start")
        .first()
        .map(|v| v["env"].clone())
        .unwrap_or_else(|| panic!("no start event\n{}", init.describe()));
    (status, rules, start, init.stderr())
}

#[test]
fn forced_gvisor_mode_on_the_host_with_a_fake_dockerd() {
    let iptables_legacy = which("iptables-legacy")
        .or_else(|| Some(PathBuf::from("/usr/sbin/iptables-legacy")).filter(|p| p.exists()));
    if !require(
        "forced_gvisor_mode_on_the_host_with_a_fake_dockerd",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
            ("ip", which("ip").is_some()),
            ("iptables-legacy", iptables_legacy.is_some()),
        ],
    ) {
        return;
    }

    // Legacy iptables in the image: dockerd's PATH starts with the links, the two FORWARD
    // rules are in place (no default route in the new namespace, so no SNAT rules).
    let (status, listed, env, log) = forced_gvisor_run("net-forced", "auto", "");
    let net = &status["network"];
    assert_eq!(net["mode"], "gvisor", "{status}");
    assert_eq!(net["legacy_iptables"], true, "{status}");
    assert_eq!(net["uplink"], serde_json::Value::Null, "{status}");
    assert_eq!(net["warnings"], serde_json::json!([]), "{status}");
    assert!(
        env["PATH"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/run/dind-init/iptables-legacy:"),
        "{env}"
    );
    for rule in [
        "-A FORWARD -i docker0 -o docker0 -j DROP",
        "-A FORWARD -i br-+ -o br-+ -j DROP",
    ] {
        assert_eq!(listed.matches(rule).count(), 1, "{listed}\n{log}");
    }
    assert_eq!(rules(&status).len(), 2, "{status}");

    // No legacy binary in the image (hidden by /dev/null binds in the private mount
    // namespace): one warning, nothing on dockerd's PATH, no rules.
    let hide = "for f in iptables-legacy iptables-legacy-save iptables-legacy-restore \
                ip6tables-legacy ip6tables-legacy-save ip6tables-legacy-restore; do \
                for d in /usr/local/sbin /usr/sbin /sbin /usr/local/bin /usr/bin /bin; do \
                if [ -e $d/$f ]; then mount --bind /dev/null $d/$f; fi; done; done";
    let (status, listed, env, log) = forced_gvisor_run("net-nolegacy", "auto", hide);
    let net = &status["network"];
    assert_eq!(net["legacy_iptables"], false, "{status}");
    let warnings = net["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{status}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("no iptables-legacy in the image: container names will not resolve"),
        "{status}"
    );
    assert!(
        !env["PATH"]
            .as_str()
            .unwrap_or_default()
            .contains("iptables-legacy"),
        "{env}"
    );
    assert_eq!(net["rules"], serde_json::json!([]), "{status}");
    assert_eq!(
        log.matches("no iptables-legacy in the image").count(),
        1,
        "{log}"
    );
    assert!(!listed.contains("-A FORWARD"), "{listed}");

    // network.mode = "off": nothing at all.
    let (status, listed, env, _) = forced_gvisor_run("net-off", "off", "");
    assert_eq!(status["network"]["mode"], "off", "{status}");
    assert_eq!(
        status["network"]["rules"],
        serde_json::json!([]),
        "{status}"
    );
    assert!(
        !env["PATH"]
            .as_str()
            .unwrap_or_default()
            .contains("iptables-legacy"),
        "{env}"
    );
    assert!(!listed.contains("-A FORWARD"), "{listed}");
}

/// SPEC §7a / issue "architecture" item 3: the nested-network setup runs iptables as
/// helper processes the loop watches, so a hanging one blocks nothing: orphans are
/// reaped and `status` answered while it hangs, readiness waits for the setup, and the
/// helper is killed at its time limit (5 s) with a warning, after which dockerd is ready.
#[test]
fn a_hanging_iptables_blocks_nothing() {
    if !require(
        "a_hanging_iptables_blocks_nothing",
        &[
            ("root", nix::unistd::geteuid().is_root()),
            ("/usr/bin/unshare", Path::new("/usr/bin/unshare").exists()),
            ("ip", which("ip").is_some()),
        ],
    ) {
        return;
    }
    let dir = TempDir::new("net-hang");
    let d = dir.path().display();
    // The image's iptables-legacy hangs (in the init's private mount namespace only).
    let hang = dir.join("hang-iptables");
    fs::write(
        &hang,
        format!("#!/bin/sh\necho $$ >> {d}/hang.pids\nexec sleep 60\n"),
    )
    .unwrap();
    fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tc = TestConfig {
        // Ready at once, and 300 orphans that become zombies re-parented to the init.
        fake_args: vec![
            "--fake-ready-after-ms=0".into(),
            "--fake-orphans=300".into(),
        ],
        readiness: "interval = \"0s\"".to_owned(),
        other:
            "[environment]\ngvisor = \"yes\"\n[cgroup]\nmode = \"off\"\n[log]\njournald = \"off\"\n"
                .to_owned(),
        ..TestConfig::default()
    };
    let config = tc.write(&dir);
    let mut init = Launch::new(&dir)
        .args(&["--config", s(&config)])
        .unshare_args(&["--net"])
        .start_wrapped(
            "",
            &format!(
                "ip link set lo up\nmount -t tmpfs tmpfs /run\n\
                 mount --bind {} /usr/sbin/iptables-legacy",
                s(&hang)
            ),
        );
    // The helper hangs...
    let pids = dir.join("hang.pids");
    assert!(
        wait_until(Duration::from_secs(30), || pids.exists()),
        "iptables never ran\n{}",
        init.describe()
    );
    let helper: i32 = fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    // ...while dockerd made its orphans: every zombie is reaped, and status answers.
    assert!(
        wait_until(Duration::from_secs(30), || events(
            &report(&dir.join("dockerd.report")),
            "orphans"
        )
        .len()
            == 1),
        "{}",
        init.describe()
    );
    let zombies = zombies_under_settled(init.init_pid());
    let v = status(&dir);
    let still_hanging = Path::new(&format!("/proc/{helper}")).exists();
    assert!(still_hanging, "the check must happen while iptables hangs");
    assert!(
        zombies.is_empty(),
        "zombies while iptables hangs: {zombies:?}"
    );
    // dockerd answers /_ping, but readiness waits for the network setup.
    assert_eq!(v["state"], "starting", "{v}");
    // At its time limit the helper is killed; the rest is skipped; then ready.
    let v = wait_status(&dir, Duration::from_secs(30), |v| v["state"] == "ready");
    let warnings = v["network"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("did not finish within 5 s and was killed"),
        "{v}"
    );
    assert_eq!(warnings.len(), 2, "{v}");
    // Killed and reaped like any child.
    assert!(zombies_under_settled(init.init_pid()).is_empty());
    init.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        init.wait_code(Duration::from_secs(30)),
        0,
        "{}",
        init.describe()
    );
}
