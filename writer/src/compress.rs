//! Parallel zstd compression of page runs: N-1 worker threads sleeping on
//! a futex plus the checkpoint thread. zstd runs on static contexts whose
//! memory comes from our allocator (the scratch arena during the write
//! phase), never from libc malloc.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use crate::ctx::ckpt_save_context;
use crate::suspend::{self, ARRIVED};
use crate::sys;

pub mod cache;

pub const CMD_SAVE: u32 = 1;
pub const CMD_COMPRESS: u32 = 2;
/// The worker acknowledges and ends (the writer's own threads, after a
/// checkpoint).
pub const CMD_EXIT: u32 = 3;
pub const MAX_WORKERS: usize = 3;

pub static NWORKERS: AtomicUsize = AtomicUsize::new(0);
pub static WORKER_TIDS: [AtomicI32; MAX_WORKERS] = [const { AtomicI32::new(0) }; MAX_WORKERS];
pub static WORK_GEN: AtomicU32 = AtomicU32::new(0);
pub static WORK_CMD: AtomicU32 = AtomicU32::new(0);
/// Workers that answered the current command.
pub static WORK_ACK: AtomicU32 = AtomicU32::new(0);

/// One run of pages to encode.
pub struct Job {
    pub region: u32,
    pub addr: u64,
    pub pages: u32,
    /// Readable in place (else through /proc/self/mem).
    pub direct: bool,
    /// Our own threads write these pages during the write phase: compress
    /// a private copy, never the live bytes.
    pub volatile: bool,
    /// Its encoding kept from the last checkpoint (see `cache`).
    pub reuse: Option<cache::Kept>,
}

/// Result of a job: 0 pending, 1 zstd frame at (ptr, len), 2 store raw.
pub struct JobResult {
    pub state: AtomicU32,
    pub ptr: AtomicUsize,
    pub len: AtomicUsize,
}

static JOBS: AtomicUsize = AtomicUsize::new(0);
static RESULTS: AtomicUsize = AtomicUsize::new(0);
static NJOBS: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
pub static DONE: AtomicU32 = AtomicU32::new(0);
static LEVEL: AtomicI32 = AtomicI32::new(1);

/// A static zstd compression context on memory from our allocator.
pub struct Cctx {
    cctx: *mut zstd_sys::ZSTD_CCtx,
    _mem: Vec<u8>,
    /// Output buffer reused for every chunk (the scratch arena never frees).
    out: std::cell::RefCell<Vec<u8>>,
    /// Input buffer for pages read through /proc/self/mem.
    inbuf: std::cell::RefCell<Vec<u8>>,
}

impl Cctx {
    pub fn new(level: i32) -> Option<Cctx> {
        // SAFETY: pure size computation.
        let size = unsafe { zstd_sys::ZSTD_estimateCCtxSize(level) };
        let mut mem = vec![0u8; size + 64];
        let off = mem.as_ptr().align_offset(8);
        // SAFETY: the workspace is ours, 8-aligned, and outlives the context.
        let cctx = unsafe {
            zstd_sys::ZSTD_initStaticCCtx(mem.as_mut_ptr().add(off) as *mut libc::c_void, size)
        };
        // SAFETY: pure size computation.
        let cap = unsafe { zstd_sys::ZSTD_compressBound(256 * 4096) };
        (!cctx.is_null()).then_some(Cctx {
            cctx,
            _mem: mem,
            out: std::cell::RefCell::new(vec![0u8; cap]),
            inbuf: std::cell::RefCell::new(Vec::new()),
        })
    }

    /// Compresses `src`; None if it does not get smaller.
    pub fn compress(&self, src: &[u8], level: i32) -> Option<Vec<u8>> {
        // SAFETY: pure size computation.
        let cap = unsafe { zstd_sys::ZSTD_compressBound(src.len()) };
        let mut out = self.out.borrow_mut();
        if out.len() < cap {
            out.resize(cap, 0);
        }
        // SAFETY: valid context, buffers of the given sizes.
        let n = unsafe {
            zstd_sys::ZSTD_compressCCtx(
                self.cctx,
                out.as_mut_ptr() as *mut libc::c_void,
                cap,
                src.as_ptr() as *const libc::c_void,
                src.len(),
                level,
            )
        };
        // SAFETY: pure check of a return code.
        if unsafe { zstd_sys::ZSTD_isError(n) } != 0 || n >= src.len() {
            return None;
        }
        Some(out[..n].to_vec())
    }
}

fn jobs() -> (&'static [Job], &'static [JobResult]) {
    let n = NJOBS.load(Ordering::Acquire);
    // SAFETY: JOBS/RESULTS point to leaked scratch vectors of n elements that
    // live until the write phase ends; workers only touch them while a
    // COMPRESS command is active (the checkpoint thread waits for their ack).
    unsafe {
        (
            std::slice::from_raw_parts(JOBS.load(Ordering::Acquire) as *const Job, n),
            std::slice::from_raw_parts(RESULTS.load(Ordering::Acquire) as *const JobResult, n),
        )
    }
}

