//! The status document (SPEC §8): what `status`, `/status`, the ready file and
//! `dind-init status` show. Built on demand from the event loop's state; this
//! module only shapes and serializes it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sys::reaper::ExitStatus;

/// The status JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: String,
    pub reason: Option<String>,
    /// RFC 3339, when the state began.
    pub since: String,
    pub dockerd: DockerdStatus,
    pub cgroup: CgroupStatus,
    pub environment: EnvironmentStatus,
    /// Nested networking (SPEC §7a). `default`: a status line from an init without it
    /// still parses.
    #[serde(default)]
    pub network: NetworkStatus,
    /// What "ready" means and how the last check went (SPEC §8 `verify`).
    #[serde(default)]
    pub verify: VerifyStatus,
    /// sd_notify to the init's own supervisor (`NOTIFY_SOCKET`).
    #[serde(default)]
    pub sd_notify: SdNotifyStatus,
    /// dockerd's last output lines; only over the socket.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_tail: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerdStatus {
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// Known limits seen in this dockerd run's output (`limits.rs`): dockerd
    /// answers, but containers cannot run. One line each, with cause and fix.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The storage driver dockerd reported (`GET /info`) once ready, this run.
    #[serde(default)]
    pub storage_driver: Option<String>,
}

/// The init's own sd_notify messages upward.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdNotifyStatus {
    /// The inherited NOTIFY_SOCKET; null when there is none (or sd_notify = "off").
    pub socket: Option<String>,
    /// Messages delivered.
    pub sent: u64,
    /// One line per kind of failure seen (each logged once), with the fix.
    pub warnings: Vec<String>,
}

/// `readiness.verify` and the last check of it (SPEC §8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyStatus {
    /// "ping" or "container".
    pub mode: String,
    /// The last container check; null before the first (and always with "ping").
    pub last: Option<VerifyResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResult {
    pub ok: bool,
    /// The step that failed (inspect, import, create, start, wait); null when ok.
    pub step: Option<String>,
    /// dockerd's words, when it failed.
    pub message: Option<String>,
    pub took_ms: u64,
    /// RFC 3339, when it ended.
    pub at: String,
}

/// `{"code": N}` or `{"signal": N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastExit {
    Code(i32),
    Signal(i32),
}

