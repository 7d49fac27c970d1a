//! tests/programs/fifoshare.c: a parent and its child holding a FIFO
//! and a pipe opened before the fork (one open file description each),
//! in turns seeing the O_NONBLOCK the other set or cleared with
//! fcntl(F_SETFL) and flipping it, with a record through the FIFO every
//! round, through launch → checkpoint of both → kill → restart of the
//! images → checkpoint → kill → restart from the manifest → verdict: the
//! FIFO description comes back as one for both processes (a flag one
//! sets is seen by the other), refilled once (no record lost or
//! doubled); so does each end of the pipe.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn is_tick(l: &str) -> bool {
    l.starts_with("tick ")
}

fn story(c: &mut Computation) {
    let stop = c.stop_file().display().to_string();
    let fifo = c.dir.path().join("shared.fifo").display().to_string();
    c.launch_tree(&program("fifoshare"), &[&fifo, &stop], 2);
    c.wait_lines(2, is_tick, T);
    c.tree_story(2, T, |c, step| {
        let ticks = if step.is_restart() { 3 } else { 1 };
        c.wait_lines(ticks, is_tick, T);
    });
    c.verdict_ok(T);
}

#[test]
fn a_fifo_opened_before_a_fork_stays_one_description() {
    story(&mut Computation::new("fifo-shared"));
}

#[test]
fn a_fifo_opened_before_a_fork_stays_one_description_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("fifo-shared-nobody") else {
        return;
    };
    story(&mut c);
}
