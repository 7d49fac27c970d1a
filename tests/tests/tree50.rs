//! tests/programs/tree50.c: a tree of 50 processes (a root, 7 children,
//! 42 leaves) through launch → checkpoint of all 50 → kill → restart of
//! the 50 images together → checkpoint → kill → restart from the
//! manifest → stop: every process keeps its pid and parent (each checks
//! its own every 100 ms), and at the end every parent reaps its children
//! with the exit codes they chose. Timings: bench/tree50.sh (doc/bench.md),
//! not here.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const N: usize = 50;

fn is_tick(l: &str) -> bool {
    l.starts_with("tick root ")
}

#[test]
fn a_tree_of_fifty_processes_checkpoints_and_restarts() {
    let mut c = Computation::new("tree50");
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("tree50"), &[&stop], N);
    c.wait_lines(2, is_tick, T);

    let images = c.checkpoint_all(N);
    c.wait_lines(1, is_tick, T);
    c.kill();
    let mut args: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    args.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(args);
    c.wait_connected(N, T);
    c.wait_lines(2, is_tick, T);

    c.checkpoint_all(N);
    c.wait_lines(1, is_tick, T);
    c.kill();
    let dir = c.ckpt_dir.display().to_string();
    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(N, T);
    c.wait_lines(2, is_tick, T);

    let v = c.verdict(T);
    assert_eq!(v, "VERDICT OK 49 descendants", "{}", c.diagnostics());
    assert_eq!(c.wait_exit(T), Some(0));
}
