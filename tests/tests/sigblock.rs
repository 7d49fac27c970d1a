//! tests/programs/sigblock.c through the whole story, then its own verdict.

use ckpt_tests::Computation;

#[test]
fn sigblock_story() {
    let mut c = Computation::new("sigblock");
    c.program_story("sigblock");
}
