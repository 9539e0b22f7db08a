//! Every error's wording, key, line and column, and hostile input (SPEC §3).

use super::*;

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
