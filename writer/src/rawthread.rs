//! The writer's threads, made so that glibc never hears of them.
//!
//! A thread started by pthread_create tells glibc, for good, that the
//! process is multi-threaded (`__libc_single_threaded` drops to 0): from
//! then on malloc takes arena locks, every cancellable wrapper (read,
//! write, ...) switches asynchronous cancellation on and off around its
//! system call, and stdio locks its streams. A program under ckpt paid for
//! that between checkpoints, only because the writer's checkpoint thread
//! existed (bench/overhead.py: malloc/free +70 %, write(2) +57 %).
//!
//! So the checkpoint thread and the compression workers are made with
//! clone(2) here, each with a thread control block and static TLS of its
//! own that the dynamic linker lays out and initialises (`_dl_allocate_tls`,
//! what pthread_create itself calls): errno, the locale and the writer's
//! own thread-locals are the thread's own. The rule that comes with it:
//! these threads never call anything whose locking glibc skips in a
//! single-threaded process (malloc, stdio, getaddrinfo, the dl* calls).
//! They allocate from the writer's allocator, format errors under the C
//! locale (no message catalogue is loaded), and reach the coordinator by
//! an address resolved before they exist. They also end when they have
//! nothing to do (lib.rs, `CKPT_RUNNING`), and a block is free again once
//! the kernel has cleared its thread's tid word.
//!
//! The blocks are prepared in the constructor, while the program is still
//! single-threaded and calloc is safe, and reused by fork children (which
//! have copies of them and none of the threads). If the dynamic linker
//! does not offer what is needed, the writer falls back on pthreads.
//! doc/design.md, "The writer's threads between checkpoints".

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sys;

/// Block of the checkpoint thread; the compression workers use 1..
pub const CKPT_THREAD: usize = 0;
const NBLOCKS: usize = 1 + crate::compress::MAX_WORKERS;
/// Room above the thread pointer for glibc's `struct pthread` (2304 bytes
/// in glibc 2.36).
const ABOVE_TP: usize = 8192;
/// tcbhead_t (x86-64): tcb at 0, dtv at 8, self at 16; from
/// multiple_threads (24) to feature_1 (72) the fields are copied from the
/// creating thread (stack guard at 40, pointer guard at 48).
const HEADER_COPY: std::ops::Range<usize> = 24..80;

static TP: [AtomicUsize; NBLOCKS] = [const { AtomicUsize::new(0) }; NBLOCKS];
static STACK_TOP: [AtomicUsize; NBLOCKS] = [const { AtomicUsize::new(0) }; NBLOCKS];
/// Offset of `tid` in glibc's `struct pthread` (0: unknown).
static TID_OFFSET: AtomicUsize = AtomicUsize::new(0);
/// The "C" locale object, for our threads' `uselocale`.
static C_LOCALE: AtomicUsize = AtomicUsize::new(0);
/// What each block's thread runs: `fn(usize)`, its argument, its name.
/// Statics, not a Box: `spawn` runs in a signal handler too, where the
/// interrupted thread may hold the allocator's lock.
static START_F: [AtomicUsize; NBLOCKS] = [const { AtomicUsize::new(0) }; NBLOCKS];
static START_ARG: [AtomicUsize; NBLOCKS] = [const { AtomicUsize::new(0) }; NBLOCKS];
static START_NAME: [AtomicUsize; NBLOCKS] = [const { AtomicUsize::new(0) }; NBLOCKS];
/// The CPUs the program started on: our threads run there, not on the one
/// CPU a program thread pinned itself to and started them from. Written
/// once in the constructor, read as words (no lock a fork could copy
/// held); all zero: unknown.
const AFFINITY_WORDS: usize = std::mem::size_of::<libc::cpu_set_t>() / 8;
static AFFINITY: [AtomicU64; AFFINITY_WORDS] = [const { AtomicU64::new(0) }; AFFINITY_WORDS];

/// The start-up CPU set, if known.
fn affinity() -> Option<libc::cpu_set_t> {
    let words: [u64; AFFINITY_WORDS] = std::array::from_fn(|i| AFFINITY[i].load(Ordering::Acquire));
    if words.iter().all(|&w| w == 0) {
        return None;
    }
    // SAFETY: cpu_set_t is a plain bit array of exactly these words.
    Some(unsafe { std::mem::transmute::<[u64; AFFINITY_WORDS], libc::cpu_set_t>(words) })
}

