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
//!
//! Processes: glibc's fork runs the writer's pthread_atfork handlers, but
//! a clone used as fork (`syscall(SYS_clone, SIGCHLD, ...)`, clone3, or
//! glibc's `clone()` without CLONE_VM) runs none, and its child would be a
//! copy of the writer with no checkpoint thread, never connected: those
//! entry points are interposed and run the same handlers around the call.
//! A clone made by an inline `syscall` instruction cannot be seen; such a
//! child is reported as not under checkpoint control (exec.rs).
//!
//! exec (execve, execv, execvp, execvpe, fexecve, and execl, execle,
//! execlp through the C shim execl.c) and posix_spawn(p): a program that
//! cannot carry the writer is reported before it runs (exec.rs), and an
//! exec waits until a checkpoint of this process is reported (the exec
//! would end the checkpoint thread).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

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
static REAL_CLOSE_RANGE: AtomicUsize = AtomicUsize::new(0);
static REAL_SYSCALL: AtomicUsize = AtomicUsize::new(0);
static REAL_CLONE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECV: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVP: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVPE: AtomicUsize = AtomicUsize::new(0);
static REAL_FEXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_POSIX_SPAWN: AtomicUsize = AtomicUsize::new(0);
static REAL_POSIX_SPAWNP: AtomicUsize = AtomicUsize::new(0);

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
type CloseRangeFn = unsafe extern "C" fn(u32, u32, i32) -> i32;
type SyscallFn = unsafe extern "C" fn(
    libc::c_long,
    libc::c_long,
    libc::c_long,
    libc::c_long,
    libc::c_long,
    libc::c_long,
    libc::c_long,
) -> libc::c_long;
pub type CloneFn = unsafe extern "C" fn(
    extern "C" fn(*mut libc::c_void) -> i32,
    *mut libc::c_void,
    i32,
    *mut libc::c_void,
    *mut libc::pid_t,
    *mut libc::c_void,
    *mut libc::pid_t,
) -> i32;

/// libc's own clone(), for the writer's threads (resolved by `init`).
pub fn real_clone() -> CloneFn {
    let f = resolve(&REAL_CLONE, b"clone\0");
    // SAFETY: libc's clone, with its signature.
    unsafe { std::mem::transmute::<usize, CloneFn>(f) }
}

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

/// Whether clone `flags` make a new process with a copy of this one's
/// memory (what fork does), rather than a thread or a vfork-like child
/// sharing it.
fn fork_like(flags: u64) -> bool {
    flags & (libc::CLONE_VM | libc::CLONE_THREAD) as u64 == 0
}

/// Runs `call` (a clone used as fork) between the fork handlers: the
/// child starts its writer as a forked child does. errno is the call's.
fn around_fork(call: impl FnOnce() -> libc::c_long) -> libc::c_long {
    fork_prepare();
    let r = call();
    let saved = std::io::Error::last_os_error().raw_os_error();
    if r == 0 {
        fork_child();
    } else {
        fork_parent();
    }
    if let Some(e) = saved {
        // SAFETY: errno is thread-local; giving back the call's value.
        unsafe { *libc::__errno_location() = e };
    }
    r
}

/// libc's `syscall()`: clone, clone3 and fork made through it get the
/// fork handlers (the child returns here on the parent's stack, so only
/// a clone without a new stack is fork-like). Everything else goes
/// straight through. Declared with its six arguments: on x86-64 a
/// variadic caller passes them where a fixed-argument callee reads them.
///
/// # Safety
/// Same contract as syscall(2).
#[no_mangle]
pub unsafe extern "C" fn syscall(
    n: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    // The path every other system call takes: two compares and a jump to
    // libc's (no frame: a program may make millions of these).
    let f = REAL_SYSCALL.load(Ordering::Relaxed);
    if f != 0 && !matches!(n, libc::SYS_fork | libc::SYS_clone | libc::SYS_clone3) {
        // SAFETY: libc's syscall, with the caller's arguments.
        return unsafe { std::mem::transmute::<usize, SyscallFn>(f)(n, a1, a2, a3, a4, a5, a6) };
    }
    // SAFETY: same contract.
    unsafe { syscall_slow(n, a1, a2, a3, a4, a5, a6) }
}

