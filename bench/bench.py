#!/usr/bin/env python3
"""dind-init benchmarks (issue 7, SPEC §12): dind-init against tini, dumb-init,
catatonit and the shell approach, side by side in one run. Run through bench/run.sh,
which installs what is missing and builds the binaries first.

Sections
  1. As PID 1 of its own pid namespace (unshare --pid --fork --mount --mount-proc):
     zombie reaping (live and as a backlog), signal forwarding latency, idle wake-ups,
     peak RSS; and the binaries' sizes.
  2. Readiness with the real dockerd, on this kernel (private pid, mount, cgroup and
     network namespaces) and in gVisor (runsc do): the first good /_ping seen by an
     independent 1 ms poller against the ready file and `probe --wait`; end-to-end
     time to ready against the shell approach (bench/shell-approach.sh).
     The init's own share of the time to ready: its exec (stamped by bash right
     before it) to dockerd's exec, plus the first good ping to the ready file.
  3. Restart: SIGKILL of dockerd to ready again.
  4. Shutdown: SIGTERM to exit with a nested container running.
  5. verify = "container" against "ping": first good ping to the ready file, at a
     first start (the check imports its image) and after restarts (image present);
     one more run with dockerd's --debug shows where the check's time goes; the
     peer is a `docker run --rm` of the same image in the same sandbox (docker CLI).
  6. Time to ready per Docker version: the roots that scripts/docker-roots.sh
     (branch `matrix`) keeps under /var/cache/dind-init/roots/<suite>/, in gVisor
     (`runsc do -root`) and on this kernel (chroot), the static binary copied into
     each run's own overlay. Skipped, with a note, when there are none.
  7. Reliability under abuse: bench/reliability.py (also runnable alone).
  8. A nested `docker build` in gVisor (bench/nested_build.py as COMMAND): dockerd's
     data root on the sandbox's overlay root (dockerd picks vfs) against
     `[dockerd] data_root_tmpfs` (overlay2 on a tmpfs): the build's time and the data
     root's size after it.

Safety: every init under test is PID 1 of its own pid namespace (or of a gVisor
sandbox), never bare. Every real dockerd has its own network namespace, data root,
exec root, pid file and socket under a temp dir, and runs with --iptables=false
--bridge=none. Processes are stopped by pid, never by name; temp dirs and the
benchmark's cgroups are removed at the end.

Stdlib only. Every number that the report shows comes from this run.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import random
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from the imports below
import reliability  # noqa: E402  bench/reliability.py: the status socket and reaping under abuse
from observe import ReadyWatch  # noqa: E402  bench/observe.py: inotify on the ready file

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
MUSL = os.path.join(ROOT, "target", "x86_64-unknown-linux-musl", "release")
INIT = os.path.join(MUSL, "dind-init")
FAKE = os.path.join(MUSL, "fake-dockerd")
CHILD = os.path.join(BENCH, "child.py")
OBSERVE = os.path.join(BENCH, "observe.py")
NESTED_BUILD = os.path.join(BENCH, "nested_build.py")
SHELL = os.path.join(BENCH, "shell-approach.sh")
PY = sys.executable
UNSHARE = ["unshare", "--pid", "--fork", "--mount", "--mount-proc"]
MIB = 1024 * 1024
# SPEC §12 targets.
SIZE_TARGET = 1310720  # 1.25 MiB
E2E_FACTOR = 4.0  # shell approach / dind-init, end-to-end in gVisor
SHARE_TARGET_MS = 30.0  # the init's own share of the time to ready, gVisor
VERIFY_TARGET_MS = 300.0  # verify = "container", its cost, median, gVisor

PEERS = [
    ("tini", ["/usr/bin/tini", "--"]),
    ("dumb-init", ["/usr/bin/dumb-init"]),
    ("catatonit", ["/usr/bin/catatonit", "--"]),
]


def mono():
    return time.monotonic_ns()


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def toml_str(s):
    return json.dumps(str(s))


def toml_list(items):
    return "[" + ", ".join(toml_str(i) for i in items) + "]"


# ---------------------------------------------------------------- processes


def children_of(pid):
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children_of(p):
            out.append(c)
            todo.append(c)
    return out


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def kib(v):
    """'1234 kB' -> 1234"""
    return int(v.split()[0]) if v else None


def ctxt(pid):
    st = proc_status(pid)
    return (int(st.get("voluntary_ctxt_switches", "-1")),
            int(st.get("nonvoluntary_ctxt_switches", "-1")))


def cpu_ns(pid):
    """Time the process has run on a CPU, in ns (/proc/PID/schedstat, field 1)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


