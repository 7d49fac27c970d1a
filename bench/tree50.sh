#!/usr/bin/env bash
# Checkpoint and restart times of a tree of 50 processes
# (tests/programs/tree50.c: a root, 7 children, 42 leaves, each asleep in
# a 100 ms loop): launch under a private coordinator, `ckpt command bc`
# ROUNDS times (wall time of the command: every process stopped, captured,
# written, synced and reported), kill the tree, then `ckpt restart` of the
# manifest, timed until all 50 processes are connected to the coordinator
# again (every process rebuilt in a fresh pid namespace, memory back,
# threads resumed, writer reconnected), ROUNDS times.
# Usage: bench/tree50.sh [BIN_DIR] [ROUNDS]   (BIN_DIR: target/release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release}")
rounds=${2:-5}
ckpt=$bin/ckpt
work=$(mktemp -d /tmp/ckpt-bench-tree50.XXXXXX)
trap 'kill -9 -- -$coord 2>/dev/null || true; [ -n "${tree:-}" ] && kill -9 -- -$tree 2>/dev/null; rm -rf "$work"' EXIT
cc -O2 -o "$work/tree50" tests/programs/tree50.c
export CKPT_TMPDIR=$work/run CKPT_COORD_HOST=127.0.0.1
mkdir -p "$work/run" "$work/img"; chmod 700 "$work/run"
setsid "$ckpt" coordinator --quiet --port 0 --port-file "$work/port" </dev/null >/dev/null 2>&1 &
coord=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
export CKPT_COORD_PORT=$(cat "$work/port")
count() { { "$ckpt" command s --json 2>/dev/null || true; } | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["processes"])' 2>/dev/null || echo 0; }
wait_n() { local d=$((SECONDS + 60)); while [ "$(count)" != "$1" ]; do [ $SECONDS -lt $d ] || { echo "timeout waiting for $1 processes (have $(count))" >&2; return 1; }; sleep 0.01; done; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

setsid "$ckpt" launch --quiet --ckpt-dir "$work/img" "$work/tree50" "$work/stop" >/dev/null 2>&1 &
tree=$!
wait_n 50
echo "tree of 50 processes, $(nproc) CPUs, $(basename "$bin") build"
for r in $(seq "$rounds"); do
  t=$(date +%s%N); "$ckpt" command bc >/dev/null; echo "checkpoint $r: $(ms "$t") ms"
done
du -sh "$work/img"/ckpt_tree50_*.ckpt | awk '{s=$1} END {print "images: 50, one of", s}'
du -ch "$work/img"/ckpt_tree50_*.ckpt | tail -1 | awk '{print "all images:", $1}'
for r in $(seq "$rounds"); do
  kill -9 -- -"$tree" 2>/dev/null || true
  wait_n 0
  t=$(date +%s%N)
  setsid "$ckpt" restart --quiet --ckpt-dir "$work/img" >/dev/null 2>"$work/restart.err" &
  tree=$!
  wait_n 50 || { cat "$work/restart.err" >&2; exit 1; }
  echo "restart $r: $(ms "$t") ms (until all 50 reconnected)"
done
