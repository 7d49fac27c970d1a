//! A process of the computation whose writer has not connected when a
//! checkpoint stops the others (a compiler `cc` exec'd a moment before
//! the cut) must be waited for, and stopped, before any process captures
//! its state. tests/programs/latejoin.c: a parent reads a numbered stream
//! from a child it forked and exec'd; the child's writer is held from
//! connecting by the writer's test-only switch CKPT_TEST_HOLD_CONNECT
//! (while a file exists) as the child runs and writes. The parent names
//! the child in its `Suspended`; the coordinator must log that it waits
//! for it, and the checkpoint must not end before the hold is lifted;
//! then the child connects, joins, and both images are written. Killed
//! and restarted from the manifest, the stream goes on without a word
//! lost or doubled, and the parent reaps its child (exit 0).
//!
//! Without the wait (before it existed), the checkpoint ended at once
//! with the parent's image alone, while the child ran on: after a
//! restart the parent found end-of-file and `waitpid` failed with
//! ECHILD (make_build.rs saw both: `cc: failed to get exit status: No
//! child processes`, and an object file assembled from a pipe whose
//! bytes cc1 wrote after `as` had been captured).

use ckpt_tests::{ckpt, program, Computation};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[test]
fn a_child_not_connected_at_the_cut_is_waited_for_and_restarted() {
    let mut c = Computation::new("late-join");
    let hold = c.dir.path().join("hold");
    std::fs::write(&hold, b"hold").unwrap();
    let stop = c.stop_file().display().to_string();
    c.spawn_launch(&program("latejoin"), &[&stop, &hold.display().to_string()]);
    let child: i32 = c
        .wait_for_line(|l| l.starts_with("child "), T)
        .strip_prefix("child ")
        .and_then(|p| p.parse().ok())
        .expect("the child's pid");
    c.wait_connected(1, T);
    // The child runs and writes, its writer not connected.
    c.wait_lines(2, |l| l.starts_with("tick "), T);
    assert_eq!(c.processes(), 1, "the child is held from connecting");

    // A blocking checkpoint, in the background: it must wait for the child.
    let mut bc = Command::new(ckpt())
        .args(["command", "bc", "--json"])
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_HOST", "127.0.0.1")
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ckpt command bc");
    let log = c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port));
    let waiting = format!("waiting for process(es) {child} (child of latejoin[");
    let deadline = Instant::now() + T;
    loop {
        if let Ok(Some(_)) = bc.try_wait() {
            let out = bc.wait_with_output().expect("bc's output");
            panic!(
                "the checkpoint ended while child {child} was not connected: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                c.diagnostics()
            );
        }
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains(&waiting)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator does not say it waits for {child}\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&hold).unwrap();
    let out = bc.wait_with_output().expect("bc's output");
    assert!(
        out.status.success(),
        "checkpoint: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.diagnostics()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bc --json");
    let images: Vec<PathBuf> = v["checkpointed"]["images"]
        .as_array()
        .expect("an image list")
        .iter()
        .map(|i| PathBuf::from(i.as_str().expect("a path")))
        .collect();
    assert_eq!(images.len(), 2, "the parent's and the child's: {images:?}");
    assert!(
        images
            .iter()
            .any(|i| i.display().to_string().contains(&format!("-{child}-"))),
        "the child's image: {images:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "latejoin[{child}] connected during the checkpoint and joins it"
        )),
        "{text}"
    );

    c.wait_lines(1, |l| l.starts_with("tick "), T);
    c.kill();
    c.restart_manifest(2, T);
    // The restored parent checks every word from where its image was.
    c.wait_lines(2, |l| l.starts_with("tick "), T);
    c.verdict_ok(T);
}
