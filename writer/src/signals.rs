//! Pending signals: taken out of the kernel's queues at checkpoint time so
//! the image can carry them (with their `siginfo`: queued realtime
//! signals keep their values and order), and put back when the threads
//! are released.
//!
//! Who may queue what: the kernel lets a thread queue a signal with a
//! kill()/tgkill() `si_code` (SI_USER, SI_TKILL, ...) only to itself
//! (rt_tgsigqueueinfo) or, for the leader, to its process
//! (rt_sigqueueinfo). So every thread puts its own signals back after
//! the release, in the process that goes on and in a restarted one alike
//! (its queue is part of the image's memory); the process-wide ones are
//! put back by the leader's handler (by the checkpoint thread when the
//! leader is gone), and in a restarted process by the restorer, from the
//! image's SIGNALS record.
//!
//! A user thread takes its own thread-directed signals in the checkpoint
//! handler (`SigPnd` of `/proc/thread-self/status` says which; the
//! kernel dequeues a thread's private queue before the shared one, so a
//! set limited to `SigPnd` takes only private signals). The checkpoint
//! thread takes the process-wide ones (`ShdPnd`) once every user thread
//! is stopped. Nothing here allocates: the handler may have interrupted
//! anything.
//!
//! The raw syscalls of this concern (rt_sigtimedwait, rt_sigqueueinfo,
//! rt_tgsigqueueinfo) live in [`raw`] at the bottom.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use ckpt_format::PendingSignal;

use crate::suspend::{self, Slot, MAX_THREADS};

/// Signals one thread may carry through a checkpoint.
pub const MAX_THREAD_PENDING: usize = 32;
/// Process-wide signals a checkpoint may carry.
pub const MAX_SHARED_PENDING: usize = 256;

/// A kernel `siginfo_t` (128 bytes).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct RawSigInfo(pub [u8; 128]);

impl RawSigInfo {
    const ZERO: RawSigInfo = RawSigInfo([0; 128]);

    fn i32_at(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.0[off..off + 4].try_into().unwrap_or_default())
    }

    fn signo(&self) -> i32 {
        self.i32_at(0)
    }

    /// The image's view: signo, errno, code, then the first words of the
    /// union (`si_pid`, `si_uid`, `si_value` for kill/sigqueue; `si_tid`,
    /// `si_overrun`, `si_value` for timers).
    fn to_model(self) -> PendingSignal {
        PendingSignal {
            signo: self.signo(),
            errno: self.i32_at(4),
            code: self.i32_at(8),
            pid: self.i32_at(16),
            uid: self.i32_at(20) as u32,
            value: u64::from_le_bytes(self.0[24..32].try_into().unwrap_or_default()),
        }
    }
}

struct Queue<const N: usize> {
    n: usize,
    /// Signals left in the kernel because the queue was full.
    overflow: usize,
    infos: [RawSigInfo; N],
}

impl<const N: usize> Queue<N> {
    const EMPTY: Self = Queue {
        n: 0,
        overflow: 0,
        infos: [RawSigInfo::ZERO; N],
    };
}

struct Store {
    threads: UnsafeCell<[Queue<MAX_THREAD_PENDING>; MAX_THREADS]>,
    shared: UnsafeCell<Queue<MAX_SHARED_PENDING>>,
}

// SAFETY: thread queue i is written only by the thread owning slot i (in
// the handler, before it reports itself suspended, and after the release)
// and read by the checkpoint thread in between, ordered by the SUSPENDED
// and RELEASE_GEN futex words; the shared queue is filled and read by the
// checkpoint thread, and emptied after the release by the leader's
// handler, which must stop again before the next checkpoint fills it.
unsafe impl Sync for Store {}

static STORE: Store = Store {
    threads: UnsafeCell::new([Queue::EMPTY; MAX_THREADS]),
    shared: UnsafeCell::new(Queue::EMPTY),
};

/// The leader's handler puts the process-wide signals back.
static SHARED_TO_LEADER: AtomicBool = AtomicBool::new(false);

/// Bumped when a queue overflowed during this checkpoint.
static OVERFLOW: AtomicU32 = AtomicU32::new(0);

