#!/usr/bin/env bash
# Builds the release artifacts of dind-init into one directory (default: dist/):
#
#   dind-init-linux-amd64   static x86_64 binary (x86_64-unknown-linux-musl)
#   dind-init-linux-arm64   static aarch64 binary (aarch64-unknown-linux-musl, linked
#                           by rust-lld: no cross C toolchain, see .cargo/config.toml)
#   SHA256SUMS              `sha256sum` lines for both; check with `sha256sum -c SHA256SUMS`
#
# The names end in Docker's architecture names, so a multi-platform Dockerfile can say
# `COPY dind-init-linux-${TARGETARCH} /usr/local/bin/dind-init`.
#
# Each binary is checked before it is written: statically linked (no ELF interpreter,
# no dynamic section), stripped, of the right machine, within SPEC §12's size cap
# (1.25 MiB), and it runs `--version` (the arm64 one under qemu-user,
# `qemu-aarch64-static`, installed by scripts/install-deps.sh). Any failure stops the
# script with a non-zero exit and nothing half-written in the directory.
#
# Usage: scripts/release.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_CAP=1310720
out="${1:-dist}"

die() { printf 'release: %s\n' "$*" >&2; exit 1; }
log() { printf 'release: %s\n' "$*"; }

version=$(cargo metadata --no-deps --format-version 1 --locked \
  | sed -n 's/.*"name":"dind-init","version":"\([^"]*\)".*/\1/p')
[ -n "$version" ] || die "cannot read the package version"

for tool in file readelf sha256sum qemu-aarch64-static; do
  command -v "$tool" >/dev/null || die "$tool not found (run scripts/install-deps.sh)"
done

# target, artifact suffix, machine as `file` names it (_ for a space), runner
targets=(
  "x86_64-unknown-linux-musl amd64 x86-64 -"
  "aarch64-unknown-linux-musl arm64 ARM_aarch64 qemu-aarch64-static"
)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

names=()
for entry in "${targets[@]}"; do
  read -r target arch machine runner <<<"$entry"
  machine=${machine//_/ }
  log "building $target"
  cargo build --release --locked --target "$target" --bin dind-init
  bin="target/$target/release/dind-init"
  name="dind-init-linux-$arch"

  desc=$(file -b "$bin")
  case "$desc" in
    *"$machine"*) ;;
    *) die "$bin is not a $machine binary: $desc" ;;
  esac
  case "$desc" in
    *"statically linked"*) ;;
    *) die "$bin is not statically linked: $desc" ;;
  esac
  case "$desc" in
    *"not stripped"*) die "$bin is not stripped: $desc" ;;
    *stripped*) ;;
    *) die "$bin: cannot tell whether it is stripped: $desc" ;;
  esac
  if readelf -lW "$bin" | grep -qE '^\s*(INTERP|DYNAMIC)\s'; then
    die "$bin has an ELF interpreter or a dynamic section"
  fi
  size=$(stat -c %s "$bin")
  [ "$size" -le "$SIZE_CAP" ] || die "$bin is $size bytes, over the cap of $SIZE_CAP"

  if [ "$runner" = - ]; then
    said=$("$bin" --version)
  else
    said=$("$runner" "$bin" --version)
  fi
  [ "$said" = "dind-init $version" ] || die "$bin --version said '$said', not 'dind-init $version'"

  cp "$bin" "$stage/$name"
  names+=("$name")
  log "$name: $size bytes, static, stripped; --version: $said"
done

(cd "$stage" && sha256sum "${names[@]}" >SHA256SUMS)

mkdir -p "$out"
for f in "${names[@]}" SHA256SUMS; do
  # Each file appears whole or not at all (rename within one directory).
  cp "$stage/$f" "$out/.$f.tmp"
  mv -f "$out/.$f.tmp" "$out/$f"
done
(cd "$out" && sha256sum -c --quiet SHA256SUMS) || die "SHA256SUMS does not match what was written"
log "dind-init $version: wrote ${names[*]} SHA256SUMS to $out"
cat "$out/SHA256SUMS"
