//! tests/programs/pipeline.c (a parent, a producer and a slow consumer
//! joined by a pipe that is full at checkpoint time) through launch →
//! checkpoint of every process → kill all → restart of the images
//! together → checkpoint → kill → restart from the manifest → verdict:
//! the consumer checks every byte of the numbered stream, so a byte lost
//! or doubled across a restart fails it; the producer and the consumer
//! must share one pipe again (with two copies the consumer would starve
//! and the parent, reading the consumer's count on a second pipe, would
//! never see its end-of-file).

use ckpt_tests::{program, Computation};
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// A parsed `tick consumer got=<bytes> queued=<bytes>` line.
fn consumer_tick(line: &str) -> Option<(u64, i64)> {
    let rest = line.strip_prefix("tick consumer got=")?;
    let (got, queued) = rest.split_once(" queued=")?;
    Some((got.parse().ok()?, queued.trim().parse().ok()?))
}

/// Waits for `n` consumer ticks; returns the last (got, queued).
fn consumer_reads(c: &mut Computation, n: usize) -> (u64, i64) {
    let mut last = (0, 0);
    for _ in 0..n {
        let line = c.wait_for_line(|l| consumer_tick(l).is_some(), T);
        assert!(!line.starts_with("VERDICT"), "{line}");
        last = consumer_tick(&line).unwrap();
    }
    last
}

/// `ckpt command bc --json`: the images of the three processes.
fn checkpoint_all(c: &Computation) -> Vec<PathBuf> {
    let out = c.command(&["bc", "--json"]);
    assert!(
        out.status.success(),
        "checkpoint failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.diagnostics()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bc --json output");
    let images: Vec<PathBuf> = v["checkpointed"]["images"]
        .as_array()
        .expect("an image list")
        .iter()
        .map(|i| PathBuf::from(i.as_str().unwrap()))
        .collect();
    assert_eq!(images.len(), 3, "one image per process: {images:?}");
    images
}

#[test]
fn a_pipe_between_two_processes_loses_and_doubles_nothing() {
    let mut c = Computation::new("pipeline");
    let stop = c.stop_file().display().to_string();
    let prog = program("pipeline").display().to_string();
    let dir = c.ckpt_dir.display().to_string();
    c.spawn(
        ["launch", "--quiet", "--ckpt-dir", &dir, &prog, &stop]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(3, T);
    // The producer outruns the consumer: the pipe holds bytes.
    let (_, queued) = consumer_reads(&mut c, 3);
    assert!(queued > 0, "bytes are waiting in the pipe: {queued}");

    let images = checkpoint_all(&c);
    consumer_reads(&mut c, 2);
    c.kill();

    // All the images given: one tree, one pipe between its processes.
    let mut args: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    args.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(args);
    c.wait_connected(3, T);
    let (_, queued) = consumer_reads(&mut c, 3);
    assert!(queued > 0, "the producer fills the pipe again: {queued}");

    checkpoint_all(&c);
    consumer_reads(&mut c, 2);
    c.kill();

    // No image given: the manifest's, all three.
    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(3, T);
    consumer_reads(&mut c, 3);

    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the parent's status"
    );
}
