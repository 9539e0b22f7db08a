//! What the init knows and shows: dockerd's supervisor, the shutdown in progress,
//! dockerd's last output lines and the known limits seen in it, and what boot and
//! the network setup found. The event loop changes it; the status socket, the
//! ready file and sd_notify only read it ([`Answers`] is implemented here, so the
//! control server takes a `&Model` while the loop keeps `&mut` of the rest).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::control::metrics::Snapshot;
use crate::control::protocol::Answers;
use crate::control::status::{
    self, CgroupStatus, DockerdStatus, EnvironmentStatus, NetworkStatus, SdNotifyStatus, Status,
    VerifyStatus,
};
use crate::run::limits;
use crate::run::output::Tail;
use crate::run::shutdown::Shutdown;
use crate::run::supervisor::{State, Supervisor};

/// The state `status` shows (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Starting,
    Ready,
    Unhealthy,
    /// dockerd answers, but a test container could not run.
    Degraded,
    Restarting,
    Failed,
    Stopping,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Starting => "starting",
            Shown::Ready => "ready",
            Shown::Unhealthy => "unhealthy",
            Shown::Degraded => "degraded",
            Shown::Restarting => "restarting",
            Shown::Failed => "failed",
            Shown::Stopping => "stopping",
        }
    }
}

#[derive(Debug)]
pub struct Model {
    pub supervisor: Supervisor,
    pub shutdown: Option<Shutdown>,
    /// dockerd's last output lines (both streams).
    pub tail: Tail,
    /// Known limits seen in this dockerd run's output (SPEC §7).
    pub limits: limits::Seen,
    pub cgroup: CgroupStatus,
    pub environment: EnvironmentStatus,
    /// What the last nested-network setup found and did.
    pub network: NetworkStatus,
    pub counters: Counters,
    /// `readiness.verify` and the last container check.
    pub verify: VerifyStatus,
    /// The storage driver dockerd reported once ready, this run.
    pub storage_driver: Option<String>,
    /// sd_notify upward: where, how many, what failed.
    pub sd_notify: SdNotifyStatus,
}

/// The warning for dockerd's `vfs` storage driver (SPEC §11).
pub const VFS_WARNING: &str = "dockerd uses the vfs storage driver (every layer a full copy: slow builds, much disk): overlay2 cannot be mounted on this data root (in gVisor the sandbox's root is an overlay); put dockerd's data root on a tmpfs ([dockerd] data_root_tmpfs = \"8g\", or docker run --tmpfs /var/lib/docker:exec,size=8g)";

/// What the init counted since boot, and when dockerd last started and got ready
/// (for `/metrics`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub orphans_reaped: u64,
    pub signals_forwarded: u64,
    pub health_ping_failures: u64,
    /// The last dockerd start, monotonic and wall-clock.
    pub dockerd_started: Option<(Instant, SystemTime)>,
    /// From that start to readiness, once it got there.
    pub time_to_ready: Option<Duration>,
}

impl Model {
    /// The shown state and its reason.
    pub fn shown(&self) -> (Shown, Option<&str>) {
        if self.shutdown.is_some() {
            return (Shown::Stopping, None);
        }
        let state = match self.supervisor.state() {
            State::Starting => Shown::Starting,
            State::Ready => Shown::Ready,
            State::Unhealthy => Shown::Unhealthy,
            State::Degraded => Shown::Degraded,
            State::Restarting => Shown::Restarting,
            State::Failed => Shown::Failed,
            State::Stopping | State::Stopped => Shown::Stopping,
        };
        (state, self.supervisor.reason())
    }

    /// The status document; `with_tail` adds dockerd's last lines.
    pub fn status(&self, with_tail: bool) -> Status {
        let now = Instant::now();
        let (state, reason) = self.shown();
        let since = match &self.shutdown {
            Some(sd) => sd.started(),
            None => self.supervisor.since(),
        };
        Status {
            state: state.as_str().to_owned(),
            reason: reason.map(str::to_owned),
            since: status::rfc3339(since, now, SystemTime::now()),
            dockerd: DockerdStatus {
                pid: self.supervisor.pid(),
                restarts: self.supervisor.restarts(),
                last_exit: self.supervisor.last_exit().map(Into::into),
                warnings: self.warnings(),
                storage_driver: self.storage_driver.clone(),
            },
            cgroup: self.cgroup.clone(),
            environment: self.environment.clone(),
            network: self.network.clone(),
            verify: self.verify.clone(),
            sd_notify: self.sd_notify.clone(),
            log_tail: with_tail.then(|| {
                self.tail
                    .lines()
                    .map(|l| format!("{}: {}", l.stream.as_str(), l.text))
                    .collect()
            }),
        }
    }
}

impl Model {
    /// dockerd's warnings: the known limits seen in its output, and vfs.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.limits.warnings();
        if self.storage_driver.as_deref() == Some("vfs") {
            w.push(VFS_WARNING.to_owned());
        }
        w
    }
}

impl Answers for Model {
    fn is_ready(&self) -> bool {
        self.shown().0 == Shown::Ready
    }

    fn is_final(&self) -> bool {
        matches!(self.shown().0, Shown::Failed | Shown::Stopping)
    }

    fn status_json(&self) -> String {
        self.status(true).to_json()
    }

    fn not_ready_text(&self) -> String {
        match self.shown() {
            (state, Some(r)) => format!("{}: {r}", state.as_str()),
            (state, None) => state.as_str().to_owned(),
        }
    }

    fn metrics(&self) -> Snapshot {
        let c = &self.counters;
        Snapshot {
            state: self.shown().0.as_str(),
            dockerd_up: self.supervisor.pid().is_some(),
            dockerd_restarts: u64::from(self.supervisor.restarts()),
            dockerd_start_time: c.dockerd_started.and_then(|(_, wall)| {
                wall.duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64())
            }),
            time_to_ready: c.time_to_ready.map(|d| d.as_secs_f64()),
            orphans_reaped: c.orphans_reaped,
            signals_forwarded: c.signals_forwarded,
            health_ping_failures: c.health_ping_failures,
            connections: Default::default(),
            warnings: (self.cgroup.warnings.len()
                + self.network.warnings.len()
                + self.warnings().len()) as u64,
        }
    }
}
