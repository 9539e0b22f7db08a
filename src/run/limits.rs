//! Known limits seen in dockerd's running output (SPEC §7): lines that mean nested
//! containers cannot run although dockerd answers `/_ping`, so that `status` does not
//! claim more than is true.
//!
//! dockerd keeps serving when the runtime below it cannot start a container: the
//! failure only shows as an error line when a `docker run` (or `docker build` step)
//! fails, long after readiness was declared. Each line dockerd prints is matched here;
//! a match becomes a warning in `status` (and the log) with its cause and fix, once per
//! dockerd run. The signatures were measured (ENVIRONMENT.md, REFERENCE.md §2):
//! - runc 1.2.8+/1.3.3+ refuses gVisor's /proc, whose root inode is not 1:
//!   `unsafe procfs detected: incorrect procfs root inode number 86`;
//! - Docker 28+ waits for each veth through a netlink link-group subscription, which
//!   runsc's netlink (no multicast groups) refuses: `failed to subscribe to link
//!   updates: permission denied`;
//! - the containerd snapshotter (Docker 29's default) cannot mount overlay on the
//!   sandbox's overlay root: `failed to mount /tmp/containerd-mount...`;
//! - AppArmor enabled in the kernel, securityfs mounted, no `apparmor_parser`: `AppArmor
//!   enabled on system but the docker-default profile could not be loaded`.
//!
//! Unlike start-up diagnosis (`diagnose.rs`), the level of the line does not matter:
//! these are fatal for a container whatever level dockerd logs them at. It is a pure
//! function of one line.

/// A known limit: what `status` shows, and a short id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// A short id of the cause, e.g. `unsafe-procfs`.
    pub cause: &'static str,
    /// One line: the consequence, dockerd's words, the cause and the fix.
    pub warning: &'static str,
}

/// The signatures: each line must contain every string of `all`.
const LIMITS: &[(&[&str], Limit)] = &[
    (
        &["unsafe procfs detected"],
        Limit {
            cause: "unsafe-procfs",
            warning: "containers cannot start: runc refuses gVisor's /proc (unsafe procfs detected: runc 1.2.8 and later want /proc's root inode to be 1; runsc 0.0~20240729 gives another); use runc older than 1.2.8 in the image, or a newer runsc",
        },
    ),
    (
        &["failed to subscribe to link updates"],
        Limit {
            cause: "link-updates",
            warning: "bridge networking cannot work: this runsc's netlink has no multicast groups, which Docker 28 and later need for each container's interface (failed to subscribe to link updates: permission denied); only --network=none and --network=host containers run; use Docker 27 or older in the image, or a newer runsc",
        },
    ),
    (
        &["failed to mount /tmp/containerd-mount"],
        Limit {
            cause: "containerd-mount",
            warning: "image layers cannot be mounted: the containerd snapshotter cannot put overlay on this overlay root (failed to mount /tmp/containerd-mount); put dockerd's data root on a tmpfs (docker run --tmpfs /var/lib/docker:exec,size=8g), or add --feature containerd-snapshotter=false to dockerd.args",
        },
    ),
    (
        &["AppArmor enabled on system but the docker-default profile could not be loaded"],
        Limit {
            cause: "apparmor",
            warning: "containers cannot start: AppArmor is enabled in the kernel but dockerd cannot load its docker-default profile (no apparmor_parser); install the apparmor package in the image, or run nested containers with --security-opt apparmor=unconfined",
        },
    ),
];

/// The known limit this line of dockerd's output shows, if any.
pub fn match_line(line: &str) -> Option<Limit> {
    LIMITS
        .iter()
        .find(|(all, _)| all.iter().all(|s| line.contains(s)))
        .map(|(_, limit)| *limit)
}

/// The limits seen in one dockerd run, each once, in the order they were seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    limits: Vec<Limit>,
}

impl Seen {
    /// Records the limit `line` shows; returns it when it is new in this run (to be
    /// logged once).
    pub fn observe(&mut self, line: &str) -> Option<Limit> {
        let limit = match_line(line)?;
        if self.limits.iter().any(|l| l.cause == limit.cause) {
            return None;
        }
        self.limits.push(limit);
        Some(limit)
    }

    /// A new dockerd run: what the last one showed no longer holds.
    pub fn clear(&mut self) {
        self.limits.clear();
    }

    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// The warnings, for the status document.
    pub fn warnings(&self) -> Vec<String> {
        self.limits.iter().map(|l| l.warning.to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_dockerd_printed_name_their_limit() {
        // As measured (Docker 28.5 / runc 1.3.6 in runsc 0.0~20240729, dockerd 20.10
        // on Debian's kernel), in logrus text and JSON, at error and warning level.
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"time="2026-12-01T10:00:00Z" level=error msg="Handler for POST /v1.51/containers/abc/start returned error: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unsafe procfs detected: incorrect procfs root inode number 86: unknown""#,
                Some("unsafe-procfs"),
            ),
            (
                r#"{"level":"warning","msg":"failed to set up container networking: failed to add interface vethf00 to sandbox: failed to subscribe to link updates: permission denied"}"#,
                Some("link-updates"),
            ),
            (
                r#"level=error msg="failed to mount /tmp/containerd-mount123: mount source: \"overlay\", target: ..., fstype: overlay: invalid argument""#,
                Some("containerd-mount"),
            ),
            (
                r#"time="x" level=error msg="AppArmor enabled on system but the docker-default profile could not be loaded: running `apparmor_parser apparmor_parser --version` failed with output: \nerror: exec: \"apparmor_parser\": executable file not found in $PATH""#,
                Some("apparmor"),
            ),
            (
                r#"level=info msg="API listen on /var/run/docker.sock""#,
                None,
            ),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(match_line(line).map(|l| l.cause), *want, "{line}");
        }
    }

    #[test]
    fn each_limit_is_kept_once_per_run() {
        let mut seen = Seen::default();
        let line =
            "runc create failed: unsafe procfs detected: incorrect procfs root inode number 86";
        assert!(seen.observe(line).is_some());
        assert!(seen.observe(line).is_none());
        assert!(seen.observe("nothing to see").is_none());
        assert_eq!(seen.warnings().len(), 1);
        seen.clear();
        assert!(seen.observe(line).is_some());
    }

    #[test]
    fn every_warning_is_one_line_with_a_fix() {
        for (_, limit) in LIMITS {
            assert!(!limit.warning.contains('\n'), "{}", limit.cause);
            assert!(
                limit.warning.contains("; use")
                    || limit.warning.contains("; install")
                    || limit.warning.contains("; put")
                    || limit.warning.contains("only --network"),
                "{} has no fix",
                limit.cause
            );
        }
    }
}
