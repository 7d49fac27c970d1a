//! Process state restored with ordinary code before the final stage:
//! personality, umask, cwd, signal dispositions, rlimits (fds: `fds.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use ckpt_format::{Process, Rlimit, SignalState};

use crate::{log, sys};

pub fn basics(p: &Process) {
    if let Err(e) = sys::personality(p.personality) {
        log::warn(&format!("personality({:#x}): {e}", p.personality));
    }
    sys::umask(p.umask);
}

pub fn cwd(p: &Process) {
    if p.cwd.is_empty() {
        return;
    }
    if let Err(e) = std::env::set_current_dir(OsStr::from_bytes(&p.cwd)) {
        log::warn(&format!("chdir {}: {e}", String::from_utf8_lossy(&p.cwd)));
    }
}

/// Installs every disposition as the image recorded it (handlers and
/// sa_restorer point into the restored program). Signals are blocked.
pub fn sigactions(s: &SignalState) {
    for (i, a) in s.actions.iter().enumerate().take(64) {
        let sig = i as i32 + 1;
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if let Err(e) = sys::rt_sigaction(sig, a.handler, a.flags, a.restorer, a.mask) {
            log::warn(&format!("rt_sigaction({sig}): {e}"));
        }
    }
}

pub fn rlimits(v: &[Rlimit]) {
    for l in v {
        if let Err(e) = sys::setrlimit(l.resource, l.cur, l.max) {
            log::warn(&format!(
                "setrlimit({}, {}, {}): {e}; skipped",
                l.resource, l.cur, l.max
            ));
        }
    }
}
