//! Raw system calls the restorer's ordinary code needs (memory, signals,
//! limits). Namespaces and process creation live in `ns_sys.rs`.

// The paths are relative to this file, also when a test includes it by path.
/// inotify watches.
#[path = "sys/inotify.rs"]
pub mod inotify;
/// Shared-memory objects.
#[path = "sys/shm.rs"]
pub mod shm;
/// Terminal ioctls.
#[path = "sys/tty.rs"]
pub mod tty;

use std::io;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// How an anonymous staging mapping is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonFlags {
    pub shared: bool,
    pub grows_down: bool,
}

/// Reserves `[addr, addr+len)` with PROT_NONE, failing if anything is there.
pub fn reserve(addr: u64, len: u64) -> io::Result<()> {
    let flags =
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping, so no
    // memory the program uses can be affected.
    let p = unsafe { libc::mmap(addr as *mut _, len as usize, libc::PROT_NONE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    if p as u64 != addr {
        // An old kernel ignoring MAP_FIXED_NOREPLACE: undo.
        // SAFETY: p was just mapped by us and is used by nothing.
        unsafe { libc::munmap(p, len as usize) };
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "hole is in use"));
    }
    Ok(())
}

/// Maps fresh zeroed anonymous memory over part of the reserved hole.
pub fn map_anon_in_hole(addr: u64, len: u64, prot: i32, f: AnonFlags) -> io::Result<()> {
    let mut flags = libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE;
    flags |= if f.shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    if f.grows_down {
        flags |= libc::MAP_GROWSDOWN;
    }
    // SAFETY: callers pass only ranges inside the hole reserved by
    // `reserve`, which holds nothing but our own staging memory.
    let p = unsafe { libc::mmap(addr as *mut _, len as usize, prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps `len` bytes of `fd` at `off` privately (copy-on-write) at `addr`.
pub fn map_file_in_hole(addr: u64, len: u64, prot: i32, fd: i32, off: u64) -> io::Result<()> {
    let flags = libc::MAP_PRIVATE | libc::MAP_FIXED;
    // SAFETY: callers pass only ranges inside the hole reserved by
    // `reserve`, which holds nothing but our own staging memory.
    let p = unsafe { libc::mmap(addr as *mut _, len as usize, prot, flags, fd, off as i64) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub fn mprotect(addr: u64, len: u64, prot: i32) -> io::Result<()> {
    // SAFETY: changes protection of hole memory only (callers' contract);
    // no Rust reference to it is alive across the call.
    check(unsafe { libc::mprotect(addr as *mut _, len as usize, prot) } as libc::c_long).map(drop)
}

/// Mutable access to memory the restorer mapped in its hole.
///
/// Only `stage.rs` calls this, for ranges it mapped read-write itself.
pub fn hole_mut(addr: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: the range was mapped PROT_READ|PROT_WRITE by map_anon_in_hole,
    // stays mapped until the final stage, and the caller holds no other
    // reference to it.
    unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, len as usize) }
}

/// Read access to a mapping of ours found in /proc/self/maps (the vdso).
pub fn mapped(addr: u64, len: u64) -> &'static [u8] {
    // SAFETY: callers pass a readable range taken from /proc/self/maps that
    // nothing unmaps before the final stage.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// Blocks every signal that can be blocked.
pub fn block_all_signals() -> io::Result<()> {
    let all: u64 = !0;
    // SAFETY: rt_sigprocmask with valid pointers to an 8-byte set.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            std::ptr::null_mut::<u64>(),
            8,
        )
    })
    .map(drop)
}

/// The kernel's `struct sigaction` (x86_64).
#[repr(C)]
struct KSigAction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

/// Installs a disposition exactly as the kernel stored it.
pub fn rt_sigaction(
    sig: i32,
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
) -> io::Result<()> {
    let act = KSigAction {
        handler,
        flags,
        restorer,
        mask,
    };
    // SAFETY: act is a valid kernel sigaction; no handler of ours can run
    // because every signal is blocked while the restorer works.
    check(unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KSigAction,
            0usize,
            8usize,
        )
    })
    .map(drop)
}

pub fn setrlimit(resource: u32, cur: u64, max: u64) -> io::Result<()> {
    let l = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: prlimit64 on ourselves with a valid new-limit pointer.
    check(unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            resource,
            &l as *const libc::rlimit64,
            0usize,
        )
    })
    .map(drop)
}

