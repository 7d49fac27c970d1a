//! inotify calls the restorer needs to rebuild an instance's watches.

use std::io;

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A new inotify instance (non-blocking: the restorer drains it).
pub fn init() -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK) })
}

/// Adds a watch on `path`; its wd.
pub fn add_watch(fd: i32, path: &[u8], mask: u32) -> io::Result<i32> {
    let p = std::ffi::CString::new(path).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: p is NUL-terminated and lives across the call.
    check(unsafe { libc::inotify_add_watch(fd, p.as_ptr(), mask) })
}

pub fn rm_watch(fd: i32, wd: i32) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::inotify_rm_watch(fd, wd) }).map(drop)
}

/// Reads and drops every queued event; the number of bytes dropped.
pub fn drain(fd: i32) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            return total;
        }
        total += n as usize;
    }
}
