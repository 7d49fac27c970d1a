//! tests/programs/vdso_rseq.c through the whole story, then its own verdict.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn vdso_rseq_story() {
    let mut c = Computation::new("vdso_rseq");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("vdso_rseq"), &[&stop]);
    c.story(
        &|l: &str| l.starts_with("tick") && !l.contains("stalled"),
        Duration::from_secs(30),
    );
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
