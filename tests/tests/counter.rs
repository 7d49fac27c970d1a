//! The counter through the whole story, with its output to a pipe, a file
//! and a terminal, with an unlimited stack, and restarted many times.

use ckpt_tests::{program, Computation, Stdout};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn count(line: &str) -> Option<u64> {
    line.strip_prefix("count ")?.trim().parse().ok()
}

fn is_count(l: &str) -> bool {
    count(l).is_some()
}

/// The story, then the counter's own verdict; also checks that a restart
/// continues from the image's count.
fn story_and_verdict(c: &mut Computation) {
    let prog = program("counter");
    let stop = c.stop_file().display().to_string();
    c.env.push(("COUNTER_MS".into(), "100".into()));
    c.launch(&prog, &[&stop]);
    c.story(&is_count, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(T), Some(0));
}

#[test]
fn counter_story() {
    let mut c = Computation::new("counter");
    story_and_verdict(&mut c);
    // The manifest and restart script of the last checkpoint are there.
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.ckpt_dir.join("ckpt_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["generation"], 3, "{m}");
    assert_eq!(m["images"][0]["program"], "counter");
    assert!(c.ckpt_dir.join("ckpt_restart_script.sh").exists());
}

#[test]
fn counter_continues_from_the_image() {
    let mut c = Computation::new("counter-cont");
    let prog = program("counter");
    c.launch(&prog, &[]);
    c.wait_lines(3, is_count, T);
    let img = c.checkpoint();
    c.kill();
    c.restart(&img);
    let first = count(&c.wait_for_line(is_count, T)).unwrap();
    assert!(
        first > 3,
        "the restored counter starts at {first}, not after 3"
    );
    let next = count(&c.wait_for_line(is_count, T)).unwrap();
    assert_eq!(next, first + 1);
}

#[test]
fn counter_stdout_to_a_file() {
    let mut c = Computation::new("counter-file");
    c.stdout = Stdout::File(c.dir.path().join("out.txt"));
    story_and_verdict(&mut c);
}

#[test]
fn counter_stdout_to_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let mut c = Computation::new("counter-pty");
    c.stdout = Stdout::Pty;
    story_and_verdict(&mut c);
}

#[test]
fn counter_with_unlimited_stack() {
    let wrapper = vec![
        "bash".into(),
        "-c".into(),
        "ulimit -s unlimited; exec \"$@\"".into(),
        "bash".into(),
    ];
    let mut c = Computation::new("counter-ulimit");
    c.wrapper = wrapper;
    story_and_verdict(&mut c);
}

#[test]
fn same_image_restarted_20_times() {
    let mut c = Computation::new("counter-20");
    let prog = program("counter");
    c.env.push(("COUNTER_MS".into(), "50".into()));
    c.launch(&prog, &[]);
    c.wait_lines(3, is_count, T);
    let img = c.checkpoint();
    c.kill();
    let mut firsts = Vec::new();
    for _ in 0..20 {
        c.restart(&img);
        let a = count(&c.wait_for_line(is_count, T)).unwrap();
        let b = count(&c.wait_for_line(is_count, T)).unwrap();
        assert_eq!(b, a + 1);
        firsts.push(a);
        c.kill();
    }
    assert!(
        firsts.windows(2).all(|w| w[0] == w[1]),
        "every restart starts at the same count: {firsts:?}"
    );
}
