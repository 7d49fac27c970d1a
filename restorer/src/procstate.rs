//! Process state restored with ordinary code before the final stage:
//! personality, umask, cwd, signal dispositions, rlimits, scheduling
//! policy and nice value (fds: `fds.rs`); and the final stage's
//! operations for pending signals and POSIX timers, which need the
//! threads to exist.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use ckpt_format::{PendingSignal, PosixTimer, Process, Rlimit, SignalState, Timers};

use crate::plan::Plan;
use crate::{blob, image::Image, log, sys};

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

/// Scheduling policy and nice value, set on the restorer's thread: the
/// final stage's clone3 calls hand them to every thread. Done last, so a
/// SCHED_IDLE image does not slow the restore down.
pub fn sched(p: &Process) {
    if let Err(e) = sys::sched_set(p.sched_policy) {
        log::warn(&format!("scheduling policy {}: {e}", p.sched_policy));
    }
    if let Err(e) = sys::set_nice(p.nice) {
        log::warn(&format!("nice {}: {e}", p.nice));
    }
}

/// A kernel `siginfo_t` from an image's pending signal (spec §4.0: pid,
/// uid and value are the first words of the union).
fn siginfo(p: &PendingSignal) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[0..4].copy_from_slice(&p.signo.to_le_bytes());
    b[4..8].copy_from_slice(&p.errno.to_le_bytes());
    b[8..12].copy_from_slice(&p.code.to_le_bytes());
    b[16..20].copy_from_slice(&p.pid.to_le_bytes());
    b[20..24].copy_from_slice(&p.uid.to_le_bytes());
    b[24..32].copy_from_slice(&p.value.to_le_bytes());
    b
}

/// Final-stage operations, after every other thread was created and
/// before the leader resumes (every thread still blocks every signal):
/// queue the process-wide pending signals in the image's order (the
/// restorer is the leader: the kernel lets only the leader queue a
/// kill()-like `si_code` to its process) and create and arm the POSIX
/// timers with their ids. Each thread's own pending signals are queued by
/// the thread itself when the writer releases it (doc/design.md).
pub fn pending_and_timers(img: &Image, plan: &mut Plan) -> Result<(), String> {
    let pid = img.process.pid.0 as u64;
    if let Some(s) = &img.signals {
        for p in &s.pending {
            let a = plan.data(&siginfo(p));
            plan.syscall(
                &format!("rt_sigqueueinfo signal {}", p.signo),
                libc::SYS_rt_sigqueueinfo as u64,
                [pid, p.signo as u64, a, 0, 0, 0],
                blob::CHECK_ERR,
                0,
            );
        }
    }
    if let Some(t) = &img.timers {
        posix_timers(t, plan)?;
    }
    Ok(())
}

fn posix_timers(t: &Timers, plan: &mut Plan) -> Result<(), String> {
    if t.posix.is_empty() {
        return Ok(());
    }
    if !sys::timer_restore_ids_supported() {
        return Err(format!(
            "the image has {} POSIX timer(s), and this kernel cannot create a timer \
             with a given id (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.16)",
            t.posix.len()
        ));
    }
    let prctl = |plan: &mut Plan, on: u64| {
        plan.syscall(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS)",
            libc::SYS_prctl as u64,
            [sys::PR_TIMER_CREATE_RESTORE_IDS, on, 0, 0, 0, 0],
            blob::CHECK_ERR,
            0,
        )
    };
    prctl(plan, 1);
    for pt in &t.posix {
        create_timer(pt, plan);
    }
    prctl(plan, 0);
    Ok(())
}

fn create_timer(pt: &PosixTimer, plan: &mut Plan) {
    // struct sigevent: value, signo, notify, then the thread id.
    let mut ev = [0u8; 64];
    ev[0..8].copy_from_slice(&pt.value.to_le_bytes());
    ev[8..12].copy_from_slice(&pt.signo.to_le_bytes());
    ev[12..16].copy_from_slice(&pt.notify.to_le_bytes());
    ev[16..20].copy_from_slice(&pt.notify_tid.0.to_le_bytes());
    let ev = plan.data(&ev);
    let id = plan.data(&pt.id.to_le_bytes());
    plan.syscall(
        &format!("timer_create id {}", pt.id),
        libc::SYS_timer_create as u64,
        [pt.clock as u32 as u64, ev, id, 0, 0, 0],
        blob::CHECK_ERR,
        0,
    );
    if pt.timer.value_ns == 0 {
        return; // disarmed
    }
    let ts = |ns: u64| [ns / 1_000_000_000, ns % 1_000_000_000];
    let words = [ts(pt.timer.interval_ns), ts(pt.timer.value_ns)].concat();
    let b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let its = plan.data(&b);
    plan.syscall(
        &format!("timer_settime id {}", pt.id),
        libc::SYS_timer_settime as u64,
        [pt.id as u64, 0, its, 0, 0, 0],
        blob::CHECK_ERR,
        0,
    );
}
