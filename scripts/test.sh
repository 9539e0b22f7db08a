#!/usr/bin/env bash
# Runs every test of dind-init, as CI does, on a fresh machine of this kind:
# installs what the tests need, then the gates (format, lints, tests, static build).
# Needs root (the integration tests create pid and mount namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s ==\n' "$*"; }

step "install test dependencies"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test --all-targets

step "static release build"
cargo build --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/dind-init
file "$bin"
file "$bin" | grep -q "statically linked" || { echo "FAIL: $bin is not statically linked"; exit 1; }
echo "size: $(stat -c %s "$bin") bytes"
