//! One checkpoint: suspend the user threads, save the writer threads'
//! resume points, write the image from the scratch arena, release.

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU32, Ordering};

use ckpt_format::*;

use crate::alloc;
use crate::capture::{self, PAGE};
use crate::compress::{self, cache, Job};
use crate::ctx::ckpt_save_context;
use crate::suspend::{self, slot, ARRIVED, MAX_THREADS, NSLOTS, RELEASE_GEN, SUSPENDED};
use crate::{config, sys};
use std::os::fd::AsRawFd;

/// Threads in the last image (checked by the restarted path).
static IMG_NTHREADS: AtomicU32 = AtomicU32::new(0);

const MAX_CHUNK: u32 = 256;

/// The coordinator's barrier as one checkpoint sees it: every process of
/// the computation is stopped before any captures its state, and none runs
/// again before all have captured it (so bytes in a pipe between two of
/// them are neither lost nor doubled). A process checkpointed on its own
/// passes [`Alone`].
pub trait Barrier {
    /// Every user thread is stopped. `Err(reason)`: the checkpoint is
    /// abandoned and the threads run again.
    fn suspended(&mut self) -> std::result::Result<(), String>;
    /// The image's state is read (written or failed); returns when the
    /// threads may run again.
    fn captured(&mut self);
}

/// A barrier of one.
pub struct Alone;

impl Barrier for Alone {
    fn suspended(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }
    fn captured(&mut self) {}
}

pub enum Outcome {
    Written { path: String, bytes: u64 },
    Failed(String),
    Restarted,
}

fn is_writer_tid(tid: i32) -> bool {
    let n = compress::NWORKERS.load(Ordering::Acquire);
    tid == sys::gettid()
        || compress::WORKER_TIDS[..n]
            .iter()
            .any(|t| t.load(Ordering::Acquire) == tid)
}

fn list_tasks() -> Vec<i32> {
    sys::numeric_entries(c"/proc/self/task")
}

/// A thread that exited (or a leader that called pthread_exit: a zombie
/// while the other threads run) never runs the handler.
fn task_gone(tid: i32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/self/task/{tid}/stat")) else {
        return true;
    };
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|p| stat.get(p + 2).copied());
    matches!(state, None | Some(b'Z') | Some(b'X'))
}

/// Why a thread did not stop, for the failure message.
fn describe_stuck(tid: i32, signo: i32) -> String {
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    let blocked = u64::from_str_radix(&field("SigBlk:"), 16).unwrap_or(0) >> (signo - 1) & 1 == 1;
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
    format!(
        "thread {tid} ({}) state {} in {wchan}{}",
        field("Name:"),
        field("State:"),
        if blocked {
            ", checkpoint signal blocked (a raw rt_sigprocmask or a mask the writer does not interpose)"
        } else {
            ""
        }
    )
}