impl From<ExitStatus> for LastExit {
    fn from(s: ExitStatus) -> Self {
        match s {
            ExitStatus::Code(c) => LastExit::Code(c),
            ExitStatus::Signal(n) => LastExit::Signal(n),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStatus {
    /// "v1", "v2", "off", ...
    pub mode: String,
    pub mounted: Vec<String>,
    pub stubbed: Vec<String>,
    /// What the preparation changed, one line each, in order (at boot, then
    /// before restarts); empty when everything was already prepared.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Best-effort steps that failed (securityfs, rshared, ...), one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentStatus {
    pub gvisor: bool,
    /// "v1", "v2" or "hybrid".
    pub cgroup: String,
    pub pid1: bool,
    /// docker:dind's TLS contract as boot met it (`prepare/tls.rs`). `default`: a status
    /// line from an init without it still parses.
    #[serde(default)]
    pub tls: TlsStatus,
    /// dockerd's data-root and its tmpfs (`prepare/storage.rs`).
    #[serde(default)]
    pub storage: StorageStatus,
}

/// What boot did for `DOCKER_TLS_CERTDIR` (SPEC §6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsStatus {
    /// "off" (DOCKER_TLS_CERTDIR unset), "generated" (dind-init keeps the CA and renewed
    /// the certificates), "user" (the user's certificates, verified), "plain" (set to
    /// "": TCP without TLS), "args" (dockerd's arguments name a TCP host of their own).
    pub mode: String,
    /// The certificate directory, when there is one.
    pub dir: Option<String>,
    /// The TCP host dind-init gave dockerd, e.g. "tcp://0.0.0.0:2376".
    pub host: Option<String>,
    /// What was made, kept, renewed or verified, one line each.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// dockerd's data-root and what boot did about `data_root_tmpfs` (SPEC §11).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    pub data_root: String,
    /// `data_root_tmpfs` (e.g. "8g"); null when off.
    pub tmpfs: Option<String>,
    /// What was done: the tmpfs mounted, or why not; null when off.
    pub action: Option<String>,
}

/// What the network setup before the last dockerd start found and did (`network.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// "gvisor" (set up by dind-init), "off" (`network.mode = "off"`) or "host" (not
    /// gVisor: dockerd sets up its own networking).
    pub mode: String,
    /// The IPv4 default route's device and address, e.g. "eth0 10.0.0.2"; null when none.
    pub uplink: Option<String>,
    /// The iptables rules in place, e.g. "FORWARD -i docker0 -o docker0 -j DROP".
    pub rules: Vec<String>,
    /// Whether dockerd's PATH starts with working iptables → iptables-legacy links.
    pub legacy_iptables: bool,
    pub warnings: Vec<String>,
    /// The uplink's MTU (the IPv4 default route's device), when known.
    #[serde(default)]
    pub uplink_mtu: Option<u32>,
    /// The flags dockerd got for it (`--mtu=...`, `--default-network-opt=...`).
    #[serde(default)]
    pub mtu_flags: Vec<String>,
}

impl Status {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!(r#"{{"state":"{}","error":"{e}"}}"#, self.state))
    }
}

/// The wall-clock time of monotonic instant `then`, as RFC 3339 UTC with
/// milliseconds, e.g. `2026-12-02T06:04:25.123Z`.
pub fn rfc3339(then: Instant, now: Instant, wall_now: SystemTime) -> String {
    let ago = now.saturating_duration_since(then);
    let wall = wall_now.checked_sub(ago).unwrap_or(wall_now);
    let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    format_utc(since_epoch)
}

fn format_utc(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let millis = since_epoch.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_table() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (1_796_191_465, 123, "2026-12-02T06:04:25.123Z"),
            (4_102_444_799, 999, "2099-12-31T23:59:59.999Z"),
        ];
        for (secs, ms, want) in cases {
            let d = Duration::from_secs(secs) + Duration::from_millis(ms);
            assert_eq!(format_utc(d), want);
        }
    }

    #[test]
    fn json_shape() {
        let s = Status {
            state: "ready".into(),
            reason: None,
            since: "2026-12-02T06:04:25.123Z".into(),
            dockerd: DockerdStatus {
                pid: Some(7),
                restarts: 2,
                last_exit: Some(LastExit::Signal(9)),
                warnings: vec!["containers cannot start: ...".into()],
                storage_driver: Some("overlay2".into()),
            },
            cgroup: CgroupStatus {
                mode: "v1".into(),
                mounted: vec!["devices".into()],
                stubbed: vec![],
                actions: vec!["mounted cgroup devices on /sys/fs/cgroup/devices".into()],
                warnings: vec![],
            },
            environment: EnvironmentStatus {
                gvisor: true,
                cgroup: "v1".into(),
                pid1: true,
                tls: TlsStatus {
                    mode: "generated".into(),
                    dir: Some("/certs".into()),
                    host: Some("tcp://0.0.0.0:2376".into()),
                    actions: vec!["kept ca/key.pem".into()],
                },
                storage: StorageStatus {
                    data_root: "/var/lib/docker".into(),
                    tmpfs: Some("8g".into()),
                    action: Some("mounted a tmpfs of size 8g on /var/lib/docker".into()),
                },
            },
            network: NetworkStatus {
                mode: "gvisor".into(),
                uplink: Some("eth0 10.0.0.2".into()),
                rules: vec!["FORWARD -i br-+ -o br-+ -j DROP".into()],
                legacy_iptables: true,
                warnings: vec![],
                uplink_mtu: Some(1400),
                mtu_flags: vec!["--mtu=1400".into()],
            },
            sd_notify: SdNotifyStatus::default(),
            verify: VerifyStatus {
                mode: "container".into(),
                last: Some(VerifyResult {
                    ok: false,
                    step: Some("start".into()),
                    message: Some("unsafe procfs detected".into()),
                    took_ms: 180,
                    at: "2026-12-02T06:04:25.123Z".into(),
                }),
            },
            log_tail: None,
        };
        let v: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(v["state"], "ready");
        assert_eq!(v["reason"], serde_json::Value::Null);
        assert_eq!(v["dockerd"]["last_exit"]["signal"], 9);
        assert_eq!(v["dockerd"]["warnings"][0], "containers cannot start: ...");
        assert_eq!(v["environment"]["gvisor"], true);
        assert!(v.get("log_tail").is_none());
        assert_eq!(v["network"]["uplink"], "eth0 10.0.0.2");
        assert_eq!(v["network"]["legacy_iptables"], true);
        assert_eq!(v["verify"]["last"]["step"], "start");
        assert_eq!(v["dockerd"]["storage_driver"], "overlay2");
        let back: Status = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
        // A status line without `network` (an older init) still parses.
        let mut v = v;
        v.as_object_mut().unwrap().remove("network");
        let old: Status = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(old.network, NetworkStatus::default());
        assert_eq!(v["environment"]["tls"]["mode"], "generated");
        assert_eq!(v["environment"]["tls"]["host"], "tcp://0.0.0.0:2376");
        assert_eq!(v["environment"]["storage"]["tmpfs"], "8g");
        // Nor without `tls` and `storage` (an older init).
        let mut older = v.clone();
        let env = older["environment"].as_object_mut().unwrap();
        env.remove("tls");
        env.remove("storage");
        let older: Status = serde_json::from_value(older).unwrap();
        assert_eq!(older.environment.tls, TlsStatus::default());
    }
}
