//! The configuration's unit tests: defaults, every key, every error's wording and
//! position, hostile input.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn err(text: &str) -> String {
    match parse(text, "t.toml") {
        Ok(config) => panic!("expected an error for {text:?}, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_match_spec() {
    let c = Config::default();
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.journald, Journald::Auto);
    assert_eq!(c.environment.gvisor, GvisorSetting::Auto);
    assert_eq!(c.cgroup.mode, CgroupMode::Auto);
    assert!(c.cgroup.stub_missing);
    assert_eq!(c.dockerd.path, "dockerd");
    assert!(c.dockerd.args.is_empty());
    assert_eq!(c.dockerd.socket, Path::new("/var/run/docker.sock"));
    assert!(c.dockerd.env.is_empty());
    assert_eq!(c.dockerd.restart, RestartPolicy::Always);
    assert_eq!(c.dockerd.backoff_initial, Duration::from_millis(100));
    assert_eq!(c.dockerd.backoff_max, Duration::from_secs(30));
    assert_eq!(c.dockerd.max_restarts, 10);
    assert_eq!(c.dockerd.restart_window, Duration::from_secs(300));
    assert_eq!(c.dockerd.stop_timeout, Duration::from_secs(8));
    assert_eq!(c.dockerd.shutdown_timeout(), Duration::from_secs(6));
    assert_eq!(c.dockerd.log_tail, 200);
    assert_eq!(c.network.mode, NetworkMode::Auto);
    assert_eq!(c.readiness.file, Path::new("/run/dind-init/ready"));
    assert_eq!(c.readiness.socket, Path::new("/run/dind-init/init.sock"));
    assert_eq!(c.readiness.socket_mode, 0o660);
    assert_eq!(c.readiness.tcp, None);
    assert_eq!(c.readiness.interval, Duration::from_secs(5));
    assert_eq!(c.readiness.timeout, Duration::from_secs(2));
    assert_eq!(c.readiness.failure_threshold, 3);
    assert!(!c.readiness.restart_on_unhealthy);
    assert_eq!(c.readiness.sd_notify, SdNotify::Auto);
    assert!(c.command.wait_for_ready);
    assert_eq!(c.command.ready_timeout, Duration::from_secs(60));
}

#[test]
fn empty_text_and_empty_tables_give_defaults() {
    for text in [
        "",
        "\n# nothing\n",
        "[log]\n[environment]\n[cgroup]\n[dockerd]\n[network]\n[readiness]\n[command]\n",
    ] {
        assert_eq!(
            parse(text, "t.toml").unwrap(),
            Config::default(),
            "{text:?}"
        );
    }
}

#[test]
fn example_file_parses_to_defaults() {
    let text = include_str!("../../init.toml.example");
    assert_eq!(parse(text, "init.toml.example").unwrap(), Config::default());
}

