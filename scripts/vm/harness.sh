#!/usr/bin/env bash
# A real cgroup v2 kernel for the tests (tests/vm.rs): Debian's cloud kernel booted
# with qemu's software emulation (TCG), `cgroup_no_v1=all`, and an initramfs that holds
# the test image's root file system (images/test/build.sh: the machine's Docker 20.10,
# busybox, iptables-legacy), runsc, util-linux's unshare and the kernel modules dockerd
# needs. The machine's own kernel keeps a hybrid v1 layout, so v2 needs a VM; its
# /dev/kvm is kvm_pvm, which cannot boot a stock kernel, hence TCG (ENVIRONMENT.md).
#
#   bash scripts/vm/harness.sh build --dind-init BIN
#       Builds (or finds) the cached base: the kernel and base.cpio.zst (root + modules +
#       /init) under $DIND_INIT_VM_CACHE (default /var/cache/dind-init/vm), keyed by
#       everything that goes into it (kernel package and version, the Docker, runsc,
#       busybox, util-linux and iptables package versions, these scripts,
#       images/test/build.sh), built in a temp dir and renamed into place, under a
#       lock. Prints the base directory. BIN only satisfies build.sh: the base holds no
#       dind-init.
#   bash scripts/vm/harness.sh run MODE --dind-init BIN --console FILE [--timeout SECS]
#       Boots the base with a second initramfs archive appended that holds BIN (as
#       /usr/local/bin/dind-init, with any library the base lacks), the guest scripts
#       (scripts/vm/guest) and MODE, under `timeout`. The VM's serial console is written
#       to FILE; results come back as `@@vm ...` lines on it (guest/check, guest/stage2).
#       Exit status: qemu's, or 124 when the timeout killed it.
#
# MODE is one of pid1-vm, subreaper, pid1-cgroupns, child-cgroupns, gvisor,
# busy-cgroupns (see guest/stage2). Needs root (mknod, chown in the archive),
# qemu-system-x86 (Debian bookworm-backports), apt-get (the kernel is fetched with
# `apt-get download` and unpacked with `dpkg-deb -x`, never installed), zstd, busybox,
# and what images/test/build.sh needs. scripts/install-deps.sh installs all of it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${DIND_INIT_VM_CACHE:-/var/cache/dind-init/vm}

# What dockerd, its bridge and iptables rules, and the nested containers need; their
# dependencies are added from each module's own `depends=`.
# (The ip6tables ones are for Docker 27 and later, which turn ip6tables on by default.)
MODULES=(overlay veth bridge br_netfilter nf_nat nf_conntrack iptable_nat iptable_filter
  ip_tables x_tables xt_MASQUERADE xt_addrtype xt_conntrack xt_nat xt_tcpudp xt_comment
  xt_mark xt_multiport ipt_REJECT nf_reject_ipv4 ip6_tables ip6table_filter ip6table_nat
  ip6t_REJECT nf_reject_ipv6)
# Packages whose files end up in the base: a new version rebuilds it.
PACKAGES=(docker.io containerd runc tini busybox-static runsc util-linux iptables iproute2 libc6)

