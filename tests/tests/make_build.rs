//! `make -j2` building a small C project generated in a temp dir: twenty
//! files f<i>.c (f<i>() returns i²) and a main.c printing their sum; each
//! object's rule sleeps 0.4 s before `cc -c`, so the build takes a few
//! seconds and every checkpoint finds make with two jobs running (sleep,
//! or cc with cc1/as under it, its jobserver pipe shared with them).
//! Checkpointed midway, killed, restarted (from the manifest),
//! checkpointed again, killed, restarted: the build must finish, link
//! every object, and the program it built must print sum=2470 (Σ i² for
//! i < 20), with make exiting 0. A job lost at the restart fails make (or
//! hangs it); one run twice is harmless to make, so the count of `cc -c`
//! lines is not judged, only the result. Without the coordinator's late
//! join, a compiler started just before the cut is missing from the
//! restart and make waits for it forever.
//!
//! Every object is built whatever its time stamp (FORCE): the file
//! system is not part of a checkpoint, and a compile the build started
//! after the checkpoint, cut by the kill, leaves a truncated f<i>.o newer
//! than f<i>.c, which the restored make (that has not built it yet) would
//! otherwise take as up to date; a make killed and run again does the
//! same.
//!
//! `cc -pipe`: cc1 hands its assembly to as through a pipe (restored
//! with the bytes in flight). Without it cc1 writes a temporary file that
//! gcc deletes once assembled, and the run that goes on after the
//! checkpoint until the kill deletes it: the restored cc1 or as cannot
//! find it (the file system is not part of a checkpoint; an open file can
//! be saved with --ckpt-open-files, one no process holds open cannot).

use ckpt_tests::{Computation, TempDir};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn project(dir: &Path) {
    let mut main = String::from("#include <stdio.h>\n");
    for i in 0..20 {
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i}(void) {{ return {i} * {i}; }}\n"),
        )
        .unwrap();
        main.push_str(&format!("int f{i}(void);\n"));
    }
    main.push_str("int main(void) {\n    int s = 0;\n");
    for i in 0..20 {
        main.push_str(&format!("    s += f{i}();\n"));
    }
    main.push_str("    printf(\"sum=%d\\n\", s);\n    return 0;\n}\n");
    std::fs::write(dir.join("main.c"), main).unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "OBJS := $(patsubst %.c,%.o,$(sort $(wildcard *.c)))\n\
         all: prog\n\t./prog\n\
         prog: $(OBJS)\n\tcc -o $@ $^\n\
         %.o: %.c FORCE\n\tsleep 0.4\n\tcc -pipe -c $< -o $@\n\
         FORCE:\n",
    )
    .unwrap();
}

fn is_compile(l: &str) -> bool {
    l.starts_with("cc -pipe -c ")
}

#[test]
fn make_j2_checkpointed_midway_finishes_with_the_right_program() {
    let mut c = Computation::new("make-build");
    let src = TempDir::new("make-project");
    project(src.path());
    let srcdir = src.path().display().to_string();
    c.spawn_launch(Path::new("make"), &["-j2", "-C", &srcdir]);
    c.wait_connected_at_least(1, T);
    c.wait_lines(4, is_compile, T);
    for round in 1..=2 {
        // Of whatever runs now: make and its two jobs at least.
        assert!(c.checkpoint_any().len() >= 2, "round {round}");
        c.wait_lines(1, is_compile, T);
        c.kill();
        c.spawn_restart_manifest();
        c.wait_connected_at_least(1, T);
        c.wait_lines(2, is_compile, T);
    }
    c.wait_for_line(|l| l.starts_with("cc -o prog "), T);
    let sum = c.wait_for_line(|l| l.starts_with("sum="), T);
    assert_eq!(sum, "sum=2470", "{}", c.diagnostics());
    assert_eq!(c.wait_exit(T), Some(0), "make exits 0");
    assert!(src.path().join("prog").exists());
}