fn thread_queue(i: usize) -> *mut Queue<MAX_THREAD_PENDING> {
    // SAFETY: index checked by the callers (< MAX_THREADS); no reference formed.
    unsafe { (STORE.threads.get() as *mut Queue<MAX_THREAD_PENDING>).add(i) }
}

fn slot_index(s: *mut Slot) -> usize {
    (s as usize - suspend::slot(0) as usize) / std::mem::size_of::<Slot>()
}

/// Signals never taken: SIGKILL and SIGSTOP (cannot be), glibc's own
/// SIGCANCEL and SIGSETXID, and the checkpoint signal.
fn takeable() -> u64 {
    let ckpt = suspend::SIGNO.load(Ordering::Relaxed);
    let bit = |s: i32| 1u64 << (s - 1);
    !(bit(9) | bit(19) | bit(32) | bit(33) | bit(ckpt))
}

/// A `Xxx:\t<16 hex digits>` mask of `/proc/thread-self/status`.
fn status_mask(status: &[u8], key: &[u8]) -> u64 {
    let Some(at) = status.windows(key.len()).position(|w| w == key) else {
        return 0;
    };
    let mut v = 0u64;
    for &c in status[at + key.len()..]
        .iter()
        .skip_while(|c| c.is_ascii_whitespace())
        .take(16)
    {
        match (c as char).to_digit(16) {
            Some(d) => v = v << 4 | d as u64,
            None => break,
        }
    }
    v
}

/// (SigPnd, ShdPnd) of the calling thread.
fn pending_masks() -> (u64, u64) {
    let mut buf = [0u8; 4096];
    let n = raw::read_file(c"/proc/thread-self/status", &mut buf);
    let s = &buf[..n];
    (status_mask(s, b"SigPnd:"), status_mask(s, b"ShdPnd:"))
}

/// Dequeues into `q` while `want()` names signals; stops at capacity.
fn drain<const N: usize>(q: &mut Queue<N>, want: impl Fn() -> u64) {
    q.n = 0;
    q.overflow = 0;
    loop {
        let set = want() & takeable();
        if set == 0 {
            return;
        }
        if q.n == N {
            q.overflow = set.count_ones() as usize;
            OVERFLOW.fetch_add(1, Ordering::AcqRel);
            return;
        }
        if raw::take(set, &mut q.infos[q.n]) <= 0 {
            return;
        }
        q.n += 1;
    }
}

/// In the checkpoint handler: takes the calling thread's own pending signals.
pub fn take_thread_pending(s: *mut Slot) {
    // SAFETY: queue of our own slot (see Store).
    let q = unsafe { &mut *thread_queue(slot_index(s)) };
    drain(q, || pending_masks().0);
}

/// After the release (`restarted`: in a restored process): the thread
/// queues its own signals again, and the leader the process-wide ones.
pub fn after_release(s: *mut Slot, restarted: bool) {
    requeue_thread_pending(s);
    let pid = crate::sys::getpid();
    if !restarted && crate::sys::gettid() == pid && SHARED_TO_LEADER.swap(false, Ordering::AcqRel) {
        requeue_shared_pending();
    }
}

/// The checkpoint thread, before it releases the threads of a process
/// that goes on: the leader puts the process-wide signals back if it is
/// one of the stopped threads, else the checkpoint thread does.
pub fn before_release() {
    let pid = crate::sys::getpid();
    let n = suspend::NSLOTS.load(Ordering::Acquire) as usize;
    // SAFETY: reading atomics of slots in range.
    let leader_stopped = (0..n.min(MAX_THREADS)).any(|i| unsafe {
        let s = &*suspend::slot(i);
        s.tid.load(Ordering::Acquire) == pid && s.done.load(Ordering::Acquire) != 0
    });
    if leader_stopped {
        SHARED_TO_LEADER.store(true, Ordering::Release);
    } else {
        requeue_shared_pending();
    }
}

