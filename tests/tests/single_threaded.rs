//! tests/programs/single.c through the whole story: a single-threaded
//! program stays single-threaded in glibc's eyes (__libc_single_threaded
//! is 1) while the writer's own threads exist, before and after
//! checkpoints and restarts, so malloc, stdio and write(2) keep their
//! fast paths. With the writer's threads made by pthread_create it said
//! "VERDICT FAIL" at its first tick.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn single_threaded_program_stays_single_threaded() {
    let mut c = Computation::new("single");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("single"), &[&stop]);
    // The writer's checkpoint thread is there, and glibc does not know it.
    c.wait_for_line(
        |l: &str| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("threads="))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 2)
        },
        Duration::from_secs(30),
    );
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
