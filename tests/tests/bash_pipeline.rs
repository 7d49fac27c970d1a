//! `bash -c` running a three-stage pipeline: a producer counting 1, 2,
//! 3, ... with an external `sleep` after each number (a longer one every
//! ten, so bytes wait in the pipes), a `while read` loop doubling
//! each number, and a consumer that checks every number it gets is the
//! next one and prints a running total. Through launch → checkpoint →
//! kill → restart → checkpoint → kill → restart (each from the manifest);
//! then the stop file ends the producer and the consumer prints its
//! verdict: every number exactly once, and the total is n(n+1).
//! A `sleep` starts and ends every few milliseconds, so most checkpoints
//! find one starting (its writer connects while the others are stopped:
//! it must join the checkpoint, or its parent's image names a child no
//! image holds and the restored bash waits for it forever) or ending (it
//! leaves before it stopped: the checkpoint must go on without it). A number
//! lost or doubled in a pipe fails it; so does a stage missing after the
//! restart (the pipeline would hang). Also as the unprivileged user nobody.

use ckpt_tests::Computation;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The top bash and its three pipeline stages (a `sleep` may be a fifth).
const AT_LEAST: usize = 4;

const SCRIPT: &str = r#"
stop=$1
i=0
while [ ! -e "$stop" ]; do
  i=$((i+1)); echo $i
  if [ $((i % 10)) -eq 0 ]; then sleep 0.02; else sleep 0.001; fi
done |
while read n; do echo $((n*2)); done |
{ sum=0; want=0
  while read m; do
    want=$((want+2))
    if [ "$m" -ne "$want" ]; then echo "VERDICT FAIL got $m, want $want"; exit 1; fi
    sum=$((sum+m))
    if [ $((want % 20)) -eq 0 ]; then echo "total n=$((m/2)) sum=$sum"; fi
  done
  k=$((want/2))
  if [ $sum -eq $((k*(k+1))) ]; then echo "VERDICT OK n=$k sum=$sum"
  else echo "VERDICT FAIL sum=$sum for n=$k"; fi; }
"#;

/// `total n=<n> ...` → n.
fn total(line: &str) -> Option<u64> {
    line.strip_prefix("total n=")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits for `k` totals; returns the last n.
fn totals(c: &mut Computation, k: usize) -> u64 {
    let mut n = 0;
    for _ in 0..k {
        n = total(&c.wait_for_line(|l| total(l).is_some(), T)).unwrap();
    }
    n
}

fn story(mut c: Computation) {
    let stop = c.stop_file().display().to_string();
    c.spawn_launch(Path::new("bash"), &["-c", SCRIPT, "bash", &stop]);
    c.wait_connected_at_least(AT_LEAST, T);
    totals(&mut c, 3);
    for round in 1..=2 {
        // Several checkpoints in a row: one of them is likely to catch a
        // sleep starting or ending.
        for _ in 0..6 {
            // Of whatever is connected: a `sleep` may be there or not.
            assert!(c.checkpoint_any().len() >= AT_LEAST, "round {round}");
            totals(&mut c, 1);
        }
        let before = totals(&mut c, 2);
        c.kill();
        c.spawn_restart_manifest();
        c.wait_connected_at_least(AT_LEAST, T);
        let after = totals(&mut c, 3);
        assert!(
            after > 0 && after < before + 10_000,
            "round {round}: {before} → {after}"
        );
    }
    c.verdict_ok(T);
}

#[test]
fn a_bash_pipeline_loses_and_doubles_nothing() {
    story(Computation::new("bash-pipeline"));
}

#[test]
fn a_bash_pipeline_as_an_unprivileged_user() {
    if let Some(c) = ckpt_tests::as_nobody("bash-pipeline-nobody") {
        story(c);
    }
}
