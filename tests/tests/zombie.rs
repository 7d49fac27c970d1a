//! tests/programs/zombie.c (a parent with two children that have exited,
//! one with status 7, one killed by SIGTERM, and that it has not reaped)
//! through launch → checkpoint → kill → restart → checkpoint → kill →
//! restart → verdict: after each restart the children are zombies again
//! with their pids, and the parent's waitpid() reaps them with their
//! statuses.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn is_tick(l: &str) -> bool {
    l.starts_with("tick ")
}

/// The children's pids, from `zombies pid1=<pid> pid2=<pid>`.
fn zombie_pids(line: &str) -> Vec<i32> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('=').and_then(|(_, v)| v.parse().ok()))
        .collect()
}

/// Whether `pid` is a zombie (seen from this pid namespace: the launch's).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn unreaped_children_are_zombies_again_after_a_restart() {
    let mut c = Computation::new("zombie");
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("zombie"), &[&stop], 1);
    let line = c.wait_for_line(|l| l.starts_with("zombies "), T);
    let pids = zombie_pids(&line);
    assert_eq!(pids.len(), 2, "{line}");
    assert!(pids.iter().all(|&p| is_zombie(p)), "{line}: not zombies");
    c.wait_lines(2, is_tick, T);
    c.wait_connected(1, T);

    let first = c.checkpoint();
    let inspect = ckpt_tests::inspect(&first, &[]);
    assert!(inspect.contains("ZOMBIES"), "{inspect}");
    c.wait_lines(1, is_tick, T);
    c.kill();

    c.restart(&first);
    c.wait_lines(2, is_tick, T);
    let second = c.checkpoint();
    c.wait_lines(1, is_tick, T);
    c.kill();

    c.restart(&second);
    c.wait_lines(2, is_tick, T);
    c.verdict_ok(T);
}