#[test]
fn full_file_parses() {
    let text = r#"
[log]
level = "debug"
format = "json"
journald = "off"

[environment]
gvisor = "yes"

[cgroup]
mode = "v1"
stub_missing = false

[dockerd]
path = "/usr/local/bin/dockerd"
args = ["--storage-driver=vfs", "--debug"]
socket = "/run/docker.sock"
env = { HTTP_PROXY = "http://proxy:3128", "A.B" = "1" }
restart = "on-failure"
backoff_initial = "1s"
backoff_max = "1m30s"
max_restarts = 0
restart_window = "1h"
stop_timeout = "1s"
log_tail = 100000
data_root_tmpfs = "8G"

[network]
mode = "off"

[readiness]
file = "/tmp/ready"
socket = "/tmp/init.sock"
socket_mode = "600"
tcp = "[::1]:9323"
interval = "0s"
timeout = "500ms"
failure_threshold = 1
restart_on_unhealthy = true
sd_notify = "off"
verify = "container"

[command]
wait_for_ready = false
ready_timeout = "2m"
"#;
    let c = parse(text, "t.toml").unwrap();
    let expected = Config {
        log: LogConfig {
            level: LogLevel::Debug,
            format: LogFormat::Json,
            journald: Journald::Off,
        },
        environment: EnvironmentConfig {
            gvisor: GvisorSetting::Yes,
        },
        cgroup: CgroupConfig {
            mode: CgroupMode::V1,
            stub_missing: false,
        },
        dockerd: DockerdConfig {
            path: "/usr/local/bin/dockerd".to_owned(),
            args: vec!["--storage-driver=vfs".to_owned(), "--debug".to_owned()],
            socket: PathBuf::from("/run/docker.sock"),
            env: BTreeMap::from([
                ("A.B".to_owned(), "1".to_owned()),
                ("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned()),
            ]),
            restart: RestartPolicy::OnFailure,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(90),
            max_restarts: 0,
            restart_window: Duration::from_secs(3600),
            stop_timeout: Duration::from_secs(1),
            log_tail: 100_000,
            data_root_tmpfs: Some("8g".to_owned()),
        },
        network: NetworkConfig {
            mode: NetworkMode::Off,
        },
        readiness: ReadinessConfig {
            file: PathBuf::from("/tmp/ready"),
            socket: PathBuf::from("/tmp/init.sock"),
            socket_mode: 0o600,
            tcp: Some("[::1]:9323".parse().unwrap()),
            interval: Duration::ZERO,
            timeout: Duration::from_millis(500),
            failure_threshold: 1,
            restart_on_unhealthy: true,
            sd_notify: SdNotify::Off,
            verify: Verify::Container,
        },
        command: CommandConfig {
            wait_for_ready: false,
            ready_timeout: Duration::from_secs(120),
        },
    };
    assert_eq!(c, expected);
    assert_eq!(c.dockerd.shutdown_timeout(), Duration::ZERO);
}

#[test]
fn dotted_keys_and_inline_tables_work() {
    let c = parse(
        "dockerd.path = \"/d\"\nreadiness = { tcp = \"127.0.0.1:1\" }\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.dockerd.path, "/d");
    assert_eq!(c.readiness.tcp, Some("127.0.0.1:1".parse().unwrap()));
}

/// (what, text, expected message prefix "t.toml:L:C: key: ", expected fragment)
const ERRORS: &[(&str, &str, &str, &str)] = &[
    // unknown keys and tables
    ("unknown top-level key", "levle = \"info\"\n", "t.toml:1:1: levle: ", "unknown key (expected: log, environment, cgroup, dockerd, network, readiness, command)"),
    ("unknown key in table", "[log]\nlevel = \"info\"\nlevle = \"info\"\n", "t.toml:3:1: log.levle: ", "unknown key; did you mean `level`? (expected: level, format, journald)"),
    ("unknown key, single choice", "[network]\nmod = \"off\"\n", "t.toml:2:1: network.mod: ", "unknown key; did you mean `mode`? (expected: mode)"),
    ("unknown table", "[log]\n\n[logging]\nlevel = \"x\"\n", "t.toml:3:2: logging: ", "unknown table (expected: log, environment, cgroup"),
    ("unknown subtable", "[dockerd.extra]\nx = 1\n", "t.toml:1:10: dockerd.extra: ", "unknown table (expected: path, args"),
    ("unknown dotted key", "log.colour = true\n", "t.toml:1:5: log.colour: ", "unknown key"),
    ("unknown key, near miss", "[readiness]\nverfy = \"ping\"\n", "t.toml:2:1: readiness.verfy: ", "unknown key; did you mean `verify`? (expected: file, socket, "),
    ("unknown table, near miss", "[readines]\n", "t.toml:1:2: readines: ", "unknown table; did you mean `readiness`? (expected: log, "),
    ("unknown key, whole list", "[dockerd]\nfoo = 1\n", "t.toml:2:1: dockerd.foo: ", "unknown key (expected: path, args, socket, env, restart, backoff_initial, backoff_max, max_restarts, restart_window, stop_timeout, log_tail, data_root_tmpfs)"),
    ("unknown key, near miss, list shortened", "[dockerd]\nstop_timout = \"8s\"\n", "t.toml:2:1: dockerd.stop_timout: ", "unknown key; did you mean `stop_timeout`? (expected: path, args, "),
    // wrong types
    ("string for bool", "[cgroup]\nstub_missing = \"yes\"\n", "t.toml:2:16: cgroup.stub_missing: ", "invalid type: string \"yes\", expected a boolean"),
    ("integer for table", "log = 5\n", "t.toml:1:7: log: ", "invalid type: integer, expected a table"),
    ("empty array for table", "\nlog = []\n", "t.toml:2:7: log: ", "invalid type: array, expected a table"),
    ("array for table", "log = [\"debug\"]\n", "t.toml:1:7: log: ", "invalid type: array, expected a table"),
    ("array of tables", "[[dockerd]]\npath = \"x\"\n", "t.toml:1:1: dockerd: ", "invalid type: array, expected a table"),
    ("string for integer", "[dockerd]\nmax_restarts = \"3\"\n", "t.toml:2:16: dockerd.max_restarts: ", "expected a whole number from 0 to 4294967295"),
    ("negative u32", "[dockerd]\nmax_restarts = -1\n", "t.toml:2:16: dockerd.max_restarts: ", "invalid value: integer `-1`"),
    ("float for usize", "[dockerd]\nlog_tail = 1.5\n", "t.toml:2:12: dockerd.log_tail: ", "expected a non-negative whole number"),
    ("integer in args", "[dockerd]\nargs = [\"-D\",\n  7]\n", "t.toml:3:3: dockerd.args[1]: ", "invalid type: integer `7`, expected a string"),
    ("args not array", "[dockerd]\nargs = \"-D\"\n", "t.toml:2:8: dockerd.args: ", "expected an array"),
    ("env not table", "[dockerd]\nenv = []\n", "t.toml:2:7: dockerd.env: ", "expected a table"),
    ("env value not string", "[dockerd]\nenv = { A = 1 }\n", "t.toml:2:13: dockerd.env.A: ", "invalid type: integer `1`, expected a string"),
    ("env subtable value", "[dockerd.env]\nB = \"x\"\nA = true\n", "t.toml:3:5: dockerd.env.A: ", "expected a string"),
    ("path integer", "[readiness]\nfile = 1\n", "t.toml:2:8: readiness.file: ", "expected a path string"),
    // durations
    ("duration without unit", "[dockerd]\n\n\n\n\n\nstop_timeout = \"8\"\n", "t.toml:7:16: dockerd.stop_timeout: ", "invalid duration `8`: expected a number followed by ms, s, m or h (e.g. 100ms, 5s, 2m)"),
    ("duration bad unit", "[dockerd]\nbackoff_max = \"5x\"\n", "t.toml:2:15: dockerd.backoff_max: ", "invalid duration `5x`: expected a number followed by ms, s, m or h"),
    ("duration integer", "[command]\nready_timeout = 60\n", "t.toml:2:17: command.ready_timeout: ", "invalid duration `60`: write a quoted number with a unit, e.g. \"60s\""),
    ("duration negative", "[readiness]\ninterval = \"-1s\"\n", "t.toml:2:12: readiness.interval: ", "invalid duration `-1s`"),
    ("duration space", "[readiness]\ninterval = \"5 s\"\n", "t.toml:2:12: readiness.interval: ", "invalid duration `5 s`"),
    ("duration empty", "[readiness]\ninterval = \"\"\n", "t.toml:2:12: readiness.interval: ", "empty duration"),
    ("duration fraction", "[readiness]\ninterval = \"1.5s\"\n", "t.toml:2:12: readiness.interval: ", "fractions are not supported"),
    ("duration order", "[readiness]\ninterval = \"30s1m\"\n", "t.toml:2:12: readiness.interval: ", "largest to smallest"),
    ("duration overflow", "[readiness]\ninterval = \"99999999999999999999999h\"\n", "t.toml:2:12: readiness.interval: ", "too large"),
    ("duration float", "[readiness]\ntimeout = 1.5\n", "t.toml:2:11: readiness.timeout: ", "expected a duration string such as \"5s\""),
    // enums
    ("bad level", "[log]\nlevel = \"verbose\"\n", "t.toml:2:9: log.level: ", "invalid value `verbose`: expected one of: error, warn, info, debug, trace"),
    ("uppercase level", "[log]\nlevel = \"INFO\"\n", "t.toml:2:9: log.level: ", "invalid value `INFO`"),
    ("level integer", "[log]\nlevel = 3\n", "t.toml:2:9: log.level: ", "invalid type: integer `3`, expected a string, one of: error, warn, info, debug, trace"),
    ("bad restart", "[dockerd]\nrestart = \"on_failure\"\n", "t.toml:2:11: dockerd.restart: ", "expected one of: always, on-failure, never"),
    ("bad gvisor", "[environment]\ngvisor = \"true\"\n", "t.toml:2:10: environment.gvisor: ", "invalid value `true`: expected one of: auto, yes, no"),
    ("gvisor boolean", "[environment]\ngvisor = true\n", "t.toml:2:10: environment.gvisor: ", "invalid type: boolean `true`, expected a string, one of: auto, yes, no"),
    ("unknown environment key", "[environment]\ngvisor = \"auto\"\nrunsc = \"yes\"\n", "t.toml:3:1: environment.runsc: ", "unknown key (expected: gvisor)"),
    ("bad cgroup mode", "[cgroup]\nmode = \"hybrid\"\n", "t.toml:2:8: cgroup.mode: ", "expected one of: auto, v1, v2, off"),
    ("bad journald", "[log]\njournald = \"yes\"\n", "t.toml:2:12: log.journald: ", "expected one of: auto, on, off"),
    ("bad network", "[network]\nmode = \"on\"\n", "t.toml:2:8: network.mode: ", "expected one of: auto, off"),
    ("bad sd_notify", "[readiness]\nsd_notify = \"on\"\n", "t.toml:2:13: readiness.sd_notify: ", "expected one of: auto, off"),
    ("bad format", "[log]\nformat = \"logfmt\"\n", "t.toml:2:10: log.format: ", "expected one of: text, json"),
    // data_root_tmpfs
    ("size no unit", "[dockerd]\ndata_root_tmpfs = \"8\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `8`: no unit; expected a number followed by k, m, g or t"),
    ("size integer", "[dockerd]\ndata_root_tmpfs = 8\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `8`: write a quoted number with a unit, e.g. \"8g\""),
    ("size zero", "[dockerd]\ndata_root_tmpfs = \"0g\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `0g`: zero"),
    ("size fraction", "[dockerd]\ndata_root_tmpfs = \"1.5g\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `1.5g`: not a whole number"),
    ("size sign", "[dockerd]\ndata_root_tmpfs = \"-1g\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `-1g`: not a whole number"),
    ("size unit only", "[dockerd]\ndata_root_tmpfs = \"g\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `g`: not a whole number"),
    ("size bad unit", "[dockerd]\ndata_root_tmpfs = \"8gb\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `8gb`: unknown unit `gb`; use k, m, g or t (powers of 1024), e.g. \"8g\""),
    ("size binary unit", "[dockerd]\ndata_root_tmpfs = \"512MiB\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `512MiB`: unknown unit `MiB`; use k, m, g or t (powers of 1024), e.g. \"512m\""),
    ("size unknown letter", "[dockerd]\ndata_root_tmpfs = \"8p\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `8p`: unknown unit `p`; use k, m, g or t (powers of 1024), e.g. \"8g\""),
    ("size percent", "[dockerd]\ndata_root_tmpfs = \"50%\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `50%`: unknown unit `%`"),
    ("size digit after unit", "[dockerd]\ndata_root_tmpfs = \"8g8\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "invalid size `8g8`: not a whole number"),
    ("size huge", "[dockerd]\ndata_root_tmpfs = \"2000t\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "larger than 1 PiB"),
    ("size overflow", "[dockerd]\ndata_root_tmpfs = \"999999999999999999999999g\"\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "too large"),
    ("size boolean", "[dockerd]\ndata_root_tmpfs = true\n", "t.toml:2:19: dockerd.data_root_tmpfs: ", "expected a size string such as \"8g\""),
    // socket_mode
    ("mode not octal", "[readiness]\nsocket_mode = \"0980\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `0980`: expected 3 or 4 octal digits"),
    ("mode too long", "[readiness]\nsocket_mode = \"00660\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `00660`"),
    ("mode too short", "[readiness]\nsocket_mode = \"66\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `66`"),
    ("mode sign", "[readiness]\nsocket_mode = \"+660\"\n", "t.toml:2:15: readiness.socket_mode: ", "invalid mode `+660`"),
    ("mode integer", "[readiness]\nsocket_mode = 660\n", "t.toml:2:15: readiness.socket_mode: ", "write it as a quoted octal string"),
    // tcp
    ("tcp hostname", "[readiness]\ntcp = \"localhost:9323\"\n", "t.toml:2:7: readiness.tcp: ", "invalid address `localhost:9323`: expected IP:port"),
    ("tcp no port", "[readiness]\ntcp = \"0.0.0.0\"\n", "t.toml:2:7: readiness.tcp: ", "invalid address `0.0.0.0`"),
    ("tcp port 0", "[readiness]\ntcp = \"0.0.0.0:0\"\n", "t.toml:2:7: readiness.tcp: ", "port must not be 0"),
    ("tcp integer", "[readiness]\ntcp = 9323\n", "t.toml:2:7: readiness.tcp: ", "invalid type: integer `9323`"),
    // out-of-range numbers
    ("u32 overflow", "[readiness]\nfailure_threshold = 4294967296\n", "t.toml:2:21: readiness.failure_threshold: ", "invalid value"),
    ("failure_threshold 0", "[readiness]\nfailure_threshold = 0\n", "t.toml:2:21: readiness.failure_threshold: ", "must be at least 1"),
    ("log_tail 0", "[dockerd]\nlog_tail = 0\n", "t.toml:2:12: dockerd.log_tail: ", "must be between 1 and 100000, got 0"),
    ("log_tail huge", "[dockerd]\nlog_tail = 100001\n", "t.toml:2:12: dockerd.log_tail: ", "must be between 1 and 100000"),
    ("stop_timeout too short", "[dockerd]\nstop_timeout = \"999ms\"\n", "t.toml:2:16: dockerd.stop_timeout: ", "must be at least 1s"),
    ("restart_window zero", "[dockerd]\nrestart_window = \"0s\"\n", "t.toml:2:18: dockerd.restart_window: ", "must be more than 0s"),
    ("backoff_initial zero", "[dockerd]\nbackoff_initial = \"0ms\"\n", "t.toml:2:19: dockerd.backoff_initial: ", "must be more than 0s"),
    ("timeout zero", "[readiness]\ntimeout = \"0s\"\n", "t.toml:2:11: readiness.timeout: ", "must be more than 0s"),
    ("ready_timeout zero", "[command]\nready_timeout = \"0s\"\n", "t.toml:2:17: command.ready_timeout: ", "must be more than 0s"),
    // cross-field and strings
    ("backoff order, both set", "[dockerd]\nbackoff_max = \"1s\"\nbackoff_initial = \"2s\"\n", "t.toml:3:19: dockerd.backoff_initial: ", "backoff_initial (2s) must not exceed backoff_max (1s)"),
    ("backoff order, initial set", "[dockerd]\nbackoff_initial = \"1m\"\n", "t.toml:2:19: dockerd.backoff_initial: ", "backoff_initial (1m) must not exceed backoff_max (30s)"),
    ("backoff order, max set", "[dockerd]\nbackoff_max = \"50ms\"\n", "t.toml:2:15: dockerd.backoff_max: ", "backoff_initial (100ms) must not exceed backoff_max (50ms)"),
    ("empty dockerd path", "[dockerd]\npath = \"\"\n", "t.toml:2:8: dockerd.path: ", "must not be empty"),
    ("NUL in args", "[dockerd]\nargs = [\"a\", \"b\\u0000\"]\n", "t.toml:2:14: dockerd.args[1]: ", "must not contain NUL"),
    ("relative socket", "[dockerd]\nsocket = \"docker.sock\"\n", "t.toml:2:10: dockerd.socket: ", "must be an absolute path"),
    ("relative ready file", "[readiness]\nfile = \"ready\"\n", "t.toml:2:8: readiness.file: ", "must be an absolute path"),
    ("relative status socket", "[readiness]\nsocket = \"./init.sock\"\n", "t.toml:2:10: readiness.socket: ", "must be an absolute path"),
    ("long socket path", "[readiness]\nsocket = \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n", "t.toml:2:10: readiness.socket: ", "is 108 bytes long"),
    ("same sockets", "[readiness]\nsocket = \"/var/run/docker.sock\"\n", "t.toml:2:10: readiness.socket: ", "readiness.socket and dockerd.socket must differ"),
    ("same sockets, dockerd set", "[dockerd]\nsocket = \"/run/dind-init/init.sock\"\n", "t.toml:2:10: dockerd.socket: ", "readiness.socket and dockerd.socket must differ"),
    ("ready file is dockerd socket", "[dockerd]\nsocket = \"/run/dind-init/ready\"\n", "t.toml:2:10: dockerd.socket: ", "readiness.file must differ"),
    ("ready file is socket", "[readiness]\nfile = \"/run/dind-init/init.sock\"\n", "t.toml:2:8: readiness.file: ", "must differ"),
    ("env empty name", "[dockerd.env]\n\"\" = \"x\"\n", "t.toml:2:1: dockerd.env.\"\": ", "names must not be empty"),
    ("env name with =", "[dockerd]\nenv = { \"A=B\" = \"x\" }\n", "t.toml:2:9: dockerd.env.\"A=B\": ", "must not contain `=` or NUL"),
    ("env NUL value", "[dockerd.env]\nA = \"\\u0000\"\n", "t.toml:2:5: dockerd.env.A: ", "must not contain NUL"),
    // syntax
    ("duplicate key", "[log]\nlevel = \"info\"\nlevel = \"warn\"\n", "t.toml:3:1: log.level: ", "duplicate key"),
    ("unquoted string", "[dockerd]\nstop_timeout = 8s\n", "t.toml:2:16: dockerd.stop_timeout: ", "string values must be quoted"),
    ("missing value", "[log]\nlevel =\n", "t.toml:2:8: log.level: ", ""),
];

#[test]
fn errors_name_key_line_and_column() {
    for (what, text, prefix, fragment) in ERRORS {
        let message = err(text);
        assert!(
            message.starts_with(prefix) && message.contains(fragment),
            "{what}: got {message:?}, want prefix {prefix:?} and {fragment:?}"
        );
        assert!(!message.contains('\n'), "{what}: multi-line {message:?}");
    }
}

/// SPEC §3: the message stays within its bound, a suggestion first and the list cut only
/// between names, for a near miss of every key of every table and for a far one.
#[test]
fn unknown_names_fit_the_bound() {
    let tables: [(&str, &[&str]); 3] = [
        ("unknown table", &TABLES),
        ("unknown key", &DOCKERD_KEYS),
        ("unknown key", &READINESS_KEYS),
    ];
    for (what, names) in tables {
        for name in names {
            // A near miss: the last character dropped.
            let word = &name[..name.len() - 1];
            let message = unknown_name(what, word, names);
            let suggestion = format!("{what}; did you mean `{name}`? (expected: ");
            assert!(message.starts_with(&suggestion), "{word}: {message}");
            assert!(message.len() <= MAX_MESSAGE_BYTES, "{word}: {message}");
            let list = message[suggestion.len()..].trim_end_matches(')');
            for shown in list.split(", ") {
                assert!(
                    names.contains(&shown) || shown == ELLIPSIS,
                    "{word}: {message}"
                );
            }
        }
        let message = unknown_name(what, "zzzzzzzz", names);
        assert_eq!(message, format!("{what} (expected: {})", names.join(", ")));
        assert!(message.len() <= MAX_MESSAGE_BYTES, "{message}");
    }
}

#[test]
fn list_within_table() {
    let names = ["alpha", "beta", "gamma"];
    for (max, want) in [
        (100, "alpha, beta, gamma"),
        (18, "alpha, beta, gamma"),
        (17, "alpha, beta, …"),
        (16, "alpha, beta, …"),
        (15, "alpha, …"),
        (10, "alpha, …"),
        (9, "…"),
        (3, "…"),
    ] {
        assert_eq!(list_within(&names, max), want, "{max}");
    }
}

#[test]
fn syntax_error_outside_a_key_still_has_a_position() {
    let message = err("[log]\n[dockerd\n");
    assert!(message.starts_with("t.toml:2:9: "), "{message}");
}

#[test]
fn invalid_error_fields() {
    match parse("\n[log]\nlevel = \"x\"\n", "/etc/x.toml") {
        Err(ConfigError::Invalid {
            origin,
            line,
            column,
            key,
            ..
        }) => {
            assert_eq!(origin, "/etc/x.toml");
            assert_eq!((line, column), (3, 9));
            assert_eq!(key.as_deref(), Some("log.level"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn columns_count_characters() {
    let message = err("[dockerd]\nenv = { \"é\" = \"x\", \"A=\" = \"y\" }\n");
    assert!(
        message.starts_with("t.toml:2:20: dockerd.env.\"A=\": "),
        "{message}"
    );
}

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

/// The `toml` crate's own rejections (syntax, TOML's rules) and TOML types that no key
/// takes: each still names the key, line and column. The messages after the key are
/// the crate's wording.
const TOML_ERRORS: &[(&str, &str, &str)] = &[
    (
        "[command]\nready_timeout = 1979-05-27\n",
        "t.toml:2:17: command.ready_timeout: ",
        "invalid type: date-time `1979-05-27`, expected a duration string such as \"5s\"",
    ),
    (
        "[cgroup]\nstub_missing = 1.0\n",
        "t.toml:2:16: cgroup.stub_missing: ",
        "invalid type: float `1.0`, expected a boolean",
    ),
    (
        "[dockerd]\nmax_restarts = 010\n",
        "t.toml:2:16: dockerd.max_restarts: ",
        "unexpected leading zero",
    ),
    (
        "[dockerd]\npath = \"\\q\"\n",
        "t.toml:2:10: dockerd.path: ",
        "missing escaped value",
    ),
    ("[log]\n[log]\n", "t.toml:2:2: log: ", "duplicate key"),
    (
        "dockerd = { path = \"/d\" }\n[dockerd]\n",
        "t.toml:2:2: dockerd: ",
        "duplicate key",
    ),
    (
        "[dockerd]\nenv = { A = \"x\" }\n[dockerd.env]\n",
        "t.toml:3:10: dockerd.env: ",
        "duplicate key",
    ),
    (
        "[[dockerd.env]]\n",
        "t.toml:1:1: dockerd.env: ",
        "invalid type: array, expected a table",
    ),
    (
        "[log]\nlevel = \"x\" junk\n",
        "t.toml:2:13: log.level: ",
        "unexpected key or value",
    ),
    (
        "[log]\nlevel = \"a\\nb\"\n",
        "t.toml:2:9: log.level: ",
        "invalid value `a\\nb`",
    ),
    (
        "[dockerd]\nargs = [\"a\", [\"b\"]]\n",
        "t.toml:2:14: dockerd.args[1]: ",
        "invalid type: array, expected a string",
    ),
    (
        "[dockerd]\nargs = [\"a\",\n  \"b\" \"c\"]\n",
        "t.toml:3:7: dockerd.args: ",
        "missing comma between array elements",
    ),
    (
        "[readiness]\ntcp = { a = 1 }\n",
        "t.toml:2:7: readiness.tcp: ",
        "invalid type: table, expected an address string",
    ),
    (
        "[dockerd.env]\nA.B = \"x\"\n",
        "t.toml:2:1: dockerd.env.A: ",
        "invalid type: table, expected a string",
    ),
    (
        "[dockerd]\nmax_restarts = 99999999999999999999\n",
        "t.toml:2:16: dockerd.max_restarts: ",
        "invalid value: integer `99999999999999999999`, expected a whole number from 0",
    ),
    (
        "[dockerd]\nlog_tail = -1\n",
        "t.toml:2:12: dockerd.log_tail: ",
        "invalid value: integer `-1`, expected a non-negative whole number",
    ),
    // The key of a syntax error: inside an inline table, after a comment line, in a
    // header, in a multi-line array, and none on a line of its own.
    (
        "[dockerd]\nenv = { A = \"x\", B = 1979-13-01 }\n",
        "t.toml:2:22: dockerd.env.B: ",
        "",
    ),
    (
        "[log]\nlevel = \"info\"\n# note\nformat = json\n",
        "t.toml:4:10: log.format: ",
        "string values must be quoted",
    ),
    (
        "[log]\n[dockerd.\"x\n",
        "t.toml:2:12: dockerd.x: ",
        "unclosed table",
    ),
    (
        "[dockerd]\nargs = [\n  \"a\",\n  b,\n]\n",
        "t.toml:4:3: dockerd.args: ",
        "string values must be quoted",
    ),
    ("[log]\nlevel = \"info\"\n= 1\n", "t.toml:3:1: ", ""),
    (
        "[log]\nlevel =   # no value\n",
        "t.toml:2:11: log.level: ",
        "missing value",
    ),
];

#[test]
fn toml_errors_name_key_line_and_column() {
    for (text, prefix, fragment) in TOML_ERRORS {
        let message = err(text);
        assert!(
            message.starts_with(prefix) && message.contains(fragment),
            "{text:?}: got {message:?}, want prefix {prefix:?} and {fragment:?}"
        );
        assert!(!message.contains('\n'), "{text:?}: multi-line {message:?}");
    }
    // No key at all: the error is `file:line:col: message`.
    let message = err("[log]\nlevel = \"info\"\n= 1\n");
    assert!(!message.contains("log.level"), "{message}");
}

/// TOML 1.1 forms the crate reads that the old hand-written subset rejected.
#[test]
fn toml_1_1_forms_are_accepted() {
    let text = "[dockerd]\nmax_restarts = 0x10\npath = \"\"\"/d\"\"\"\n\
                env = { A = \"x\",\n B = \"\\x41\" }\nargs = ['''a''']\n";
    let c = parse(text, "t.toml").unwrap();
    assert_eq!(c.dockerd.max_restarts, 16);
    assert_eq!(c.dockerd.path, "/d");
    assert_eq!(c.dockerd.args, ["a"]);
    assert_eq!(c.dockerd.env.get("B").map(String::as_str), Some("A"));
}

/// SPEC §3: whatever the input, one line of at most ~300 bytes with line:column and
/// the key where known; quoted values shortened. The integration tests run the same
/// kinds of input through the binary, in `check` and as PID 1.
#[test]
fn hostile_input_gives_one_short_line() {
    let deep_key = format!("{}=1\n", vec!["a"; 200_000].join("."));
    let deep_header = format!("[{}]\n", vec!["a"; 200_000].join("."));
    let arrays = format!("x = {}\n", "[".repeat(1_000_000));
    let tables = format!("x = {}\n", "{a=".repeat(300_000));
    let long_string = format!("[log]\nlevel = \"{}\"\n", "a".repeat(1 << 20));
    let long_bare = format!("[log]\nlevel = {}\n", "a".repeat(1 << 20));
    let long_key = format!("[dockerd.env]\n\"{}\" = 1\n", "k".repeat(1 << 20));
    let long_duration = format!("[dockerd]\nstop_timeout = \"{}\"\n", "9".repeat(1 << 20));
    let long_integer = format!("[dockerd]\nlog_tail = {}\n", "9".repeat(1 << 20));
    let controls = format!("[log]\nlevel = \"{}\"\n", "\\u001b".repeat(1000));
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "deep key",
            deep_key.as_bytes(),
            "t.toml:1:1: a.a.a.….a: a key of 200000 dotted parts is more than",
        ),
        (
            "deep header",
            deep_header.as_bytes(),
            "t.toml:1:2: a.a.a.….a: a key of 200000 dotted parts is more than",
        ),
        ("nested arrays", arrays.as_bytes(), "t.toml:1:"),
        ("nested inline tables", tables.as_bytes(), "t.toml:1:"),
        (
            "invalid UTF-8",
            b"[log]\nlevel = \"in\xfffo\"\n",
            "t.toml:2:12: log.level: invalid UTF-8 (byte 0xff)",
        ),
        (
            "invalid UTF-8 in a key",
            b"[log]\nle\xc3vel = 1\n",
            "t.toml:2:3: ",
        ),
        (
            "long string",
            long_string.as_bytes(),
            "t.toml:2:9: log.level: invalid value `aaaaaaaa",
        ),
        (
            "long bare value",
            long_bare.as_bytes(),
            "t.toml:2:9: log.level: string values must be quoted",
        ),
        (
            "long key",
            long_key.as_bytes(),
            "t.toml:2:1048582: dockerd.env.kkkkkkkkkkkkkkkkkkkkkkkk…: invalid type",
        ),
        (
            "long duration",
            long_duration.as_bytes(),
            "t.toml:2:16: dockerd.stop_timeout: invalid duration `9999",
        ),
        (
            "long integer",
            long_integer.as_bytes(),
            "t.toml:2:12: dockerd.log_tail: invalid value: integer `9999",
        ),
        (
            "control characters",
            controls.as_bytes(),
            "t.toml:2:9: log.level: invalid value `\\u{1b}",
        ),
    ];
    for (what, input, prefix) in cases {
        let message = match parse_bytes(input, "t.toml") {
            Ok(config) => panic!("{what}: accepted as {config:?}"),
            Err(e) => e.to_string(),
        };
        assert!(
            message.starts_with(prefix),
            "{what}: {message:?} lacks {prefix:?}"
        );
        assert!(
            message.len() <= 250,
            "{what}: {} bytes: {message:?}",
            message.len()
        );
        assert!(
            !message.chars().any(char::is_control),
            "{what}: {message:?}"
        );
    }
    let too_big = vec![b' '; usize::try_from(MAX_FILE_BYTES).unwrap() + 1];
    let message = parse_bytes(&too_big, "t.toml").unwrap_err().to_string();
    assert!(
        message.starts_with("t.toml:1:2097153: the file is larger than 2 MiB"),
        "{message}"
    );
}

#[test]
fn toml_forms_parse_alike() {
    let plain = parse(
        "[dockerd]\nargs = [\"a\", \"b\"]\nenv = { A = \"1\" }\n",
        "t.toml",
    )
    .unwrap();
    for text in [
        "dockerd.args = ['a', 'b']\ndockerd.env.A = '1'\n",
        "[dockerd]\r\nargs = [ # comment\r\n  \"a\",\r\n  \"\\u0062\", # b\r\n]\r\n[dockerd.env]\r\n\"A\" = \"1\"\r\n",
        "\u{feff}dockerd = { args = [\"a\", \"b\"], env = { A = \"1\" } }",
        "[dockerd.env]\nA = \"1\"\n[dockerd]\nargs = [\"a\", \"b\",]\n",
    ] {
        assert_eq!(parse(text, "t.toml").unwrap(), plain, "{text:?}");
    }
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

#[test]
fn locate_precedence() {
    let dir = std::env::temp_dir().join(format!("dind-init-config-locate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let present = dir.join("init.toml");
    std::fs::write(&present, "").unwrap();
    let absent = dir.join("absent.toml");
    let cli = Path::new("/cli.toml");
    let env = OsStr::new("/env.toml");
    let empty = OsStr::new("");

    let check = |cli: Option<&Path>, env: Option<&OsStr>, default: &Path, want: Source| {
        assert_eq!(
            locate_with_default(cli, env, default),
            want,
            "{cli:?} {env:?} {default:?}"
        );
    };
    check(Some(cli), Some(env), &present, Source::Explicit(cli.into()));
    check(Some(cli), None, &absent, Source::Explicit(cli.into()));
    check(None, Some(env), &present, Source::Explicit(env.into()));
    check(None, Some(env), &absent, Source::Explicit(env.into()));
    check(
        None,
        Some(empty),
        &present,
        Source::Default(present.clone()),
    );
    check(None, None, &present, Source::Default(present.clone()));
    check(None, Some(empty), &absent, Source::Builtin);
    check(None, None, &absent, Source::Builtin);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_sources() {
    assert_eq!(load(&Source::Builtin).unwrap(), Config::default());

    let missing = Path::new("/nonexistent/dind-init/init.toml");
    let e = load(&Source::Explicit(missing.into())).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert_eq!(
        e.to_string(),
        "cannot read config /nonexistent/dind-init/init.toml: No such file or directory (os error 2)"
    );

    let dir = std::env::temp_dir().join(format!("dind-init-config-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("init.toml");
    std::fs::write(&file, "[dockerd]\nlog_tail = 5\n").unwrap();
    assert_eq!(
        load(&Source::Default(file.clone()))
            .unwrap()
            .dockerd
            .log_tail,
        5
    );
    std::fs::write(&file, "[dockerd]\nlog_tail = 0\n").unwrap();
    let e = load(&Source::Explicit(file.clone())).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:12: dockerd.log_tail: must be between 1 and 100000, got 0",
            file.display()
        )
    );
    // A directory is not a config file.
    assert!(matches!(
        load(&Source::Explicit(dir.clone())),
        Err(ConfigError::Read { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dockerd_path_longer_than_exec_takes_is_refused() {
    let at_limit = format!("/{}", "d".repeat(MAX_EXEC_PATH - 1));
    assert!(parse(&format!("[dockerd]\npath = \"{at_limit}\"\n"), "t.toml").is_ok());
    let e = err(&format!("[dockerd]\npath = \"{at_limit}x\"\n"));
    assert!(
        e.starts_with("t.toml:2:8: dockerd.path: ") && e.contains("is 4096 bytes long"),
        "{e}"
    );
    assert!(e.len() <= 300, "{}", e.len());
}
