//! tests/programs/procstate.c through the whole story: rlimits, umask,
//! cwd, personality, scheduling policy and nice value come back, checked
//! by the program itself.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn procstate_story() {
    let mut c = Computation::new("procstate");
    let stop = c.stop_file().display().to_string();
    let work = c.dir.path().display().to_string();
    c.launch(&program("procstate"), &[&stop, &work]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
