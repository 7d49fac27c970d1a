//! Process attributes that a restart puts back from the writer's own
//! memory (restored with the rest of the process) instead of an image
//! field. Read at every checkpoint before memory is captured, applied by
//! the restored process before its threads run again:
//!
//! - the child-subreaper flag (prctl PR_SET_CHILD_SUBREAPER), which /proc
//!   does not show;
//! - job control on the controlling terminal: a process that led its own
//!   process group there (an interactive shell, a job it started) leads
//!   one again, and the group that was the terminal's foreground is made
//!   the foreground again by its members (doc/design.md, "Job control").
//!   The restorer rebuilds groups below the tree's roots; a root (the
//!   process `ckpt launch` started, an interactive shell) starts in the
//!   restart's group, and leaves it here.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;
use crate::sys::tty;

/// The process was a child subreaper at the last checkpoint.
static SUBREAPER: AtomicBool = AtomicBool::new(false);
/// It led its own process group, on a controlling terminal whose
/// foreground group was one of the computation's.
static LED_GROUP: AtomicBool = AtomicBool::new(false);
/// Its process group was its terminal's foreground group.
static FOREGROUND: AtomicBool = AtomicBool::new(false);

/// The first of fds 0-2 that is the controlling terminal, with its
/// foreground group.
fn controlling_terminal() -> Option<(i32, i32)> {
    (0..=2).find_map(|fd| tty::foreground(fd).ok().map(|pg| (fd, pg)))
}

/// At checkpoint time, before memory is captured. `peers`: the other
/// processes of the computation (their groups count as its own).
pub fn capture(peers: &[i32]) {
    SUBREAPER.store(sys::child_subreaper(), Ordering::SeqCst);
    let me = sys::getpid();
    let mine = tty::pgid(0).unwrap_or(0);
    let (led, fg) = match controlling_terminal() {
        Some((_, fg)) => {
            let ours = fg == mine || peers.iter().any(|&p| tty::pgid(p).ok() == Some(fg));
            (mine == me && ours, fg == mine)
        }
        None => (false, false),
    };
    LED_GROUP.store(led, Ordering::SeqCst);
    FOREGROUND.store(fg, Ordering::SeqCst);
}

/// In the restored process, before its threads run again (every process
/// of the tree is in place by then, with its group).
pub fn after_restart() {
    if SUBREAPER.load(Ordering::SeqCst) {
        if let Err(e) = sys::set_child_subreaper() {
            crate::log!("PR_SET_CHILD_SUBREAPER after the restart: {e}");
        }
    }
    let me = sys::getpid();
    if LED_GROUP.load(Ordering::SeqCst) && tty::pgid(0).ok() != Some(me) {
        match tty::lead_group() {
            Ok(()) => crate::log!("job control: leads its own process group again"),
            Err(e) => crate::log!("job control: setpgid(0, 0): {e}"),
        }
    }
    if FOREGROUND.load(Ordering::SeqCst) {
        let Some((fd, _)) = controlling_terminal() else {
            crate::log!("job control: no controlling terminal to be the foreground of");
            return;
        };
        let pg = tty::pgid(0).unwrap_or(me);
        match tty::set_foreground(fd, pg) {
            Ok(()) => crate::log!("job control: process group {pg} is the terminal's foreground"),
            Err(e) => crate::log!("job control: tcsetpgrp({fd}, {pg}): {e}"),
        }
    }
}
