//! Thread suspension: the checkpoint signal handler, per-thread slots,
//! the suspend/release and restart-arrival futexes.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use crate::ctx::{ckpt_save_context, RawResume};
use crate::sys;

pub const MAX_THREADS: usize = 512;
/// si_code of a signal raised by an O_ASYNC file's readiness (F_SETSIG):
/// POLL_IN (1) to POLL_HUP (6).
const POLL_IN: i32 = 1;
const POLL_HUP: i32 = 6;
pub const XSAVE_MAX: usize = 16384;

/// What a thread records about itself.
#[repr(C)]
pub struct Slot {
    pub tid: AtomicI32,
    /// Set by the handler once the slot is complete (this checkpoint).
    pub done: AtomicU32,
    /// gregs in ucontext order (23 words).
    pub gregs: [u64; 23],
    pub fs_base: u64,
    pub xsave: [u8; XSAVE_MAX],
    pub xsave_len: usize,
    pub sigmask: u64,
    pub ss: (u64, i32, u64),
    pub robust: (u64, u64),
    pub ctid: u64,
    pub resume: RawResume,
}

pub struct Slots(pub std::cell::UnsafeCell<[Slot; MAX_THREADS]>);
// SAFETY: each slot is written by one thread (its owner) while the
// checkpoint thread waits, and read by the checkpoint thread afterwards;
// the SUSPENDED futex orders the two.
unsafe impl Sync for Slots {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    tid: AtomicI32::new(0),
    done: AtomicU32::new(0),
    gregs: [0; 23],
    fs_base: 0,
    xsave: [0; XSAVE_MAX],
    xsave_len: 0,
    sigmask: 0,
    ss: (0, 0, 0),
    robust: (0, 0),
    ctid: 0,
    resume: RawResume {
        rip: 0,
        rsp: 0,
        rbx: 0,
        rbp: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
    },
};

pub static SLOTS: Slots = Slots(std::cell::UnsafeCell::new([EMPTY; MAX_THREADS]));
pub static NSLOTS: AtomicU32 = AtomicU32::new(0);
/// Odd while a checkpoint holds threads; incremented to release them.
pub static RELEASE_GEN: AtomicU32 = AtomicU32::new(0);
/// Threads that saved their state this checkpoint.
pub static SUSPENDED: AtomicU32 = AtomicU32::new(0);
/// Threads that reached their restarted path.
pub static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// The checkpoint signal.
pub static SIGNO: AtomicI32 = AtomicI32::new(62);
/// rseq: offset from the thread pointer and size (0 = not registered).
pub static RSEQ_OFFSET: AtomicU64 = AtomicU64::new(0);
pub static RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);

/// Raw pointer to slot `i`.
pub fn slot(i: usize) -> *mut Slot {
    // SAFETY: index checked by the callers (< MAX_THREADS); no reference is formed.
    unsafe { (SLOTS.0.get() as *mut Slot).add(i) }
}

fn find_slot(tid: i32) -> Option<*mut Slot> {
    let n = NSLOTS.load(Ordering::Acquire) as usize;
    (0..n.min(MAX_THREADS)).map(slot).find(|&s| {
        // SAFETY: s points into SLOTS; tid is atomic.
        unsafe { (*s).tid.load(Ordering::Acquire) == tid }
    })
}

/// Fills the per-thread kernel state every thread records.
fn fill_common(s: *mut Slot) {
    // SAFETY: only the owning thread writes its slot while the checkpoint thread waits.
    unsafe {
        (*s).fs_base = sys::get_fs_base();
        (*s).ss = sys::sigaltstack_get();
        (*s).robust = sys::get_robust_list();
        (*s).ctid = sys::get_tid_address();
    }
}

