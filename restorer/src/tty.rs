//! Terminals, recreated after the other descriptors (doc/design.md,
//! "Terminals"):
//!
//! - A pty pair the program opened itself comes back as a new pair: a
//!   new master on the master's fd numbers, its slave (TIOCGPTPEER) on
//!   the slave's, with the image's modes and window size. The slave's
//!   number, and so its path, may differ from the image's.
//! - Every other terminal is the terminal `ckpt restart` runs in: fds 0,
//!   1 and 2 stay as inherited when they are a terminal (a redirected
//!   one keeps its redirection), higher fds get a new open of that
//!   terminal (/dev/null when the restart has none). The terminal takes
//!   the modes of the image's controlling terminal (its speed stays);
//!   its window size stays what it is, and the process gets SIGWINCH
//!   when that differs from the image's.

use std::collections::BTreeMap;

use ckpt_format::{FdEntry, FdKind};

use crate::fds::FdRestoreError;
use crate::sys::tty::{self as ioctl, TERMIOS2_LEN};
use crate::{image::Image, log, sys};

type Result<T> = std::result::Result<T, FdRestoreError>;

fn io<T>(fd: i32, what: impl Into<String>, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|error| FdRestoreError::Io {
        fd,
        what: what.into(),
        error,
    })
}

/// Status flags F_SETFL can set on a terminal.
const SETFL_FLAGS: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC;
/// termios2 `c_cflag` bits that hold the line speed.
const SPEED_BITS: u32 = libc::CBAUD | libc::CIBAUD;

// Descriptors opened here, above every image fd; closed when dropped.
use crate::fds::Temps as Held;

/// The pty number of a slave path `/dev/pts/N`.
fn pts_number(path: &[u8]) -> Option<u32> {
    std::str::from_utf8(path.strip_prefix(b"/dev/pts/")?)
        .ok()?
        .parse()
        .ok()
}

fn termios_bytes(b: &[u8]) -> Option<[u8; TERMIOS2_LEN]> {
    b.try_into().ok()
}

/// The image's modes for a terminal that is not the image's own (the
/// restart's): everything but the line speed, which stays the terminal's.
fn keep_speed(image: &[u8; TERMIOS2_LEN], now: &[u8; TERMIOS2_LEN]) -> [u8; TERMIOS2_LEN] {
    let cflag = |t: &[u8; TERMIOS2_LEN]| u32::from_ne_bytes([t[8], t[9], t[10], t[11]]);
    let mut out = *image;
    let c = (cflag(image) & !SPEED_BITS) | (cflag(now) & SPEED_BITS);
    out[8..12].copy_from_slice(&c.to_ne_bytes());
    out[36..44].copy_from_slice(&now[36..44]); // c_ispeed, c_ospeed
    out
}

/// The terminal `ckpt restart` runs in: the first of fds 0-2 that is a
/// terminal, else the controlling terminal (/dev/tty). A copy above the
/// image's fds, so placing the image's fds cannot replace it.
fn restart_terminal(held: &mut Held) -> Option<i32> {
    let fd = match (0..=2).find(|&n| ioctl::termios(n).is_ok()) {
        Some(n) => sys::dup_at_least(n, held.base).ok()?,
        None => sys::open(b"/dev/tty", libc::O_RDWR | libc::O_NOCTTY, 0).ok()?,
    };
    held.keep(fd).ok()
}

