//! tests/programs/pipes.c through the whole story: pipes and a FIFO
//! holding bytes (10000 in one, 100000 in a pipe of 128 KiB, a stream
//! that changes every tick, a nonblocking pipe, a FIFO) come back after
//! each restart with every byte once, on the same fds, with their flags.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn pipes_story() {
    let mut c = Computation::new("pipes");
    let stop = c.stop_file().display().to_string();
    let fifo = c.dir.path().join("fifo").display().to_string();
    c.launch(&program("pipes"), &[&stop, &fifo]);
    c.story(&|l: &str| l.starts_with("tick"), T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
