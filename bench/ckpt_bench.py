#!/usr/bin/env python3
"""Checkpoint/restart benchmark on ../shared/bench/memtouch.c.

For each workload (size x kind x threads) it launches memtouch under ckpt,
waits until it ticks, takes a blocking checkpoint (`ckpt command bc`), kills
it, restarts it from the image and waits for its first tick after restart.

Reported per workload:
  ckpt_s     wall time of `ckpt command bc` (returns when the image is synced)
  image_mib  size of the image file
  restart_s  from just before `ckpt restart` runs to the CLOCK_MONOTONIC
             stamp of the program's first tick after restart (memtouch
             writes that stamp itself, so this includes the restore and the
             resumption of the program, not our polling)
  verified   memtouch's own hash check after restart ("ok" ticks)

Side by side with CRIU when a working `criu` is on PATH (`criu check`).

Usage: bench/ckpt_bench.py [--sizes 64,1024] [--kinds random,text,zero]
                           [--threads 1,4] [--no-compress] [--json OUT]
Build first: scripts/build.sh --release. Memory is pre-touched by memtouch
itself (it fills its buffer before it says "ready"), so first-touch costs
of this VM do not land in the checkpoint figure.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.environ.get("CKPT_BIN", os.path.join(ROOT, "target", "release", "ckpt"))
MEMTOUCH_SRC = os.path.join(ROOT, "..", "shared", "bench", "memtouch.c")
if not os.path.exists(MEMTOUCH_SRC):
    MEMTOUCH_SRC = os.path.join(ROOT, "bench", "memtouch.c")


def wait_for(pred, timeout, what):
    """Polls pred() every 5 ms until it returns a truthy value or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.005)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def ticks(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.startswith("tick ")]
    except FileNotFoundError:
        return []


def run_one(work, size, kind, threads, compress):
    d = tempfile.mkdtemp(prefix=f"bench-{size}-{kind}-{threads}-", dir=work)
    env = dict(os.environ)
    env["CKPT_TMPDIR"] = os.path.join(d, "tmp")
    env["CKPT_DIR"] = os.path.join(d, "images")
    os.makedirs(env["CKPT_DIR"])
    port_file = os.path.join(d, "port")
    coord = subprocess.Popen([CKPT, "coordinator", "--port", "0", "--port-file", port_file,
                              "--quiet", "--ckpt-dir", env["CKPT_DIR"]],
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    port = wait_for(lambda: open(port_file).read().strip() if os.path.exists(port_file) and open(port_file).read().strip() else None, 10, "coordinator port")
    env["CKPT_COORD_PORT"] = port
    tickfile = os.path.join(d, "ticks")
    extra = [] if compress else ["--no-compress"]
    prog = subprocess.Popen([CKPT, "launch", "--quiet", *extra, os.path.join(work, "memtouch"),
                             str(size), kind, tickfile, str(threads - 1)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(ticks(tickfile)) >= 2, 120, "memtouch ticks")
        t0 = time.monotonic()
        subprocess.run([CKPT, "command", "bc"], env=env, check=True, stdout=subprocess.DEVNULL)
        ckpt_s = time.monotonic() - t0
        images = [os.path.join(env["CKPT_DIR"], f) for f in os.listdir(env["CKPT_DIR"]) if f.endswith(".ckpt")]
        image = max(images, key=os.path.getsize)
        image_mib = os.path.getsize(image) / 2**20
        prog.send_signal(signal.SIGKILL)
        prog.wait()
        before = len(ticks(tickfile))
        t0_ns = time.monotonic_ns()
        rest = subprocess.Popen([CKPT, "restart", "--quiet", image], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        first = wait_for(lambda: ticks(tickfile)[before] if len(ticks(tickfile)) > before else None, 60,
                         "first tick after restart")
        restart_s = (int(first[3]) - t0_ns) / 1e9
        wait_for(lambda: len(ticks(tickfile)) > before + 3, 30, "ticks after restart")
        verified = all(t[2] == "ok" for t in ticks(tickfile)[before:])
        rest.send_signal(signal.SIGKILL)
        rest.wait()
        return dict(size_mib=size, kind=kind, threads=threads, compress=compress, ckpt_s=round(ckpt_s, 3),
                    image_mib=round(image_mib, 2), restart_s=round(restart_s, 3), verified=verified)
    finally:
        for p in (prog, coord):
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["pkill", "-KILL", "-f", tickfile], stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


def criu_one(work, size, kind, threads):
    """The same workload with CRIU (dump + restore), when criu works here."""
    d = tempfile.mkdtemp(prefix=f"criu-{size}-{kind}-", dir=work)
    tickfile = os.path.join(d, "ticks")
    prog = subprocess.Popen(["setsid", os.path.join(work, "memtouch"), str(size), kind, tickfile, str(threads - 1)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(ticks(tickfile)) >= 2, 120, "memtouch ticks")
        t0 = time.monotonic()
        subprocess.run(["criu", "dump", "-t", str(prog.pid), "-D", d, "--shell-job"], check=True)
        ckpt_s = time.monotonic() - t0
        size_b = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".img"))
        before = len(ticks(tickfile))
        t0_ns = time.monotonic_ns()
        subprocess.Popen(["criu", "restore", "-D", d, "--shell-job", "-d"])
        first = wait_for(lambda: ticks(tickfile)[before] if len(ticks(tickfile)) > before else None, 60, "tick")
        return dict(size_mib=size, kind=kind, threads=threads, tool="criu", ckpt_s=round(ckpt_s, 3),
                    image_mib=round(size_b / 2**20, 2), restart_s=round((int(first[3]) - t0_ns) / 1e9, 3))
    finally:
        subprocess.run(["pkill", "-KILL", "-f", tickfile], stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64,1024")
    ap.add_argument("--kinds", default="random,text,zero")
    ap.add_argument("--threads", default="1,4")
    ap.add_argument("--no-compress", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(CKPT):
        sys.exit(f"{CKPT} not found: run scripts/build.sh --release first")
    work = tempfile.mkdtemp(prefix="ckpt-bench-")
    subprocess.run(["cc", "-O2", "-pthread", "-o", os.path.join(work, "memtouch"), MEMTOUCH_SRC], check=True)
    have_criu = shutil.which("criu") and subprocess.run(["criu", "check"], capture_output=True).returncode == 0
    if not have_criu:
        print("criu: not available or `criu check` fails on this kernel; ckpt figures only", file=sys.stderr)
    rows = []
    print(f"{'size':>6} {'kind':>7} {'thr':>3} {'tool':>5} {'ckpt_s':>8} {'image_MiB':>10} {'restart_s':>10} verified")
    for size in map(int, a.sizes.split(",")):
        for kind in a.kinds.split(","):
            for threads in map(int, a.threads.split(",")):
                r = run_one(work, size, kind, threads, not a.no_compress)
                r["tool"] = "ckpt"
                rows.append(r)
                print(f"{size:>6} {kind:>7} {threads:>3} {'ckpt':>5} {r['ckpt_s']:>8} {r['image_mib']:>10} "
                      f"{r['restart_s']:>10} {r['verified']}", flush=True)
                if have_criu:
                    c = criu_one(work, size, kind, threads)
                    rows.append(c)
                    print(f"{size:>6} {kind:>7} {threads:>3} {'criu':>5} {c['ckpt_s']:>8} {c['image_mib']:>10} "
                          f"{c['restart_s']:>10}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
