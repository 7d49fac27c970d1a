//! tests/programs/orphan.c (a process whose parent exited: its
//! grandparent reaped the parent, and it was reparented, either to init
//! or to the launched process, a child subreaper) through launch →
//! checkpoint of both → kill → restart of both images → checkpoint →
//! kill → restart from the manifest → verdict: the orphan keeps its pid
//! and runs on; its getppid() is what it was (1 when init had it: the
//! restart's namespace init has it now; the subreaper's pid when the
//! subreaper is of the computation), and a subreaper is still one after
//! a restart (a new orphan goes to it, and it reaps the old one).

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// (pid, ppid) from `tick orphan pid=<pid> ppid=<ppid> n=<n>`.
fn orphan_tick(l: &str) -> Option<(i32, i32)> {
    let rest = l.strip_prefix("tick orphan ")?;
    let mut w = rest.split_whitespace();
    let mut field = |name: &str| -> Option<i32> { w.next()?.strip_prefix(name)?.parse().ok() };
    Some((field("pid=")?, field("ppid=")?))
}

fn parent_pid(l: &str) -> Option<i32> {
    l.strip_prefix("tick parent pid=")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits for two more ticks of each; returns the orphan's (pid, ppid)
/// and the parent's pid.
fn both_tick(c: &mut Computation) -> ((i32, i32), i32) {
    let (mut o, mut p) = (Vec::new(), Vec::new());
    while o.len() < 2 || p.len() < 2 {
        let l = c.wait_for_line(|l| orphan_tick(l).is_some() || parent_pid(l).is_some(), T);
        if let Some(t) = orphan_tick(&l) {
            o.push(t);
        }
        if let Some(t) = parent_pid(&l) {
            p.push(t);
        }
    }
    (o[1], p[1])
}

#[test]
fn an_orphan_of_init_keeps_running_with_getppid_1() {
    let mut c = Computation::new("orphan-init");
    story(&mut c, "init");
}

#[test]
fn an_orphan_of_a_subreaper_keeps_its_parent() {
    let mut c = Computation::new("orphan-sub");
    story(&mut c, "subreaper");
}

#[test]
fn an_orphan_of_a_subreaper_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("orphan-nobody") else {
        return;
    };
    story(&mut c, "subreaper");
}

fn story(c: &mut Computation, mode: &str) {
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("orphan"), &[mode, &stop], 2);
    c.wait_for_line(|l| l.starts_with("orphan "), T);
    c.wait_connected(2, T);
    let ((orphan, ppid), parent) = both_tick(c);
    if mode == "subreaper" {
        assert_eq!(ppid, parent, "reparented to the subreaper");
    } else {
        assert_ne!(ppid, parent);
    }
    // After a restart the namespace's init is the reaper of a process
    // whose parent is not in the computation: getppid() is 1 (as it was,
    // unless a subreaper outside the computation had it).
    let want = if mode == "subreaper" { parent } else { 1 };

    c.tree_story(2, T, |c, step| {
        let ((o, pp), p) = both_tick(c);
        if step.is_restart() {
            assert_eq!((o, pp, p), (orphan, want, parent), "after {step}");
        }
    });
    c.verdict_ok(T);
}
