//! System calls that make shared-memory objects again (shm.rs).

use std::io;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// ftruncate(2).
pub fn set_size(fd: i32, size: u64) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::ftruncate(fd, size as libc::off_t) } as libc::c_long).map(drop)
}

/// Frees `[off, off + len)` of the file (reads as zeros after), keeping
/// its size.
pub fn punch_hole(fd: i32, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    } as libc::c_long)
    .map(drop)
}

/// Writes all of `buf` at file offset `off`.
pub fn pwrite_all(fd: i32, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the kernel reads at most buf.len() bytes of buf.
        let n = check(unsafe {
            libc::pwrite(
                fd,
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                off as libc::off_t,
            )
        } as libc::c_long)? as usize;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwrite wrote nothing",
            ));
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}
