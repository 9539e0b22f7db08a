#!/usr/bin/env bash
# The main job (the README's first command): dind-init as PID 1 of a gVisor sandbox
# with a real dockerd, the way an image with `ENTRYPOINT ["dind-init", "--"]` runs.
#
# On a fresh Debian bookworm machine, as root, it
#  1. installs what is missing (scripts/install-deps.sh: docker.io, runsc from
#     bookworm-backports, busybox-static; no mirror address is written anywhere);
#  2. builds the static binary (cargo, target x86_64-unknown-linux-musl);
#  3. assembles the test image's root file system from the machine's own Docker
#     binaries (images/test/build.sh --rootfs), with the static dind-init and
#     images/test/init.toml (plus `wait_for_ready = false`, so that COMMAND starts at
#     once and does the waiting itself with `dind-init probe --wait`);
#  4. runs `runsc --network=none --net-raw do -root <that root> dind-init -- COMMAND`.
#     dind-init prepares cgroups, starts and supervises dockerd; COMMAND waits with
#     `dind-init probe --wait 60s`, `docker import`s a busybox image made inside the
#     sandbox (no registry is reachable), runs it as a nested container, prints
#     `dind-init status`, and then idles;
#  5. prints the time to ready, then stops the sandbox the way `docker stop` would:
#     SIGTERM to runsc, which passes it on to the sandbox's PID 1 (dind-init). The init
#     signals COMMAND (which traps it and exits 0) and dockerd, waits for both, and
#     exits with COMMAND's code: 0.
#
# Why `runsc do` and not a host dockerd with runsc registered as a runtime: it needs no
# daemon on the machine, so nothing is started that could touch the machine's network
# or state (`--network=none`: the sandbox has only its own loopback), the sandbox's
# root is the assembled image root under an in-memory overlay (nothing inside writes to
# the machine; no image import of ~200 MB into a host daemon), runsc passes SIGTERM to
# the sandbox's PID 1 and returns its exit code, and it is the fastest way in (measured:
# dockerd ready about 0.6 s after dind-init starts). The host-dockerd route (`docker
# run --runtime=runsc` of the imported image, `docker stop`, HEALTHCHECK) is exercised
# by tests/e2e.rs.
#
# Safe to run again: everything lives in a temp dir that is removed at exit, and the
# sandbox (the only process started) is stopped by its pid if the script is
# interrupted. Needs root (runsc) and Rust with rustup (for the musl target).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }
die() { printf 'main-job: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: runsc needs it"
command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"

step "install what is missing"
bash scripts/install-deps.sh

step "build the static dind-init"
cargo build --quiet --release --target x86_64-unknown-linux-musl
bin=$PWD/target/x86_64-unknown-linux-musl/release/dind-init
file "$bin" | grep -Eq "statically linked|static-pie linked" || die "$bin is not statically linked"
echo "$bin: $(stat -c %s "$bin") bytes, statically linked, $("$bin" --version)"

work=$(mktemp -d "${TMPDIR:-/tmp}/dind-init-main-job.XXXXXX")
runsc_pid=""
cleanup() {
  if [ -n "$runsc_pid" ] && kill -0 "$runsc_pid" 2>/dev/null; then
    kill -TERM "$runsc_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$runsc_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$runsc_pid" 2>/dev/null || true
    wait "$runsc_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "assemble the image's root file system (images/test/build.sh)"
{
  cat images/test/init.toml
  printf '\n[command]\n# COMMAND starts at once and waits with `dind-init probe --wait` itself.\nwait_for_ready = false\n'
} >"$work/init.toml"
bash images/test/build.sh --dind-init "$bin" --config "$work/init.toml" \
  --rootfs "$work/rootfs" --no-import

# COMMAND, run by dind-init inside the sandbox (busybox sh).
cat >"$work/rootfs/main-job-command.sh" <<'COMMAND'
set -u
echo "waiting: dind-init probe --wait 60s"
if ! dind-init probe --wait 60s; then
  dind-init status
  exit 1
fi
echo "ready: dind-init probe exit 0"
# A nested image: busybox from this image, imported (no registry is reachable).
rm -rf /tmp/nested && mkdir -p /tmp/nested/bin /tmp/nested/tmp
cp /bin/busybox /tmp/nested/bin/
for applet in sh echo cat uname; do ln -s busybox "/tmp/nested/bin/$applet"; done
tar -C /tmp/nested -cf - . | docker import - busybox:nested >/dev/null || exit 2
echo "nested: $(docker run --rm busybox:nested sh -c 'echo "hello from a nested container on $(uname -r)"')" || exit 3
docker version --format 'nested dockerd: {{.Server.Version}}, API {{.Server.APIVersion}}'
docker info --format 'storage driver: {{.Driver}}, cgroup v{{.CgroupVersion}}, cgroup driver {{.CgroupDriver}}'
echo
echo "dind-init status:"
dind-init status | sed '/^dockerd log/,$d'
trap 'echo "COMMAND: SIGTERM received, exiting 0"; exit 0' TERM
echo "main-job: done"
while :; do sleep 1 & wait $!; done
COMMAND

step "run dind-init as PID 1 in gVisor (runsc --network=none --net-raw do)"
out=$work/command.out
log=$work/init.log
t0=$(date +%s%N)
runsc --network=none --net-raw do -root "$work/rootfs" -cwd / \
  /usr/local/bin/dind-init -- /bin/sh /main-job-command.sh >"$out" 2>"$log" &
runsc_pid=$!

show_failure() {
  echo "--- COMMAND's output ---"; cat "$out"
  echo "--- dind-init's log (last 40 lines) ---"; tail -n 40 "$log"
}
deadline=$((SECONDS + 180))
until grep -q '^main-job: done$' "$out"; do
  if ! kill -0 "$runsc_pid" 2>/dev/null; then
    wait "$runsc_pid" && code=0 || code=$?
    runsc_pid=""
    show_failure
    die "the sandbox exited early with code $code"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    show_failure
    die "COMMAND did not finish within 180 s"
  fi
  sleep 0.1
done
grep -v '^main-job: done$' "$out"

# Times from the init's own log (RFC 3339 timestamps of its first line and of the
# moment it saw dockerd ready) and from this script's clock (sandbox start included).
stamp_ns() { date -d "$1" +%s%N; }
started=$(grep -m1 ' dind_init: dind-init starting' "$log" | cut -d' ' -f1)
ready=$(grep -m1 'dockerd state state="ready"' "$log" | cut -d' ' -f1)
[ -n "$started" ] && [ -n "$ready" ] || { show_failure; die "no start or ready line in the init's log"; }
init_ms=$((($(stamp_ns "$ready") - $(stamp_ns "$started")) / 1000000))
total_ms=$((($(stamp_ns "$ready") - t0) / 1000000))

step "stop: SIGTERM to the sandbox (runsc passes it to dind-init, PID 1)"
t1=$(date +%s%N)
kill -TERM "$runsc_pid"
wait "$runsc_pid" && code=0 || code=$?
runsc_pid=""
stop_ms=$((($(date +%s%N) - t1) / 1000000))
grep -v '^main-job: done$' "$out" | sed -n '/SIGTERM received/p'
echo "dind-init's own log (dockerd's lines and each cgroup directory created left out):"
grep ' dind_init' "$log" | grep -v ' dind_init::prepare::cgroup::apply: created directory' | sed 's/^/  /'
[ "$code" = 0 ] || { show_failure; die "dind-init exited $code after SIGTERM, not 0"; }

step "result"
echo "time to ready: ${init_ms} ms after dind-init started (${total_ms} ms after runsc was started, sandbox boot included)"
echo "stop: exit code 0, ${stop_ms} ms after SIGTERM"
echo "main job: ok"
