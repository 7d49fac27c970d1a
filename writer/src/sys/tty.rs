//! Terminal ioctls the writer needs to describe a tty or a pty master.

/// `struct termios2` as the kernel lays it out on x86_64 (iflag, oflag,
/// cflag, lflag, c_line, c_cc[19], ispeed, ospeed): the image's bytes.
pub const TERMIOS2_LEN: usize = 44;
const _: () = assert!(std::mem::size_of::<libc::termios2>() == TERMIOS2_LEN);

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The terminal's modes (TCGETS2); on a pty master, its slave's.
pub fn termios(fd: i32) -> std::io::Result<[u8; TERMIOS2_LEN]> {
    let mut b = [0u8; TERMIOS2_LEN];
    // SAFETY: TCGETS2 writes one struct termios2, TERMIOS2_LEN bytes
    // (checked above), into b.
    cvt(unsafe { libc::ioctl(fd, libc::TCGETS2, b.as_mut_ptr()) })?;
    Ok(b)
}

/// The pty number of a master (TIOCGPTN): its slave is /dev/pts/N.
pub fn pty_number(fd: i32) -> std::io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// Bytes waiting to be read (TIOCINQ) and not yet sent (TIOCOUTQ).
pub fn queued(fd: i32) -> (usize, usize) {
    let (mut inq, mut outq): (libc::c_int, libc::c_int) = (0, 0);
    // SAFETY: each ioctl writes one int; failures leave 0.
    unsafe {
        libc::ioctl(fd, libc::TIOCINQ, &mut inq);
        libc::ioctl(fd, libc::TIOCOUTQ, &mut outq);
    }
    (inq.max(0) as usize, outq.max(0) as usize)
}

/// The foreground process group of `fd`, the caller's controlling
/// terminal (TIOCGPGRP; ENOTTY on any other terminal or file).
pub fn foreground(fd: i32) -> std::io::Result<i32> {
    let mut pg: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCGPGRP, &mut pg) })?;
    Ok(pg)
}

/// Makes `pgrp` the foreground process group of `fd` (TIOCSPGRP). The
/// caller has SIGTTOU blocked (the writer's threads block every signal),
/// so a background caller is not stopped for it.
pub fn set_foreground(fd: i32, pgrp: i32) -> std::io::Result<()> {
    // SAFETY: TIOCSPGRP reads one pid_t.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCSPGRP, &pgrp) }).map(|_| ())
}

/// The caller's process group (getpgid(0)) and that of `pid`.
pub fn pgid(pid: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    cvt(unsafe { libc::getpgid(pid) })
}

/// setpgid(0, 0): the caller leads a group of its own.
pub fn lead_group() -> std::io::Result<()> {
    // SAFETY: plain syscall without pointers.
    cvt(unsafe { libc::setpgid(0, 0) }).map(|_| ())
}
