//! The whole story as an unprivileged user (nobody), coordinator included.

use ckpt_tests::program;
use std::time::Duration;

#[test]
fn counter_story_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("nobody") else {
        return;
    };
    let prog = program("counter");
    let stop = c.stop_file().display().to_string();
    c.launch(&prog, &[&stop]);
    c.story(&|l: &str| l.starts_with("count "), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}
