//! Interposed libc functions: the program can neither block nor replace
//! the checkpoint signal. Real functions come from dlsym(RTLD_NEXT).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::suspend::SIGNO;

static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGPROCMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_SIGMASK: AtomicUsize = AtomicUsize::new(0);

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

fn is_ckpt(sig: i32) -> bool {
    sig == SIGNO.load(Ordering::Relaxed)
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
    // SAFETY: forwarding the caller's arguments.
    unsafe { real_sigaction(sig, act, old) }
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
    let mut copy: libc::sigset_t;
    let mut p = set;
    if !set.is_null() && how != libc::SIG_UNBLOCK {
        // SAFETY: set is the caller's valid sigset; we edit a copy.
        unsafe {
            copy = *set;
            libc::sigdelset(&mut copy, SIGNO.load(Ordering::Relaxed));
        }
        p = &copy;
    }
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

extern "C" fn fork_prepare() {
    crate::alloc::fork_lock();
}
extern "C" fn fork_parent() {
    crate::alloc::fork_unlock();
}
extern "C" fn fork_child() {
    crate::alloc::fork_unlock();
    crate::child_after_fork();
}

pub fn init() {
    resolve(&REAL_SIGACTION, b"sigaction\0");
    resolve(&REAL_SIGNAL, b"signal\0");
    resolve(&REAL_SIGPROCMASK, b"sigprocmask\0");
    resolve(&REAL_PTHREAD_SIGMASK, b"pthread_sigmask\0");
    // SAFETY: registering plain extern "C" handlers.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
}
