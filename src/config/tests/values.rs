//! Values: what each key accepts, enum spellings, log levels, durations.

use super::*;

#[test]
fn accepted_values() {
    type Check = fn(&Config) -> bool;
    let ok: &[(&str, Check)] = &[
        ("[readiness]\nsocket_mode = \"0660\"", |c| {
            c.readiness.socket_mode == 0o660
        }),
        ("[readiness]\nsocket_mode = \"7777\"", |c| {
            c.readiness.socket_mode == 0o7777
        }),
        ("[readiness]\nsocket_mode = \"000\"", |c| {
            c.readiness.socket_mode == 0
        }),
        ("[readiness]\ntcp = \"\"", |c| c.readiness.tcp.is_none()),
        ("[readiness]\ntcp = \"0.0.0.0:9323\"", |c| {
            c.readiness.tcp == Some(SocketAddr::from(([0, 0, 0, 0], 9323)))
        }),
        ("[readiness]\ninterval = \"0s\"", |c| {
            c.readiness.interval.is_zero()
        }),
        ("[dockerd]\nbackoff_initial = \"30s\"", |c| {
            c.dockerd.backoff_initial == c.dockerd.backoff_max
        }),
        ("[dockerd]\nlog_tail = 1", |c| c.dockerd.log_tail == 1),
        ("[dockerd]\ndata_root_tmpfs = \"\"", |c| {
            c.dockerd.data_root_tmpfs.is_none()
        }),
        ("[dockerd]\ndata_root_tmpfs = \"512m\"", |c| {
            c.dockerd.data_root_tmpfs.as_deref() == Some("512m")
        }),
        ("[dockerd]\ndata_root_tmpfs = \"1024T\"", |c| {
            c.dockerd.data_root_tmpfs.as_deref() == Some("1024t")
        }),
        // Units in either case, sizes and durations alike.
        ("[dockerd]\nstop_timeout = \"10S\"", |c| {
            c.dockerd.stop_timeout == Duration::from_secs(10)
        }),
        ("[dockerd]\nmax_restarts = 4294967295", |c| {
            c.dockerd.max_restarts == u32::MAX
        }),
        ("[dockerd]\nrestart = \"never\"", |c| {
            c.dockerd.restart == RestartPolicy::Never
        }),
        ("[log]\nlevel = \"trace\"", |c| {
            c.log.level == LogLevel::Trace
        }),
        ("[cgroup]\nmode = \"v2\"", |c| {
            c.cgroup.mode == CgroupMode::V2
        }),
        ("[environment]\ngvisor = \"no\"", |c| {
            c.environment.gvisor == GvisorSetting::No
        }),
        ("[log]\njournald = \"on\"", |c| {
            c.log.journald == Journald::On
        }),
    ];
    for (text, check) in ok {
        let config = parse(text, "t.toml").unwrap();
        assert!(check(&config), "{text}: {config:?}");
    }
}

#[test]
fn enum_spellings_round_trip() {
    fn round_trip<T: Choice + std::fmt::Debug + PartialEq>(
        table: &str,
        key: &str,
        get: fn(&Config) -> T,
    ) {
        for value in T::ALL {
            let text = format!("[{table}]\n{key} = {:?}\n", value.name());
            let config = parse(&text, "t.toml").unwrap();
            assert_eq!(get(&config), *value, "{text}");
        }
    }
    round_trip("log", "level", |c| c.log.level);
    round_trip("log", "format", |c| c.log.format);
    round_trip("log", "journald", |c| c.log.journald);
    round_trip("environment", "gvisor", |c| c.environment.gvisor);
    round_trip("cgroup", "mode", |c| c.cgroup.mode);
    round_trip("dockerd", "restart", |c| c.dockerd.restart);
    round_trip("network", "mode", |c| c.network.mode);
    round_trip("readiness", "sd_notify", |c| c.readiness.sd_notify);
    round_trip("readiness", "verify", |c| c.readiness.verify);
}

