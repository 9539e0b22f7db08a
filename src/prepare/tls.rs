//! docker:dind's TLS contract (SPEC §6), so that an image built on dind-init is a
//! drop-in for `docker:dind` as a CI service: GitLab's `services:`, GitHub Actions
//! services, Kubernetes sidecars.
//!
//! What `DOCKER_TLS_CERTDIR` asks for, decided by [`request`] from the variable and
//! dockerd's arguments (a TCP host in the arguments wins: then dind-init adds none):
//! - unset: nothing (dockerd gets no TCP listener from dind-init);
//! - set to `""`: `--host=tcp://0.0.0.0:2375` without TLS, as docker:dind does, plus
//!   `--tls=false`, which docker:dind's entrypoint does not pass: it states the intent
//!   that dockerd (20.10 on) otherwise punishes with a 15 s sleep before it serves
//!   ("Binding to an IP address without --tlsverify is deprecated. Startup is
//!   intentionally being slowed down");
//! - set to a directory: the certificates docker:dind makes under it, then
//!   `--host=tcp://0.0.0.0:2376 --tlsverify` with the server's three files.
//!
//! The files, as docker:dind lays them out: `ca/{cert,key}.pem`, `server/{ca,cert,key}.pem`,
//! `client/{ca,cert,key}.pem`. The CA key and the server and client keys are kept across
//! starts (made only when missing); the public certificates (the CA's, re-signed with its
//! kept key and the same name, the server's and the client's) are renewed on every
//! start, so that a new address of the container or an expiry is never a problem, and
//! a client that kept an older `client/` still connects. The server's names: every IP
//! address of the container (all interfaces), its host names, `docker`, `localhost`, and
//! `$DOCKER_TLS_SAN`. `client/key.pem` is 0644, as docker:dind makes it: a sidecar that
//! mounts `<dir>/client` may run as another user. With the server's three files present
//! and no CA key (certificates the user manages), nothing is written: the server
//! certificate is verified against its CA and checked to match its key.
//!
//! How: the `openssl` command of the image (docker:dind does the same), run at boot by
//! `openssl.rs`, bounded and reaped. A Rust X.509 crate was measured and does not fit
//! SPEC §12's binary-size cap (README, "Design notes"). New keys are ECDSA P-256, not
//! docker:dind's RSA 4096: measured on this project's machine, one RSA 4096 key takes
//! 0.4-3.0 s (median 1.5 s) on the host and 0.7-5.6 s in gVisor, three of them at every
//! first boot (each CI job's container is a first boot); P-256 takes 6 ms (57 ms in
//! gVisor, mostly the exec). Every Docker client (Go's crypto/tls) accepts P-256 keys;
//! keys already in the directory are used whatever their type, so RSA keys put there
//! stay RSA. Output files are written under a temporary name and renamed, so a boot
//! killed half-way never leaves a truncated key behind.
//!
//! Needs OpenSSL 3.0 or later (`req -x509 -CA` signs in one step; Debian bookworm,
//! Ubuntu 22.04 and docker:dind's Alpine have it). Any failure ends the boot with one
//! line that names what failed (SPEC §6: "A failed generation is fatal").

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::info;

use crate::control::status::TlsStatus;
use crate::error::Error;
use crate::prepare::args::option_values;
use crate::prepare::environment::{locate_program, DockerdBinary, DEFAULT_PATH};
use crate::sys::command::{self, Failure};
use crate::sys::reaper::ExitStatus;

/// The variable that asks for the contract.
pub const CERTDIR_ENV: &str = "DOCKER_TLS_CERTDIR";
/// Extra names of the server certificate.
pub const SAN_ENV: &str = "DOCKER_TLS_SAN";
/// dockerd's TCP host with TLS, and without.
pub const TLS_HOST: &str = "tcp://0.0.0.0:2376";
pub const PLAIN_HOST: &str = "tcp://0.0.0.0:2375";
/// docker:dind's validity (825 days: the longest Apple's TLS clients accept).
const VALID_DAYS: &str = "825";
/// The openssl configuration written for one boot, in the directory, then removed.
const CONFIG_NAME: &str = ".dind-init-openssl.cnf";

