//! tests/programs/signals.c through the whole story: dispositions,
//! per-thread masks, pending (and queued realtime) signals and
//! sigaltstacks come back, checked by the program itself.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn signals_story() {
    let mut c = Computation::new("signals");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("signals"), &[&stop]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Without any checkpoint the program passes its own checks (the test
/// checks the program, not only ckpt).
#[test]
fn signals_without_checkpoint() {
    let mut c = Computation::new("signals-plain");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("signals"), &[&stop]);
    c.wait_lines(2, |l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}
