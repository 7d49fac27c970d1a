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
//!   restart's group, and leaves it here;
//! - a stopped process (SIGSTOP, ^Z): its writer is stopped with it, so
//!   another process of the computation continues it for the checkpoint
//!   when the coordinator asks ([`continue_stopped`]); told so, it stops
//!   again once the checkpoint is over, and a process restored from that
//!   checkpoint stops once it is connected to the coordinator, before
//!   its threads run ([`after_restart`], [`connected`]).

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
/// It was stopped when the checkpoint under way began (set before its
/// memory is captured, so a restored process knows it too).
static STOPPED: AtomicBool = AtomicBool::new(false);
/// A restored process that stops once connected: its threads wait.
static HELD: AtomicBool = AtomicBool::new(false);

/// The inode of this process's pid namespace (0 if unknown).
pub fn pid_ns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// The coordinator's `WasStopped`: this process was stopped.
pub fn set_stopped() {
    STOPPED.store(true, Ordering::SeqCst);
}

/// The process state letter of /proc/`pid`/stat.
fn state_of(pid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat.get(close + 2).copied()
}

/// The coordinator's `Continue`: SIGCONT to those of `pids` that are
/// stopped (state T; not t, a tracer's stop). Returns them.
pub fn continue_stopped(pids: &[i32]) -> Vec<i32> {
    let mut out = Vec::new();
    for &pid in pids {
        if state_of(pid) != Some(b'T') {
            continue;
        }
        match sys::signal_process(pid, libc::SIGCONT) {
            Ok(()) => {
                crate::log!("pid {pid} is stopped: continued for the checkpoint");
                out.push(pid);
            }
            Err(e) => crate::log!("pid {pid} is stopped: SIGCONT: {e}"),
        }
    }
    out
}

/// Once the checkpoint is over (written, failed or abandoned): a process
/// continued for it stops again.
pub fn after_checkpoint() {
    if STOPPED.swap(false, Ordering::SeqCst) {
        crate::log!("stopped when the checkpoint began: stops again");
        stop_self();
    }
}

fn stop_self() {
    if let Err(e) = sys::signal_process(sys::getpid(), libc::SIGSTOP) {
        crate::log!("SIGSTOP: {e}");
    }
}

/// A restored process, once its connection to the coordinator is up (or
/// could not be made): one that was stopped at checkpoint time stops now
/// (its parent sees it stop), and its threads run once it is continued.
pub fn connected() {
    if HELD.swap(false, Ordering::SeqCst) {
        crate::log!("stopped at checkpoint time: stops again");
        stop_self();
        crate::suspend::release_all();
    }
}

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
/// of the tree is in place by then, with its group). False: the threads
/// wait until [`connected`] (the process was stopped).
pub fn after_restart() -> bool {
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
        match controlling_terminal() {
            Some((fd, _)) => {
                let pg = tty::pgid(0).unwrap_or(me);
                match tty::set_foreground(fd, pg) {
                    Ok(()) => {
                        crate::log!("job control: process group {pg} is the terminal's foreground")
                    }
                    Err(e) => crate::log!("job control: tcsetpgrp({fd}, {pg}): {e}"),
                }
            }
            None => crate::log!("job control: no controlling terminal to be the foreground of"),
        }
    }
    let held = STOPPED.swap(false, Ordering::SeqCst);
    HELD.store(held, Ordering::SeqCst);
    !held
}
