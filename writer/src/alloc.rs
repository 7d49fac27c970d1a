//! The writer's own allocator: never libc malloc.
//!
//! Main arena: 16 MiB mmap'd blocks, bump allocation, power-of-two size
//! classes with free lists, big blocks mmap'd directly; a spinlock, which a
//! program thread in the writer's code (exec and spawn wrappers, fork
//! handlers) takes with the checkpoint signal blocked once the process is
//! connected, so that no thread is ever stopped holding it. Scratch arena: one big reservation, lock-free bump, used by
//! every allocation while `SCRATCH_MODE` is on (the write phase), reset per
//! checkpoint and left out of the image. While scratch mode is on, frees of
//! main-arena blocks are ignored so the main arena is frozen while it is read.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::sys;

const CLASSES: usize = 13; // 16 .. 64 KiB
const MIN_SHIFT: usize = 4;
const BLOCK: usize = 16 << 20;
/// Scratch reservation (address space only; MAP_NORESERVE).
pub const SCRATCH_LEN: u64 = 8 << 30;

pub static SCRATCH_MODE: AtomicBool = AtomicBool::new(false);
pub static SCRATCH_BASE: AtomicU64 = AtomicU64::new(0);
static SCRATCH_TOP: AtomicU64 = AtomicU64::new(0);

struct Main {
    free: [usize; CLASSES],
    cur: usize,
    end: usize,
}

static LOCK: AtomicBool = AtomicBool::new(false);
static mut MAIN: Main = Main {
    free: [0; CLASSES],
    cur: 0,
    end: 0,
};
static BIG_MAPPED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set in the writer's own threads (`mark_writer_thread`).
    static WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The calling thread is one of the writer's (checkpoint thread, worker).
pub fn mark_writer_thread() {
    WRITER_THREAD.with(|w| w.set(true));
}

/// Takes the arena lock. A program thread in the writer's code (an exec
/// or spawn wrapper, a fork handler) takes it with the checkpoint signal
/// blocked: stopped or held in the handler while holding it, it would
/// leave the checkpoint thread spinning on it (forever, for a stopped
/// one). Returns the mask to put back (None: unchanged).
fn lock() -> Option<u64> {
    // Before this process is connected (the constructor, a fork child's
    // handler) no checkpoint can stop it: no system call then.
    let old = (crate::welcomed() && !WRITER_THREAD.with(|w| w.get())).then(|| {
        let bit = 1u64 << (crate::suspend::SIGNO.load(Ordering::Relaxed) - 1);
        sys::sigmask(libc::SIG_BLOCK, Some(bit))
    });
    lock_raw();
    old
}
fn unlock(old: Option<u64>) {
    LOCK.store(false, Ordering::Release);
    if let Some(m) = old {
        sys::sigmask(libc::SIG_SETMASK, Some(m));
    }
}
fn lock_raw() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn class_of(size: usize) -> Option<usize> {
    let s = size.max(1 << MIN_SHIFT).next_power_of_two();
    let c = s.trailing_zeros() as usize - MIN_SHIFT;
    (c < CLASSES).then_some(c)
}

/// Maps (or re-maps after a restart) the scratch arena.
pub fn init_scratch() -> bool {
    let p = sys::mmap_anon(SCRATCH_LEN as usize, libc::MAP_NORESERVE);
    if p.is_null() {
        return false;
    }
    SCRATCH_BASE.store(p as u64, Ordering::SeqCst);
    SCRATCH_TOP.store(p as u64, Ordering::SeqCst);
    true
}

/// (start, end) of the scratch arena.
pub fn scratch_range() -> (u64, u64) {
    let b = SCRATCH_BASE.load(Ordering::SeqCst);
    (b, b + SCRATCH_LEN)
}

/// Discards everything allocated in the scratch arena.
pub fn reset_scratch() {
    let b = SCRATCH_BASE.load(Ordering::SeqCst);
    let top = SCRATCH_TOP.swap(b, Ordering::SeqCst);
    crate::debug!("scratch arena: {} KiB used", (top - b) >> 10);
    if top > b {
        sys::madvise_dontneed(b, (top - b + 4095) & !4095);
    }
}

fn in_scratch(p: usize) -> bool {
    let b = SCRATCH_BASE.load(Ordering::Relaxed) as usize;
    b != 0 && p >= b && p < b + SCRATCH_LEN as usize
}

