//! The rtnetlink client (`dind_init::sys::netlink`) against real network stacks: Linux's, in a
//! network namespace of its own, and gVisor's netstack (runsc 0.0~20240729), which
//! reports no link kinds (SPEC §7, REFERENCE §4 row 16).
//!
//! Nothing here touches the machine's network. Each test re-runs this test binary on one
//! `#[ignore]`d inner test, under `unshare --net` or `runsc --network=none do`; the inner
//! test does the work only when `DIND_INIT_NETLINK_INNER` names it, and first checks that
//! it sees a fresh stack (only `lo`), so `cargo test -- --ignored` on the machine does
//! nothing.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use dind_init::sys::netlink::{self, Link, Route};

/// Names the inner test that may run (see the module doc).
const INNER: &str = "DIND_INIT_NETLINK_INNER";
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the inner test `name` of this binary under `wrapper` and checks that it passed.
fn run_inner(mut wrapper: Command, name: &str) {
    let dir = TempDir::new("netlink");
    wrapper
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, name);
    let ran = run_timeout(&mut wrapper, &dir, name, TIMEOUT);
    assert!(
        ran.code() == Some(0) && ran.stdout.contains("1 passed"),
        "{}",
        ran.describe()
    );
    eprintln!("{}", ran.stdout);
}

/// Whether this inner test was asked for; if not, says so and the test does nothing.
fn asked_for(name: &str) -> bool {
    if std::env::var(INNER).as_deref() == Ok(name) {
        return true;
    }
    eprintln!("{name}: runs only inside its outer test's sandbox; nothing done");
    false
}

fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The links' names, sorted: dump order is the stack's business (gVisor's varies).
fn names<'a>(links: impl IntoIterator<Item = &'a Link>) -> Vec<&'a str> {
    let mut names: Vec<&str> = links.into_iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names
}

fn find<'a>(links: &'a [Link], name: &str) -> &'a Link {
    links
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no link {name} in {links:?}"))
}

/// A fresh stack has only `lo`: anything else means this is not the sandbox the outer
/// test made, and nothing may be changed.
fn assert_fresh_stack() -> Vec<Link> {
    let links = netlink::links().unwrap();
    assert_eq!(
        names(&links),
        ["lo"],
        "not a fresh network stack: {links:?}"
    );
    links
}

#[test]
fn links_routes_and_deletion_in_a_private_network_namespace() {
    let test = "links_routes_and_deletion_in_a_private_network_namespace";
    if !require_root(test) || !require(test, &[("ip (iproute2)", which("ip").is_some())]) {
        return;
    }
    let mut unshare = Command::new("/usr/bin/unshare");
    unshare.arg("--net");
    run_inner(unshare, "inner_private_network_namespace");
}

