#!/usr/bin/env bash
# Assembles a dind-init test image from what is installed on this machine, with no
# registry: busybox-static for a shell and tools, Docker's binaries (dockerd,
# containerd, containerd-shim-runc-v2, runc, docker-proxy, docker-init, the docker
# client), legacy iptables (as `iptables` and `iptables-legacy`, and the ip6tables,
# -save and -restore ones) and ip, every library `ldd` lists for them, the dind-init
# binary and images/test/init.toml, and `docker import`s it as an image whose
# ENTRYPOINT is ["dind-init", "--"]: the same shape as the Dockerfiles in images/.
#
#   bash images/test/build.sh [--tag NAME] [--dind-init PATH] [--config PATH]
#                             [--tar FILE] [--rootfs DIR] [--no-import]
#
#   --tag NAME         image name (default dind-init-test:local)
#   --dind-init PATH   the binary to bake in (default: the static musl release build,
#                      built with cargo when missing; a dynamic build works too, its
#                      libraries are copied like the others)
#   --config PATH      the init.toml to bake in (default: images/test/init.toml)
#   --tar FILE         also write the root file system as a tar to FILE
#   --rootfs DIR       also keep the root file system as a directory at DIR (it must
#                      not exist yet), e.g. for `runsc do -root DIR` (scripts/main-job.sh)
#   --no-import        do not run `docker import` (needs --tar or --rootfs)
#
# `docker import` talks to the daemon named by DOCKER_HOST (or the docker default).
# Needs: busybox (busybox-static), dockerd and friends (docker.io), tar, ldd.
# Nothing is written outside a temp dir (removed at exit) and the --tar/--rootfs paths.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=dind-init-test:local
init_bin=""
config="$here/init.toml"
tar_out=""
rootfs_out=""
import=1

while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --dind-init) init_bin=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --tar) tar_out=$2; shift 2 ;;
    --rootfs) rootfs_out=$2; shift 2 ;;
    --no-import) import=0; shift ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ "$import" = 0 ] && [ -z "$tar_out" ] && [ -z "$rootfs_out" ]; then
  echo "build.sh: --no-import needs --tar FILE or --rootfs DIR" >&2
  exit 2
fi
if [ -n "$rootfs_out" ] && [ -e "$rootfs_out" ]; then
  echo "build.sh: --rootfs $rootfs_out already exists" >&2
  exit 2
fi

log() { printf 'images/test: %s\n' "$*" >&2; }
die() { printf 'images/test: %s\n' "$*" >&2; exit 1; }

if [ -z "$init_bin" ]; then
  init_bin="$repo/target/x86_64-unknown-linux-musl/release/dind-init"
  if [ ! -x "$init_bin" ]; then
    log "building the static dind-init"
    (cd "$repo" && cargo build --release --target x86_64-unknown-linux-musl >&2)
  fi
fi
[ -x "$init_bin" ] || die "no dind-init binary at $init_bin"
[ -f "$config" ] || die "no config at $config"

if [ -n "$rootfs_out" ]; then
  mkdir -p "$rootfs_out"
  root=$(cd "$rootfs_out" && pwd)
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/dind-init-image.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  root="$work/rootfs"
fi

# Merged /usr, like Debian bookworm: every path below lands under usr/.
mkdir -p "$root"/usr/{bin,sbin,lib,lib64,local/bin} "$root"/{etc/dind-init,proc,sys,dev,run,root,tmp}
mkdir -p "$root"/var/{lib/docker,log,tmp}
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
ln -s ../run "$root/var/run"
chmod 1777 "$root/tmp" "$root/var/tmp"

# Copies a file (following symlinks) to the same path in the root file system.
put() {
  local src=$1 dst=${2:-$1}
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
}

# Copies the libraries (and the loader) that ldd lists for each file given.
put_libs() {
  local lib
  # ldd prints "name => /path (addr)" and "\t/loader (addr)"; with several files it
  # also prints a "file:" header line, not indented, which is skipped.
  for lib in $(ldd "$@" 2>/dev/null \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3} /^[ \t]+\// {print $1}' | sort -u); do
    [ -e "$root$lib" ] || put "$lib"
  done
}

