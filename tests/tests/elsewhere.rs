//! Restart elsewhere and the changed-file policy, with
//! tests/programs/elsewhere.c (reads its data file one byte a tick,
//! prints $SCRATCH and $ADDED): a moved directory found again through
//! `--map-path`, an environment changed by `--set-env`, and an open file
//! that changed or disappeared between checkpoint and restart, with and
//! without `--ckpt-open-files`.

use ckpt_tests::{program, Computation};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn tick(l: &str) -> bool {
    l.starts_with("tick")
}

/// The `pos` of a tick line.
fn pos(l: &str) -> u64 {
    l.split_whitespace()
        .skip_while(|w| *w != "pos")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pos in {l:?}"))
}

/// `ckpt restart ARGS... IMAGE` with its stderr appended to `err`; does
/// not wait.
fn spawn_restart(c: &mut Computation, image: &Path, args: &[&str], err: &Path) {
    let saved = std::mem::replace(
        &mut c.wrapper,
        vec![
            "sh".into(),
            "-c".into(),
            format!("exec \"$0\" \"$@\" 2>>'{}'", err.display()),
        ],
    );
    let mut a: Vec<String> = vec!["restart".into(), "--quiet".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.push(image.display().to_string());
    c.spawn(a);
    c.wrapper = saved;
}

fn restart_with(c: &mut Computation, image: &Path, args: &[&str], err: &Path) {
    spawn_restart(c, image, args, err);
    c.wait_connected(1, T);
}

fn launch(c: &mut Computation, dir: &Path, open_files: bool) {
    let stop = c.stop_file().display().to_string();
    let mut a = vec![
        "launch".to_string(),
        "--quiet".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
    ];
    if open_files {
        a.push("--ckpt-open-files".into());
    }
    a.push(program("elsewhere").display().to_string());
    a.push(stop);
    a.push(dir.display().to_string());
    c.spawn(a);
    c.wait_connected(1, T);
}

fn setup(tag: &str) -> (Computation, PathBuf, PathBuf) {
    let c = Computation::new(tag);
    let dir = c.dir.path().join("work");
    std::fs::create_dir_all(&dir).unwrap();
    let err = c.dir.path().join("restart.err");
    (c, dir, err)
}

#[test]
fn map_path_finds_a_moved_directory() {
    let (mut c, dir, err) = setup("mappath");
    launch(&mut c, &dir, false);
    c.wait_lines(3, tick, T);
    let img = c.checkpoint();
    let before = pos(&c.wait_for_line(tick, T));
    c.kill();
    let moved = c.dir.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();

    // Without --map-path the file is gone: the restart fails naming it.
    spawn_restart(&mut c, &img, &[], &err);
    assert_ne!(c.wait_exit(T), Some(0), "restarted without its file");
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    let data = dir.join("data").display().to_string();
    assert!(
        text.contains(&data) && text.contains("no longer exists"),
        "the failure does not name {data}: {text}"
    );

    let map = format!("{}={}", dir.display(), moved.display());
    restart_with(&mut c, &img, &["--map-path", &map], &err);
    let after = pos(&c.wait_for_line(tick, T));
    assert!(
        after <= before + 1,
        "restarted at pos {after}, the checkpoint was before pos {before}"
    );
    c.wait_lines(2, tick, T);
    // The new image records the new place: no mapping needed any more.
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();
    restart_with(&mut c, &img, &[], &err);
    c.wait_lines(2, tick, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn set_env_changes_what_getenv_returns() {
    let (mut c, dir, err) = setup("setenv");
    c.env = vec![
        ("SCRATCH".into(), "/old/scratch".into()),
        ("KEEP".into(), "kept".into()),
    ];
    launch(&mut c, &dir, false);
    c.wait_for_line(|l| l.contains("scratch=/old/scratch added=(unset)"), T);
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();
    c.env.clear();
    restart_with(
        &mut c,
        &img,
        &["--set-env", "SCRATCH=/new/scratch", "--set-env=ADDED=yes"],
        &err,
    );
    let l = c.wait_for_line(tick, T);
    assert!(
        l.contains("scratch=/new/scratch added=yes"),
        "the first tick after restart: {l}"
    );
    // The environment is the program's memory now: it stays.
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();
    restart_with(&mut c, &img, &[], &err);
    c.wait_for_line(|l| l.contains("scratch=/new/scratch added=yes"), T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn open_files_come_back_changed_or_gone() {
    let (mut c, dir, err) = setup("openfiles");
    let data = dir.join("data");
    launch(&mut c, &dir, true);
    c.wait_lines(3, tick, T);
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();

    // Changed: the saved contents are put back, and stderr says so.
    std::fs::write(&data, vec![b'X'; 1000]).unwrap();
    restart_with(&mut c, &img, &[], &err);
    c.wait_lines(3, tick, T);
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        text.contains(&data.display().to_string()) && text.contains("restored the 1000 bytes"),
        "stderr does not say the file was restored: {text}"
    );
    assert_eq!(&std::fs::read(&data).unwrap()[..10], b"0123456789");

    // Gone: created again from the saved contents.
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();
    std::fs::remove_file(&data).unwrap();
    restart_with(&mut c, &img, &[], &err);
    c.wait_lines(3, tick, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_changed_file_without_contents_is_kept_with_a_warning() {
    let (mut c, dir, err) = setup("changedkept");
    let data = dir.join("data");
    launch(&mut c, &dir, false);
    c.wait_lines(3, tick, T);
    let img = c.checkpoint();
    c.wait_lines(1, tick, T);
    c.kill();
    // Appended to: the bytes the program reads are the same.
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(b"appended after the checkpoint\n");
    std::fs::write(&data, &bytes).unwrap();
    restart_with(&mut c, &img, &[], &err);
    c.wait_lines(3, tick, T);
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        text.contains(&data.display().to_string()) && text.contains("keeping the current file"),
        "stderr does not warn about the changed file: {text}"
    );
    assert_eq!(std::fs::read(&data).unwrap(), bytes, "the file was touched");
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
