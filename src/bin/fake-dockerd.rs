//! `fake-dockerd`: a test helper that stands in for `dockerd` (and for a main COMMAND) in
//! the integration tests, which run the real init as PID 1.
//!
//! Every argument it does not know is accepted and ignored (the init passes dockerd flags
//! such as `--host=unix:///path`, `-H unix:///path`, `--iptables=false`). Its behaviour
//! comes only from `--fake-*` switches, each written `--fake-NAME=VALUE` or
//! `--fake-NAME VALUE` (booleans: `--fake-NAME`), and each also settable by the environment
//! variable `FAKE_DOCKERD_<NAME>` (upper case, `-` → `_`, e.g. `FAKE_DOCKERD_EXIT_CODE=3`,
//! booleans true unless empty, `0`, `false` or `no`). Flags win over the environment. An
//! unknown `--fake-*` switch or a bad value is a usage error (exit 2).
//!
//! Switches, in the order they act:
//! - `--fake-report=FILE`: append one JSON object per line to FILE (O_APPEND, one write per
//!   line). First `{"event":"start","pid","ppid","pgid","sid","tty_fg","blocked","ignored",
//!   "args","env","mounts"}` (`blocked`/`ignored` as inherited, from /proc/self/status;
//!   `mounts` the /proc/self/mountinfo lines mentioning cgroup), then `signal` (`signal`,
//!   `name`), `orphans` (`count`), `zombies` (`count`), `ready`, and `exit` (`code`, or
//!   `signal` for `--fake-die-by`).
//! - `--fake-setsid`: call setsid() first (before the start event).
//! - `--fake-ignore-term`: set SIGTERM to SIG_IGN.
//! - `--fake-trap=LIST`: comma-separated signal names (`USR1`, `SIGUSR1` or numbers) to catch;
//!   each delivery is reported as a `signal` event. Others keep their disposition.
//! - `--fake-exit-on=LIST`: when one of these arrives (they are trapped too), exit with
//!   `--fake-exit-code` after `--fake-term-delay-ms=N` (default 0).
//! - `--fake-bind-early`: bind the ping socket at start, but answer only once ready.
//! - `--fake-orphans=K`: make K orphans that become zombies re-parented to the init (each
//!   intermediate child makes up to 10 grandchildren that exit at once, then exits itself; only
//!   the intermediate children are reaped); report `orphans` (exit 1 if fewer were made).
//! - `--fake-wait-no-zombies=SECS`: poll /proc every 10 ms until no process is a zombie
//!   (reaping any child itself when it is PID 1); report `zombies`; exit 3 if some remain.
//! - `--fake-print-lines=N`: print `line 1` … `line N` to stderr.
//! - `--fake-print-long=N`: print one line of N `x` to stdout.
//! - `--fake-print-unterminated=TEXT`: write TEXT to stderr without a newline.
//! - `--fake-spawn=CMD` (repeatable): start `/bin/sh -c CMD` and do not wait for it (it is
//!   reaped without a report when it exits).
//! - `--fake-ready-after-ms=N` / `--fake-ping-socket=PATH`: N ms after start (default 0)
//!   become ready: listen on PATH (default: the `--host`/`-H` `unix://` path) and answer
//!   `GET /_ping` with 200 `OK` (other paths 404), one response per connection; send
//!   `READY=1` to `$NOTIFY_SOCKET` (`@` = abstract) unless `--fake-no-notify`; report `ready`.
//! - `--fake-no-notify`: never use `$NOTIFY_SOCKET`.
//! - `--fake-exit-after-ms=N`: exit N ms after start with `--fake-exit-code`.
//! - `--fake-sleep-ms=N`: exit N ms after the main loop starts with `--fake-exit-code`.
//! - `--fake-die-by=SIG`: whenever it would exit normally, die by SIG instead (default
//!   action, unblocked, raised; `exit` event with `signal`).
//! - `--fake-exit-code=C` (default 0): the exit code. With nothing keeping it busy (exit-after,
//!   sleep, readiness, bind-early, trap) it exits with C right after the steps above.
//!
//! Every clean exit sends `STOPPING=1` first when `READY=1` was sent, and removes the socket.

