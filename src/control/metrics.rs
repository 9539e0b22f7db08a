//! `GET /metrics` (SPEC §8): the init's state and counters in the Prometheus text
//! exposition format, version 0.0.4 (what `promtool check metrics` validates and
//! every Prometheus-compatible scraper reads).
//!
//! The numbers are read from the model and the listener at request time into a
//! [`Snapshot`]; nothing is kept or updated for metrics elsewhere in the loop.
//!
//! The encoding is our own, a page of code: the `prometheus-client` crate (the
//! official Rust client) would add 41 KB to the static binary (measured on a minimal
//! musl build: 410,168 → 451,224 bytes), and it writes only OpenMetrics 1.0 text
//! (a `# TYPE x counter` line for samples named `x_total`, and a `# EOF` trailer),
//! not the 0.0.4 format the SPEC names.

use std::fmt::Write as _;

/// The states `dind_init_state` has a series for, in this order.
pub const STATES: [&str; 7] = [
    "starting",
    "ready",
    "unhealthy",
    "degraded",
    "restarting",
    "failed",
    "stopping",
];

/// The content type of the 0.0.4 text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connection counters of the status listeners, since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections accepted (unix and TCP).
    pub accepted: u64,
    /// Closed at once, unanswered: the table was full of requests and waits.
    pub rejected: u64,
    /// Slow or silent clients closed to make room for a newer connection.
    pub evicted: u64,
    /// Open now.
    pub open: u64,
}

/// Everything `/metrics` shows, read at request time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The current state's name (one of [`STATES`]).
    pub state: &'static str,
    pub dockerd_up: bool,
    pub dockerd_restarts: u64,
    /// Unix time of the current (or last) dockerd start.
    pub dockerd_start_time: Option<f64>,
    /// From the last dockerd start to its readiness, when it got there.
    pub time_to_ready: Option<f64>,
    pub orphans_reaped: u64,
    pub signals_forwarded: u64,
    pub health_ping_failures: u64,
    pub connections: ConnStats,
    /// Current warnings (cgroup, network, dockerd's known limits).
    pub warnings: u64,
}

/// One metric family's header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition text.
pub fn encode(s: &Snapshot) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "dind_init_info",
        "gauge",
        "Always 1; the dind-init version as a label.",
    );
    let _ = writeln!(
        out,
        "dind_init_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "dind_init_state",
        "gauge",
        "1 for the current state of dockerd as status shows it, 0 for the others.",
    );
    for state in STATES {
        let _ = writeln!(
            out,
            "dind_init_state{{state=\"{state}\"}} {}",
            u8::from(state == s.state)
        );
    }
    family(
        &mut out,
        "dind_init_dockerd_up",
        "gauge",
        "1 while a dockerd process runs.",
    );
    sample(&mut out, "dind_init_dockerd_up", u8::from(s.dockerd_up));
    family(
        &mut out,
        "dind_init_dockerd_restarts_total",
        "counter",
        "dockerd restarts since the init started (the first start is not one).",
    );
    sample(
        &mut out,
        "dind_init_dockerd_restarts_total",
        s.dockerd_restarts,
    );
    if let Some(t) = s.dockerd_start_time {
        family(
            &mut out,
            "dind_init_dockerd_start_time_seconds",
            "gauge",
            "Unix time of the last dockerd start.",
        );
        let _ = writeln!(out, "dind_init_dockerd_start_time_seconds {t:.3}");
    }
    if let Some(t) = s.time_to_ready {
        family(
            &mut out,
            "dind_init_time_to_ready_seconds",
            "gauge",
            "Seconds from the last dockerd start to its readiness.",
        );
        let _ = writeln!(out, "dind_init_time_to_ready_seconds {t:.6}");
    }
    for (name, help, value) in [
        (
            "dind_init_orphans_reaped_total",
            "Exited processes reaped that were neither dockerd, COMMAND nor a helper.",
            s.orphans_reaped,
        ),
        (
            "dind_init_signals_forwarded_total",
            "Signals passed on to COMMAND or dockerd.",
            s.signals_forwarded,
        ),
        (
            "dind_init_health_ping_failures_total",
            "Health pings of dockerd that failed or timed out.",
            s.health_ping_failures,
        ),
        (
            "dind_init_status_connections_total",
            "Connections accepted on the status socket and TCP listener.",
            s.connections.accepted,
        ),
        (
            "dind_init_status_connections_rejected_total",
            "Connections closed unanswered because every slot held a request or a wait.",
            s.connections.rejected,
        ),
        (
            "dind_init_status_connections_evicted_total",
            "Slow or silent clients closed to make room for a newer connection.",
            s.connections.evicted,
        ),
    ] {
        family(&mut out, name, "counter", help);
        sample(&mut out, name, value);
    }
    family(
        &mut out,
        "dind_init_warnings",
        "gauge",
        "Current warnings in status (cgroup, network, dockerd's known limits).",
    );
    sample(&mut out, "dind_init_warnings", s.warnings);
    out
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let s = Snapshot {
            state: "ready",
            dockerd_up: true,
            dockerd_restarts: 2,
            dockerd_start_time: Some(1_765_000_000.25),
            time_to_ready: Some(0.612),
            orphans_reaped: 7,
            signals_forwarded: 3,
            health_ping_failures: 1,
            connections: ConnStats {
                accepted: 40,
                rejected: 0,
                evicted: 5,
                open: 1,
            },
            warnings: 1,
        };
        let text = encode(&s);
        for line in [
            "# TYPE dind_init_state gauge",
            "dind_init_state{state=\"ready\"} 1",
            "dind_init_state{state=\"starting\"} 0",
            "dind_init_dockerd_up 1",
            "# TYPE dind_init_dockerd_restarts_total counter",
            "dind_init_dockerd_restarts_total 2",
            "dind_init_dockerd_start_time_seconds 1765000000.250",
            "dind_init_time_to_ready_seconds 0.612000",
            "dind_init_orphans_reaped_total 7",
            "dind_init_status_connections_evicted_total 5",
            "dind_init_warnings 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Every sample line belongs to the family declared just before it.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, family, "{line}");
            }
        }
        // No start yet: the time series are absent rather than zero.
        let empty = encode(&Snapshot {
            state: "starting",
            ..Snapshot::default()
        });
        assert!(!empty.contains("dind_init_time_to_ready_seconds"));
        assert!(empty.contains("dind_init_state{state=\"starting\"} 1"));
    }
}
