//! Raw system calls for process creation and the process tree: clone3
//! with `set_tid`, sessions and groups, and the futex and shared page the
//! restore barrier lives on.

use std::io;
use std::sync::atomic::AtomicU32;

fn check(r: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

/// `struct clone_args` up to `cgroup` (88 bytes, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 as fork, the child getting pid `pid` in the current pid
/// namespace: Ok(0) in the child, Ok(pid) in the parent.
pub fn clone3_with_pid(pid: i32) -> io::Result<i32> {
    let tids = [pid];
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        cgroup: 0,
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a
    // copy of this single-threaded process and returns 0 here; `tids`
    // and `args` live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    check(r, "clone3").map(|r| r as i32)
}

/// Plain fork (the ns_last_pid fallback).
pub fn fork() -> io::Result<i32> {
    // SAFETY: fork in a single-threaded process.
    check(unsafe { libc::fork() } as libc::c_long, "fork").map(|r| r as i32)
}

/// setsid(2): a new session and group led by the caller.
pub fn setsid() -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::setsid() } as libc::c_long, "setsid").map(drop)
}

/// setpgid(2) (`pid` 0: the caller).
pub fn setpgid(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(
        unsafe { libc::setpgid(pid, pgid) } as libc::c_long,
        "setpgid",
    )
    .map(drop)
}

/// One page of anonymous memory shared with every process forked after
/// this call; lives until exit (the final stage unmaps it with the rest).
pub fn shared_page() -> io::Result<&'static [AtomicU32; 1024]> {
    // SAFETY: a fresh anonymous mapping, no address requested.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::other(format!(
            "mmap of the barrier page: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: the page is mapped read-write, zeroed, 4096-byte aligned
    // (so aligned for AtomicU32), never unmapped by ordinary code, and
    // only ever accessed through atomics.
    Ok(unsafe { &*(p as *const [AtomicU32; 1024]) })
}

/// Waits while `*word == expected`, at most `timeout_ms`; Ok(false) on
/// timeout. Spurious wakes return Ok(true): callers re-check.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout_ms: u64) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as _,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT (not private: the word is in shared memory seen
    // by other processes) on a valid aligned u32, with a valid timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
        Some(libc::ETIMEDOUT) => Ok(false),
        _ => Err(io::Error::new(e.kind(), format!("futex wait: {e}"))),
    }
}

/// Wakes every waiter on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid aligned u32; no other pointer.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}