pub fn personality(p: u32) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::syscall(libc::SYS_personality, p as libc::c_ulong) }).map(drop)
}

pub fn umask(m: u32) {
    // SAFETY: plain syscall without pointers.
    unsafe { libc::umask(m as libc::mode_t) };
}

/// Duplicates `fd` to the lowest free number >= `min`, close-on-exec.
pub fn dup_at_least(fd: i32, min: i32) -> io::Result<i32> {
    // SAFETY: fcntl on an fd we own.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) } as libc::c_long).map(|r| r as i32)
}

pub fn lseek(fd: i32, off: u64) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::lseek(fd, off as libc::off_t, libc::SEEK_SET) } as libc::c_long).map(drop)
}

pub fn set_cloexec(fd: i32, on: bool) -> io::Result<()> {
    let v = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl on an fd we own.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, v) } as libc::c_long).map(drop)
}

/// sched_setscheduler(0, policy, priority 0) for the calling thread.
pub fn sched_set(policy: u32) -> io::Result<()> {
    let param: i32 = 0;
    // SAFETY: the kernel reads one struct sched_param (an int).
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy as libc::c_long,
            &param as *const i32,
        )
    })
    .map(drop)
}

/// setpriority(PRIO_PROCESS, 0, nice): the calling thread's nice value.
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::syscall(libc::SYS_setpriority, libc::PRIO_PROCESS, 0, nice) }).map(drop)
}

/// Whether timer_create can be asked for a given id
/// (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux 6.16).
pub fn timer_restore_ids_supported() -> bool {
    // SAFETY: prctl GET without pointers.
    unsafe { libc::syscall(libc::SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, 2, 0, 0, 0) >= 0 }
}

/// prctl option: timer_create takes the id in `*created_timer_id`.
pub const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;

pub fn close(fd: i32) {
    // SAFETY: callers close only descriptors they created.
    unsafe { libc::close(fd) };
}

/// open(2) with raw flags (O_CLOEXEC added); `path` without NUL.
pub fn open(path: &[u8], flags: i32, mode: u32) -> io::Result<i32> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: c is NUL-terminated and lives across the call.
    check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) } as libc::c_long)
        .map(|r| r as i32)
}

/// An anonymous memory file (close-on-exec).
pub fn memfd(name: &std::ffi::CStr) -> io::Result<i32> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) } as libc::c_long)
        .map(|r| r as i32)
}

/// A pipe, close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(i32, i32)> {
    let mut p = [-1i32; 2];
    // SAFETY: pipe2 writes two descriptors into our array.
    check(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    Ok((p[0], p[1]))
}

pub fn pipe_capacity(fd: i32) -> io::Result<usize> {
    // SAFETY: fcntl without pointers.
    check(unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) } as libc::c_long).map(|n| n as usize)
}

pub fn set_pipe_capacity(fd: i32, bytes: usize) -> io::Result<usize> {
    // SAFETY: fcntl without pointers.
    check(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes as libc::c_int) } as libc::c_long)
        .map(|n| n as usize)
}

/// Writes all of `b`; a short write that makes no progress is an error.
pub fn write_all(fd: i32, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        // SAFETY: write reads at most b.len() bytes from b.
        let n = check(
            unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) } as libc::c_long,
        )?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        b = &b[n as usize..];
    }
    Ok(())
}

/// dup3: `from` onto the number `to`, close-on-exec or not.
pub fn dup3(from: i32, to: i32, cloexec: bool) -> io::Result<()> {
    let f = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 between fds; callers only target fd numbers the image owns.
    check(unsafe { libc::dup3(from, to, f) } as libc::c_long).map(drop)
}

/// F_SETFL: the file status flags that can change after open.
pub fn set_status_flags(fd: i32, flags: i32) -> io::Result<()> {
    // SAFETY: fcntl without pointers.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } as libc::c_long).map(drop)
}

/// An eventfd holding `count`, close-on-exec (EFD_SEMAPHORE when asked).
pub fn eventfd(count: u64, semaphore: bool) -> io::Result<i32> {
    let flags = libc::EFD_CLOEXEC | if semaphore { libc::EFD_SEMAPHORE } else { 0 };
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe { libc::eventfd(0, flags) } as libc::c_long)? as i32;
    if count != 0 {
        // A fresh counter has room for any value an eventfd can hold.
        if let Err(e) = write_all(fd, &count.to_ne_bytes()) {
            close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

/// A signalfd accepting the signals of `mask` (bit k-1 = signal k), close-on-exec.
pub fn signalfd(mask: u64) -> io::Result<i32> {
    // SAFETY: the kernel reads 8 bytes of mask (its sigset size) from our u64.
    check(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            8usize,
            libc::SFD_CLOEXEC,
        )
    })
    .map(|fd| fd as i32)
}