class Spawned:
    """A process tree started by the benchmark: `unshare ...` or `runsc ... do ...`.

    Its stdout is read line by line on a thread, each line stamped with the
    CLOCK_MONOTONIC time of its arrival; its stderr goes to a log file."""

    def __init__(self, argv, log_path, preexec=None, env=None):
        self.argv = argv
        self.log_path = log_path
        self.lines = queue.Queue()
        self.t_wall = time.time_ns()
        self.t_start = mono()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=open(log_path, "ab"), preexec_fn=preexec,
                                  start_new_session=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()
        self.t_exit = None
        self.rc = None
        self.pid1 = None  # host pid of the namespace's PID 1, once looked up

    def _read(self):
        for raw in self.p.stdout:
            self.lines.put((mono(), raw.decode(errors="replace").rstrip("\n")))
        self.lines.put((mono(), None))

    def next_line(self, timeout):
        """(arrival time, line) or (time, None) at EOF; raises on timeout."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout}s from {self.describe()}") from None

    def next_json(self, timeout):
        end = time.monotonic() + timeout
        while True:
            t, line = self.next_line(max(0.01, end - time.monotonic()))
            if line is None:
                raise RuntimeError(f"EOF before a JSON line from {self.describe()}")
            if line.startswith("{"):
                return t, json.loads(line)

    def init_pid(self, timeout=10):
        """Host pid of the forked PID 1 (unshare's only child)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            c = children_of(self.p.pid)
            if c:
                self.pid1 = c[0]
                return c[0]
            time.sleep(0.001)
        raise RuntimeError(f"no PID 1 under unshare: {self.describe()}")

    def wait(self, timeout):
        try:
            self.rc = self.p.wait(timeout=timeout)
            self.t_exit = self.t_exit or mono()
            return self.rc
        except subprocess.TimeoutExpired:
            return None

    def wait_exit(self, timeout):
        """Wait for exit, stamping its moment (a thread blocked in waitpid)."""
        done = threading.Event()

        def w():
            self.rc = self.p.wait()
            self.t_exit = mono()
            done.set()
        threading.Thread(target=w, daemon=True).start()
        done.wait(timeout)
        return self.rc

    def kill_tree(self, grace=0.0, sig=signal.SIGTERM):
        """Stop everything this started, by pid: `sig` first when `grace` (to the
        namespace's PID 1 when known: unshare does not pass signals on; else to the top,
        e.g. `runsc do`, which passes them to the sandbox's PID 1), then SIGKILL to every
        descendant and the top."""
        if self.p.poll() is None and grace > 0:
            try:
                os.kill(self.pid1 or self.p.pid, sig)
            except ProcessLookupError:
                pass
            self.wait(grace)
        if self.p.poll() is None or descendants(self.p.pid):
            for pid in [*descendants(self.p.pid), self.p.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.wait(30)

    def stderr_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def describe(self):
        return f"{' '.join(self.argv)} (log {self.log_path}):\n{self.stderr_tail()}"


class Fifo:
    """A FIFO the driver reads lines from (opened before the writer exists)."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.buf = b""

    def line(self, timeout):
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line on {self.path} within {timeout}s")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 4096)
                if not chunk:  # no writer (yet, or any more)
                    time.sleep(0.001)
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        os.close(self.fd)


def send_go(path):
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.write(fd, b"g")
    os.close(fd)


# ---------------------------------------------------------------- machine


def first_line(cmd):
    """The first line a command prints (a version), or "not found"."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=20).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def guarded(R, key, measure, store=True):
    """Runs `measure()` and keeps its result as R[key] (unless `store` is false); when
    it raises, prints the error, keeps its first line in R["errors"][key] and leaves
    R[key] unset, so that the other sections are still measured and reported."""
    try:
        result = measure()
    except Exception as e:  # report it, and measure the rest
        traceback.print_exc()
        R["errors"][key] = str(e).splitlines()[0][:300]
        return
    if store:
        R[key] = result


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo_total()

    version = first_line

    def dpkg(pkg):
        return version(["dpkg-query", "-W", "-f=${Version}", pkg])

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu,
        "mem_gib": round(mem / MIB / 1024, 1) if mem else None,
        "loadavg": open("/proc/loadavg").read().split()[:3],
        "dind_init": version([INIT, "--version"]),
        "git": version(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
        "tini": dpkg("tini"), "dumb-init": dpkg("dumb-init"), "catatonit": dpkg("catatonit"),
        "dockerd": version(["dockerd", "--version"]),
        "runsc": version(["runsc", "--version"]),
        "python": platform.python_version(),
    }


def proc_meminfo_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


# ---------------------------------------------------------------- section 1


def fake_config(d):
    """dind-init supervising the fake dockerd, ready at once (NOTIFY_SOCKET and /_ping);
    no periodic health ping; cgroups left alone (not what is measured here)."""
    path = os.path.join(d, "init.toml")
    with open(path, "w") as f:
        f.write(f"""[log]
journald = "off"
[cgroup]
mode = "off"
[dockerd]
path = {toml_str(FAKE)}
socket = {toml_str(d + "/docker.sock")}
args = {toml_list(["--pidfile=" + d + "/docker.pid", "--exec-root=" + d + "/exec",
                   "--fake-ready-after-ms=0"])}
[readiness]
file = {toml_str(d + "/ready")}
socket = {toml_str(d + "/init.sock")}
interval = "0s"
""")
    return path


ALSO = {}  # label -> another dind-init binary to measure alongside (--also)


def init_argv(name, d):
    if name == "dind-init":
        return [INIT, "--config", fake_config(d), "--"]
    if name in ALSO:
        return [ALSO[name], "--config", fake_config(d), "--"]
    return dict(PEERS)[name]


def reap_once(tmp, name, count, backlog):
    d = tempfile.mkdtemp(prefix=f"reap-{name}-", dir=tmp)
    out = Fifo(os.path.join(d, "out"))
    go = os.path.join(d, "go")
    os.mkfifo(go)
    argv = UNSHARE + init_argv(name, d) + [
        PY, CHILD, "reap", "--fake", FAKE, "--count", str(count), "--out", out.path,
        "--go", go] + (["--sync"] if backlog else [])
    sp = Spawned(argv, os.path.join(d, "init.log"))
    try:
        before = json.loads(out.line(60))
        ipid = sp.init_pid()
        cpu0 = cpu_ns(ipid)
        if backlog:
            os.kill(ipid, signal.SIGSTOP)
            end = time.monotonic() + 5
            while proc_state(ipid) != "T" and time.monotonic() < end:
                time.sleep(0.0005)
        send_go(go)
        made = json.loads(out.line(180))
        t_cont = None
        if backlog:
            t_cont = mono()
            os.kill(ipid, signal.SIGCONT)
            send_go(go)
        done = json.loads(out.line(180))
        st = proc_status(ipid)
        cpu1 = cpu_ns(ipid)
        send_go(go)
        rc = sp.wait(30)
        if made["fake_rc"] != 0 or done["left"] != 0:
            raise RuntimeError(f"{name}: fake rc {made['fake_rc']}, {done['left']} left")
        r = {"total_ms": (done["t2"] - made["t0"]) / 1e6,
             "make_ms": (made["t1"] - made["t0"]) / 1e6,
             "drain_ms": (done["t2"] - (t_cont or made["t1"])) / 1e6,
             "hwm_kib": kib(st.get("VmHWM")), "rc": rc, "children_before": before["children"],
             "cpu_us_per_orphan": (cpu1 - cpu0) / 1e3 / count}
        r["rate"] = count / (r["drain_ms"] / 1e3 if backlog else r["total_ms"] / 1e3)
        return r
    finally:
        sp.kill_tree()
        out.close()


def pids_free():
    """Pids left on the machine: pid_max minus the tasks that exist (zombies count)."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with open("/proc/loadavg") as f:
        tasks = int(f.read().split()[3].split("/")[1])
    return pid_max - tasks


def reap_with_retries(tmp, name, count, backlog, attempts=3):
    """One reaping run; the machine is shared, so wait for enough free pids first
    and retry a run whose orphan factory ran out of them (others' tests fork too)."""
    for attempt in range(1, attempts + 1):
        end = time.monotonic() + 60
        while pids_free() < count + 2000 and time.monotonic() < end:
            time.sleep(0.5)
        try:
            return reap_once(tmp, name, count, backlog)
        except (RuntimeError, TimeoutError) as e:
            log(f"reap {name} ({'backlog' if backlog else 'live'}), attempt {attempt}: {e}")
            time.sleep(2)
    log(f"reap {name}: giving up on this run")
    return None


def bench_reaping(tmp, opts, names):
    res = {n: {"live": [], "backlog": []} for n in names}
    for rep in range(opts.reap_reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for mode in ("live", "backlog"):
            for n in order:
                r = reap_with_retries(tmp, n, opts.orphans, mode == "backlog")
                if r is None:
                    continue
                r["rep"] = rep
                log(f"reap {mode} {n}: total {r['total_ms']:.0f} ms, drain {r['drain_ms']:.1f} ms"
                    f", {r['rate']:.0f}/s, init CPU {r['cpu_us_per_orphan']:.2f} us/orphan"
                    f", VmHWM {r['hwm_kib']} KiB")
                res[n][mode].append(r)
    return res


class SignalRig:
    """Each init (and the child alone: `direct`) running `child.py signal`, all at
    once; signals are sent one at a time, round robin in a shuffled order each round,
    so that noise hits every one alike."""

    def __init__(self, tmp, names, argv_of=None):
        self.targets = []
        argv_of = argv_of or init_argv
        try:
            for n in names + ["direct"]:
                d = tempfile.mkdtemp(prefix="sig-", dir=tmp)
                out = Fifo(os.path.join(d, "out"))
                child = [PY, CHILD, "signal", "--out", out.path]
                argv = child if n == "direct" else UNSHARE + argv_of(n, d) + child
                sp = Spawned(argv, os.path.join(d, "init.log"))
                self.targets.append({"name": n, "sp": sp, "out": out, "lat": []})
            for t in self.targets:
                t["out"].line(60)  # "ready PID"
                t["pid"] = t["sp"].p.pid if t["name"] == "direct" else t["sp"].init_pid()
            time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def by_name(self, n):
        return next(t for t in self.targets if t["name"] == n)

    def send(self, t):
        t_send = mono()
        os.kill(t["pid"], signal.SIGUSR1)
        t_recv = int(t["out"].line(10))
        time.sleep(0.001)
        return (t_recv - t_send) / 1e3

    def rounds(self, n, record, seed=7):
        rnd = random.Random(seed)
        order = list(self.targets)
        for _ in range(n):
            rnd.shuffle(order)
            for t in order:
                lat = self.send(t)
                if record:
                    t["lat"].append(lat)

    def stop(self):
        for t in self.targets:
            t["sp"].kill_tree(grace=10)
            t["out"].close()


def parse_strace_c(text):
    calls = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] not in ("total",) and f[3].isdigit():
            calls[f[-1]] = int(f[3])
    return calls


def syscalls_per_signal(rig, n, k=100):
    """strace -c on the init alone while it forwards k signals."""
    t = rig.by_name(n)
    out = os.path.join(os.path.dirname(t["out"].path), "strace.txt")
    st = subprocess.Popen(["strace", "-c", "-o", out, "-p", str(t["pid"])],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    for _ in range(k):
        rig.send(t)
    st.send_signal(signal.SIGINT)
    st.wait(10)
    try:
        calls = parse_strace_c(open(out).read())
    except OSError:
        return None
    return {sc: round(c / k, 2) for sc, c in sorted(calls.items(), key=lambda kv: -kv[1])}


def bench_signals(tmp, opts, names):
    rig = SignalRig(tmp, names)
    try:
        for t in rig.targets:
            t["cpu0"] = cpu_ns(t["pid"])
        rig.rounds(opts.warmup, record=False)
        rig.rounds(opts.signals, record=True)
        total = opts.warmup + opts.signals
        res = {t["name"]: {"median_us": median(t["lat"]), "n": len(t["lat"]),
                           "p10_us": pct(t["lat"], 10), "p90_us": pct(t["lat"], 90),
                           "cpu_us_per_signal": (cpu_ns(t["pid"]) - t["cpu0"]) / 1e3 / total}
               for t in rig.targets}
        base = res["direct"]["median_us"]
        for n in names:
            res[n]["added_us"] = res[n]["median_us"] - base
        for n, r in res.items():
            log(f"signal {n}: median {r['median_us']:.1f} us, added {r.get('added_us', 0):.1f} us,"
                f" CPU {r['cpu_us_per_signal']:.1f} us/signal")
        if shutil.which("strace"):
            for n in names:
                res[n]["syscalls"] = syscalls_per_signal(rig, n)
                log(f"signal {n}: syscalls per signal {res[n]['syscalls']}")
        return res
    finally:
        rig.stop()


def profile_signals(tmp, opts, names, sym_binary, k=1500):
    """perf record of a non-stripped dind-init (same code) forwarding k signals in the
    same round robin as the measurement: where its CPU time goes."""
    if not shutil.which("perf"):
        return {"error": "perf not installed"}

    def argv_of(n, d):
        if n == "dind-init":
            return [sym_binary, "--config", fake_config(d), "--"]
        return init_argv(n, d)
    rig = SignalRig(tmp, names, argv_of)
    data = os.path.join(tmp, "perf-signals.data")
    try:
        t = rig.by_name("dind-init")
        pf = subprocess.Popen(["perf", "record", "-F", "20000", "-o", data, "-p", str(t["pid"])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        rig.rounds(k // 10, record=False)
        order = [x for x in rig.targets]
        for _ in range(k):
            for x in order:
                rig.send(x)
        pf.send_signal(signal.SIGINT)
        pf.wait(30)
    finally:
        rig.stop()

    def report(sort):
        p = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", sort,
                            "--stdio", "-g", "none"], capture_output=True, text=True)
        rows = []
        for line in p.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2).strip()))
        return rows
    dso = report("dso")
    sym = report("sym")
    alloc_re = re.compile(r"malloc|free|alloc_slot|realloc|finish_grow|grow_one|"
                          r"default_malloc|get_meta|enframe|nontrivial_free|RawVec|sccp|"
                          r"dlmalloc|pthread_mutex")
    poll_re = re.compile(r"\[k\] .*(poll|fdget|fput|pollwait|ep_|epoll)")
    return {"samples_dso": dso[:4],
            "top": [(p, n) for p, n in sym[:14]],
            "allocator_pct": round(sum(p for p, n in sym if n.startswith("[.]")
                                       and alloc_re.search(n)), 1),
            "poll_set_kernel_pct": round(sum(p for p, n in sym if poll_re.search(n)), 1),
            "user_pct": round(sum(p for p, n in dso if "kernel" not in n
                                  and "vdso" not in n), 1)}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else None


def bench_idle(tmp, opts, names):
    """All inits at once, each with `sleep` as its child (dind-init: the fake dockerd,
    ready at once, and `sleep` as COMMAND; interval = "0s"): context switches of the
    init over the idle window."""
    res = {n: [] for n in names}
    for rep in range(opts.idle_reps):
        running = []
        try:
            for n in names:
                d = tempfile.mkdtemp(prefix=f"idle-{n}-", dir=tmp)
                sp = Spawned(UNSHARE + init_argv(n, d) + ["/bin/sleep", "100000"],
                             os.path.join(d, "init.log"))
                running.append((n, sp))
            pids = {}
            for n, sp in running:
                ipid = sp.init_pid()
                end = time.monotonic() + 30
                while time.monotonic() < end and not any(
                        comm(c) == "sleep" for c in children_of(ipid)):
                    time.sleep(0.01)
                pids[n] = ipid
            time.sleep(1.0)  # settle
            before = {n: ctxt(p) for n, p in pids.items()}
            time.sleep(opts.idle_secs)
            for n, p in pids.items():
                v, nv = ctxt(p)
                st = proc_status(p)
                r = {"voluntary": v - before[n][0], "nonvoluntary": nv - before[n][1],
                     "hwm_kib": kib(st.get("VmHWM")), "rss_kib": kib(st.get("VmRSS"))}
                r["wakeups"] = r["voluntary"] + r["nonvoluntary"]
                res[n].append(r)
                log(f"idle {n}: {r['wakeups']} wake-ups in {opts.idle_secs:g} s "
                    f"({r['voluntary']} vol + {r['nonvoluntary']} nonvol), VmHWM {r['hwm_kib']} KiB")
        finally:
            for _, sp in running:
                sp.kill_tree(grace=10)
    return res


def file_info(path):
    real = os.path.realpath(path)
    try:
        desc = subprocess.run(["file", "-b", real], capture_output=True, text=True).stdout
    except OSError:
        desc = ""
    link = ("static" if ("statically linked" in desc or "static-pie" in desc)
            else "dynamic" if "dynamically linked" in desc else "?")
    stripped = "not stripped" not in desc and "stripped" in desc
    return {"path": path, "bytes": os.path.getsize(real), "link": link, "stripped": stripped}


def bench_sizes(tmp):
    res = {}
    info = file_info(INIT)
    if not info["stripped"]:
        s = os.path.join(tmp, "dind-init.stripped")
        subprocess.run(["strip", "-o", s, INIT], check=True)
        info = dict(file_info(s), path=INIT + " (stripped copy)")
    res["dind-init"] = info
    for n, path in [("tini", "/usr/bin/tini"), ("tini-static", "/usr/bin/tini-static"),
                    ("dumb-init", "/usr/bin/dumb-init"), ("catatonit", "/usr/bin/catatonit")]:
        if os.path.exists(path):
            res[n] = file_info(path)
    return res


# ---------------------------------------------------------------- sections 2-4


class BenchCgroups:
    """A leaf cgroup per hierarchy for the real-dockerd runs on this kernel, joined by
    `unshare` before it makes a cgroup namespace, so that nested containers' cgroups
    live under it; removed at the end."""

    def __init__(self):
        leaf = f"dind-init-bench-{os.getpid()}"
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
        self.dirs = []
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        for line in lines:
            hid, ctrls, path = line.split(":", 2)
            wanted = [c for c in ctrls.split(",") if c]
            point = None
            for m in mounts:
                dash = m.index("-")
                fstype, opts = m[dash + 1], m[dash + 3].split(",")
                if (hid == "0" and fstype == "cgroup2") or (
                        hid != "0" and fstype == "cgroup" and all(w in opts for w in wanted)):
                    root, point = m[3], m[4]
                    break
            if point is None:
                continue
            rel = path[len(root):] if path.startswith(root) else path
            d = os.path.join(point, rel.lstrip("/"), leaf)
            os.makedirs(d, exist_ok=True)
            if "cpuset" in wanted:
                for fn in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(os.path.dirname(d), fn)) as src:
                        v = src.read().strip()
                    with open(os.path.join(d, fn), "w") as dst:
                        dst.write(v)
            self.dirs.append(d)

    def join(self):
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def remove(self):
        def rm(d):
            for e in os.scandir(d):
                if e.is_dir(follow_symlinks=False):
                    rm(e.path)
            os.rmdir(d)
        for d in self.dirs:
            end = time.monotonic() + 10
            while os.path.exists(d):
                try:
                    rm(d)
                except OSError:
                    if time.monotonic() > end:
                        log(f"warning: could not remove cgroup {d}")
                        break
                    time.sleep(0.1)


def real_config(d, wait_for_ready, interval, verify=None, bridge=False, debug=False,
                tmpfs=None):
    """dind-init with the real dockerd, every path under `d`. `bridge`: dockerd keeps
    its default bridge (else `--bridge=none`, like the shell approach); `debug`:
    dockerd's `--debug` (it logs every API call it serves); `tmpfs`: `[dockerd]
    data_root_tmpfs` (a size), a tmpfs at the data root `d`/data."""
    path = os.path.join(d, "init.toml")
    args = ["--data-root=" + d + "/data", "--exec-root=" + d + "/exec",
            "--pidfile=" + d + "/docker.pid", "--iptables=false"]
    args += [] if bridge else ["--bridge=none"]
    args += ["--debug"] if debug else []
    with open(path, "w") as f:
        f.write(f"""[log]
journald = "off"
[dockerd]
path = {toml_str(shutil.which("dockerd"))}
socket = {toml_str(d + "/docker.sock")}
args = {toml_list(args)}
{"" if tmpfs is None else "data_root_tmpfs = " + toml_str(tmpfs)}
[readiness]
file = {toml_str(d + "/ready")}
socket = {toml_str(d + "/init.sock")}
{"" if interval is None else "interval = " + toml_str(interval)}
{"" if verify is None else "verify = " + toml_str(verify)}
[command]
wait_for_ready = {"true" if wait_for_ready else "false"}
""")
    return path


def wrap(env, argv, d):
    """The argv that runs `argv` as PID 1: of private namespaces on this kernel (lo up),
    or of a gVisor sandbox."""
    if env == "gvisor":
        return ["runsc", "--network=none", "--net-raw", "do", *argv]
    return UNSHARE + ["--cgroup", "--net", "/bin/sh", "-c", 'ip link set lo up && exec "$@"',
                      "sh", *argv]


def busybox_tar(tmp):
    path = os.path.join(tmp, "busybox-rootfs.tar")
    bb = shutil.which("busybox") or "/bin/busybox"
    with tarfile.open(path, "w") as t:
        for dname in ("bin", "tmp"):
            ti = tarfile.TarInfo(dname)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        t.add(bb, arcname="bin/busybox")
        for name in ("sh", "sleep"):
            ti = tarfile.TarInfo(f"bin/{name}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(ti)
    return path


# Runs argv through bash, which writes its CLOCK_REALTIME ($EPOCHREALTIME, a builtin:
# no fork) to stderr right before it execs argv in its place: the moment the init
# starts, on the clock of its log lines.
STAMP = ["bash", "-c", 'echo "exec-stamp $EPOCHREALTIME" >&2; exec "$@"', "bash"]


def session(tmp, env, cg, opts, image_tar, hold, variant):
    """One init start with the observer as COMMAND: readiness, (hold), restart,
    nested container, SIGTERM to exit."""
    d = tempfile.mkdtemp(prefix=f"obs-{env}-", dir=tmp)
    cfg = real_config(d, wait_for_ready=False, interval="0s")
    phases = "ready,restart,container,term"
    argv = wrap(env, STAMP + [INIT, "--config", cfg, "--", PY, OBSERVE, "--dir", d, "--init",
                              INIT, "--phases", phases, "--hold", str(hold), "--image-tar",
                              image_tar, "--container", variant], d)
    sp = Spawned(argv, os.path.join(d, "init.log"),
                 preexec=cg.join if (env == "host" and cg) else None)
    out = {"env": env, "variant": variant}
    try:
        ipid = sp.init_pid() if env == "host" else None
        while True:
            t, ev = sp.next_json(180)
            kind = ev.get("event")
            out[kind] = ev
            if "error" in ev:
                raise RuntimeError(f"observer {kind}: {ev['error']}\n{sp.describe()}")
            if kind == "ready" and not (ev.get("t_file") and ev.get("t_ping")
                                        and ev.get("probe_rc") == 0):
                raise RuntimeError(f"not ready: {ev}\n{sp.describe()}")
            if kind == "ready" and ipid:
                out["ready_host"] = {"hwm_kib": kib(proc_status(ipid).get("VmHWM"))}
            if kind == "hold" and ipid:
                time.sleep(0.5)
                c0 = ctxt(ipid)
                time.sleep(hold - 1.0)
                c1 = ctxt(ipid)
                st = proc_status(ipid)
                out["idle_host"] = {"secs": hold - 1.0, "voluntary": c1[0] - c0[0],
                                    "nonvoluntary": c1[1] - c0[1],
                                    "hwm_kib": kib(st.get("VmHWM")),
                                    "rss_kib": kib(st.get("VmRSS"))}
            if kind == "term":
                if ipid:
                    st = proc_status(ipid)
                    out["term_host"] = {"hwm_kib": kib(st.get("VmHWM")),
                                        "rss_kib": kib(st.get("VmRSS")),
                                        "smaps": smaps_rollup(ipid)}
                t_term = mono()
                os.kill(ipid if ipid else sp.p.pid, signal.SIGTERM)
                sp.wait_exit(60)
                if sp.t_exit is None:
                    raise RuntimeError(f"no exit within 60 s of SIGTERM\n{sp.describe()}")
                out["shutdown"] = {"ms": (sp.t_exit - t_term) / 1e6, "rc": sp.rc}
                break
        ev = parse_log(sp.log_path)
        out["restart_reasons"] = [reason_of(t) for _, tgt, t in ev
                                  if tgt.startswith("dind_init") and 'state="restarting"' in t]
        out["log"] = log_timeline(ev)
        out["boot"] = boot_phases(ev, exec_stamp(sp.log_path), out.get("ready", {}), env)
        # The ready file against dockerd's own `API listen on`, both on CLOCK_REALTIME
        # of the machine or sandbox: in gVisor the file's mtime (gVisor keeps file
        # times in ns); here the moment inotify saw the rename (this kernel's file
        # times are tick-coarse).
        listen = out["log"]["listen"]
        for kind, i in (("ready", 0), ("restart", 1)):
            r = out.get(kind, {})
            w = r.get("file_mtime_ns") if env == "gvisor" else r.get("t_file_wall")
            if w and len(listen) > i:
                r["file_after_listen_ms"] = (w - listen[i]) / 1e6
        return out
    finally:
        sp.kill_tree(grace=15)


SECONDS = re.compile(r"(\d+)[.,](\d+)")


def seconds_ns(text):
    """'1764658959.982846997' (seconds since the epoch and their fraction, as bash's
    $EPOCHREALTIME, with the locale's decimal point, and `stat -c %.9Y` print them) ->
    ns since the epoch; None when `text` is not such a time."""
    m = SECONDS.fullmatch(text or "")
    return int(m.group(1)) * 10**9 + int((m.group(2) + "0" * 9)[:9]) if m else None


def rfc3339_ns(ts):
    """'2026-12-02T07:02:39.982846997Z' -> ns since the epoch (UTC)."""
    base, _, frac = ts.rstrip("Z").partition(".")
    dt = datetime.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc)
    return seconds_ns(f"{int(dt.timestamp())}.{frac or 0}")


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s+([A-Z]+)\s+([\w:]+): (.*)$")


def parse_log(path):
    """dind-init's text log: (time of the line in ns, target, message). For dockerd's
    relayed lines the time is dockerd's own `time="..."` when it has one."""
    out = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = LOG_LINE.match(line.rstrip("\n"))
                if not m:
                    continue
                t, level, target, text = (rfc3339_ns(m.group(1)), m.group(2), m.group(3),
                                          m.group(4))
                if level == "WARN" and target.startswith("dind_init"):
                    target += "#warn"
                if target == "dockerd":
                    own = re.match(r'time="([\dT:.\-]+Z)"', text)
                    if own:
                        t = rfc3339_ns(own.group(1))
                out.append((t, target, text))
    except OSError:
        pass
    return out


def of(tgt, target):
    """Whether a log line's target is `target`: "dockerd" (dockerd's relayed lines),
    "dind_init" (any of the init's own), or a module of the init, wherever it sits
    ("cgroup" matches dind_init::cgroup and dind_init::prepare::cgroup::apply)."""
    if target in ("dockerd", "dind_init"):
        return tgt.startswith(target)
    return tgt.startswith("dind_init") and target in tgt.split("#")[0].split("::")


def start_phases(ev, t0_wall, t_ready_wall, t_file_wall):
    """Milliseconds from starting the container to each step of dind-init's start, on
    CLOCK_REALTIME (the log's clock; gVisor's follows the host's)."""
    def at(target, needle):
        t = next((t for t, tgt, text in ev if of(tgt, target) and needle in text), None)
        return None if t is None else (t - t0_wall) / 1e6

    def last(target):
        ts = [t for t, tgt, _ in ev if of(tgt, target)]
        return (ts[-1] - t0_wall) / 1e6 if ts else None
    return {"init_first_line": at("dind_init", "dind-init starting"),
            "cgroups_done": last("cgroup"),
            "network_done": last("network"),
            "dockerd_spawned": at("dind_init", "started dockerd"),
            "dockerd_starting_up": at("dockerd", 'msg="Starting up"'),
            "api_listen": at("dockerd", 'msg="API listen on'),
            "ready_file": None if t_file_wall is None else (t_file_wall - t0_wall) / 1e6,
            "command_started": at("dind_init", "started COMMAND"),
            "ready_line": (t_ready_wall - t0_wall) / 1e6}


def exec_stamp(path):
    """The `exec-stamp` (STAMP) in a log, as ns since the epoch, or None."""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("exec-stamp "):
                    return seconds_ns(line[len("exec-stamp "):].strip())
    except OSError:
        pass
    return None


def file_after_ping_ms(ev, env):
    """From the first good ping to the ready file, in ms, for an observer event
    (`ready` or `restart`). In gVisor by the file's mtime (the sandbox keeps file times
    in ns, set by the init's write right before its rename) against the poller's
    answer on the same clock: the observer's inotify thread, one Python thread among
    its pollers, can see the rename late on a loaded machine. On this kernel file
    times are tick-coarse: the moment inotify saw the rename."""
    wm, ping, mt = ev.get("wall_minus_mono_ns"), ev.get("t_ping"), ev.get("file_mtime_ns")
    if env == "gvisor" and wm and ping and mt:
        return (mt - (ping + wm)) / 1e6
    v = ev.get("file_minus_ping_us")
    return None if v is None else v / 1e3


def boot_phases(ev, stamp, ready, env):
    """The first start, in ms from the init's exec (STAMP), all on the clock of the
    machine or sandbox: the init's own lines; dockerd's own times for its lines; the
    observer's first good ping and the ready file. `share_ms` = the init's own share
    of the time to ready (SPEC §12): from its exec to dockerd's exec (`started
    dockerd` is logged once the exec succeeded), plus from the first good ping to the
    ready file (the observer's monotonic clock)."""
    if stamp is None:
        return {}
    # The first start only: the lines up to the init's first `ready`.
    end = next((i for i, (_, tgt, text) in enumerate(ev) if tgt.startswith("dind_init")
                and 'state="ready"' in text), len(ev))
    first = ev[:end + 1]

    def at(target, needle, last=False, before=None):
        ts = [t for t, tgt, text in first if of(tgt, target) and needle in text
              and (before is None or t <= before)]
        if not ts:
            return None
        return ((ts[-1] if last else ts[0]) - stamp) / 1e6
    spawned = at("dind_init", "started dockerd")
    sp_abs = None if spawned is None else stamp + int(spawned * 1e6)
    took = next((int(m.group(1)) for _, tgt, text in first if of(tgt, "network")
                 for m in [re.search(r"nested networking set up took_ms=(\d+)", text)] if m), None)
    net_end = at("network", "", last=True)
    pid = next((int(m.group(1)) for _, tgt, text in first if of(tgt, "dind_init")
                for m in [re.search(r"started dockerd pid=(\d+)", text)] if m), None)
    out = {"first_line": at("dind_init", "dind-init starting"),
           "environment": at("dind_init", "environment:"),
           "cgroups_done": at("cgroup", "", last=True, before=sp_abs),
           "dockerd_spawned": spawned,
           "network_start": None if took is None or net_end is None else net_end - took,
           "network_done": net_end if env == "gvisor" else None,
           "dockerd_starting_up": at("dockerd", 'msg="Starting up"'),
           "api_listen": at("dockerd", 'msg="API listen on'),
           "dockerd_pid": pid}
    wm = ready.get("wall_minus_mono_ns")
    if wm and ready.get("t_ping"):
        out["first_ping"] = (ready["t_ping"] + wm - stamp) / 1e6
    w = ready.get("file_mtime_ns") if env == "gvisor" else ready.get("t_file_wall")
    if w:
        out["ready_file"] = (w - stamp) / 1e6
    after = file_after_ping_ms(ready, env)
    if spawned is not None and after is not None:
        out["share_ms"] = spawned + after
        out["share_boot_ms"] = spawned
        out["share_ready_ms"] = after
    return out


def reason_of(text):
    m = re.search(r'reason=Some\("(.*)"\)', text)
    return m.group(1) if m else None


def log_timeline(ev):
    """Moments of interest from the log, all on the clock of the machine or sandbox
    (dind-init's line times; dockerd's own times for its lines)."""
    def all_of(target, needle):
        return [t for t, tgt, text in ev if tgt.startswith(target) and needle in text]

    def first_after(target, needle, after):
        return next((t for t in all_of(target, needle) if t >= after), None)

    listen = all_of("dockerd", 'msg="API listen on')
    tl = {"listen": listen}
    req = next(iter(all_of("dind_init", "shutdown requested")), None)
    if req:
        def ms(t):
            return None if t is None else (t - req) / 1e6
        tl["stop"] = {
            "daemon_shutdown_complete_ms": ms(first_after("dockerd", "Daemon shutdown complete", req)),
            "dockerd_exited_ms": ms(first_after("dind_init", "dockerd exited", req)),
            "init_exiting_ms": ms(first_after("dind_init", "exiting code=", req)),
            "warnings": [text.split(" timeout=")[0][:160] for t, tgt, text in ev
                         if t >= req and tgt.endswith("#warn") and "SIGKILL" in text],
        }
    return tl


def smaps_rollup(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def e2e_once(tmp, env, cg, who):
    """Start to READY, as a user's job sees it: dind-init starts COMMAND
    (`echo READY`) once ready; the shell approach prints READY once `docker info`
    succeeded. Then the time until the whole thing has exited."""
    d = tempfile.mkdtemp(prefix=f"e2e-{who}-{env}-", dir=tmp)
    if who == "dind-init":
        cfg = real_config(d, wait_for_ready=True, interval=None)
        inner = [INIT, "--config", cfg, "--", "/bin/sh", "-c",
                 f"stat -c %.9Y {d}/ready; echo READY"]
    else:
        inner = ["/bin/sh", SHELL, d, env]
    # On this kernel the ready file is on the machine's file system: inotify here
    # sees it renamed into place. In gVisor it is in the sandbox: COMMAND prints its
    # mtime (ns in gVisor) instead.
    watch = ReadyWatch(d, "ready") if who == "dind-init" and env == "host" else None
    sp = Spawned(wrap(env, inner, d), os.path.join(d, "init.log"),
                 preexec=cg.join if (env == "host" and cg) else None)
    try:
        prev = None
        while True:
            t, line = sp.next_line(120)
            if line is None:
                raise RuntimeError(f"{who} ended before READY\n{sp.describe()}")
            if line.strip() == "READY":
                break
            prev = line.strip()
        sp.wait_exit(60)
        r = {"ready_ms": (t - sp.t_start) / 1e6,
             "exit_after_ready_ms": (sp.t_exit - t) / 1e6 if sp.t_exit else None,
             "rc": sp.rc}
        if who == "dind-init":
            ev = parse_log(sp.log_path)
            r["log"] = log_timeline(ev)
            w = None
            if watch:
                tf = watch.wait_for("appear", 0, 1.0)
                w = watch.wall.get(tf)
                # The init logs its `ready` state right after the rename: when the
                # benchmark's own inotify thread saw it later than that, it was late.
                st = next((tt for tt, tgt, text in ev if of(tgt, "dind_init")
                           and 'state="ready"' in text), None)
                if w and st:
                    w = min(w, st)
            else:
                w = seconds_ns(prev)
            if w and r["log"]["listen"]:
                r["file_after_listen_ms"] = (w - r["log"]["listen"][0]) / 1e6
            r["phases"] = start_phases(ev, sp.t_wall, sp.t_wall + (t - sp.t_start), w)
        return r
    finally:
        sp.kill_tree(grace=15)


def bench_real(tmp, opts, envs):
    res = {}
    image_tar = busybox_tar(tmp)
    cg = BenchCgroups() if "host" in envs else None
    try:
        for env in envs:
            sessions, e2e = [], {"dind-init": [], "shell": []}
            for rep in range(opts.reps):
                hold = opts.idle_secs + 1.0 if (rep == 0 and env == "host") else 0
                variant = "ignores-term" if rep % 2 == 0 else "traps-term"
                s = session(tmp, env, cg, opts, image_tar, hold, variant)
                sessions.append(s)
                r, rs = s["ready"], s["restart"]
                log(f"{env} session {rep + 1}: ping {r['ping_ms']:.0f} ms after start; file "
                    f"{r['file_minus_ping_us']:+.0f} us, probe {r['probe_minus_ping_us']:+.0f} us "
                    f"from it (late-early poller {r['late_minus_early_us']:+.0f} us); restart {rs['file_ms']:.0f} ms; "
                    f"shutdown ({variant}) {s['shutdown']['ms']:.0f} ms")
                pair = ["dind-init", "shell"] if rep % 2 == 0 else ["shell", "dind-init"]
                for who in pair:
                    e = e2e_once(tmp, env, cg, who)
                    e2e[who].append(e)
                    log(f"{env} e2e {who}: ready {e['ready_ms']:.0f} ms")
            res[env] = {"sessions": sessions, "e2e": e2e}
    finally:
        if cg:
            cg.remove()
    return res


# ---------------------------------------------------------------- verify = "container"


API_CALL = re.compile(r'msg="Calling (\w+) (?:/v[\d.]+)?(/[^" ?]*)')


def verify_steps(ev):
    """From a log with dockerd's --debug lines: each container check as the time
    (ms) of each Docker API call the init made, up to the next call, the last one up
    to the init's `a test container ran` line. Names: inspect, import, create, start,
    wait, remove."""
    checks, cur = [], None
    for t, tgt, text in ev:
        if tgt.startswith("dind_init") and "checking that a container runs" in text:
            cur = {"t0": t, "calls": []}
        elif cur is not None and tgt == "dockerd":
            m = API_CALL.search(text)
            if not m:
                continue
            method, path = m.group(1), m.group(2)
            name = ("inspect" if method == "GET" and path.startswith("/images/") else
                    "import" if path.startswith("/images/create") else
                    "create" if path == "/containers/create" else
                    "start" if path.endswith("/start") else
                    "wait" if path.endswith("/wait") else
                    "remove" if method == "DELETE" else None)
            if name:
                cur["calls"].append((name, t))
        elif cur is not None and tgt.startswith("dind_init") and "a test container ran" in text:
            calls = cur["calls"] + [("end", t)]
            steps = {"to first call": (calls[0][1] - cur["t0"]) / 1e6}
            for (n, a), (_, b) in zip(calls, calls[1:]):
                steps[n] = (b - a) / 1e6
            m = re.search(r"took_ms=(\d+)", text)
            checks.append({"steps": steps, "took_ms": int(m.group(1)) if m else None})
            cur = None
    return checks


def verify_session(tmp, env, cg, mode, restarts, debug=False):
    """dind-init with `verify = mode`, dockerd with its default bridge (where the
    test container runs), the observer as COMMAND: the first start (fresh data root:
    the check imports its image) and `restarts` SIGKILLs of dockerd (same data root:
    the image is there). From the first good ping to the ready file, each time."""
    d = tempfile.mkdtemp(prefix=f"verify-{mode}-{env}-", dir=tmp)
    cfg = real_config(d, wait_for_ready=False, interval="0s", verify=mode, bridge=True,
                      debug=debug)
    # The peer, in the container sessions: `docker run --rm` of the check's own image
    # in the same sandbox, right after the restarts.
    phases = "ready,restart" + (",docker-run" if mode == "container" and not debug else "")
    argv = wrap(env, [INIT, "--config", cfg, "--", PY, OBSERVE, "--dir", d, "--init", INIT,
                      "--phases", phases, "--restarts", str(restarts)], d)
    sp = Spawned(argv, os.path.join(d, "init.log"),
                 preexec=cg.join if (env == "host" and cg) else None)
    out = {"env": env, "mode": mode, "debug": debug, "restarts": []}
    try:
        while True:
            t, ev = sp.next_json(240)
            if ev.get("event") == "docker-run" and "error" in ev:
                # The peer failed: the check's own numbers stand; say why in the report.
                out["docker_run_error"] = ev["error"][:300]
                break
            if "error" in ev:
                raise RuntimeError(f"verify observer: {ev['error']}\n{sp.describe()}")
            if ev["event"] == "ready":
                if not (ev.get("t_file") and ev.get("t_ping")):
                    raise RuntimeError(f"verify {mode}: not ready: {ev}\n{sp.describe()}")
                out["first_ms"] = file_after_ping_ms(ev, env)
                out["verify_status"] = (ev.get("status") or {}).get("verify")
            elif ev["event"] == "restart":
                if ev.get("file_minus_ping_us") is None:
                    raise RuntimeError(f"verify {mode}: not ready after a restart: {ev}\n"
                                       f"{sp.describe()}")
                out["restarts"].append(file_after_ping_ms(ev, env))
                if len(out["restarts"]) == restarts and "docker-run" not in phases:
                    break
            elif ev["event"] == "docker-run":
                out["docker_run_ms"] = ev["ms"]
                break
        sp.wait_exit(60)
        ev = parse_log(sp.log_path)
        out["took_ms"] = [int(m.group(1)) for _, tgt, text in ev if tgt.startswith("dind_init")
                          for m in [re.search(r"a test container ran.*took_ms=(\d+)", text)] if m]
        out["degraded"] = [text[:200] for _, tgt, text in ev if tgt.startswith("dind_init")
                           and 'state="degraded"' in text]
        if debug:
            out["checks"] = verify_steps(ev)
            out["sandbox_setup_ms"] = [
                float(m.group(1)) * (1e3 if m.group(2) == "s" else 1 if m.group(2) == "ms" else 1e-3)
                for _, tgt, text in ev if tgt == "dockerd"
                for m in [re.search(r"sandbox set key processing took ([\d.]+)(ms|s|µs)", text)] if m]
        return out
    finally:
        sp.kill_tree(grace=15)


def bench_verify(tmp, opts, envs):
    """verify = "ping" against "container", alternating, and one more container run
    with dockerd's --debug (its API calls, to see where the time goes)."""
    res = {}
    cg = BenchCgroups() if "host" in envs else None
    restarts = 1 if opts.quick else 2
    try:
        for env in envs:
            r = res[env] = {"ping": [], "container": [], "debug": None, "restarts": restarts}
            for rep in range(opts.reps):
                for mode in (("ping", "container") if rep % 2 == 0 else ("container", "ping")):
                    v = verify_session(tmp, env, cg, mode, restarts)
                    r[mode].append(v)
                    log(f"{env} verify={mode}: first ping to ready file {v['first_ms']:.1f} ms"
                        f" (first start), after restarts "
                        f"{', '.join(f'{x:.1f}' for x in v['restarts'])} ms; checks took "
                        f"{v['took_ms']} ms")
            try:
                v = verify_session(tmp, env, cg, "container", 1, debug=True)
                r["debug"] = v
                log(f"{env} verify=container with dockerd --debug: steps {v.get('checks')}")
            except (RuntimeError, TimeoutError) as e:
                r["debug_error"] = str(e).splitlines()[0][:300]
    finally:
        if cg:
            cg.remove()
    return res


# ---------------------------------------------------------------- Docker versions

ROOTS_DIR = "/var/cache/dind-init/roots"
SUITES = ["bookworm", "trixie", "sid"]


def find_roots(base=ROOTS_DIR):
    """Roots built by scripts/docker-roots.sh (branch `matrix`): <base>/<suite>/<key>/
    with a `.dind-init-root` marker (a complete build); the newest per suite."""
    out, missing = [], []
    for suite in SUITES:
        d = os.path.join(base, suite)
        cands = []
        try:
            for key in os.listdir(d):
                path = os.path.join(d, key)
                if not key.startswith(".") and os.path.isfile(os.path.join(path, ".dind-init-root")):
                    cands.append((os.path.getmtime(os.path.join(path, ".dind-init-root")), path))
        except OSError:
            pass
        if cands:
            out.append({"suite": suite, "path": max(cands)[1]})
        else:
            missing.append(suite)
    return out, missing


def dpkg_versions(root, pkgs=("docker.io", "containerd", "runc")):
    """Package versions from the root's dpkg database (nothing is run in the root)."""
    out, cur = {}, None
    try:
        with open(os.path.join(root, "var/lib/dpkg/status"), errors="replace") as f:
            for line in f:
                if line.startswith("Package: "):
                    cur = line.split(None, 1)[1].strip()
                elif line.startswith("Version: ") and cur in pkgs:
                    out[cur] = line.split(None, 1)[1].strip()
    except OSError:
        pass
    return out


# Inside the root: print the ready file's mtime (ns in gVisor) and READY, once ready.
VERSION_COMMAND = ["/bin/sh", "-c", "stat -c %.9Y /run/dind-init/ready; echo READY"]


def version_once(tmp, root, env, cg):
    """dind-init as PID 1 with the root's Docker, the image's way: default config,
    the binary copied into the run's own overlay of the (read-only) root. gVisor:
    `runsc do -root`; host: private namespaces, chroot. Time from `GO` (printed right
    before the exec of runsc or chroot, after the overlay is set up) to READY."""
    d = tempfile.mkdtemp(prefix=f"version-{env}-", dir=tmp)
    cmd = " ".join(shlex.quote(a) for a in VERSION_COMMAND)
    setup = (f"set -e\nm={d}/merged\nmkdir -p {d}/upper {d}/work $m\n"
             f"mount -t overlay overlay -o lowerdir={root},upperdir={d}/upper,workdir={d}/work $m\n"
             f"mkdir -p $m/usr/local/bin\ncp {INIT} $m/usr/local/bin/dind-init\n")
    if env == "gvisor":
        script = (setup + "echo GO\n"
                  f"exec runsc --network=none --net-raw do -root $m -cwd / "
                  f"/usr/local/bin/dind-init -- {cmd}\n")
        argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script]
    else:
        script = ("ip link set lo up\n" + setup +
                  "mount -t proc proc $m/proc\nmount -t sysfs sysfs $m/sys\n"
                  "mount --rbind /dev $m/dev\n"
                  "for p in run tmp var/lib/docker; do mkdir -p $m/$p; mount -t tmpfs tmpfs $m/$p; done\n"
                  "chmod 1777 $m/tmp\necho GO\n"
                  f"exec chroot $m /usr/local/bin/dind-init -- {cmd}\n")
        argv = UNSHARE + ["--cgroup", "--net", "/bin/sh", "-c", script]
    env_vars = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "DIND_INIT_CONFIG")}
    env_vars["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    sp = Spawned(argv, os.path.join(d, "init.log"),
                 preexec=cg.join if (env == "host" and cg) else None, env=env_vars)
    try:
        t_go, prev = None, None
        while True:
            t, line = sp.next_line(180)
            if line is None:
                raise RuntimeError(f"ended before READY\n{sp.describe()}")
            line = line.strip()
            if line == "GO":
                t_go, t_go_wall = t, sp.t_wall + (t - sp.t_start)
            elif line == "READY":
                break
            else:
                prev = line
        if t_go is None:
            raise RuntimeError(f"no GO line\n{sp.describe()}")
        sp.wait_exit(60)
        ev = parse_log(sp.log_path)
        r = {"ready_ms": (t - t_go) / 1e6, "rc": sp.rc,
             "exit_after_ready_ms": (sp.t_exit - t) / 1e6 if sp.t_exit else None}
        first = next((tt for tt, tgt, _ in ev if tgt.startswith("dind_init")), None)
        spawned = next((tt for tt, tgt, text in ev if tgt.startswith("dind_init")
                        and "started dockerd" in text), None)
        listen = next((tt for tt, tgt, text in ev if tgt == "dockerd"
                       and 'msg="API listen on' in text), None)
        ready = next((tt for tt, tgt, text in ev if tgt.startswith("dind_init")
                      and 'state="ready"' in text), None)
        # The ready file: in gVisor its mtime (ns); this kernel's file times are
        # tick-coarse, so there the init's `ready` state line, logged right after it.
        w = seconds_ns(prev) if env == "gvisor" else None
        if w is None:
            w = ready

        def ms(a, b):
            return None if a is None or b is None else (a - b) / 1e6
        r.update(first_line_ms=ms(first, t_go_wall), spawned_ms=ms(spawned, t_go_wall),
                 listen_ms=ms(listen, t_go_wall), file_ms=ms(w, t_go_wall),
                 file_after_listen_ms=ms(w, listen), boot_ms=ms(spawned, first))
        r["warnings"] = sorted({text[:160] for _, tgt, text in ev if tgt.endswith("#warn")})[:5]
        return r
    finally:
        sp.kill_tree(grace=15)