/// What `DOCKER_TLS_CERTDIR` and dockerd's arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `DOCKER_TLS_CERTDIR` is unset.
    Off,
    /// It is set, but dockerd's arguments name a TCP host: they decide everything.
    ArgsHaveTcp,
    /// Set to the empty string: plain TCP on 2375.
    Plain,
    /// Set to this directory.
    Tls(PathBuf),
}

/// Decides from the variable's value and dockerd's arguments (`dockerd.args` and
/// COMMAND's docker:dind-style words). A host with no scheme is TCP to dockerd.
pub fn request(certdir: Option<&OsStr>, user_args: &[String]) -> Request {
    let Some(dir) = certdir else {
        return Request::Off;
    };
    let tcp = option_values(user_args, &["--host", "-H"])
        .iter()
        .any(|h| h.starts_with("tcp://") || !h.contains("://"));
    if tcp {
        Request::ArgsHaveTcp
    } else if dir.is_empty() {
        Request::Plain
    } else {
        Request::Tls(PathBuf::from(dir))
    }
}

/// How long one openssl command may take. Generous: a key of ECDSA P-256 takes
/// milliseconds, an exec in gVisor under load a few hundred; a user's RSA key is only
/// read, never made. A command that hangs (a passphrase prompt on a terminal) is
/// killed.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The TCP listener dind-init gives dockerd (`launch::build` turns it into flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Listener {
    #[default]
    None,
    /// `--host=tcp://0.0.0.0:2375 --tls=false`.
    Plain,
    /// `--host=tcp://0.0.0.0:2376 --tlsverify` and the server's files.
    Tls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Which of docker:dind's files are there (present and not empty, as its `[ -s ]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub ca_key: bool,
    pub ca_cert: bool,
    pub server_ca: bool,
    pub server_cert: bool,
    pub server_key: bool,
    pub client_key: bool,
}

impl Found {
    pub fn read(dir: &Path) -> Found {
        let s = |rel: &str| fs::metadata(dir.join(rel)).is_ok_and(|m| m.is_file() && m.len() > 0);
        Found {
            ca_key: s("ca/key.pem"),
            ca_cert: s("ca/cert.pem"),
            server_ca: s("server/ca.pem"),
            server_cert: s("server/cert.pem"),
            server_key: s("server/key.pem"),
            client_key: s("client/key.pem"),
        }
    }
}

/// What is done with the directory, by docker:dind's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The server's three files and no CA key: the user's certificates, only verified.
    UserManaged,
    /// dind-init keeps the CA and renews the certificates; `true` for each key to make.
    Managed {
        new_ca_key: bool,
        new_server_key: bool,
        new_client_key: bool,
    },
    /// A CA certificate without its key, and not all of the server's files: nothing
    /// can be signed and nothing can be served (docker:dind would start dockerd with
    /// missing files).
    Incomplete,
}

pub fn layout(f: &Found) -> Layout {
    if f.server_ca && f.server_cert && f.server_key && !f.ca_key {
        Layout::UserManaged
    } else if f.ca_cert && !f.ca_key {
        Layout::Incomplete
    } else {
        Layout::Managed {
            new_ca_key: !f.ca_key,
            new_server_key: !f.server_key,
            new_client_key: !f.client_key,
        }
    }
}

/// One openssl command: what it makes (for messages), its arguments, and the files it
/// writes under a temporary name (temporary, final).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub what: &'static str,
    pub args: Vec<OsString>,
    pub outputs: Vec<(PathBuf, PathBuf)>,
}

