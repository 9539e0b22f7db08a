//! dockerd's command line and environment (SPEC §7), built in one place from what
//! each part of the preparation contributes, and never edited afterwards.
//!
//! - The config: `dockerd.path`, `dockerd.args`, `dockerd.socket`, `dockerd.env`,
//!   `stop_timeout` (which gives `--shutdown-timeout`).
//! - The environment: gVisor or not (`--iptables=false --ip6tables=false`).
//! - cgroup preparation: e.g. `--exec-opt native.cgroupdriver=cgroupfs`.
//! - Nested networking: the directory of iptables-legacy links that leads PATH.
//! - docker:dind's TLS contract (`tls.rs`): the TCP host and its TLS flags.
//! - COMMAND's docker:dind-style words (`dind-init -- --storage-driver=vfs`).
//!
//! [`build`] is pure: it reads no file and no environment variable (the init's PATH
//! comes in as an input), so every rule is a table test. Options the user gives are
//! never added a second time.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::config::Config;
pub use crate::prepare::args::{has_option, option_value, option_values};
use crate::prepare::environment::dockerd_path_env;
use crate::prepare::tls::{Listener, PLAIN_HOST, TLS_HOST};

/// dockerd's default API socket (`unix://` with no path).
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// dockerd's full command line and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the init's environment (which loses any NOTIFY_SOCKET).
    pub env: Vec<(String, String)>,
    /// The unix socket dind-init pings: the last `unix://` host of the user's
    /// `--host`/`-H`, else `dockerd.socket`.
    pub socket: PathBuf,
}

/// What the parts of the preparation contribute.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub gvisor: bool,
    /// Flags cgroup preparation needs.
    pub cgroup_args: &'a [String],
    /// The directory that must lead dockerd's PATH (legacy iptables, SPEC §7a).
    pub path_prefix: Option<&'a Path>,
    /// The init's own PATH.
    pub init_path: Option<&'a OsStr>,
    /// docker:dind-style arguments from COMMAND.
    pub extra: &'a [OsString],
    /// dockerd's NOTIFY_SOCKET.
    pub notify: &'a Path,
    /// The TCP listener of docker:dind's TLS contract (`DOCKER_TLS_CERTDIR`).
    pub listener: &'a Listener,
    /// The MTU nested networks must use (an uplink below 1500), if any.
    pub mtu: Option<Mtu>,
}

/// The uplink's MTU, when it is below Ethernet's 1500 (SPEC §7): nested networks
/// with 1500 would hang on large transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtu {
    pub value: u32,
    /// dockerd knows `--default-network-opt` (Docker 24 and later), so new user
    /// networks get the MTU too, not only the default bridge.
    pub network_opt: bool,
}

impl Mtu {
    /// The flags it adds, unless the user's arguments set them already.
    pub fn flags(&self, user: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if !has_option(user, &["--mtu"]) {
            out.push(format!("--mtu={}", self.value));
        }
        let opt_given = option_values(user, &["--default-network-opt"])
            .iter()
            .any(|v| v.contains("com.docker.network.driver.mtu"));
        if self.network_opt && !opt_given {
            out.push(format!(
                "--default-network-opt=bridge=com.docker.network.driver.mtu={}",
                self.value
            ));
        }
        out
    }
}

/// The user's dockerd arguments: `dockerd.args`, then COMMAND's docker:dind-style words.
pub fn user_args(config: &Config, extra: &[OsString]) -> Vec<String> {
    let mut user = config.dockerd.args.clone();
    user.extend(extra.iter().map(|a| a.to_string_lossy().into_owned()));
    user
}

