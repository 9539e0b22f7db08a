//! The CI recipes of `examples/` (SPEC §6), each run the way its CI system runs it,
//! against the test image in gVisor: a host dockerd 20.10 ([`HostDocker`]) with runsc
//! registered as a runtime (`runsc-net`: with a sandbox network, so that containers
//! reach each other), the test image that images/test/build.sh assembles plus the
//! machine's `openssl` (the TLS contract needs it), dind-init as its ENTRYPOINT.
//!
//! - GitLab, Docker executor (`examples/gitlab-ci/docker-executor/`): a network per job,
//!   the service started with the job's variables (`DOCKER_TLS_CERTDIR=/certs`) and the
//!   alias `docker`, `/certs/client` a volume shared by the service and the job; the
//!   runner's wait (a helper container that connects to the service's port,
//!   `HEALTHCHECK_TCP_PORT`), then the job's script with `DOCKER_HOST=tcp://docker:2376`,
//!   `DOCKER_TLS_VERIFY=1`, `DOCKER_CERT_PATH=/certs/client`: `docker info`, an image
//!   built and a container run by the nested dockerd.
//! - GitHub Actions (`examples/github-actions/`): the service container created with the
//!   workflow's `options` (`--health-cmd "dind-init probe"` and its intervals), the
//!   runner's wait for `healthy` (polling `docker inspect`, as the runner does), then the
//!   job's step on the runner's side through the published port with the certificates
//!   from the service's volume.
//! - Kubernetes native sidecar (`examples/kubernetes/sidecar.yaml`): the kubelet's
//!   startupProbe (`httpGet /readyz` on port 9323) polled until 200 before the main
//!   container starts, then the main container's `docker` over TLS with the certificates
//!   from the shared emptyDir.
//!
//! Nothing touches the machine's network: the host dockerd runs in a network namespace
//! of the test's, with `--iptables=false --bridge=none` (containers use a user network of
//! their own). The tests run one at a time.

// Test code: a failed expectation should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(300);
/// How long the nested dockerd may take in gVisor on a loaded machine.
const READY_WAIT: Duration = Duration::from_secs(120);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn requirements() -> Vec<(&'static str, bool)> {
    let mut req = gvisor_docker_requirements();
    req.push(("openssl", which("openssl").is_some()));
    req.push(("nsenter", which("nsenter").is_some()));
    req
}

/// The test image with the machine's `openssl` (and the libraries `ldd` names) added as
/// a layer, tagged `tag`. images/test/build.sh does not put openssl in; the Dockerfiles
/// of images/ install it.
fn image_with_openssl(host: &HostDocker, tag: &str) {
    host.import_test_image("dind-init-test:ci");
    let ctx = host.dir.join("openssl-ctx");
    let root = ctx.join("root");
    let openssl = which("openssl").unwrap();
    let mut files = vec![openssl.clone()];
    let ldd = Command::new("ldd").arg(&openssl).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new);
        if let Some(p) = path {
            files.push(p.to_path_buf());
        }
    }
    for f in &files {
        let dst = root.join(f.strip_prefix("/").unwrap());
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(f, &dst).unwrap();
    }
    // The image's /usr/bin is where PATH finds it (merged /usr).
    let bin = root.join("usr/bin");
    fs::create_dir_all(&bin).unwrap();
    if !bin.join("openssl").exists() {
        fs::copy(&openssl, bin.join("openssl")).unwrap();
    }
    fs::write(
        ctx.join("Dockerfile"),
        "FROM dind-init-test:ci\nCOPY root/ /\n",
    )
    .unwrap();
    let ran = host.run(&["build", "-q", "-t", tag, s(&ctx)], "build-openssl", LONG);
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
}

/// A busybox root as a tar inside `dir` for the nested dockerd to import (no registry).
const NESTED_SCRIPT: &str = r#"rm -rf /tmp/n && mkdir -p /tmp/n/bin && cp /bin/busybox /tmp/n/bin/ \
  && for a in sh echo cat; do ln -s busybox /tmp/n/bin/$a; done \
  && tar -C /tmp/n -cf - . | docker import - nested:1 >/dev/null \
  && mkdir -p /tmp/ctx && printf 'FROM nested:1\nRUN echo built > /built\n' > /tmp/ctx/Dockerfile \
  && docker build -q -t app:1 /tmp/ctx >/dev/null \
  && echo "JOB: $(docker run --rm --network none app:1 cat /built)""#;

