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

#[test]
fn gitlab_docker_executor_service_with_tls() {
    if !require("gitlab_docker_executor_service_with_tls", &requirements()) {
        return;
    }
    let _one = serial();
    let mut host = HostDocker::start("ci-gitlab");
    image_with_openssl(&host, "dind-init-ci:tls");
    let ok = |args: &[&str], name: &str| {
        let ran = host.run(args, name, LONG);
        assert_eq!(
            ran.code(),
            Some(0),
            "{}\n{}",
            ran.describe(),
            host.init.describe()
        );
        ran
    };
    // What the runner does for a job with `services: [{name: IMAGE, alias: docker}]`,
    // FF_NETWORK_PER_BUILD and `volumes = ["/certs/client"]` in config.toml.
    ok(&["network", "create", "job-net"], "net");
    ok(&["volume", "create", "job-certs"], "vol");
    // The job's variables reach the service too (GitLab passes them all).
    let vars = [
        "DOCKER_HOST=tcp://docker:2376",
        "DOCKER_TLS_CERTDIR=/certs",
        "DOCKER_TLS_VERIFY=1",
        "DOCKER_CERT_PATH=/certs/client",
        "HEALTHCHECK_TCP_PORT=2376",
    ];
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
        service.extend(["-e", v]);
    }
    service.push("dind-init-ci:tls");
    let started = Instant::now();
    ok(&service, "service");

    // The runner's wait: a helper container on the job's network connects to the
    // service's port (HEALTHCHECK_TCP_PORT) until it answers.
    let wait = ok(
        &[
            "run",
            "--rm",
            "--network",
            "job-net",
            "--entrypoint",
            "/bin/sh",
            "dind-init-ci:tls",
            "-c",
            "for i in $(seq 240); do nc -w 2 docker 2376 </dev/null && { echo \"port open after $i\"; exit 0; }; sleep 0.5; done; exit 1",
        ],
        "wait",
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
        job.extend(["-e", v]);
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
    ok(&["rm", "-f", "svc-docker"], "rm");
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
    let ok = |args: &[&str], name: &str| {
        let ran = host.run(args, name, LONG);
        assert_eq!(
            ran.code(),
            Some(0),
            "{}\n{}",
            ran.describe(),
            host.init.describe()
        );
        ran
    };
    // What the runner does for `services: dind: {image, ports, volumes, env, options}`
    // (examples/github-actions/docker.yml): a network, `docker create` with the
    // options, `docker start`. Docker 20.10 has no --health-start-interval (API 1.44,
    // Docker 25): the recipe's own line has it, this daemon gets the rest.
    ok(&["network", "create", "github_network"], "net");
    let volume = format!("{}:/certs", certs.display());
    ok(
        &[
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
            "-e",
            "DOCKER_TLS_CERTDIR=/certs",
            "--runtime=runsc-net",
            "--cap-add=ALL",
            "--health-cmd",
            "dind-init probe",
            "--health-interval",
            "2s",
            "--health-timeout",
            "5s",
            "--health-retries",
            "30",
            "--health-start-period",
            "120s",
            "dind-init-ci:tls",
        ],
        "create",
    );
    ok(&["start", "dind"], "start");
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
    let mut step = on_node(&host, &docker_client());
    step.env("DOCKER_HOST", "tcp://localhost:2376")
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs.join("client"))
        .env("DOCKER_CONFIG", host.dir.join("runner-config"))
        .env_remove("DOCKER_CONTEXT")
        .args(["info", "--format", "STEP {{.ServerVersion}}"]);
    let ran = run_timeout(&mut step, &host.dir, "step", LONG);
    assert_eq!(ran.code(), Some(0), "{}", ran.describe());
    assert!(ran.stdout.contains("STEP 20.10"), "{}", ran.describe());
    ok(&["rm", "-f", "dind"], "rm");
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
    let mut host = HostDocker::start("ci-k8s");
    image_with_openssl(&host, "dind-init-ci:tls");
    let ok = |args: &[&str], name: &str| {
        let ran = host.run(args, name, LONG);
        assert_eq!(
            ran.code(),
            Some(0),
            "{}\n{}",
            ran.describe(),
            host.init.describe()
        );
        ran
    };
    // The pod: its network, its emptyDir volumes, the sidecar (an init container with
    // restartPolicy: Always) started first with the manifest's env and its status
    // listener on 9323 (the image's init.toml has it).
    ok(&["network", "create", "pod-net"], "net");
    ok(
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
    );
    let ip = ok(
        &[
            "inspect",
            "--format",
            "{{(index .NetworkSettings.Networks \"pod-net\").IPAddress}}",
            "dind",
        ],
        "ip",
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
    let main = ok(
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
    );
    assert!(main.stdout.contains("MAIN 20.10"), "{}", main.describe());
    eprintln!("kubernetes recipe: startupProbe answers {answers:?}");
    ok(&["rm", "-f", "dind"], "rm");
    assert_eq!(host.stop(), 0, "{}", host.init.describe());
}