fn tmp(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// The commands that renew a managed directory, in order: the CA certificate (and key
/// when missing), then the server's and the client's, each signed by the CA in one
/// `req -x509 -CA` (and its key made in the same command when missing), then one
/// `verify` of both. `config` is the file that [`openssl_config`] wrote.
pub fn managed_steps(dir: &Path, layout: Layout, config: &Path) -> Vec<Step> {
    let Layout::Managed {
        new_ca_key,
        new_server_key,
        new_client_key,
    } = layout
    else {
        return Vec::new();
    };
    let ca_key = dir.join("ca/key.pem");
    let ca_cert = dir.join("ca/cert.pem");
    let one = |what: &'static str, who: &str, new_key: bool, ext: &str, signed: bool| {
        let key = dir.join(who).join("key.pem");
        let cert = dir.join(who).join("cert.pem");
        let mut args: Vec<OsString> = ["req", "-config"].map(OsString::from).to_vec();
        args.push(config.into());
        args.extend(["-x509", "-new"].map(OsString::from));
        let mut outputs = Vec::new();
        if new_key {
            args.extend(
                [
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-noenc",
                    "-keyout",
                ]
                .map(OsString::from),
            );
            args.push(tmp(&key).into());
            outputs.push((tmp(&key), key.clone()));
        } else {
            args.push("-key".into());
            args.push(key.clone().into());
        }
        if signed {
            args.push("-CA".into());
            args.push(ca_cert.clone().into());
            args.push("-CAkey".into());
            args.push(ca_key.clone().into());
        }
        // A key with a passphrase fails at once instead of prompting on a terminal.
        args.extend(["-passin", "pass:", "-subj"].map(OsString::from));
        args.push(format!("/CN=docker:dind {}", if who == "ca" { "CA" } else { who }).into());
        args.extend(["-days", VALID_DAYS, "-extensions", ext, "-out"].map(OsString::from));
        args.push(tmp(&cert).into());
        outputs.push((tmp(&cert), cert));
        Step {
            what,
            args,
            outputs,
        }
    };
    let mut verify: Vec<OsString> = ["verify", "-CAfile"].map(OsString::from).to_vec();
    verify.push(ca_cert.clone().into());
    verify.push(dir.join("server/cert.pem").into());
    verify.push(dir.join("client/cert.pem").into());
    vec![
        one("the CA certificate", "ca", new_ca_key, "dind_ca", false),
        one(
            "the server certificate",
            "server",
            new_server_key,
            "dind_server",
            true,
        ),
        one(
            "the client certificate",
            "client",
            new_client_key,
            "dind_client",
            true,
        ),
        Step {
            what: "the verification of the new certificates",
            args: verify,
            outputs: Vec::new(),
        },
    ]
}

/// The openssl configuration: no system defaults (`-config` replaces openssl.cnf), the
/// extensions docker:dind gives each certificate, and the server's names.
pub fn openssl_config(sans: &[String]) -> String {
    format!(
        "# Written by dind-init for one boot (DOCKER_TLS_CERTDIR), then removed.\n\
         [req]\n\
         distinguished_name = dn\n\
         [dn]\n\
         [dind_ca]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyCertSign\n\
         subjectKeyIdentifier = hash\n\
         [dind_server]\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = {}\n\
         [dind_client]\n\
         extendedKeyUsage = clientAuth\n",
        sans.join(",")
    )
}

/// What a SAN entry may hold: openssl's config syntax gives `$`, `#`, `,`, quotes and
/// backslashes meanings, so they (and spaces, controls) never reach it.
fn safe_san_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_*:@/%+=~[]".contains(&b))
}

const SAN_TYPES: [&str; 7] = ["DNS", "IP", "email", "URI", "RID", "dirName", "otherName"];

/// `$DOCKER_TLS_SAN` as docker:dind reads it: entries separated by spaces or commas,
/// each as openssl writes a subjectAltName (`DNS:name`, `IP:address`). A bare address
/// or name is taken as `IP:` or `DNS:` (docker:dind would pass it on and fail).
pub fn parse_extra_sans(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|e| !e.is_empty())
    {
        let san = if entry.parse::<IpAddr>().is_ok() {
            format!("IP:{entry}")
        } else if let Some((kind, value)) =
            entry.split_once(':').filter(|(k, _)| SAN_TYPES.contains(k))
        {
            if !safe_san_value(value) {
                return Err(format!("{SAN_ENV}: entry `{entry}` has a character openssl's configuration cannot take"));
            }
            if kind == "IP" && value.parse::<IpAddr>().is_err() {
                return Err(format!("{SAN_ENV}: `{entry}` is not an IP address"));
            }
            entry.to_owned()
        } else if safe_san_value(entry) && !entry.contains(':') {
            format!("DNS:{entry}")
        } else {
            return Err(format!(
                "{SAN_ENV}: entry `{entry}` is neither a name nor an address (write DNS:name or IP:address)"
            ));
        };
        out.push(san);
    }
    Ok(out)
}

