//! Pids and namespaces: a user namespace when unprivileged, a pid and a
//! mount namespace, an init (pid 1) that reaps and forwards signals, and
//! the process tree: init forks every root with its image's pid (clone3
//! `set_tid`), each process forks its own children the same way (so
//! their parent is the one of the images), takes its session and group
//! ([`crate::tree`]), then restores itself.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::barrier::Barrier;
use crate::tree::{Membership, Tree};
use crate::{log, ns_sys, sys};

fn check(r: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

/// How many processes signals are forwarded to, at most.
const MAX_FORWARD: usize = 64;
/// Where forwarded signals go (0 = nowhere).
static FORWARD_TO: [AtomicI32; MAX_FORWARD] = [const { AtomicI32::new(0) }; MAX_FORWARD];

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // Terminal-generated signals (SI_KERNEL) already reach the whole
    // process group, the restored process included: do not double them.
    if code == libc::SI_KERNEL {
        return;
    }
    for slot in &FORWARD_TO {
        let to = slot.load(Ordering::Relaxed);
        if to > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe { libc::kill(to, sig) };
        }
    }
}

const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT to `to` (the first
/// [`MAX_FORWARD`] of them).
fn install_forwarding(to: &[i32]) {
    for (slot, &pid) in FORWARD_TO.iter().zip(to) {
        slot.store(pid, Ordering::Relaxed);
    }
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
        match reap() {
            Some((pid, code)) if pid == child => return code,
            Some(_) => {}
            None => return 1,
        }
    }
}

