#!/usr/bin/env bash
# Runs dind-init's benchmarks (issue 7, SPEC §12) on this machine, as root:
#   bash bench/run.sh            full run; rewrites BENCHMARKS.md
#   bash bench/run.sh --quick    a short check; report in target/bench/
#   bash bench/run.sh ARGS...    any bench/bench.py arguments (see --help); a run with
#                                arguments writes its report to target/bench/, never
#                                over BENCHMARKS.md
# It installs what is missing (Docker, runsc and busybox through
# scripts/install-deps.sh; tini, dumb-init, catatonit, strace, perf), builds the static
# binary and the fake dockerd, then runs bench/bench.py (Python 3, stdlib only), which
# also runs bench/reliability.py (the status socket and reaping under abuse) and, when
# scripts/docker-roots.sh (branch `matrix`) has built them, the Docker version roots
# under /var/cache/dind-init/roots. Raw results go to target/bench/results.json.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench/run.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "needs root (pid/mount/net namespaces, runsc, dockerd)"
  exit 1
fi

bash scripts/install-deps.sh

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need=()
for pkg in tini dumb-init catatonit strace; do
  command -v "$pkg" >/dev/null || need+=("$pkg")
done
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ] || ! command -v perf >/dev/null; then
  apt-get update -qq
fi
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi
# perf only profiles a missed target: go on without it.
command -v perf >/dev/null || apt_install linux-perf || log "linux-perf not installed: no perf profile"

log "building the static binary and the fake dockerd"
cargo build --release --target x86_64-unknown-linux-musl --bin dind-init --bin fake-dockerd

# The system Python (stdlib only); a pyenv shim would be a shell script in the way.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)

mkdir -p target/bench
if [ "$#" -eq 0 ]; then
  report=BENCHMARKS.md
else
  report=target/bench/BENCHMARKS-partial.md
fi
exec "$py" bench/bench.py --markdown "$report" --json target/bench/results.json "$@"
