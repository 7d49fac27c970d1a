//! Raw syscalls and the log: async-signal-safe, no allocation, no libc locks.

/// Residency of shared memory pages.
pub mod shm;
/// Terminal ioctls.
pub mod tty;

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Log file descriptor (-1 = none).
pub static LOG_FD: AtomicI32 = AtomicI32::new(-1);
/// Verbose logging (CKPT_DEBUG=1).
pub static DEBUG: AtomicI32 = AtomicI32::new(0);

pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> i64 {
    // SAFETY: plain syscall with integer arguments.
    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) }
}

/// Waits while `*w == val`, at most `timeout_ms` (0 = forever).
pub fn futex_wait(w: &AtomicU32, val: u32, timeout_ms: u64) {
    futex_wait_op(
        w,
        val,
        timeout_ms,
        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
    )
}

/// A wait the kernel's clear-child-tid wake (a shared futex) ends.
pub fn futex_wait_shared(w: &AtomicU32, val: u32, timeout_ms: u64) {
    futex_wait_op(w, val, timeout_ms, libc::FUTEX_WAIT)
}

fn futex_wait_op(w: &AtomicU32, val: u32, timeout_ms: u64, op: i32) {
    let ts = libc::timespec {
        tv_sec: (timeout_ms / 1000) as libc::time_t,
        tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
    };
    let tsp = if timeout_ms == 0 {
        std::ptr::null()
    } else {
        &ts as *const libc::timespec
    };
    // SAFETY: w is a valid aligned u32 for the whole call; ts lives on our stack.
    unsafe {
        libc::syscall(libc::SYS_futex, w.as_ptr(), op, val, tsp, 0usize, 0u32);
    }
}

pub fn futex_wake(w: &AtomicU32) {
    // SAFETY: w is a valid aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}

pub fn get_fs_base() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: ARCH_GET_FS writes one u64 to the pointer we give.
    unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut v as *mut u64) };
    v
}

pub fn get_robust_list() -> (u64, u64) {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: get_robust_list(0 = self) writes a pointer and a length.
    unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    (head, len as u64)
}

pub fn get_tid_address() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS (40) writes one pointer.
    unsafe { libc::prctl(40, &mut v as *mut u64, 0, 0, 0) };
    v
}

pub fn sigaltstack_get() -> (u64, i32, u64) {
    // SAFETY: stack_t is plain data; sigaltstack(NULL, &old) only reads the current one.
    unsafe {
        let mut old: libc::stack_t = std::mem::zeroed();
        libc::syscall(
            libc::SYS_sigaltstack,
            0usize,
            &mut old as *mut libc::stack_t,
        );
        (old.ss_sp as u64, old.ss_flags, old.ss_size as u64)
    }
}

/// rt_sigprocmask with a raw 64-bit mask; returns the old mask.
pub fn sigmask(how: i32, set: Option<u64>) -> u64 {
    let mut old: u64 = 0;
    let s = set.unwrap_or(0);
    let p = if set.is_some() {
        &s as *const u64
    } else {
        std::ptr::null()
    };
    // SAFETY: kernel sigset of 8 bytes, both pointers valid or null.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            p,
            &mut old as *mut u64,
            8usize,
        )
    };
    old
}

pub fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: writing from a valid slice.
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// A fixed buffer for formatting log lines without allocating.
pub struct LineBuf {
    buf: [u8; 1024],
    len: usize,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    pub fn new() -> Self {
        LineBuf {
            buf: [0; 1024],
            len: 0,
        }
    }
}

impl std::fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes one line to the log (no allocation).
pub fn log_args(args: std::fmt::Arguments<'_>) {
    let mut fd = LOG_FD.load(Ordering::Relaxed);
    if fd < 0 {
        fd = crate::config::open_pending_log();
        if fd < 0 {
            return;
        }
    }
    let mut lb = LineBuf::new();
    let _ = std::fmt::Write::write_fmt(&mut lb, format_args!("[{}] ", gettid()));
    let _ = std::fmt::Write::write_fmt(&mut lb, args);
    lb.buf[lb.len] = b'\n';
    write_all(fd, &lb.buf[..lb.len + 1]);
}

#[macro_export]
macro_rules! log {
    ($($t:tt)*) => { $crate::sys::log_args(format_args!($($t)*)) };
}

#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::sys::DEBUG.load(std::sync::atomic::Ordering::Relaxed) != 0 {
            $crate::sys::log_args(format_args!($($t)*))
        }
    };
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group never returns.
    unsafe {
        libc::syscall(libc::SYS_exit_group, code);
    }
    unreachable!()
}

