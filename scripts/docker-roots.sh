#!/usr/bin/env bash
# Builds (or finds in the cache) a root file system per Debian suite with that suite's
# Docker, for the version-matrix tests (tests/matrix.rs) and anyone who wants to try
# dind-init with a newer Docker than the machine's own:
#
#   suite     Docker   containerd  runc
#   bookworm  20.10    1.6         1.1
#   trixie    26.1     1.7         1.1
#   sid       28.5     2.1         1.3    (whatever sid has on the day of the build)
#
#   bash scripts/docker-roots.sh [--rebuild] [SUITE...]     (default: bookworm trixie sid)
#
# Prints one line per suite, `SUITE ROOT`, ROOT being a directory to use read-only (as
# an overlay's lower layer, or `runsc do -root`, which puts its own overlay on top).
# Each root holds docker.io (dockerd, containerd, runc, docker-proxy, docker-init), the
# docker client (docker-cli where the suite splits it out) and buildx where the suite
# has it, iptables (plain `iptables` names and the -legacy ones), iproute2 and
# busybox-static (a shell for scripts and the busybox of nested images). It holds no
# dind-init: tests put the binary under test into their own overlay, so the cache never
# goes stale with it.
#
# Cache: /var/cache/dind-init/roots/<suite>/<key> ($DIND_INIT_ROOTS overrides the
# parent), <key> a hash of everything that decides the contents (suite, package list,
# mmdebstrap options, RECIPE below), so a change of the package list builds a new root.
# A root is built in a temp directory beside it and renamed into place only when
# complete: an interrupted build is never taken for a cache hit. Concurrent callers
# wait for one another on a lock per suite. Roots of older keys are removed after a
# successful build. `--rebuild` builds again although the cache has it (sid moves).
#
# The mirror is read at run time from the machine's own deb822 source file
# (/etc/apt/sources.list.d/*.sources, the `URIs:` line of its Debian entry) and is
# written nowhere. Needs root and mmdebstrap (scripts/install-deps.sh installs it).
# Measured (ENVIRONMENT.md): about 20-30 s and 435 MB per root.
set -euo pipefail

# Bump when the recipe changes in a way the package list does not show.
RECIPE=1
ROOTS=${DIND_INIT_ROOTS:-/var/cache/dind-init/roots}

log() { printf 'docker-roots: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

rebuild=0
suites=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rebuild) rebuild=1; shift ;;
    -h | --help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option: $1" ;;
    *) suites+=("$1"); shift ;;
  esac
done
[ "${#suites[@]}" -gt 0 ] || suites=(bookworm trixie sid)

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap's root mode, and the cache under /var/cache)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found: run scripts/install-deps.sh (apt-get install mmdebstrap)"

# The packages of a suite's root.
packages() {
  local common="docker.io,containerd,runc,tini,iptables,iproute2,busybox-static"
  case "$1" in
    # docker.io 20.10 still carries the client; no buildx package in bookworm.
    bookworm) echo "$common" ;;
    # The client is its own package and only a Recommends of docker.io.
    trixie) echo "$common,docker-cli,docker-buildx" ;;
    # As trixie; without systemd-standalone-sysusers docker.io pulls in all of systemd.
    sid) echo "$common,docker-cli,docker-buildx,systemd-standalone-sysusers" ;;
    *) return 1 ;;
  esac
}

# mmdebstrap's options other than the package list (part of the key).
mm_options=(
  --variant=essential
  --mode=root
  --format=directory
  # sid's Release file may have expired on a mirror that lags behind.
  --aptopt='Acquire::Check-Valid-Until "false"'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
)

# The Debian mirror of this machine, from its deb822 source file; never written down.
mirror() {
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # The first stanza whose Suites name a plain Debian release (not -security).
    uri=$(awk 'BEGIN{RS=""} /(^|\n)Suites:[^\n]*[[:space:]](bookworm|trixie|sid|stable|testing|unstable)([[:space:]]|$)/ {
            if (match($0, /(^|\n)URIs:[[:space:]]*[^[:space:]\n]+/)) {
              s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[[:space:]]*/, "", s); print s; exit
            }
          }' "$file")
    if [ -n "$uri" ]; then
      echo "$uri"
      return 0
    fi
  done
  return 1
}

build() { # suite key dir
  local suite=$1 key=$2 dir=$3 uri tmp started
  uri=$(mirror) || die "no Debian entry with a URIs: line in /etc/apt/sources.list.d/*.sources"
  tmp="$dir/.tmp-$key-$$"
  # Left by an interrupted build (the lock says no other build is running).
  rm -rf "$dir"/.tmp-* "$dir"/.old-*
  started=$(date +%s.%N)
  log "building $suite (key $key) with mmdebstrap"
  # Everything but the mirror is in the key; mmdebstrap's own output goes to stderr.
  if ! mmdebstrap "${mm_options[@]}" --include="$(packages "$suite")" \
    "$suite" "$tmp" "deb $uri $suite main" >&2; then
    rm -rf "$tmp"
    die "mmdebstrap failed for $suite"
  fi
  # Fail here, not in a test, when a recipe no longer gives what the tests need.
  local want
  for want in usr/sbin/dockerd usr/bin/docker usr/bin/containerd usr/sbin/runc \
    usr/sbin/iptables usr/sbin/iptables-legacy usr/sbin/ip usr/bin/busybox; do
    if [ ! -e "$tmp/$want" ] && [ ! -L "$tmp/$want" ]; then
      rm -rf "$tmp"
      die "$suite: the root has no /$want"
    fi
  done
  printf '%s\n' "$key" >"$tmp/.dind-init-root"
  sync -f "$tmp"
  mv -T "$tmp" "$dir/$key"
  log "built $suite in $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}') s ($(du -sm "$dir/$key" | cut -f1) MB)"
  # Older keys of this suite are of no use any more.
  local old
  for old in "$dir"/*; do
    [ "$old" = "$dir/$key" ] || [ ! -e "$old/.dind-init-root" ] || rm -rf "$old"
  done
}

for suite in "${suites[@]}"; do
  pkgs=$(packages "$suite") || die "unknown suite $suite (bookworm, trixie or sid)"
  key=$(printf '%s\n' "recipe=$RECIPE" "suite=$suite" "packages=$pkgs" "${mm_options[@]}" \
    | sha256sum | cut -c1-16)
  dir="$ROOTS/$suite"
  mkdir -p "$dir"
  (
    flock 9
    if [ "$rebuild" = 1 ] || [ ! -f "$dir/$key/.dind-init-root" ]; then
      if [ "$rebuild" = 1 ] && [ -d "$dir/$key" ]; then
        mv -T "$dir/$key" "$dir/.old-$key-$$"
        rm -rf "$dir/.old-$key-$$"
      fi
      build "$suite" "$key" "$dir"
    else
      log "$suite: cached ($dir/$key)"
    fi
  ) 9>"$dir/.lock"
  printf '%s %s\n' "$suite" "$dir/$key"
done
