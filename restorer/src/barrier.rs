//! The restore barrier: every process of the tree prepares its restore
//! (fds, staged memory, plan), then waits here; only when all have
//! arrived does any of them enter its final stage. A process that fails
//! to prepare breaks the barrier, and every other one exits with status
//! 2 instead of resuming a tree with a process missing.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::ns_sys;

const WAITING: u32 = 0;
const GO: u32 = 1;
const BROKEN: u32 = 2;

/// How long a process waits for the others (one may have died without
/// breaking the barrier, e.g. killed by a signal).
const TIMEOUT_MS: u64 = 120_000;

/// The barrier, in a page every process of the namespace shares.
#[derive(Clone, Copy)]
pub struct Barrier {
    arrived: &'static AtomicU32,
    state: &'static AtomicU32,
    total: u32,
}

/// Why the barrier did not open.
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// Another process failed to prepare.
    Broken,
    /// Not every process arrived in time.
    TimedOut {
        arrived: u32,
        total: u32,
    },
    Io(std::io::Error),
}

impl std::fmt::Display for BarrierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BarrierError::Broken => write!(f, "another process of the tree failed to restore"),
            BarrierError::TimedOut { arrived, total } => write!(
                f,
                "only {arrived} of {total} processes were ready after {} s",
                TIMEOUT_MS / 1000
            ),
            BarrierError::Io(e) => write!(f, "restore barrier: {e}"),
        }
    }
}

impl Barrier {
    /// A barrier for `total` processes; create it before forking them.
    pub fn new(total: u32) -> std::io::Result<Barrier> {
        let page = ns_sys::shared_page()?;
        Ok(Barrier {
            arrived: &page[0],
            state: &page[1],
            total,
        })
    }

    /// This process is ready; returns once every process is.
    pub fn arrive_and_wait(&self) -> Result<(), BarrierError> {
        let n = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if n == self.total {
            // Only a broken barrier stays broken.
            let _ = self
                .state
                .compare_exchange(WAITING, GO, Ordering::AcqRel, Ordering::Acquire);
            ns_sys::futex_wake_all(self.state);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(TIMEOUT_MS);
        loop {
            match self.state.load(Ordering::Acquire) {
                GO => return Ok(()),
                BROKEN => return Err(BarrierError::Broken),
                _ => {}
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                self.break_it();
                return Err(BarrierError::TimedOut {
                    arrived: self.arrived.load(Ordering::Acquire),
                    total: self.total,
                });
            }
            ns_sys::futex_wait(self.state, WAITING, left.as_millis() as u64 + 1)
                .map_err(BarrierError::Io)?;
        }
    }

    /// This process cannot restore: nobody resumes.
    pub fn break_it(&self) {
        let _ = self
            .state
            .compare_exchange(WAITING, BROKEN, Ordering::AcqRel, Ordering::Acquire);
        ns_sys::futex_wake_all(self.state);
    }
}