/// Signals every user thread and waits until all saved their state.
/// Threads that exit before they stop are forgotten; new threads are
/// signalled until a scan finds none.
fn suspend_all(signo: i32) -> std::result::Result<(), String> {
    let pid = sys::getpid();
    let base = 1 + compress::NWORKERS.load(Ordering::Acquire);
    for i in base..MAX_THREADS {
        // SAFETY: slot index in range; only atomics are touched.
        unsafe {
            (*slot(i)).tid.store(0, Ordering::Release);
            (*slot(i)).done.store(0, Ordering::Release);
        }
    }
    NSLOTS.store(base as u32, Ordering::Release);
    SUSPENDED.store(0, Ordering::Release);
    ARRIVED.store(0, Ordering::Release);
    // even -> odd: handlers hold their threads until the next increment.
    RELEASE_GEN.fetch_add(1, Ordering::AcqRel);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    // Threads found gone (a zombie leader stays listed in /proc/self/task).
    let mut gone: Vec<i32> = Vec::new();
    loop {
        let mut new = 0;
        for tid in list_tasks() {
            if is_writer_tid(tid) || gone.contains(&tid) {
                continue;
            }
            let n = NSLOTS.load(Ordering::Acquire) as usize;
            // SAFETY: reading tid atomics of slots in range.
            if (0..n).any(|i| unsafe { (*slot(i)).tid.load(Ordering::Acquire) } == tid) {
                continue;
            }
            if n >= MAX_THREADS {
                return Err(format!("more than {MAX_THREADS} threads"));
            }
            // SAFETY: slot n is unused (index in range).
            unsafe { (*slot(n)).tid.store(tid, Ordering::Release) };
            NSLOTS.store(n as u32 + 1, Ordering::Release);
            if sys::tgkill(pid, tid, signo) == 0 {
                new += 1;
            } else {
                // SAFETY: as above.
                unsafe { (*slot(n)).tid.store(-1, Ordering::Release) };
            }
        }
        // A thread the coordinator's word interrupted has its signal now.
        crate::release_held();
        loop {
            let seen = SUSPENDED.load(Ordering::Acquire);
            let n = NSLOTS.load(Ordering::Acquire) as usize;
            // SAFETY: reading atomics of slots in range.
            let waiting: Vec<(usize, i32)> = (base..n)
                .map(|i| unsafe {
                    let s = &*slot(i);
                    (
                        i,
                        s.tid.load(Ordering::Acquire),
                        s.done.load(Ordering::Acquire),
                    )
                })
                .filter(|&(_, tid, done)| tid > 0 && done == 0)
                .map(|(i, tid, _)| (i, tid))
                .collect();
            if waiting.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let who: Vec<String> = waiting
                    .iter()
                    .map(|&(_, tid)| describe_stuck(tid, signo))
                    .collect();
                return Err(format!(
                    "{} thread(s) did not stop within 5 s: {}",
                    who.len(),
                    who.join("; ")
                ));
            }
            sys::futex_wait(&SUSPENDED, seen, 20);
            if SUSPENDED.load(Ordering::Acquire) != seen {
                continue; // progress: look for exited threads only when stalled
            }
            for (i, tid) in waiting {
                // SAFETY: as above.
                let done = unsafe { (*slot(i)).done.load(Ordering::Acquire) } != 0;
                if !done && task_gone(tid) {
                    // SAFETY: as above; the thread is gone, its slot is dropped.
                    unsafe { (*slot(i)).tid.store(-1, Ordering::Release) };
                    gone.push(tid);
                }
            }
        }
        if new == 0 {
            return Ok(());
        }
    }
}

/// Where a test fault is to be injected in this process's checkpoint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// As if its threads did not stop.
    Suspend,
    /// As if writing its image failed (after every process stopped).
    Capture,
}

/// TEST ONLY: `CKPT_TEST_FAIL_CAPTURE=FILE` (read once, at the first
/// checkpoint, and kept through restarts) makes the checkpoints of one
/// process of a computation fail while FILE exists and holds its pid,
/// optionally followed by `suspend` (fails before the barrier, as a
/// process that does not stop) or `capture` (the default: fails its
/// write, after every process stopped), so tests can drive the barrier's
/// failure path with real processes (tests/tests/barrier_failure.rs) and
/// remove the fault by removing FILE. Unset: no effect, no file read.
fn test_fault() -> Option<Fault> {
    static FILE: std::sync::OnceLock<Option<std::ffi::OsString>> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| std::env::var_os("CKPT_TEST_FAIL_CAPTURE"));
    let text = std::fs::read_to_string(file.as_ref()?).ok()?;
    let mut words = text.split_whitespace();
    if words.next()?.parse::<i32>().ok()? != sys::getpid() {
        return None;
    }
    Some(match words.next() {
        Some("suspend") => Fault::Suspend,
        _ => Fault::Capture,
    })
}

/// TEST ONLY: `CKPT_TEST_HOLD_CONNECT=FILE` (read with the rest of the
/// environment in the constructor, `Config::hold_connect`) keeps the
/// checkpoint thread from connecting to the coordinator while FILE
/// exists, while the program runs: a process made just before a
/// checkpoint whose writer is slow to connect, held as long as a test
/// needs (tests/tests/late_join.rs). Unset: no effect, no file looked at.
pub fn test_hold_connect(cfg: &config::Config) {
    let Some(file) = &cfg.hold_connect else {
        return;
    };
    let mut said = false;
    while std::path::Path::new(file).exists() {
        if !said {
            log!("test hold (CKPT_TEST_HOLD_CONNECT): not connecting while {file} exists");
            said = true;
        }
        sys::sleep_ms(10);
    }
}