// A test helper: a broken invariant should fail loudly rather than be handled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Own `main` so that std does not set SIGPIPE to SIG_IGN before we can report what we inherited.
#![no_main]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, Pid};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{send, SendFlags};

/// Switches taking a value; the rest are booleans.
const VALUED: &[&str] = &[
    "report",
    "orphans",
    "wait-no-zombies",
    "trap",
    "exit-on",
    "term-delay-ms",
    "exit-code",
    "print-long",
    "print-unterminated",
    "print-lines",
    "ping-socket",
    "ready-after-ms",
    "exit-after-ms",
    "die-by",
    "sleep-ms",
    "spawn",
];
const BOOLEAN: &[&str] = &["setsid", "ignore-term", "no-notify", "bind-early"];

/// Write end of the self-pipe the signal handler writes signal numbers into.
static SIG_PIPE_W: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: c_int) {
    let saved = Errno::last_raw();
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the fd is the self-pipe's non-blocking write end,
    // open for the whole process lifetime, and the buffer is a live one-byte local.
    unsafe {
        nix::libc::write(
            SIG_PIPE_W.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
    Errno::set_raw(saved);
}

fn usage(msg: &str) -> ! {
    eprintln!("fake-dockerd: {msg}");
    std::process::exit(2)
}

/// JSON string literal for `s`.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse_signal(s: &str) -> Signal {
    let s = s.trim();
    let sig = match s.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let up = s.to_ascii_uppercase();
            let name = if up.starts_with("SIG") {
                up
            } else {
                format!("SIG{up}")
            };
            Signal::from_str(&name).ok()
        }
    };
    sig.unwrap_or_else(|| usage(&format!("unknown signal {s:?}")))
}

fn parse_signals(s: &str) -> Vec<Signal> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_signal)
        .collect()
}

/// Switch values: environment first, then flags (flags replace the environment's values).
struct Switches(HashMap<&'static str, Vec<String>>);

impl Switches {
    fn parse(args: &[String]) -> Switches {
        let mut map: HashMap<&'static str, Vec<String>> = HashMap::new();
        for &name in VALUED.iter().chain(BOOLEAN) {
            let var = format!(
                "FAKE_DOCKERD_{}",
                name.replace('-', "_").to_ascii_uppercase()
            );
            if let Ok(v) = std::env::var(&var) {
                map.insert(name, vec![v]);
            }
        }
        let mut from_flags: HashMap<&'static str, Vec<String>> = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            if let Some(rest) = args[i].strip_prefix("--fake-") {
                let (key, inline) = match rest.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_string())),
                    None => (rest, None),
                };
                let value = if let Some(&name) = VALUED.iter().find(|n| **n == key) {
                    let v = match inline {
                        Some(v) => v,
                        None => {
                            i += 1;
                            args.get(i)
                                .cloned()
                                .unwrap_or_else(|| usage(&format!("--fake-{key} needs a value")))
                        }
                    };
                    Some((name, v))
                } else {
                    BOOLEAN
                        .iter()
                        .find(|n| **n == key)
                        .map(|&name| (name, inline.unwrap_or_else(|| "1".into())))
                };
                let (name, v) =
                    value.unwrap_or_else(|| usage(&format!("unknown switch --fake-{key}")));
                from_flags.entry(name).or_default().push(v);
            }
            i += 1;
        }
        map.extend(from_flags);
        Switches(map)
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.last(name)
            .is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
    }

    fn num<T: FromStr>(&self, name: &str) -> Option<T> {
        self.last(name).map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| usage(&format!("bad value {v:?} for --fake-{name}")))
        })
    }
}

/// The `unix://` path of the first `--host`/`-H` argument, in any of dockerd's spellings.
fn host_path(args: &[String]) -> Option<PathBuf> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let value = if a == "-H" || a == "--host" {
            i += 1;
            args.get(i).map(String::as_str)
        } else {
            a.strip_prefix("--host=")
                .or_else(|| a.strip_prefix("-H="))
                .or_else(|| a.strip_prefix("-H"))
        };
        if let Some(p) = value.and_then(|v| v.strip_prefix("unix://")) {
            return Some(PathBuf::from(p));
        }
        i += 1;
    }
    None
}

