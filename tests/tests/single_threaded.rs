//! tests/programs/single.c through the whole story: a single-threaded
//! program stays single-threaded in glibc's eyes (__libc_single_threaded
//! is 1) while the writer's own threads exist, before and after
//! checkpoints and restarts, so malloc, stdio and write(2) keep their
//! fast paths, and between checkpoints the process has no thread of the
//! writer's at all. With the writer's threads made by pthread_create it
//! said "VERDICT FAIL" at its first tick.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn single_threaded_program_stays_single_threaded() {
    let mut c = Computation::new("single");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("single"), &[&stop]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    // Between checkpoints no thread of the writer's is left (it ends when
    // it has nothing to do): the program's fd table is its own again.
    c.wait_for_line(|l: &str| l.contains(" threads=1"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
