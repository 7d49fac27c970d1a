//! The whole story as an unprivileged user (nobody), coordinator included.

use ckpt_tests::{is_root, program, Computation};
use std::process::Command;
use std::time::Duration;

#[test]
fn counter_story_as_nobody() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user (setpriv)");
        return;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let wrapper: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The coordinator's runtime directory must belong to nobody before it starts.
    let prog = program("counter");
    let mut c = Computation::with_wrapper_prepared("nobody", wrapper, |dir| {
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(dir)
            .status()
            .unwrap();
        Command::new("chmod")
            .arg("a+rx")
            .arg(dir.parent().unwrap())
            .status()
            .unwrap();
    });
    let stop = c.stop_file().display().to_string();
    c.launch(&prog, &[&stop]);
    c.story(&|l: &str| l.starts_with("count "), Duration::from_secs(30));
    let v = c.verdict(Duration::from_secs(30));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}
