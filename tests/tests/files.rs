//! tests/programs/files.c through the whole story: regular files at their
//! offsets with their flags, a dup sharing its offset again, a file
//! deleted while open, /dev/null, /dev/zero, /dev/urandom and a
//! directory; and a process holding what ckpt cannot save (io_uring):
//! its checkpoint fails naming the fd, and it keeps running.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn files_story() {
    let mut c = Computation::new("files");
    let stop = c.stop_file().display().to_string();
    let dir = c.dir.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    c.launch(&program("files"), &[&stop, &dir.display().to_string()]);
    c.story(&|l: &str| l.starts_with("tick"), T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn unsaveable_fd_fails_the_checkpoint_and_the_program_goes_on() {
    let mut c = Computation::new("unsaveable");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("unsaveable"), &[&stop]);
    let l = c.wait_for_line(|l| l.starts_with("uring fd "), T);
    let fd = l.trim_start_matches("uring fd ").trim().to_string();
    c.wait_lines(2, |l| l.starts_with("tick"), T);
    let text = c.checkpoint_fails();
    assert!(
        text.contains(&format!("fd {fd}")) && text.contains("io_uring"),
        "the failure does not name fd {fd} and io_uring: {text}"
    );
    // No image, no temporary file. (The copy of the writer library the
    // images of this directory refer to, ckpt_writer-<build>.so, is made
    // before the first checkpoint and stays.)
    let left: Vec<_> = std::fs::read_dir(&c.ckpt_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("ckpt_writer-") && n.ends_with(".so")))
        .collect();
    assert!(
        left.is_empty(),
        "a failed checkpoint left files in the checkpoint directory: {left:?}"
    );
    c.wait_lines(2, |l| l.starts_with("tick"), T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
