//! Interposed libc functions: the program can neither block, wait for,
//! ignore nor replace the checkpoint signal. Real functions come from
//! dlsym(RTLD_NEXT). Nothing here allocates or takes a lock: user threads
//! call these.
//!
//! Covered: sigaction (also the handler's `sa_mask`), signal, sigprocmask,
//! pthread_sigmask, sigsuspend, sigwait, sigwaitinfo, sigtimedwait,
//! signalfd; and inotify_add_watch, whose path is recorded (inotify.rs).
//! Not covered (documented in doc/design.md): the masks of
//! ppoll/pselect/epoll_pwait (hot calls) and raw syscalls.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::suspend::SIGNO;

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGPROCMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_SIGMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGSUSPEND: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGWAIT: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGWAITINFO: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGTIMEDWAIT: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNALFD: AtomicUsize = AtomicUsize::new(0);
static REAL_INOTIFY_ADD_WATCH: AtomicUsize = AtomicUsize::new(0);

fn resolve(cache: &AtomicUsize, name: &[u8]) -> usize {
    let mut f = cache.load(Ordering::Relaxed);
    if f == 0 {
        // SAFETY: name is NUL-terminated; dlsym with RTLD_NEXT finds libc's definition.
        f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const libc::c_char) } as usize;
        cache.store(f, Ordering::Relaxed);
    }
    f
}

type SigactionFn = unsafe extern "C" fn(i32, *const libc::sigaction, *mut libc::sigaction) -> i32;
type SignalFn = unsafe extern "C" fn(i32, libc::sighandler_t) -> libc::sighandler_t;
type MaskFn = unsafe extern "C" fn(i32, *const libc::sigset_t, *mut libc::sigset_t) -> i32;
type SuspendFn = unsafe extern "C" fn(*const libc::sigset_t) -> i32;
type SigwaitFn = unsafe extern "C" fn(*const libc::sigset_t, *mut i32) -> i32;
type SigwaitinfoFn = unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t) -> i32;
type SigtimedwaitFn =
    unsafe extern "C" fn(*const libc::sigset_t, *mut libc::siginfo_t, *const libc::timespec) -> i32;
type SignalfdFn = unsafe extern "C" fn(i32, *const libc::sigset_t, i32) -> i32;
type InotifyAddWatchFn = unsafe extern "C" fn(i32, *const libc::c_char, u32) -> i32;

fn is_ckpt(sig: i32) -> bool {
    sig == SIGNO.load(Ordering::Relaxed)
}

/// `set` without the checkpoint signal (a copy; null stays null).
///
/// # Safety
/// `set` is null or points to a valid sigset_t.
unsafe fn without_ckpt(
    set: *const libc::sigset_t,
    copy: &mut libc::sigset_t,
) -> *const libc::sigset_t {
    if set.is_null() {
        return set;
    }
    // SAFETY: set is the caller's valid sigset; we edit a copy.
    unsafe {
        *copy = *set;
        libc::sigdelset(copy, SIGNO.load(Ordering::Relaxed));
    }
    copy
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    unsafe {
        let mut s: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut s);
        s
    }
}

/// The real sigaction.
///
/// # Safety
/// Same contract as sigaction(2).
pub unsafe fn real_sigaction(
    sig: i32,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> i32 {
    let f = resolve(&REAL_SIGACTION, b"sigaction\0");
    // SAFETY: f is libc's sigaction (non-null after dlsym on a glibc process).
    unsafe { std::mem::transmute::<usize, SigactionFn>(f)(sig, act, old) }
}

/// Changes to the checkpoint signal's disposition are ignored (the old
/// one reads as SIG_DFL); other handlers get the checkpoint signal taken
/// out of their `sa_mask`, so a long-running handler cannot hold off a
/// checkpoint.
///
/// # Safety
/// Same contract as sigaction(2).
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: i32,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> i32 {
    if is_ckpt(sig) {
        if !old.is_null() {
            // SAFETY: caller's out pointer; report the default disposition.
            unsafe { std::ptr::write_bytes(old, 0, 1) };
        }
        return 0;
    }
    if act.is_null() {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real_sigaction(sig, act, old) };
    }
    // SAFETY: act is the caller's valid sigaction; we edit a copy.
    unsafe {
        let mut copy = *act;
        libc::sigdelset(&mut copy.sa_mask, SIGNO.load(Ordering::Relaxed));
        real_sigaction(sig, &copy, old)
    }
}

