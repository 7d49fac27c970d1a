//! python3 with a multiprocessing Pool of 4 workers (fork start method:
//! pipes between the parent and every worker, and the pool's locks, POSIX
//! semaphores in shared memory) computing a known sum in many small
//! chunks: the parent hands out chunk k until the stop file exists, each
//! worker returns (k, the sum of i² over its hundred numbers), the parent
//! adds them up and prints its progress. Through launch → checkpoint of
//! all five processes → kill → restart → checkpoint → kill → restart from
//! the manifest → stop: every chunk must come back exactly once and the
//! total must be exactly Σ i² below 100 × chunks (a chunk lost in a pipe
//! hangs the pool; one doubled or a wrong sum fails the verdict). Also as
//! the unprivileged user nobody. Needs the shared-memory support of the
//! SHM work (the semaphores are MAP_SHARED mappings of /dev/shm files).

use ckpt_tests::Computation;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The parent and its four workers.
const PROCESSES: usize = 5;

const SCRIPT: &str = r#"
import multiprocessing as mp, os, sys, time
stop = sys.argv[1]
def work(k):
    time.sleep(0.01)
    return k, sum(i * i for i in range(k * 100, (k + 1) * 100))
def chunks():
    k = 0
    while not os.path.exists(stop):
        yield k
        k += 1
if __name__ == "__main__":
    mp.set_start_method("fork")
    with mp.Pool(4) as pool:
        total = done = 0
        seen = set()
        for k, r in pool.imap(work, chunks()):
            if k in seen:
                print(f"VERDICT FAIL chunk {k} twice", flush=True)
                sys.exit(1)
            seen.add(k)
            total += r
            done += 1
            if done % 25 == 0:
                print(f"progress done={done} total={total}", flush=True)
    want = sum(i * i for i in range(done * 100))
    if total == want and seen == set(range(done)):
        print(f"VERDICT OK chunks={done} total={total}", flush=True)
    else:
        print(f"VERDICT FAIL chunks={done} total={total} want={want}", flush=True)
"#;

/// `progress done=<n> ...` → n.
fn progress(line: &str) -> Option<u64> {
    line.strip_prefix("progress done=")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn wait_progress(c: &mut Computation, n: usize) -> u64 {
    let mut last = 0;
    for _ in 0..n {
        last = progress(&c.wait_for_line(|l| progress(l).is_some(), T)).unwrap();
    }
    last
}

fn python() -> String {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

fn story(mut c: Computation) {
    let stop = c.stop_file().display().to_string();
    let script = c.dir.path().join("pool.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("a+r")
        .arg(&script)
        .status();
    let script = script.display().to_string();
    c.launch_tree(Path::new(&python()), &[&script, &stop], PROCESSES);
    wait_progress(&mut c, 2);
    for round in 1..=2 {
        c.checkpoint_all(PROCESSES);
        let before = wait_progress(&mut c, 2);
        c.kill();
        c.restart_manifest(PROCESSES, T);
        // The restored parent goes on from its image's count.
        let after = wait_progress(&mut c, 1);
        assert!(after <= before + 25, "round {round}: {before} → {after}");
        wait_progress(&mut c, 2);
    }
    c.verdict_ok(T);
}

#[test]
fn a_python_pool_of_four_computes_the_exact_sum_across_restarts() {
    story(Computation::new("python-pool"));
}

#[test]
fn a_python_pool_as_an_unprivileged_user() {
    if let Some(c) = ckpt_tests::as_nobody("python-pool-nobody") {
        story(c);
    }
}