fn scratch_alloc(l: Layout) -> *mut u8 {
    let align = l.align().max(16) as u64;
    let size = (l.size() as u64 + 15) & !15;
    let base = SCRATCH_BASE.load(Ordering::Relaxed);
    loop {
        let top = SCRATCH_TOP.load(Ordering::Relaxed);
        let start = (top + align - 1) & !(align - 1);
        let end = start + size;
        if end > base + SCRATCH_LEN {
            return std::ptr::null_mut();
        }
        if SCRATCH_TOP
            .compare_exchange_weak(top, end, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return start as *mut u8;
        }
    }
}

pub struct WriterAlloc;

// SAFETY: blocks handed out are disjoint, aligned and at least `size`
// bytes; all shared state is behind the spinlock or atomics.
unsafe impl GlobalAlloc for WriterAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if SCRATCH_MODE.load(Ordering::Relaxed) && SCRATCH_BASE.load(Ordering::Relaxed) != 0 {
            return scratch_alloc(l);
        }
        let need = l.size().max(l.align());
        match class_of(need) {
            Some(c) => {
                let mask = lock();
                // SAFETY: MAIN is only touched under LOCK.
                let m = unsafe { &mut *std::ptr::addr_of_mut!(MAIN) };
                let p = if m.free[c] != 0 {
                    let p = m.free[c];
                    // SAFETY: a free block's first word links to the next.
                    m.free[c] = unsafe { *(p as *const usize) };
                    p
                } else {
                    let sz = 1usize << (c + MIN_SHIFT);
                    let start = (m.cur + sz - 1) & !(sz - 1);
                    if m.cur == 0 || start + sz > m.end {
                        let b = sys::mmap_anon(BLOCK, 0);
                        if b.is_null() {
                            unlock(mask);
                            return std::ptr::null_mut();
                        }
                        m.cur = b as usize;
                        m.end = b as usize + BLOCK;
                    }
                    let start = (m.cur + sz - 1) & !(sz - 1);
                    m.cur = start + sz;
                    start
                };
                unlock(mask);
                p as *mut u8
            }
            None => {
                let len = (need + 4095) & !4095;
                BIG_MAPPED.fetch_add(len, Ordering::Relaxed);
                sys::mmap_anon(len, 0)
            }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if in_scratch(p as usize) {
            // Only the most recent block can be given back (LIFO).
            let end = p as u64 + ((l.size() as u64 + 15) & !15);
            let _ =
                SCRATCH_TOP.compare_exchange(end, p as u64, Ordering::Relaxed, Ordering::Relaxed);
            return;
        }
        if SCRATCH_MODE.load(Ordering::Relaxed) {
            return; // the main arena is frozen during the write phase
        }
        let need = l.size().max(l.align());
        match class_of(need) {
            Some(c) => {
                let mask = lock();
                // SAFETY: MAIN is only touched under LOCK; p is a block of class c.
                unsafe {
                    let m = &mut *std::ptr::addr_of_mut!(MAIN);
                    *(p as *mut usize) = m.free[c];
                    m.free[c] = p as usize;
                }
                unlock(mask);
            }
            None => sys::munmap(p as u64, ((need + 4095) & !4095) as u64),
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // Grow in place at the top of the scratch arena (Vec doubling).
        if in_scratch(p as usize) && SCRATCH_MODE.load(Ordering::Relaxed) {
            let old_end = p as u64 + ((l.size() as u64 + 15) & !15);
            let new_end = p as u64 + ((new as u64 + 15) & !15);
            let base = SCRATCH_BASE.load(Ordering::Relaxed);
            if new_end <= base + SCRATCH_LEN
                && SCRATCH_TOP
                    .compare_exchange(old_end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return p;
            }
        } else if !in_scratch(p as usize) {
            if let (Some(a), Some(b)) = (
                class_of(l.size().max(l.align())),
                class_of(new.max(l.align())),
            ) {
                if a == b {
                    return p;
                }
            }
        }
        // SAFETY: same contract as GlobalAlloc::realloc's default.
        unsafe {
            let nl = Layout::from_size_align_unchecked(new, l.align());
            let q = self.alloc(nl);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new));
                self.dealloc(p, l);
            }
            q
        }
    }
}

/// Held across fork so the child never inherits a locked arena (the fork
/// handlers block the checkpoint signal themselves).
pub fn fork_lock() {
    lock_raw();
}
pub fn fork_unlock() {
    LOCK.store(false, Ordering::Release);
}
