//! The configuration's unit tests: defaults, every key, the TOML forms, where the
//! config is found. Every error's wording and position and hostile input are in
//! [`errors`]; values (sizes, durations, enums) in [`values`].

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

mod errors;
mod values;

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
    let text = include_str!("../../../init.toml.example");
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