/// # Safety
/// Same contract as signal(3).
#[no_mangle]
pub unsafe extern "C" fn signal(sig: i32, h: libc::sighandler_t) -> libc::sighandler_t {
    if is_ckpt(sig) {
        return libc::SIG_DFL;
    }
    let f = resolve(&REAL_SIGNAL, b"signal\0");
    // SAFETY: libc's signal.
    unsafe { std::mem::transmute::<usize, SignalFn>(f)(sig, h) }
}

unsafe fn masked(
    cache: &AtomicUsize,
    name: &[u8],
    how: i32,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> i32 {
    let f = resolve(cache, name);
    let mut copy = empty_set();
    let p = if how == libc::SIG_UNBLOCK {
        set
    } else {
        // SAFETY: set is null or the caller's valid sigset.
        unsafe { without_ckpt(set, &mut copy) }
    };
    // SAFETY: libc's function with valid pointers.
    unsafe { std::mem::transmute::<usize, MaskFn>(f)(how, p, old) }
}

/// # Safety
/// Same contract as sigprocmask(2).
#[no_mangle]
pub unsafe extern "C" fn sigprocmask(
    how: i32,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> i32 {
    // SAFETY: forwarding.
    unsafe { masked(&REAL_SIGPROCMASK, b"sigprocmask\0", how, set, old) }
}

/// # Safety
/// Same contract as pthread_sigmask(3).
#[no_mangle]
pub unsafe extern "C" fn pthread_sigmask(
    how: i32,
    set: *const libc::sigset_t,
    old: *mut libc::sigset_t,
) -> i32 {
    // SAFETY: forwarding.
    unsafe { masked(&REAL_PTHREAD_SIGMASK, b"pthread_sigmask\0", how, set, old) }
}

/// A checkpoint interrupts sigsuspend like any handled signal (EINTR).
///
/// # Safety
/// Same contract as sigsuspend(2).
#[no_mangle]
pub unsafe extern "C" fn sigsuspend(set: *const libc::sigset_t) -> i32 {
    let f = resolve(&REAL_SIGSUSPEND, b"sigsuspend\0");
    let mut copy = empty_set();
    // SAFETY: set is null or valid; libc's sigsuspend.
    unsafe { std::mem::transmute::<usize, SuspendFn>(f)(without_ckpt(set, &mut copy)) }
}

/// The sigwait family would otherwise take the checkpoint signal away
/// from its handler.
///
/// # Safety
/// Same contract as sigwait(3).
#[no_mangle]
pub unsafe extern "C" fn sigwait(set: *const libc::sigset_t, sig: *mut i32) -> i32 {
    let f = resolve(&REAL_SIGWAIT, b"sigwait\0");
    let mut copy = empty_set();
    // SAFETY: as sigwait.
    unsafe { std::mem::transmute::<usize, SigwaitFn>(f)(without_ckpt(set, &mut copy), sig) }
}

/// # Safety
/// Same contract as sigwaitinfo(2).
#[no_mangle]
pub unsafe extern "C" fn sigwaitinfo(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
) -> i32 {
    let f = resolve(&REAL_SIGWAITINFO, b"sigwaitinfo\0");
    let mut copy = empty_set();
    // SAFETY: as sigwaitinfo.
    unsafe { std::mem::transmute::<usize, SigwaitinfoFn>(f)(without_ckpt(set, &mut copy), info) }
}

/// # Safety
/// Same contract as sigtimedwait(2).
#[no_mangle]
pub unsafe extern "C" fn sigtimedwait(
    set: *const libc::sigset_t,
    info: *mut libc::siginfo_t,
    timeout: *const libc::timespec,
) -> i32 {
    let f = resolve(&REAL_SIGTIMEDWAIT, b"sigtimedwait\0");
    let mut copy = empty_set();
    // SAFETY: as sigtimedwait.
    unsafe {
        std::mem::transmute::<usize, SigtimedwaitFn>(f)(without_ckpt(set, &mut copy), info, timeout)
    }
}

/// # Safety
/// Same contract as signalfd(2).
#[no_mangle]
pub unsafe extern "C" fn signalfd(fd: i32, set: *const libc::sigset_t, flags: i32) -> i32 {
    let f = resolve(&REAL_SIGNALFD, b"signalfd\0");
    let mut copy = empty_set();
    // SAFETY: as signalfd.
    unsafe { std::mem::transmute::<usize, SignalfdFn>(f)(fd, without_ckpt(set, &mut copy), flags) }
}

/// The real call, then the watch's path recorded for the checkpoint.
///
/// # Safety
/// Same contract as inotify_add_watch(2).
#[no_mangle]
pub unsafe extern "C" fn inotify_add_watch(fd: i32, path: *const libc::c_char, mask: u32) -> i32 {
    let f = resolve(&REAL_INOTIFY_ADD_WATCH, b"inotify_add_watch\0");
    // SAFETY: as inotify_add_watch.
    let wd = unsafe { std::mem::transmute::<usize, InotifyAddWatchFn>(f)(fd, path, mask) };
    if wd >= 0 && !path.is_null() {
        let saved = std::io::Error::last_os_error().raw_os_error();
        // SAFETY: the call succeeded, so path is a NUL-terminated string.
        let p = unsafe { std::ffi::CStr::from_ptr(path) };
        let mut buf = [0u8; crate::inotify::PATH_MAX];
        let n = crate::inotify::resolve(p, mask & libc::IN_DONT_FOLLOW != 0, &mut buf);
        crate::inotify::record(fd, wd, n.map_or(&[][..], |n| &buf[..n]));
        if let Some(e) = saved {
            // SAFETY: errno is thread-local; restoring the caller's value.
            unsafe { *libc::__errno_location() = e };
        }
    }
    wd
}

/// Before fork: the forking thread blocks the checkpoint signal (so it is
/// never suspended while holding the allocator lock) and takes the
/// writer's locks, so the child never inherits one held.
extern "C" fn fork_prepare() {
    crate::sys::sigmask(
        libc::SIG_BLOCK,
        Some(1u64 << (SIGNO.load(Ordering::Relaxed) - 1)),
    );
    crate::config::lock();
    crate::alloc::fork_lock();
}
extern "C" fn fork_parent() {
    crate::alloc::fork_unlock();
    crate::config::unlock();
    // The program can never have the checkpoint signal blocked.
    crate::sys::sigmask(
        libc::SIG_UNBLOCK,
        Some(1u64 << (SIGNO.load(Ordering::Relaxed) - 1)),
    );
}
extern "C" fn fork_child() {
    crate::alloc::fork_unlock();
    crate::config::unlock();
    crate::child_after_fork();
    crate::sys::sigmask(
        libc::SIG_UNBLOCK,
        Some(1u64 << (SIGNO.load(Ordering::Relaxed) - 1)),
    );
}

pub fn init() {
    resolve(&REAL_SIGACTION, b"sigaction\0");
    resolve(&REAL_SIGNAL, b"signal\0");
    resolve(&REAL_SIGPROCMASK, b"sigprocmask\0");
    resolve(&REAL_PTHREAD_SIGMASK, b"pthread_sigmask\0");
    resolve(&REAL_SIGSUSPEND, b"sigsuspend\0");
    resolve(&REAL_SIGWAIT, b"sigwait\0");
    resolve(&REAL_SIGWAITINFO, b"sigwaitinfo\0");
    resolve(&REAL_SIGTIMEDWAIT, b"sigtimedwait\0");
    resolve(&REAL_SIGNALFD, b"signalfd\0");
    resolve(&REAL_INOTIFY_ADD_WATCH, b"inotify_add_watch\0");
    // SAFETY: registering plain extern "C" handlers.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
}