/// Recreates the image's terminals on their numbers (`base`: a number
/// above every image fd). Returns the fd numbers now the process's.
pub fn restore(img: &Image, base: i32) -> Result<Vec<i32>> {
    let ttys: Vec<&FdEntry> = img
        .fds
        .iter()
        .filter(|e| matches!(e.kind, FdKind::Tty { .. } | FdKind::PtyMaster { .. }))
        .collect();
    if ttys.is_empty() {
        return Ok(Vec::new());
    }
    let mut held = Held {
        fds: Vec::new(),
        base,
    };
    let term = restart_terminal(&mut held);
    // One source per open file description.
    let mut sources: BTreeMap<u64, i32> = BTreeMap::new();
    // The image's pty number -> the new master.
    let mut masters: BTreeMap<u32, i32> = BTreeMap::new();

    for e in &ttys {
        let FdKind::PtyMaster {
            index,
            termios,
            rows,
            cols,
        } = &e.kind
        else {
            continue;
        };
        let n = e.fd.0;
        if sources.contains_key(&e.ofd_id) {
            continue;
        }
        let m = io(
            n,
            "open /dev/ptmx",
            sys::open(b"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0),
        )?;
        let m = io(n, "moving an fd", held.keep(m))?;
        io(n, "unlockpt", ioctl::unlock_pty(m))?;
        if let Some(t) = termios_bytes(termios) {
            io(n, "TCSETS2 on the new pty", ioctl::set_termios(m, &t))?;
        }
        io(n, "TIOCSWINSZ", ioctl::set_winsize(m, *rows, *cols))?;
        let now = io(n, "TIOCGPTN", ioctl::pty_number(m))?;
        log::info(&format!(
            "fd {n}: pty master; its slave /dev/pts/{index} is /dev/pts/{now} now"
        ));
        sources.insert(e.ofd_id, m);
        masters.entry(*index).or_insert(m);
    }

    let mut kept = Vec::new();
    for e in &ttys {
        let n = e.fd.0;
        let FdKind::Tty { path, .. } = &e.kind else {
            kept.push(n);
            continue;
        };
        let acc = e.status_flags as i32 & libc::O_ACCMODE;
        let own = pts_number(path).and_then(|i| masters.get(&i).copied());
        if own.is_none() && n <= 2 {
            if ioctl::termios(n).is_ok() {
                // The restart's terminal, inherited: nothing to open.
                io(
                    n,
                    "setting status flags",
                    sys::set_status_flags(n, e.status_flags as i32 & SETFL_FLAGS),
                )?;
                log::info(&format!("fd {n}: tty, the restart's terminal"));
            } else {
                log::info(&format!(
                    "fd {n}: was a tty; the restart's fd {n} is not one: left as inherited"
                ));
            }
            kept.push(n);
            continue;
        }
        let src = match sources.get(&e.ofd_id) {
            Some(&s) => s,
            None => {
                let s = match (own, term) {
                    (Some(m), _) => {
                        let s = io(
                            n,
                            "opening the new pty's slave",
                            ioctl::open_peer(m, acc | libc::O_NOCTTY),
                        )?;
                        log::info(&format!("fd {n}: the slave of the new pty"));
                        s
                    }
                    (None, Some(t)) => {
                        let again = format!("/proc/self/fd/{t}");
                        let s = match sys::open(again.as_bytes(), acc | libc::O_NOCTTY, 0) {
                            Ok(s) => s,
                            Err(_) => io(n, "dup of the terminal", sys::dup_at_least(t, base))?,
                        };
                        log::info(&format!(
                            "fd {n}: tty {}: the restart's terminal",
                            String::from_utf8_lossy(path)
                        ));
                        s
                    }
                    (None, None) => {
                        log::warn(&format!(
                            "fd {n}: tty {}, and the restart has no terminal: /dev/null",
                            String::from_utf8_lossy(path)
                        ));
                        io(n, "open /dev/null", sys::open(b"/dev/null", acc, 0))?
                    }
                };
                let s = io(n, "moving an fd", held.keep(s))?;
                io(
                    n,
                    "setting status flags",
                    sys::set_status_flags(s, e.status_flags as i32 & SETFL_FLAGS),
                )?;
                sources.insert(e.ofd_id, s);
                s
            }
        };
        let cloexec = e.fd_flags.0 & libc::FD_CLOEXEC as u32 != 0;
        io(n, "dup3", sys::dup3(src, n, cloexec))?;
        kept.push(n);
    }
    for e in &ttys {
        if let FdKind::PtyMaster { .. } = e.kind {
            let src = sources[&e.ofd_id];
            let cloexec = e.fd_flags.0 & libc::FD_CLOEXEC as u32 != 0;
            io(e.fd.0, "dup3", sys::dup3(src, e.fd.0, cloexec))?;
            io(
                e.fd.0,
                "setting status flags",
                sys::set_status_flags(src, e.status_flags as i32 & SETFL_FLAGS),
            )?;
        }
    }
    if let Some(t) = term {
        restart_terminal_state(&ttys, &masters, t);
    }
    Ok(kept)
}

/// Gives the restart's terminal the modes of the image's controlling
/// terminal (else of its first stdio terminal), and raises SIGWINCH when
/// the window size differs from the image's. Failures are logged: the
/// program runs on with the terminal as it is.
fn restart_terminal_state(ttys: &[&FdEntry], masters: &BTreeMap<u32, i32>, term: i32) {
    let outer = |e: &&&FdEntry| match &e.kind {
        FdKind::Tty { path, .. } => pts_number(path).is_none_or(|i| !masters.contains_key(&i)),
        _ => false,
    };
    let pick = ttys
        .iter()
        .filter(outer)
        .find(|e| {
            matches!(
                e.kind,
                FdKind::Tty {
                    controlling: true,
                    ..
                }
            )
        })
        .or_else(|| ttys.iter().filter(outer).find(|e| e.fd.0 <= 2))
        .or_else(|| ttys.iter().find(outer));
    let Some(FdEntry {
        fd,
        kind:
            FdKind::Tty {
                termios,
                rows,
                cols,
                ..
            },
        ..
    }) = pick.copied()
    else {
        return;
    };
    match (termios_bytes(termios), ioctl::termios(term)) {
        (Some(image), Ok(now)) => match ioctl::set_termios(term, &keep_speed(&image, &now)) {
            Ok(()) => log::info(&format!("terminal: the modes of fd {}", fd.0)),
            Err(e) => log::warn(&format!("terminal: setting the image's modes: {e}")),
        },
        (None, _) => log::info("terminal: the image has no modes for it"),
        (_, Err(e)) => log::warn(&format!("terminal: TCGETS2: {e}")),
    }
    match ioctl::winsize(term) {
        Ok(now) if now != (*rows, *cols) && (*rows, *cols) != (0, 0) => {
            log::info(&format!(
                "terminal: {}x{} at the checkpoint, {}x{} now: SIGWINCH",
                rows, cols, now.0, now.1
            ));
            if let Err(e) = ioctl::raise_process(libc::SIGWINCH) {
                log::warn(&format!("SIGWINCH: {e}"));
            }
        }
        Ok(_) => {}
        Err(e) => log::warn(&format!("terminal: TIOCGWINSZ: {e}")),
    }
}
