#!/usr/bin/env python3
"""Run-time overhead of ckpt between checkpoints (issue 3).

Runs bench/overhead.c natively and under `ckpt launch` (writer preloaded,
connected to a coordinator, no checkpoint taken), alternating, N rounds,
and reports per kind of work the median of each and the difference.
The program times itself (CLOCK_MONOTONIC), so start-up is not counted.

With --pthreads, a third run per round has CKPT_PTHREADS=1 (the writer's
threads made by pthread_create and kept between checkpoints, as before
doc/design.md "The writer's threads between checkpoints").

Usage: bench/overhead.py [--rounds 7] [--pthreads]   (build first: scripts/build.sh --release)
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.environ.get("CKPT_BIN", os.path.join(ROOT, "target", "release", "ckpt"))


def run(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (l.split() for l in out.splitlines() if l.strip())}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pthreads", action="store_true", help="also run with CKPT_PTHREADS=1")
    a = ap.parse_args()
    if not os.path.exists(CKPT):
        sys.exit(f"{CKPT} not found: run scripts/build.sh --release first")
    work = tempfile.mkdtemp(prefix="ckpt-overhead-")
    prog = os.path.join(work, "overhead")
    subprocess.run(["cc", "-O2", "-pthread", "-o", prog, os.path.join(ROOT, "bench", "overhead.c")], check=True)
    env = dict(os.environ, CKPT_TMPDIR=os.path.join(work, "tmp"), CKPT_DIR=os.path.join(work, "img"))
    os.makedirs(env["CKPT_DIR"])
    port_file = os.path.join(work, "port")
    coord = subprocess.Popen([CKPT, "coordinator", "--port", "0", "--port-file", port_file, "--quiet"],
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            coord.poll()
            if coord.returncode is not None:
                sys.exit("coordinator did not start")
        env["CKPT_COORD_PORT"] = open(port_file).read().strip()
        native, under, pth = [], [], []
        for _ in range(a.rounds):
            native.append(run([prog], env))
            under.append(run([CKPT, "launch", "--quiet", prog], env))
            if a.pthreads:
                pth.append(run([CKPT, "launch", "--quiet", prog], dict(env, CKPT_PTHREADS="1")))
    finally:
        coord.kill()
        coord.wait()
        shutil.rmtree(work, ignore_errors=True)
    head = f"{'work':>8} {'native ms':>10} {'ckpt ms':>10} {'diff':>8}"
    if a.pthreads:
        head += f" {'pthreads':>10} {'diff':>8}"
    print(f"{head}   (median of {a.rounds}; min native / min ckpt)")
    med = lambda rs, k: statistics.median(r[k] for r in rs) / 1e6
    for k in native[0]:
        n, c = med(native, k), med(under, k)
        line = f"{k:>8} {n:>10.1f} {c:>10.1f} {100 * (c - n) / n:>+7.1f}%"
        if a.pthreads:
            p = med(pth, k)
            line += f" {p:>10.1f} {100 * (p - n) / n:>+7.1f}%"
        print(f"{line}   ({min(r[k] for r in native) / 1e6:.1f} / {min(r[k] for r in under) / 1e6:.1f})")


if __name__ == "__main__":
    main()
