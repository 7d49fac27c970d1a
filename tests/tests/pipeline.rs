//! tests/programs/pipeline.c (a parent, a producer and a slow consumer
//! joined by a pipe that is full at checkpoint time) through launch →
//! checkpoint of every process → kill all → restart of the images
//! together → checkpoint → kill → restart from the manifest → verdict:
//! the consumer checks every byte of the numbered stream, so a byte lost
//! or doubled across a restart fails it; the producer and the consumer
//! must share one pipe again (with two copies the consumer would starve
//! and the parent, reading the consumer's count on a second pipe, would
//! never see its end-of-file).

use ckpt_tests::{consumer, program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Waits for `n` consumer ticks; returns the last (got, queued).
fn consumer_reads(c: &mut Computation, n: usize) -> (u64, i64) {
    consumer::reads(c, n, T)
}

#[test]
fn a_pipe_between_two_processes_loses_and_doubles_nothing() {
    let mut c = Computation::new("pipeline");
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("pipeline"), &[&stop], 3);
    // The producer outruns the consumer: the pipe holds bytes.
    let (_, queued) = consumer_reads(&mut c, 3);
    assert!(queued > 0, "bytes are waiting in the pipe: {queued}");

    // Restarted from all the images given (one tree, one pipe between
    // its processes), then from the manifest's, all three.
    c.tree_story(3, T, |c, step| consumer::goes_on(c, step, "pipe", T));
    c.verdict_ok(T);
}

/// The fast variant: the consumer reads without pausing, so the pipe is
/// nearly empty and both ends run. Each image must be taken while every
/// process is stopped (the coordinator's barrier): had the producer gone
/// on writing after the consumer's image read the pipe, the restored
/// consumer would find a gap; had the consumer gone on reading after the
/// producer's image, it would read bytes twice. Three rounds of
/// checkpoint → kill → restart, each restarted stream checked byte for
/// byte; the coordinator's log shows every process suspended before any
/// captured. (With `CKPT_NO_BARRIER=1` in `c.env` this test fails: the
/// consumer reports a gap or a repeat in the first rounds.)
#[test]
fn a_fast_pipeline_is_cut_at_one_moment_for_every_process() {
    let mut c = Computation::new("pipeline-fast");
    let stop = c.stop_file().display().to_string();
    c.spawn_launch(&program("pipeline"), &[&stop, "fast"]);
    c.wait_connected(3, T);
    consumer_reads(&mut c, 1);
    for round in 1..=3 {
        let images = c.checkpoint_all(3);
        consumer_reads(&mut c, 1);
        c.kill();
        c.restart_all(&images, 3, T);
        // The restored consumer checks every byte from where its image was.
        let (got, _) = consumer_reads(&mut c, 2);
        assert!(got > 0, "round {round}");
    }
    c.verdict_ok(T);

    // Every generation passed the barrier: all suspended, then all
    // captured, in that order.
    let log = std::fs::read_to_string(c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port)))
        .expect("the coordinator's log");
    for g in 1..=3 {
        let at = |what: &str| {
            log.find(&format!(
                "checkpoint {g}: barrier: all 3 process(es) {what}"
            ))
            .unwrap_or_else(|| panic!("checkpoint {g}: no '{what}' line in\n{log}"))
        };
        assert!(at("suspended") < at("captured"), "{log}");
    }
}