/// Builds dockerd's command line: what dind-init adds (`--host`, the shutdown
/// timeout, `--iptables=false --ip6tables=false` in gVisor, what cgroup preparation
/// needs), then `args` from the config, then the docker:dind-style arguments from
/// COMMAND; and its environment: `container=docker`, `NOTIFY_SOCKET`, `dockerd.env`,
/// and PATH ([`dockerd_path_env`]) led by `path_prefix` when there is one, or in place
/// of an empty one.
pub fn build(inputs: Inputs<'_>) -> Launch {
    let cfg = inputs.config;
    let user = user_args(cfg, inputs.extra);
    let mut args = Vec::new();
    // dind-init needs a unix socket to ping. The user's hosts win; when none of
    // them is a unix socket (e.g. only `-H tcp://0.0.0.0:2375`), dockerd.socket is
    // added beside them, as docker:dind's entrypoint does.
    let user_unix = option_values(&user, &["--host", "-H"])
        .into_iter()
        .filter_map(|h| {
            h.strip_prefix("unix://").map(|p| match p {
                "" => PathBuf::from(DEFAULT_SOCKET),
                p => PathBuf::from(p),
            })
        })
        .next_back();
    let socket = match user_unix {
        Some(path) => path,
        None => {
            args.push(format!("--host=unix://{}", cfg.dockerd.socket.display()));
            cfg.dockerd.socket.clone()
        }
    };
    // Beside the unix socket, as docker:dind's entrypoint puts them (`tls.rs` has
    // already left this out when the user's arguments name a TCP host).
    match inputs.listener {
        Listener::None => {}
        Listener::Plain => {
            args.push(format!("--host={PLAIN_HOST}"));
            // dockerd sleeps 15 s before serving a TCP host without TLS unless TLS is
            // explicitly off (cmd/dockerd/daemon.go, loadListeners).
            if !has_option(&user, &["--tls", "--tlsverify"]) {
                args.push("--tls=false".to_owned());
            }
        }
        Listener::Tls { ca, cert, key } => {
            args.push(format!("--host={TLS_HOST}"));
            args.push("--tlsverify".to_owned());
            args.push(format!("--tlscacert={}", ca.display()));
            args.push(format!("--tlscert={}", cert.display()));
            args.push(format!("--tlskey={}", key.display()));
        }
    }
    if !has_option(&user, &["--shutdown-timeout"]) {
        args.push(format!(
            "--shutdown-timeout={}",
            cfg.dockerd.shutdown_timeout().as_secs()
        ));
    }
    if inputs.gvisor && !user.iter().any(|a| a.starts_with("--iptables")) {
        // gVisor's netstack cannot run Docker's rules: dockerd would die (SPEC §7).
        args.push("--iptables=false".to_owned());
    }
    if inputs.gvisor && !user.iter().any(|a| a.starts_with("--ip6tables")) {
        // Docker 27+ enables ip6tables by default and gVisor has no ip6 NAT: the
        // failed chain setup costs 1.4-2.9 s of start-up on Docker 28 (measured).
        // Every supported dockerd (20.10 on) knows the flag.
        args.push("--ip6tables=false".to_owned());
    }
    // `--exec-opt native.cgroupdriver=cgroupfs`, as one: left out when the user's
    // arguments (COMMAND's included) choose a driver themselves. Deciding per word
    // would keep the value alone when the user passes `--exec-opt` for something
    // else, a stray word dockerd refuses.
    if !chooses_cgroup_driver(&user) {
        args.extend(inputs.cgroup_args.iter().cloned());
    }
    if let Some(mtu) = inputs.mtu {
        args.extend(mtu.flags(&user));
    }
    args.extend(user);
    let mut env = vec![
        ("container".to_owned(), "docker".to_owned()),
        (
            "NOTIFY_SOCKET".to_owned(),
            inputs.notify.display().to_string(),
        ),
    ];
    env.extend(cfg.dockerd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    // dockerd's PATH is written when it must be led by the legacy iptables links, or
    // when the one it would inherit is empty or unset (dockerd_path_env: Docker's
    // default then): dockerd, containerd and the shim look programs up with Go's
    // exec.LookPath, which searches nothing without a PATH. Otherwise dockerd
    // inherits it as it is.
    let inherited = cfg
        .dockerd
        .env
        .get("PATH")
        .map(OsStr::new)
        .or(inputs.init_path);
    if inputs.path_prefix.is_some() || inherited.is_none_or(OsStr::is_empty) {
        let path = led_path(inputs.path_prefix, &dockerd_path_env(cfg, inputs.init_path));
        env.retain(|(k, _)| k != "PATH");
        env.push(("PATH".to_owned(), path));
    }
    Launch {
        program: cfg.dockerd.path.clone(),
        args,
        env,
        socket,
    }
}

/// Whether dockerd's arguments (`user_args`) choose a cgroup driver themselves: then
/// the cgroup step's `--exec-opt native.cgroupdriver=cgroupfs` is left out.
pub fn chooses_cgroup_driver(user_args: &[String]) -> bool {
    user_args.iter().any(|a| a.contains("native.cgroupdriver"))
}

/// `prefix` (when there is one) in front of dockerd's PATH `base`, once.
fn led_path(prefix: Option<&Path>, base: &OsStr) -> String {
    let base = base.to_string_lossy().into_owned();
    let Some(prefix) = prefix else {
        return base;
    };
    let prefix = prefix.display().to_string();
    if base.split(':').next() == Some(prefix.as_str()) {
        base
    } else {
        format!("{prefix}:{base}")
    }
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn inputs<'a>(cfg: &'a Config, gvisor: bool, notify: &'a Path) -> Inputs<'a> {
        Inputs {
            config: cfg,
            gvisor,
            cgroup_args: &[],
            path_prefix: None,
            init_path: None,
            extra: &[],
            notify,
            listener: &Listener::None,
            mtu: None,
        }
    }

    #[test]
    fn mtu_flags_table() {
        let notify = Path::new("/n.sock");
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (mtu, user args, the MTU flags dockerd gets)
        let opt = "--default-network-opt=bridge=com.docker.network.driver.mtu=1400";
        let cases: Vec<(Option<Mtu>, Vec<String>, Vec<&str>)> = vec![
            (None, v(&[]), vec![]),
            (
                Some(Mtu {
                    value: 1400,
                    network_opt: false,
                }),
                v(&[]),
                vec!["--mtu=1400"],
            ),
            (
                Some(Mtu {
                    value: 1400,
                    network_opt: true,
                }),
                v(&[]),
                vec!["--mtu=1400", opt],
            ),
            // The user's own --mtu wins; the network option still goes along.
            (
                Some(Mtu {
                    value: 1400,
                    network_opt: true,
                }),
                v(&["--mtu=1300"]),
                vec![opt],
            ),
            (
                Some(Mtu {
                    value: 1400,
                    network_opt: true,
                }),
                v(&[
                    "--default-network-opt",
                    "bridge=com.docker.network.driver.mtu=1200",
                ]),
                vec!["--mtu=1400"],
            ),
        ];
        for (mtu, user, want) in cases {
            let mut cfg = Config::default();
            cfg.dockerd.args = user.clone();
            let l = build(Inputs {
                mtu,
                ..inputs(&cfg, false, notify)
            });
            let got: Vec<&str> = l
                .args
                .iter()
                .map(String::as_str)
                .filter(|a| {
                    a.starts_with("--mtu=") || a.starts_with("--default-network-opt=bridge=")
                })
                .filter(|a| !user.iter().any(|u| u == a))
                .collect();
            assert_eq!(got, want, "{mtu:?} {user:?}");
        }
    }

    #[test]
    fn tcp_listener_table() {
        let notify = Path::new("/n.sock");
        let tls = Listener::Tls {
            ca: PathBuf::from("/certs/server/ca.pem"),
            cert: PathBuf::from("/certs/server/cert.pem"),
            key: PathBuf::from("/certs/server/key.pem"),
        };
        // (dockerd.args, listener, dockerd's arguments)
        let cases: Vec<(Vec<String>, &Listener, Vec<String>)> = vec![
            (
                vec![],
                &tls,
                v(&[
                    "--host=unix:///var/run/docker.sock",
                    "--host=tcp://0.0.0.0:2376",
                    "--tlsverify",
                    "--tlscacert=/certs/server/ca.pem",
                    "--tlscert=/certs/server/cert.pem",
                    "--tlskey=/certs/server/key.pem",
                    "--shutdown-timeout=6",
                ]),
            ),
            (
                vec![],
                &Listener::Plain,
                v(&[
                    "--host=unix:///var/run/docker.sock",
                    "--host=tcp://0.0.0.0:2375",
                    "--tls=false",
                    "--shutdown-timeout=6",
                ]),
            ),
            // The user's unix host stays the one pinged; the TCP host comes beside it.
            (
                v(&["-H", "unix:///x.sock"]),
                &tls,
                v(&[
                    "--host=tcp://0.0.0.0:2376",
                    "--tlsverify",
                    "--tlscacert=/certs/server/ca.pem",
                    "--tlscert=/certs/server/cert.pem",
                    "--tlskey=/certs/server/key.pem",
                    "--shutdown-timeout=6",
                    "-H",
                    "unix:///x.sock",
                ]),
            ),
            // The user's own TLS choice is not contradicted.
            (
                v(&["--tlsverify=false"]),
                &Listener::Plain,
                v(&[
                    "--host=unix:///var/run/docker.sock",
                    "--host=tcp://0.0.0.0:2375",
                    "--shutdown-timeout=6",
                    "--tlsverify=false",
                ]),
            ),
        ];
        for (user, listener, want) in cases {
            let mut cfg = Config::default();
            cfg.dockerd.args = user.clone();
            let l = build(Inputs {
                listener,
                ..inputs(&cfg, false, notify)
            });
            assert_eq!(l.args, want, "{user:?} {listener:?}");
            assert_eq!(
                l.socket,
                if user.is_empty() || user[0] != "-H" {
                    PathBuf::from("/var/run/docker.sock")
                } else {
                    PathBuf::from("/x.sock")
                }
            );
        }
    }

    #[test]
    fn option_detection_table() {
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["--host=unix:///x"], &["--host", "-H"], true),
            (&["-H", "tcp://0.0.0.0:2375"], &["--host", "-H"], true),
            (&["-Hunix:///x"], &["--host", "-H"], true),
            (&["--hostname-thing"], &["--host", "-H"], false),
            (&["--shutdown-timeout", "3"], &["--shutdown-timeout"], true),
            (&["--debug"], &["--shutdown-timeout"], false),
        ];
        for (args, names, want) in cases {
            assert_eq!(has_option(&v(args), names), *want, "{args:?} {names:?}");
        }
        assert_eq!(
            option_value(&v(&["--exec-root", "/e"]), &["--exec-root"]),
            Some("/e".into())
        );
        assert_eq!(
            option_value(&v(&["--exec-root=/e"]), &["--exec-root"]),
            Some("/e".into())
        );
        assert_eq!(
            option_value(&v(&["-p", "/p.pid"]), &["--pidfile", "-p"]),
            Some("/p.pid".into())
        );
        assert_eq!(option_value(&v(&["--debug"]), &["--exec-root"]), None);
    }

    #[test]
    fn launch_table() {
        let notify = Path::new("/run/dind-init/notify.sock");
        let mut cfg = Config::default();
        let l = build(inputs(&cfg, false, notify));
        assert_eq!(l.program, "dockerd");
        assert_eq!(
            l.args,
            v(&["--host=unix:///var/run/docker.sock", "--shutdown-timeout=6"])
        );
        assert!(l.env.contains(&("container".into(), "docker".into())));
        assert!(l
            .env
            .contains(&("NOTIFY_SOCKET".into(), notify.display().to_string())));
        // No PATH in the init's environment: dockerd gets Docker's default (Go's
        // LookPath in dockerd and containerd would find nothing without one).
        let path_of = |l: &Launch| {
            l.env
                .iter()
                .filter(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(path_of(&l), [crate::sys::spawn::DEFAULT_PATH]);
        // A PATH it has is inherited as it is (not written).
        let l = build(Inputs {
            init_path: Some(OsStr::new("/usr/bin:/bin")),
            ..inputs(&cfg, false, notify)
        });
        assert!(path_of(&l).is_empty(), "{:?}", l.env);

        let cgroup = v(&["--exec-opt", "native.cgroupdriver=cgroupfs"]);
        let l = build(Inputs {
            cgroup_args: &cgroup,
            ..inputs(&cfg, true, notify)
        });
        assert_eq!(
            l.args,
            v(&[
                "--host=unix:///var/run/docker.sock",
                "--shutdown-timeout=6",
                "--iptables=false",
                "--ip6tables=false",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs"
            ])
        );

        // The user's own --exec-opt for something else keeps the pair whole; one
        // that chooses a driver leaves it out.
        for (user, added) in [
            (v(&["--exec-opt", "native.umask=normal"]), true),
            (v(&["--exec-opt=native.cgroupdriver=systemd"]), false),
            (v(&["--exec-opt", "native.cgroupdriver=cgroupfs"]), false),
        ] {
            cfg.dockerd.args = user.clone();
            let l = build(Inputs {
                cgroup_args: &cgroup,
                ..inputs(&cfg, true, notify)
            });
            let (ours, tail) = l.args.split_at(l.args.len() - user.len());
            assert_eq!(tail, &user[..], "{user:?}");
            let pair = ours.windows(2).any(|w| w == &cgroup[..]);
            let values = ours.iter().filter(|a| a.contains("cgroupdriver")).count();
            assert_eq!(
                (pair, values),
                (added, usize::from(added)),
                "{user:?}: {ours:?}"
            );
        }

        cfg.dockerd.args = v(&["-H", "unix:///x.sock", "--iptables=true", "--ip6tables"]);
        let extra = [
            OsString::from("--shutdown-timeout=1"),
            OsString::from("--debug"),
        ];
        let l = build(Inputs {
            extra: &extra,
            ..inputs(&cfg, true, notify)
        });
        assert_eq!(
            l.args,
            v(&[
                "-H",
                "unix:///x.sock",
                "--iptables=true",
                "--ip6tables",
                "--shutdown-timeout=1",
                "--debug"
            ])
        );
        assert_eq!(l.socket, PathBuf::from("/x.sock"));
    }

    #[test]
    fn path_is_led_by_the_prefix_table() {
        let notify = Path::new("/n.sock");
        let own = Path::new("/run/dind-init/iptables-legacy");
        let init = Some(OsStr::new("/usr/bin:/bin"));
        // (prefix, dockerd.env, the init's PATH, dockerd's PATH)
        type Case<'a> = (
            Option<&'a Path>,
            Vec<(&'a str, &'a str)>,
            Option<&'a OsStr>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                Some(own),
                vec![],
                init,
                Some("/run/dind-init/iptables-legacy:/usr/bin:/bin"),
            ),
            // dockerd.env's PATH is the base, and appears once.
            (
                Some(own),
                vec![("PATH", "/opt/bin")],
                init,
                Some("/run/dind-init/iptables-legacy:/opt/bin"),
            ),
            // No PATH at all: Docker's default.
            (
                Some(own),
                vec![],
                None,
                Some("/run/dind-init/iptables-legacy:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            // Already first: not added twice.
            (
                Some(own),
                vec![("PATH", "/run/dind-init/iptables-legacy:/bin")],
                init,
                Some("/run/dind-init/iptables-legacy:/bin"),
            ),
            // No prefix: dockerd.env's PATH as it is, or none (the init's is inherited),
            // or Docker's default when nobody sets one.
            (None, vec![("PATH", "/opt/bin")], init, Some("/opt/bin")),
            (None, vec![], init, None),
            (
                None,
                vec![],
                None,
                Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            // An empty PATH counts as not set (environment::dockerd_path_env), and is
            // replaced even without a prefix: dockerd would inherit it otherwise.
            (
                Some(own),
                vec![],
                Some(OsStr::new("")),
                Some("/run/dind-init/iptables-legacy:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            (
                Some(own),
                vec![("PATH", "")],
                init,
                Some("/run/dind-init/iptables-legacy:/usr/bin:/bin"),
            ),
            (
                None,
                vec![],
                Some(OsStr::new("")),
                Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ),
            (None, vec![("PATH", "")], init, Some("/usr/bin:/bin")),
        ];
        for (prefix, env, init_path, want) in cases {
            let mut cfg = Config::default();
            cfg.dockerd.env = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let l = build(Inputs {
                path_prefix: prefix,
                init_path,
                ..inputs(&cfg, true, notify)
            });
            let path = l
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.as_str());
            assert_eq!(path, want, "{prefix:?} {env:?}");
            assert!(l.env.iter().filter(|(k, _)| k == "PATH").count() <= 1);
        }
    }
}
