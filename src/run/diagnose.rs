//! Start-up failure diagnosis (SPEC §7): when dockerd exits during start-up, its
//! last stderr lines are matched against the failure signatures known from Docker
//! 20.10 (Debian bookworm ships 20.10.24) and newer, in sandboxes such as gVisor
//! and runc containers, and the status reason names the cause and the fix in one
//! line: which flag, capability or host setting is missing.
//!
//! It is a pure function of the lines; it does not read logs, probe the system or
//! know which runtime it is in, so a reason names the fix for each runtime where
//! they differ. It does not decide whether to restart either: the supervisor does.
//!
//! How a line is read:
//! - Newest first: the line dockerd printed last is nearest to why it exited, and
//!   the first line with a signature wins. Within one line the table order decides,
//!   most specific first, because dockerd wraps errors: `Error initializing network
//!   controller: ... failed to create NAT chain DOCKER: iptables failed: ... Failed
//!   to initialize nft: Protocol not supported` is an nftables problem, not a
//!   generic network one.
//! - Lines logged at info, warning, debug or trace level are skipped: dockerd and
//!   containerd warn about many things that do not stop them (e.g. `Your kernel does
//!   not support cgroup blkio weight` on every start in gVisor), and a warning that
//!   happens to be the newest match must not be named as the cause.
//! - Matching is on case-sensitive substrings, so the logrus prefix
//!   (`time="..." level=error msg="..."`), the JSON format and the plain
//!   `failed to start daemon: ...` line that 20.10 prints last all match alike.
//!   logrus escapes quotes inside `msg="..."`, so `\"` is read as `"` first.

use std::borrow::Cow;

/// Why dockerd failed to start, for the status reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// A short id of the cause, e.g. `devices-cgroup`.
    pub cause: &'static str,
    /// One line: what is wrong, in dockerd's words, and the fix.
    pub reason: String,
}

/// Matches dockerd's last stderr lines (oldest first, as `Tail::stderr_lines`
/// returns them) against the known failure signatures; `None` when none matches.
pub fn diagnose(stderr_tail: &[&str]) -> Option<Diagnosis> {
    stderr_tail.iter().rev().find_map(|line| {
        match_line(line)
            .and_then(|i| SIGNATURES.get(i))
            .map(|sig| Diagnosis {
                cause: sig.cause,
                reason: sig.reason.to_string(),
            })
    })
}

/// The index in [`SIGNATURES`] of the first signature this line shows.
fn match_line(line: &str) -> Option<usize> {
    if is_informational(line) {
        return None;
    }
    let line = unescape_quotes(line);
    SIGNATURES.iter().position(|sig| sig.matches(&line))
}

/// True for log lines below error level (logrus text, logrus TTY and JSON formats,
/// which containerd shares); plain lines such as `failed to start daemon: ...`
/// carry no level and are never skipped.
fn is_informational(line: &str) -> bool {
    const QUIET: [&str; 5] = ["info", "warning", "warn", "debug", "trace"];
    if let Some((_, rest)) = line.split_once("level=") {
        let level = rest.split([' ', '\t']).next().unwrap_or_default();
        return QUIET.contains(&level.trim_matches('"'));
    }
    if let Some((_, rest)) = line.split_once("\"level\":\"") {
        let level = rest.split('"').next().unwrap_or_default();
        return QUIET.contains(&level);
    }
    // logrus on a terminal: `WARN[0000] ...`.
    ["INFO[", "WARN[", "DEBU[", "TRAC["]
        .iter()
        .any(|prefix| line.starts_with(prefix))
}

fn unescape_quotes(line: &str) -> Cow<'_, str> {
    if line.contains("\\\"") {
        Cow::Owned(line.replace("\\\"", "\""))
    } else {
        Cow::Borrowed(line)
    }
}

/// One known failure: the line must contain every string of `all` and, unless
/// `any` is empty, at least one of `any`.
struct Signature {
    cause: &'static str,
    all: &'static [&'static str],
    any: &'static [&'static str],
    reason: &'static str,
}

impl Signature {
    fn matches(&self, line: &str) -> bool {
        self.all.iter().all(|s| line.contains(s))
            && (self.any.is_empty() || self.any.iter().any(|s| line.contains(s)))
    }
}

