//! tests/programs/signals.c through the whole story: dispositions,
//! per-thread masks, pending (and queued realtime) signals and
//! sigaltstacks come back, checked by the program itself.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn signals_story() {
    let mut c = Computation::new("signals");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("signals"), &[&stop]);
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Without any checkpoint the program passes its own checks (the test
/// checks the program, not only ckpt).
#[test]
fn signals_without_checkpoint() {
    let mut c = Computation::new("signals-plain");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("signals"), &[&stop]);
    c.wait_lines(2, |l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}

/// `ckpt image inspect` shows the signal state: handlers with their flags
/// and masks, and queued realtime signals with their values.
#[test]
fn inspect_shows_handler_flags_masks_and_queued_values() {
    let mut c = Computation::new("signals-inspect");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("signals"), &[&stop]);
    c.wait_lines(2, |l: &str| l.starts_with("tick"), Duration::from_secs(30));
    let image = c.checkpoint();
    let text = ckpt_tests::inspect(&image, &[]);
    let signals = text
        .lines()
        .find(|l| l.starts_with("signals "))
        .unwrap_or_else(|| panic!("no signals line:\n{text}"));
    assert!(
        signals.contains("SIGUSR1 -> 0x")
            && signals.contains("[SA_SIGINFO|SA_RESTART, mask SIGUSR2]"),
        "{signals}"
    );
    let pending = text
        .lines()
        .find(|l| l.trim_start().starts_with("pending "))
        .unwrap_or_else(|| panic!("no pending line:\n{text}"));
    for v in ["(value 1)", "(value 2)", "(value 3)"] {
        assert!(pending.contains(v), "{v} not in {pending}");
    }
}