/// Runs a checkpoint; user threads run again when it returns (after
/// `barrier` let them go).
pub fn run(req: &ckpt_protocol::CheckpointRequest, barrier: &mut dyn Barrier) -> Outcome {
    let signo = suspend::SIGNO.load(Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    let fault = test_fault();
    if fault == Some(Fault::Suspend) {
        return Outcome::Failed("test fault (CKPT_TEST_FAIL_CAPTURE): threads not stopped".into());
    }
    crate::ensure_workers();
    let dir = image_dir(req, &config::get());
    // SAFETY: only the checkpoint thread uses OWN_COPY (here and write_to).
    let last = unsafe { (*OWN_COPY.0.get()).take() };
    // The copy the last checkpoint used, while it is still there unchanged
    // in this directory; else find or make it (reads our maps).
    let copy = last
        .filter(|c| {
            std::path::Path::new(std::ffi::OsStr::from_bytes(&c.path)).parent()
                == Some(std::path::Path::new(&dir))
                && capture::file_identity(&c.path).as_ref() == Some(c)
        })
        .or_else(|| capture::own_library_copy(&dir));
    // SAFETY: as above.
    unsafe { *OWN_COPY.0.get() = copy };
    if let Err(e) = suspend_all(signo) {
        suspend::release_all();
        return Outcome::Failed(e);
    }
    crate::debug!("user threads stopped in {} us", t0.elapsed().as_micros());
    // Nothing is read before every process of the computation is stopped.
    if let Err(e) = barrier.suspended() {
        suspend::release_all();
        return Outcome::Failed(e);
    }
    crate::debug!(
        "barrier: all suspended after {} us",
        t0.elapsed().as_micros()
    );
    let nw = compress::NWORKERS.load(Ordering::Acquire);
    compress::command(compress::CMD_SAVE);
    if !compress::wait_ack(5000) {
        suspend::release_all();
        return Outcome::Failed("compression workers did not answer".into());
    }
    let n = NSLOTS.load(Ordering::Acquire) as usize;
    crate::debug!("suspended in {} us", t0.elapsed().as_micros());
    // SAFETY: reading tid atomics of slots in range.
    let users = (1 + nw..n)
        .filter(|&i| unsafe { (*slot(i)).tid.load(Ordering::Acquire) } > 0)
        .count();
    IMG_NTHREADS.store((1 + nw + users) as u32, Ordering::Release);
    crate::signals::take_shared_pending();
    // From here until the end of the write phase, every allocation comes
    // from the scratch arena and the main arena is frozen.
    alloc::SCRATCH_MODE.store(true, Ordering::SeqCst);
    suspend::prepare_self(0);
    // SAFETY: called directly from this frame, which stays live during the
    // write phase; the restarted path below uses only globals.
    if unsafe { ckpt_save_context(suspend::resume_ptr(0)) } != 0 {
        restarted();
        return Outcome::Restarted;
    }
    crate::mem::open_proc_mem();
    let r = if fault == Some(Fault::Capture) {
        Err(String::from(
            "test fault (CKPT_TEST_FAIL_CAPTURE): image not written",
        ))
    } else {
        write_image(req)
    };
    if !compress::wait_ack(10_000) {
        log!("compression workers did not finish");
    }
    crate::mem::close_proc_mem();
    crate::debug!("workers idle after {} us", t0.elapsed().as_micros());
    alloc::SCRATCH_MODE.store(false, Ordering::SeqCst);
    // Copy what is still needed out of the scratch arena before resetting
    // it: the kept chunks, the names, the error.
    let r = match r {
        Ok(w) => {
            let Written {
                file,
                bytes,
                names,
                stable,
            } = w;
            compress::cache::keep(&stable);
            let kept = Names {
                path: String::from(names.path.as_str()),
                tmp: String::from(names.tmp.as_str()),
                dir: String::from(names.dir.as_str()),
            };
            std::mem::forget((names, stable));
            Ok((file, bytes, kept))
        }
        Err(e) => {
            let kept = String::from(e.as_str());
            std::mem::forget(e);
            Err(kept)
        }
    };
    alloc::reset_scratch();
    crate::signals::before_release();
    // Every byte of the image is in the file: the program runs again while
    // this thread syncs and renames it, with its own stack and the writer's
    // main arena only (the program never touches either).
    if r.is_ok() {
        SYNCING.store(sys::getpid() as u32, Ordering::Release);
    }
    // Nobody runs again before every process has read its pipes' contents
    // and its memory.
    barrier.captured();
    crate::debug!(
        "barrier: all captured after {} us",
        t0.elapsed().as_micros()
    );
    // The image and its directory stay open while the program runs again:
    // its close_range/closefrom must leave them (interpose.rs).
    let dir = r
        .as_ref()
        .ok()
        .and_then(|(_, _, names)| std::fs::File::open(&names.dir).ok());
    if let Ok((file, _, _)) = &r {
        crate::interpose::keep_fd(0, file.as_raw_fd());
    }
    if let Some(d) = &dir {
        crate::interpose::keep_fd(1, d.as_raw_fd());
    }
    suspend::release_all();
    crate::debug!("threads released after {} us", t0.elapsed().as_micros());
    let out = match r {
        Ok((file, bytes, names)) => match sync_and_rename(file, dir, &names) {
            Ok(()) => Outcome::Written {
                path: names.path,
                bytes,
            },
            Err(e) => {
                let _ = std::fs::remove_file(&names.tmp);
                Outcome::Failed(e)
            }
        },
        Err(e) => Outcome::Failed(e),
    };
    SYNCING.store(0, Ordering::Release);
    sys::futex_wake(&SYNCING);
    crate::debug!("renamed after {} us", t0.elapsed().as_micros());
    out
}

/// Pid of the process whose checkpoint thread is syncing and renaming an
/// image while the program runs (0: none). A child forked meanwhile has
/// another pid and does not wait.
static SYNCING: AtomicU32 = AtomicU32::new(0);

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = wait_for_sync;

/// At exit(): a program that ends right after a checkpoint waits (up to
/// 10 s) until its image is synced and renamed, as it did when it was
/// held until then. `_exit` and exec do not wait (doc/bench.md, issue 3).
extern "C" fn wait_for_sync() {
    let me = sys::getpid() as u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while SYNCING.load(Ordering::Acquire) == me && std::time::Instant::now() < deadline {
        sys::futex_wait(&SYNCING, me, 50);
    }
}

/// The directory the image goes to: the request's, else CKPT_DIR.
fn image_dir(req: &ckpt_protocol::CheckpointRequest, cfg: &config::Config) -> String {
    if req.dir.is_empty() {
        cfg.dir.clone()
    } else {
        req.dir.clone()
    }
}

/// The copy of the writer library this checkpoint's images refer to
/// (`capture::own_library_copy`), set before the threads are suspended.
struct OwnCopy(std::cell::UnsafeCell<Option<FileIdentity>>);
// SAFETY: only the checkpoint thread touches it (run, write_to).
unsafe impl Sync for OwnCopy {}
static OWN_COPY: OwnCopy = OwnCopy(std::cell::UnsafeCell::new(None));

/// Each slot's thread name (`comm`) at the last checkpoint, in our own
/// memory, so a restored process gets its names back: its threads are
/// made by ckpt-restore and would all be called `ckpt-restore` (and so
/// would every child they fork, and that child's image).
struct Comms(std::cell::UnsafeCell<[[u8; 16]; MAX_THREADS]>);
// SAFETY: only the checkpoint thread touches it (thread_records, restarted).
unsafe impl Sync for Comms {}
static COMMS: Comms = Comms(std::cell::UnsafeCell::new([[0; 16]; MAX_THREADS]));

fn keep_comm(i: usize, name: &str) {
    let mut c = [0u8; 16];
    let n = name.len().min(15);
    c[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: the checkpoint thread is the only one using COMMS; i < MAX_THREADS.
    unsafe { (*COMMS.0.get())[i] = c };
}

/// Gives every restored thread its name again (before any runs).
fn restore_comms() {
    let n = (NSLOTS.load(Ordering::Acquire) as usize).min(MAX_THREADS);
    for i in 0..n {
        // SAFETY: slot index in range; the tid is an atomic.
        let tid = unsafe { (*slot(i)).tid.load(Ordering::Acquire) };
        // SAFETY: as in keep_comm.
        let c = unsafe { (*COMMS.0.get())[i] };
        let len = c.iter().position(|&b| b == 0).unwrap_or(16);
        if tid > 0 && len > 0 {
            let path = format!("/proc/self/task/{tid}/comm");
            if let Err(e) = std::fs::write(&path, &c[..len]) {
                crate::debug!("{path}: {e}");
            }
        }
    }
}

/// The checkpoint thread in a restored process. Globals only.
#[inline(never)]
fn restarted() {
    alloc::SCRATCH_MODE.store(false, Ordering::SeqCst);
    let ri = config::restart_info();
    let want = IMG_NTHREADS.load(Ordering::Acquire).saturating_sub(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let a = ARRIVED.load(Ordering::Acquire);
        if a >= want || std::time::Instant::now() > deadline {
            break;
        }
        sys::futex_wait(&ARRIVED, a, 50);
    }
    if ri.scratch_addr != 0 && ri.scratch_len != 0 {
        sys::munmap(ri.scratch_addr, ri.scratch_len);
    }
    alloc::init_scratch();
    compress::cache::forget();
    config::apply_restart(&ri);
    restore_comms();
    let release = crate::jobctl::after_restart();
    log!(
        "restarted (restart #{}): {} of {} threads arrived",
        ri.restarted,
        ARRIVED.load(Ordering::Acquire),
        want
    );
    if release {
        suspend::release_all();
    }
}

fn thread_records(pid: i32) -> Vec<Thread> {
    let n = NSLOTS.load(Ordering::Acquire) as usize;
    let nw = compress::NWORKERS.load(Ordering::Acquire);
    let rseq_size = suspend::RSEQ_SIZE.load(Ordering::Relaxed);
    let rseq_off = suspend::RSEQ_OFFSET.load(Ordering::Relaxed);
    let mut out = Vec::new();
    for i in 0..n {
        // SAFETY: every thread wrote its slot before the SUSPENDED/ack
        // futex told us so; nobody writes slots during the write phase.
        let s = unsafe { &*slot(i) };
        let tid = s.tid.load(Ordering::Acquire);
        if tid <= 0 {
            continue;
        }
        let writer = i <= nw;
        let g = &s.gregs;
        let r = s.resume;
        let regs = if writer {
            GpRegs {
                rip: r.rip,
                rsp: r.rsp,
                rbx: r.rbx,
                rbp: r.rbp,
                r12: r.r12,
                r13: r.r13,
                r14: r.r14,
                r15: r.r15,
                fs_base: s.fs_base,
                cs: 0x33,
                ss: 0x2b,
                ..Default::default()
            }
        } else {
            GpRegs {
                r8: g[0],
                r9: g[1],
                r10: g[2],
                r11: g[3],
                r12: g[4],
                r13: g[5],
                r14: g[6],
                r15: g[7],
                rdi: g[8],
                rsi: g[9],
                rbp: g[10],
                rbx: g[11],
                rdx: g[12],
                rax: g[13],
                rcx: g[14],
                rsp: g[15],
                rip: g[16],
                eflags: g[17],
                cs: g[18] & 0xffff,
                gs: (g[18] >> 16) & 0xffff,
                fs: (g[18] >> 32) & 0xffff,
                ss: (g[18] >> 48) & 0xffff,
                orig_rax: u64::MAX,
                fs_base: s.fs_base,
                ..Default::default()
            }
        };
        let mut flags = 0;
        if tid == pid {
            flags |= ThreadFlags::LEADER;
        }
        if i == 0 {
            flags |= ThreadFlags::CHECKPOINT_THREAD;
        }
        let (sp, ssf, sz) = s.ss;
        let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        keep_comm(i, &name);
        out.push(Thread {
            tid: Pid(tid),
            flags: ThreadFlags(flags),
            name,
            regs,
            xsave: s.xsave[..s.xsave_len.min(s.xsave.len())].to_vec(),
            sigmask: s.sigmask,
            sigaltstack: if sz == 0 || ssf & libc::SS_DISABLE != 0 {
                SigAltStack {
                    sp: Addr(0),
                    flags: libc::SS_DISABLE,
                    size: 0,
                }
            } else {
                SigAltStack {
                    sp: Addr(sp),
                    flags: ssf,
                    size: sz,
                }
            },
            rseq: (rseq_size > 0).then_some(Rseq {
                addr: Addr(s.fs_base.wrapping_add(rseq_off)),
                len: 32,
                sig: 0x5305_3053,
            }),
            robust_list: Addr(s.robust.0),
            robust_list_len: s.robust.1,
            clear_child_tid: Addr(s.ctid),
            pending: crate::signals::thread_pending(i),
            resume: r.to_model(),
        });
    }
    out
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Addresses inside the memory our own threads write while the image is
/// being written: the stacks (with their TCB and static TLS) of the
/// checkpoint thread and the compression workers, and our library's data
/// and bss. Pages there change under the encoder, and zstd must not read
/// a buffer that changes while it compresses it: its matches would decode
/// to bytes the memory never held (seen as a corrupted TCB `self` pointer
/// of the checkpoint thread after restart).
fn writer_hot_addresses() -> Vec<u64> {
    let nw = compress::NWORKERS.load(Ordering::Acquire);
    let mut hot = vec![
        std::ptr::addr_of!(compress::DONE) as u64,
        std::ptr::addr_of!(suspend::SIGNO) as u64,
        suspend::slot(0) as u64,
    ];
    for i in 0..=nw {
        // SAFETY: writer slots 0..=nw were filled by their threads before
        // the write phase (prepare_self + ckpt_save_context); read only.
        let s = unsafe { &*slot(i) };
        if s.tid.load(Ordering::Acquire) > 0 {
            hot.push(s.fs_base);
            hot.push(s.resume.rsp);
        }
    }
    hot
}

/// Where an image goes: `tmp` while it is written, `path` once synced.
struct Names {
    path: String,
    tmp: String,
    dir: String,
}

/// An image whose bytes are all in `file` (not synced yet).
struct Written {
    file: std::fs::File,
    bytes: u64,
    names: Names,
    /// This image's chunks of stable regions, for `compress::cache`.
    stable: Vec<(cache::Key, u32, cache::Kept)>,
}

/// The write phase (scratch arena).
fn write_image(req: &ckpt_protocol::CheckpointRequest) -> std::result::Result<Written, String> {
    let cfg = config::get();
    let compress = req.compress && !cfg.no_compress;
    let dir = image_dir(req, &cfg);
    let name = format!("ckpt_{}_{}.ckpt", cfg.prog, cfg.unique_id);
    let path = format!("{dir}/{name}");
    let tmp = format!("{path}.tmp");
    match write_to(req, &cfg, compress, &tmp) {
        Ok((file, bytes, stable)) => Ok(Written {
            file,
            bytes,
            names: Names { path, tmp, dir },
            stable,
        }),
        Err(e) => {
            // A failed checkpoint leaves the previous image, and no debris.
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes the image durable under its final name.
/// Syncs the image, renames it to its name and syncs its directory `dir`
/// (opened before the program ran again); both are closed and no longer
/// kept from the program's close_range when it returns.
fn sync_and_rename(
    file: std::fs::File,
    dir: Option<std::fs::File>,
    n: &Names,
) -> std::result::Result<(), String> {
    let synced = file.sync_all();
    drop(file);
    crate::interpose::keep_fd(0, -1);
    let renamed = synced
        .map_err(|e| format!("fsync {}: {e}", n.tmp))
        .and_then(|()| {
            std::fs::rename(&n.tmp, &n.path).map_err(|e| format!("rename {}: {e}", n.tmp))
        });
    if let Some(d) = dir {
        if renamed.is_ok() {
            let _ = d.sync_all();
        }
        drop(d);
    }
    crate::interpose::keep_fd(1, -1);
    renamed
}

/// Writes the image to `tmp`; returns the file (not synced), its size and
/// the chunks of stable regions.
#[allow(clippy::type_complexity)]
fn write_to(
    req: &ckpt_protocol::CheckpointRequest,
    cfg: &config::Config,
    compress: bool,
    tmp: &str,
) -> std::result::Result<(std::fs::File, u64, Vec<(cache::Key, u32, cache::Kept)>), String> {
    let t0 = std::time::Instant::now();
    let pid = sys::getpid();
    let mut exclude = vec![sys::LOG_FD.load(Ordering::Relaxed)];
    exclude.extend(config::own_fds());
    exclude.push(crate::mem::PROC_MEM.load(Ordering::Relaxed));
    crate::jobctl::capture(&capture::peers());
    let fds =
        capture::fds(&exclude, req.open_files || cfg.open_files).map_err(|e| e.to_string())?;
    if let Some(e) = crate::signals::overflow() {
        return Err(e);
    }
    let threads = thread_records(pid);
    let mut regions = capture::plan_regions(
        &[alloc::scratch_range(), cache::range()],
        MAX_CHUNK,
        // SAFETY: see OWN_COPY.
        unsafe { (*OWN_COPY.0.get()).as_ref() },
    );
    let shared = capture::shared_memory(&mut regions, MAX_CHUNK);
    let sysv = capture::sysv_ipc(&shared);
    let vdso = regions
        .iter()
        .find(|r| r.region.kind == RegionKind::Vdso)
        .map(|r| (r.region.start.0, r.region.end.0));
    let computation_id = parse_hex16(&req.computation_id).unwrap_or(cfg.computation_id);
    let header = ImageHeader {
        writer_version: WRITER_VERSION.to_string(),
        arch: 62,
        page_size: PAGE as u32,
        created_ns: now_ns(),
        computation_id,
        generation: req.generation,
        vpid: Pid(pid),
        real_pid: pid,
        program: cfg.prog.clone(),
        unique_id: cfg.unique_id.clone(),
        host: capture::fingerprint(vdso),
    };
    let process = capture::process(config::restart_info_addr());
    crate::debug!("state captured in {} us", t0.elapsed().as_micros());

    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(tmp)
            .map_err(|e| format!("create {tmp}: {e}"))?
    };
    let bw = std::io::BufWriter::with_capacity(1 << 20, file);
    let err = |e: ckpt_format::Error| format!("write {tmp}: {e}");
    let mut zombies = capture::zombies();
    crate::exec::record_outsiders(&mut zombies);
    let minor = ckpt_format::minor_with_ipc(
        ckpt_format::minor_for_image(&fds, &zombies, &shared),
        sysv.as_ref(),
    );
    let mut enc = Encoder::with_minor(bw, &header, minor).map_err(err)?;
    enc.process(&process).map_err(err)?;
    for t in &threads {
        enc.thread(t).map_err(err)?;
    }
    let hot = writer_hot_addresses();
    let mut jobs = Vec::new();
    // (job, key, crc) of the chunks of stable regions.
    let mut stable = Vec::new();
    let mut reused = 0u64;
    for r in &regions {
        let idx = enc.region(&r.region).map_err(err)?;
        let (start, end) = (r.region.start.0, r.region.end.0);
        let volatile = hot.iter().any(|&a| start <= a && a < end);
        for &(addr, pages) in &r.runs {
            let mut reuse = None;
            if let Some(file) = r.stable.filter(|_| compress && r.direct && !volatile) {
                let key = cache::Key { addr, pages, file };
                let crc = crc32fast::hash(crate::mem::slice(addr, pages as u64 * PAGE));
                reuse = cache::lookup(&key, crc);
                reused += reuse.map_or(0, |_| pages as u64);
                stable.push((jobs.len(), key, crc));
            }
            jobs.push(Job {
                region: idx,
                addr,
                pages,
                direct: r.direct,
                volatile,
                reuse,
            });
        }
    }
    crate::debug!(
        "{} stable chunks, {reused} pages reused after {} us",
        stable.len(),
        t0.elapsed().as_micros()
    );
    for f in &fds {
        enc.fd(f).map_err(err)?;
    }
    enc.signals(&capture::signals()).map_err(err)?;
    enc.timers(&capture::timers()).map_err(err)?;
    enc.rlimits(&capture::rlimits()).map_err(err)?;
    enc.pid_table(&[PidEntry {
        vpid: Pid(pid),
        real_pid: pid,
        ppid: process.ppid,
        pgid: process.pgid,
        sid: process.sid,
        threads: threads.iter().map(|t| t.tid).collect(),
    }])
    .map_err(err)?;
    if !zombies.is_empty() {
        enc.zombies(&zombies).map_err(err)?;
    }
    if !shared.is_empty() {
        enc.shared_memory(&shared).map_err(err)?;
    }
    if let Some(ipc) = &sysv {
        enc.sysv_ipc(ipc).map_err(err)?;
    }

    let meta = |j: &Job| ChunkMeta {
        region: j.region,
        addr: Addr(j.addr),
        pages: j.pages,
        encoding: ChunkEncoding::Raw,
    };
    // Raw runs are copied (see `mem::copy_into`) into one reused buffer.
    let mut rawbuf = vec![0u8; (MAX_CHUNK as u64 * PAGE) as usize];
    let raw_of = |j: &Job, buf: &mut Vec<u8>| {
        let len = (j.pages as u64 * PAGE) as usize;
        crate::mem::read_pages(j.addr, j.direct, &mut buf[..len]);
        len
    };
    let jobs_empty = jobs.is_empty();
    if !compress || jobs_empty {
        for j in &jobs {
            let len = raw_of(j, &mut rawbuf);
            enc.chunk(&EncodedChunk::raw(meta(j), &rawbuf[..len]))
                .map_err(err)?;
        }
        // workers were not started for this phase: make wait_ack succeed
        compress::WORK_ACK.store(u32::MAX, Ordering::Release);
    } else {
        let n = compress::start(jobs, cfg.level);
        let (jobs, res) = compress::current();
        let cctx = compress::Cctx::new(cfg.level).ok_or("zstd context")?;
        let mut written = 0;
        while written < n {
            let st = res[written].state.load(Ordering::Acquire);
            if st == 0 {
                // help, or wait for the one we need next
                let d = compress::DONE.load(Ordering::Acquire);
                if !help_one(&cctx) {
                    sys::futex_wait(&compress::DONE, d, 20);
                }
                continue;
            }
            let j = &jobs[written];
            if st == 1 {
                let p = res[written].ptr.load(Ordering::Relaxed);
                let l = res[written].len.load(Ordering::Relaxed);
                // Borrowed: a new frame stays in the scratch arena until
                // `cache::keep` has copied it, a kept one is the cache's.
                enc.chunk(&EncodedChunk {
                    meta: ChunkMeta {
                        encoding: ChunkEncoding::Zstd,
                        ..meta(j)
                    },
                    data: std::borrow::Cow::Borrowed(crate::mem::slice(p as u64, l as u64)),
                })
                .map_err(err)?;
            } else {
                let len = raw_of(j, &mut rawbuf);
                enc.chunk(&EncodedChunk::raw(meta(j), &rawbuf[..len]))
                    .map_err(err)?;
            }
            written += 1;
        }
    }
    crate::debug!("pages written after {} us", t0.elapsed().as_micros());
    let stable = if compress && !jobs_empty {
        let (_, res) = compress::current();
        stable
            .into_iter()
            .map(|(i, key, crc)| {
                let kept = match res[i].state.load(Ordering::Acquire) {
                    1 => cache::Kept::Frame(
                        res[i].ptr.load(Ordering::Relaxed),
                        res[i].len.load(Ordering::Relaxed),
                    ),
                    _ => cache::Kept::Raw,
                };
                (key, crc, kept)
            })
            .collect()
    } else {
        Vec::new()
    };
    let bytes = enc.offset();
    let bw = enc.finish().map_err(err)?;
    let file = bw.into_inner().map_err(|e| format!("write {tmp}: {e}"))?;
    let bytes = bytes.max(file.metadata().map(|m| m.len()).unwrap_or(0));
    Ok((file, bytes, stable))
}

/// The checkpoint thread compresses one job itself, if one is left.
fn help_one(c: &compress::Cctx) -> bool {
    compress::help(c)
}
