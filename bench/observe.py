#!/usr/bin/env python3
"""Readiness observer (sections 2-4 of bench/bench.py).

It runs as dind-init's COMMAND with `[command] wait_for_ready = false`, so it starts
together with dockerd, inside the same namespaces (or the same gVisor sandbox) as the
init. It never asks the init anything; it watches from the side, all with
CLOCK_MONOTONIC:

- two independent pollers, the second started 20 ms after the first: every 1 ms each
  connects to dockerd's socket and sends `GET /_ping`; the earlier of their first 200s
  marks dockerd's first good answer. (A connection made while dockerd has bound its
  socket but does not serve yet stays pending, and is answered when dockerd serves.
  Which of several pending connections dockerd answers first is its own business: the
  two pollers show that order.)
- inotify(7) on the ready file's directory (through ctypes): the moment the ready file
  is renamed into place, or removed;
- `dind-init probe --wait 60s`, started early: the moment it returns, and its exit code.

Phases, in order, each printing one JSON line on stdout:
  ready      the three moments above for the first start;
  hold       (--hold SECS) stay idle so the driver can count the init's wake-ups;
  restart    SIGKILL dockerd (pid from the ready file), then the same three moments
             again, measured from the kill (--restarts N: N times);
  docker-run (--docker-runs N) the peer of `verify = "container"`: N times
             `docker run --rm dind-init-verify:<tag> --version` on the default bridge,
             with the docker CLI (what a shell script would do to see a container run),
             each timed from the CLI's start to its exit;
  container  `docker import` a busybox tar, `docker run -d --network=none IMG
             /bin/sleep 1000` (or, with --container traps-term, a shell that exits on
             SIGTERM), wait until it runs;
  term       print the line, then wait for SIGTERM (the driver sends it to the init,
             which forwards it here) and exit 0 at once.
Without `term`, it exits 0 after the last phase, which makes the init shut down.

Stdlib only.
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

IN_CREATE = 0x100
IN_DELETE = 0x200
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80


def mono():
    return time.monotonic_ns()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class ReadyWatch:
    """inotify on the ready file's directory: appear/gone moments of `name`."""

    def __init__(self, directory, name):
        self.name = name.encode()
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        if libc.inotify_add_watch(self.fd, directory.encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self.events = []  # (t, "appear" | "gone")
        self.wall = {}  # t -> CLOCK_REALTIME of the same moment (to compare with logs)
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            buf = os.read(self.fd, 65536)
            t = mono()
            wall = time.time_ns()
            i = 0
            while i + 16 <= len(buf):
                _wd, mask, _cookie, length = (int.from_bytes(buf[i + k:i + k + 4], "little")
                                              for k in (0, 4, 8, 12))
                name = buf[i + 16:i + 16 + length].rstrip(b"\0")
                i += 16 + length
                if name != self.name:
                    continue
                kind = "appear" if mask & (IN_CREATE | IN_MOVED_TO) else "gone"
                with self.cond:
                    self.events.append((t, kind))
                    self.wall[t] = wall
                    self.cond.notify_all()

    def wait_for(self, kind, after, timeout):
        """The first `kind` event at or after `after`, or None after `timeout` s."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, k in self.events:
                    if k == kind and t >= after:
                        return t
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


def ping_once(path, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        data = s.recv(64)
        t = mono()
        return t if data.split(b" ", 2)[1:2] == [b"200"] else None
    except (OSError, IndexError):
        return None
    finally:
        s.close()


class Poller:
    """The independent 1 ms poller: the moment of the first 200 from /_ping."""

    def __init__(self, path):
        self.path = path
        self.first = None
        self.attempts = 0
        self.done = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.attempts += 1
            t = ping_once(self.path, 30)
            if t is not None:
                self.first = t
                break
            time.sleep(0.001)
        self.done.set()


class Probe:
    """`dind-init probe --wait 60s`: the moment it returns and its exit code."""

    def __init__(self, init, sock):
        self.t = None
        self.rc = None
        self.done = threading.Event()
        threading.Thread(target=self._run, args=(init, sock), daemon=True).start()

    def _run(self, init, sock):
        deadline = time.monotonic() + 60
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.001)
        p = subprocess.Popen([init, "probe", "--socket", sock, "--wait", "60s"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.rc = p.wait()
        self.t = mono()
        self.done.set()


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS", "voluntary_ctxt_switches",
                         "nonvoluntary_ctxt_switches"):
                    out[k] = v.strip()
    except OSError:
        pass
    return out


def read_status(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def us(a, b):
    return None if a is None or b is None else (a - b) / 1e3


def ms(a, b):
    return None if a is None or b is None else (a - b) / 1e6


def two_pollers(sock):
    """Two independent pollers, the second started 20 ms after the first: with both
    connections pending, which one dockerd answers first tells its own order of
    service (the reference is the earliest answer of the two)."""
    early = Poller(sock)
    time.sleep(0.02)
    late = Poller(sock)
    return early, late


def first_of(pollers):
    ts = [p.first for p in pollers if p.first is not None]
    return min(ts) if ts else None


def race_to_ready(a, watch, since):
    """Starts the two pollers and a `probe --wait` now, and waits for the ready file
    to appear after `since` and for all three to finish. Returns them, the file's
    time and the first good ping's time."""
    early, late = two_pollers(a.sock)
    probe = Probe(a.init, a.init_sock)
    t_file = watch.wait_for("appear", since, 120)
    for w in (early, late, probe):
        w.done.wait(120)
    return early, late, probe, t_file, first_of([early, late])


def phase_ready(a, watch, start):
    early, late, probe, t_file, t_ping = race_to_ready(a, watch, start)
    emit({"event": "ready", "t_start": start, "t_ping": t_ping, "t_file": t_file,
          "wall_minus_mono_ns": time.time_ns() - mono(),
          "t_file_wall": watch.wall.get(t_file), "file_mtime_ns": mtime_ns(a.ready),
          "t_probe": probe.t, "probe_rc": probe.rc, "ping_attempts": early.attempts,
          "late_minus_early_us": us(late.first, early.first),
          "ping_ms": ms(t_ping, start),
          "file_minus_ping_us": us(t_file, t_ping),
          "probe_minus_ping_us": us(probe.t, t_ping),
          "file_ms": ms(t_file, start),
          "init_proc": proc_status(1), "status": read_status(a.ready)})
    return t_file is not None and t_ping is not None and probe.rc == 0


def phase_restart(a, watch, index=0):
    st = read_status(a.ready) or {}
    pid = (st.get("dockerd") or {}).get("pid")
    if not pid:
        emit({"event": "restart", "error": f"no dockerd pid in the ready file: {st}"})
        return False
    t_kill = mono()
    os.kill(pid, signal.SIGKILL)
    t_gone = watch.wait_for("gone", t_kill, 60)
    # Only now: the old dockerd is reaped, so no answer can come from it.
    early, late, probe, t_file, t_ping = race_to_ready(a, watch, t_kill)
    st2 = read_status(a.ready) or {}
    emit({"event": "restart", "index": index, "t_kill": t_kill, "gone_ms": ms(t_gone, t_kill),
          "t_ping": t_ping, "t_file": t_file, "wall_minus_mono_ns": time.time_ns() - mono(),
          "t_file_wall": watch.wall.get(t_file), "file_mtime_ns": mtime_ns(a.ready),
          "ping_ms": ms(t_ping, t_kill),
          "file_ms": ms(t_file, t_kill),
          "probe_ms": ms(probe.t, t_kill),
          "probe_rc": probe.rc, "late_minus_early_us": us(late.first, early.first),
          "file_minus_ping_us": us(t_file, t_ping),
          "probe_minus_ping_us": us(probe.t, t_ping),
          "restarts": (st2.get("dockerd") or {}).get("restarts"), "old_pid": pid,
          "new_pid": (st2.get("dockerd") or {}).get("pid"),
          "verify": st2.get("verify")})
    return t_file is not None


def docker(a, *args, timeout=120):
    cmd = ["docker", "-H", f"unix://{a.sock}", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).strip()


def phase_container(a):
    t0 = mono()
    rc, out = docker(a, "import", a.image_tar, "dind-init-bench-busybox:latest")
    if rc != 0:
        emit({"event": "container", "error": f"docker import: {out}"})
        return False
    t1 = mono()
    cmd = (["/bin/sleep", "1000"] if a.container == "ignores-term" else
           ["/bin/sh", "-c", "trap 'exit 0' TERM; /bin/sleep 1000 & wait"])
    rc, out = docker(a, "run", "-d", "--network=none", "dind-init-bench-busybox:latest", *cmd)
    if rc != 0:
        emit({"event": "container", "error": f"docker run: {out}"})
        return False
    cid = out.splitlines()[-1]
    running = False
    for _ in range(600):
        rc, out = docker(a, "inspect", "-f", "{{.State.Running}}", cid)
        if out == "true":
            running = True
            break
        time.sleep(0.1)
    emit({"event": "container", "id": cid[:12], "running": running, "variant": a.container,
          "import_ms": (t1 - t0) / 1e6, "run_ms": (mono() - t1) / 1e6})
    return running


def phase_docker_run(a):
    """Never raises: a failure is an error event, and the check's own numbers stand."""
    try:
        p = subprocess.run(["docker", "-H", f"unix://{a.sock}", "images", "--format",
                            "{{.Repository}}:{{.Tag}}", "dind-init-verify"],
                           capture_output=True, text=True, timeout=60)
        image = p.stdout.split()[0] if p.returncode == 0 and p.stdout.split() else None
        if image is None:
            emit({"event": "docker-run",
                  "error": f"no dind-init-verify image: {(p.stdout + p.stderr).strip()[-300:]}"})
            return False
        runs = []
        for _ in range(a.docker_runs):
            t0 = mono()
            rc, out = docker(a, "run", "--rm", image, "/dind-init", "--version", timeout=60)
            if rc != 0 or "dind-init" not in out:
                emit({"event": "docker-run", "error": f"docker run: exit {rc}: {out[-300:]}"})
                return False
            runs.append(ms(mono(), t0))
    except (subprocess.TimeoutExpired, OSError) as e:
        emit({"event": "docker-run", "error": f"docker: {e}"})
        return False
    emit({"event": "docker-run", "image": image, "ms": runs})
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--phases", default="ready")
    p.add_argument("--hold", type=float, default=0)
    p.add_argument("--restarts", type=int, default=1, help="how many times the restart "
                   "phase runs (each one SIGKILLs dockerd and waits until ready again)")
    p.add_argument("--docker-runs", type=int, default=3,
                   help="how many `docker run`s the docker-run phase times")
    p.add_argument("--image-tar")
    p.add_argument("--container", default="ignores-term", choices=["ignores-term", "traps-term"],
                   help="the nested container: `/bin/sleep 1000` as its PID 1 (SIGTERM does "
                   "nothing to it) or a shell that exits on SIGTERM")
    a = p.parse_args()
    start = mono()
    a.sock = os.path.join(a.dir, "docker.sock")
    a.init_sock = os.path.join(a.dir, "init.sock")
    a.ready = os.path.join(a.dir, "ready")
    phases = a.phases.split(",")
    if "term" in phases:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    watch = ReadyWatch(a.dir, "ready")
    ok = phase_ready(a, watch, start)
    if ok and a.hold > 0:
        emit({"event": "hold", "secs": a.hold})
        time.sleep(a.hold)
        emit({"event": "held", "init_proc": proc_status(1)})
    for i in range(a.restarts if "restart" in phases else 0):
        if ok:
            ok = phase_restart(a, watch, i)
    if ok and "docker-run" in phases:
        ok = phase_docker_run(a)
    if ok and "container" in phases:
        ok = phase_container(a)
    if ok and "term" in phases:
        emit({"event": "term", "t": mono(), "init_proc": proc_status(1)})
        while True:
            signal.pause()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
