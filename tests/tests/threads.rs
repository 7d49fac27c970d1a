//! tests/programs/threads.c through the whole story, then its own verdict.

use ckpt_tests::Computation;

#[test]
fn threads_story() {
    let mut c = Computation::new("threads");
    c.program_story("threads");
}
