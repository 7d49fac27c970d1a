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

/// The fallback (`CKPT_PTHREADS=1`, also what the writer does when the
/// dynamic linker lacks what its own threads need): pthreads that stay,
/// through the whole story of the 8-thread pipeline.
#[test]
fn pthread_fallback_goes_through_the_story() {
    let mut c = Computation::new("pthreads");
    c.env.push(("CKPT_PTHREADS".into(), "1".into()));
    c.env.push(("CKPT_DEBUG".into(), "1".into()));
    c.program_story("threads");
    // It did run with pthreads: the writer says so in its log.
    let logs: String = std::fs::read_dir(&c.tmpdir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(
        logs.contains("CKPT_PTHREADS=1: the writer's threads are pthreads"),
        "{logs}"
    );
}