fn requeue_thread_pending(s: *mut Slot) {
    // SAFETY: queue of our own slot (see Store).
    let q = unsafe { &mut *thread_queue(slot_index(s)) };
    let (pid, tid) = (crate::sys::getpid(), crate::sys::gettid());
    for info in &q.infos[..q.n] {
        if raw::queue_thread(pid, tid, info) < 0 {
            crate::log!(
                "thread {tid}: signal {} lost: cannot queue it again",
                info.signo()
            );
        }
    }
    q.n = 0;
}

/// The checkpoint thread, every user thread stopped: takes the
/// process-wide pending signals.
pub fn take_shared_pending() {
    OVERFLOW.store(0, Ordering::Release);
    // SAFETY: checkpoint thread only (see Store).
    let q = unsafe { &mut *STORE.shared.get() };
    drain(q, || {
        let (own, shared) = pending_masks();
        shared & !own
    });
}

/// Queues the process-wide signals again (a process that goes on).
fn requeue_shared_pending() {
    // SAFETY: checkpoint thread only (see Store).
    let q = unsafe { &mut *STORE.shared.get() };
    let pid = crate::sys::getpid();
    for info in &q.infos[..q.n] {
        if raw::queue_process(pid, info) < 0 {
            crate::log!("signal {} lost: cannot queue it again", info.signo());
        }
    }
    q.n = 0;
}

/// Why the pending signals do not fit in an image, if they do not.
pub fn overflow() -> Option<String> {
    (OVERFLOW.load(Ordering::Acquire) != 0).then(|| {
        format!(
            "more pending signals than a checkpoint carries \
             ({MAX_THREAD_PENDING} per thread, {MAX_SHARED_PENDING} per process)"
        )
    })
}

/// The process-wide pending signals taken by this checkpoint.
pub fn shared_pending() -> Vec<PendingSignal> {
    // SAFETY: checkpoint thread only (see Store).
    let q = unsafe { &*STORE.shared.get() };
    q.infos[..q.n].iter().map(|i| i.to_model()).collect()
}

/// The pending signals slot `i`'s thread took this checkpoint.
pub fn thread_pending(i: usize) -> Vec<PendingSignal> {
    if i >= MAX_THREADS {
        return Vec::new();
    }
    // SAFETY: read between SUSPENDED and the release (see Store).
    let q = unsafe { &*thread_queue(i) };
    q.infos[..q.n].iter().map(|i| i.to_model()).collect()
}

mod raw {
    use super::RawSigInfo;

    /// rt_sigtimedwait with a zero timeout: the signal number taken, or <= 0.
    pub fn take(set: u64, info: &mut RawSigInfo) -> i64 {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: an 8-byte kernel sigset, a 128-byte siginfo and a
        // timespec, all valid for the call.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &set as *const u64,
                info.0.as_mut_ptr(),
                &zero as *const libc::timespec,
                8usize,
            )
        }
    }

    /// rt_tgsigqueueinfo to one thread of our own process.
    pub fn queue_thread(pid: i32, tid: i32, info: &RawSigInfo) -> i64 {
        let sig = info.signo();
        // SAFETY: the kernel reads 128 bytes of siginfo.
        unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, info.0.as_ptr()) }
    }

    /// rt_sigqueueinfo to our own process.
    pub fn queue_process(pid: i32, info: &RawSigInfo) -> i64 {
        let sig = info.signo();
        // SAFETY: the kernel reads 128 bytes of siginfo.
        unsafe { libc::syscall(libc::SYS_rt_sigqueueinfo, pid, sig, info.0.as_ptr()) }
    }

    /// Reads a small file with open/read/close (async-signal-safe, no
    /// allocation); returns the bytes read.
    pub fn read_file(path: &std::ffi::CStr, buf: &mut [u8]) -> usize {
        // SAFETY: path is NUL-terminated; read writes at most the
        // buffer's length; the fd is ours and closed here.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return 0;
            }
            let mut n = 0usize;
            while n < buf.len() {
                let r = libc::read(
                    fd,
                    buf[n..].as_mut_ptr() as *mut libc::c_void,
                    buf.len() - n,
                );
                if r <= 0 {
                    break;
                }
                n += r as usize;
            }
            libc::close(fd);
            n
        }
    }
}