/// Signal numbers set in a hex mask line (`SigBlk:`, `SigIgn:`) of /proc/self/status.
fn status_mask(status: &str, key: &str) -> String {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or("0")
        .trim();
    let mask = u64::from_str_radix(hex, 16).unwrap_or(0);
    let sigs: Vec<String> = (1..=64)
        .filter(|n| mask & (1u64 << (n - 1)) != 0)
        .map(|n: u32| n.to_string())
        .collect();
    format!("[{}]", sigs.join(","))
}

fn count_zombies() -> usize {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            let stat = fs::read(e.path().join("stat")).unwrap_or_default();
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2));
            state == Some(&b'Z')
        })
        .count()
}

struct Fake {
    report: Option<File>,
    notify: Option<SocketAddr>,
    notified: bool,
    socket_path: Option<PathBuf>,
    listener: Option<UnixListener>,
    ready: bool,
    die_by: Option<Signal>,
}

impl Fake {
    fn event(&mut self, json: &str) {
        if let Some(f) = &mut self.report {
            let line = format!("{json}\n");
            let mut buf = line.as_bytes();
            while !buf.is_empty() {
                match f.write(buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf = &buf[n..],
                }
            }
        }
    }

    fn send_notify(&self, msg: &str) -> bool {
        let Some(addr) = &self.notify else {
            return false;
        };
        match UnixDatagram::unbound().and_then(|s| s.send_to_addr(msg.as_bytes(), addr)) {
            Ok(_) => true,
            Err(e) => {
                eprintln!("fake-dockerd: NOTIFY_SOCKET {msg}: {e}");
                false
            }
        }
    }