/// `syscall()` for fork, clone and clone3 (and before libc's is known).
#[inline(never)]
#[cold]
unsafe fn syscall_slow(
    n: libc::c_long,
    a1: libc::c_long,
    a2: libc::c_long,
    a3: libc::c_long,
    a4: libc::c_long,
    a5: libc::c_long,
    a6: libc::c_long,
) -> libc::c_long {
    let f = resolve(&REAL_SYSCALL, b"syscall\0");
    // SAFETY: libc's syscall.
    let real = unsafe { std::mem::transmute::<usize, SyscallFn>(f) };
    let fork = match n {
        libc::SYS_fork => true,
        libc::SYS_clone => fork_like(a1 as u64) && a2 == 0,
        libc::SYS_clone3 if a1 != 0 && a2 >= 48 => {
            // SAFETY: the caller's struct clone_args, at least 48 bytes:
            // flags at offset 0, stack at offset 40.
            let (flags, stack) = unsafe {
                let p = a1 as *const u64;
                (
                    std::ptr::read_unaligned(p),
                    std::ptr::read_unaligned(p.add(5)),
                )
            };
            fork_like(flags) && stack == 0
        }
        _ => false,
    };
    if !fork {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(n, a1, a2, a3, a4, a5, a6) };
    }
    // SAFETY: forwarding the caller's arguments.
    around_fork(|| unsafe { real(n, a1, a2, a3, a4, a5, a6) })
}

/// What the child of an interposed fork-like `clone()` runs first.
#[repr(C)]
struct CloneStart {
    func: extern "C" fn(*mut libc::c_void) -> i32,
    arg: *mut libc::c_void,
}

extern "C" fn clone_child(p: *mut libc::c_void) -> i32 {
    // SAFETY: p is the CloneStart on the cloning thread's stack, which the
    // child has a copy of (no CLONE_VM).
    let start = unsafe { std::ptr::read(p as *const CloneStart) };
    fork_child();
    (start.func)(start.arg)
}

/// glibc's `clone()`: without CLONE_VM or CLONE_THREAD, the child starts
/// its writer before running `func` (and the parent's locks are taken
/// around the call, as for fork). The three optional arguments are
/// declared: a variadic caller passes them where they are read.
///
/// # Safety
/// Same contract as clone(2).
#[no_mangle]
pub unsafe extern "C" fn clone(
    func: extern "C" fn(*mut libc::c_void) -> i32,
    stack: *mut libc::c_void,
    flags: i32,
    arg: *mut libc::c_void,
    ptid: *mut libc::pid_t,
    tls: *mut libc::c_void,
    ctid: *mut libc::pid_t,
) -> i32 {
    let f = resolve(&REAL_CLONE, b"clone\0");
    // SAFETY: libc's clone.
    let real = unsafe { std::mem::transmute::<usize, CloneFn>(f) };
    if !fork_like(flags as u32 as u64) {
        // SAFETY: forwarding the caller's arguments.
        return unsafe { real(func, stack, flags, arg, ptid, tls, ctid) };
    }
    let mut start = CloneStart { func, arg };
    let p = &mut start as *mut CloneStart as *mut libc::c_void;
    fork_prepare();
    // SAFETY: forwarding the caller's arguments, with our start routine.
    let r = unsafe { real(clone_child, stack, flags, p, ptid, tls, ctid) };
    let saved = std::io::Error::last_os_error().raw_os_error();
    fork_parent();
    if let Some(e) = saved {
        // SAFETY: errno is thread-local; giving back the call's value.
        unsafe { *libc::__errno_location() = e };
    }
    r
}

type Argv = *const *const libc::c_char;
type ExecveFn = unsafe extern "C" fn(*const libc::c_char, Argv, Argv) -> i32;
type ExecvFn = unsafe extern "C" fn(*const libc::c_char, Argv) -> i32;
type FexecveFn = unsafe extern "C" fn(i32, Argv, Argv) -> i32;
type SpawnFn = unsafe extern "C" fn(
    *mut libc::pid_t,
    *const libc::c_char,
    *const libc::c_void,
    *const libc::c_void,
    Argv,
    Argv,
) -> i32;

extern "C" {
    static environ: Argv;
}

