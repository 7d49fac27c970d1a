//! tests/programs/ofd.c (a parent and its child writing in turns to
//! files they share through fds opened before the fork, one O_APPEND,
//! moving a shared offset with lseek, and each with a file it opened
//! itself after the fork) through launch → checkpoint of both → kill →
//! restart of both images → checkpoint → kill → restart from the
//! manifest → verdict: the shared descriptions come back as one (an
//! lseek by one process is seen by the other; the records of both
//! follow each other in the file, none overwritten), the separate ones
//! stay separate; an eventfd both hold is one counter again.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn is_tick(l: &str) -> bool {
    l.starts_with("tick ")
}

#[test]
fn shared_open_file_descriptions_stay_shared() {
    let mut c = Computation::new("ofd");
    story(&mut c);
}

/// The same as an unprivileged user: kcmp between the user's own
/// processes needs no privilege (and the restart makes a user namespace).
#[test]
fn shared_open_file_descriptions_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("ofd-nobody") else {
        return;
    };
    story(&mut c);
}

fn story(c: &mut Computation) {
    let stop = c.stop_file();
    let dir = stop.parent().expect("the test's directory").to_path_buf();
    let (dir, stop) = (dir.display().to_string(), stop.display().to_string());
    c.launch_tree(&program("ofd"), &[&dir, &stop], 2);
    c.wait_lines(2, is_tick, T);
    c.tree_story(2, T, |c, step| {
        let ticks = if step.is_restart() { 3 } else { 1 };
        c.wait_lines(ticks, is_tick, T);
    });
    c.verdict_ok(T);
}
