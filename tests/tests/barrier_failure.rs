//! The barrier's failure path with real processes: tests/programs/
//! fifotree.c (a root, a consumer and a producer joined by a FIFO that
//! is full at every checkpoint) with one process made to fail its
//! checkpoint by the writer's test-only switch CKPT_TEST_FAIL_CAPTURE
//! (a file holding the pid of the process at fault and where it fails:
//! `capture`, its image not written after every process stopped, or
//! `suspend`, as if its threads did not stop). Each failed checkpoint
//! must report an error naming that process, every process must resume
//! and go on correctly (the consumer checks every record, the root the
//! count and sum at the end), the previous generation's images and
//! manifest must stay as they were, byte for byte, and restart
//! correctly; once the fault is removed the next checkpoint works.

use ckpt_tests::{program, Computation};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn consumer_tick(line: &str) -> Option<u64> {
    line.strip_prefix("tick consumer got=")?
        .split_once(' ')?
        .0
        .parse()
        .ok()
}

/// Waits until both the consumer and the producer print `n` ticks each.
fn both_go_on(c: &mut Computation, n: usize) {
    let (mut cons, mut prod) = (0, 0);
    while cons < n || prod < n {
        let l = c.wait_for_line(|l| l.starts_with("tick ") || l.starts_with("VERDICT"), T);
        assert!(!l.starts_with("VERDICT"), "{l}\n{}", c.diagnostics());
        if consumer_tick(&l).is_some() {
            cons += 1;
        } else if l.starts_with("tick producer") {
            prod += 1;
        }
    }
}

/// Every file of the checkpoint directory (recursively) and a digest of
/// its bytes (its length and a 64-bit FNV-1a hash).
fn files(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("the checkpoint directory") {
            let p = e.expect("an entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("a file");
                let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
                out.insert(p, (bytes.len(), hash));
            }
        }
    }
    out
}

/// `ckpt command bc` fails, naming `who` (program[pid]) and the fault.
fn checkpoint_fails(c: &Computation, who: &str, what: &str) {
    let text = c.checkpoint_fails();
    assert!(
        text.contains(&format!(
            "{who}: test fault (CKPT_TEST_FAIL_CAPTURE): {what}"
        )),
        "the error names {who}: {text}"
    );
}

fn fault(file: &Path, pid: i32, mode: &str) {
    std::fs::write(file, format!("{pid} {mode}\n")).expect("the fault file");
}

#[test]
fn a_failed_checkpoint_resumes_everyone_and_keeps_the_previous_generation() {
    let mut c = Computation::new("barrier-failure");
    let fault_file = c.dir.path().join("fault");
    c.env.push((
        "CKPT_TEST_FAIL_CAPTURE".into(),
        fault_file.display().to_string(),
    ));
    let stop = c.stop_file().display().to_string();
    let fifo = c.dir.path().join("records.fifo").display().to_string();
    c.launch_tree(&program("fifotree"), &[&stop, &fifo, "siblings"], 3);
    let started = c.wait_for_line(|l| l.starts_with("started siblings"), T);
    let pid_of = |key: &str| -> i32 {
        started
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {started}"))
    };
    let (consumer, producer) = (pid_of("consumer="), pid_of("producer="));
    both_go_on(&mut c, 2);

    c.checkpoint_all(3);
    let generation1 = files(&c.ckpt_dir);
    assert!(
        generation1
            .keys()
            .any(|p| p.ends_with("ckpt_manifest.json")),
        "{:?}",
        generation1.keys()
    );

    // The producer fails to write its image, after all three stopped.
    fault(&fault_file, producer, "capture");
    checkpoint_fails(&c, &format!("fifotree[{producer}]"), "image not written");
    both_go_on(&mut c, 3);
    // The consumer does not stop at all.
    fault(&fault_file, consumer, "suspend");
    checkpoint_fails(&c, &format!("fifotree[{consumer}]"), "threads not stopped");
    both_go_on(&mut c, 3);
    assert_eq!(
        files(&c.ckpt_dir),
        generation1,
        "the failed checkpoints left the first generation as it was"
    );
    c.kill();

    // The first generation restarts (from its manifest) and goes on.
    c.restart_manifest(3, T);
    both_go_on(&mut c, 3);
    // A failure in the restarted tree, same pids.
    fault(&fault_file, producer, "capture");
    checkpoint_fails(&c, &format!("fifotree[{producer}]"), "image not written");
    both_go_on(&mut c, 3);
    assert_eq!(files(&c.ckpt_dir), generation1);
    c.kill();

    // The first generation's images, by their main names, restart too.
    let images: Vec<PathBuf> = generation1
        .keys()
        .filter(|p| p.parent() == Some(c.ckpt_dir.as_path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .cloned()
        .collect();
    assert_eq!(images.len(), 3, "three images: {images:?}");
    c.restart_all(&images, 3, T);
    both_go_on(&mut c, 3);

    // No fault: the next checkpoint works, and restarts.
    std::fs::remove_file(&fault_file).unwrap();
    c.checkpoint_all(3);
    assert_ne!(files(&c.ckpt_dir), generation1, "a new generation");
    both_go_on(&mut c, 2);
    c.kill();
    c.restart_manifest(3, T);
    both_go_on(&mut c, 3);
    c.verdict_ok(T);
}