/// Before a program replaces this one (exec) or starts as a child
/// (posix_spawn, whose exec inside glibc cannot be interposed): a
/// program that cannot carry the writer is reported; before an exec, a
/// checkpoint of this process still being reported is waited for (the
/// exec would end the checkpoint thread). Keeps errno.
///
/// # Safety
/// `path` is null or a C string; `envp` null or a C string array.
unsafe fn before_program(path: *const libc::c_char, envp: Argv, search: bool, exec: bool) {
    let saved = std::io::Error::last_os_error().raw_os_error();
    if exec {
        crate::wait_for_reply();
    }
    if !path.is_null() {
        // SAFETY: the caller's C string.
        let p = unsafe { std::ffi::CStr::from_ptr(path) }.to_bytes();
        let full = if search {
            crate::exec::search_path(p)
        } else {
            p.to_vec()
        };
        // SAFETY: envp is the caller's environment array (or null).
        if let Some(why) = unsafe { crate::exec::exec_why(&full, envp) } {
            crate::notice_exec_outsider(&full, why);
        }
    }
    if let Some(e) = saved {
        // SAFETY: errno is thread-local; giving back the caller's value.
        unsafe { *libc::__errno_location() = e };
    }
}

/// # Safety
/// Same contract as execve(2).
#[no_mangle]
pub unsafe extern "C" fn execve(path: *const libc::c_char, argv: Argv, envp: Argv) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe {
        before_program(path, envp, false, true);
        let f = resolve(&REAL_EXECVE, b"execve\0");
        std::mem::transmute::<usize, ExecveFn>(f)(path, argv, envp)
    }
}

/// # Safety
/// Same contract as execv(3).
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const libc::c_char, argv: Argv) -> i32 {
    // SAFETY: the caller's arguments; environ is libc's.
    unsafe {
        before_program(path, environ, false, true);
        let f = resolve(&REAL_EXECV, b"execv\0");
        std::mem::transmute::<usize, ExecvFn>(f)(path, argv)
    }
}

/// # Safety
/// Same contract as execvp(3).
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const libc::c_char, argv: Argv) -> i32 {
    // SAFETY: the caller's arguments; environ is libc's.
    unsafe {
        before_program(file, environ, true, true);
        let f = resolve(&REAL_EXECVP, b"execvp\0");
        std::mem::transmute::<usize, ExecvFn>(f)(file, argv)
    }
}

/// # Safety
/// Same contract as execvpe(3).
#[no_mangle]
pub unsafe extern "C" fn execvpe(file: *const libc::c_char, argv: Argv, envp: Argv) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe {
        before_program(file, envp, true, true);
        let f = resolve(&REAL_EXECVPE, b"execvpe\0");
        std::mem::transmute::<usize, ExecveFn>(f)(file, argv, envp)
    }
}

/// execl, execle and execlp (execl.c) once their arguments are in an
/// array: `mode` 0 is execl (environ), 1 execle (`envp`), 2 execlp (found
/// through PATH, environ). Goes on as execv, execve or execvp.
///
/// # Safety
/// Same contract as execv(3), execve(2) or execvp(3).
#[no_mangle]
pub unsafe extern "C" fn ckpt_writer_exec_list(
    path: *const libc::c_char,
    argv: Argv,
    envp: Argv,
    mode: i32,
) -> i32 {
    // SAFETY: the caller's arguments; environ is libc's.
    unsafe {
        match mode {
            1 => {
                before_program(path, envp, false, true);
                let f = resolve(&REAL_EXECVE, b"execve\0");
                std::mem::transmute::<usize, ExecveFn>(f)(path, argv, envp)
            }
            2 => {
                before_program(path, environ, true, true);
                let f = resolve(&REAL_EXECVP, b"execvp\0");
                std::mem::transmute::<usize, ExecvFn>(f)(path, argv)
            }
            _ => {
                before_program(path, environ, false, true);
                let f = resolve(&REAL_EXECV, b"execv\0");
                std::mem::transmute::<usize, ExecvFn>(f)(path, argv)
            }
        }
    }
}

/// # Safety
/// Same contract as fexecve(3).
#[no_mangle]
pub unsafe extern "C" fn fexecve(fd: i32, argv: Argv, envp: Argv) -> i32 {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    // SAFETY: the caller's arguments.
    unsafe {
        before_program(path.as_ptr(), envp, false, true);
        let f = resolve(&REAL_FEXECVE, b"fexecve\0");
        std::mem::transmute::<usize, FexecveFn>(f)(fd, argv, envp)
    }
}