/// A file of examples/.
fn example(rel: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(rel),
    )
    .unwrap_or_else(|e| panic!("examples/{rel}: {e}"))
}

/// The `KEY: value` entries of the YAML mapping under the first line `key:` (quotes
/// removed, `$DOCKER_TLS_CERTDIR` expanded as GitLab does): enough for the recipes'
/// `variables:` and `env:` blocks, whose entries are one line each.
fn yaml_map(text: &str, key: &str) -> Vec<(String, String)> {
    yaml_map_at(text, key, None)
}

/// [`yaml_map`] of the `key:` line indented by exactly `indent` spaces, when given.
fn yaml_map_at(text: &str, key: &str, indent: Option<usize>) -> Vec<(String, String)> {
    let header = |l: &str| {
        l.trim() == format!("{key}:") && indent.is_none_or(|n| l.len() - l.trim_start().len() == n)
    };
    let mut lines = text.lines().skip_while(|l| !header(l));
    let Some(head) = lines.next() else {
        panic!("no `{key}:` in\n{text}")
    };
    let indent = head.len() - head.trim_start().len();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.len() - line.trim_start().len() <= indent {
            break;
        }
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        out.push((k.trim().to_owned(), v));
    }
    let certdir = out
        .iter()
        .find(|(k, _)| k == "DOCKER_TLS_CERTDIR")
        .map(|(_, v)| v.clone());
    if let Some(dir) = certdir {
        for (_, v) in &mut out {
            *v = v.replace("$DOCKER_TLS_CERTDIR", &dir);
        }
    }
    out
}

fn value<'a>(map: &'a [(String, String)], key: &str) -> &'a str {
    map.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

#[test]
fn gitlab_docker_executor_service_with_tls() {
    if !require("gitlab_docker_executor_service_with_tls", &requirements()) {
        return;
    }
    let _one = serial();
    let mut host = HostDocker::start("ci-gitlab");
    image_with_openssl(&host, "dind-init-ci:tls");
    // What the runner does for a job with `services: [{name: IMAGE, alias: docker}]`,
    // FF_NETWORK_PER_BUILD and `volumes = ["/certs/client"]` in config.toml.
    host.ok(&["network", "create", "job-net"], "net", LONG);
    host.ok(&["volume", "create", "job-certs"], "vol", LONG);
    // The recipe's variables; they reach the service too (GitLab passes them all).
    let recipe = example("gitlab-ci/docker-executor.gitlab-ci.yml");
    let map = yaml_map(&recipe, "variables");
    assert_eq!(value(&map, "DOCKER_HOST"), "tcp://docker:2376");
    assert!(recipe.contains("alias: docker"));
    assert!(example("gitlab-ci/docker-executor.config.toml")
        .contains("volumes = [\"/certs/client\", \"/cache\"]"));
    let port = value(&map, "HEALTHCHECK_TCP_PORT").to_owned();
    let vars: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut service = vec![
        "run",
        "-d",
        "--name",
        "svc-docker",
        "--runtime=runsc-net",
        "--cap-add=ALL",
        "--network",
        "job-net",
        "--network-alias",
        "docker",
        "-v",
        "job-certs:/certs/client",
    ];
    for v in &vars {
        service.extend(["-e", v.as_str()]);
    }
    service.push("dind-init-ci:tls");
    let started = Instant::now();
    host.ok(&service, "service", LONG);

    // The runner's wait: a helper container on the job's network connects to the
    // service's port (HEALTHCHECK_TCP_PORT) until it answers.
    let probe = format!(
        "for i in $(seq 240); do nc -w 2 docker {port} </dev/null && {{ echo \"port open after $i\"; exit 0; }}; sleep 0.5; done; exit 1"
    );
    let wait = host.ok(
        &[
            "run",
            "--rm",
            "--network",
            "job-net",
            "--entrypoint",
            "/bin/sh",
            "dind-init-ci:tls",
            "-c",
            &probe,
        ],
        "wait",
        LONG,
    );
    assert!(wait.stdout.contains("port open"), "{}", wait.describe());

    // The job: the build image (here the test image's docker client) with the variables
    // and the shared certificates.
    let script = format!(
        "set -e\ndocker info --format 'SERVER {{{{.ServerVersion}}}} {{{{.Driver}}}}'\n{NESTED_SCRIPT}\n"
    );
    let mut job = vec![
        "run",
        "--rm",
        "--network",
        "job-net",
        "-v",
        "job-certs:/certs/client",
        "--entrypoint",
        "/bin/sh",
    ];
    for v in &vars {
        job.extend(["-e", v.as_str()]);
    }
    job.extend(["dind-init-ci:tls", "-c", &script]);
    let ran = host.run(&job, "job", READY_WAIT + LONG);
    let logs = host.run(&["logs", "svc-docker"], "svc-logs", LONG);
    assert_eq!(
        ran.code(),
        Some(0),
        "{}\n--- service log ---\n{}{}",
        ran.describe(),
        logs.stdout,
        logs.stderr
    );
    assert!(ran.stdout.contains("SERVER 20.10"), "{}", ran.describe());
    assert!(ran.stdout.contains("JOB: built"), "{}", ran.describe());
    eprintln!(
        "gitlab recipe: service start to job done in {} ms",
        started.elapsed().as_millis()
    );
    // The service's own status: TLS generated in /certs.
    let st = host.run(
        &["exec", "svc-docker", "dind-init", "status", "--json"],
        "svc-status",
        LONG,
    );
    let st: serde_json::Value = serde_json::from_str(st.stdout.trim()).unwrap();
    assert_eq!(st["environment"]["tls"]["mode"], "generated", "{st}");
    assert_eq!(st["environment"]["gvisor"], true, "{st}");
    host.ok(&["rm", "-f", "svc-docker"], "rm", LONG);
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

/// `docker inspect`'s health status of `name` ("starting", "healthy", "unhealthy").
fn health(host: &HostDocker, name: &str) -> String {
    let ran = host.run(
        &["inspect", "--format", "{{.State.Health.Status}}", name],
        "inspect",
        LONG,
    );
    ran.stdout.trim().to_owned()
}

/// A command of the runner's (or the kubelet's) own, in the host dockerd's network
/// namespace: the "node" the containers are published on.
fn on_node(host: &HostDocker, program: &Path) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/proc/{}/ns/net", host.init.init_pid()))
        .arg("--")
        .arg(program);
    cmd
}