def bench_versions(tmp, opts, envs):
    roots, missing = find_roots(opts.roots)
    res = {"roots": [], "missing": missing, "base": opts.roots}
    if not roots:
        log(f"versions: no roots under {opts.roots} (scripts/docker-roots.sh builds them): skipped")
        return res
    cg = BenchCgroups() if "host" in envs else None
    try:
        for r in roots:
            r["versions"] = dpkg_versions(r["path"])
            r["runs"] = {}
            for env in envs:
                runs = r["runs"][env] = []
                for rep in range(opts.reps):
                    try:
                        x = version_once(tmp, r["path"], env, cg)
                    except (RuntimeError, TimeoutError) as e:
                        x = {"error": str(e).splitlines()[0][:300]}
                        log(f"version {r['suite']} {env}: {x['error']}")
                    runs.append(x)
                    if "ready_ms" in x:
                        log(f"version {r['suite']} ({r['versions'].get('docker.io')}) {env}: "
                            f"ready {x['ready_ms']:.0f} ms")
            res["roots"].append(r)
    finally:
        if cg:
            cg.remove()
    return res


# ---------------------------------------------------------------- nested docker build

# FROM the imported busybox image (only /bin/busybox, sh and sleep), 6 steps: the
# applets' links; a COPY of BUILD_FILES x BUILD_FILE_MIB MiB of random bytes; three RUN
# steps that write files (random bytes, copies of the COPY, many small files) and
# delete one; a CMD (no file change).
BUILD_FILES, BUILD_FILE_MIB = 4, 4
DOCKERFILE = """FROM dind-init-bench-busybox:latest
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY data/ /src/
RUN mkdir /gen && dd if=/dev/urandom of=/gen/random bs=1M count=4 2>/dev/null
RUN cat /src/* > /gen/all && cp -r /src /gen/src-copy
RUN for i in $(seq 1 500); do echo "file $i" > /gen/f$i; done && rm /gen/src-copy/blob1
CMD ["sh"]
"""
BUILD_TMPFS = "2g"


