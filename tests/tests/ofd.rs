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

    let images = c.checkpoint_all(2);
    c.wait_lines(1, is_tick, T);
    c.kill();

    let mut args: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    args.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(args);
    c.wait_connected(2, T);
    c.wait_lines(3, is_tick, T);

    c.checkpoint_all(2);
    c.wait_lines(1, is_tick, T);
    c.kill();

    let ckpt_dir = c.ckpt_dir.display().to_string();
    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &ckpt_dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(2, T);
    c.wait_lines(3, is_tick, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the parent's status"
    );
}