#[test]
fn github_actions_service_is_healthy_before_the_step() {
    if !require(
        "github_actions_service_is_healthy_before_the_step",
        &requirements(),
    ) {
        return;
    }
    let _one = serial();
    let mut host = HostDocker::start("ci-github");
    image_with_openssl(&host, "dind-init-ci:tls");
    let certs = host.dir.join("runner-certs");
    // What the runner does for `services: dind: {image, ports, volumes, env, options}`
    // (examples/github-actions/docker.yml): a network, `docker create` with the
    // options, `docker start`. Docker 20.10 has no --health-start-interval (API 1.44,
    // Docker 25): the recipe's own line has it, this daemon gets the rest.
    let recipe = example("github-actions/docker.yml");
    let service_env = yaml_map_at(&recipe, "env", Some(8));
    let job_env = yaml_map_at(&recipe, "env", Some(4));
    assert!(recipe.contains("- 2376:2376") && recipe.contains("- /tmp/dind-certs:/certs"));
    // `options: >-`: the folded lines, split like a shell would (double quotes).
    let folded: String = recipe
        .lines()
        .skip_while(|l| l.trim() != "options: >-")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("--"))
        .map(|l| format!("{} ", l.trim()))
        .collect();
    let mut options: Vec<String> = Vec::new();
    for (i, part) in folded.split('"').enumerate() {
        if i % 2 == 1 {
            options.push(part.to_owned());
        } else {
            options.extend(part.split_whitespace().map(str::to_owned));
        }
    }
    assert!(
        options
            .windows(2)
            .any(|w| w == ["--health-cmd", "dind-init probe"]),
        "{options:?}"
    );
    // This daemon is 20.10: --health-start-interval needs API 1.44 (Docker 25), so it
    // is left out here (the check then comes every --health-interval); and gVisor's
    // runtime with its capabilities stands for --privileged.
    let mut kept = Vec::new();
    let mut it = options.iter();
    while let Some(o) = it.next() {
        match o.as_str() {
            "--health-start-interval" => {
                it.next();
            }
            "--privileged" => {
                kept.extend(["--runtime=runsc-net".to_owned(), "--cap-add=ALL".to_owned()])
            }
            _ => kept.push(o.clone()),
        }
    }
    host.ok(&["network", "create", "github_network"], "net", LONG);
    let volume = format!("{}:/certs", certs.display());
    let mut create: Vec<String> = [
        "create",
        "--name",
        "dind",
        "--network",
        "github_network",
        "--network-alias",
        "dind",
        "-p",
        "2376:2376",
        "-v",
        &volume,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for (k, v) in &service_env {
        create.extend(["-e".to_owned(), format!("{k}={v}")]);
    }
    create.extend(kept);
    create.push("dind-init-ci:tls".to_owned());
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    host.ok(&create, "create", LONG);
    host.ok(&["start", "dind"], "start", LONG);
    // The runner's wait: `docker inspect` of the health status until it is healthy.
    let mut seen = Vec::new();
    let healthy = wait_until(READY_WAIT, || {
        let h = health(&host, "dind");
        if seen.last() != Some(&h) {
            seen.push(h.clone());
        }
        h == "healthy"
    });
    assert!(healthy, "never healthy: {seen:?}\n{}", host.init.describe());
    assert_eq!(
        seen.first().map(String::as_str),
        Some("starting"),
        "{seen:?}"
    );
    // The step, on the runner: DOCKER_HOST=tcp://localhost:2376 with the certificates
    // the service wrote into the runner's directory.
    assert_eq!(
        value(&job_env, "DOCKER_CERT_PATH"),
        "/tmp/dind-certs/client"
    );
    let mut step = on_node(&host, &docker_client());
    step.env("DOCKER_HOST", value(&job_env, "DOCKER_HOST"))
        .env("DOCKER_TLS_VERIFY", value(&job_env, "DOCKER_TLS_VERIFY"))
        // The recipe's /tmp/dind-certs is this test's own directory.
        .env("DOCKER_CERT_PATH", certs.join("client"))
        .env("DOCKER_CONFIG", host.dir.join("runner-config"))
        .env_remove("DOCKER_CONTEXT")
        .args(["info", "--format", "STEP {{.ServerVersion}}"]);
    let ran = run_timeout(&mut step, &host.dir, "step", LONG);
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("STEP 20.10"), "{}", ran.describe());
    host.ok(&["rm", "-f", "dind"], "rm", LONG);
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

