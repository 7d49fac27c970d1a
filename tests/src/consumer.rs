//! tests/programs/pipeline.c and fifotree.c: a producer outruns a slow
//! consumer, which checks every item it reads and prints
//! `tick consumer got=<items> queued=<bytes>` (what waits in the pipe or
//! FIFO between them).

use crate::{Computation, Step};
use std::time::Duration;

/// A parsed `tick consumer got=<items> queued=<bytes>` line.
pub fn tick(line: &str) -> Option<(u64, i64)> {
    let rest = line.strip_prefix("tick consumer got=")?;
    let (got, queued) = rest.split_once(" queued=")?;
    Some((got.parse().ok()?, queued.trim().parse().ok()?))
}

/// Waits for `n` consumer ticks (a verdict before them fails); returns
/// the last (got, queued).
pub fn reads(c: &mut Computation, n: usize, timeout: Duration) -> (u64, i64) {
    let mut last = (0, 0);
    for _ in 0..n {
        let line = c.wait_for_line(|l| tick(l).is_some() || l.starts_with("VERDICT"), timeout);
        assert!(!line.starts_with("VERDICT"), "{line}\n{}", c.diagnostics());
        last = tick(&line).expect("a consumer tick");
    }
    last
}

/// After each step of [`Computation::tree_story`]: the consumer goes on
/// (two ticks after a checkpoint, three after a restart), and after the
/// restart from the images the producer fills `channel` again.
pub fn goes_on(c: &mut Computation, step: Step, channel: &str, timeout: Duration) {
    match step {
        Step::RestartedFromImages => {
            let (_, queued) = reads(c, 3, timeout);
            assert!(
                queued > 0,
                "the producer fills the {channel} again: {queued}"
            );
        }
        Step::RestartedFromManifest => {
            reads(c, 3, timeout);
        }
        Step::Checkpointed | Step::CheckpointedAgain => {
            reads(c, 2, timeout);
        }
    }
}