/// Takes and compresses jobs until none is left.
pub fn run_jobs(c: &Cctx) {
    while help(c) {}
}

/// Takes and compresses one job; false when none is left.
pub fn help(c: &Cctx) -> bool {
    let (jobs, res) = jobs();
    let level = LEVEL.load(Ordering::Relaxed);
    let i = NEXT.fetch_add(1, Ordering::AcqRel);
    if i >= jobs.len() {
        return false;
    }
    let j = &jobs[i];
    if let Some(kept) = j.reuse {
        match kept {
            cache::Kept::Frame(p, l) => {
                res[i].ptr.store(p, Ordering::Relaxed);
                res[i].len.store(l, Ordering::Relaxed);
                res[i].state.store(1, Ordering::Release);
            }
            cache::Kept::Raw => res[i].state.store(2, Ordering::Release),
        }
        DONE.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake(&DONE);
        return true;
    }
    let len = j.pages as u64 * 4096;
    let mut inbuf = c.inbuf.borrow_mut();
    let src = if j.direct && !j.volatile {
        crate::mem::slice(j.addr, len)
    } else if j.direct {
        inbuf.resize(len as usize, 0);
        crate::mem::copy_into(j.addr, &mut inbuf);
        &inbuf[..]
    } else {
        inbuf.resize(len as usize, 0);
        crate::mem::read_pages(j.addr, false, &mut inbuf);
        &inbuf[..]
    };
    match c.compress(src, level) {
        Some(v) => {
            let b = Box::leak(v.into_boxed_slice());
            res[i].ptr.store(b.as_ptr() as usize, Ordering::Relaxed);
            res[i].len.store(b.len(), Ordering::Relaxed);
            res[i].state.store(1, Ordering::Release);
        }
        None => res[i].state.store(2, Ordering::Release),
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&DONE);
    true
}

/// Publishes jobs (leaked into the scratch arena) and wakes the workers.
pub fn start(list: Vec<Job>, level: i32) -> usize {
    let n = list.len();
    let res: Vec<JobResult> = (0..n)
        .map(|_| JobResult {
            state: AtomicU32::new(0),
            ptr: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
        })
        .collect();
    JOBS.store(
        Box::leak(list.into_boxed_slice()).as_ptr() as usize,
        Ordering::Release,
    );
    RESULTS.store(
        Box::leak(res.into_boxed_slice()).as_ptr() as usize,
        Ordering::Release,
    );
    NJOBS.store(n, Ordering::Release);
    NEXT.store(0, Ordering::Release);
    DONE.store(0, Ordering::Release);
    LEVEL.store(level, Ordering::Release);
    command(CMD_COMPRESS);
    n
}

/// The jobs and results of the current write phase.
pub fn current() -> (&'static [Job], &'static [JobResult]) {
    jobs()
}

/// Sends a command to every worker.
pub fn command(cmd: u32) {
    WORK_ACK.store(0, Ordering::Release);
    WORK_CMD.store(cmd, Ordering::Release);
    WORK_GEN.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&WORK_GEN);
}

/// Waits (bounded) until every worker acknowledged the last command.
pub fn wait_ack(timeout_ms: u64) -> bool {
    let want = NWORKERS.load(Ordering::Acquire) as u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    loop {
        let a = WORK_ACK.load(Ordering::Acquire);
        if a >= want {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        sys::futex_wait(&WORK_ACK, a, 100);
    }
}

/// A worker's life. Slot `1 + k` holds its thread record.
pub fn worker(k: usize) {
    sys::sigmask(libc::SIG_SETMASK, Some(!0u64));
    crate::alloc::mark_writer_thread();
    // The generation is read before the tid is published: the checkpoint
    // thread sends its first command once it sees the tid.
    let mut seen = WORK_GEN.load(Ordering::Acquire);
    WORKER_TIDS[k].store(sys::gettid(), Ordering::Release);
    let s = 1 + k;
    loop {
        while WORK_GEN.load(Ordering::Acquire) == seen {
            sys::futex_wait(&WORK_GEN, seen, 0);
        }
        seen = WORK_GEN.load(Ordering::Acquire);
        match WORK_CMD.load(Ordering::Acquire) {
            CMD_SAVE => {
                suspend::prepare_self(s);
                // SAFETY: called directly from this frame, which stays live.
                if unsafe { ckpt_save_context(suspend::resume_ptr(s)) } != 0 {
                    // Restarted: only globals from here on.
                    seen = WORK_GEN.load(Ordering::Acquire);
                    ARRIVED.fetch_add(1, Ordering::AcqRel);
                    sys::futex_wake(&ARRIVED);
                    continue;
                }
            }
            CMD_COMPRESS => {
                if let Some(c) = Cctx::new(LEVEL.load(Ordering::Relaxed)) {
                    run_jobs(&c);
                }
            }
            CMD_EXIT => {
                WORK_ACK.fetch_add(1, Ordering::AcqRel);
                sys::futex_wake(&WORK_ACK);
                return;
            }
            _ => {}
        }
        WORK_ACK.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake(&WORK_ACK);
    }
}
