//! Terminals: a tty (the terminal the program runs in, or the slave side
//! of a pty) and a pty master the program opened itself, each with its
//! modes (`struct termios2`) and window size, and whether it is the
//! process's controlling terminal.
//!
//! Bytes waiting in a terminal's queues are not stored: the kernel offers
//! no way to read them without taking them from the program. A pty whose
//! queues hold bytes is logged with their count.

use ckpt_format::FdKind;

use crate::{mem, sys};

/// Whether the descriptor whose /proc link reads `target` is a terminal
/// this module describes.
pub fn is_terminal(target: &[u8]) -> bool {
    is_master(target)
        || target.starts_with(b"/dev/pts/")
        || target.starts_with(b"/dev/tty")
        || target == b"/dev/console"
}

/// The pty multiplexer: every open of it is a new master.
fn is_master(target: &[u8]) -> bool {
    target == b"/dev/ptmx" || target == b"/dev/pts/ptmx"
}

/// The controlling terminal's device number (`tty_nr` of
/// /proc/thread-self/stat, decoded), None without one.
fn controlling_rdev() -> Option<u64> {
    let stat = std::fs::read("/proc/thread-self/stat").ok()?;
    // Fields after the command name: state ppid pgrp session tty_nr.
    let after = stat.iter().rposition(|&b| b == b')')?;
    let text = std::str::from_utf8(&stat[after + 1..]).ok()?;
    let nr: u64 = text.split_whitespace().nth(4)?.parse().ok()?;
    if nr == 0 {
        return None;
    }
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    Some(libc::makedev(major as u32, minor as u32))
}

/// Describes the terminal open as `fd` (`target`: its /proc link,
/// `rdev`: its device number).
pub fn kind(fd: i32, target: &[u8], rdev: u64) -> FdKind {
    let termios = match sys::tty::termios(fd) {
        Ok(t) => t.to_vec(),
        Err(e) => {
            crate::log!("fd {fd}: TCGETS2: {e}; modes not stored");
            Vec::new()
        }
    };
    let (rows, cols) = mem::winsize(fd);
    let (inq, outq) = sys::tty::queued(fd);
    if inq + outq > 0 {
        crate::log!(
            "fd {fd}: {inq} bytes to read and {outq} to send in the terminal's queues are not saved"
        );
    }
    if is_master(target) {
        match sys::tty::pty_number(fd) {
            Ok(index) => {
                return FdKind::PtyMaster {
                    index,
                    termios,
                    rows,
                    cols,
                }
            }
            Err(e) => crate::log!("fd {fd}: TIOCGPTN: {e}; recorded as a tty"),
        }
    }
    FdKind::Tty {
        path: target.to_vec(),
        controlling: target == b"/dev/tty" || controlling_rdev() == Some(rdev),
        termios,
        rows,
        cols,
    }
}
