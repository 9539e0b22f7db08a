//! `verify = "container"` (SPEC §8): ready means a container really ran.
//!
//! After the first good ping of each dockerd run, the init imports a one-file image
//! made of its own static binary through the Docker API (`POST /images/create
//! ?fromSrc=-`, no registry, nothing in the image's Dockerfile), creates and starts
//! a container from it on the default bridge network running `--version`, waits for
//! exit code 0, and removes it. Only then is dockerd `ready`. The image is tagged
//! with the binary's version and a hash of its bytes, so a second dockerd run (or a
//! restarted one with the same data root) finds it and skips the import.
//!
//! A failure leaves dockerd `degraded` with a reason that names the failing step
//! and dockerd's words; the loop adds the matching known limit (`limits.rs`) and
//! retries with backoff ([`Backoff`]: 1 s doubling to 30 s).
//!
//! This module is a pure state machine over the calls' answers: [`Verifier::next`]
//! says which Docker API call to make, given how the last one went. The loop makes
//! the calls (`api.rs`) without blocking.

use std::time::{Duration, Instant};

use crate::run::api::{Answer, Body, IMAGE_PATH};

/// The image's repository name.
pub const REPOSITORY: &str = "dind-init-verify";

/// First retry delay after a failed check, doubling up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// One Docker API call's time limit (the import of ~1 MB in gVisor takes well
/// under a second; the wait for `--version` less).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The check's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Housekeeping, first check of a dockerd run: remove test containers an
    /// interrupted check left (by their label).
    Prune,
    /// Is the image there already?
    Inspect,
    Import,
    Create,
    Start,
    Wait,
    Remove,
    /// Housekeeping after a passed check, first of a run: list the test images...
    ListImages,
    /// ...and remove those of other builds of dind-init, one call each.
    DeleteImage,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Prune => "prune",
            Step::Inspect => "inspect",
            Step::Import => "import",
            Step::Create => "create",
            Step::Start => "start",
            Step::Wait => "wait",
            Step::Remove => "remove",
            Step::ListImages => "list images",
            Step::DeleteImage => "delete image",
        }
    }
}

/// A Docker API call to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Body,
}

/// Why the check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub step: Step,
    /// dockerd's words (its error message), or what went wrong with the call.
    pub message: String,
    /// The init found the problem itself, before asking dockerd (a dynamically linked
    /// build): what dockerd logged does not explain it.
    pub ours: bool,
}

