#!/usr/bin/env python3
"""Nested `docker build` (section 8 of bench/bench.py).

It runs as dind-init's COMMAND with `[command] wait_for_ready = true`, inside the same
gVisor sandbox as the init and dockerd, once dockerd is ready:

  1. `dind-init status --json` until it names dockerd's storage driver
     (`dockerd.storage_driver`, read by the init from dockerd's /info once ready);
  2. `docker import` of the busybox tar (no registry is reachable);
  3. `du -sk` of dockerd's data root (the imported image: the baseline);
  4. `docker build --network=none` of --context (its Dockerfile), timed with
     CLOCK_MONOTONIC from the exec of `docker build` to its exit, the build's output
     to --dir/build.out;
  5. `du -sk` (and `du -sk --apparent-size`) of the data root again, the image's size.

It prints one JSON line on stdout with what it found and exits 0 (a failed step is
in the line as `error`, exit 1); the init then stops dockerd and exits.

Stdlib only.
"""

import argparse
import json
import os
import subprocess
import sys
import time

IMAGE = "dind-init-bench-busybox:latest"
TAG = "dind-init-bench-build:1"


def mono():
    return time.monotonic_ns()


def run(argv, timeout, env=None, out=None):
    p = subprocess.run(argv, stdout=out or subprocess.PIPE,
                       stderr=subprocess.STDOUT if out else subprocess.PIPE,
                       text=True, timeout=timeout, env=env)
    text = "" if out else (p.stdout + p.stderr).strip()
    return p.returncode, text


def du_kib(path, apparent=False):
    argv = ["du", "-sk", *(["--apparent-size"] if apparent else []), path]
    rc, out = run(argv, 300)
    try:
        return int(out.split()[0]) if rc == 0 else None
    except (IndexError, ValueError):
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True, help="the run's directory (docker.sock, init.sock)")
    p.add_argument("--init", required=True, help="the dind-init binary (for `status`)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--image-tar", required=True)
    p.add_argument("--context", required=True, help="the build context, with its Dockerfile")
    p.add_argument("--timeout", type=float, default=900, help="the build's, in seconds")
    a = p.parse_args()
    res = {"event": "build"}
    docker = ["docker", "-H", "unix://" + os.path.join(a.dir, "docker.sock")]
    # The legacy builder: what every Docker version still has, with no buildx plugin.
    env = dict(os.environ, DOCKER_BUILDKIT="0")

    def fail(step, text):
        res["error"] = f"{step}: {text[-600:]}"
        print(json.dumps(res), flush=True)
        return 1

    status = {}
    end = time.monotonic() + 30
    while time.monotonic() < end:
        rc, out = run([a.init, "status", "--socket", os.path.join(a.dir, "init.sock"),
                       "--json"], 10)
        try:
            status = json.loads(out) if rc == 0 else {}
        except ValueError:
            status = {}
        if (status.get("dockerd") or {}).get("storage_driver"):
            break
        time.sleep(0.1)
    res["storage_driver"] = (status.get("dockerd") or {}).get("storage_driver")
    res["storage"] = (status.get("environment") or {}).get("storage")
    res["init_warnings"] = [w[:200] for w in (status.get("dockerd") or {}).get("warnings", [])
                            if isinstance(w, str)][:3]
    rc, out = run(docker + ["version", "--format", "{{.Server.Version}} {{.Client.Version}}"], 60)
    if rc == 0 and len(out.split()) == 2:
        res["server_version"], res["client_version"] = out.split()
    t0 = mono()
    rc, out = run(docker + ["import", a.image_tar, IMAGE], 300)
    if rc != 0:
        return fail("docker import", out)
    res["import_ms"] = (mono() - t0) / 1e6
    res["du_kib_before"] = du_kib(a.data_root)
    with open(os.path.join(a.dir, "build.out"), "w") as log:
        t0 = mono()
        try:
            rc, _ = run(docker + ["build", "--network=none", "-t", TAG, a.context],
                        a.timeout, env=env, out=log)
        except subprocess.TimeoutExpired:
            return fail("docker build", f"no exit within {a.timeout:g} s")
        res["build_ms"] = (mono() - t0) / 1e6
    res["build_rc"] = rc
    if rc != 0:
        with open(os.path.join(a.dir, "build.out"), errors="replace") as f:
            return fail("docker build", f.read())
    with open(os.path.join(a.dir, "build.out"), errors="replace") as f:
        res["steps"] = sum(1 for line in f if line.startswith("Step "))
    res["du_kib_after"] = du_kib(a.data_root)
    res["du_apparent_kib_after"] = du_kib(a.data_root, apparent=True)
    rc, out = run(docker + ["image", "inspect", "-f", "{{.Size}}", TAG], 60)
    res["image_bytes"] = int(out) if rc == 0 and out.isdigit() else None
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