#[test]
fn kubernetes_native_sidecar_startup_probe_then_main_container() {
    if !require(
        "kubernetes_native_sidecar_startup_probe_then_main_container",
        &requirements(),
    ) {
        return;
    }
    let _one = serial();
    let recipe = example("kubernetes/sidecar.yaml");
    for line in [
        "restartPolicy: Always",
        "path: /readyz",
        "- name: DOCKER_TLS_CERTDIR\n          value: /certs",
        "- name: DOCKER_HOST\n          value: tcp://localhost:2376",
        "- name: DOCKER_CERT_PATH\n          value: /certs/client",
        "tcp = \"0.0.0.0:9323\"",
    ] {
        assert!(
            recipe.contains(line),
            "{line:?} not in examples/kubernetes/sidecar.yaml"
        );
    }
    let mut host = HostDocker::start("ci-k8s");
    image_with_openssl(&host, "dind-init-ci:tls");
    // The pod: its network, its emptyDir volumes, the sidecar (an init container with
    // restartPolicy: Always) started first with the manifest's env and its status
    // listener on 9323 (the image's init.toml has it).
    host.ok(&["network", "create", "pod-net"], "net", LONG);
    host.ok(
        &[
            "run",
            "-d",
            "--name",
            "dind",
            "--network",
            "pod-net",
            "--runtime=runsc-net",
            "--cap-add=ALL",
            "-e",
            "DOCKER_TLS_CERTDIR=/certs",
            "--tmpfs",
            "/certs",
            "dind-init-ci:tls",
        ],
        "sidecar",
        LONG,
    );
    let ip = host
        .ok(
            &[
                "inspect",
                "--format",
                "{{(index .NetworkSettings.Networks \"pod-net\").IPAddress}}",
                "dind",
            ],
            "ip",
            LONG,
        )
        .stdout
        .trim()
        .to_owned();
    // The kubelet's startupProbe: httpGet /readyz on the pod's address, every second,
    // until 200; the main containers start only then.
    let url = format!("http://{ip}:9323/readyz");
    let busybox = which("busybox").unwrap();
    let mut answers = Vec::new();
    let mut last = String::new();
    let started = wait_until(READY_WAIT, || {
        // busybox's `wget -T` crashes (SIGSEGV) on this machine: timeout(1) bounds it.
        let out = on_node(&host, Path::new("timeout"))
            .arg("3")
            .arg(&busybox)
            .args(["wget", "-S", "-O", "/dev/null", &url])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        last = format!(
            "{:?} {said}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        let code = if said.contains(" 200 ") {
            "200"
        } else if said.contains(" 503 ") {
            "503"
        } else {
            "no answer"
        };
        if answers.last().map(String::as_str) != Some(code) {
            answers.push(code.to_owned());
        }
        if code != "200" {
            std::thread::sleep(Duration::from_millis(200));
        }
        code == "200"
    });
    assert!(
        started,
        "startupProbe never passed: {answers:?}; last: {last} (ip {ip:?})\n{}",
        host.init.describe()
    );
    // The main container: in a real gVisor pod it shares the sidecar's sandbox (one
    // network stack: localhost) and the emptyDir with the client certificates. Here it is
    // a second process in the sidecar's sandbox, as runsc runs a pod's containers.
    let main = host.ok(
        &[
            "exec",
            "-e",
            "DOCKER_HOST=tcp://localhost:2376",
            "-e",
            "DOCKER_TLS_VERIFY=1",
            "-e",
            "DOCKER_CERT_PATH=/certs/client",
            "dind",
            "docker",
            "info",
            "--format",
            "MAIN {{.ServerVersion}}",
        ],
        "main",
        LONG,
    );
    assert!(main.stdout.contains("MAIN 20.10"), "{}", main.describe());
    eprintln!("kubernetes recipe: startupProbe answers {answers:?}");
    host.ok(&["rm", "-f", "dind"], "rm", LONG);
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}

