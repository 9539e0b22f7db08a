#!/usr/bin/env bash
# Installs what the tests and the main job need on a fresh Debian bookworm machine:
# Docker (docker.io), gVisor's runsc from bookworm-backports (0.0~20240729, which
# mounts the devices cgroup), the old runsc 0.0~20221219 unpacked for negative
# tests, busybox-static for nested images, mmdebstrap (scripts/docker-roots.sh builds
# the Docker version matrix's roots with it, at test time), and small tools. Safe to
# run again.
#
# No mirror address is written anywhere: the backports entry is derived from the
# machine's own Debian source file by changing only its Suites line.
set -euo pipefail

OLD_RUNSC_VERSION="0.0~20221219.0-2+b3"
# Where the old runsc is unpacked; tests read it from here (or $DIND_INIT_OLD_RUNSC).
OLD_RUNSC_DIR="${DIND_INIT_OLD_RUNSC_DIR:-/var/cache/dind-init/runsc-old}"

log() { printf 'install-deps: %s\n' "$*"; }

backports_source() {
  local out=/etc/apt/sources.list.d/dind-init-bookworm-backports.sources
  [ -f "$out" ] && return 0
  local src
  src=$(grep -l '^Suites:.*\bbookworm\b' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
  if [ -z "$src" ]; then
    log "no deb822 Debian source in /etc/apt/sources.list.d: cannot derive bookworm-backports"
    return 1
  fi
  # The first stanza that lists the plain bookworm suite, with only Suites changed.
  awk 'BEGIN{RS=""; ORS="\n\n"} /(^|\n)Suites:[^\n]*[[:space:]]bookworm([[:space:]]|$)/ && !done {print; done=1}' "$src" \
    | sed -E 's/^Suites:.*/Suites: bookworm-backports/' >"$out"
  log "added $out (derived from $src)"
  apt_updated=0
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null
}

# Never let a package start a service on this machine (docker.io would start a
# dockerd that adds bridges and iptables rules to the machine's network).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi

need=()
command -v unshare >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)
command -v file >/dev/null || need+=(file)
command -v dockerd >/dev/null || need+=(docker.io)
command -v busybox >/dev/null || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables-legacy >/dev/null || need+=(iptables)
command -v curl >/dev/null || need+=(curl)
# The TLS contract's tests (tests/tls.rs, tests/ci_recipes.rs) make certificates with it.
command -v openssl >/dev/null || need+=(openssl)
# The version matrix (tests/matrix.rs): Debian roots of other suites, the table script.
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  apt_install "${need[@]}"
fi

runsc_version=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)
case "$runsc_version" in
  0.0~2024* | 0.0~2025* | 0.0~2026*) ;;
  *)
    backports_source
    apt_updated=0
    log "installing runsc from bookworm-backports"
    apt_install -t bookworm-backports runsc
    ;;
esac

if [ ! -x "$OLD_RUNSC_DIR/usr/bin/runsc" ]; then
  log "unpacking runsc $OLD_RUNSC_VERSION into $OLD_RUNSC_DIR"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "runsc=$OLD_RUNSC_VERSION" >/dev/null)
  mkdir -p "$OLD_RUNSC_DIR"
  dpkg-deb -x "$tmp"/runsc_*.deb "$OLD_RUNSC_DIR"
  rm -rf "$tmp"
fi

# promtool validates the /metrics output in the tests; only the binary is taken from
# Debian's prometheus package (installing it would add a server and 96 MB).
PROMTOOL_DIR="${DIND_INIT_PROMTOOL_DIR:-/var/cache/dind-init/promtool}"
if [ ! -x "$PROMTOOL_DIR/usr/bin/promtool" ]; then
  log "unpacking promtool (Debian's prometheus package) into $PROMTOOL_DIR"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  mkdir -p "$PROMTOOL_DIR"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$PROMTOOL_DIR/usr/bin"
  cp "$tmp/x/usr/bin/promtool" "$PROMTOOL_DIR/usr/bin/promtool.new"
  mv "$PROMTOOL_DIR/usr/bin/promtool.new" "$PROMTOOL_DIR/usr/bin/promtool"
  rm -rf "$tmp"
fi

# The cgroup v2 VM tests (tests/vm.rs, scripts/vm/harness.sh): qemu's x86 system
# emulator from bookworm-backports (the machine's qemu-utils is the backports build,
# which bookworm's qemu-system-x86 conflicts with) and zstd for the initramfs. The
# kernel is not installed: the harness fetches it with `apt-get download`.
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v zstd >/dev/null; then
  backports_source
  apt_updated=0
  log "installing qemu-system-x86 (bookworm-backports) and zstd"
  apt_install -t bookworm-backports qemu-system-x86 zstd
fi

rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
  || rustup target add x86_64-unknown-linux-musl

# arm64 (tests/arm64.rs, scripts/release.sh): the aarch64 musl target, linked with the
# toolchain's own rust-lld (.cargo/config.toml; no cross C toolchain), and Debian's
# qemu-user-static to run it. qemu is called by name (qemu-aarch64-static), never
# through binfmt_misc: nothing is registered with this machine's kernel (the package
# registers formats only through binfmt-support, a Recommends not installed here).
rustup target list --installed | grep -qx aarch64-unknown-linux-musl \
  || rustup target add aarch64-unknown-linux-musl
command -v qemu-aarch64-static >/dev/null || {
  log "installing qemu-user-static"
  apt_install qemu-user-static
}

# Podman (tests/podman.rs, examples/podman/): Debian's podman 4.3 with conmon. The tests
# give every podman command its own storage, config, mount and cgroup namespaces and no
# network. policy-rc.d above keeps the package from starting any of its units; its
# postinst enables five of them for the next boot (measured: links in
# /etc/systemd/system/*.wants), which are disabled again here, so that a machine that
# boots with systemd never runs a Podman service because of these tests.
command -v podman >/dev/null || {
  log "installing podman"
  apt_install podman conmon
}
for unit in podman.socket podman.service podman-restart.service \
  podman-auto-update.service podman-auto-update.timer; do
  # systemctl edits the links itself when systemd is not running.
  if systemctl --quiet is-enabled "$unit" 2>/dev/null; then
    systemctl --quiet disable "$unit"
    log "disabled $unit (enabled by the podman package)"
  fi
done

log "ok: dockerd $(dockerd --version 2>/dev/null | awk '{print $3}' | tr -d ,), runsc $(dpkg-query -W -f='${Version}' runsc), old runsc in $OLD_RUNSC_DIR"
