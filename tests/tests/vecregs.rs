//! tests/programs/vecregs.c through the whole story: ymm15 (AVX) and, on
//! an AVX-512 CPU, zmm31 and k1 keep their values across checkpoints and
//! restarts while threads are inside loops that check them, and the
//! process and its threads keep their names (comm).

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn vector_registers_survive_restarts() {
    let mut c = Computation::new("vecregs");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("vecregs"), &[&stop]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