type StaticInfo = unsafe extern "C" fn(*mut usize, *mut usize);
type AllocateTls = unsafe extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;

/// Whether the writer's threads can be made here (`init` succeeded).
pub fn available() -> bool {
    TP[NBLOCKS - 1].load(Ordering::Acquire) != 0
}

/// Where glibc keeps the calling thread's tid in its `struct pthread`:
/// 16 bytes below the robust-list head it registered with the kernel
/// (`tid`, `pid_unused`, `robust_prev`, then `robust_head`), checked by
/// finding the tid there.
fn find_tid_offset(tp: usize) -> Option<usize> {
    let (head, _) = sys::get_robust_list();
    let head = head as usize;
    if head < tp + 64 || head > tp + ABOVE_TP / 2 {
        return None;
    }
    let off = head - 16 - tp;
    // SAFETY: tp..tp+off+4 is inside this thread's struct pthread (checked
    // against the robust-list head it contains).
    let tid = unsafe { std::ptr::read((tp + off) as *const i32) };
    (tid == sys::gettid()).then_some(off)
}

/// Prepares every block: stack, static TLS, thread control block. Called
/// once, from the constructor.
pub fn init() -> bool {
    let info = crate::mem::dlsym_default(b"_dl_get_tls_static_info\0");
    let alloc = crate::mem::dlsym_default(b"_dl_allocate_tls\0");
    if info.is_null() || alloc.is_null() {
        return false;
    }
    // SAFETY: the dynamic linker's functions, with their glibc signatures.
    let (info, alloc) = unsafe {
        (
            std::mem::transmute::<*const u8, StaticInfo>(info),
            std::mem::transmute::<*const u8, AllocateTls>(alloc),
        )
    };
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: two out-parameters.
    unsafe { info(&mut size, &mut align) };
    if size == 0 || size > 16 << 20 || !align.is_power_of_two() {
        return false;
    }
    let align = align.max(64);
    let cur = sys::get_fs_base() as usize;
    let Some(tid_off) = find_tid_offset(cur) else {
        return false;
    };
    // SAFETY: "C" names the built-in locale: glibc returns its static object.
    let c = unsafe { libc::newlocale(libc::LC_ALL_MASK, c"C".as_ptr(), std::ptr::null_mut()) };
    if c.is_null() {
        return false;
    }
    let mut tps = [0usize; NBLOCKS];
    for (i, slot) in tps.iter_mut().enumerate() {
        let stack = if i == CKPT_THREAD { 1 << 20 } else { 256 << 10 };
        let len = (4096 + stack + size + align + ABOVE_TP + 4095) & !4095;
        let base = sys::mmap_anon(len, libc::MAP_NORESERVE) as usize;
        if base == 0 {
            return false;
        }
        // SAFETY: the lowest page of our own fresh mapping becomes the guard.
        unsafe { libc::mprotect(base as *mut libc::c_void, 4096, libc::PROT_NONE) };
        let tp = (base + len - ABOVE_TP) & !(align - 1);
        // SAFETY: tp..tp+ABOVE_TP lies in our zeroed mapping; cur is this
        // thread's control block, whose header is at least 80 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (cur + HEADER_COPY.start) as *const u8,
                (tp + HEADER_COPY.start) as *mut u8,
                HEADER_COPY.len(),
            );
            *(tp as *mut usize) = tp; // tcb
            *((tp + 16) as *mut usize) = tp; // self
            *((tp + 28) as *mut i32) = 0; // gscope_flag
        }
        // SAFETY: tp has `size` bytes of static TLS below it and the TCB
        // above it in our mapping; the dynamic linker installs a dtv (calloc:
        // safe now, the program is single-threaded) and copies every
        // module's initial TLS image.
        if unsafe { alloc(tp as *mut libc::c_void) }.is_null() {
            return false;
        }
        *slot = tp;
        STACK_TOP[i].store((tp - size - 64) & !15, Ordering::Release);
    }
    // SAFETY: a zeroed cpu_set_t of its own size, filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let words = std::mem::transmute::<libc::cpu_set_t, [u64; AFFINITY_WORDS]>(set);
            for (a, w) in AFFINITY.iter().zip(words) {
                a.store(w, Ordering::Release);
            }
        }
    }
    TID_OFFSET.store(tid_off, Ordering::Release);
    C_LOCALE.store(c as usize, Ordering::Release);
    for (i, tp) in tps.iter().enumerate() {
        TP[i].store(*tp, Ordering::Release);
    }
    true
}