/// The CPUs this thread may run on (its affinity mask: what a batch
/// system or taskset gave the job), at least 1.
pub fn cpus_allowed() -> usize {
    // SAFETY: a zeroed cpu_set_t of its own size, filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set) as usize).max(1)
    }
}

pub fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

pub fn mmap_anon(len: usize, extra: i32) -> *mut u8 {
    // SAFETY: anonymous private mapping, no fd.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p as *mut u8
    }
}

pub fn munmap(addr: u64, len: u64) {
    // SAFETY: the caller owns the range (allocator or restorer scratch).
    unsafe { libc::munmap(addr as *mut libc::c_void, len as usize) };
}

pub fn madvise_dontneed(addr: u64, len: u64) {
    // SAFETY: the range is our scratch arena; its contents are discarded on purpose.
    unsafe { libc::madvise(addr as *mut libc::c_void, len as usize, libc::MADV_DONTNEED) };
}

/// True if `fd` is not open in this process.
pub fn fd_is_free(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
}

/// Moves `from` to the number `to` (close-on-exec), closing `from`.
/// Returns the fd that is valid afterwards.
pub fn move_fd(from: i32, to: i32) -> i32 {
    if from == to || to < 0 {
        return from;
    }
    // SAFETY: both are our own descriptors (`to` free or our placeholder).
    unsafe {
        if libc::dup3(from, to, libc::O_CLOEXEC) == to {
            libc::close(from);
            return to;
        }
    }
    from
}

/// Holds the number `fd` with /dev/null until `move_fd` replaces it, so
/// the program's next open() cannot take it. False if `fd` is in use.
pub fn reserve_fd(fd: i32) -> bool {
    if !fd_is_free(fd) {
        return false;
    }
    // SAFETY: opening /dev/null; the path is NUL-terminated.
    let n = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if n < 0 {
        return false;
    }
    move_fd(n, fd) == fd
}

/// Moves the writer's own `fd` to a high number (just under 1024, or the
/// soft RLIMIT_NOFILE when lower), close-on-exec: the program's open()
/// returns the lowest free number, so it never reuses ours when it
/// closes it, and our log never ends up writing into the program's file.
pub fn to_high_fd(fd: i32) -> i32 {
    if fd < 0 {
        return fd;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let top = lim.rlim_cur.min(1024) as i32;
    let min = top - top / 8;
    if min <= fd {
        return fd;
    }
    // SAFETY: duplicating and closing our own descriptor.
    unsafe {
        let n = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min);
        if n < 0 {
            return fd;
        }
        libc::close(fd);
        n
    }
}

/// The numeric entry names of a /proc directory (`/proc/self/task`,
/// `/proc/self/fd`), read with getdents64: libc's opendir would call the
/// program's malloc, which a suspended thread may hold.
pub fn numeric_entries(path: &std::ffi::CStr) -> Vec<i32> {
    let mut out = Vec::new();
    // SAFETY: path is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return out;
    }
    let mut buf = vec![0u8; 16384];
    loop {
        // SAFETY: getdents64 fills at most buf.len() bytes of our buffer.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
            // d_type u8, d_name NUL-terminated at offset 19.
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n as usize {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(v) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                out.push(v);
            }
            off += reclen;
        }
    }
    // SAFETY: closing the directory fd we opened.
    unsafe { libc::close(fd) };
    out
}

fn cvt(r: libc::c_long) -> std::io::Result<libc::c_long> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An fd the writer opened for itself, closed when dropped.
pub struct OwnFd(pub i32);

impl Drop for OwnFd {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

/// A pipe of the writer's own (close-on-exec, nonblocking): (read, write).
pub fn pipe_nonblock() -> std::io::Result<(OwnFd, OwnFd)> {
    let mut p = [-1i32; 2];
    // SAFETY: pipe2 writes two fds into our array.
    cvt(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } as _)?;
    Ok((OwnFd(p[0]), OwnFd(p[1])))
}

/// Bytes waiting in a pipe or FIFO (FIONREAD).
pub fn pipe_unread(fd: i32) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    cvt(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } as _)?;
    Ok(n.max(0) as usize)
}

/// A pipe's capacity in bytes (F_GETPIPE_SZ).
pub fn pipe_capacity(fd: i32) -> std::io::Result<usize> {
    // SAFETY: fcntl query without pointers.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) } as _).map(|n| n as usize)
}

