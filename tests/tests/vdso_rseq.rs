//! tests/programs/vdso_rseq.c through the whole story, then its own verdict.

use ckpt_tests::Computation;

#[test]
fn vdso_rseq_story() {
    let mut c = Computation::new("vdso_rseq");
    c.program_story("vdso_rseq");
}