/// # Safety
/// Same contract as posix_spawn(3).
#[no_mangle]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut libc::pid_t,
    path: *const libc::c_char,
    actions: *const libc::c_void,
    attr: *const libc::c_void,
    argv: Argv,
    envp: Argv,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe {
        before_program(path, envp, false, false);
        let f = resolve(&REAL_POSIX_SPAWN, b"posix_spawn\0");
        std::mem::transmute::<usize, SpawnFn>(f)(pid, path, actions, attr, argv, envp)
    }
}

/// # Safety
/// Same contract as posix_spawnp(3).
#[no_mangle]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut libc::pid_t,
    file: *const libc::c_char,
    actions: *const libc::c_void,
    attr: *const libc::c_void,
    argv: Argv,
    envp: Argv,
) -> i32 {
    // SAFETY: the caller's arguments.
    unsafe {
        before_program(file, envp, true, false);
        let f = resolve(&REAL_POSIX_SPAWNP, b"posix_spawnp\0");
        std::mem::transmute::<usize, SpawnFn>(f)(pid, file, actions, attr, argv, envp)
    }
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
    resolve(&REAL_SYSCALL, b"syscall\0");
    resolve(&REAL_CLONE, b"clone\0");
    resolve(&REAL_EXECVE, b"execve\0");
    resolve(&REAL_EXECV, b"execv\0");
    resolve(&REAL_EXECVP, b"execvp\0");
    resolve(&REAL_EXECVPE, b"execvpe\0");
    resolve(&REAL_FEXECVE, b"fexecve\0");
    resolve(&REAL_POSIX_SPAWN, b"posix_spawn\0");
    resolve(&REAL_POSIX_SPAWNP, b"posix_spawnp\0");
    resolve(&REAL_CLOSE_RANGE, b"close_range\0");
    // SAFETY: registering plain extern "C" handlers.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
}

/// Fds the checkpoint thread holds open while the program runs (the image
/// being synced, its directory): kept from the program's close_range.
static KEPT: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

/// Keeps `fd` (in place `i`; -1: none) from the program's close_range.
pub fn keep_fd(i: usize, fd: i32) {
    KEPT[i].store(fd, Ordering::SeqCst);
}

/// The writer's own fds (coordinator socket, log, those kept), in
/// ascending order (u32::MAX: none).
fn own_fds() -> [u32; 5] {
    let mut fds = [
        crate::config::SOCK_FD.load(Ordering::SeqCst),
        crate::config::RESERVED_SOCK_FD.load(Ordering::SeqCst),
        crate::sys::LOG_FD.load(Ordering::SeqCst),
        KEPT[0].load(Ordering::SeqCst),
        KEPT[1].load(Ordering::SeqCst),
    ]
    .map(|fd| if fd < 0 { u32::MAX } else { fd as u32 });
    fds.sort_unstable();
    fds
}

/// close_range(2) (glibc's wrapper): the range less the writer's own fds.
/// A program that closes every fd it did not open (daemons, closefrom(3)
/// before its work) would close the coordinator socket, and leave
/// checkpoint control unseen. Other flags (CLOSE_RANGE_CLOEXEC,
/// CLOSE_RANGE_UNSHARE) apply to each piece. A loop of close(2) is not
/// covered (close is not wrapped: too hot).
///
/// # Safety
/// Same contract as close_range(2).
#[no_mangle]
pub unsafe extern "C" fn close_range(first: u32, last: u32, flags: i32) -> i32 {
    let f = resolve(&REAL_CLOSE_RANGE, b"close_range\0");
    if f == 0 {
        // SAFETY: errno is thread-local.
        unsafe { *libc::__errno_location() = libc::ENOSYS };
        return -1;
    }
    // SAFETY: libc's close_range.
    let real = unsafe { std::mem::transmute::<usize, CloseRangeFn>(f) };
    let mut lo = first;
    for k in own_fds() {
        if k == u32::MAX || k < lo || k > last {
            continue;
        }
        if k > lo {
            // SAFETY: a sub-range of the caller's range.
            let r = unsafe { real(lo, k - 1, flags) };
            if r != 0 {
                return r;
            }
        }
        lo = k + 1;
    }
    if lo > last || lo < first {
        return 0;
    }
    // SAFETY: what is left of the caller's range.
    unsafe { real(lo, last, flags) }
}

/// closefrom(3): close_range from `lowfd`, the writer's own fds kept.
///
/// # Safety
/// Same contract as closefrom(3).
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: i32) {
    // SAFETY: same contract.
    unsafe { close_range(lowfd.max(0) as u32, u32::MAX, 0) };
}
