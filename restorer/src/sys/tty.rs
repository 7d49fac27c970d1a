//! Terminal ioctls the restorer needs: modes, window size, a new pty.

use std::io;

/// `struct termios2` bytes as the image stores them (x86_64 layout).
pub const TERMIOS2_LEN: usize = 44;
const _: () = assert!(std::mem::size_of::<libc::termios2>() == TERMIOS2_LEN);

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The terminal's modes (TCGETS2); fails on anything but a terminal.
pub fn termios(fd: i32) -> io::Result<[u8; TERMIOS2_LEN]> {
    let mut b = [0u8; TERMIOS2_LEN];
    // SAFETY: TCGETS2 writes one struct termios2 (TERMIOS2_LEN bytes,
    // checked above) into b.
    check(unsafe { libc::ioctl(fd, libc::TCGETS2, b.as_mut_ptr()) })?;
    Ok(b)
}

/// Sets the terminal's modes at once (TCSETS2). The restorer blocks
/// every signal, so a background process is not stopped by SIGTTOU.
pub fn set_termios(fd: i32, t: &[u8; TERMIOS2_LEN]) -> io::Result<()> {
    // SAFETY: TCSETS2 reads one struct termios2 from t.
    check(unsafe { libc::ioctl(fd, libc::TCSETS2, t.as_ptr()) }).map(drop)
}

/// (rows, cols) of the terminal's window.
pub fn winsize(fd: i32) -> io::Result<(u16, u16)> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize.
    check(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) })?;
    Ok((w.ws_row, w.ws_col))
}

/// Sets the window size (TIOCSWINSZ).
pub fn set_winsize(fd: i32, rows: u16, cols: u16) -> io::Result<()> {
    let w = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &w) }).map(drop)
}

/// Unlocks a new pty master's slave (unlockpt: TIOCSPTLCK 0).
pub fn unlock_pty(master: i32) -> io::Result<()> {
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int.
    check(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &zero) }).map(drop)
}

/// The pty number of a master (TIOCGPTN).
pub fn pty_number(master: i32) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    check(unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// Opens the slave of `master` (TIOCGPTPEER, no path lookup), with
/// `flags` (access mode, O_NONBLOCK, O_NOCTTY); close-on-exec.
pub fn open_peer(master: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: TIOCGPTPEER takes the open flags as its argument.
    check(unsafe { libc::ioctl(master, libc::TIOCGPTPEER, flags | libc::O_CLOEXEC) })
}

/// Sends `sig` to our own process (kept pending while signals are blocked).
pub fn raise_process(sig: i32) -> io::Result<()> {
    // SAFETY: plain syscalls without pointers (getpid asked of the
    // kernel: libc's answer may predate our clone3).
    check(unsafe { libc::kill(libc::syscall(libc::SYS_getpid) as libc::pid_t, sig) }).map(drop)
}