/// Reaps one child: (pid, exit code); None when there is none left.
fn reap() -> Option<(i32, i32)> {
    loop {
        let mut status = 0;
        // SAFETY: valid pointer to an int.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r >= 0 {
            for slot in &FORWARD_TO {
                let _ = slot.compare_exchange(r, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
            return Some((r, wait_status_to_code(status)));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return None,
            _ => {
                log::error(&format!("waitpid: {e}"));
                return None;
            }
        }
    }
}

/// Like fork, but the child gets pid `pid` in the current pid namespace.
fn fork_with_pid(pid: i32) -> io::Result<i32> {
    let e = match ns_sys::clone3_with_pid(pid) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    log::info(&format!(
        "clone3 set_tid={pid} failed ({e}); trying ns_last_pid"
    ));
    write_file("/proc/sys/kernel/ns_last_pid", &format!("{}", pid - 1))?;
    let r = ns_sys::fork()?;
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

/// The restore of one process of the tree (its node index); never returns.
pub type RestoreFn<'a> = &'a dyn Fn(usize, &Barrier) -> std::convert::Infallible;

/// Closes descriptors made for the tree to inherit, in a process that
/// only forks it (a reader must see end-of-file when the last writer of
/// the tree closes, so nobody else may hold a pipe's end).
fn close_inherited(inherited: &[i32]) {
    for &fd in inherited {
        sys::close(fd);
    }
}

/// Restores `tree` inside fresh namespaces, under an init; returns the
/// exit code the caller should exit with: the first root's, once every
/// process of the namespace has ended. `restore` runs in each process of
/// the tree, after its children exist, and never returns. `inherited`:
/// descriptors every process of the tree inherits (the pipes they
/// share); the outer process and init close them once they have forked.
pub fn run(tree: &Tree, restore: RestoreFn, inherited: &[i32]) -> io::Result<i32> {
    if let Some(n) = tree.nodes.iter().find(|n| n.pid <= 1) {
        return Err(io::Error::other(format!(
            "image pid {} cannot be restored: pid 1 is the namespace's init",
            n.pid
        )));
    }
    enter_user_ns()?;
    // System V objects keep their ids in an IPC namespace of their own.
    let ipc = if crate::shm::needs_ipc_namespace() {
        libc::CLONE_NEWIPC
    } else {
        0
    };
    // SAFETY: plain syscall without pointers.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS | ipc) } as libc::c_long,
        "unshare(CLONE_NEWPID|CLONE_NEWNS)",
    )?;
    if ipc != 0 {
        crate::shm::make_sysv().map_err(io::Error::other)?;
    }
    let init = ns_sys::fork();
    if !matches!(init, Ok(0)) {
        close_inherited(inherited);
    }
    let init = init?;
    if init > 0 {
        install_forwarding(&[init]);
        return Ok(wait_for(init));
    }
    // Init, pid 1 of the new namespace.
    let code = init_main(tree, restore, inherited);
    // SAFETY: leaving the init process without running atexit handlers
    // that belong to the outer process.
    unsafe { libc::_exit(code) }
}

/// Forks node `i` with its pid; the child takes its session or group,
/// forks its own children and restores itself. Returns the child's pid.
fn create(tree: &Tree, i: usize, restore: RestoreFn, barrier: &Barrier) -> io::Result<i32> {
    let node = &tree.nodes[i];
    let child = fork_with_pid(node.pid)
        .map_err(|e| io::Error::new(e.kind(), format!("creating pid {}: {e}", node.pid)))?;
    if child == 0 {
        become_node(tree, i, restore, barrier);
    }
    // The parent sets the group too (as shells do), so that a sibling
    // forked next can join it whatever the child has done yet.
    if let Membership::Group(g) = node.membership {
        let _ = ns_sys::setpgid(child, g);
    }
    Ok(child)
}

fn become_node(tree: &Tree, i: usize, restore: RestoreFn, barrier: &Barrier) -> ! {
    let node = &tree.nodes[i];
    let done = match node.membership {
        Membership::Inherit => Ok(()),
        Membership::NewSession => ns_sys::setsid(),
        Membership::Group(g) => ns_sys::setpgid(0, g),
    };
    if let Err(e) = done {
        log::warn(&format!(
            "pid {}: {:?}: {e}; it keeps its parent's",
            node.pid, node.membership
        ));
    }
    for &c in &node.children {
        if let Err(e) = create(tree, c, restore, barrier) {
            log::error(&format!("pid {}: {e}", node.pid));
            barrier.break_it();
            std::process::exit(2);
        }
    }
    // Zombies last, so that they take none of the pids above.
    for &(pid, status) in &node.zombies {
        if let Err(e) = create_zombie(pid, status) {
            log::warn(&format!(
                "pid {}: recreating its unreaped child {pid}: {e}; waitpid() for it will fail",
                node.pid
            ));
        }
    }
    match restore(i, barrier) {}
}

/// Forks a child with pid `pid` that ends at once with wait status
/// `status`: it stays a zombie until the restored parent reaps it. It
/// is no process of the tree: it does not pass the barrier.
fn create_zombie(pid: i32, status: i32) -> io::Result<()> {
    if fork_with_pid(pid)? == 0 {
        end_with(status);
    }
    Ok(())
}

/// Ends this process so that its parent's waitpid() reports `status`:
/// `_exit` with its code, or killed by its signal (default disposition,
/// unblocked; no core file, so the core-dump bit is not reproduced).
fn end_with(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `no_core` is a valid rlimit; the sigaction and sigset
        // are zero-initialised plain C structs that live across the
        // calls; signal numbers out of range only make the calls fail.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &act, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
        // Still here: a signal whose default action does not kill.
        // SAFETY: ending the process without running any of its handlers.
        unsafe { libc::_exit(128 + (sig & 0x7f)) }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(libc::WEXITSTATUS(status)) }
}

fn init_main(tree: &Tree, restore: RestoreFn, inherited: &[i32]) -> i32 {
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
    let barrier = match Barrier::new(tree.nodes.len() as u32) {
        Ok(b) => b,
        Err(e) => {
            log::error(&format!("{e}"));
            return 2;
        }
    };
    let mut roots = Vec::with_capacity(tree.roots.len());
    for &r in &tree.roots {
        match create(tree, r, restore, &barrier) {
            Ok(pid) => roots.push(pid),
            Err(e) => {
                log::error(&format!("{e}"));
                barrier.break_it();
                close_inherited(inherited);
                while reap().is_some() {}
                return 2;
            }
        }
    }
    close_inherited(inherited);
    install_forwarding(&roots);
    // Every process of the namespace, orphans included, is ours to reap;
    // the restart ends when the last one has.
    let first = roots.first().copied().unwrap_or(0);
    let mut code = 1;
    while let Some((pid, c)) = reap() {
        if pid == first {
            code = c;
        }
        if let Some(n) = tree.nodes.iter().find(|n| n.pid == pid) {
            log::info(&format!(
                "restored process {} ended with exit code {c}",
                n.pid
            ));
        }
    }
    code
}
