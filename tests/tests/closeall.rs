//! tests/programs/closeall.c through the whole story: a program that
//! closes every fd it did not open (closefrom, close_range) stays under
//! checkpoint control, and its own fds are closed. Without the writer's
//! close_range/closefrom it closed the coordinator socket and every
//! checkpoint after that found no process.

use ckpt_tests::Computation;

#[test]
fn a_program_that_closes_every_fd_stays_under_control() {
    let mut c = Computation::new("closeall");
    c.program_story("closeall");
}
