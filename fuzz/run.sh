#!/usr/bin/env bash
# Bounded fuzz run: each target for FUZZ_SECONDS (default 60) seconds.
# Usage: fuzz/run.sh [TARGET...]   (default: every target)
# Needs the nightly toolchain and cargo-fuzz; installs cargo-fuzz from
# crates.io when missing. Crash inputs land in fuzz/artifacts/<target>/;
# copy them to fuzz/regressions/<target>/ and they are replayed by
# `cargo test -p ckpt-format` (format/tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-60}
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(cargo +nightly fuzz list); fi
# Build first: a target that does not compile is not a crash.
if [ $# -eq 0 ]; then build=(""); else build=("${targets[@]}"); fi
for t in "${build[@]}"; do
  # shellcheck disable=SC2086 # an empty $t builds every target
  if ! cargo +nightly fuzz build $t >build.log 2>&1; then
    tail -n 40 build.log
    echo "fuzz: BUILD FAILED (log in fuzz/build.log)"
    exit 2
  fi
done
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # Seed every corpus with the golden images.
  cp -n ../spec/golden/*.ckpt "corpus/$t/" 2>/dev/null || true
  echo "fuzz: $t for ${secs}s"
  mkdir -p logs
  # -timeout: an input that takes longer than 10 s counts as a hang.
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        -max_len=1048576 -timeout=10 -print_final_stats=1 >"logs/$t.log" 2>&1; then
    # The final line "#N DONE cov: C ft: F corp: ..." and the exec stats.
    grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
      "logs/$t.log" | sed "s/^/fuzz: $t: /"
  else
    tail -n 40 "logs/$t.log"
    echo "fuzz: $t FOUND A CRASH OR HANG (input in fuzz/artifacts/$t, log in fuzz/logs/$t.log)"
    status=1
  fi
done
exit $status
