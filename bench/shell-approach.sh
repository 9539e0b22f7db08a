#!/bin/sh
# The shell approach seen in the field, as the baseline of bench/bench.py section 2:
# start dockerd in the background, `sleep 3`, then `docker info` every 500 ms until it
# succeeds; print READY. In gVisor it first mounts a tmpfs on /sys/fs/cgroup and every
# controller of /proc/cgroups (dockerd refuses to start without the devices cgroup).
# It runs as PID 1 of its own namespaces or sandbox; every path is under DIR.
#
# usage: shell-approach.sh DIR gvisor|host
set -u
D=$1
MODE=$2
if [ "$MODE" = gvisor ]; then
    mount -t tmpfs cgroup /sys/fs/cgroup
    for c in $(awk 'NR > 1 && $4 == 1 { print $1 }' /proc/cgroups); do
        mkdir -p "/sys/fs/cgroup/$c"
        mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || true
    done
fi
dockerd --data-root="$D/data" --exec-root="$D/exec" --pidfile="$D/docker.pid" \
    -H "unix://$D/docker.sock" --iptables=false --bridge=none \
    >"$D/dockerd.log" 2>&1 &
DOCKERD=$!
sleep 3
until docker -H "unix://$D/docker.sock" info >/dev/null 2>&1; do
    sleep 0.5
done
echo READY
kill -TERM "$DOCKERD"
wait "$DOCKERD"
