//! tests/programs/timers.c through the whole story: alarm, the three
//! interval timers and POSIX timers keep their remaining time, interval,
//! ids and values, checked by the program itself.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn timers_story() {
    let mut c = Computation::new("timers");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("timers"), &[&stop]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
