//! An image whose vdso does not match the running kernel's still restarts:
//! the restorer (forced by its test switch to treat the running vdso as
//! different) maps the image's old vdso bytes back, points their entry
//! points at the running vdso, and clock_gettime keeps working.
//!
//! glibc calls clock_gettime through pointers into the vdso it found at
//! start-up, so after such a restart every tick of tests/programs/vdso_rseq.c
//! goes through the old vdso's patched entry points: unpatched, the old code
//! would read a clock page that is not there (a crash) or a stale copy (a
//! CLOCK_MONOTONIC that stops, which the program reports as a failure).

use ckpt_tests::{program, Computation};
use std::time::Duration;

fn restorer_log(c: &Computation) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(&c.tmpdir).expect("CKPT_TMPDIR").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("ckpt-restore-") && name.ends_with(".log") {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    all
}

#[test]
fn vdso_mismatch_redirects_and_clock_keeps_working() {
    let tick = |l: &str| l.starts_with("tick") && !l.contains("stalled");
    let t = Duration::from_secs(30);
    let mut c = Computation::new("vdso_mismatch");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("vdso_rseq"), &[&stop]);
    c.wait_lines(2, tick, t);
    let image = c.checkpoint();
    c.kill();

    c.env.push(("CKPT_TEST_VDSO_MISMATCH".into(), "1".into()));
    c.restart(&image);
    // Each tick checks that CLOCK_MONOTONIC moved on since the last one.
    c.wait_lines(5, tick, t);
    let log = restorer_log(&c);
    assert!(
        log.contains("--test-vdso-mismatch: treating the running vdso as different"),
        "the switch did not reach the restorer:\n{log}"
    );
    let patched = log
        .lines()
        .find_map(|l| {
            let rest = l.split("vdso: patched ").nth(1)?;
            rest.split_whitespace().next()?.parse::<u32>().ok()
        })
        .unwrap_or_else(|| panic!("no 'vdso: patched N entry points' in the log:\n{log}"));
    assert!(patched >= 4, "only {patched} entry points patched:\n{log}");

    // The restarted process is checkpointed and restarted again (still
    // through the old vdso's patches), then judges itself.
    let again = c.checkpoint();
    c.wait_lines(1, tick, t);
    c.kill();
    c.restart(&again);
    c.wait_lines(3, tick, t);
    let v = c.verdict(t);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}