/// A host name that can be a DNS SAN: letters, digits, dots and dashes.
fn dns_name(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.');
    (!name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
    .then(|| name.to_owned())
}

/// The container's host names: the kernel's (uname), /etc/hostname's, their short
/// forms, and every name on an /etc/hosts line that lists one of them (what `hostname
/// -f` would find there; no DNS lookup at boot). docker:dind asks `hostname -f` and
/// `hostname -s` for the same.
pub fn host_names(uname: &str, etc_hostname: &str, etc_hosts: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let add = |n: &str, names: &mut Vec<String>| {
        if let Some(n) = dns_name(n) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    };
    add(uname, &mut names);
    add(etc_hostname.lines().next().unwrap_or(""), &mut names);
    let own = names.clone();
    for line in etc_hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
        if fields.iter().any(|f| own.iter().any(|o| o == f)) {
            for f in fields {
                add(f, &mut names);
            }
        }
    }
    for n in names.clone() {
        if let Some((short, _)) = n.split_once('.') {
            add(short, &mut names);
        }
    }
    names
}

/// The server certificate's names, each once: `docker`, `localhost`, the host names,
/// every address, then `$DOCKER_TLS_SAN`'s.
pub fn server_sans(addrs: &[IpAddr], names: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = ["docker", "localhost"]
        .iter()
        .map(|n| format!("DNS:{n}"))
        .chain(names.iter().map(|n| format!("DNS:{n}")))
        .chain(addrs.iter().map(|a| format!("IP:{a}")))
        .chain(extra.iter().cloned());
    for san in all {
        if !out.contains(&san) {
            out.push(san);
        }
    }
    out
}

/// Every IP address of the container, all interfaces (getifaddrs(3)).
fn addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in ifaddrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// What boot decided: the listener for dockerd and what `status` shows.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub listener: Listener,
    pub status: TlsStatus,
}

fn tls_error(dir: &Path, message: impl Into<String>) -> Error {
    Error::Tls {
        dir: dir.to_path_buf(),
        message: message.into(),
    }
}

/// Does what `request` asks for. Blocks (openssl runs here), which is right at boot
/// only. `path` is the init's PATH, where openssl is looked up.
pub fn prepare(request: &Request, path: Option<&OsStr>) -> Result<Prepared, Error> {
    match request {
        Request::Off => Ok(Prepared {
            listener: Listener::None,
            status: TlsStatus {
                mode: "off".to_owned(),
                ..TlsStatus::default()
            },
        }),
        Request::ArgsHaveTcp => {
            info!("{CERTDIR_ENV} is set but dockerd's arguments name a TCP host: dind-init adds no TCP host and makes no certificates");
            Ok(Prepared {
                listener: Listener::None,
                status: TlsStatus {
                    mode: "args".to_owned(),
                    ..TlsStatus::default()
                },
            })
        }
        Request::Plain => {
            info!(
                host = PLAIN_HOST,
                "{CERTDIR_ENV} is empty: dockerd listens on {PLAIN_HOST} without TLS (--tls=false)"
            );
            Ok(Prepared {
                listener: Listener::Plain,
                status: TlsStatus {
                    mode: "plain".to_owned(),
                    host: Some(PLAIN_HOST.to_owned()),
                    ..TlsStatus::default()
                },
            })
        }
        Request::Tls(dir) => prepare_dir(dir, path),
    }
}

fn prepare_dir(dir: &Path, path: Option<&OsStr>) -> Result<Prepared, Error> {
    let started = Instant::now();
    let found = Found::read(dir);
    let layout = layout(&found);
    if layout == Layout::Incomplete {
        return Err(tls_error(
            dir,
            "ca/cert.pem is there without ca/key.pem, and server/{ca,cert,key}.pem are not all there: \
             nothing can be signed; add the CA key, or the server's three files, or empty the directory",
        ));
    }
    let openssl = match locate_program(OsStr::new("openssl"), path, DEFAULT_PATH) {
        DockerdBinary::Found(p) => p,
        other => {
            return Err(tls_error(
                dir,
                format!("the openssl command is needed to make and check certificates: install openssl in the image ({other})"),
            ))
        }
    };
    let listener = Listener::Tls {
        ca: dir.join("server/ca.pem"),
        cert: dir.join("server/cert.pem"),
        key: dir.join("server/key.pem"),
    };
    let (mode, actions) = if layout == Layout::UserManaged {
        verify_user_managed(dir, &openssl)?;
        (
            "user",
            vec!["verified server/cert.pem against server/ca.pem and server/key.pem (user-managed: nothing written)".to_owned()],
        )
    } else {
        ("generated", renew(dir, layout, &openssl)?)
    };
    info!(
        dir = %dir.display(),
        mode,
        took_ms = started.elapsed().as_millis() as u64,
        actions = %actions.join("; "),
        "TLS certificates ready: dockerd listens on {TLS_HOST} with --tlsverify"
    );
    Ok(Prepared {
        listener,
        status: TlsStatus {
            mode: mode.to_owned(),
            dir: Some(dir.display().to_string()),
            host: Some(TLS_HOST.to_owned()),
            actions,
        },
    })
}