first_of() {
  local p
  for p in "$@"; do
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  done
  return 1
}

bins=()
add_bin() { # name, then candidate paths; the first is also where it goes
  local name=$1 dst=$2 src
  shift
  src=$(first_of "$@" "$(command -v "$name" 2>/dev/null || true)") \
    || die "$name not found: run scripts/install-deps.sh (or apt-get install docker.io)"
  put "$src" "$dst"
  bins+=("$root$dst")
}

# The docker.io client first: it matches dockerd 20.10 (another may be first in PATH).
add_bin docker /usr/bin/docker
add_bin dockerd /usr/sbin/dockerd
add_bin docker-proxy /usr/sbin/docker-proxy
add_bin containerd /usr/bin/containerd
add_bin containerd-shim-runc-v2 /usr/bin/containerd-shim-runc-v2
add_bin runc /usr/sbin/runc /usr/bin/runc
add_bin docker-init /usr/bin/docker-init
add_bin ip /usr/sbin/ip /usr/bin/ip /sbin/ip
add_bin xtables-legacy-multi /usr/sbin/xtables-legacy-multi
# docker:dind's TLS contract (DOCKER_TLS_CERTDIR) makes its certificates with openssl.
add_bin openssl /usr/bin/openssl
# The -legacy names for dind-init in gVisor, and the plain names for dockerd under runc:
# it runs `iptables` by that name and crash-loops on "Iptables not found" without it.
# xtables-legacy-multi picks its tool from the name it is called by.
for t in iptables ip6tables; do
  for suffix in "" -save -restore; do
    ln -s xtables-legacy-multi "$root/usr/sbin/$t-legacy$suffix"
    ln -s xtables-legacy-multi "$root/usr/sbin/$t$suffix"
  done
done
# iptables' extensions are loaded with dlopen, so ldd of the binary misses them.
xt=/usr/lib/x86_64-linux-gnu/xtables
if [ -d "$xt" ]; then
  mkdir -p "$root$xt"
  cp -L "$xt"/*.so "$root$xt/"
  bins+=("$root$xt"/*.so)
fi
put "$init_bin" /usr/local/bin/dind-init
bins+=("$root/usr/local/bin/dind-init")
put "$config" /etc/dind-init/init.toml
put_libs "${bins[@]}"

# busybox-static: a shell and the usual tools, where no real binary is in place.
busybox=$(first_of /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)") \
  || die "busybox not found: apt-get install busybox-static"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' \
  || log "warning: $busybox is not static (install busybox-static)"
put "$busybox" /usr/bin/busybox
for applet in $("$busybox" --list); do
  [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] \
    || ln -s busybox "$root/usr/bin/$applet"
done

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
docker:x:999:
nogroup:x:65534:
GROUP
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"
cat >"$root/usr/lib/os-release" <<'OSRELEASE'
NAME="dind-init test image"
ID=dind-init-test
PRETTY_NAME="dind-init test image (assembled from the build machine's Docker binaries)"
OSRELEASE
ln -s ../usr/lib/os-release "$root/etc/os-release"
: >"$root/etc/hosts"
: >"$root/etc/resolv.conf"

size=$(du -sm "$root" | cut -f1)
log "root file system: ${size} MB ($(find "$root" -type f | wc -l) files)"
if [ -n "$tar_out" ]; then
  tar -C "$root" --numeric-owner -cf "$tar_out" .
  log "wrote $tar_out"
fi
if [ "$import" = 1 ]; then
  changes=(
    --change 'ENTRYPOINT ["/usr/local/bin/dind-init", "--"]'
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'WORKDIR /'
  )
  if [ -n "$tar_out" ]; then
    docker import "${changes[@]}" "$tar_out" "$tag" >/dev/null
  else
    tar -C "$root" --numeric-owner -cf - . | docker import "${changes[@]}" - "$tag" >/dev/null
  fi
  log "imported $tag"
fi