def build_context(tmp):
    ctx = os.path.join(tmp, "build-context")
    os.makedirs(os.path.join(ctx, "data"))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    for i in range(1, BUILD_FILES + 1):
        with open(os.path.join(ctx, "data", f"blob{i}"), "wb") as f:
            f.write(os.urandom(BUILD_FILE_MIB * MIB))
    return ctx


def build_once(tmp, storage, image_tar, ctx):
    """dind-init as PID 1 of a gVisor sandbox with the real dockerd, its data root
    `d`/data on the sandbox's overlay root (`storage` "overlay-root": dockerd picks
    vfs) or on a tmpfs (`storage` "tmpfs": `[dockerd] data_root_tmpfs`, overlay2);
    bench/nested_build.py as COMMAND once ready: import, `docker build`, `du`."""
    d = tempfile.mkdtemp(prefix=f"build-{storage}-", dir=tmp)
    cfg = real_config(d, wait_for_ready=True, interval="0s",
                      tmpfs=BUILD_TMPFS if storage == "tmpfs" else None)
    argv = wrap("gvisor", [INIT, "--config", cfg, "--", PY, NESTED_BUILD, "--dir", d,
                           "--init", INIT, "--data-root", d + "/data", "--image-tar",
                           image_tar, "--context", ctx], d)
    sp = Spawned(argv, os.path.join(d, "init.log"))
    try:
        t, r = sp.next_json(1200)
        r["storage_mode"] = storage
        r["start_to_result_ms"] = (t - sp.t_start) / 1e6
        if "error" in r:
            raise RuntimeError(f"nested build ({storage}): {r['error']}\n{sp.describe()}")
        sp.wait_exit(60)
        r["rc"] = sp.rc
        return r
    finally:
        sp.kill_tree(grace=15)


def bench_build(tmp, opts):
    """The nested build in gVisor, data root on the overlay root (vfs) against a tmpfs
    (overlay2), alternating which goes first."""
    image_tar = busybox_tar(tmp)
    ctx = build_context(tmp)
    res = {"runs": {"overlay-root": [], "tmpfs": []}, "tmpfs": BUILD_TMPFS,
           "dockerfile": DOCKERFILE, "context_mib": BUILD_FILES * BUILD_FILE_MIB,
           "client": first_line(["docker", "--version"])}
    for rep in range(opts.build_reps):
        order = ("overlay-root", "tmpfs") if rep % 2 == 0 else ("tmpfs", "overlay-root")
        for storage in order:
            try:
                r = build_once(tmp, storage, image_tar, ctx)
            except (RuntimeError, TimeoutError) as e:
                r = {"storage_mode": storage, "error": str(e).splitlines()[0][:300]}
                log(f"build {storage}: {str(e)[:2000]}")
            res["runs"][storage].append(r)
            if "error" in r:
                continue
            log(f"build {storage} ({r.get('storage_driver')}): {r['build_ms'] / 1e3:.1f} s, "
                f"{r['steps']} steps; data root {r['du_kib_before'] / 1024:.0f} MiB after the "
                f"import, {r['du_kib_after'] / 1024:.0f} MiB after the build")
    return res


# ---------------------------------------------------------------- analysis


def cargo_build(tdir, extra_config):
    cmd = ["cargo", "build", "--release", "--target", "x86_64-unknown-linux-musl",
           "--bin", "dind-init"]
    for c in extra_config:
        cmd += ["--config", c]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=tdir))
    binp = os.path.join(tdir, "x86_64-unknown-linux-musl", "release", "dind-init")
    if p.returncode != 0 or not os.path.exists(binp):
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return binp


def symbol_build():
    """The same code and release profile, not stripped (for nm and perf)."""
    return cargo_build(os.path.join(ROOT, "target", "bench-symbols"),
                       ["profile.release.strip=false"])


# What a symbol belongs to, by feature, first match wins (demangled names).
SIZE_BUCKETS = [
    ("panic backtraces (std backtrace_rs, gimli, addr2line, rustc_demangle, libunwind)",
     r"backtrace|gimli|addr2line|rustc_demangle|libunwind|_Unwind_|unwind|miniz_oxide|"
     r"object::|__register_frame|dl_iterate_phdr"),
    ("config parsing (toml, toml_parser, serde, derived Deserialize)",
     r"toml|serde_core::de|serde::de|Deserialize|Deserializer|de::Visitor|MapAccess|SeqAccess"),
    ("JSON (serde_json, Serialize, tracing json)", r"serde_json|Serialize|Serializer|tracing_serde"),
    ("logging (tracing, tracing_subscriber, tracing_journald)", r"tracing"),
    ("formatting and float parsing (core::fmt, dec2flt, flt2dec)",
     r"core::fmt|dec2flt|flt2dec|core::num::fmt|Display|Debug>::fmt"),
    ("dind-init's own code", r"dind_init"),
    ("musl libc", r"^(__|_)?[a-z0-9_]+$"),
]


def size_analysis():
    """Where the bytes go (non-stripped build, same profile), and the size of one
    candidate fix that needs no code change (opt-level "z")."""
    out = {}
    binp = symbol_build()
    out["unstripped_bytes"] = os.path.getsize(binp)
    sections = {}
    for line in subprocess.run(["size", "-A", binp], capture_output=True,
                               text=True).stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].startswith(".") and f[1].isdigit() and not f[0].startswith(".debug"):
            sections[f[0]] = int(f[1])
    out["sections"] = dict(sorted(sections.items(), key=lambda kv: -kv[1])[:8])
    nm = subprocess.run(["nm", "--size-sort", "-S", "-C", "--radix=d", binp],
                        capture_output=True, text=True).stdout
    crates, buckets, syms = {}, {b: 0 for b, _ in SIZE_BUCKETS}, []
    buckets["other (core, alloc, std)"] = 0
    for line in nm.splitlines():
        f = line.split(None, 3)
        if len(f) < 4 or f[2] not in "tTrRdDwW":
            continue
        size, name = int(f[1]), f[3]
        c = symbol_crate(name)
        crates[c] = crates.get(c, 0) + size
        for b, rx in SIZE_BUCKETS:
            if re.search(rx, name):
                buckets[b] += size
                break
        else:
            buckets["other (core, alloc, std)"] += size
        syms.append((size, name[:100]))
    out["crates"] = sorted(crates.items(), key=lambda kv: -kv[1])[:12]
    out["buckets"] = sorted(buckets.items(), key=lambda kv: -kv[1])
    out["named_total"] = sum(crates.values())
    syms.sort(reverse=True)
    out["symbols"] = syms[:10]
    try:
        z = cargo_build(os.path.join(ROOT, "target", "bench-size-z"),
                        ['profile.release.opt-level="z"'])
        out["opt_z_bytes"] = os.path.getsize(z)
    except RuntimeError as e:
        out["opt_z_error"] = str(e)[:300]
    return out, binp


def symbol_crate(name):
    n = name.lstrip("<&*( ")
    for pre in ("impl ", "dyn "):
        if n.startswith(pre):
            n = n[len(pre):]
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    return m.group(1) if m else "(no crate: musl, compiler)"


def spawn_reference(env, n=10):
    """What one fork+exec costs where the init runs: bash (the sandbox's PID 1 in
    gVisor) runs `/bin/true` and `dind-init --version` n times each, timing each with
    $EPOCHREALTIME (from before the fork to after the wait). Medians in ms."""
    script = ('for i in $(seq %d); do a=$EPOCHREALTIME; /bin/true; b=$EPOCHREALTIME; '
              '%s --version >/dev/null; c=$EPOCHREALTIME; echo "$a $b $c"; done' % (n, INIT))
    argv = ["bash", "-c", script]
    if env == "gvisor":
        argv = ["runsc", "--network=none", "--net-raw", "do", *argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        rows = [[float(x.replace(",", ".")) for x in line.split()]
                for line in p.stdout.splitlines() if len(line.split()) == 3]
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e)[:200]}
    if not rows:
        return {"error": (p.stderr or "no output")[-200:]}
    return {"true_ms": median([(b - a) * 1e3 for a, b, _ in rows]),
            "init_version_ms": median([(c - b) * 1e3 for _, b, c in rows]), "n": len(rows)}