/// One line of what openssl said: its first non-empty line of stderr (else stdout).
fn said(done: &command::Finished) -> String {
    let line = done
        .stderr
        .lines()
        .chain(done.stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    let mut line: String = line.chars().take(200).collect();
    if line.contains("nrecognized flag") || line.contains("nknown option") {
        line.push_str(" (dind-init needs OpenSSL 3.0 or later)");
    }
    line
}

/// Runs one openssl command; `Ok` only when it exited 0.
fn run_openssl(
    dir: &Path,
    openssl: &Path,
    what: &str,
    args: &[OsString],
) -> Result<command::Finished, Error> {
    match command::run(openssl.as_os_str(), args, COMMAND_TIMEOUT) {
        Ok(done) if done.status == ExitStatus::Code(0) => Ok(done),
        Ok(done) => Err(tls_error(
            dir,
            format!(
                "openssl failed on {what} ({}): {}",
                done.status,
                said(&done)
            ),
        )),
        Err(Failure::Spawn(e)) => Err(tls_error(
            dir,
            format!(
                "cannot run {}: {e}: install openssl in the image",
                openssl.display()
            ),
        )),
        Err(Failure::Timeout(t)) => Err(tls_error(
            dir,
            format!(
                "openssl did not finish {what} within {}s; it was killed",
                t.as_secs()
            ),
        )),
        Err(Failure::Wait(e)) => Err(tls_error(dir, format!("openssl on {what}: {e}"))),
    }
}

fn fs_error(dir: &Path, op: &str, path: &Path, e: &io::Error) -> Error {
    tls_error(dir, format!("cannot {op} {}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let t = tmp(path);
    fs::write(&t, bytes).map_err(|e| fs_error(dir, "write", &t, &e))?;
    fs::set_permissions(&t, fs::Permissions::from_mode(mode))
        .map_err(|e| fs_error(dir, "set the mode of", &t, &e))?;
    fs::rename(&t, path).map_err(|e| fs_error(dir, "rename", &t, &e))
}

fn renew(dir: &Path, layout: Layout, openssl: &Path) -> Result<Vec<String>, Error> {
    let Layout::Managed {
        new_ca_key,
        new_server_key,
        new_client_key,
    } = layout
    else {
        return Ok(Vec::new());
    };
    for sub in ["ca", "server", "client"] {
        let d = dir.join(sub);
        fs::create_dir_all(&d).map_err(|e| fs_error(dir, "create directory", &d, &e))?;
    }
    let names = host_names(
        &rustix::system::uname().nodename().to_string_lossy(),
        &fs::read_to_string("/etc/hostname").unwrap_or_default(),
        &fs::read_to_string("/etc/hosts").unwrap_or_default(),
    );
    let extra = std::env::var(SAN_ENV).unwrap_or_default();
    let extra = parse_extra_sans(&extra).map_err(|m| tls_error(dir, m))?;
    let sans = server_sans(&addresses(), &names, &extra);
    let config = dir.join(CONFIG_NAME);
    write_atomic(dir, &config, openssl_config(&sans).as_bytes(), 0o600)?;
    let result = run_steps(dir, layout, openssl, &config);
    let _ = fs::remove_file(&config);
    result?;
    let mut actions = Vec::new();
    let mut made = |new: bool, what: &str| {
        actions.push(format!("{} {what}", if new { "created" } else { "kept" }));
    };
    made(new_ca_key, "ca/key.pem");
    made(new_server_key, "server/key.pem");
    made(new_client_key, "client/key.pem");
    actions.push("renewed ca/cert.pem, server/cert.pem, client/cert.pem".to_owned());
    let mut line = String::from("server names: ");
    let _ = write!(line, "{}", sans.join(","));
    actions.push(line);
    Ok(actions)
}

fn run_steps(dir: &Path, layout: Layout, openssl: &Path, config: &Path) -> Result<(), Error> {
    for (i, step) in managed_steps(dir, layout, config).into_iter().enumerate() {
        run_openssl(dir, openssl, step.what, &step.args)?;
        for (from, to) in &step.outputs {
            let mode = if to.ends_with("client/key.pem") {
                // docker:dind: shared with arbitrary client contexts (sidecars, jobs).
                0o644
            } else if to.ends_with("key.pem") {
                0o600
            } else {
                0o644
            };
            fs::set_permissions(from, fs::Permissions::from_mode(mode))
                .map_err(|e| fs_error(dir, "set the mode of", from, &e))?;
            fs::rename(from, to).map_err(|e| fs_error(dir, "rename", from, &e))?;
        }
        if i == 0 {
            // The CA certificate, renewed: the server's and the client's copies too.
            let ca = dir.join("ca/cert.pem");
            let pem = fs::read(&ca).map_err(|e| fs_error(dir, "read", &ca, &e))?;
            for copy in ["server/ca.pem", "client/ca.pem"] {
                write_atomic(dir, &dir.join(copy), &pem, 0o644)?;
            }
        }
    }
    // A client key made by an older docker:dind (or kept from one) is 0644 as well.
    let client_key = dir.join("client/key.pem");
    fs::set_permissions(&client_key, fs::Permissions::from_mode(0o644))
        .map_err(|e| fs_error(dir, "set the mode of", &client_key, &e))
}

/// Certificates the user manages: the server certificate must verify against
/// server/ca.pem, and its public key must be server/key.pem's.
fn verify_user_managed(dir: &Path, openssl: &Path) -> Result<(), Error> {
    let ca = dir.join("server/ca.pem");
    let cert = dir.join("server/cert.pem");
    let key = dir.join("server/key.pem");
    for f in [&ca, &cert, &key] {
        fs::File::open(f).map_err(|e| fs_error(dir, "read", f, &e))?;
    }
    let arg = |p: &Path| OsString::from(p);
    run_openssl(
        dir,
        openssl,
        "the verification of server/cert.pem against server/ca.pem",
        &[
            arg(Path::new("verify")),
            "-CAfile".into(),
            arg(&ca),
            arg(&cert),
        ],
    )?;
    let from_cert = run_openssl(
        dir,
        openssl,
        "reading server/cert.pem",
        &[
            "x509".into(),
            "-noout".into(),
            "-pubkey".into(),
            "-in".into(),
            arg(&cert),
        ],
    )?;
    let from_key = run_openssl(
        dir,
        openssl,
        "reading server/key.pem",
        &[
            "pkey".into(),
            "-pubout".into(),
            "-passin".into(),
            "pass:".into(),
            "-in".into(),
            arg(&key),
        ],
    )?;
    if from_cert.stdout.trim() != from_key.stdout.trim() || from_cert.stdout.trim().is_empty() {
        return Err(tls_error(
            dir,
            "server/cert.pem does not belong to server/key.pem (their public keys differ)",
        ));
    }
    Ok(())
}

/// What `check` says about the contract without changing anything: one line, and
/// whether it is an error (dockerd would not get its TLS listener).
pub fn inspect(request: &Request, path: Option<&OsStr>) -> (String, bool) {
    match request {
        Request::Off => (format!("off ({CERTDIR_ENV} is not set: no TCP listener)"), false),
        Request::ArgsHaveTcp => (
            format!("{CERTDIR_ENV} is set, but dockerd's arguments name a TCP host: dind-init adds none"),
            false,
        ),
        Request::Plain => (
            format!("plain: {CERTDIR_ENV} is empty, dockerd will listen on {PLAIN_HOST} without TLS"),
            false,
        ),
        Request::Tls(dir) => {
            let layout = layout(&Found::read(dir));
            let what = match layout {
                Layout::UserManaged => "user-managed certificates (verified, never written)",
                Layout::Managed { new_ca_key: true, .. } => "a new CA and certificates will be made",
                Layout::Managed { .. } => "the CA is kept; certificates will be renewed",
                Layout::Incomplete => {
                    return (
                        format!("error: {}: ca/cert.pem without ca/key.pem and no complete server/ files: nothing can be signed", dir.display()),
                        true,
                    )
                }
            };
            match locate_program(OsStr::new("openssl"), path, DEFAULT_PATH) {
                DockerdBinary::Found(p) => (
                    format!("{TLS_HOST} with --tlsverify, certificates in {}: {what} ({})", dir.display(), p.display()),
                    false,
                ),
                other => (
                    format!("error: {CERTDIR_ENV}={} needs the openssl command: install openssl in the image ({other})", dir.display()),
                    true,
                ),
            }
        }
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

    #[test]
    fn request_table() {
        let certs = Some(OsStr::new("/certs"));
        let empty = Some(OsStr::new(""));
        let cases: Vec<(Option<&OsStr>, Vec<String>, Request)> = vec![
            (None, v(&[]), Request::Off),
            (None, v(&["-H", "tcp://0.0.0.0:2375"]), Request::Off),
            (certs, v(&[]), Request::Tls(PathBuf::from("/certs"))),
            (empty, v(&[]), Request::Plain),
            // A unix host of the user's is no TCP host.
            (
                certs,
                v(&["-H", "unix:///x.sock"]),
                Request::Tls(PathBuf::from("/certs")),
            ),
            (
                certs,
                v(&["--host=fd://"]),
                Request::Tls(PathBuf::from("/certs")),
            ),
            (
                certs,
                v(&["--host=tcp://127.0.0.1:2376"]),
                Request::ArgsHaveTcp,
            ),
            (empty, v(&["-Htcp://0.0.0.0:2375"]), Request::ArgsHaveTcp),
            // dockerd reads a host without a scheme as TCP.
            (certs, v(&["-H", ":2375"]), Request::ArgsHaveTcp),
        ];
        for (dir, args, want) in cases {
            assert_eq!(request(dir, &args), want, "{dir:?} {args:?}");
        }
    }

    #[test]
    fn layout_table() {
        let none = Found::default();
        let all = Found {
            ca_key: true,
            ca_cert: true,
            server_ca: true,
            server_cert: true,
            server_key: true,
            client_key: true,
        };
        let user = Found {
            ca_key: false,
            ca_cert: false,
            client_key: false,
            ..all
        };
        let cases = [
            (
                none,
                Layout::Managed {
                    new_ca_key: true,
                    new_server_key: true,
                    new_client_key: true,
                },
            ),
            (
                all,
                Layout::Managed {
                    new_ca_key: false,
                    new_server_key: false,
                    new_client_key: false,
                },
            ),
            // Only the CA key: the rest is made from it.
            (
                Found {
                    ca_key: true,
                    ..none
                },
                Layout::Managed {
                    new_ca_key: false,
                    new_server_key: true,
                    new_client_key: true,
                },
            ),
            (user, Layout::UserManaged),
            // The user's CA certificate too, still no CA key: still the user's.
            (
                Found {
                    ca_cert: true,
                    ..user
                },
                Layout::UserManaged,
            ),
            // One server file missing and a CA certificate without its key.
            (
                Found {
                    server_key: false,
                    ca_cert: true,
                    ..user
                },
                Layout::Incomplete,
            ),
            // One server file missing, no CA at all: a fresh CA (docker:dind does so).
            (
                Found {
                    server_key: false,
                    ..user
                },
                Layout::Managed {
                    new_ca_key: true,
                    new_server_key: true,
                    new_client_key: true,
                },
            ),
        ];
        for (found, want) in cases {
            assert_eq!(layout(&found), want, "{found:?}");
        }
    }

    fn joined(step: &Step) -> String {
        step.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn steps_make_missing_keys_and_renew_certificates() {
        let dir = Path::new("/certs");
        let cnf = Path::new("/certs/.cnf");
        let fresh = managed_steps(
            dir,
            Layout::Managed {
                new_ca_key: true,
                new_server_key: true,
                new_client_key: false,
            },
            cnf,
        );
        let cmds: Vec<String> = fresh.iter().map(joined).collect();
        assert_eq!(
            cmds[0],
            "req -config /certs/.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
             -keyout /certs/ca/key.pem.tmp -passin pass: -subj /CN=docker:dind CA -days 825 \
             -extensions dind_ca -out /certs/ca/cert.pem.tmp"
        );
        assert_eq!(
            cmds[1],
            "req -config /certs/.cnf -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc \
             -keyout /certs/server/key.pem.tmp -CA /certs/ca/cert.pem -CAkey /certs/ca/key.pem \
             -passin pass: -subj /CN=docker:dind server -days 825 -extensions dind_server \
             -out /certs/server/cert.pem.tmp"
        );
        // The client key is kept: only its certificate is made.
        assert_eq!(
            cmds[2],
            "req -config /certs/.cnf -x509 -new -key /certs/client/key.pem -CA /certs/ca/cert.pem \
             -CAkey /certs/ca/key.pem -passin pass: -subj /CN=docker:dind client -days 825 \
             -extensions dind_client -out /certs/client/cert.pem.tmp"
        );
        assert_eq!(
            cmds[3],
            "verify -CAfile /certs/ca/cert.pem /certs/server/cert.pem /certs/client/cert.pem"
        );
        assert_eq!(
            fresh[0].outputs,
            vec![
                (
                    PathBuf::from("/certs/ca/key.pem.tmp"),
                    PathBuf::from("/certs/ca/key.pem")
                ),
                (
                    PathBuf::from("/certs/ca/cert.pem.tmp"),
                    PathBuf::from("/certs/ca/cert.pem")
                ),
            ]
        );
        assert_eq!(fresh[2].outputs.len(), 1);
        assert!(managed_steps(dir, Layout::UserManaged, cnf).is_empty());
        assert!(managed_steps(dir, Layout::Incomplete, cnf).is_empty());
    }

    #[test]
    fn extra_sans_table() {
        let ok: &[(&str, &[&str])] = &[
            ("", &[]),
            (
                "DNS:a.example IP:10.0.0.1",
                &["DNS:a.example", "IP:10.0.0.1"],
            ),
            ("DNS:a,DNS:b ,, IP:::1", &["DNS:a", "DNS:b", "IP:::1"]),
            (
                "build.local 192.0.2.7",
                &["DNS:build.local", "IP:192.0.2.7"],
            ),
            ("fe80::1", &["IP:fe80::1"]),
            ("DNS:*.svc.cluster.local", &["DNS:*.svc.cluster.local"]),
            ("URI:spiffe://x/y", &["URI:spiffe://x/y"]),
        ];
        for (text, want) in ok {
            assert_eq!(parse_extra_sans(text).unwrap(), v(want), "{text:?}");
        }
        for bad in ["DNS:a$b", "IP:nope", "DNS:a#b", "X:y", "a\"b", "DNS:"] {
            assert!(parse_extra_sans(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_names_table() {
        let hosts = "127.0.0.1\tlocalhost\n172.17.0.3\tdind-7f9c.ci.internal dind-7f9c docker # alias\n10.0.0.9 other\n";
        assert_eq!(
            host_names("dind-7f9c", "dind-7f9c\n", hosts),
            v(&["dind-7f9c", "dind-7f9c.ci.internal", "docker"])
        );
        // A fully qualified uname gives its short form; junk is skipped.
        assert_eq!(
            host_names("pod.ns.svc", "bad name!\n", ""),
            v(&["pod.ns.svc", "pod"])
        );
        assert_eq!(host_names("", "", ""), Vec::<String>::new());
    }

    #[test]
    fn sans_are_unique_and_ordered() {
        let addrs: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let sans = server_sans(&addrs, &v(&["h", "docker"]), &v(&["DNS:h", "IP:192.0.2.1"]));
        assert_eq!(
            sans,
            v(&[
                "DNS:docker",
                "DNS:localhost",
                "DNS:h",
                "IP:127.0.0.1",
                "IP:::1",
                "IP:192.0.2.1"
            ])
        );
        let cnf = openssl_config(&sans);
        assert!(cnf.contains(
            "subjectAltName = DNS:docker,DNS:localhost,DNS:h,IP:127.0.0.1,IP:::1,IP:192.0.2.1\n"
        ));
        assert!(cnf.contains("[dind_ca]\nbasicConstraints = critical,CA:TRUE\n"));
        assert!(cnf.contains("[dind_client]\nextendedKeyUsage = clientAuth\n"));
    }
}