/// Sets a pipe's capacity (F_SETPIPE_SZ); returns the capacity it got.
pub fn set_pipe_capacity(fd: i32, bytes: usize) -> std::io::Result<usize> {
    // SAFETY: fcntl without pointers on our own pipe.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, bytes as libc::c_int) } as _)
        .map(|n| n as usize)
}

/// tee(2): duplicates up to `len` bytes of pipe `from` into pipe `to`
/// without consuming them; never blocks.
pub fn tee(from: i32, to: i32, len: usize) -> std::io::Result<usize> {
    // SAFETY: tee takes no pointers.
    cvt(unsafe { libc::tee(from, to, len, libc::SPLICE_F_NONBLOCK) } as _).map(|n| n as usize)
}

/// read(2) into `buf`.
pub fn read(fd: i32, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: read writes at most buf.len() bytes into buf.
    cvt(unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } as _)
        .map(|n| n as usize)
}

/// Opens `path` (NUL-terminated bytes) for the writer's own use.
pub fn open(path: &std::ffi::CStr, flags: i32) -> std::io::Result<OwnFd> {
    // SAFETY: path is NUL-terminated.
    cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) } as _).map(|n| OwnFd(n as i32))
}

/// Whether `a` and `b` are the same open file description (kcmp
/// KCMP_FILE); None when the kernel cannot tell (no CONFIG_KCMP).
pub fn same_open_file(a: i32, b: i32) -> Option<bool> {
    let pid = getpid();
    // SAFETY: kcmp compares two of our own descriptors; no pointers.
    let r = unsafe {
        libc::syscall(libc::SYS_kcmp, pid, pid, 0 /* KCMP_FILE */, a, b)
    };
    (r >= 0).then_some(r == 0)
}

/// kill(pid, sig).
pub fn signal_process(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall without pointers.
    cvt(unsafe { libc::kill(pid, sig) } as _).map(|_| ())
}

/// Whether this process is a child subreaper (PR_GET_CHILD_SUBREAPER).
pub fn child_subreaper() -> bool {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int at &v.
    let r = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut v as *mut libc::c_int) };
    r == 0 && v != 0
}

/// Makes this process a child subreaper again.
pub fn set_child_subreaper() -> std::io::Result<()> {
    // SAFETY: plain prctl without pointers.
    cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } as _).map(|_| ())
}

/// Whether our `fd` and process `pid`'s `theirs` are the same open file
/// description (kcmp KCMP_FILE). Needs ptrace read access to `pid` (the
/// same user, dumpable; Yama restricts only attaching).
pub fn same_open_file_as(fd: i32, pid: i32, theirs: i32) -> std::io::Result<bool> {
    // SAFETY: kcmp compares two descriptors by number; no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            getpid(),
            pid,
            0, /* KCMP_FILE */
            fd,
            theirs,
        )
    };
    cvt(r as _).map(|r| r == 0)
}

/// The target of the symbolic link `path` (NUL-terminated) in `buf`; its
/// length, or None (error, or longer than `buf`).
pub fn readlink(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    if path.last() != Some(&0) {
        return None;
    }
    // SAFETY: path is NUL-terminated; readlink writes at most buf.len() bytes.
    let n = unsafe {
        libc::readlink(
            path.as_ptr() as *const libc::c_char,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    };
    (n >= 0 && (n as usize) < buf.len()).then_some(n as usize)
}

/// Opens (creating, mode 0600, append) the log file `path`, creating its
/// directory (one level, 0700) if missing, and moves it to a high fd.
/// Raw syscalls only: the first line logged may come from a signal handler.
pub fn open_log_file(path: &std::ffi::CStr) -> i32 {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: path is NUL-terminated.
    let mut fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd < 0 {
        let bytes = path.to_bytes();
        if let Some(slash) = bytes.iter().rposition(|&b| b == b'/') {
            let mut dir = [0u8; 4096];
            if slash > 0 && slash < dir.len() {
                dir[..slash].copy_from_slice(&bytes[..slash]);
                // SAFETY: `dir` is NUL-terminated (zero-filled past slash);
                // then the same open as above.
                fd = unsafe {
                    libc::mkdir(dir.as_ptr() as *const libc::c_char, 0o700);
                    libc::open(path.as_ptr(), flags, 0o600)
                };
            }
        }
    }
    to_high_fd(fd)
}

/// Waits for an exclusive flock on `f` (released when it is closed).
pub fn flock_exclusive(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on an fd the caller owns.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
}
