//! tests/programs/fifotree.c: a producer and a slow consumer of one
//! computation joined by a named FIFO (mkfifo) that holds records at
//! every checkpoint, in two shapes: the root produces for its child
//! (`parent`), or two children of the root, each opening the FIFO by its
//! path, produce and consume (`siblings`). Each goes through launch →
//! checkpoint of every process → kill → restart of the images →
//! checkpoint → kill → restart from the manifest → stop → verdict: the
//! consumer checks every record's sequence number and value and the
//! root compares its count and sum with what the producer sent, so
//! records lost or doubled across a restart fail it. Every process that
//! holds the FIFO stores its bytes in its image; one copy must go back.

use ckpt_tests::{consumer, program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn story(c: &mut Computation, shape: &str) {
    let stop = c.stop_file().display().to_string();
    let fifo = c.dir.path().join("records.fifo").display().to_string();
    let n = if shape == "siblings" { 3 } else { 2 };
    c.launch_tree(&program("fifotree"), &[&stop, &fifo, shape], n);
    let (_, queued) = consumer::reads(c, 3, T);
    assert!(queued > 0, "records are waiting in the FIFO: {queued}");

    c.tree_story(n, T, |c, step| consumer::goes_on(c, step, "FIFO", T));
    c.verdict_ok(T);
}

#[test]
fn a_fifo_from_parent_to_child_loses_and_doubles_nothing() {
    story(&mut Computation::new("fifo-parent"), "parent");
}

#[test]
fn a_fifo_between_two_children_loses_and_doubles_nothing() {
    story(&mut Computation::new("fifo-siblings"), "siblings");
}

#[test]
fn a_fifo_between_two_children_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("fifo-nobody") else {
        return;
    };
    story(&mut c, "siblings");
}