def gvisor_credentials():
    """What SCM_CREDENTIALS says about a datagram sent from a second thread, on this
    kernel and in gVisor."""
    out = {}
    for env in ("host", "gvisor"):
        argv = [PY, CHILD, "cred"]
        if env == "gvisor":
            argv = ["runsc", "--network=none", "--net-raw", "do", *argv]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            out[env] = json.loads(p.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
            out[env] = {"error": str(e)[:200]}
    return out


# ---------------------------------------------------------------- report


def calls(sc):
    return ", ".join(f"{k} x{v:g}" for k, v in sc.items()) if sc else "n/a"


def first(xs, i):
    return xs[i] if xs and len(xs) > i else None


def fmt(v, nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}"


def rng(xs, nd=1):
    xs = [x for x in xs if x is not None]
    return f"{min(xs):.{nd}f} .. {max(xs):.{nd}f}" if xs else "n/a"


def span(runs, a, b):
    """The median time from phase `a` to phase `b` over `runs` (dicts of ms by phase),
    counting the runs that have both; None when none has."""
    return median([p[b] - p[a] for p in runs if p.get(a) is not None and p.get(b) is not None])


class Report:
    def __init__(self, R, opts):
        self.R, self.opts = R, opts
        self.L = []
        self.targets = []  # (key, text, met, detail)
        self.names = R["names"]
        self.peers = [n for n in self.names if n in dict(PEERS)]

    def p(self, *lines):
        self.L.extend(lines)

    def target(self, key, text, met, detail):
        self.targets.append((key, text, met, detail))

    def met(self, key):
        return next((t[2] for t in self.targets if t[0] == key), None)

    # ---- section 1
    def reaping(self, reap):
        o, names, peers = self.opts, self.names, self.peers
        self.p(f"### Zombie reaping ({o.orphans} orphans)\n",
               "The child (`bench/child.py reap`) runs `fake-dockerd --fake-orphans=N`, which "
               "makes N zombies re-parented to PID 1 (clone with CLONE_VM, batches of 10), "
               "then watches `/proc/1/task/*/children` (zombies stay listed until reaped) every "
               "0.2 ms until all are gone (for a backlog, it first watches the machine's task "
               "count in /proc/loadavg, which is lock-free, because reading the children list "
               "takes the lock reaping needs). *Live*: the init runs while the orphans are made; "
               "time from start to all reaped (the factory, not the init, sets the pace). "
               "*Backlog*: the init is held with SIGSTOP while all N are made, then SIGCONT; "
               "the time to reap the whole backlog is the init's own reaping rate. Init CPU "
               "from /proc/PID/schedstat over the run.\n",
               "| init | live: start to all reaped (ms) | backlog: drain (ms), median | "
               "backlog drain, min .. max (ms) | backlog rate (/s) | vs fastest peer | "
               "init CPU per orphan, backlog (us) | VmHWM after (KiB) |",
               "|---|---:|---:|---:|---:|---:|---:|---:|")
        med = {}
        for n in names:
            lv, bl = reap[n]["live"], reap[n]["backlog"]
            med[n] = {"live_ms": median([r["total_ms"] for r in lv]),
                      "drain_ms": median([r["drain_ms"] for r in bl]),
                      "drain_all": [r["drain_ms"] for r in bl],
                      "cpu": median([r["cpu_us_per_orphan"] for r in bl]),
                      "hwm": max([r["hwm_kib"] or 0 for r in lv + bl])}
            med[n]["rate"] = o.orphans / (med[n]["drain_ms"] / 1e3)
        best = max(peers, key=lambda n: med[n]["rate"])
        for n in names:
            m = med[n]
            self.p(f"| {n} | {fmt(m['live_ms'], 0)} | {fmt(m['drain_ms'], 1)} | "
                   f"{rng(m['drain_all'])} | {m['rate']:.0f} | "
                   f"{m['rate'] / med[best]['rate']:.2f}x | {fmt(m['cpu'], 2)} | {m['hwm']} |")
        d = med["dind-init"]
        self.p("")
        self.target("reap", "Zombie reaping throughput at least the fastest peer's",
                    d["rate"] >= med[best]["rate"],
                    f"backlog of {o.orphans}: {d['rate']:.0f}/s vs {best} {med[best]['rate']:.0f}/s "
                    f"({d['rate'] / med[best]['rate']:.2f}x)")
        self.reap_med, self.reap_best = med, best
        # Per round: which init drained its backlog fastest (all inits ran in each
        # round, one after another, so they met about the same machine).
        wins, rounds = {n: 0 for n in names}, 0
        for rep in sorted({r.get("rep") for n in names for r in reap[n]["backlog"]} - {None}):
            got = {n: r["drain_ms"] for n in names for r in reap[n]["backlog"] if r.get("rep") == rep}
            if len(got) == len(names):
                rounds += 1
                wins[min(got, key=got.get)] += 1
        self.reap_wins, self.reap_rounds = wins, rounds

    def reap_verdict(self):
        """What the round-by-round winners say about the reaping target."""
        wins, rounds = self.reap_wins, self.reap_rounds
        top = max(wins, key=wins.get)
        if top != "dind-init" and wins[top] >= 0.75 * rounds:
            return (f": {top} was fastest in most rounds, a real difference rather than "
                    f"noise; profile dind-init's reaping path against it.")
        return (": no init is reliably faster, so which one has the best median changes "
                "from run to run, and a target of 'at least the fastest peer' is met or "
                "missed by the draw of this noise.")

    def signals(self, sig):
        names, peers = self.names, self.peers
        self.p(f"### Signal forwarding latency (median of {sig['direct']['n']} signals each)\n",
               "The child (`bench/child.py signal`) blocks SIGUSR1 and waits for it with "
               "sigwaitinfo(2), then writes its CLOCK_MONOTONIC time to a FIFO; the driver takes "
               "CLOCK_MONOTONIC just before kill(2) of the init's host pid. *direct* is the same "
               "child signalled itself, with no init in between; *added* = the init's median "
               "minus direct's. All run at the same time, one signal at a time, in a shuffled "
               "order each round (so caches are as cold for each as in real life). CPU per "
               "signal from /proc/PID/schedstat; system calls per signal from `strace -c` on "
               f"the init alone, over 100 more signals.\n",
               "| init | median (us) | p10 (us) | p90 (us) | added by the init (us) | "
               "vs fastest peer | init CPU per signal (us) | system calls per signal |",
               "|---|---:|---:|---:|---:|---:|---:|---|")
        best = min(peers, key=lambda n: sig[n]["added_us"])
        for n in names + ["direct"]:
            r = sig[n]
            ratio = (f"{r['added_us'] / sig[best]['added_us']:.2f}x"
                     if n != "direct" and sig[best]["added_us"] > 0 else "")
            sc = r.get("syscalls")
            sct = calls(sc) if sc else ""
            self.p(f"| {n} | {fmt(r['median_us'])} | {fmt(r['p10_us'])} | {fmt(r['p90_us'])} "
                   f"| {fmt(r.get('added_us')) if n != 'direct' else '-'} | {ratio} | "
                   f"{fmt(r['cpu_us_per_signal'])} | {sct} |")
        self.p("")
        d = sig["dind-init"]
        self.target("signal", "Added cost of forwarding a signal at most the fastest peer's",
                    d["added_us"] <= sig[best]["added_us"],
                    f"{fmt(d['added_us'])} us vs {best} {fmt(sig[best]['added_us'])} us")
        self.sig_best = best

    def idle(self, idle):
        o, names = self.opts, self.names
        self.p(f"### Idle wake-ups ({o.idle_secs:g} s) and memory\n",
               "All inits at once, each with `sleep` as its child, counted from 1 s after "
               "start; wake-ups = voluntary + nonvoluntary context switches of the init "
               "(/proc/PID/status) over the window; dind-init with periodic pings off "
               f"(`interval = \"0s\"`). Median and max over {o.idle_reps} window(s). VmHWM = "
               "the init's peak RSS.\n",
               "| init | wake-ups (median) | wake-ups (max) | VmHWM idle (KiB) | VmRSS idle (KiB) | "
               "VmHWM after 20,000 orphans (KiB) |",
               "|---|---:|---:|---:|---:|---:|")
        med = getattr(self, "reap_med", {})
        for n in names:
            w = [r["wakeups"] for r in idle[n]]
            self.p(f"| {n} | {fmt(median(w), 0)} | {max(w)} | "
                   f"{median([r['hwm_kib'] for r in idle[n]]):.0f} | "
                   f"{median([r['rss_kib'] for r in idle[n]]):.0f} | "
                   f"{med.get(n, {}).get('hwm', 'n/a')} |")
        self.p("")
        dw = [r["wakeups"] for r in idle["dind-init"]]
        self.target("idle", f"Zero idle wake-ups ({o.idle_secs:g} s, periodic pings off)",
                    max(dw) == 0, f"max {max(dw)} over {len(dw)} window(s) of {o.idle_secs:g} s")

    def sizes(self, sizes):
        self.p("### Binary size\n",
               "| binary | bytes | MiB | linking | stripped |",
               "|---|---:|---:|---|---|")
        for n, r in sizes.items():
            self.p(f"| {n} (`{r['path']}`) | {r['bytes']} | {r['bytes'] / MIB:.2f} | "
                   f"{r['link']} | {'yes' if r['stripped'] else 'no'} |")
        self.p("")
        di = sizes["dind-init"]
        self.target("size", "Static binary at most 1.25 MiB (1,310,720 bytes)",
                    di["bytes"] <= SIZE_TARGET and di["link"] == "static",
                    f"{di['bytes']} bytes = {di['bytes'] / MIB:.3f} MiB, {di['link']}")

    # ---- sections 2-4
    def real(self, real):
        self.p("## 2. Readiness with the real dockerd\n",
               "dind-init is PID 1 supervising the real dockerd, every path in a temp dir: "
               "`--data-root`, `--exec-root`, `--pidfile`, `--host` (from `dockerd.socket`), "
               "`--iptables=false --bridge=none`. *host*: this kernel, `unshare --pid --fork "
               "--mount --mount-proc --cgroup --net` (lo up; a leaf cgroup of the benchmark's "
               "own joined first). *gvisor*: `runsc --network=none --net-raw do dind-init ...` "
               "(dind-init prepares the cgroups itself). The observer (`bench/observe.py`) is "
               "dind-init's COMMAND with `wait_for_ready = false`, so it starts with dockerd, "
               "in the same namespaces or sandbox. Two independent pollers (the second started "
               "20 ms after the first) connect to dockerd's socket and send `GET /_ping` every "
               "1 ms; a connection made before dockerd serves stays pending and is answered "
               "when it serves. *First good ping* = the earlier of their first 200s. The ready "
               "file: on this kernel the moment the observer's inotify saw it renamed into "
               "place; in gVisor its mtime (the sandbox keeps file times in ns; the init writes "
               "it right before the rename), against the ping's answer on the same clock (the "
               "observer's inotify thread, one Python thread among its pollers, can be late "
               "there on a loaded machine: its own view is the next column). `dind-init probe "
               "--wait 60s` runs from the start. Negative: dind-init knew first.\n",
               "| environment | runs | first good ping, after observer start (ms) | ready file - first ping (ms), median | min .. max | "
               "same, as the observer's inotify saw it (ms) | "
               "probe --wait returns - first ping (ms) | late poller - early poller (ms) |",
               "|---|---:|---:|---:|---:|---:|---:|---:|")
        meds = {}
        for env, rr in real.items():
            rs = [s["ready"] for s in rr["sessions"]]
            fd = [file_after_ping_ms(r, env) for r in rs]
            fi = [r["file_minus_ping_us"] / 1e3 for r in rs]
            pd = [r["probe_minus_ping_us"] / 1e3 for r in rs]
            le = [r["late_minus_early_us"] / 1e3 for r in rs if r.get("late_minus_early_us") is not None]
            meds[env] = {"file": median(fd), "probe": median(pd), "le": median(le),
                         "le_all": le, "fd_all": fd,
                         "attempts": [r.get("ping_attempts") for r in rs]}
            self.p(f"| {env} | {len(rs)} | {fmt(median([r['ping_ms'] for r in rs]), 0)} | "
                   f"{fmt(median(fd), 2)} | {rng(fd, 2)} | {fmt(median(fi), 2)} | "
                   f"{fmt(median(pd), 2)} | {fmt(median(le), 2)} |")
        self.p("", "Against dockerd's own clock: dockerd logs `API listen on` (with its own "
               "timestamp) right before it serves. The ready file written, on the same clock "
               "(CLOCK_REALTIME of the machine or sandbox): in gVisor the file's mtime (gVisor "
               "keeps file times in ns), on this kernel the moment inotify saw it renamed into "
               "place (this kernel's file times are tick-coarse). In the observer runs two "
               "pollers are pending too; in the end-to-end runs (below) nothing else talks to "
               "dockerd.\n",
               "| environment | ready file - dockerd's `API listen on` (ms), observer runs | "
               "same, end-to-end runs, no other client (ms) | same, after the restart (ms) |",
               "|---|---:|---:|---:|")
        for env, rr in real.items():
            a = [s["ready"].get("file_after_listen_ms") for s in rr["sessions"]]
            b = [e.get("file_after_listen_ms") for e in rr["e2e"]["dind-init"]]
            c = [s["restart"].get("file_after_listen_ms") for s in rr["sessions"]]
            meds[env].update(listen_obs=median(a), listen_obs_all=a, listen_e2e=median(b),
                             listen_e2e_all=b)
            self.p(f"| {env} | {fmt(median(a), 2)} ({rng(a, 2)}) | {fmt(median(b), 2)} ({rng(b, 2)}) | "
                   f"{fmt(median(c), 2)} ({rng(c, 2)}) |")
        self.p("")
        self.ready_meds = meds
        for env in real:
            self.target(f"ready-{env}", f"Readiness signalled within 2 ms of the first good "
                        f"ping (median), {env}", meds[env]["file"] <= 2.0,
                        f"ready file {fmt(meds[env]['file'], 2)} ms after the first good ping; "
                        f"probe --wait {fmt(meds[env]['probe'], 2)} ms")

        self.share(real)

        self.p("### End-to-end time to ready against the shell approach\n",
               "From starting the container (the `unshare` or `runsc do` command) to a line "
               "`READY` on its stdout: printed by dind-init's COMMAND (`sh -c 'echo READY'`, "
               "started once ready; default config otherwise), or by "
               "`bench/shell-approach.sh` (starts dockerd with the same arguments, `sleep 3`, "
               "then `docker info` every 500 ms; in gVisor it first mounts every cgroup "
               "controller itself). The two alternate.\n",
               "| environment | runs | dind-init (ms) | shell approach (ms) | shell / dind-init | "
               "dind-init: READY to exit, no container (ms) |",
               "|---|---:|---:|---:|---:|---:|")
        for env, rr in real.items():
            di = median([e["ready_ms"] for e in rr["e2e"]["dind-init"]])
            sh = median([e["ready_ms"] for e in rr["e2e"]["shell"]])
            ex = median([e["exit_after_ready_ms"] for e in rr["e2e"]["dind-init"]])
            self.p(f"| {env} | {len(rr['e2e']['dind-init'])} | {fmt(di, 0)} | {fmt(sh, 0)} | "
                   f"{sh / di:.2f}x | {fmt(ex, 0)} |")
            rr["_e2e"] = (di, sh)
        self.p("", "Where dind-init's time to READY goes (medians, ms from starting the "
               "container, on CLOCK_REALTIME: the log's times against the host's clock when it "
               "started the container and when READY arrived):\n",
               "| environment | init's first log line | last cgroup line | dockerd started | "
               "last nested-networking line | dockerd's `Starting up` | dockerd's `API listen on` | "
               "ready file written | COMMAND started | READY on stdout |",
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for env, rr in real.items():
            ph = [e.get("phases", {}) for e in rr["e2e"]["dind-init"]]
            cols = ["init_first_line", "cgroups_done", "dockerd_spawned", "network_done",
                    "dockerd_starting_up", "api_listen", "ready_file", "command_started",
                    "ready_line"]
            self.p(f"| {env} | " + " | ".join(fmt(median([p.get(c) for p in ph]), 0) for c in cols) + " |")
        self.p("")
        if "gvisor" in real:
            di, sh = real["gvisor"]["_e2e"]
            self.target("e2e", f"End-to-end time to ready in gVisor at least {E2E_FACTOR:g} "
                        "times shorter than the shell approach", sh / di >= E2E_FACTOR,
                        f"{fmt(di, 0)} ms vs {fmt(sh, 0)} ms = {sh / di:.2f}x")
        else:
            self.target("e2e", f"End-to-end time to ready in gVisor at least {E2E_FACTOR:g} "
                        "times shorter than the shell approach", None,
                        "gVisor not measured in this run")

        self.p("### Memory and wake-ups while supervising the real dockerd\n")
        host = real.get("host")
        if host:
            ss = host["sessions"]
            hr = [s.get("ready_host", {}).get("hwm_kib") for s in ss]
            ht = [s.get("term_host", {}).get("hwm_kib") for s in ss]
            self.p("dind-init's VmHWM (host pid) when ready, and after the restart and the nested "
                   "container (just before SIGTERM):\n",
                   "| measure (host) | median | max |", "|---|---:|---:|",
                   f"| VmHWM when ready (KiB) | {fmt(median(hr), 0)} | {max(x or 0 for x in hr)} |",
                   f"| VmHWM before SIGTERM (KiB) | {fmt(median(ht), 0)} | {max(x or 0 for x in ht)} |")
            ih = ss[0].get("idle_host")
            if ih:
                self.p(f"| wake-ups in {ih['secs']:g} s idle, ready, `interval = \"0s\"` | "
                       f"{ih['voluntary'] + ih['nonvoluntary']} | |")
            sm = ss[0].get("term_host", {}).get("smaps", {})
            if sm:
                self.p("", f"`/proc/PID/smaps_rollup` before SIGTERM (first run): Rss "
                       f"{sm.get('Rss')} KiB = anonymous {sm.get('Anonymous')} KiB + file-backed "
                       f"{sm.get('Rss', 0) - sm.get('Anonymous', 0)} KiB (the binary's pages); "
                       f"Pss {sm.get('Pss')} KiB.")
            peak = max(x or 0 for x in hr + ht)
            self.target("rss", "Peak RSS at most 2 MiB in steady state while supervising dockerd",
                        peak <= 2048, f"VmHWM {peak} KiB (max over runs, real dockerd, host)")
        if "gvisor" in real:
            g = [s["ready"].get("init_proc", {}).get("VmRSS") for s in real["gvisor"]["sessions"]]
            self.p("", f"In gVisor the sandbox's /proc/1/status has no VmHWM; its VmRSS for "
                   f"dind-init when ready: {', '.join(str(x) for x in g)} (gVisor's own accounting).")
        self.p("")

        self.p("## 3. Restart: SIGKILL of dockerd to ready again\n",
               "The observer SIGKILLs dockerd (its pid from the ready file); times from the kill. "
               "dind-init's default `backoff_initial = \"100ms\"` applies, and a containerd left "
               "running by the killed dockerd is stopped first.\n",
               "| environment | runs | ready file gone (ms) | first good ping (ms) | ready file back (ms) | "
               "probe --wait returns (ms) | ready file - first ping (ms) | reason dind-init logged for the restart |",
               "|---|---:|---:|---:|---:|---:|---:|---|")
        for env, rr in real.items():
            rs = [s["restart"] for s in rr["sessions"]]
            reasons = sorted({str(r) for s in rr["sessions"] for r in s.get("restart_reasons", [])})
            self.p(f"| {env} | {len(rs)} | {fmt(median([r['gone_ms'] for r in rs]), 1)} | "
                   f"{fmt(median([r['ping_ms'] for r in rs]), 0)} | "
                   f"{fmt(median([r['file_ms'] for r in rs]), 0)} | "
                   f"{fmt(median([r['probe_ms'] for r in rs]), 0)} | "
                   f"{fmt(median([file_after_ping_ms(r, env) for r in rs]), 2)} | "
                   f"{'; '.join(reasons)[:300] or '-'} |")
        self.p("")
        self.p("## 4. Shutdown: SIGTERM to exit with a nested container\n",
               "After the restart the observer `docker import`s a busybox-static image and runs "
               "`docker run -d --network=none IMG ...`; then the driver sends SIGTERM to the init "
               "(host) or to `runsc do` (which passes it to the sandbox's PID 1) and times until "
               "that process has exited. Two containers, alternating between runs: "
               "*ignores-term*: `/bin/sleep 1000` as the container's PID 1, which on Linux "
               "ignores SIGTERM (PID 1 of a pid namespace, no handler), so dockerd waits the "
               "container's stop timeout (Docker's default: 10 s); *traps-term*: a shell that "
               "exits on SIGTERM. *None*: the end-to-end runs, from COMMAND's end to the "
               "init's exit. ",
               "The last three columns come from dind-init's log, from its `shutdown requested`: "
               "dockerd's own `Daemon shutdown complete`, dind-init's `dockerd exited`, and its "
               "`exiting` line.\n",
               "| environment | container | runs | SIGTERM to exit (ms) | exit codes | "
               "to `Daemon shutdown complete` (ms) | to `dockerd exited` (ms) | to init `exiting` (ms) | "
               "dind-init's SIGKILL warnings |",
               "|---|---|---:|---:|---|---:|---:|---:|---|")
        for env, rr in real.items():
            for variant in ("ignores-term", "traps-term"):
                ss = [s for s in rr["sessions"] if s["variant"] == variant]
                if not ss:
                    continue
                st = [s.get("log", {}).get("stop", {}) for s in ss]
                warns = sorted({w for x in st for w in x.get("warnings", [])})
                self.p(f"| {env} | {variant} | {len(ss)} | "
                       f"{fmt(median([s['shutdown']['ms'] for s in ss]), 0)} | "
                       f"{','.join(sorted({str(s['shutdown']['rc']) for s in ss}))} | "
                       f"{fmt(median([x.get('daemon_shutdown_complete_ms') for x in st]), 0)} | "
                       f"{fmt(median([x.get('dockerd_exited_ms') for x in st]), 0)} | "
                       f"{fmt(median([x.get('init_exiting_ms') for x in st]), 0)} | "
                       f"{'; '.join(w.replace('|', '/') for w in warns) or '-'} |")
            self.p(f"| {env} | none (end-to-end runs: from COMMAND's end) | {len(rr['e2e']['dind-init'])} | "
                   f"{fmt(median([e['exit_after_ready_ms'] for e in rr['e2e']['dind-init']]), 0)} | "
                   f"{','.join(sorted({str(e['rc']) for e in rr['e2e']['dind-init']}))} | | | | |")
        self.p("")

    def share(self, real):
        """The init's own share of the time to ready (SPEC §12), from the observer
        sessions: where the first start's time goes, from the init's exec."""
        cols = [("first_line", "init's first log line"), ("environment", "environment detected"),
                ("cgroups_done", "cgroups prepared (last cgroup line)"),
                ("dockerd_spawned", "dockerd exec'd (`started dockerd`)"),
                ("network_start", "nested-network setup: start"),
                ("network_done", "nested-network setup: end (last line)"),
                ("dockerd_starting_up", "dockerd's `Starting up`"),
                ("api_listen", "dockerd's `API listen on`"), ("first_ping", "first good ping"),
                ("ready_file", "ready file written")]
        self.p("### The init's own share of the time to ready\n",
               "SPEC §12: from the init's start to dockerd's exec, plus from dockerd's "
               "readiness (its first good `/_ping` answer) to the ready file. In the observer "
               "runs above, the init is started through `bash -c 'echo exec-stamp "
               "$EPOCHREALTIME >&2; exec \"$@\"'` (a builtin: no fork), so its start is known "
               "on the clock of its log lines (CLOCK_REALTIME of the machine or sandbox). "
               "dockerd's exec: the init's `started dockerd` line, logged once the exec has "
               "succeeded. The first good ping: the observer's pollers, on the same clock. "
               "The nested-network setup (gVisor only) has no line when it starts (its lines "
               "are logged when it ends); its start shows only with `log.level = \"debug\"` "
               "(`nested networking set up took_ms=...`). Medians, ms from the init's exec:\n",
               "| environment | runs | " + " | ".join(c for _, c in cols) + " |",
               "|---|---:|" + "---:|" * len(cols))
        meds = {}
        for env, rr in real.items():
            bp = [s.get("boot", {}) for s in rr["sessions"]]
            self.p(f"| {env} | {len(bp)} | " + " | ".join(
                fmt(median([b.get(k) for b in bp]), 1) for k, _ in cols) + " |")
            meds[env] = {k: median([b.get(k) for b in bp]) for k in
                         [c for c, _ in cols] + ["share_ms", "share_boot_ms", "share_ready_ms"]}
            meds[env]["all"] = [b.get("share_ms") for b in bp]
            meds[env]["pids"] = sorted({b.get("dockerd_pid") for b in bp} - {None})
        self.p("", "| environment | init's exec → dockerd exec'd (ms) | first good ping → "
               "ready file (ms) | the init's own share (ms), median | runs |",
               "|---|---:|---:|---:|---|")
        for env, m in meds.items():
            self.p(f"| {env} | {fmt(m['share_boot_ms'], 1)} | {fmt(m['share_ready_ms'], 2)} | "
                   f"{fmt(m['share_ms'], 1)} | {', '.join(fmt(x, 1) for x in m['all'])} |")
        self.p("")
        self.share_meds = meds
        m = meds.get("gvisor")
        if m and m["share_ms"] is not None:
            host = meds.get("host", {}).get("share_ms")
            self.target("share-gvisor", f"The init's own share of the time to ready at most "
                        f"{SHARE_TARGET_MS:g} ms in gVisor", m["share_ms"] <= SHARE_TARGET_MS,
                        f"{fmt(m['share_ms'], 1)} ms = exec to dockerd's exec "
                        f"{fmt(m['share_boot_ms'], 1)} ms + first good ping to ready file "
                        f"{fmt(m['share_ready_ms'], 2)} ms (medians)"
                        + (f"; on this kernel {fmt(host, 1)} ms" if host is not None else ""))

    def verify(self, ver):
        self.p("## 5. `verify = \"container\"`: its cost\n",
               "Observer runs as in section 2, but with `[readiness] verify = \"ping\"` or "
               "`\"container\"` (alternating) and dockerd's default bridge (no "
               "`--bridge=none`: the test container runs on it, as SPEC §8 says): from the "
               "first good ping to the ready file. *First start*: a fresh data root, so the "
               "check imports its image (the init's own binary, one file); *later starts*: "
               "the observer SIGKILLs dockerd and the restarted one finds the image in the same "
               "data root. *check took*: the init's `a test container ran` line (`took_ms`). "
               "*Cost* = the container median minus the ping median.\n",
               "| environment | verify | runs | first start: first ping → ready file (ms), "
               "median | min .. max | later starts (ms), median | min .. max | check took, "
               "first / later (ms) |",
               "|---|---|---:|---:|---:|---:|---:|---|")
        self.verify_meds = {}
        for env, r in ver.items():
            m = self.verify_meds[env] = {}
            for mode in ("ping", "container"):
                vs = r[mode]
                first = [v["first_ms"] for v in vs]
                later = [x for v in vs for x in v["restarts"]]
                took_f = [v["took_ms"][0] for v in vs if v.get("took_ms")]
                took_l = [x for v in vs for x in v.get("took_ms", [])[1:]]
                m[mode] = {"first": median(first), "later": median(later),
                           "first_all": first, "later_all": later}
                took = (f"{fmt(median(took_f), 0)} / {fmt(median(took_l), 0)}"
                        if mode == "container" else "-")
                self.p(f"| {env} | {mode} | {len(vs)} | {fmt(median(first), 1)} | "
                       f"{rng(first, 1)} | {fmt(median(later), 1)} | {rng(later, 1)} | {took} |")
        self.p("")
        for env, m in self.verify_meds.items():
            p, c = m.get("ping"), m.get("container")
            if not (p and c) or p["first"] is None or c["first"] is None:
                continue
            m["cost_first"] = c["first"] - p["first"]
            m["cost_later"] = (None if c["later"] is None or p["later"] is None
                               else c["later"] - p["later"])
            self.p(f"Cost in {env}: {fmt(m['cost_first'], 0)} ms at a first start (image "
                   f"imported), {fmt(m['cost_later'], 0)} ms at a later start (image present).")
        self.p("")
        rows = []
        names = ["to first call", "inspect", "import", "create", "start", "wait", "remove"]
        for env, r in ver.items():
            dbg = r.get("debug") or {}
            for i, c in enumerate(dbg.get("checks", [])):
                st = c["steps"]
                rows.append(f"| {env} | {'first start (import)' if i == 0 else 'after a restart'} | "
                            + " | ".join(fmt(st.get(n), 0) for n in names)
                            + f" | {c.get('took_ms')} |")
            if r.get("debug_error"):
                rows.append(f"| {env} | run failed: `{r['debug_error'][:120]}` |" + " |" * 8)
        if rows:
            self.p("Where the check's time goes: one more run per environment with dockerd's "
                   "`--debug`, which logs each API call it serves (`Calling POST "
                   "/containers/create`...); each step runs from the init's call to its next "
                   "one (the last to the init's `a test container ran`), on dockerd's clock "
                   "(*to first call*: from the init's `dockerd answered /_ping; checking that a "
                   "container runs`, on its own). dockerd's debug output makes the run a little "
                   "slower than the ones above.\n",
                   "| environment | check | " + " | ".join(names) + " | took_ms |",
                   "|---|---|" + "---:|" * (len(names) + 1))
            self.p(*rows)
            self.p("")
        for env, r in ver.items():
            runs = [x for v in r["container"] for x in v.get("docker_run_ms") or []]
            errors = [v["docker_run_error"] for v in r["container"] if v.get("docker_run_error")]
            m = self.verify_meds.get(env, {})
            if runs:
                m["docker_run"] = median(runs)
                ratio = ("" if m.get("cost_later") is None else
                         f"; the check's cost at a later start is {m['cost_later'] / m['docker_run']:.2f}x that")
                self.p(f"Peer in {env}: `docker run --rm` of the check's own image on the default "
                       f"bridge (the docker CLI, as a script would check that a container runs), in "
                       f"the same sandbox right after the restarts: median {fmt(m['docker_run'], 0)} ms "
                       f"({len(runs)} runs, {rng(runs, 0)}){ratio}.")
            for e in errors[:1]:
                self.p(f"Peer in {env}: `docker run --rm` failed: `{e[:160]}`.")
        self.p("")
        g = self.verify_meds.get("gvisor", {})
        for key, label in (("cost_first", "first start: image imported"),
                           ("cost_later", "later starts: image present")):
            if "cost_first" in g:
                v = g.get(key)
                self.target(f"verify-{key}", f"`verify = \"container\"` costs at most "
                            f"{VERIFY_TARGET_MS:g} ms (median, gVisor; {label})",
                            None if v is None else v <= VERIFY_TARGET_MS,
                            f"{fmt(v, 0)} ms more than `verify = \"ping\"` from the first good "
                            f"ping to the ready file")

    def versions(self, vr):
        self.p("## 6. Time to ready per Docker version\n",
               f"Roots built by `scripts/docker-roots.sh` (branch `matrix`) under `{vr['base']}"
               "/<suite>/`, each a Debian suite with its own Docker; the run copies the static "
               "binary into its own overlay of the (read-only) root and runs it the image's "
               "way, default config (no init.toml), COMMAND `stat` of the ready file and "
               "`echo READY`. *gvisor*: `runsc --network=none --net-raw do -root <overlay>`; "
               "*host*: `unshare --pid --fork --mount --mount-proc --cgroup --net` (lo up, the "
               "benchmark's leaf cgroups), proc, sys, dev and tmpfs on /run, /tmp and "
               "/var/lib/docker in the overlay, then `chroot`. Times from a `GO` line printed "
               "right before the exec of runsc or chroot (the overlay is ready) to READY on "
               "stdout; the rest from the init's log on the same clock (the ready file: its "
               "mtime in gVisor, the init's `ready` state line, logged right after it, on this "
               "kernel). Versions from the root's dpkg database.\n")
        if vr.get("missing"):
            self.p(f"Not measured: no root for {', '.join(vr['missing'])} (run "
                   f"`bash scripts/docker-roots.sh` from branch `matrix` to build them).\n")
        if not vr.get("roots"):
            return
        self.p("| suite | Docker | containerd | runc | environment | runs | start → READY (ms), "
               "median | min .. max | → init's first line | → dockerd exec'd | → `API listen "
               "on` | → ready file | ready file - `API listen on` (ms) | failures, warnings |",
               "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in vr["roots"]:
            v = r.get("versions", {})
            for env, runs in r.get("runs", {}).items():
                ok = [x for x in runs if "ready_ms" in x]
                errs = sorted({x["error"][:100] for x in runs if "error" in x})
                warns = sorted({w for x in ok for w in x.get("warnings", [])})
                note = "; ".join([f"{len(runs) - len(ok)} failed: {e}" for e in errs[:1]] +
                                 [w.replace("|", "/")[:120] for w in warns[:2]]) or "-"

                def med(k):
                    return median([x.get(k) for x in ok])
                self.p(f"| {r['suite']} | {v.get('docker.io', '?')} | {v.get('containerd', '?')} | "
                       f"{v.get('runc', '?')} | {env} | {len(ok)} | {fmt(med('ready_ms'), 0)} | "
                       f"{rng([x['ready_ms'] for x in ok], 0)} | {fmt(med('first_line_ms'), 0)} | "
                       f"{fmt(med('spawned_ms'), 0)} | {fmt(med('listen_ms'), 0)} | "
                       f"{fmt(med('file_ms'), 0)} | {fmt(med('file_after_listen_ms'), 1)} | "
                       f"{note} |")
        self.p("")

    def nested_build(self, b):
        m = self.R["machine"]
        runs = b.get("runs", {})
        ok = {k: [r for r in v if "error" not in r] for k, v in runs.items()}
        one = next((r for v in ok.values() for r in v), {})
        server = one.get("server_version", "?")
        client = one.get("client_version") or b.get("client", "?")
        self.p("## 8. Nested `docker build` in gVisor: vfs against overlay2 on a tmpfs\n",
               f"dind-init as PID 1 of `runsc --network=none --net-raw do` (**{m['runsc']}**) "
               f"with the real dockerd (**Docker {server}**, `{m['dockerd']}`; docker CLI "
               f"{client}, the legacy builder: `DOCKER_BUILDKIT=0`, as no buildx plugin is "
               "assumed), `--bridge=none`; twice per run, alternating which goes first: "
               "*overlay root*: dockerd's data root (`--data-root`) on the sandbox's root, "
               "gVisor's writable overlay over the machine's `/`, where dockerd can only use "
               "`vfs`; *tmpfs*: the same with `[dockerd] "
               f"data_root_tmpfs = \"{b.get('tmpfs')}\"`, where it uses `overlay2`. *driver*: "
               "`dockerd.storage_driver` in `dind-init status --json`. The COMMAND "
               "(`bench/nested_build.py`, started once ready) imports a busybox tar (`docker "
               "import`: no registry is reachable), then runs `docker build --network=none` of "
               f"the Dockerfile below with a {b.get('context_mib')} MiB context (files of "
               "random bytes). *Build*: from the exec of `docker build` to its exit (CLOCK_MONOTONIC "
               "in the sandbox); *data root*: `du -sk` of the data root after the build, and "
               "after the import alone (the base image).\n",
               "```Dockerfile", b.get("dockerfile", "").rstrip("\n"), "```\n",
               "| data root | driver | runs | build (s), median | min .. max | data root after "
               "the build (MiB), median | after the import alone (MiB) | image size (MiB) | "
               "failures |",
               "|---|---|---:|---:|---:|---:|---:|---:|---|")
        med = {}
        for storage, label in (("overlay-root", "overlay root"), ("tmpfs", "tmpfs")):
            rs, good = runs.get(storage, []), ok.get(storage, [])
            drivers = sorted({str(r.get("storage_driver")) for r in good})
            build = [r["build_ms"] / 1e3 for r in good]
            after = [r["du_kib_after"] / 1024 for r in good if r.get("du_kib_after") is not None]
            before = [r["du_kib_before"] / 1024 for r in good
                      if r.get("du_kib_before") is not None]
            img = [r["image_bytes"] / MIB for r in good if r.get("image_bytes") is not None]
            med[storage] = {"driver": drivers, "build": median(build), "size": median(after),
                            "base": median(before)}
            errs = sorted({r["error"][:100].replace("|", "/") for r in rs if "error" in r})
            note = f"{len(rs) - len(good)}: {errs[0]}" if errs else "-"
            self.p(f"| {label} | {', '.join(drivers) or 'n/a'} | {len(good)} | "
                   f"{fmt(median(build), 1)} | {rng(build, 1)} | {fmt(median(after), 0)} | "
                   f"{fmt(median(before), 0)} | {fmt(median(img), 1)} | {note} |")
        self.p("")
        v, o = med.get("overlay-root", {}), med.get("tmpfs", {})
        if v.get("build") and o.get("build") and v.get("size") and o.get("size"):
            self.p(f"vfs / overlay2 (medians): build time **x{v['build'] / o['build']:.1f}** "
                   f"({fmt(v['build'], 1)} s against {fmt(o['build'], 1)} s), data root "
                   f"**x{v['size'] / o['size']:.1f}** ({fmt(v['size'], 0)} MiB against "
                   f"{fmt(o['size'], 0)} MiB). vfs copies the whole image for each step's "
                   "container and again for each layer it commits, where overlay2 stores only "
                   "what a step changed: the gap grows with the base image (busybox here, "
                   f"{fmt(o.get('base'), 0)} MiB; "
                   "a Debian or Ubuntu base is tens of MiB more) and with the number of "
                   "steps.\n")
        wrong = [f"{s} saw {', '.join(x['driver'])} (expected {want})"
                 for s, x, want in (("overlay root", v, "vfs"), ("tmpfs", o, "overlay2"))
                 if x.get("driver") and x["driver"] != [want]]
        if wrong:
            self.p(f"**Not the drivers this section means to compare:** {'; '.join(wrong)}.\n")
        self.p("What users should do: in gVisor, give dockerd's data root a tmpfs, "
               "`[dockerd] data_root_tmpfs = \"<size>\"` (or `docker run --tmpfs "
               "/var/lib/docker:exec,size=<size>`, or a volume), so that dockerd uses "
               "overlay2 instead of vfs; size it for the images and containers it will hold, "
               "as it counts as the container's memory (README, *Storage*). `dind-init "
               "status` shows the driver, and warns with this fix when it is `vfs`.\n")

    # ---- why, for the missed ones
    def analysis(self):
        R, A = self.R, []
        if self.met("size") is False and "size_analysis" in R:
            sa = R["size_analysis"]
            size = R["pid1"]["sizes"]["dind-init"]["bytes"]
            A.append("### Static binary at most 1.25 MiB\n")
            A.append(f"The stripped binary is {size} bytes, {size - SIZE_TARGET} bytes over 1.25 MiB "
                     f"({(size - SIZE_TARGET) / size * 100:.1f}% to cut). A non-stripped build with the same "
                     f"profile (`bench/bench.py` builds it in target/bench-symbols) shows where the "
                     f"bytes are. Loadable sections (`size -A`, bytes):\n")
            A.append("| section | bytes |")
            A.append("|---|---:|")
            for k, v in sa["sections"].items():
                A.append(f"| {k} | {v} |")
            A.append(f"\nNamed symbols by what they are for (`nm --size-sort -S -C`, "
                     f"{sa['named_total']} bytes in all; first matching rule wins):\n")
            A.append("| part | bytes |")
            A.append("|---|---:|")
            for b, v in sa["buckets"]:
                A.append(f"| {b} | {v} |")
            A.append("\nBy crate:\n")
            A.append("| crate | bytes |")
            A.append("|---|---:|")
            for c, v in sa["crates"]:
                A.append(f"| {c} | {v} |")
            A.append("\nLargest symbols:\n")
            A.append("| bytes | symbol |")
            A.append("|---:|---|")
            for sz, name in sa["symbols"]:
                A.append(f"| {sz} | `{name.replace('|', '/')}` |")
            bk = {b.split(" (")[0]: v for b, v in sa["buckets"]}
            z = sa.get("opt_z_bytes")
            A.append("")
            A.append("What would fix it:\n")
            if z:
                A.append(f"- **`opt-level = \"z\"`** instead of `\"s\"` in `[profile.release]`: "
                         f"built in this run, {z} bytes ({size - z} fewer), "
                         + ("which meets the target with no code change." if z <= SIZE_TARGET else
                            f"not enough alone ({z - SIZE_TARGET} bytes over)."))
            A.append(f"- The panic-backtrace machinery ({bk.get('panic backtraces', 0)} bytes: "
                     f"std's symbolizer, gimli, addr2line, rustc_demangle, miniz_oxide, "
                     f"libunwind) stays even with `panic = \"abort\"`, because std's default "
                     f"panic hook can print a backtrace. Only a nightly build of std removes "
                     f"it (`-Zbuild-std=std,panic_abort -Zbuild-std-features=panic_immediate_abort`; "
                     f"not tried: this machine's nightly has neither rust-src nor the musl target).")
            A.append(f"- Config parsing ({bk.get('config parsing', 0)} bytes: derived "
                     f"`Deserialize` impls and their visitors) and JSON ({bk.get('JSON', 0)} bytes: "
                     f"serde_json for the status and tracing-subscriber's `json` feature): "
                     f"hand-written code for these small fixed formats would be a fraction of that.")
            A.append("")
        if self.met("signal") is False:
            sig = R["pid1"]["signals"]
            b = self.sig_best
            d = sig["dind-init"]
            extra_read = (d.get("syscalls") or {}).get("read", 0) > 1.5
            A.append("### Added cost of forwarding a signal\n")
            A.append(f"dind-init adds {fmt(d['added_us'])} us against {b}'s {fmt(sig[b]['added_us'])} us "
                     f"and spends {fmt(d['cpu_us_per_signal'])} us of CPU per forwarded signal "
                     f"against {b}'s {fmt(sig[b]['cpu_us_per_signal'])} us. Per signal, dind-init "
                     f"makes the system calls {calls(d.get('syscalls'))}; {b} "
                     f"{calls(sig[b].get('syscalls'))}: "
                     f"dind-init wakes from epoll_wait(2), where the signalfd is registered "
                     f"with its other fds (dockerd's two pipes, the notify socket, the inotify "
                     f"watch, the status listener)"
                     + (", reads the signalfd until EAGAIN (a second read per signal)"
                        if extra_read else ", reads the signalfd once")
                     + ", then kill(2)s; the peers block in one call on their signals alone.")
            prof = R.get("signal_profile")
            if prof and "error" not in prof:
                A.append(f"\n`perf record` of a non-stripped build of the same code forwarding "
                         f"signals in the same round robin: {prof['user_pct']}% of its samples in "
                         f"user space; the allocator (dlmalloc, its lock, and Vec growth) "
                         f"{prof['allocator_pct']}%; the kernel's epoll and poll work (epoll_wait, "
                         f"the fds' poll methods, fdget/fput) {prof['poll_set_kernel_pct']}%. "
                         f"Top symbols:\n")
                A.append("| % of samples | symbol |")
                A.append("|---:|---|")
                for pc, name in prof["top"]:
                    A.append(f"| {pc} | `{name.replace('|', '/')}` |")
            A.append("\nWhy it is not met: dind-init is one event loop that serves dockerd's "
                     "pipes, the notify socket, the socket watch, pings and the status socket "
                     "besides signals, so it blocks in epoll_wait(2) and then reads the signalfd: "
                     "one system call more per signal than a peer that blocks on its signals "
                     "alone, and a longer wake-up chain (the signal wakes the signalfd's wait "
                     "queue, whose epoll callback wakes the loop). The loop itself is already "
                     "lean: fds are registered with epoll(7) once and changed only when the set "
                     "changes (`src/sys/poller.rs`), a turn allocates nothing, and a turn that only "
                     "forwarded signals goes straight back to epoll_wait without its bookkeeping "
                     "(the allocator share above). Blocking in one read(2) of the signalfd would "
                     "need every other fd's readiness delivered as a signal too (O_ASYNC with "
                     "F_SETSIG): edge-triggered and coalescing, only partly implemented by gVisor, "
                     "and a timer signal for the deadlines; not worth its risk for the "
                     "difference above. Compare a candidate build side by side with "
                     "`bash bench/run.sh --only signals --also fix=PATH`.\n")
        for env in ("gvisor", "host"):
            if self.met(f"ready-{env}") is False:
                m = self.ready_meds[env]
                le = m["le_all"]
                later_first = sum(1 for x in le if x < 0)
                A.append(f"### Readiness within 2 ms of the first good ping ({env})\n")
                A.append(f"Median {fmt(m['file'], 2)} ms from the first good ping to the ready "
                         f"file (runs: {', '.join(fmt(x, 2) for x in m['fd_all'])}). In "
                         f"{later_first} of {len(le)} runs the poller that connected 20 ms "
                         f"*later* got its 200 first (late minus early, ms: "
                         f"{', '.join(fmt(x, 2) for x in le)}). dockerd (Go's net/http) accepts "
                         f"the connections waiting in its backlog in a burst and starts one "
                         f"goroutine per connection; Go runs the goroutine started last first "
                         f"(`runnext`), so the newest pending request is answered first, and "
                         f"where serving one request is slow (in gVisor every system call is), "
                         f"the others wait milliseconds. "
                         f"dind-init connects its one pending ping the moment the socket appears "
                         f"(inotify); the early poller's first attempt already found the socket "
                         f"in {m['attempts'].count(1)} of {len(m['attempts'])} runs (attempts: "
                         f"{', '.join(str(x) for x in m['attempts'])}), so there dind-init's "
                         f"request was queued before both pollers' and answered after them: the "
                         f"gap measures dockerd's order of service as much as the init. On "
                         f"dockerd's own clock, the ready file was written "
                         f"{fmt(m.get('listen_obs'), 2)} ms after dockerd logged `API listen "
                         f"on` with the pollers pending (runs: "
                         f"{', '.join(fmt(x, 2) for x in m.get('listen_obs_all', []))}), and "
                         f"{fmt(m.get('listen_e2e'), 2)} ms after it in the end-to-end runs, "
                         f"where no other client competes (runs: "
                         f"{', '.join(fmt(x, 2) for x in m.get('listen_e2e_all', []))}).\n")
                A.append("Why: nothing in the init waits on a timer; what costs is the queue "
                         "position of its ping in dockerd's backlog, and gVisor's slow system "
                         "calls in dockerd and in the init. dind-init already accepts dockerd's "
                         "`READY=1` from any of dockerd's threads (gVisor reports the sending "
                         "thread's id) and on it races a second, fresh ping against the pending "
                         "one, the newest in dockerd's queue; what remains is dockerd's order of "
                         "service and the sandbox's file system calls for the ready file.\n")
        if self.met("reap") is False:
            med, best = self.reap_med, self.reap_best
            d = med["dind-init"]
            A.append("### Zombie reaping throughput\n")
            idle_hwm = median([r["hwm_kib"] for r in R["pid1"].get("idle", {}).get("dind-init", [])])
            A.append(f"Backlog drain: dind-init median {fmt(d['drain_ms'], 1)} ms (runs "
                     f"{rng(d['drain_all'])}), {best} {fmt(med[best]['drain_ms'], 1)} ms (runs "
                     f"{rng(med[best]['drain_all'])}); init CPU per orphan {fmt(d['cpu'], 2)} us "
                     f"against {fmt(med[best]['cpu'], 2)} us. Every init reaps with one wait4(2) "
                     f"per orphan; where the two ranges of runs overlap, the difference between "
                     f"the medians is within this shared machine's noise. dind-init acts on each "
                     f"exit as wait4 returns it (`reaper::reap_each`, no list; VmHWM after the "
                     f"backlog {d['hwm']} KiB, against {fmt(idle_hwm, 0)} KiB idle) and matches "
                     f"each pid against COMMAND and dockerd: one system call per orphan, like "
                     f"the peers."
                     + (f" Round by round (all inits one after another in each round), the "
                        f"fastest drain was " + ", ".join(
                            f"{n}'s {self.reap_wins[n]} time{'s' if self.reap_wins[n] != 1 else ''}"
                            for n in self.reap_wins)
                        + f" out of {self.reap_rounds}" + self.reap_verdict()
                        if getattr(self, "reap_rounds", 0) else "")
                     + "\n")
        if self.met("rss") is False:
            A.append("### Peak RSS\n")
            A.append("See the smaps_rollup split above: file-backed pages are the binary's own "
                     "code (smaller binary, see size); anonymous pages are the heap: the log "
                     "tail (`dockerd.log_tail` lines kept) and buffers.\n")
        if self.met("idle") is False:
            A.append("### Idle wake-ups\n")
            A.append("The init woke with nothing due: run `strace -f -tt -p PID` on the idle "
                     "init to see which fd or timeout wakes it.\n")
        if self.met("share-gvisor") is False:
            A.extend(self.share_analysis())
        if self.met("verify-cost_first") is False or self.met("verify-cost_later") is False:
            A.extend(self.verify_analysis())
        if self.met("e2e") is False:
            A.extend(self.e2e_analysis())
        rel = R.get("reliability")
        if rel and any(self.met(k) is False for k in ("abuse-slow", "abuse-burst",
                                                       "abuse-zombies", "fuzz")):
            A.append("### Reliability under abuse\n")
            A.append("See *What these figures show* in section 7: each missed figure there with "
                     "its cause and fix.\n")
        return A

    def share_analysis(self):
        m = self.share_meds["gvisor"]
        ref = self.R.get("spawn_ref", {}).get("gvisor", {})

        def seg(a, b):
            return span([m], a, b)
        A = ["### The init's own share of the time to ready (gVisor)\n"]
        pids = m.get("pids") or []
        before = [p - 2 for p in pids if p >= 2]
        A.append(f"Median {fmt(m['share_ms'], 1)} ms: from the init's exec to its first log line "
                 f"{fmt(m.get('first_line'), 1)} ms (its own exec, config and log set-up), to the "
                 f"environment line {fmt(seg('first_line', 'environment'), 1)} ms more (the status "
                 f"socket, then uname, /proc/self/mountinfo, /proc/self/status and the PATH "
                 f"lookup of dockerd), to the last cgroup line {fmt(seg('environment', 'cgroups_done'), 1)} "
                 f"ms more (a tmpfs, eight cgroup mounts, their directories, rshared: one log line "
                 f"each), to dockerd's exec {fmt(seg('cgroups_done', 'dockerd_spawned'), 1)} ms "
                 f"more; then {fmt(m.get('share_ready_ms'), 2)} ms from the first good ping to the "
                 f"ready file. In this sandbox one fork+exec costs about "
                 f"{fmt(ref.get('true_ms'), 1)} ms (bash running `/bin/true`, median of "
                 f"{ref.get('n', 0)}), and `dind-init --version` from bash "
                 f"{fmt(ref.get('init_version_ms'), 1)} ms: exec alone is most of the first "
                 f"step.")
        if before and min(before) > 0:
            A.append(f"\ndockerd's pid in the sandbox was {', '.join(str(p) for p in pids)}: the "
                     f"init is pid 1, so {min(before)} process(es) were started before dockerd "
                     f"(the nested-network setup's first iptables-legacy helper: `spawn_dockerd` "
                     f"calls `start_network`, which starts it, before `dockerd::spawn`): one "
                     f"whole spawn on the way to dockerd's exec.")
        A.append("\nWhat would fix it, largest first:\n")
        if before and min(before) > 0:
            A.append(f"- Start dockerd first, then the nested-network helpers (readiness already "
                     f"waits for both, and the rules must only be in place before ready): about "
                     f"one spawn, {fmt(ref.get('true_ms'), 0)} ms here, off the critical path.")
        A.append("- dockerd's exec itself: the init already starts it with posix_spawn "
                 "(`clone(CLONE_VM | CLONE_VFORK)`: no copy of its address space) and keeps "
                 "freed memory (dlmalloc) instead of one mmap/munmap per allocation burst "
                 "(README, design notes); what is left of that step is gVisor's exec of "
                 "dockerd's large binary, which the init waits for to know the exec worked.")
        A.append("- The machine: the same steps on this kernel take "
                 f"{fmt(self.share_meds.get('host', {}).get('share_ms'), 1)} ms (host row above); "
                 "in gVisor every fork, exec and file system call costs more, and on a shared "
                 "2-core machine the sandbox's threads wait for a core.\n")
        return A

    def verify_analysis(self):
        A = ["### `verify = \"container\"` in gVisor\n"]
        g = self.verify_meds.get("gvisor", {})
        dbg = (self.R.get("verify", {}).get("gvisor") or {}).get("debug") or {}
        A.append(f"Cost {fmt(g.get('cost_first'), 0)} ms at a first start, "
                 f"{fmt(g.get('cost_later'), 0)} ms at a later one (median, against 300 ms).")
        if g.get("docker_run") and g.get("cost_later") is not None:
            ratio = g["cost_later"] / g["docker_run"]
            A.append(f"A plain `docker run --rm` of the same image in the same sandbox takes "
                     f"{fmt(g['docker_run'], 0)} ms (median, the docker CLI's own start "
                     f"included): the check costs {ratio:.2f}x one container run the way a "
                     f"script would do it"
                     + (", so what it costs is Docker's own container start here." if ratio <= 1.0
                        else ", more than such a run: see the steps above for where."))
        for i, c in enumerate(dbg.get("checks", [])[:2]):
            st = sorted(((v, k) for k, v in c["steps"].items() if v is not None), reverse=True)
            A.append(f"{'First' if i == 0 else 'Later'} check with dockerd's --debug: "
                     + ", ".join(f"{k} {v:.0f} ms" for v, k in st[:4])
                     + f" (took_ms {c.get('took_ms')}).")
        if dbg.get("sandbox_setup_ms"):
            A.append(f"dockerd's own line `sandbox set key processing took ...` (the container's "
                     f"network namespace on the default bridge): "
                     f"{', '.join(f'{x:.0f}' for x in dbg['sandbox_setup_ms'])} ms of the start step.")
        A.append("\nWhere it goes: *start* is containerd's shim, the bridge endpoint and runc's "
                 "create and start, all inside the sandbox (dockerd's and containerd's work, not "
                 "the init's); *wait* returns only once dockerd has handled the exit (task "
                 "delete, shim clean-up, network release), not when `--version` exits; *import* "
                 "unpacks the one-file layer (vfs on the sandbox's overlay). What could bring it "
                 "down: the test container on `--network=none` (no bridge endpoint, though the "
                 "check would then no longer prove the bridge, which is what fails with Docker "
                 "28 on this runsc); or reading the container's exit from an attach stream "
                 "instead of `/wait`, then removing it without waiting for the clean-up. Nothing "
                 "in the init's own steps (*to first call*, *inspect*) is more than a few ms.\n")
        return A

    def e2e_analysis(self):
        A = ["### End-to-end time to ready in gVisor\n"]
        rr = self.R["real"]["gvisor"]
        di, sh = rr["_e2e"]
        ph = [e.get("phases", {}) for e in rr["e2e"]["dind-init"]]

        def med(k):
            return median([p.get(k) for p in ph])
        A.append(f"dind-init {fmt(di, 0)} ms against the shell approach's {fmt(sh, 0)} ms "
                 f"({sh / di:.2f}x; {E2E_FACTOR:g}x needs {fmt(sh / E2E_FACTOR, 0)} ms or less). "
                 f"Of the {fmt(di, 0)} ms (medians): the sandbox's start until the init's first "
                 f"line {fmt(med('init_first_line'), 0)} ms (runsc's, before the init runs); the "
                 f"init's first line to dockerd started {fmt(span(ph, 'init_first_line', 'dockerd_spawned'), 0)} "
                 f"ms; dockerd's own start to `API listen on` "
                 f"{fmt(span(ph, 'dockerd_spawned', 'api_listen'), 0)} ms; then the ready file "
                 f"{fmt(span(ph, 'api_listen', 'ready_file'), 0)} ms later, COMMAND started "
                 f"{fmt(span(ph, 'ready_file', 'command_started'), 0)} ms after that and its READY "
                 f"line {fmt(span(ph, 'command_started', 'ready_line'), 0)} ms later. The shell "
                 f"approach's time is fixed by its `sleep 3` plus its first `docker info`, so the "
                 f"factor rises and falls with how fast dockerd starts on the machine that day; "
                 f"the init's own part is in the section above.\n")
        return A

    def findings(self):
        R, F = self.R, []
        cred = R.get("credentials")
        if cred and "error" not in cred.get("gvisor", {}) and "error" not in cred.get("host", {}):
            h, g = cred["host"], cred["gvisor"]
            F.append(f"- **sd_notify credentials in gVisor.** A datagram sent from a second "
                     f"thread (tid {h['tid']} of process {h['pid']} on this kernel; tid {g['tid']} "
                     f"of process {g['pid']} in gVisor) carries SCM_CREDENTIALS pid "
                     f"{h['cred_pid']} on this kernel and {g['cred_pid']} in gVisor: gVisor "
                     f"reports the {'thread' if g['cred_pid'] == g['tid'] and g['tid'] != g['pid'] else 'process'} id. "
                     f"dockerd sends `READY=1` from one of its threads, so dind-init "
                     f"(`run::Init::on_notify`, src/run/mod.rs) accepts a sender that is dockerd or one of its "
                     f"threads (`/proc/<dockerd>/task/<sender>` exists); "
                     f"tests/dockerd_real.rs checks that dockerd's READY=1 is taken in gVisor.")
        real = R.get("real", {})
        for env, rr in real.items():
            reasons = [r for s in rr["sessions"] for r in s.get("restart_reasons", []) if r]
            wrong = [r for r in reasons if "signal" not in r.lower()]
            if wrong:
                F.append(f"- **Restart reason after a SIGKILL ({env}).** After the benchmark "
                         f"SIGKILLed a dockerd that had been ready, dind-init logged the state "
                         f"`restarting` with the reason \"{wrong[0][:160]}\" ({len(wrong)} of "
                         f"{len(rr['sessions'])} runs). dockerd died of the signal, not of that: "
                         f"the known-failure match (`diagnose.rs`) ran over start-up lines still "
                         f"in the tail. Fix: diagnose only an exit before dockerd was ever ready "
                         f"(or only lines logged after the last ready), and name the signal.")
            ig = [s for s in rr["sessions"] if s["variant"] == "ignores-term"]
            stops = [s.get("log", {}).get("stop", {}) for s in ig]
            warns = [w for x in stops for w in x.get("warnings", [])]
            if ig and warns:
                F.append(f"- **Stop with a container that ignores SIGTERM ({env}).** dockerd "
                         f"20.10 gives each container its own stop timeout (10 s by default) "
                         f"whatever `--shutdown-timeout` says, so dind-init's `stop_timeout` "
                         f"(8 s by default) ran out first and it sent SIGKILL (\"{warns[0]}\"); "
                         f"what the killed dockerd left (the container's processes) then got "
                         f"stage 2's SIGTERM and SIGKILL. The stop still fits in `docker stop`'s "
                         f"10 s. For dockerd to stop such containers itself, run them with "
                         f"`--stop-timeout` below `stop_timeout - 2s`, or raise `stop_timeout`.")
            elif ig:
                F.append(f"- **Stop with `/bin/sleep` as a nested container's PID 1 ({env}).** "
                         f"Here the stop needed no SIGKILL: median "
                         f"{fmt(median([s['shutdown']['ms'] for s in ig]), 0)} ms from SIGTERM to "
                         f"exit, dockerd's `Daemon shutdown complete` after "
                         f"{fmt(median([x.get('daemon_shutdown_complete_ms') for x in stops]), 0)} ms. "
                         f"The container's `sleep` ended on dockerd's SIGTERM although, as PID 1 of "
                         f"its pid namespace with no handler, Linux would have it ignore that "
                         f"signal: the sandbox's kernel apparently does not apply that rule.")
            gaps = [x["dockerd_exited_ms"] - x["daemon_shutdown_complete_ms"]
                    for s in rr["sessions"] for x in [s.get("log", {}).get("stop", {})]
                    if x.get("dockerd_exited_ms") is not None
                    and x.get("daemon_shutdown_complete_ms") is not None]
            if gaps:
                F.append(f"- **dockerd's own exit ({env}).** After it logs `Daemon shutdown "
                         f"complete`, dockerd takes a median {fmt(median(gaps), 0)} ms more to "
                         f"exit (runs {rng(gaps, 0)}; its last line, a second later, is its "
                         f"containerd client failing to reconnect). That time is dockerd's, not "
                         f"the init's, and it is most of a stop without containers.")
            ph = [e.get("phases", {}) for e in rr["e2e"]["dind-init"]]
            boot = span(ph, "init_first_line", "dockerd_spawned")
            net = span(ph, "network_done", "api_listen")
            cmd = span(ph, "ready_file", "command_started")
            if boot is not None:
                F.append(f"- **Start-up in the end-to-end runs ({env}).** From the init's first "
                         f"log line to dockerd started: median {fmt(boot, 0)} ms"
                         + (f"; the nested-network setup's last line came {fmt(net, 0)} ms before "
                            f"dockerd's `API listen on`" + (" (so it did not hold readiness back)"
                                                           if net > 0 else
                                                           " (after it: readiness waited for it)")
                            if net is not None else "")
                         + f"; from the ready file written to COMMAND started: {fmt(cmd, 0)} ms. "
                         f"The rest of the time to ready is the container's start and dockerd's "
                         f"own."
                         + (" COMMAND starts through posix_spawn (`src/sys/spawn.rs`; a fork "
                            "only when it gets a terminal); the step is the ready file's write "
                            "and rename, the spawn and gVisor's exec of COMMAND."
                            if cmd is not None and cmd > 5 else ""))
            pr = [s["ready"]["probe_minus_ping_us"] / 1e3 - s["ready"]["file_minus_ping_us"] / 1e3
                  for s in rr["sessions"]]
            F.append(f"- **probe --wait after the ready file ({env}):** median "
                     f"{fmt(median(pr), 2)} ms (runs {rng(pr, 2)}): the init answers the `wait` "
                     f"right after it renames the ready file; the rest is the probe process "
                     f"reading, exiting, and its parent seeing it exit.")
        return F

    def build(self):
        R, o, m = self.R, self.opts, self.R["machine"]
        head = ["# Benchmarks\n",
                "dind-init against tini, dumb-init and catatonit (Debian packages) as PID 1, and "
                "against the shell approach (`sleep 3`, then `docker info` every 500 ms) with the "
                "real dockerd, on this kernel and in gVisor (SPEC §12, issue 7). Written by "
                "`bench/bench.py` from one run: every figure below comes from that run.\n",
                "## Machine and run\n",
                f"- Date: {m['date']}; dind-init `{m['dind_init']}` at `{m['git']}`",
                f"- CPU: {m['cpu']}, {m['nproc']} cores (`nproc`), {m['mem_gib']} GiB; kernel "
                f"{m['kernel']}; load average at start {' '.join(m['loadavg'])}",
                f"- Peers: tini {m['tini']}, dumb-init {m['dumb-init']}, catatonit {m['catatonit']}; "
                f"{m['dockerd']}; {m['runsc']}; Python {m['python']} (harness)",
                f"- Settings: {o.reps} runs per measure (medians; {o.reap_reps} for reaping), {o.orphans} orphans, "
                f"{o.signals} signals per init (+{o.warmup} warm-up rounds), idle window "
                f"{o.idle_secs:g} s x {o.idle_reps}, "
                f"{getattr(o, 'build_reps', None) or 'n/a'} nested builds per storage"
                f"{'; --quick' if o.quick else ''}; run took "
                f"{R['elapsed_s']} s",
                "- Reproduce (as root): `bash bench/run.sh`. It installs what is missing "
                "(scripts/install-deps.sh, then tini, dumb-init, catatonit), builds the static "
                "binary and the fake dockerd, runs everything and rewrites this file; "
                "`bash bench/run.sh --quick` for a short check, `python3 bench/bench.py --help` "
                "for the knobs (`--only`, `--reps`, `--also LABEL=PATH` to measure a candidate "
                "build side by side in section 1, `--init PATH` to measure another build "
                "throughout). Section 6 measures the roots that `scripts/docker-roots.sh` "
                "keeps under /var/cache/dind-init/roots (it skips, with a note, when there are "
                "none); section 7 is `bench/reliability.py`, which also runs alone; section 8 "
                "(`--only build`) is gVisor only.",
                "- The machine is shared while it runs (2 cores, other builds and tests): hence "
                "medians, alternating runs, and all inits at once, round robin, in the signal "
                "test.\n"]
        s1 = R.get("pid1", {})
        body = []
        if s1:
            self.p("## 1. As PID 1: dind-init against tini, dumb-init and catatonit\n",
                   "Each init runs as PID 1 of `unshare --pid --fork --mount --mount-proc`. "
                   "dind-init supervises `fake-dockerd` (`dockerd.path` points at it), ready at "
                   "once (`--fake-ready-after-ms=0`: READY=1 on NOTIFY_SOCKET and /_ping), with "
                   "`[readiness] interval = \"0s\"` and `[cgroup] mode = \"off\"`; the workload "
                   "is its COMMAND, started once the fake is ready. The peers run the same "
                   "workload as their child.\n")
            if "reap" in s1:
                self.reaping(s1["reap"])
            if "signals" in s1:
                self.signals(s1["signals"])
            if "idle" in s1:
                self.idle(s1["idle"])
            if "sizes" in s1:
                self.sizes(s1["sizes"])
        if R.get("real"):
            self.real(R["real"])
        if R.get("verify"):
            self.verify(R["verify"])
        if R.get("versions"):
            self.versions(R["versions"])
        if R.get("reliability"):
            self.p(*reliability.markdown(R["reliability"], "## 7. Reliability under abuse "
                                         "(`bench/reliability.py`, issue 14)"))
            for t in reliability.targets(R["reliability"]):
                self.target(*t)
        if R.get("build"):
            self.nested_build(R["build"])
        for env, err in R.get("errors", {}).items():
            self.p(f"**{env} could not be measured:** `{err}`\n")
        body = self.L
        T = ["## Targets\n", "| target | result | measured |", "|---|---|---|"]
        for _, text, met, detail in self.targets:
            verdict = "met" if met else ("not measured" if met is None else "**not met**")
            T.append(f"| {text} | {verdict} | {detail} |")
        T.append("")
        A = self.analysis()
        if A:
            A = ["## Missed targets: why, and what would fix them\n"] + A
        F = self.findings()
        if F:
            F = ["## Other findings of this run\n"] + F + [""]
        return "\n".join(head + T + body + A + F) + "\n"


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="few iterations, to check the script (numbers are rough)")
    ap.add_argument("--reps", type=int, help="runs per measure (default 5, quick 1)")
    ap.add_argument("--orphans", type=int, default=20000)
    ap.add_argument("--reap-reps", type=int, help="runs of each reaping measure "
                    "(default 9, quick 1)")
    ap.add_argument("--signals", type=int, help="signals per init (default 200, quick 40)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--idle-secs", type=float, help="idle window (default 10, quick 3)")
    ap.add_argument("--idle-reps", type=int, help="idle windows (default 3, quick 1)")
    ap.add_argument("--only",
                    default="sizes,reap,signals,idle,real,verify,versions,reliability,build",
                    help="what to measure: sizes, reap, signals, idle (section 1), real "
                    "(the real dockerd: sections 2-4), verify (verify = \"container\" "
                    "against \"ping\"), versions (time to ready per Docker version, from "
                    "the roots under --roots), reliability (bench/reliability.py), build "
                    "(a nested `docker build` in gVisor, vfs against overlay2 on a tmpfs)")
    ap.add_argument("--build-reps", type=int, help="nested builds per storage, for `build` "
                    "(default --reps)")
    ap.add_argument("--roots", default=ROOTS_DIR, help="where scripts/docker-roots.sh "
                    "keeps its roots (<suite>/<key>/), for `versions`")
    ap.add_argument("--envs", default="host,gvisor", help="for `real`, `verify`, "
                    "`versions`: host,gvisor (`build` runs only with gvisor)")
    ap.add_argument("--no-analysis", action="store_true",
                    help="skip the profiles of missed targets (they build the binary twice more)")
    ap.add_argument("--analysis", action="store_true",
                    help="make the profiles of missed targets in a --quick run too")
    ap.add_argument("--markdown", help="write the report here (e.g. BENCHMARKS.md)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) for debugging")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                    help="also measure this dind-init binary in section 1 (e.g. a build "
                    "with a candidate fix), under LABEL")
    ap.add_argument("--init", help="benchmark this dind-init binary instead of the musl "
                    "release build")
    ap.add_argument("--report-from", metavar="RESULTS_JSON",
                    help="measure nothing: write the report (--markdown) again from the raw "
                    "results of an earlier run (--json)")
    opts = ap.parse_args()
    if opts.report_from:
        with open(opts.report_from) as f:
            R = json.load(f)
        for k, v in R["opts"].items():
            setattr(opts, k, v)
        ALSO.update({n: "" for n in R["names"] if n != "dind-init" and n not in dict(PEERS)})
        text = Report(R, opts).build()
        if opts.markdown:
            with open(opts.markdown, "w") as f:
                f.write(text)
            log(f"wrote {opts.markdown} from {opts.report_from}")
        else:
            print(text)
        return 0
    global INIT
    if opts.init:
        INIT = os.path.abspath(opts.init)
    q = opts.quick
    opts.reps = opts.reps or (1 if q else 5)
    opts.build_reps = opts.build_reps or opts.reps
    opts.reap_reps = opts.reap_reps or (1 if q else 9)
    opts.signals = opts.signals or (40 if q else 200)
    opts.idle_secs = opts.idle_secs or (3.0 if q else 10.0)
    opts.idle_reps = opts.idle_reps or (1 if q else 3)
    only = opts.only.split(",")
    envs = [e for e in opts.envs.split(",") if e]

    if os.geteuid() != 0:
        sys.exit("bench: needs root (namespaces, runsc, dockerd)")
    for p in (INIT, FAKE):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench: {p} missing: cargo build --release --target x86_64-unknown-linux-musl")
    for spec in opts.also:
        label, _, path = spec.partition("=")
        ALSO[label] = os.path.abspath(path)
    names = (["dind-init"] + list(ALSO)
             + [n for n, argv in PEERS if os.access(argv[0], os.X_OK)])
    if len(names) - len(ALSO) < 4:
        log(f"warning: only {names} found: apt-get install -y tini dumb-init catatonit")

    R = {"machine": machine(), "names": names, "errors": {},
         "opts": {k: getattr(opts, k) for k in ("quick", "reps", "reap_reps", "orphans",
                                                 "signals", "warmup", "idle_secs", "idle_reps",
                                                 "build_reps")}}
    log(f"machine: {R['machine']}")
    tmp = tempfile.mkdtemp(prefix="dind-init-bench-")
    t_begin = time.monotonic()
    try:
        s1 = R["pid1"] = {}
        if "sizes" in only:
            s1["sizes"] = bench_sizes(tmp)
        if "reap" in only:
            log("section 1: reaping")
            s1["reap"] = bench_reaping(tmp, opts, names)
        if "signals" in only:
            log("section 1: signals")
            s1["signals"] = bench_signals(tmp, opts, names)
        if "idle" in only:
            log("section 1: idle")
            s1["idle"] = bench_idle(tmp, opts, names)
        if "real" in only:
            real = R["real"] = {}
            for env in envs:
                log(f"sections 2-4: {env}")
                guarded(R, env, lambda: real.update(bench_real(tmp, opts, [env])), store=False)
            if "gvisor" in envs:
                R["credentials"] = gvisor_credentials()
            R["spawn_ref"] = {env: spawn_reference(env) for env in envs}
        if "verify" in only:
            log("verify = \"container\" against \"ping\"")
            guarded(R, "verify", lambda: bench_verify(tmp, opts, envs))
        if "versions" in only:
            log("time to ready per Docker version")
            guarded(R, "versions", lambda: bench_versions(tmp, opts, envs))
        if "reliability" in only:
            log("reliability under abuse (bench/reliability.py)")
            guarded(R, "reliability", lambda: reliability.run(
                argparse.Namespace(quick=opts.quick, phase_secs=None,
                                   fuzz=200 if opts.quick else 500, orphan_every_ms=20,
                                   init=INIT, fake=FAKE, keep=opts.keep)))
        if "build" in only and "gvisor" in envs:
            log("nested docker build in gVisor: vfs against overlay2 on a tmpfs")
            guarded(R, "build", lambda: bench_build(tmp, opts))
        elif "build" in only:
            log("build: gVisor only, and --envs has no gvisor: skipped")
        R["elapsed_s"] = round(time.monotonic() - t_begin)
        rep = Report(R, opts)
        rep.build()  # verdicts first, to know what to profile
        missed = {t[0] for t in rep.targets if t[2] is False}
        # --quick skips the profiles (two more release builds: minutes) unless --analysis.
        if (opts.analysis or not (opts.no_analysis or opts.quick)) and missed & {"size", "signal"}:
            log("analysis: non-stripped build (and an opt-level z build) for the profiles")
            try:
                R["size_analysis"], sym = size_analysis()
                if "signal" in missed:
                    log("analysis: perf profile of the signal path")
                    R["signal_profile"] = profile_signals(tmp, opts, [n for n in names
                                                                       if n not in ALSO], sym)
            except Exception as e:
                traceback.print_exc()
                R["errors"]["analysis"] = str(e).splitlines()[0][:300]
    finally:
        if opts.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    R["elapsed_s"] = round(time.monotonic() - t_begin)
    rep = Report(R, opts)
    text = rep.build()
    print()
    for _, t, met, detail in rep.targets:
        print(f"TARGET {'MET    ' if met else ('SKIPPED' if met is None else 'MISSED ')} {t}: {detail}")
    if opts.json:
        os.makedirs(os.path.dirname(os.path.abspath(opts.json)), exist_ok=True)
        with open(opts.json, "w") as f:
            json.dump(R, f, indent=1, default=str)
        log(f"wrote {opts.json}")
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write(text)
        log(f"wrote {opts.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
