//! Pids and namespaces: a user namespace when unprivileged, a pid and a
//! mount namespace, an init (pid 1) that reaps and forwards signals, and
//! the process with the image's pid (clone3 `set_tid`) that restores.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::log;

fn check(r: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

/// Where forwarded signals go (0 = nowhere yet).
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Terminal-generated signals (SI_KERNEL) already reach the whole
    // process group, the restored process included: do not double them.
    if code == libc::SI_KERNEL {
        return;
    }
    let to = FORWARD_TO.load(Ordering::Relaxed);
    if to > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(to, sig) };
    }
}

const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

fn install_forwarding(to: i32) {
    FORWARD_TO.store(to, Ordering::Relaxed);
    for sig in FORWARDED {
        // SAFETY: sigaction struct zeroed then filled; the handler only
        // calls kill, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn write_file(path: &str, s: &str) -> io::Result<()> {
    std::fs::write(path, s).map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))
}

/// Unprivileged: a user namespace mapping our ids to themselves.
fn enter_user_ns() -> io::Result<()> {
    // SAFETY: plain syscalls without pointers.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall without pointers.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWUSER) } as libc::c_long,
        "unshare(CLONE_NEWUSER)",
    )?;
    write_file("/proc/self/setgroups", "deny")?;
    write_file("/proc/self/uid_map", &format!("{uid} {uid} 1\n"))?;
    write_file("/proc/self/gid_map", &format!("{gid} {gid} 1\n"))?;
    log::info(&format!(
        "user namespace: uid {uid} gid {gid} mapped to themselves"
    ));
    Ok(())
}

fn wait_status_to_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// Waits for `child`, reaping every other child meanwhile; returns its exit code.
fn wait_for(child: i32) -> i32 {
    loop {
        let mut status = 0;
        // SAFETY: valid pointer to an int.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            log::error(&format!("waitpid: {e}"));
            return 1;
        }
        if r == child {
            return wait_status_to_code(status);
        }
    }
}

/// Like fork, but the child gets pid `pid` in the current pid namespace.
fn fork_with_pid(pid: i32) -> io::Result<i32> {
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
    // copy of this single-threaded process and returns 0 here.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r >= 0 {
        return Ok(r as i32);
    }
    let e = io::Error::last_os_error();
    log::info(&format!(
        "clone3 set_tid={pid} failed ({e}); trying ns_last_pid"
    ));
    write_file("/proc/sys/kernel/ns_last_pid", &format!("{}", pid - 1))?;
    // SAFETY: fork in a single-threaded process.
    let r = check(unsafe { libc::fork() } as libc::c_long, "fork")? as i32;
    if r == 0 {
        return Ok(0);
    }
    if r != pid {
        return Err(io::Error::other(format!(
            "pid {pid} is taken (got {r}) and set_tid failed: {e}"
        )));
    }
    Ok(r)
}

/// Runs `restore` as the process with pid `pid` inside fresh namespaces,
/// under an init; returns the exit code the caller should exit with.
/// `restore` runs in the restore process and never returns.
pub fn run(pid: i32, restore: impl FnOnce() -> std::convert::Infallible) -> io::Result<i32> {
    if pid <= 1 {
        return Err(io::Error::other(format!(
            "image pid {pid} cannot be restored: pid 1 is the namespace's init"
        )));
    }
    enter_user_ns()?;
    // SAFETY: plain syscall without pointers.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) } as libc::c_long,
        "unshare(CLONE_NEWPID|CLONE_NEWNS)",
    )?;
    // SAFETY: fork in a single-threaded process.
    let init = check(unsafe { libc::fork() } as libc::c_long, "fork")? as i32;
    if init > 0 {
        install_forwarding(init);
        return Ok(wait_for(init));
    }
    // Init, pid 1 of the new namespace.
    let code = init_main(pid, restore);
    // SAFETY: leaving the init process without running atexit handlers
    // that belong to the outer process.
    unsafe { libc::_exit(code) }
}

#[allow(unreachable_code)] // restore() never returns
fn init_main(pid: i32, restore: impl FnOnce() -> std::convert::Infallible) -> i32 {
    let none: *const libc::c_char = std::ptr::null();
    // SAFETY: mount with NUL-terminated literals or null where allowed.
    let r = unsafe {
        libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if r != 0 {
        log::info(&format!("making / private: {}", io::Error::last_os_error()));
    } else {
        // SAFETY: as above.
        let r = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if r != 0 {
            log::info(&format!(
                "mounting /proc for the new pid namespace: {}",
                io::Error::last_os_error()
            ));
        }
    }
    let child = match fork_with_pid(pid) {
        Ok(0) => match restore() {},
        Ok(c) => c,
        Err(e) => {
            log::error(&format!("creating the process with pid {pid}: {e}"));
            return 2;
        }
    };
    install_forwarding(child);
    let code = wait_for(child);
    log::info(&format!(
        "restored process {pid} ended with exit code {code}"
    ));
    code
}
