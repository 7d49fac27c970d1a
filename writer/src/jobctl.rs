//! Process attributes that a restart puts back from the writer's own
//! memory (restored with the rest of the process) instead of an image
//! field: the child-subreaper flag (prctl PR_SET_CHILD_SUBREAPER), which
//! /proc does not show. Read at every checkpoint before memory is
//! captured, set again by the restored process before its threads run.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// The process was a child subreaper at the last checkpoint.
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// At checkpoint time, before memory is captured.
pub fn capture() {
    SUBREAPER.store(sys::child_subreaper(), Ordering::SeqCst);
}

/// In the restored process, before its threads run again.
pub fn after_restart() {
    if SUBREAPER.load(Ordering::SeqCst) {
        if let Err(e) = sys::set_child_subreaper() {
            crate::log!("PR_SET_CHILD_SUBREAPER after the restart: {e}");
        }
    }
}
