//! 1 GiB of heap with a per-page pattern survives the story.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn heap_1g_story() {
    let mut c = Computation::new("heap1g");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("heap1g"), &[&stop]);
    c.wait_for_line(|l| l.starts_with("ready"), Duration::from_secs(120));
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(180));
    let v = c.verdict(Duration::from_secs(120));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}