/// `TFD_IOC_SET_TICKS`: sets a timerfd's count of unread expirations.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;

fn timespec(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as _,
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}

/// A timerfd on `clock`, close-on-exec, armed to expire `value_ns` from
/// now and every `interval_ns` after, with `ticks` expirations unread.
/// With TFD_TIMER_ABSTIME in `flags` it is armed at now + `value_ns` on
/// its clock, flags kept (TFD_TIMER_CANCEL_ON_SET needs them).
pub fn timerfd(
    clock: i32,
    value_ns: u64,
    interval_ns: u64,
    flags: u32,
    ticks: u64,
) -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    let fd =
        check(unsafe { libc::timerfd_create(clock, libc::TFD_CLOEXEC) } as libc::c_long)? as i32;
    let arm = || -> io::Result<()> {
        // An armed periodic timer can show 0 left (it expired a moment
        // ago); 0 would disarm it.
        let value = if value_ns == 0 && interval_ns != 0 {
            1
        } else {
            value_ns
        };
        let mut it_value = timespec(value);
        if value != 0 && flags & libc::TFD_TIMER_ABSTIME as u32 != 0 {
            let mut now = timespec(0);
            // SAFETY: clock_gettime writes one timespec into `now`.
            check(unsafe { libc::clock_gettime(clock, &mut now) } as libc::c_long)?;
            let abs = (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64 + value;
            it_value = timespec(abs);
        }
        let its = libc::itimerspec {
            it_interval: timespec(interval_ns),
            it_value,
        };
        // SAFETY: the kernel reads one itimerspec; no old value asked for.
        check(
            unsafe { libc::timerfd_settime(fd, flags as i32, &its, std::ptr::null_mut()) }
                as libc::c_long,
        )?;
        if ticks != 0 {
            // SAFETY: the kernel reads one u64 from `ticks`.
            check(
                unsafe { libc::ioctl(fd, TFD_IOC_SET_TICKS as _, &ticks as *const u64) }
                    as libc::c_long,
            )?;
        }
        Ok(())
    };
    if let Err(e) = arm() {
        close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// A new epoll set, close-on-exec.
pub fn epoll_create() -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) } as libc::c_long).map(|fd| fd as i32)
}

/// EPOLL_CTL_ADD of `fd` to `ep` with its events and data.
pub fn epoll_add(ep: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: the kernel reads one epoll_event from `ev`.
    check(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } as libc::c_long)
        .map(drop)
}

/// epoll_wait for at most one event, without waiting: whether one came.
pub fn epoll_poll_one(ep: i32) -> io::Result<bool> {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: the kernel writes at most one epoll_event into `ev`.
    check(unsafe { libc::epoll_wait(ep, &mut ev, 1, 0) } as libc::c_long).map(|n| n == 1)
}

/// Reads exactly `buf.len()` bytes of `fd` at `off`.
pub fn pread_exact(fd: i32, off: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: pread into the unfilled tail of `buf`.
        let n = unsafe {
            libc::pread(
                fd,
                buf[done..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - done,
                (off + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => done += n as usize,
        }
    }
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds, by the raw syscall: the libc's cached
/// vdso entry point goes stale once the restorer moves the vdso.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into `now`.
    unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Makes the fd table hold descriptors up to `top` (or the soft
/// RLIMIT_NOFILE, if lower): the kernel never shrinks it again.
pub fn grow_fd_table(top: i32) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let top = (lim.rlim_cur.min(top as u64 + 1) as i32) - 1;
    if top <= 0 {
        return;
    }
    // SAFETY: duplicates fd 0 or any open fd at or above `top`, then closes
    // the duplicate; no descriptor the process uses is touched (fcntl picks
    // a free one).
    unsafe {
        let probe = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if probe >= 0 {
            let n = libc::fcntl(probe, libc::F_DUPFD_CLOEXEC, top);
            if n >= 0 {
                libc::close(n);
            }
            libc::close(probe);
        }
    }
}