#[test]
fn gitlab_kubernetes_executor_localhost_tls() {
    if !require("gitlab_kubernetes_executor_localhost_tls", &requirements()) {
        return;
    }
    let _one = serial();
    let recipe = example("gitlab-ci/kubernetes-executor.gitlab-ci.yml");
    let map = yaml_map(&recipe, "variables");
    assert_eq!(value(&map, "DOCKER_HOST"), "tcp://localhost:2376");
    assert!(example("gitlab-ci/kubernetes-executor.config.toml")
        .contains("mount_path = \"/certs/client\""));
    let port = value(&map, "HEALTHCHECK_TCP_PORT").to_owned();
    let mut host = HostDocker::start("ci-gitlab-k8s");
    image_with_openssl(&host, "dind-init-ci:tls");
    // The job pod: the service container with the job's variables. A pod's containers
    // share one gVisor sandbox (one network stack, so localhost); the helper's wait and
    // the job run here as further processes of the service's sandbox.
    let vars: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut service = vec![
        "run",
        "-d",
        "--name",
        "svc",
        "--runtime=runsc-net",
        "--cap-add=ALL",
        "--network",
        "bridge-less",
    ];
    host.ok(&["network", "create", "bridge-less"], "net", LONG);
    for v in &vars {
        service.extend(["-e", v.as_str()]);
    }
    service.push("dind-init-ci:tls");
    host.ok(&service, "service", LONG);
    // The runner's wait: TCP to localhost:HEALTHCHECK_TCP_PORT until it connects.
    let probe = format!(
        "for i in $(seq 240); do nc -w 2 localhost {port} </dev/null && {{ echo \"port open after $i\"; exit 0; }}; sleep 0.5; done; exit 1"
    );
    let wait = host.ok(&["exec", "svc", "sh", "-c", &probe], "wait", LONG);
    assert!(wait.stdout.contains("port open"), "{}", wait.describe());
    let mut job = vec!["exec"];
    for v in &vars {
        job.extend(["-e", v.as_str()]);
    }
    let script = format!("set -e\n{NESTED_SCRIPT}\n");
    job.extend(["svc", "sh", "-c", &script]);
    let ran = host.ok(&job, "job", LONG);
    assert!(ran.stdout.contains("JOB: built"), "{}", ran.describe());
    host.ok(&["rm", "-f", "svc"], "rm", LONG);
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}