    fn bind(&mut self) {
        let Some(path) = self.socket_path.clone() else {
            return;
        };
        if self.listener.is_some() {
            return;
        }
        let _ = fs::remove_file(&path);
        match UnixListener::bind(&path).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
            Ok(l) => self.listener = Some(l),
            Err(e) => {
                eprintln!("fake-dockerd: cannot listen on {}: {e}", path.display());
                self.finish(1, false)
            }
        }
    }

    fn become_ready(&mut self) {
        self.bind();
        self.ready = true;
        self.notified = self.send_notify("READY=1");
        self.event(r#"{"event":"ready"}"#);
    }

    fn serve(&self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n")
            && !req.windows(2).any(|w| w == b"\n\n")
            && req.len() < 8192
        {
            match (&stream).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&req);
        let mut words = text.lines().next().unwrap_or("").split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let resp: &[u8] =
            if matches!(method, "GET" | "HEAD") && path.split('?').next() == Some("/_ping") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nOK"
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
            };
        // MSG_NOSIGNAL: SIGPIPE keeps its inherited disposition, a vanished client must not kill us.
        let _ = send(stream.as_fd(), resp, SendFlags::NOSIGNAL);
    }

    /// Every clean exit: STOPPING=1, remove the socket, report, then exit or die by a signal.
    fn finish(&mut self, code: i32, allow_die: bool) -> ! {
        if self.notified {
            self.send_notify("STOPPING=1");
        }
        if self.listener.take().is_some() {
            if let Some(p) = &self.socket_path {
                let _ = fs::remove_file(p);
            }
        }
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        if let (true, Some(sig)) = (allow_die, self.die_by) {
            self.event(&format!(r#"{{"event":"exit","signal":{}}}"#, sig as i32));
            // SAFETY: installs the default disposition; no handler code is involved.
            let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
            let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::from(sig)), None);
            let _ = signal::raise(sig);
            // Still alive (e.g. PID 1, where the kernel drops default-action signals).
            std::process::exit(128 + sig as i32)
        }
        self.event(&format!(r#"{{"event":"exit","code":{code}}}"#));
        std::process::exit(code)
    }
}

/// Grandchildren per intermediate child in `--fake-orphans`.
const ORPHAN_BATCH: u64 = 10;
const STACK_SIZE: usize = 64 * 1024;

/// Shared (CLONE_VM) between the helper and an intermediate child of `--fake-orphans`.
struct Batch {
    want: u64,
    made: AtomicU64,
    grandchild_stack: *mut c_void,
}

extern "C" fn orphan_grandchild(_: *mut c_void) -> c_int {
    0
}

extern "C" fn orphan_child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the helper's live `Batch`; the helper is suspended (CLONE_VFORK) until
    // this child exits, so nothing else touches it meanwhile.
    let batch = unsafe { &*arg.cast::<Batch>() };
    for _ in 0..batch.want {
        // SAFETY: CLONE_VM | CLONE_VFORK: this child is suspended until the grandchild exits,
        // and the grandchild runs only `orphan_grandchild` (no memory touched) on its own stack.
        let pid = unsafe {
            nix::libc::clone(
                orphan_grandchild,
                batch.grandchild_stack,
                nix::libc::CLONE_VM | nix::libc::CLONE_VFORK | nix::libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        if pid < 0 {
            break;
        }
        batch.made.fetch_add(1, Ordering::Relaxed);
    }
    // Returning exits this child (exit syscall): its zombie grandchildren go to the init.
    0
}

/// Make `count` zombies re-parented to the init: an intermediate child makes up to
/// `ORPHAN_BATCH` grandchildren that exit at once (zombies it never reaps), then exits; the
/// helper reaps only the intermediate child. Both are `clone(CLONE_VM | CLONE_VFORK)`s, which
/// copy no page tables: plain fork() made only ~3000 orphans a second on a test VM.
fn make_orphans(count: u64) -> u64 {
    let mut stacks = vec![0u8; 2 * STACK_SIZE];
    let base = stacks.as_mut_ptr();
    let top = |i: usize| -> *mut c_void {
        let end = base.wrapping_add((i + 1) * STACK_SIZE);
        end.wrapping_sub(end as usize % 16).cast()
    };
    let (child_stack, grandchild_stack) = (top(0), top(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut made = 0;
    while made < count {
        let batch = Batch {
            want: ORPHAN_BATCH.min(count - made),
            made: AtomicU64::new(0),
            grandchild_stack,
        };
        // SAFETY: CLONE_VM | CLONE_VFORK suspends the helper until the child exits; the child
        // runs `orphan_child` on its own stack, touching only `batch` (alive across the call),
        // and calls nothing but clone.
        let pid = unsafe {
            nix::libc::clone(
                orphan_child,
                child_stack,
                nix::libc::CLONE_VM | nix::libc::CLONE_VFORK | nix::libc::SIGCHLD,
                (&batch as *const Batch).cast_mut().cast(),
            )
        };
        if pid < 0 {
            let e = Errno::last();
            if e == Errno::EAGAIN && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            eprintln!("fake-dockerd: clone after {made} orphans: {e}");
            return made;
        }
        while let Err(Errno::EINTR) = waitpid(Pid::from_raw(pid), None) {}
        let n = batch.made.load(Ordering::Relaxed);
        made += n;
        if n < batch.want && Instant::now() >= deadline {
            eprintln!("fake-dockerd: clone failed after {made} orphans");
            return made;
        }
        if n < batch.want {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    made
}

/// Poll until no zombie is left in /proc or `secs` pass; the last count seen.
fn wait_no_zombies(secs: f64) -> usize {
    let deadline = Instant::now() + Duration::from_secs_f64(secs.max(0.0));
    let pid1 = unistd::getpid().as_raw() == 1;
    loop {
        if pid1 {
            while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                if s == WaitStatus::StillAlive {
                    break;
                }
            }
        }
        let n = count_zombies();
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn install_handler(sig: Signal) {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2) and saves/restores errno (async-signal-safe).
    if let Err(e) = unsafe { signal::sigaction(sig, &action) } {
        usage(&format!("cannot trap {}: {e}", sig.as_str()))
    }
}

#[no_mangle]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let args: Vec<String> = (1..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes `argc` valid, NUL-terminated strings in `argv`,
            // alive for the whole process.
            let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
            arg.to_string_lossy().into_owned()
        })
        .collect();
    run(&args)
}

fn run(args: &[String]) -> ! {
    let start = Instant::now();
    let sw = Switches::parse(args);
    if sw.flag("setsid") {
        if let Err(e) = unistd::setsid() {
            eprintln!("fake-dockerd: setsid: {e}");
        }
    }

    // What we inherited, before touching any disposition.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let (blocked, ignored) = (
        status_mask(&status, "SigBlk:"),
        status_mask(&status, "SigIgn:"),
    );
    let tty_fg = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open("/dev/tty")
        .ok()
        .and_then(|t| unistd::tcgetpgrp(&t).ok())
        .map_or("null".to_string(), |p| p.to_string());

    let exit_code: i32 = sw.num("exit-code").unwrap_or(0);
    if !(0..=255).contains(&exit_code) {
        usage("--fake-exit-code must be 0..=255");
    }
    let exit_on = sw.last("exit-on").map(parse_signals).unwrap_or_default();
    let mut trap = sw.last("trap").map(parse_signals).unwrap_or_default();
    trap.extend(exit_on.iter().copied());
    let spawn = sw.0.get("spawn").cloned().unwrap_or_default();
    let ready_after: Option<u64> = sw.num("ready-after-ms");
    let ping_socket = sw.last("ping-socket").map(PathBuf::from);
    let wants_ready = ready_after.is_some() || ping_socket.is_some();
    let bind_early = sw.flag("bind-early");
    let notify_var = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|v| !v.is_empty() && !sw.flag("no-notify"));
    let notify = notify_var.map(|v| match v.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(&v),
    });
    let notify = notify.map(|r| r.unwrap_or_else(|e| usage(&format!("bad NOTIFY_SOCKET: {e}"))));
    let mut fake = Fake {
        report: sw.last("report").map(|p| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .unwrap_or_else(|e| usage(&format!("report {p}: {e}")))
        }),
        notify,
        notified: false,
        socket_path: ping_socket.or_else(|| host_path(args)),
        listener: None,
        ready: false,
        die_by: sw.last("die-by").map(parse_signal),
    };
    if bind_early && fake.socket_path.is_none() {
        usage("--fake-bind-early needs --fake-ping-socket or --host=unix://PATH");
    }

    // Signals: ignore, then trap through the self-pipe.
    if sw.flag("ignore-term") {
        // SAFETY: SIG_IGN involves no handler code.
        let _ = unsafe { signal::signal(Signal::SIGTERM, SigHandler::SigIgn) };
    }
    let (sig_r, sig_w): (OwnedFd, OwnedFd) = rustix::pipe::pipe_with(
        rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
    )
    .unwrap_or_else(|e| usage(&format!("pipe: {e}")));
    SIG_PIPE_W.store(sig_w.into_raw_fd(), Ordering::Relaxed);
    for &sig in &trap {
        install_handler(sig);
    }
    if !spawn.is_empty() && !trap.contains(&Signal::SIGCHLD) {
        install_handler(Signal::SIGCHLD);
    }

    let me = unistd::getpid();
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}:{}", js(&k.to_string_lossy()), js(&v.to_string_lossy())))
        .collect();
    let mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("cgroup"))
        .map(String::from)
        .collect();
    let start_event = format!(
        r#"{{"event":"start","pid":{},"ppid":{},"pgid":{},"sid":{},"tty_fg":{},"blocked":{},"ignored":{},"args":[{}],"env":{{{}}},"mounts":{}}}"#,
        me,
        unistd::getppid(),
        unistd::getpgrp(),
        unistd::getsid(None).map_or(-1, Pid::as_raw),
        tty_fg,
        blocked,
        ignored,
        args.iter().map(|a| js(a)).collect::<Vec<_>>().join(","),
        env.join(","),
        js(&mounts.join("\n")),
    );
    fake.event(&start_event);
    if bind_early {
        fake.bind();
    }

    if let Some(k) = sw.num::<u64>("orphans") {
        let made = make_orphans(k);
        fake.event(&format!(r#"{{"event":"orphans","count":{made}}}"#));
        if made < k {
            fake.finish(1, false)
        }
    }
    if let Some(secs) = sw.num::<f64>("wait-no-zombies") {
        let n = wait_no_zombies(secs);
        fake.event(&format!(r#"{{"event":"zombies","count":{n}}}"#));
        if n > 0 {
            eprintln!("fake-dockerd: {n} zombies remain");
            fake.finish(3, false)
        }
    }

    if let Some(n) = sw.num::<u64>("print-lines") {
        let mut err = std::io::stderr().lock();
        for i in 1..=n {
            let _ = writeln!(err, "line {i}");
        }
    }
    if let Some(n) = sw.num::<usize>("print-long") {
        let mut line = vec![b'x'; n];
        line.push(b'\n');
        let _ = std::io::stdout().lock().write_all(&line);
        let _ = std::io::stdout().flush();
    }
    if let Some(text) = sw.last("print-unterminated") {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    let mut children = Vec::new();
    for cmd in &spawn {
        match Command::new("/bin/sh").arg("-c").arg(cmd).spawn() {
            Ok(c) => children.push(Pid::from_raw(c.id() as i32)),
            Err(e) => eprintln!("fake-dockerd: spawn {cmd:?}: {e}"),
        }
    }

    let loop_start = Instant::now();
    let mut ready_at = wants_ready.then(|| start + Duration::from_millis(ready_after.unwrap_or(0)));
    let mut exit_at = [
        sw.num("exit-after-ms")
            .map(|ms| start + Duration::from_millis(ms)),
        sw.num("sleep-ms")
            .map(|ms| loop_start + Duration::from_millis(ms)),
    ]
    .into_iter()
    .flatten()
    .min();
    let busy = exit_at.is_some() || wants_ready || bind_early || !trap.is_empty();
    if !busy {
        fake.finish(exit_code, true)
    }
    let term_delay = Duration::from_millis(sw.num("term-delay-ms").unwrap_or(0));

    loop {
        let now = Instant::now();
        if ready_at.is_some_and(|t| now >= t) {
            ready_at = None;
            fake.become_ready();
        }
        if exit_at.is_some_and(|t| now >= t) {
            fake.finish(exit_code, true)
        }
        let timeout = [ready_at, exit_at].into_iter().flatten().min().map(|t| {
            Timespec::try_from(t.saturating_duration_since(now)).unwrap_or(Timespec {
                tv_sec: 3600,
                tv_nsec: 0,
            })
        });
        let listener = fake.listener.as_ref().filter(|_| fake.ready);
        let (sig_ready, conn_ready) = {
            let mut fds = vec![PollFd::new(&sig_r, PollFlags::IN)];
            if let Some(l) = listener {
                fds.push(PollFd::new(l, PollFlags::IN));
            }
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    eprintln!("fake-dockerd: poll: {e}");
                    fake.finish(1, false)
                }
            }
            (
                !fds[0].revents().is_empty(),
                fds.get(1).is_some_and(|f| !f.revents().is_empty()),
            )
        };
        if sig_ready {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = rustix::io::read(&sig_r, &mut buf) {
                for &b in &buf[..n] {
                    let Ok(sig) = Signal::try_from(i32::from(b)) else {
                        continue;
                    };
                    if sig == Signal::SIGCHLD {
                        children.retain(|&pid| {
                            matches!(
                                waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                                Ok(WaitStatus::StillAlive)
                            )
                        });
                    }
                    if !trap.contains(&sig) {
                        continue;
                    }
                    fake.event(&format!(
                        r#"{{"event":"signal","signal":{},"name":"{}"}}"#,
                        sig as i32,
                        sig.as_str()
                    ));
                    if exit_on.contains(&sig) {
                        let t = Instant::now() + term_delay;
                        exit_at = Some(exit_at.map_or(t, |e| e.min(t)));
                    }
                }
            }
        }
        if conn_ready {
            while let Some(Ok((stream, _))) = fake.listener.as_ref().map(UnixListener::accept) {
                fake.serve(stream);
            }
        }
    }
}