#[test]
fn log_levels_map_to_tracing() {
    use tracing::level_filters::LevelFilter;
    let table = [
        (LogLevel::Error, LevelFilter::ERROR),
        (LogLevel::Warn, LevelFilter::WARN),
        (LogLevel::Info, LevelFilter::INFO),
        (LogLevel::Debug, LevelFilter::DEBUG),
        (LogLevel::Trace, LevelFilter::TRACE),
    ];
    for (level, filter) in table {
        assert_eq!(level.as_tracing(), filter);
    }
}

#[test]
fn shutdown_timeout_saturates() {
    let table = [
        (8_000, 6_000),
        (2_000, 0),
        (1_000, 0),
        (2_500, 500),
        (60_000, 58_000),
    ];
    for (stop, shutdown) in table {
        let d = DockerdConfig {
            stop_timeout: Duration::from_millis(stop),
            ..DockerdConfig::default()
        };
        assert_eq!(
            d.shutdown_timeout(),
            Duration::from_millis(shutdown),
            "{stop}"
        );
    }
}

#[test]
fn parse_duration_accepts() {
    let table = [
        ("0s", 0),
        ("0ms", 0),
        ("100ms", 100),
        ("5s", 5_000),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("1m30s", 90_000),
        ("1h0m5s", 3_605_000),
        ("1s500ms", 1_500),
        ("007s", 7_000),
        ("90s", 90_000),
        ("8760h", 8760 * 3_600_000),
        // Units in either case, as for sizes.
        ("5S", 5_000),
        ("100MS", 100),
        ("100Ms", 100),
        ("2M", 120_000),
        ("1H30M", 5_400_000),
        ("1h30M5S", 5_405_000),
    ];
    for (text, ms) in table {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }
}

#[test]
fn parse_duration_rejects() {
    let table = [
        ("", "empty duration: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
        ("5", "invalid duration `5`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
        ("0", "invalid duration `0`: expected"),
        ("5x", "invalid duration `5x`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
        ("-1s", "invalid duration `-1s`: expected"),
        ("+1s", "invalid duration `+1s`: expected"),
        ("5 s", "invalid duration `5 s`: expected"),
        (" 5s", "invalid duration ` 5s`: expected"),
        ("5s ", "invalid duration `5s `: expected"),
        ("s", "invalid duration `s`: expected"),
        ("5us", "invalid duration `5us`: expected"),
        ("1d", "invalid duration `1d`: expected"),
        ("1.5s", "invalid duration `1.5s`: fractions are not supported"),
        ("30s1m", "invalid duration `30s1m`: units must go from largest to smallest"),
        ("1s1s", "invalid duration `1s1s`: units must go from largest to smallest"),
        ("8761h", "invalid duration `8761h`: too large (at most 8760h)"),
        ("8760h1ms", "invalid duration `8760h1ms`: too large"),
        ("18446744073709551616ms", "invalid duration `18446744073709551616ms`: too large"),
        ("5s5", "invalid duration `5s5`: expected"),
        ("1M1m", "invalid duration `1M1m`: units must go from largest to smallest"),
        ("5SEC", "invalid duration `5SEC`: expected"),
    ];
    for (text, want) in table {
        let got = parse_duration(text).unwrap_err();
        assert!(
            got.starts_with(want),
            "{text:?}: got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn format_duration_forms() {
    let table = [
        (0, "0s"),
        (100, "100ms"),
        (5_000, "5s"),
        (120_000, "2m"),
        (90_000, "1m30s"),
        (3_600_000, "1h"),
        (3_605_000, "1h5s"),
        (1_500, "1s500ms"),
        (300_000, "5m"),
    ];
    for (ms, text) in table {
        assert_eq!(format_duration(Duration::from_millis(ms)), text);
    }
    assert_eq!(format_duration(Duration::from_micros(1_500)), "1ms");
}

#[test]
fn durations_round_trip() {
    let samples = [
        0,
        1,
        999,
        1_000,
        59_999,
        60_000,
        61_001,
        3_599_999,
        86_400_000,
        8760 * 3_600_000,
    ];
    for ms in samples {
        let d = Duration::from_millis(ms);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
    }
    for text in ["100ms", "5s", "2m", "1h", "1m30s", "1h1m1s1ms"] {
        assert_eq!(format_duration(parse_duration(text).unwrap()), text);
    }
}
