//! The path of every inotify watch, recorded when the program adds it.
//!
//! /proc fdinfo gives each watch's wd, inode, device and mask but not its
//! path, which a restart needs to add it again. So the interposed
//! `inotify_add_watch` resolves the path it was given (O_PATH, then the
//! /proc/self/fd link: absolute, symlinks followed unless IN_DONT_FOLLOW)
//! and records (fd, wd, path) here; the checkpoint takes the path of each
//! watch fdinfo lists and checks it still names the watched inode.
//!
//! User threads write this table, so it neither allocates nor takes a
//! lock: fixed slots claimed with compare-and-swap, written with the
//! checkpoint signal blocked (a thread is never stopped half-way through
//! a slot).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use crate::suspend::SIGNO;
use crate::sys;

/// Watches recorded at once (per process); more fail the checkpoint of
/// an inotify fd whose watch is missing.
const SLOTS: usize = 256;
/// Longest path recorded.
pub const PATH_MAX: usize = 1024;

const FREE: u32 = 0;
const BUSY: u32 = 1;
const READY: u32 = 2;

struct Slot {
    state: AtomicU32,
    fd: AtomicI32,
    wd: AtomicI32,
    len: AtomicUsize,
    path: UnsafeCell<[u8; PATH_MAX]>,
}

// SAFETY: `path` is written only by the thread that moved `state` to BUSY
// and read only while it is READY.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    state: AtomicU32::new(FREE),
    fd: AtomicI32::new(-1),
    wd: AtomicI32::new(-1),
    len: AtomicUsize::new(0),
    path: UnsafeCell::new([0; PATH_MAX]),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Whether the table was full at some add (a watch may be missing).
static OVERFLOW: AtomicU32 = AtomicU32::new(0);

/// Records that `wd` of inotify instance `fd` watches `path` (absolute).
/// A longer path than PATH_MAX is recorded empty (the checkpoint then
/// fails naming the watch).
pub fn record(fd: i32, wd: i32, path: &[u8]) {
    let ckpt = 1u64 << (SIGNO.load(Ordering::Relaxed) - 1);
    let old = sys::sigmask(libc::SIG_BLOCK, Some(ckpt));
    let slot = claim(fd, wd);
    if let Some(s) = slot {
        let n = if path.len() <= PATH_MAX {
            path.len()
        } else {
            0
        };
        // SAFETY: we own the slot (BUSY) until we store READY.
        unsafe { (&mut *s.path.get())[..n].copy_from_slice(&path[..n]) };
        s.len.store(n, Ordering::Relaxed);
        s.fd.store(fd, Ordering::Relaxed);
        s.wd.store(wd, Ordering::Relaxed);
        s.state.store(READY, Ordering::Release);
    } else {
        OVERFLOW.store(1, Ordering::Relaxed);
    }
    sys::sigmask(libc::SIG_SETMASK, Some(old));
}

/// The slot of (fd, wd) if recorded (an add on an existing wd updates
/// it), else a free one; BUSY on return.
fn claim(fd: i32, wd: i32) -> Option<&'static Slot> {
    for s in &TABLE {
        if s.state.load(Ordering::Acquire) == READY
            && s.fd.load(Ordering::Relaxed) == fd
            && s.wd.load(Ordering::Relaxed) == wd
            && s.state
                .compare_exchange(READY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(s);
        }
    }
    TABLE.iter().find(|s| {
        s.state
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })
}

/// The recorded path of watch `wd` of `fd` (checkpoint thread only).
/// A slot whose instance was closed and whose fd number now names
/// another inotify instance is told apart by the caller (inode check).
pub fn lookup(fd: i32, wd: i32) -> Option<Vec<u8>> {
    for s in &TABLE {
        if s.state.load(Ordering::Acquire) == READY
            && s.fd.load(Ordering::Relaxed) == fd
            && s.wd.load(Ordering::Relaxed) == wd
        {
            let n = s.len.load(Ordering::Relaxed);
            // SAFETY: READY slots are not written until claimed again,
            // and user threads are stopped during the checkpoint.
            return Some(unsafe { (&*s.path.get())[..n].to_vec() });
        }
    }
    None
}

/// Whether some add found the table full.
pub fn overflowed() -> bool {
    OVERFLOW.load(Ordering::Relaxed) != 0
}

/// Resolves `path` as inotify_add_watch did (`nofollow`: IN_DONT_FOLLOW)
/// to an absolute path in `buf`; the length, or None.
pub fn resolve(path: &std::ffi::CStr, nofollow: bool, buf: &mut [u8; PATH_MAX]) -> Option<usize> {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let fd = sys::open(path, flags).ok()?;
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut n = fd.0;
    let mut digits = [0u8; 11];
    let mut k = 0;
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..k {
        link[14 + i] = digits[k - 1 - i];
    }
    sys::readlink(&link, buf)
}
