//! tests/programs/inotify.c through the whole story: an inotify instance
//! whose watches (files, a directory, a path relative to the cwd, and a
//! removed one leaving a gap) come back on the same watch descriptors and
//! report the same events; a new watch gets the next wd. A watch whose
//! path names another file at checkpoint time fails the checkpoint naming
//! fd, wd and path, and the program goes on.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn inotify_watches_keep_their_wds() {
    let mut c = Computation::new("inotify");
    let stop = c.stop_file().display().to_string();
    let dir = c.dir.path().join("watched");
    std::fs::create_dir_all(&dir).unwrap();
    c.launch(&program("inotify"), &[&stop, &dir.display().to_string()]);
    let tick = |l: &str| l.starts_with("tick");
    c.wait_lines(2, tick, T);

    // sub/d replaced by another file: its watch (wd 5) cannot be re-added.
    let (d, old) = (dir.join("sub/d"), dir.join("sub/d.old"));
    std::fs::rename(&d, &old).unwrap();
    std::fs::write(&d, b"another file").unwrap();
    let text = c.checkpoint_fails();
    assert!(
        text.contains("inotify watch 5") && text.contains(&d.display().to_string()),
        "the failure does not name watch 5 and {}: {text}",
        d.display()
    );
    std::fs::rename(&old, &d).unwrap();
    c.wait_lines(2, tick, T);

    c.story(&tick, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