log() { printf 'vm-harness: %s\n' "$*" >&2; }
die() { printf 'vm-harness: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

# The kernel package apt would install for linux-image-cloud-amd64, and its version.
kernel_package() {
  local pkg version
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || die "apt-cache knows no linux-image-cloud-amd64: run apt-get update"
  version=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
  [ -n "$version" ] || die "apt-cache has no version of $pkg"
  printf '%s %s\n' "$pkg" "$version"
}

# The kernel .deb, downloaded once into the cache.
kernel_deb() {
  local pkg=$1 version=$2 dir="$cache/kernel" deb tmp
  deb="$dir/${pkg}_${version}.deb"
  if [ ! -s "$deb" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.download.XXXXXX")
    chmod 755 "$tmp"
    log "downloading $pkg $version (apt-get download)"
    (cd "$tmp" && apt-get download -qq "$pkg=$version" >"$tmp/log" 2>&1) \
      || { cat "$tmp/log" >&2; rm -rf "$tmp"; die "apt-get download $pkg=$version failed"; }
    mv -f "$tmp"/*.deb "$deb"
    rm -rf "$tmp"
  fi
  printf '%s\n' "$deb"
}

# The cache key: every input of the base, hashed.
base_key() {
  local pkg=$1 version=$2
  {
    printf 'kernel %s %s\n' "$pkg" "$version"
    printf 'modules %s\n' "${MODULES[*]}"
    dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}" 2>&1 || true
    cat "$0" "$here/guest/init" "$repo/images/test/build.sh"
  } | sha256sum | cut -c1-16
}

# The .ko of module $1 under $2 (the unpacked lib/modules/VERSION), as a relative path.
module_path() {
  local name=$1 dir=$2 alt
  alt=${name//_/-}
  (cd "$dir" && find kernel \( -name "$name.ko" -o -name "$alt.ko" \) -print -quit)
}

# Module names in load order (dependencies first), for the names given.
module_order() {
  local dir=$1
  shift
  local -A seen=()
  local order=()
  visit() {
    local name=$1 path deps dep
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    path=$(module_path "$name" "$dir")
    if [ -z "$path" ]; then
      # Built into this kernel (modules.builtin), or not offered at all.
      grep -q "/$name.ko\$" "$dir/modules.builtin" 2>/dev/null \
        || log "module $name: not in this kernel, skipped"
      return 0
    fi
    deps=$(tr '\0' '\n' <"$dir/$path" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do visit "$dep"; done
    order+=("$path")
  }
  local m
  for m in "$@"; do visit "$m"; done
  printf '%s\n' "${order[@]}"
}

build_base() {
  local bin=$1
  read -r pkg version < <(kernel_package)
  local key dir
  key=$(base_key "$pkg" "$version")
  dir="$cache/base-$key"
  if [ -f "$dir/base.cpio.zst" ]; then
    printf '%s\n' "$dir"
    return 0
  fi
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ -f "$dir/base.cpio.zst" ]; then # built by another run while this one waited
    exec 9>&-
    printf '%s\n' "$dir"
    return 0
  fi
  local started=$SECONDS deb work root kdir kver
  deb=$(kernel_deb "$pkg" "$version")
  work=$(mktemp -d "$cache/.build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  log "building the base $key in $work"
  dpkg-deb -x "$deb" "$work/kernel"
  kver=$(ls "$work/kernel/lib/modules")
  kdir="$work/kernel/lib/modules/$kver"

  root="$work/root"
  bash "$repo/images/test/build.sh" --dind-init "$bin" --rootfs "$root" --no-import >&2
  # The binary under test comes with each run.
  rm -f "$root/usr/local/bin/dind-init"
  # dockerd outside gVisor needs a plain `iptables` on its PATH (the test image has
  # only the -legacy names, which dind-init puts first on PATH in gVisor alone).
  local t s
  for t in iptables ip6tables; do
    for s in "" -save -restore; do
      [ -e "$root/usr/sbin/$t$s" ] || ln -s xtables-legacy-multi "$root/usr/sbin/$t$s"
    done
  done
  # runsc (static) for the gvisor mode; util-linux's unshare (busybox's has no --cgroup).
  cp -L /usr/bin/runsc "$root/usr/bin/runsc"
  rm -f "$root/usr/bin/unshare"
  cp -L /usr/bin/unshare "$root/usr/bin/unshare"
  local lib
  for lib in $(ldd /usr/bin/unshare | awk '$2 == "=>" && $3 ~ /^\// {print $3} /^[ \t]+\// {print $1}'); do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done

  # The image the nested containers run: busybox and its applets.
  local nested="$work/nested"
  mkdir -p "$nested/bin" "$nested/proc" "$nested/sys" "$nested/dev" "$nested/tmp" "$nested/etc"
  cp -L "$(command -v busybox)" "$nested/bin/busybox"
  local applet
  for applet in sh cat echo sleep ls grep head wc id true; do ln -s busybox "$nested/bin/$applet"; done
  mkdir -p "$root/vm"
  tar -C "$nested" --numeric-owner -cf "$root/vm/nested.tar" .

  # Modules and their load order.
  mkdir -p "$root/lib/modules/$kver"
  module_order "$kdir" "${MODULES[@]}" >"$root/vm/modules"
  local ko
  while read -r ko; do
    mkdir -p "$root/lib/modules/$kver/$(dirname "$ko")"
    cp "$kdir/$ko" "$root/lib/modules/$kver/$ko"
  done <"$root/vm/modules"
  sed -i "s|^|$kver/|" "$root/vm/modules"
  log "$(wc -l <"$root/vm/modules") modules"

  install -m 0755 "$here/guest/init" "$root/init"
  mkdir -p "$root/dev"
  [ -e "$root/dev/console" ] || mknod -m 600 "$root/dev/console" c 5 1
  [ -e "$root/dev/null" ] || mknod -m 666 "$root/dev/null" c 1 3

  mkdir -p "$work/out"
  cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"
  (cd "$root" && find . -print | sort) >"$work/out/files"
  (cd "$root" && find . -print | busybox cpio -o -H newc 2>/dev/null) \
    | zstd -q -T0 -3 >"$work/out/base.cpio.zst"
  # The run's archive is appended uncompressed: the kernel takes it only at an offset
  # that is a multiple of 4 (zeros between archives are skipped).
  truncate -s %512 "$work/out/base.cpio.zst"
  {
    printf 'kernel %s %s (%s)\n' "$pkg" "$version" "$kver"
    dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}" 2>&1 || true
    printf 'built in %ss\n' "$((SECONDS - started))"
  } >"$work/out/inputs"
  mv -T "$work/out" "$dir"
  rm -rf "$work"
  trap - EXIT
  exec 9>&-
  log "base $key built in $((SECONDS - started))s: $(du -h "$dir/base.cpio.zst" | cut -f1)"
  # Keep the three newest bases (other checkouts may use another), drop the rest.
  local old
  for old in $(ls -dt "$cache"/base-* | tail -n +4); do
    rm -rf "$old"
  done
  printf '%s\n' "$dir"
}

# The per-run archive: the binary under test (and libraries the base lacks), the guest
# scripts and the mode.
run_archive() {
  local base=$1 bin=$2 mode=$3 out=$4 stage
  stage=$(mktemp -d "${TMPDIR:-/tmp}/dind-init-vm-run.XXXXXX")
  mkdir -p "$stage/usr/local/bin" "$stage/vm"
  cp -L "$bin" "$stage/usr/local/bin/dind-init"
  local lib dir
  for lib in $(ldd "$bin" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} /^[ \t]+\// {print $1}'); do
    # Into the real directory (/lib is a link to usr/lib in the base, as on the machine):
    # a `lib` directory in this archive would replace that link when the kernel unpacks it.
    dir=$(realpath "$(dirname "$lib")")
    grep -qxF ".$lib" "$base/files" && continue
    grep -qxF ".$dir/$(basename "$lib")" "$base/files" && continue
    mkdir -p "$stage$dir"
    cp -L "$lib" "$stage$dir/"
  done
  install -m 0755 "$here/guest/stage2" "$here/guest/check" "$stage/vm/"
  printf '%s\n' "$mode" >"$stage/vm/mode"
  (cd "$stage" && find . -mindepth 1 -print | busybox cpio -o -H newc 2>/dev/null) >"$out"
  rm -rf "$stage"
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
bin="" console="" mode="" timeout=300
case "$cmd" in
  run) mode=${1:-}; [ -n "$mode" ] || usage; shift ;;
  build) ;;
  *) usage ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --dind-init) bin=$2; shift 2 ;;
    --console) console=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$bin" ] && [ -x "$bin" ] || die "--dind-init BIN: an executable dind-init is needed"
[ "$(id -u)" = 0 ] || die "run as root"

case "$cmd" in
  build)
    build_base "$bin"
    ;;
  run)
    case "$mode" in
      pid1-vm | subreaper | pid1-cgroupns | child-cgroupns | gvisor | busy-cgroupns) ;;
      *) die "unknown mode $mode" ;;
    esac
    [ -n "$console" ] || die "--console FILE is needed"
    command -v qemu-system-x86_64 >/dev/null \
      || die "qemu-system-x86_64 not found: run scripts/install-deps.sh"
    base=$(build_base "$bin")
    work=$(mktemp -d "${TMPDIR:-/tmp}/dind-init-vm.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    run_archive "$base" "$bin" "$mode" "$work/run.cpio"
    cat "$base/base.cpio.zst" "$work/run.cpio" >"$work/initrd"
    log "booting mode $mode (TCG, timeout ${timeout}s), console: $console"
    set +e
    timeout --kill-after=10 "$timeout" qemu-system-x86_64 \
      -machine q35 -accel tcg -cpu max -m 2048 -smp 2 \
      -nographic -no-reboot -nic none \
      -kernel "$base/vmlinuz" -initrd "$work/initrd" \
      -append "console=ttyS0 panic=1 cgroup_no_v1=all" \
      </dev/null >"$console" 2>&1
    code=$?
    set -e
    exit "$code"
    ;;
esac