/// The known signatures, most specific first (see the module docs). Sources are
/// moby v20.10.24 unless said otherwise; REFERENCE.md §2 lists where each was seen.
const SIGNATURES: &[Signature] = &[
    // daemon/daemon.go (NewDaemon): errors.New("Devices cgroup isn't mounted"),
    // cgroup v1 only. dind-init mounts the real hierarchy when it can; when this
    // still happens, runsc before release-20230801.0 has no devices controller
    // (REFERENCE §0), or a runc container lacks the rights to mount it.
    Signature {
        cause: "devices-cgroup",
        all: &["Devices cgroup isn't mounted"],
        any: &[],
        reason: "dockerd: the devices cgroup is not mounted (Devices cgroup isn't mounted); in gVisor this runsc is too old to mount it: use runsc release-20230801 or later, e.g. Debian's bookworm-backports build; under runc, run the container with --privileged",
    },
    // cmd/dockerd/daemon.go (start): "dockerd needs to be started with root
    // privileges. To run dockerd in rootless mode as an unprivileged user, see ..."
    Signature {
        cause: "not-root",
        all: &["dockerd needs to be started with root privileges"],
        any: &[],
        reason: "dockerd: it was started as a non-root user (dockerd needs to be started with root privileges); run the container as root (docker run --user 0, or no USER in the image), or use rootless Docker (dockerd-rootless.sh)",
    },
    // pkg/pidfile/pidfile.go: "pid file found, ensure docker is not running or
    // delete %s"; Docker 23+ cmd/dockerd/daemon.go: "failed to start daemon, ensure
    // docker is not running or delete %s: process with PID %d is still running".
    Signature {
        cause: "pid-file",
        all: &["ensure docker is not running or delete"],
        any: &[],
        reason: "dockerd: its pid file names a running process (pid file found, ensure docker is not running or delete /var/run/docker.pid); dind-init deletes stale pid files itself, so another dockerd is running: stop it, or give this one its own --pidfile, --exec-root and --data-root",
    },
    // daemon/daemon.go (NewDaemon): errors.Wrapf(err, "failed to dial %q",
    // config.ContainerdAddr). dockerd 20.10 uses /run/containerd/containerd.sock
    // instead of starting its own containerd as soon as that file exists.
    Signature {
        cause: "containerd",
        all: &["failed to dial \"/run/containerd/containerd.sock\""],
        any: &[],
        reason: "dockerd: it adopted a /run/containerd/containerd.sock that nothing answers on (failed to dial \"/run/containerd/containerd.sock\"); delete that socket (dind-init does before each start when nothing accepts on it) or start the containerd it belongs to",
    },
    Signature {
        cause: "containerd",
        all: &["failed to dial \"", "containerd.sock\""],
        any: &[],
        reason: "dockerd: containerd did not answer on its socket (failed to dial \"...containerd.sock\"); containerd's own lines above say why it died or hung; if --containerd names a socket, check that containerd runs there",
    },
    // libcontainerd/supervisor/remote_daemon.go (Start): errors.New("timeout
    // waiting for containerd to start"), after 15 s; cmd/dockerd/daemon.go wraps it
    // as "failed to start containerd: ...".
    Signature {
        cause: "containerd",
        all: &["timeout waiting for containerd to start"],
        any: &[],
        reason: "dockerd: the containerd it started did not come up within 15 s (timeout waiting for containerd to start); containerd's own lines above say why; a containerd.pid naming a live unrelated process does this too (dind-init removes stale ones), as does a slow sandbox: restart it",
    },
    // libcontainerd/supervisor/remote_daemon.go (startContainerd):
    // r.logger.WithError(err).Errorf("containerd did not exit successfully"). Only
    // with an exit status: a containerd killed by a signal at dockerd's own
    // shutdown is a consequence, not the cause.
    Signature {
        cause: "containerd",
        all: &["containerd did not exit successfully", "exit status"],
        any: &[],
        reason: "dockerd: the containerd it started exited with an error (containerd did not exit successfully); containerd's own lines above say why, often a corrupt meta.db under <data-root>/containerd or a bad containerd config",
    },
    // hack/dind and dind entrypoints (`sed: write error`), and runc at `docker
    // run`: writing +controllers to the root cgroup.subtree_control fails with
    // EBUSY while processes remain in the root group (cgroup v2, REFERENCE §1.2).
    Signature {
        cause: "cgroup-busy",
        all: &["cgroup.subtree_control", "device or resource busy"],
        any: &[],
        reason: "dockerd: the root cgroup still holds processes, so its controllers cannot be delegated (cgroup.subtree_control: device or resource busy); dind-init moves every process to /init first: run the container with its own cgroup namespace (--cgroupns=private) and nothing joining the root group",
    },
    // runc / containerd mkdir under a cgroupfs that Docker mounted read-only for a
    // non-privileged container (daytona#5146).
    Signature {
        cause: "cgroup-readonly",
        all: &["/sys/fs/cgroup", "read-only file system"],
        any: &[],
        reason: "dockerd: /sys/fs/cgroup is read-only and could not be remounted read-write (read-only file system); run the container with --privileged",
    },
    // vendor/github.com/containerd/cgroups/utils.go: panic "cannot statfs cgroup
    // root" when /sys/fs/cgroup does not exist.
    Signature {
        cause: "cgroup-root",
        all: &["cannot statfs cgroup root"],
        any: &[],
        reason: "dockerd: /sys/fs/cgroup is missing (cannot statfs cgroup root); dind-init creates it before each start, so something removed or hid it: do not mount over /sys or /sys/fs/cgroup in the image",
    },
    // daemon/daemon_unix.go (verifyDaemonSettings): e.g. "Your kernel does not
    // support cgroup cpu real-time period". pkg/sysinfo logs the same words as
    // warnings on every start; those are skipped as informational.
    Signature {
        cause: "cgroup-support",
        all: &["Your kernel does not support cgroup"],
        any: &[],
        reason: "dockerd: a daemon setting needs a cgroup feature this kernel or runsc lacks (Your kernel does not support cgroup ...); remove that setting (e.g. --cpu-rt-period, --cpu-rt-runtime) from dockerd's args or daemon.json",
    },
    // No `iptables` on dockerd's PATH: libnetwork/iptables/iptables.go
    // ErrIptablesNotFound, "Iptables not found" in 20.10 and "iptables not found" in
    // 26+ (measured: dockerd 20.10, 26.1, 28.5 under runc with only the
    // iptables-legacy names, as in an image that copies them alone), wrapped as
    // "failed to create NAT chain DOCKER: ..."; and exec's own words where a rule is
    // run. A missing binary, not a missing capability: it must win over the NAT-chain
    // signature below, which names CAP_NET_ADMIN.
    Signature {
        cause: "iptables-missing",
        all: &[],
        any: &[
            "Iptables not found",
            "iptables not found",
            "ip6tables not found",
            "exec: \"iptables\": executable file not found",
            "exec: \"ip6tables\": executable file not found",
        ],
        reason: "dockerd: there is no iptables on its PATH (failed to create NAT chain DOCKER: Iptables not found); install the iptables package in the image (Debian/Ubuntu: apt-get install iptables; Alpine: apk add iptables); an image with only the iptables-legacy names needs a plain iptables too; or pass --iptables=false --ip6tables=false",
    },
    // iptables-nft / iptables-legacy output, embedded by libnetwork/iptables/
    // iptables.go ("iptables failed: ..."): netfilter refused for lack of
    // CAP_NET_ADMIN (sbx-releases#307).
    Signature {
        cause: "iptables",
        all: &["Permission denied"],
        any: &[
            "Could not fetch rule set generation id",
            "can't initialize iptables table",
            "can't initialize ip6tables table",
        ],
        reason: "dockerd: the container may not use netfilter (iptables: Permission denied (you must be root)); grant CAP_NET_ADMIN (--cap-add=NET_ADMIN or --privileged), or pass --iptables=false --ip6tables=false",
    },
    // iptables-nft where the kernel has no nf_tables netlink: gVisor's netstack
    // (before 2026-08) and kernels without CONFIG_NF_TABLES.
    Signature {
        cause: "iptables",
        all: &["Failed to initialize nft: Protocol not supported"],
        any: &[],
        reason: "dockerd: iptables is the nftables variant and this kernel or gVisor has no nftables (Failed to initialize nft: Protocol not supported); pass --iptables=false --ip6tables=false (dind-init adds --iptables=false in gVisor unless the args mention --iptables), or put iptables-legacy first in dockerd's PATH",
    },
    // iptables-legacy: no such table. In gVisor, runsc was started without
    // --net-raw; elsewhere the ip_tables/iptable_nat modules are not loaded.
    Signature {
        cause: "iptables",
        all: &["Table does not exist"],
        any: &[],
        reason: "dockerd: netfilter has no iptables tables here (can't initialize iptables table: Table does not exist); in gVisor start runsc with --net-raw, elsewhere load ip_tables and iptable_nat on the host, or pass --iptables=false --ip6tables=false",
    },
    Signature {
        cause: "iptables",
        all: &["Could not fetch rule set generation id"],
        any: &[],
        reason: "dockerd: the nftables variant of iptables cannot use this kernel's netfilter (Could not fetch rule set generation id); put iptables-legacy first in dockerd's PATH, or pass --iptables=false --ip6tables=false",
    },
    // gVisor's legacy iptables has no MASQUERADE target (REFERENCE §4 row 4).
    Signature {
        cause: "iptables",
        all: &["Extension MASQUERADE revision 0 not supported"],
        any: &[],
        reason: "dockerd: this netfilter has no MASQUERADE target, as in gVisor (Extension MASQUERADE revision 0 not supported); pass --iptables=false (dind-init then gives nested containers egress with SNAT rules)",
    },
    // Same family: a match or target Docker's rules use is missing (gVisor lacks
    // the addrtype match too).
    Signature {
        cause: "iptables",
        all: &["revision 0 not supported"],
        any: &[],
        reason: "dockerd: this netfilter lacks an iptables extension Docker's rules need, as gVisor lacks addrtype (Extension ... revision 0 not supported); pass --iptables=false --ip6tables=false",
    },
    // gVisor rejects rules it cannot implement, e.g. SNAT without -p tcp|udp
    // (REFERENCE §4 row 5).
    Signature {
        cause: "iptables",
        all: &["iptables: Invalid argument"],
        any: &[],
        reason: "dockerd: this netfilter rejects Docker's rules, as gVisor does (iptables: Invalid argument); pass --iptables=false --ip6tables=false",
    },
    // libnetwork/iptables/iptables.go (AddReturnRule): "unable to add return rule
    // in %s chain: %s"; typically nft and legacy rules mixed on one host.
    Signature {
        cause: "iptables",
        all: &["unable to add return rule in DOCKER-ISOLATION"],
        any: &[],
        reason: "dockerd: iptables could not program Docker's isolation chains, usually because nftables and legacy rules are mixed (unable to add return rule in DOCKER-ISOLATION-STAGE-1 chain); use one backend (iptables-legacy first in dockerd's PATH) or pass --iptables=false --ip6tables=false",
    },
    // libnetwork/drivers/bridge/setup_ip_tables.go (setupIPChains): "failed to
    // create NAT chain %s: %v", whatever iptables said after it.
    Signature {
        cause: "iptables",
        all: &["failed to create NAT chain DOCKER"],
        any: &[],
        reason: "dockerd: it could not create its iptables NAT chain, so netfilter is unusable in this container (failed to create NAT chain DOCKER); pass --iptables=false --ip6tables=false, or grant CAP_NET_ADMIN (and in gVisor start runsc with --net-raw)",
    },
    // libnetwork/iptables/iptables.go (Raw): "iptables failed: ..." for any other
    // rule; and the nftables variant's own complaints.
    Signature {
        cause: "iptables",
        all: &[],
        any: &["iptables failed: ", "ip6tables failed: ", "(nf_tables)"],
        reason: "dockerd: iptables failed while setting up Docker's rules (iptables failed: ...); pass --iptables=false --ip6tables=false, or put iptables-legacy first in dockerd's PATH if the nftables variant is the one failing",
    },
    // libnetwork/drivers/bridge/setup_bridgenetfiltering.go: "cannot restrict
    // inter-container communication: please ensure that br_netfilter kernel module
    // is loaded"; Docker 27+: "... or run without the userland proxy: stat
    // /proc/sys/net/bridge/bridge-nf-call-iptables: no such file or directory".
    Signature {
        cause: "br-netfilter",
        all: &[],
        any: &[
            "bridge-nf-call-iptables",
            "bridge-nf-call-ip6tables",
            "br_netfilter",
            "cannot restrict inter-container communication",
        ],
        reason: "dockerd: the bridge netfilter sysctls are missing (bridge-nf-call-iptables: br_netfilter is not loaded); load it on the host (modprobe br_netfilter), or keep --icc=true and the userland proxy on (the defaults)",
    },
    // libnetwork/drivers/bridge/setup_ip_forwarding.go: "Cannot read IP forwarding
    // setup: %v", "Enabling IP forwarding failed: %v"; Docker 28+: "failed to set
    // IP forwarding '/proc/sys/net/ipv4/ip_forward' = '1': ...".
    Signature {
        cause: "ip-forward",
        all: &[],
        any: &["ip_forward", "IP forwarding", "IPv4 forwarding is disabled"],
        reason: "dockerd: it cannot read or enable IPv4 forwarding (net.ipv4.ip_forward); set it before start (docker run --sysctl net.ipv4.ip_forward=1, or sysctl -w net.ipv4.ip_forward=1 where /proc/sys is writable; dind-init tries), or pass --ip-forward=false --bridge=none",
    },
    // libnetwork/drivers/bridge/interface.go (newInterface): "existing interface
    // %s is not a bridge". gVisor's RTM_GETLINK reports no link kind before
    // release-20260810.0, so a restarted dockerd fails on its own docker0.
    Signature {
        cause: "bridge",
        all: &["existing interface ", " is not a bridge"],
        any: &[],
        reason: "dockerd: docker0 exists but is not reported as a bridge, as in gVisor before release-20260810 after a restart (existing interface docker0 is not a bridge); dind-init deletes docker0, the br- links and network/files/local-kv.db before a restart in gVisor; otherwise run ip link delete docker0, or pass --bridge=none",
    },
    // daemon/daemon_unix.go (initBridgeDriver): "list bridge addresses failed: ...
    // no available network" (20.10); newer libnetwork/ipams: "could not find an
    // available, non-overlapping IPv4 address pool among the defaults to assign to
    // the network".
    Signature {
        cause: "bridge",
        all: &[],
        any: &[
            "non-overlapping IPv4 address pool",
            "list bridge addresses failed",
            "no available network",
        ],
        reason: "dockerd: every default address pool overlaps a network already routed here (could not find an available, non-overlapping IPv4 address pool); pass --bip with a free range (e.g. --bip=10.213.0.1/24) or --default-address-pool, or --bridge=none",
    },
    // daemon/daemon_unix.go (initBridgeDriver): "Error creating default \"bridge\"
    // network: %v" (lowercase "error" since Docker 23) with netlink's errno: runsc
    // before mid-2024 cannot create bridge or veth links.
    Signature {
        cause: "bridge",
        all: &["creating default \"bridge\" network"],
        any: &[
            "operation not supported",
            "not implemented",
            "package not installed",
        ],
        reason: "dockerd: this sandbox cannot create the docker0 bridge, as with runsc before mid-2024 (error creating default \"bridge\" network: operation not supported); pass --bridge=none (nested containers then need --network=host) or use a newer runsc",
    },
    // libnetwork/drivers/bridge/setup_device.go: "Failed to create bridge %s via
    // netlink" (logged at error level since Docker 25; at debug in 20.10).
    Signature {
        cause: "bridge",
        all: &["Failed to create bridge "],
        any: &[],
        reason: "dockerd: this sandbox cannot create the docker0 bridge, as with runsc before mid-2024 (Failed to create bridge docker0 via netlink); pass --bridge=none (nested containers then need --network=host) or use a newer runsc",
    },
    // daemon/daemon.go (NewDaemon): "Error initializing network controller: %v"
    // wrapping a netlink errno.
    Signature {
        cause: "bridge",
        all: &[],
        any: &[
            "Error initializing network controller: operation not supported",
            "error initializing network controller: operation not supported",
        ],
        reason: "dockerd: this sandbox's netlink does not support what Docker's network controller needs (Error initializing network controller: operation not supported); pass --bridge=none (nested containers then need --network=host) or use a newer runsc",
    },
    Signature {
        cause: "bridge",
        all: &["creating default \"bridge\" network"],
        any: &[],
        reason: "dockerd: it could not create the default bridge network (error creating default \"bridge\" network); pass --bridge=none (nested containers then need --network=host), or fix what dockerd's line names after it",
    },
    Signature {
        cause: "network",
        all: &[],
        any: &[
            "Error initializing network controller",
            "error initializing network controller",
        ],
        reason: "dockerd: its network controller failed to start (Error initializing network controller); pass --bridge=none --iptables=false to start without bridge networking, or fix what dockerd's line names after it",
    },
    // mount(2) refused with EPERM/EACCES: no CAP_SYS_ADMIN (a non-privileged runc
    // container), e.g. daemon/graphdriver/overlay2 "failed to mount overlay:
    // operation not permitted".
    Signature {
        cause: "cap-sys-admin",
        all: &["mount"],
        any: &["operation not permitted", "permission denied"],
        reason: "dockerd: a mount was refused (mount: operation not permitted); the container lacks CAP_SYS_ADMIN: run it --privileged (or --cap-add=SYS_ADMIN with unconfined seccomp and AppArmor) or in gVisor",
    },
    // overlay on overlay or on gVisor's gofer: daemon/graphdriver/overlay2
    // ("failed to mount overlay: invalid argument", "error creating overlay mount
    // to %s: %v"); Docker 29's containerd snapshotter ("mount source: \"overlay\"
    // ... err: invalid argument").
    Signature {
        cause: "storage-driver",
        all: &["invalid argument"],
        any: &[
            "failed to mount overlay",
            "error creating overlay mount",
            "mount source: \"overlay\"",
        ],
        reason: "dockerd: overlay mounts fail on this filesystem, as on overlayfs or gVisor's gofer (failed to mount overlay: invalid argument); pass --storage-driver=vfs or mount a tmpfs at /var/lib/docker (Docker 29: also --feature containerd-snapshotter=false)",
    },
    Signature {
        cause: "storage-driver",
        all: &[],
        any: &[
            "failed to mount overlay",
            "error creating overlay mount",
            "mount source: \"overlay\"",
        ],
        reason: "dockerd: overlay mounts fail here (failed to mount overlay); pass --storage-driver=vfs or mount a tmpfs at /var/lib/docker",
    },
    // layer/layer_store.go: "error initializing graphdriver: %v", typically
    // graphdriver.ErrNotSupported ("driver not supported"); and
    // daemon/graphdriver/driver.go: "[graphdriver] prior storage driver %s failed:
    // %s".
    Signature {
        cause: "storage-driver",
        all: &[],
        any: &[
            "error initializing graphdriver",
            "[graphdriver] prior storage driver",
        ],
        reason: "dockerd: no storage driver works on /var/lib/docker, typically overlay2 on overlayfs or gVisor's gofer (error initializing graphdriver: driver not supported); pass --storage-driver=vfs, or mount a tmpfs at /var/lib/docker",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as dockerd prints it, the cause, and a piece of the fix the reason
    /// must name.
    struct Case {
        line: &'static str,
        cause: &'static str,
        fix: &'static str,
    }

    const CASES: &[Case] = &[
        Case {
            line: "failed to start daemon: Devices cgroup isn't mounted",
            cause: "devices-cgroup",
            fix: "release-20230801",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=fatal msg=\"Error starting daemon: Devices cgroup isn't mounted\"",
            cause: "devices-cgroup",
            fix: "--privileged",
        },
        Case {
            line: "dockerd needs to be started with root privileges. To run dockerd in rootless mode as an unprivileged user, see https://docs.docker.com/go/rootless/",
            cause: "not-root",
            fix: "--user 0",
        },
        Case {
            line: "failed to start daemon: pid file found, ensure docker is not running or delete /var/run/docker.pid",
            cause: "pid-file",
            fix: "--pidfile",
        },
        Case {
            line: "failed to start daemon, ensure docker is not running or delete /var/run/docker.pid: process with PID 1 is still running",
            cause: "pid-file",
            fix: "--pidfile",
        },
        Case {
            line: "failed to start daemon: failed to dial \"/run/containerd/containerd.sock\": context deadline exceeded",
            cause: "containerd",
            fix: "delete that socket",
        },
        Case {
            line: "failed to start daemon: failed to dial \"/var/run/docker/containerd/containerd.sock\": context deadline exceeded",
            cause: "containerd",
            fix: "--containerd",
        },
        Case {
            line: "failed to start containerd: timeout waiting for containerd to start",
            cause: "containerd",
            fix: "containerd.pid",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"containerd did not exit successfully\" error=\"exit status 1\" module=libcontainerd",
            cause: "containerd",
            fix: "meta.db",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"write /sys/fs/cgroup/cgroup.subtree_control: device or resource busy\"",
            cause: "cgroup-busy",
            fix: "--cgroupns=private",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"mkdir /sys/fs/cgroup/cpuset/docker: read-only file system\"",
            cause: "cgroup-readonly",
            fix: "--privileged",
        },
        Case {
            line: "panic: cannot statfs cgroup root",
            cause: "cgroup-root",
            fix: "/sys/fs/cgroup",
        },
        Case {
            line: "failed to start daemon: Your kernel does not support cgroup cpu real-time period",
            cause: "cgroup-support",
            fix: "--cpu-rt-period",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables -t nat -N DOCKER: iptables v1.8.10 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
            cause: "iptables",
            fix: "--cap-add=NET_ADMIN",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.9 (legacy): can't initialize iptables table `nat': Permission denied (you must be root)",
            cause: "iptables",
            fix: "--cap-add=NET_ADMIN",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported",
            cause: "iptables",
            fix: "--iptables=false --ip6tables=false",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.9 (legacy): can't initialize iptables table `nat': Table does not exist (do you need to insmod?)\\nPerhaps iptables or your kernel needs to be upgraded.\\n (exit status 3)\"",
            cause: "iptables",
            fix: "--net-raw",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.10 (nf_tables): Could not fetch rule set generation id: Invalid argument",
            cause: "iptables",
            fix: "iptables-legacy",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: unable to insert jump to DOCKER rule in POSTROUTING chain:  (iptables failed: iptables --wait -t nat -I POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE: Warning: Extension MASQUERADE revision 0 not supported, missing kernel module?",
            cause: "iptables",
            fix: "SNAT",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER: Warning: Extension addrtype revision 0 not supported, missing kernel module?",
            cause: "iptables",
            fix: "--iptables=false",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: setting up IP table rules failed: iptables failed: iptables --wait -t nat -A POSTROUTING -s 172.17.0.0/16 -j SNAT --to-source 10.0.0.2: iptables: Invalid argument. Run `dmesg' for more information.",
            cause: "iptables",
            fix: "--iptables=false",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: unable to add return rule in DOCKER-ISOLATION-STAGE-1 chain:  (iptables failed: iptables --wait -A DOCKER-ISOLATION-STAGE-1 -j RETURN: iptables v1.8.7 (nf_tables):  RULE_APPEND failed (No such file or directory): rule in chain DOCKER-ISOLATION-STAGE-1",
            cause: "iptables",
            fix: "iptables-legacy",
        },
        // As dockerd 20.10 printed it under runc with only iptables-legacy names.
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: Iptables not found",
            cause: "iptables-missing",
            fix: "install the iptables package in the image",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: exit status 4",
            cause: "iptables",
            fix: "CAP_NET_ADMIN",
        },
        // Docker 26.1 and 28.5, the same image.
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to register \"bridge\" driver: failed to create NAT chain DOCKER: iptables not found",
            cause: "iptables-missing",
            fix: "apt-get install iptables",
        },
        Case {
            line: "time=\"2026-12-06T01:04:44.163562304Z\" level=error msg=\"failed to start daemon: setting up FORWARD policy failed: exec: \\\"iptables\\\": executable file not found in $PATH\"",
            cause: "iptables-missing",
            fix: "install the iptables package in the image",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: ip6tables --wait -t nat -N DOCKER: exec: \"ip6tables\": executable file not found in $PATH",
            cause: "iptables-missing",
            fix: "--ip6tables=false",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: setting up FORWARD policy failed: iptables failed: iptables --wait -t filter -P FORWARD DROP: exit status 1",
            cause: "iptables",
            fix: "--iptables=false",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: Error creating default \"bridge\" network: cannot restrict inter-container communication: please ensure that br_netfilter kernel module is loaded",
            cause: "br-netfilter",
            fix: "modprobe br_netfilter",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error creating default \"bridge\" network: cannot restrict inter-container communication or run without the userland proxy: stat /proc/sys/net/bridge/bridge-nf-call-iptables: no such file or directory: set environment variable DOCKER_IGNORE_BR_NETFILTER_ERROR=1 to ignore",
            cause: "br-netfilter",
            fix: "--icc=true",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: Error creating default \"bridge\" network: Enabling IP forwarding failed: open /proc/sys/net/ipv4/ip_forward: read-only file system",
            cause: "ip-forward",
            fix: "net.ipv4.ip_forward=1",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error creating default \"bridge\" network: failed to set IP forwarding '/proc/sys/net/ipv4/ip_forward' = '1': open /proc/sys/net/ipv4/ip_forward: permission denied",
            cause: "ip-forward",
            fix: "--ip-forward=false",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: Error creating default \"bridge\" network: existing interface docker0 is not a bridge",
            cause: "bridge",
            fix: "ip link delete docker0",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: list bridge addresses failed: PredefinedLocalScopeDefaultNetworks List: [172.17.0.0/16 172.18.0.0/16 172.19.0.0/16]: no available network",
            cause: "bridge",
            fix: "--bip",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error creating default \"bridge\" network: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
            cause: "bridge",
            fix: "--default-address-pool",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: Error creating default \"bridge\" network: operation not supported",
            cause: "bridge",
            fix: "--bridge=none",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"Failed to create bridge docker0 via netlink\" error=\"operation not supported\"",
            cause: "bridge",
            fix: "--bridge=none",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: operation not supported",
            cause: "bridge",
            fix: "--bridge=none",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: Error creating default \"bridge\" network: cannot create network 35ab8135ffe0 (docker0): conflicts with network bdd107199fcd (docker0): networks have same bridge name",
            cause: "bridge",
            fix: "--bridge=none",
        },
        Case {
            line: "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to initialize vxlan id manager: something new",
            cause: "network",
            fix: "--bridge=none --iptables=false",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"failed to mount overlay: operation not permitted\" storage-driver=overlay2",
            cause: "cap-sys-admin",
            fix: "--privileged",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"failed to mount overlay: invalid argument\" storage-driver=overlay2",
            cause: "storage-driver",
            fix: "--storage-driver=vfs",
        },
        Case {
            line: "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"failed to mount overlay: no such device\" storage-driver=overlay2",
            cause: "storage-driver",
            fix: "--storage-driver=vfs",
        },
        Case {
            line: "failed to start daemon: error initializing graphdriver: driver not supported",
            cause: "storage-driver",
            fix: "--storage-driver=vfs",
        },
    ];

    #[test]
    fn each_line_names_its_cause_and_fix() {
        for case in CASES {
            let d = diagnose(&[case.line]);
            let d = d.unwrap_or_else(|| panic!("no diagnosis for {:?}", case.line));
            assert_eq!(d.cause, case.cause, "cause of {:?}", case.line);
            assert!(
                d.reason.contains(case.fix),
                "reason for {:?} lacks {:?}: {}",
                case.line,
                case.fix,
                d.reason
            );
        }
    }

    #[test]
    fn every_signature_has_a_test_line() {
        for (i, sig) in SIGNATURES.iter().enumerate() {
            assert!(
                CASES.iter().any(|c| match_line(c.line) == Some(i)),
                "signature {i} ({}: {:?}) has no test line",
                sig.cause,
                sig.reason
            );
        }
    }

    #[test]
    fn every_reason_is_one_line_with_dockerds_words() {
        for sig in SIGNATURES {
            assert!(!sig.reason.contains('\n'), "{}", sig.reason);
            assert!(sig.reason.starts_with("dockerd: "), "{}", sig.reason);
            assert!(sig.reason.contains(" ("), "{}", sig.reason);
            assert!(sig.reason.contains("); "), "{}", sig.reason);
            assert!(!sig.cause.is_empty() && !sig.cause.contains(' '));
            // A signature with no strings would match every line.
            assert!(!sig.all.is_empty() || !sig.any.is_empty(), "{}", sig.reason);
        }
    }

    #[test]
    fn a_missing_iptables_is_not_a_missing_capability() {
        for case in CASES.iter().filter(|c| c.cause == "iptables-missing") {
            let d = diagnose(&[case.line]).unwrap();
            assert!(
                !d.reason.contains("CAP_NET_ADMIN") && !d.reason.contains("NET_ADMIN"),
                "{}",
                d.reason
            );
            assert!(d.reason.contains("no iptables on its PATH"), "{}", d.reason);
        }
        // dockerd's warning that it found none is not the cause; its fatal line is.
        let tail = [
            "time=\"2026-12-06T01:04:44Z\" level=warning msg=\"failed to find iptables\" error=\"exec: \\\"iptables\\\": executable file not found in $PATH\"",
            "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: Iptables not found",
        ];
        assert_eq!(diagnose(&tail[..1]), None);
        assert_eq!(diagnose(&tail).map(|d| d.cause), Some("iptables-missing"));
    }

    #[test]
    fn logrus_escaped_quotes_match() {
        let line = "time=\"2024-01-02T03:04:05.123456789Z\" level=error msg=\"failed to start daemon: failed to dial \\\"/run/containerd/containerd.sock\\\": context deadline exceeded\"";
        let d = diagnose(&[line]).map(|d| d.reason);
        assert!(d.is_some_and(|r| r.contains("delete that socket")));
    }

    #[test]
    fn json_log_lines_match() {
        let line = r#"{"level":"error","msg":"failed to start daemon: error initializing graphdriver: driver not supported","time":"2024-01-02T03:04:05Z"}"#;
        assert_eq!(diagnose(&[line]).map(|d| d.cause), Some("storage-driver"));
    }

    #[test]
    fn newest_matching_line_wins() {
        let tail = [
            "failed to start daemon: Devices cgroup isn't mounted",
            "failed to start daemon: pid file found, ensure docker is not running or delete /var/run/docker.pid",
            "time=\"2024-01-02T03:04:05Z\" level=info msg=\"stopping event stream following graceful shutdown\"",
        ];
        assert_eq!(diagnose(&tail).map(|d| d.cause), Some("pid-file"));
        assert_eq!(
            diagnose(&tail[..1]).map(|d| d.cause),
            Some("devices-cgroup")
        );
    }

    #[test]
    fn overlay_detail_is_superseded_by_the_fatal_line() {
        let tail = [
            "time=\"2021-09-30T09:24:56.914420548Z\" level=error msg=\"failed to mount overlay: invalid argument\" storage-driver=overlay2",
            "time=\"2021-09-30T09:24:56.914439880Z\" level=error msg=\"[graphdriver] prior storage driver overlay2 failed: driver not supported\"",
            "failed to start daemon: error initializing graphdriver: driver not supported",
        ];
        let d = diagnose(&tail);
        assert_eq!(d.as_ref().map(|d| d.cause), Some("storage-driver"));
        assert!(d.is_some_and(|d| d.reason.contains("--storage-driver=vfs")));
    }

    #[test]
    fn error_continued_on_the_next_line() {
        // iptables' output ends in "\n (exit status 1)"; dockerd's plain last line
        // carries that newline, so the tail's last line is only the exit status.
        let tail = [
            "failed to start daemon: Error initializing network controller: error obtaining controller instance: failed to create NAT chain DOCKER: iptables failed: iptables --wait -t nat -N DOCKER: iptables v1.8.9 (nf_tables): Failed to initialize nft: Protocol not supported",
            " (exit status 1)",
        ];
        let d = diagnose(&tail);
        assert_eq!(d.as_ref().map(|d| d.cause), Some("iptables"));
        assert!(d.is_some_and(|d| d.reason.contains("Protocol not supported")));
    }

    #[test]
    fn warnings_are_not_causes() {
        let tail = [
            "time=\"2024-01-02T03:04:05Z\" level=warning msg=\"Your kernel does not support cgroup blkio weight\"",
            "time=\"2024-01-02T03:04:05Z\" level=warning msg=\"running inside docker container, ignoring missing kernel params: open /proc/sys/net/bridge/bridge-nf-call-iptables: no such file or directory\"",
            "time=\"2024-01-02T03:04:05Z\" level=info msg=\"IPv4 forwarding is disabled\"",
            "WARN[0000] failed to mount overlay: invalid argument",
            r#"{"level":"warning","msg":"Your kernel does not support cgroup rt period","time":"2024-01-02T03:04:05Z"}"#,
        ];
        assert_eq!(diagnose(&tail), None);
        let mut with_fatal = tail.to_vec();
        with_fatal.insert(0, "failed to start daemon: Devices cgroup isn't mounted");
        assert_eq!(
            diagnose(&with_fatal).map(|d| d.cause),
            Some("devices-cgroup")
        );
    }

    #[test]
    fn containerd_killed_at_shutdown_is_not_the_cause() {
        let line = "time=\"2024-01-02T03:04:05Z\" level=error msg=\"containerd did not exit successfully\" error=\"signal: killed\" module=libcontainerd";
        assert_eq!(diagnose(&[line]), None);
    }

    #[test]
    fn no_match_and_empty_input() {
        assert_eq!(diagnose(&[]), None);
        assert_eq!(diagnose(&[""]), None);
        let tail = [
            "time=\"2024-01-02T03:04:05Z\" level=error msg=\"something nobody has seen before\"",
            "failed to start daemon: something else entirely",
            "\u{fffd}\u{fffd} level=",
            "level=\"",
            "{\"level\":\"",
        ];
        assert_eq!(diagnose(&tail), None);
    }
}
