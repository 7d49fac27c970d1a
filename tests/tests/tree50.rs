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
    c.tree_story(N, T, |c, step| {
        let ticks = if step.is_restart() { 2 } else { 1 };
        c.wait_lines(ticks, is_tick, T);
    });
    let v = c.verdict_ok(T);
    assert_eq!(v, "VERDICT OK 49 descendants", "{}", c.diagnostics());
}