/// The CPUs the program started on, counted (at least 1).
pub fn cpus() -> usize {
    match affinity() {
        // SAFETY: counting bits of an initialised set.
        Some(set) => (unsafe { libc::CPU_COUNT(&set) } as usize).max(1),
        None => sys::cpus_allowed(),
    }
}

/// The word glibc keeps block `block`'s thread id in: set by the kernel
/// when the thread starts, cleared (and futex-woken) when it has ended.
fn tid_word(block: usize) -> Option<&'static std::sync::atomic::AtomicU32> {
    let tp = TP.get(block)?.load(Ordering::Acquire);
    if tp == 0 {
        return None;
    }
    // SAFETY: tp + TID_OFFSET is the 4-byte aligned tid field of the
    // block's struct pthread, in our mapping for the life of the process.
    Some(unsafe {
        &*((tp + TID_OFFSET.load(Ordering::Acquire)) as *const std::sync::atomic::AtomicU32)
    })
}

/// In a fork child: the parent's threads are not here; their blocks are free.
pub fn after_fork() {
    for b in 0..NBLOCKS {
        if let Some(w) = tid_word(b) {
            w.store(0, Ordering::Release);
        }
    }
}

extern "C" fn entry(p: *mut libc::c_void) -> libc::c_int {
    let b = p as usize;
    let f = START_F[b].load(Ordering::Acquire);
    let arg = START_ARG[b].load(Ordering::Acquire);
    let name = START_NAME[b].load(Ordering::Acquire) as *const libc::c_char;
    // SAFETY: a NUL-terminated static name; the C locale object from init;
    // a cpu set copied from init.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name);
        libc::uselocale(C_LOCALE.load(Ordering::Acquire) as libc::locale_t);
        if let Some(set) = affinity() {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    // SAFETY: stored by spawn from a `fn(usize)`.
    let f = unsafe { std::mem::transmute::<usize, fn(usize)>(f) };
    f(arg);
    0
}

/// Starts `f(arg)` as a thread named `name` on block `block`, with the
/// caller's signal mask; its tid, or None (nothing started). Waits (up to
/// a second) for the block's last thread to have ended. Allocates nothing
/// and takes no lock: safe in a signal handler. One caller per block at a
/// time (the callers' own state machines see to it).
pub fn spawn(block: usize, name: &'static std::ffi::CStr, f: fn(usize), arg: usize) -> Option<i32> {
    let tp = TP.get(block)?.load(Ordering::Acquire);
    let word = tid_word(block)?;
    for _ in 0..100 {
        let t = word.load(Ordering::Acquire);
        if t == 0 {
            break;
        }
        sys::futex_wait_shared(word, t, 10);
    }
    if word.load(Ordering::Acquire) != 0 {
        return None;
    }
    START_F[block].store(f as usize, Ordering::Release);
    START_ARG[block].store(arg, Ordering::Release);
    START_NAME[block].store(name.as_ptr() as usize, Ordering::Release);
    let tidp = word.as_ptr() as *mut libc::pid_t;
    let flags = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    // SAFETY: the new thread runs `entry` on its own stack (STACK_TOP, in our
    // mapping) with its own thread pointer (tp, initialised in init); glibc's
    // clone wrapper ends it with exit(2) when `entry` returns, and the kernel
    // then clears the tid word. The real clone is called: ours is for the
    // program's.
    let tid = unsafe {
        crate::interpose::real_clone()(
            entry,
            STACK_TOP[block].load(Ordering::Acquire) as *mut libc::c_void,
            flags,
            block as *mut libc::c_void,
            tidp,
            tp as *mut libc::c_void,
            tidp,
        )
    };
    (tid > 0).then_some(tid)
}