impl Failure {
    /// The degraded state's reason (without the known limit, which the loop adds).
    pub fn reason(&self) -> String {
        match self.step {
            Step::Wait => format!("a test container did not run: {}", self.message),
            step => format!(
                "a test container could not be made ({} failed): {}",
                step.as_str(),
                self.message
            ),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Call(Request),
    /// The check is over.
    Done(Result<(), Failure>),
}

/// One check in progress.
#[derive(Debug, Clone)]
pub struct Verifier {
    image: String,
    /// The test container's network: "bridge" (the default bridge), or "none" when
    /// dockerd runs without one (`--bridge=none`).
    network: &'static str,
    step: Step,
    container: Option<String>,
    /// The failure to report once the container is removed.
    failed: Option<Failure>,
    pub started: Instant,
    /// When the current step's call was made, and how long each finished step took.
    step_started: Instant,
    timings: Vec<(Step, Duration)>,
    /// The first check of this dockerd run: housekeeping before and after.
    tidy: bool,
    /// Tags of older test images still to delete.
    old_images: Vec<String>,
}

/// dockerd's error message in an error answer's JSON (`{"message": "..."}`), or
/// the body as it is.
fn message(answer: &Answer) -> String {
    let text = answer.text();
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or(text);
    let msg = msg.trim();
    let short: String = msg.chars().take(400).collect();
    if short.is_empty() {
        format!("HTTP {}", answer.status)
    } else {
        short
    }
}

/// Percent-encodes what a path segment or query value may not hold as it is.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Verifier {
    /// A check of the image `dind-init-verify:<tag>` on `network`: returns it and its
    /// first call. `tidy` (the first check of a dockerd run) adds housekeeping: test
    /// containers an interrupted check left are pruned first, and after a passed
    /// check the images of other dind-init builds are deleted. Housekeeping that
    /// fails changes nothing about the check's result.
    pub fn start(
        tag: &str,
        network: &'static str,
        tidy: bool,
        now: Instant,
    ) -> (Verifier, Request) {
        let first = if tidy { Step::Prune } else { Step::Inspect };
        let v = Verifier {
            image: format!("{REPOSITORY}:{tag}"),
            network,
            step: first,
            container: None,
            failed: None,
            started: now,
            step_started: now,
            timings: Vec::new(),
            tidy,
            old_images: Vec::new(),
        };
        let req = v.request(first);
        (v, req)
    }

    fn request(&self, step: Step) -> Request {
        let id = self.container.as_deref().unwrap_or("");
        let label = r#"{"label":["dind-init.verify=1"]}"#;
        match step {
            Step::Prune => Request {
                method: "POST",
                path: format!("/containers/prune?filters={}", encode(label)),
                body: Body::None,
            },
            Step::ListImages => Request {
                method: "GET",
                path: format!(
                    "/images/json?filters={}",
                    encode(&format!(r#"{{"reference":["{REPOSITORY}"]}}"#))
                ),
                body: Body::None,
            },
            Step::DeleteImage => Request {
                method: "DELETE",
                path: format!(
                    "/images/{}",
                    encode(self.old_images.last().map_or("", String::as_str))
                ),
                body: Body::None,
            },
            Step::Inspect => Request {
                method: "GET",
                path: format!("/images/{}/json", encode(&self.image)),
                body: Body::None,
            },
            Step::Import => {
                let (repo, tag) = self
                    .image
                    .split_once(':')
                    .unwrap_or((&self.image, "latest"));
                Request {
                    method: "POST",
                    path: format!(
                        "/images/create?fromSrc=-&repo={}&tag={}",
                        encode(repo),
                        encode(tag)
                    ),
                    body: Body::SelfTar,
                }
            }
            Step::Create => Request {
                method: "POST",
                path: "/containers/create".into(),
                body: Body::Json(
                    serde_json::json!({
                        "Image": self.image,
                        "Cmd": [format!("/{IMAGE_PATH}"), "--version"],
                        // Found by the next run's prune if this check is interrupted
                        // before its removal (AutoRemove would race the wait: a
                        // container that ends at once could be gone before it).
                        "Labels": {"dind-init.verify": "1"},
                        "HostConfig": {"NetworkMode": self.network},
                    })
                    .to_string(),
                ),
            },
            Step::Start => Request {
                method: "POST",
                path: format!("/containers/{}/start", encode(id)),
                body: Body::None,
            },
            Step::Wait => Request {
                method: "POST",
                path: format!("/containers/{}/wait", encode(id)),
                body: Body::None,
            },
            Step::Remove => Request {
                method: "DELETE",
                path: format!("/containers/{}?force=1&v=1", encode(id)),
                body: Body::None,
            },
        }
    }

    fn go(&mut self, step: Step) -> Next {
        self.step = step;
        Next::Call(self.request(step))
    }

    /// Fails at the current step; a container made already is removed first.
    fn fail(&mut self, message: String) -> Next {
        self.failed = Some(Failure {
            step: self.step,
            message,
            ours: false,
        });
        if self.container.is_some() && self.step != Step::Remove {
            self.go(Step::Remove)
        } else {
            Next::Done(Err(self.failed.take().unwrap_or(Failure {
                step: self.step,
                message: String::new(),
                ours: false,
            })))
        }
    }

    /// How long each step took so far, e.g. `inspect 2ms, create 41ms, start 1045ms`.
    pub fn timings(&self) -> String {
        self.timings
            .iter()
            .map(|(step, d)| format!("{} {}ms", step.as_str(), d.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How the last call ended (`Err` when it failed as a call: connection, time
    /// limit) at `now`; returns what to do next.
    pub fn next(&mut self, result: Result<Answer, String>, now: Instant) -> Next {
        self.timings
            .push((self.step, now.saturating_duration_since(self.step_started)));
        self.step_started = now;
        // Housekeeping: whatever happens, the check goes on (or ends) as it would.
        match self.step {
            Step::Prune => return self.go(Step::Inspect),
            Step::ListImages => {
                self.old_images = result
                    .ok()
                    .filter(|a| a.status == 200)
                    .map(|a| old_tags(&a.body, &self.image))
                    .unwrap_or_default();
                return self.next_old_image();
            }
            Step::DeleteImage => {
                self.old_images.pop();
                return self.next_old_image();
            }
            _ => {}
        }
        let answer = match result {
            Ok(a) => a,
            Err(_) if self.step == Step::Remove => {
                // The container is left over (the next run's prune takes it); the
                // check's result stands.
                return self.after_remove();
            }
            Err(why) => return self.fail(why),
        };
        match self.step {
            Step::Inspect => match answer.status {
                200 => self.go(Step::Create),
                404 => self.go(Step::Import),
                _ => self.fail(message(&answer)),
            },
            Step::Import => {
                // An import streams JSON progress with 200 even when it fails; an
                // error is a message with an "error" field.
                let text = answer.text();
                let error = text.lines().find_map(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                });
                match (answer.status, error) {
                    (200, None) => self.go(Step::Create),
                    (200, Some(e)) => self.fail(e),
                    _ => self.fail(message(&answer)),
                }
            }
            Step::Create => {
                let id = serde_json::from_slice::<serde_json::Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("Id").and_then(|i| i.as_str()).map(str::to_owned));
                match (answer.status, id) {
                    (201, Some(id)) => {
                        self.container = Some(id);
                        self.go(Step::Start)
                    }
                    _ => self.fail(message(&answer)),
                }
            }
            Step::Start => match answer.status {
                204 | 304 => self.go(Step::Wait),
                _ => self.fail(message(&answer)),
            },
            Step::Wait => {
                let v = serde_json::from_slice::<serde_json::Value>(&answer.body).ok();
                let code = v
                    .as_ref()
                    .and_then(|v| v.get("StatusCode").and_then(|c| c.as_i64()));
                match (answer.status, code) {
                    (200, Some(0)) => self.go(Step::Remove),
                    (200, Some(code)) => self.fail(format!("it exited with code {code}")),
                    _ => self.fail(message(&answer)),
                }
            }
            Step::Remove => self.after_remove(),
            Step::Prune | Step::ListImages | Step::DeleteImage => self.finish(),
        }
    }

    /// After the test container's removal: housekeeping of old images when the
    /// check passed on the first check of a run, else the end.
    fn after_remove(&mut self) -> Next {
        if self.tidy && self.failed.is_none() {
            self.go(Step::ListImages)
        } else {
            self.finish()
        }
    }

    fn next_old_image(&mut self) -> Next {
        if self.old_images.is_empty() {
            self.finish()
        } else {
            self.go(Step::DeleteImage)
        }
    }

    fn finish(&mut self) -> Next {
        Next::Done(match self.failed.take() {
            Some(f) => Err(f),
            None => Ok(()),
        })
    }
}

/// The tags of test images in an `/images/json` answer other than `current`.
fn old_tags(body: &[u8], current: &str) -> Vec<String> {
    let Ok(serde_json::Value::Array(images)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    images
        .iter()
        .filter_map(|i| i.get("RepoTags").and_then(|t| t.as_array()))
        .flatten()
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with(&format!("{REPOSITORY}:")) && *t != current)
        .map(str::to_owned)
        .take(32)
        .collect()
}

/// The network the test container joins: the default bridge, unless dockerd runs
/// without one (`--bridge=none`, `-b none`): then no network, as every container of
/// such a dockerd must be run.
pub fn network_for(dockerd_args: &[String]) -> &'static str {
    match crate::prepare::args::option_value(dockerd_args, &["--bridge", "-b"]).as_deref() {
        Some("none") => "none",
        _ => "bridge",
    }
}

/// The delay before the next check after failures: 1 s doubling to 30 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: RETRY_FIRST }
    }
}

impl Backoff {
    /// The delay to wait now; the next one doubles.
    pub fn take(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(RETRY_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = RETRY_FIRST;
    }
}

/// Whether the ELF file `bytes` starts is statically linked: it has no PT_INTERP
/// program header (a dynamically linked program names its loader there, which a
/// one-file image does not have). `None` when it is not a 64-bit little-endian ELF.
pub fn is_static_elf(file: &mut (impl std::io::Read + std::io::Seek)) -> Option<bool> {
    use std::io::SeekFrom;
    let mut head = [0u8; 64];
    file.read_exact(&mut head).ok()?;
    if head.get(..4)? != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    let phoff = u64::from_le_bytes(head.get(32..40)?.try_into().ok()?);
    let phentsize = u64::from(u16_at(&head, 54)?);
    let phnum = u64::from(u16_at(&head, 56)?);
    for i in 0..phnum {
        file.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        let mut ty = [0u8; 4];
        file.read_exact(&mut ty).ok()?;
        if u32::from_le_bytes(ty) == 3 {
            return Some(false);
        }
    }
    Some(true)
}

/// The image tag: the version and a hash (FNV-1a, 32 bits) of the binary's bytes,
/// so a rebuilt binary gets a new image and an unchanged one is imported once.
pub fn tag_for(version: &str, binary: &mut dyn std::io::Read) -> std::io::Result<String> {
    let mut hash: u32 = 0x811c_9dc5;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = binary.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for b in buf.get(..n).unwrap_or(&[]) {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    Ok(format!("{version}-{hash:08x}"))
}

#[cfg(test)]
// A failing test should panic; the crate-wide denials are for production code.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn a(status: u16, body: &str) -> Result<Answer, String> {
        Ok(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    /// Runs the check against scripted answers; returns the calls made and the end.
    fn run(answers: Vec<Result<Answer, String>>) -> (Vec<String>, Result<(), Failure>) {
        let (mut v, first) = Verifier::start("0.1.0-abcd", "bridge", false, Instant::now());
        let mut calls = vec![format!("{} {}", first.method, first.path)];
        for answer in answers {
            match v.next(answer, Instant::now()) {
                Next::Call(r) => calls.push(format!("{} {}", r.method, r.path)),
                Next::Done(result) => return (calls, result),
            }
        }
        panic!("not done after the scripted answers: {calls:?}");
    }

    #[test]
    fn a_container_runs_table() {
        let created = r#"{"Id":"c1","Warnings":[]}"#;
        // The image is there: no import.
        let (calls, result) = run(vec![
            a(200, "{}"),
            a(201, created),
            a(204, ""),
            a(200, r#"{"StatusCode":0}"#),
            a(204, ""),
        ]);
        assert_eq!(result, Ok(()));
        assert_eq!(
            calls,
            [
                "GET /images/dind-init-verify%3A0.1.0-abcd/json",
                "POST /containers/create",
                "POST /containers/c1/start",
                "POST /containers/c1/wait",
                "DELETE /containers/c1?force=1&v=1",
            ]
        );
        // Not there: imported first.
        let (calls, result) = run(vec![
            a(404, r#"{"message":"No such image"}"#),
            a(200, r#"{"status":"sha256:1234"}"#),
            a(201, created),
            a(204, ""),
            a(200, r#"{"StatusCode":0}"#),
            a(204, ""),
        ]);
        assert_eq!(result, Ok(()));
        assert_eq!(
            calls[1],
            "POST /images/create?fromSrc=-&repo=dind-init-verify&tag=0.1.0-abcd"
        );
    }

    #[test]
    fn failures_name_the_step_and_remove_the_container_table() {
        let created = r#"{"Id":"c1"}"#;
        let procfs = r#"{"message":"failed to create task for container: OCI runtime create failed: runc create failed: unsafe procfs detected: incorrect procfs root inode number 86: unknown"}"#;
        // (answers, failing step, message part, calls made)
        type Case = (Vec<Result<Answer, String>>, Step, &'static str, usize);
        let cases: Vec<Case> = vec![
            (
                vec![a(200, "{}"), a(201, created), a(500, procfs), a(204, "")],
                Step::Start,
                "unsafe procfs detected",
                4,
            ),
            (
                vec![
                    a(200, "{}"),
                    a(201, created),
                    a(204, ""),
                    a(200, r#"{"StatusCode":127}"#),
                    a(204, ""),
                ],
                Step::Wait,
                "exited with code 127",
                5,
            ),
            (
                vec![
                    a(404, ""),
                    a(200, r#"{"error":"mount failed","errorDetail":{}}"#),
                ],
                Step::Import,
                "mount failed",
                2,
            ),
            (
                vec![a(200, "{}"), a(404, r#"{"message":"No such image"}"#)],
                Step::Create,
                "No such image",
                2,
            ),
            (
                vec![Err("no answer within 30s".into())],
                Step::Inspect,
                "30s",
                1,
            ),
            // A failed removal does not hide the start failure.
            (
                vec![
                    a(200, "{}"),
                    a(201, created),
                    a(500, procfs),
                    Err("gone".into()),
                ],
                Step::Start,
                "unsafe procfs",
                4,
            ),
        ];
        for (answers, step, part, ncalls) in cases {
            let (calls, result) = run(answers);
            let f = result.unwrap_err();
            assert_eq!(f.step, step, "{calls:?}");
            assert!(f.message.contains(part), "{f:?}");
            assert!(
                f.reason().contains(step.as_str()) || step == Step::Wait,
                "{}",
                f.reason()
            );
            assert_eq!(calls.len(), ncalls, "{calls:?}");
        }
    }

    #[test]
    fn network_follows_the_bridge_flag() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(network_for(&v(&[])), "bridge");
        assert_eq!(network_for(&v(&["--bridge=none"])), "none");
        assert_eq!(network_for(&v(&["-b", "none"])), "none");
        assert_eq!(network_for(&v(&["--bridge=br0"])), "bridge");
    }

    #[test]
    fn the_first_check_of_a_run_tidies_up() {
        let (mut v, first) = Verifier::start("0.2.0-new", "bridge", true, Instant::now());
        assert!(
            first.path.starts_with("/containers/prune?filters="),
            "{first:?}"
        );
        let t = Instant::now();
        let mut calls = Vec::new();
        let mut answers = vec![
            Err("prune failed: no matter".into()),
            a(200, "{}"),
            a(201, r#"{"Id":"c1"}"#),
            a(204, ""),
            a(200, r#"{"StatusCode":0}"#),
            a(404, r#"{"message":"No such container"}"#),
            a(
                200,
                r#"[{"RepoTags":["dind-init-verify:0.2.0-new"]},{"RepoTags":["dind-init-verify:0.1.0-old","other:1"]}]"#,
            ),
            a(409, r#"{"message":"in use"}"#),
        ]
        .into_iter();
        let result = loop {
            match v.next(answers.next().unwrap(), t) {
                Next::Call(r) => calls.push(format!("{} {}", r.method, r.path)),
                Next::Done(r) => break r,
            }
        };
        assert_eq!(result, Ok(()), "{calls:?}");
        assert_eq!(
            calls.last().unwrap(),
            "DELETE /images/dind-init-verify%3A0.1.0-old",
            "only the other build's image: {calls:?}"
        );
        assert!(calls
            .iter()
            .any(|c| c.starts_with("GET /images/json?filters=")));
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.take().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.take(), RETRY_FIRST);
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        // Test binaries are built for the host's glibc: they name a loader.
        let mut f = std::fs::File::open("/proc/self/exe").unwrap();
        assert_eq!(is_static_elf(&mut f), Some(false));
        let mut not_elf = std::io::Cursor::new(vec![0u8; 128]);
        assert_eq!(is_static_elf(&mut not_elf), None);
    }

    #[test]
    fn tag_depends_on_the_bytes() {
        let t1 = tag_for("0.1.0", &mut &b"abc"[..]).unwrap();
        let t2 = tag_for("0.1.0", &mut &b"abd"[..]).unwrap();
        assert_ne!(t1, t2);
        assert!(t1.starts_with("0.1.0-") && t1.len() == "0.1.0-".len() + 8);
    }
}
