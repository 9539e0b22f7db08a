#!/usr/bin/env python3
"""Workloads run as the child of the init under test (section 1 of bench/bench.py).

Each mode talks to the driver through a FIFO (`--out`), never through inherited file
descriptors (an init may close them), and takes its timestamps with CLOCK_MONOTONIC,
which the driver shares (no time namespace is used).

  reap   --fake PATH --count N --out FIFO --go FIFO [--sync]
         Say `before`, wait for a byte on the `--go` FIFO; run `PATH --fake-orphans=N`,
         which makes N zombies re-parented to PID 1 and exits; say `made` {t0, t1}
         (start, all made); with --sync wait for a byte again (the driver has kept the
         init stopped with SIGSTOP while the orphans were made, and now continues it)
         and watch the machine's task count in /proc/loadavg until the backlog is
         nearly gone; then watch PID 1's children (/proc/1/task/*/children lists
         zombies until they are reaped) until only those present before are left;
         say `done` {t2}. Then
         wait for a last byte, so that the driver can read the init's peak RSS while
         the init still runs.
  cred
         Send a datagram from a second thread (alive until it is read) to a
         SO_PASSCRED socket and print {pid, tid, cred_pid}: the pid that
         SCM_CREDENTIALS reports for it (Linux: the process; compare gVisor).
  signal --out FIFO
         Block SIGUSR1 and wait for it with sigwaitinfo(2); for each one write the
         CLOCK_MONOTONIC time in ns, one line each. SIGTERM ends it.

Stdlib only.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def pid1_children():
    """The pids PID 1 of this namespace has as children, zombies included."""
    out = set()
    for tid in os.listdir("/proc/1/task"):
        with open(f"/proc/1/task/{tid}/children", "rb") as f:
            out.update(int(p) for p in f.read().split())
    return out


def nr_tasks():
    """The machine's number of tasks, zombies included (/proc/loadavg, 4th field)."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def reap(args):
    out = open(args.out, "w", buffering=1)
    go = os.open(args.go, os.O_RDWR)  # never blocks on open, never sees EOF

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def wait_go():
        os.read(go, 1)

    before = pid1_children()
    say({"phase": "before", "pid": os.getpid(), "children": len(before)})
    wait_go()
    t0 = time.monotonic_ns()
    rc = subprocess.run([args.fake, f"--fake-orphans={args.count}"]).returncode
    t1 = time.monotonic_ns()
    tasks_made = nr_tasks()
    say({"phase": "made", "t0": t0, "t1": t1, "fake_rc": rc})
    deadline = time.monotonic_ns() + 120 * 10**9
    if args.sync:
        wait_go()
        # Reading PID 1's children takes the tasklist lock that reaping needs, for a
        # time that grows with the backlog: watch the machine's task count instead
        # (/proc/loadavg, lock-free; zombies count until reaped) until the backlog is
        # nearly gone, then confirm with the children list.
        goal = tasks_made - args.count + 100
        last_check = time.monotonic_ns()
        while nr_tasks() > goal and time.monotonic_ns() < deadline:
            if time.monotonic_ns() - last_check > 50 * 10**6:  # others may be forking
                if not pid1_children() - before:
                    break
                last_check = time.monotonic_ns()
            time.sleep(0.0002)
    while True:
        left = pid1_children() - before
        if not left or time.monotonic_ns() > deadline:
            break
        time.sleep(0.0002)
    t2 = time.monotonic_ns()
    say({"phase": "done", "t2": t2, "left": len(left)})
    wait_go()


def wait_signals(args):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    fd = os.open(args.out, os.O_WRONLY)
    os.write(fd, f"ready {os.getpid()}\n".encode())
    while True:
        info = signal.sigwaitinfo({signal.SIGUSR1, signal.SIGTERM})
        now = time.monotonic_ns()
        if info.si_signo == signal.SIGTERM:
            return
        os.write(fd, f"{now}\n".encode())


def cred():
    import socket
    import struct
    import tempfile
    import threading
    d = tempfile.mkdtemp()
    path = os.path.join(d, "notify.sock")
    r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    r.bind(path)
    sender = {}
    received = threading.Event()

    def send():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"READY=1", path)
        sender["tid"] = threading.get_native_id()
        received.wait(10)  # alive while the message is read, like a dockerd thread
    t = threading.Thread(target=send)
    t.start()
    _msg, anc, _flags, _addr = r.recvmsg(64, socket.CMSG_SPACE(12))
    received.set()
    t.join()
    cred_pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            cred_pid = struct.unpack("iii", data[:12])[0]
    os.unlink(path)
    os.rmdir(d)
    print(json.dumps({"pid": os.getpid(), "tid": sender["tid"], "cred_pid": cred_pid}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("reap")
    r.add_argument("--fake", required=True)
    r.add_argument("--count", type=int, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--go", required=True)
    r.add_argument("--sync", action="store_true")
    s = sub.add_parser("signal")
    s.add_argument("--out", required=True)
    sub.add_parser("cred")
    args = p.parse_args()
    if args.mode == "reap":
        reap(args)
    elif args.mode == "cred":
        cred()
    else:
        wait_signals(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