/// The checkpoint signal handler (SA_SIGINFO, full sa_mask).
pub extern "C" fn handler(_sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: errno is this thread's TLS word.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel's siginfo for this delivery.
    let code = unsafe { (*(info as *const libc::siginfo_t)).si_code };
    if (POLL_IN..=POLL_HUP).contains(&code) {
        // The coordinator socket (O_ASYNC) has a word for us.
        crate::on_coordinator_word();
        // SAFETY: restoring this thread's errno.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    let g = RELEASE_GEN.load(Ordering::Acquire);
    let s = match find_slot(sys::gettid()) {
        Some(s) if g & 1 == 1 => s,
        _ => return,
    };
    // SAFETY: uc is the kernel's ucontext for this delivery; fpregs points at
    // the XSAVE area in the same signal frame; we copy at most XSAVE_MAX bytes.
    unsafe {
        let uc = &*(uc as *const libc::ucontext_t);
        for (i, g) in uc.uc_mcontext.gregs.iter().enumerate() {
            (*s).gregs[i] = *g as u64;
        }
        (*s).sigmask = *(std::ptr::addr_of!(uc.uc_sigmask) as *const u64);
        let fp = uc.uc_mcontext.fpregs as *const u8;
        let mut len = 0usize;
        if !fp.is_null() {
            len = 512;
            let magic1 = std::ptr::read_unaligned(fp.add(464) as *const u32);
            let ext = std::ptr::read_unaligned(fp.add(468) as *const u32) as usize;
            if magic1 == 0x4650_5853 && ext >= 512 {
                len = ext;
            }
            len = len.min(XSAVE_MAX);
            std::ptr::copy_nonoverlapping(fp, (*s).xsave.as_mut_ptr(), len);
        }
        (*s).xsave_len = len;
    }
    fill_common(s);
    crate::signals::take_thread_pending(s);
    // SAFETY: resume points into our slot.
    let restarted = unsafe { ckpt_save_context(std::ptr::addr_of_mut!((*s).resume)) };
    if restarted == 0 {
        // SAFETY: our slot; the atomic publishes everything written above.
        unsafe { (*s).done.store(1, Ordering::Release) };
        SUSPENDED.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake(&SUSPENDED);
    } else {
        ARRIVED.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake(&ARRIVED);
    }
    while RELEASE_GEN.load(Ordering::Acquire) == g {
        sys::futex_wait(&RELEASE_GEN, g, 0);
    }
    crate::signals::after_release(s, restarted != 0);
    // SAFETY: restoring this thread's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// A writer thread records itself in slot `i` (everything but the resume
/// context). The caller then calls `ckpt_save_context(resume_ptr(i))`
/// itself, directly in the frame that stays live during the write phase:
/// a wrapper's frame would be overwritten by later calls, and the restored
/// thread would return through garbage.
pub fn prepare_self(i: usize) {
    let s = slot(i);
    // SAFETY: slot i belongs to the calling writer thread.
    unsafe {
        (*s).tid.store(sys::gettid(), Ordering::Release);
        (*s).xsave_len = 0;
        (*s).sigmask = sys::sigmask(libc::SIG_BLOCK, None);
    }
    fill_common(s);
}

/// Where slot `i`'s resume context goes.
pub fn resume_ptr(i: usize) -> *mut RawResume {
    // SAFETY: projecting a field pointer, no reference formed.
    unsafe { std::ptr::addr_of_mut!((*slot(i)).resume) }
}

/// A forked child starts with no checkpoint in progress.
pub fn reset_after_fork() {
    let g = RELEASE_GEN.load(Ordering::Acquire);
    RELEASE_GEN.store(g + (g & 1), Ordering::Release);
    SUSPENDED.store(0, Ordering::Release);
    ARRIVED.store(0, Ordering::Release);
    NSLOTS.store(0, Ordering::Release);
}

pub fn release_all() {
    RELEASE_GEN.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&RELEASE_GEN);
}

/// Installs the handler with the real sigaction.
pub fn install(signo: i32) -> bool {
    // SAFETY: a zeroed sigaction with a valid handler and a full mask.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigfillset(&mut sa.sa_mask);
        crate::interpose::real_sigaction(signo, &sa, std::ptr::null_mut()) == 0
    }
}