#[test]
#[ignore = "run by links_routes_and_deletion_in_a_private_network_namespace under unshare --net"]
fn inner_private_network_namespace() {
    if !asked_for("inner_private_network_namespace") {
        return;
    }
    let lo = assert_fresh_stack().remove(0);
    assert_eq!((lo.kind, lo.up), (None, false), "lo of a new namespace");
    // Linux lets anyone join the link group (Docker 28+ does for each container).
    netlink::subscribe_link_updates().unwrap();
    assert_eq!(netlink::default_route_v4().unwrap(), None);

    // Link kinds, as Linux reports them.
    ip("link add docker0 type bridge");
    ip("link add br-0123456789ab type bridge");
    // No dummy links on every kernel (not on this one): a veth pair instead.
    ip("link add veth0 type veth peer name veth1");
    let links = netlink::links().unwrap();
    assert_eq!(
        names(&links),
        ["br-0123456789ab", "docker0", "lo", "veth0", "veth1"]
    );
    for (name, kind) in [
        ("lo", None),
        ("docker0", Some("bridge")),
        ("br-0123456789ab", Some("bridge")),
        ("veth0", Some("veth")),
        ("veth1", Some("veth")),
    ] {
        assert_eq!(find(&links, name).kind.as_deref(), kind, "{name}");
    }
    assert!(links.iter().all(|l| !l.up), "{links:?}");
    // A stack that reports kinds: nothing is stale. The same links without kinds (as
    // gVisor shows them): docker0 and the user bridge are.
    assert!(netlink::stale_docker_links(&links).is_empty());
    let kindless: Vec<Link> = links
        .iter()
        .map(|l| Link {
            kind: None,
            ..l.clone()
        })
        .collect();
    assert_eq!(
        names(netlink::stale_docker_links(&kindless)),
        ["br-0123456789ab", "docker0"]
    );

    // Deletion, acked; a second deletion is the kernel's ENODEV.
    let docker0 = find(&links, "docker0").index;
    for name in ["docker0", "br-0123456789ab"] {
        netlink::delete_link(find(&links, name).index).unwrap();
    }
    assert_eq!(names(&netlink::links().unwrap()), ["lo", "veth0", "veth1"]);
    let err = netlink::delete_link(docker0).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(nix::errno::Errno::ENODEV as i32),
        "{err}"
    );

    // The default route and its device's address.
    ip("link set veth1 up");
    ip("link set veth0 up");
    ip("addr add 10.99.0.2/24 dev veth0");
    assert!(find(&netlink::links().unwrap(), "veth0").up);
    assert_eq!(
        netlink::default_route_v4().unwrap(),
        None,
        "a connected route is not a default route"
    );
    ip("route add default via 10.99.0.1");
    let uplink = Some(Route {
        dev: "veth0".to_string(),
        addr: Ipv4Addr::new(10, 99, 0, 2),
    });
    assert_eq!(netlink::default_route_v4().unwrap(), uplink);
    // A secondary address, a default route of another table, and one with a higher
    // metric on another device change nothing.
    ip("addr add 10.99.0.3/24 dev veth0");
    ip("route add default via 10.99.0.1 dev veth0 table 100");
    ip("link add veth2 type veth peer name veth3");
    ip("link set veth3 up");
    ip("link set veth2 up");
    ip("addr add 10.98.0.2/24 dev veth2");
    ip("route add default via 10.98.0.1 metric 200");
    assert_eq!(netlink::default_route_v4().unwrap(), uplink);
    // Without the first default route, the other one is the uplink.
    ip("route del default via 10.99.0.1 dev veth0");
    assert_eq!(
        netlink::default_route_v4().unwrap(),
        Some(Route {
            dev: "veth2".to_string(),
            addr: Ipv4Addr::new(10, 98, 0, 2),
        })
    );
    // Deleting its device takes the route with it.
    let links = netlink::links().unwrap();
    netlink::delete_link(find(&links, "veth2").index).unwrap();
    assert_eq!(netlink::default_route_v4().unwrap(), None);
}

#[test]
fn links_and_deletion_in_gvisor() {
    let test = "links_and_deletion_in_gvisor";
    let requirements = [
        ("root", nix::unistd::geteuid().is_root()),
        (
            "runsc 0.0~20240729 at /usr/bin/runsc",
            Path::new(RUNSC).exists(),
        ),
        ("ip (iproute2)", which("ip").is_some()),
    ];
    if !require(test, &requirements) {
        return;
    }
    // runsc do: the sandbox's root is a throwaway overlay of the machine's; with
    // --network=none its netstack has only lo.
    let mut runsc = Command::new(RUNSC);
    runsc.args(["--network=none", "--net-raw", "do"]);
    run_inner(runsc, "inner_gvisor");
}

#[test]
#[ignore = "run by links_and_deletion_in_gvisor under runsc do"]
fn inner_gvisor() {
    if !asked_for("inner_gvisor") {
        return;
    }
    assert_fresh_stack();
    // This runsc's netlink has no multicast groups: Docker 28+'s link subscription
    // is refused, as `dind-init check` predicts.
    let err = netlink::subscribe_link_updates().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    // What dockerd leaves behind: its bridges, docker0 the uplink of the nested
    // containers' default route.
    ip("link add docker0 type bridge");
    ip("link add br-0123456789ab type bridge");
    ip("link set docker0 up");
    ip("addr add 172.17.0.1/16 dev docker0");
    ip("route add default via 172.17.0.2 dev docker0");
    let links = netlink::links().unwrap();
    assert_eq!(names(&links), ["br-0123456789ab", "docker0", "lo"]);
    // gVisor before release-20260810.0 reports no link kinds: the bridges are stale.
    assert!(links.iter().all(|l| l.kind.is_none()), "{links:?}");
    assert!(find(&links, "docker0").up);
    assert_eq!(
        names(netlink::stale_docker_links(&links)),
        ["br-0123456789ab", "docker0"]
    );
    assert_eq!(
        netlink::default_route_v4().unwrap(),
        Some(Route {
            dev: "docker0".to_string(),
            addr: Ipv4Addr::new(172, 17, 0, 1),
        })
    );
    for name in ["docker0", "br-0123456789ab"] {
        netlink::delete_link(find(&links, name).index).unwrap();
    }
    assert_eq!(names(&netlink::links().unwrap()), ["lo"]);
    assert_eq!(netlink::default_route_v4().unwrap(), None);
}
