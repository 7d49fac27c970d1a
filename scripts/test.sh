#!/usr/bin/env bash
# Runs everything CI runs: installs what is missing (when root), builds
# every artifact, runs the whole test suite, then fuzzes for a bounded time.
# Usage: scripts/test.sh   (FUZZ_SECONDS=N to fuzz longer; 0 to skip)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v musl-gcc >/dev/null || need_apt+=(musl-tools)
command -v tmux >/dev/null || need_apt+=(tmux)
command -v gdb >/dev/null || need_apt+=(gdb)
{ command -v setpriv >/dev/null && command -v script >/dev/null; } || need_apt+=(util-linux)
# process-tree tests: python_pool (python3 multiprocessing), make_build
# (make -j2), spawn (a cc -static child needs libc.a from libc6-dev)
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null || need_apt+=(python3)
command -v make >/dev/null || need_apt+=(make)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need_apt+=(libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "test.sh: missing ${need_apt[*]} (not root: not installing; some tests may skip)" >&2
  fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi

bash scripts/build.sh
# The integration tests use target/debug/{ckpt,ckpt-restore,libckpt_writer.so}.
# ckpt-restore's own tests run on the musl target: a host-target build of the
# package would replace target/debug/ckpt-restore with a dynamic executable.
cargo test --workspace --exclude ckpt-restore
cargo test -p ckpt-restore --target x86_64-unknown-linux-musl

fuzz_seconds=${FUZZ_SECONDS:-20}
if [ -x fuzz/run.sh ] || [ -f fuzz/run.sh ]; then
  if [ "$fuzz_seconds" != 0 ] && rustup toolchain list 2>/dev/null | grep -q nightly; then
    FUZZ_SECONDS=$fuzz_seconds bash fuzz/run.sh
  else
    echo "test.sh: fuzzing skipped (FUZZ_SECONDS=0 or no nightly toolchain)"
  fi
fi
echo "test.sh: all tests passed"
