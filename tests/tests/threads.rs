//! tests/programs/threads.c through the whole story, then its own verdict.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn threads_story() {
    let mut c = Computation::new("threads");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("threads"), &[&stop]);
    c.story(
        &|l: &str| l.starts_with("tick") && !l.contains("stalled"),
        Duration::from_secs(30),
    );
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
