#!/usr/bin/env bash
# Builds every ckpt artifact into target/<profile>/: ckpt, libckpt_writer.so
# and the static ckpt-restore (built for the musl target, because a static
# glibc executable cannot be built in the same cargo run as a cdylib).
# Usage: scripts/build.sh [--release]   (installs what it needs on Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
args=()
if [ "${1:-}" = "--release" ]; then profile=release; args=(--release); fi

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "build.sh: please install: ${need_apt[*]} (apt-get install ${need_apt[*]})" >&2; exit 1
  fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi

cargo build "${args[@]}" --workspace --exclude ckpt-restore
cargo build "${args[@]}" -p ckpt-restore --target x86_64-unknown-linux-musl
install -m 0755 "target/x86_64-unknown-linux-musl/$profile/ckpt-restore" "target/$profile/ckpt-restore"
echo "built: target/$profile/{ckpt,ckpt-restore,libckpt_writer.so}"
