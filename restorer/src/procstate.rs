//! Process state restored with ordinary code before the final stage:
//! personality, umask, cwd, regular-file fds, signal dispositions, rlimits.

use std::ffi::OsStr;
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;

use ckpt_format::{FdKind, Process, Rlimit, SignalState};

use crate::{image::Image, log, sys};

pub fn basics(p: &Process) {
    if let Err(e) = sys::personality(p.personality) {
        log::warn(&format!("personality({:#x}): {e}", p.personality));
    }
    sys::umask(p.umask);
}

pub fn cwd(p: &Process) {
    if p.cwd.is_empty() {
        return;
    }
    if let Err(e) = std::env::set_current_dir(OsStr::from_bytes(&p.cwd)) {
        log::warn(&format!("chdir {}: {e}", String::from_utf8_lossy(&p.cwd)));
    }
}

/// Reopens regular files (by path, at their offset) on their fd numbers.
/// fds 0, 1 and 2 stay as inherited (the current terminal). Returns the
/// fd numbers that now belong to the restored process.
pub fn fds(img: &Image) -> Vec<i32> {
    let mut kept = vec![0, 1, 2];
    for e in &img.fds {
        let n = e.fd.0;
        if n <= 2 {
            continue;
        }
        match &e.kind {
            FdKind::RegularFile {
                file,
                offset,
                deleted: false,
                ..
            } => {
                let keep = libc::O_ACCMODE
                    | libc::O_APPEND
                    | libc::O_NONBLOCK
                    | libc::O_SYNC
                    | libc::O_DSYNC;
                let flags = (e.status_flags as i32) & keep;
                let path = OsStr::from_bytes(&file.path);
                let mut oo = std::fs::OpenOptions::new();
                match flags & libc::O_ACCMODE {
                    libc::O_WRONLY => oo.write(true),
                    libc::O_RDWR => oo.read(true).write(true),
                    _ => oo.read(true),
                };
                oo.custom_flags(flags & !libc::O_ACCMODE);
                let res = oo.open(path).map_err(|e| e.to_string()).and_then(|f| {
                    let tmp = f.into_raw_fd();
                    let r = sys::lseek(tmp, *offset)
                        .and_then(|_| if tmp != n { sys::dup2(tmp, n) } else { Ok(()) })
                        .and_then(|_| {
                            sys::set_cloexec(n, e.fd_flags.0 & libc::FD_CLOEXEC as u32 != 0)
                        });
                    if tmp != n {
                        // SAFETY: tmp is our own fd, duplicated to n.
                        unsafe { libc::close(tmp) };
                    }
                    r.map_err(|e| e.to_string())
                });
                match res {
                    Ok(()) => {
                        log::info(&format!(
                            "fd {n}: reopened {} at {offset}",
                            path.to_string_lossy()
                        ));
                        kept.push(n);
                    }
                    Err(err) => log::warn(&format!(
                        "fd {n}: cannot reopen {}: {err}",
                        path.to_string_lossy()
                    )),
                }
            }
            other => log::info(&format!(
                "fd {n}: {} not restored by the restorer",
                kind_name(other)
            )),
        }
    }
    kept.sort();
    kept.dedup();
    kept
}

fn kind_name(k: &FdKind) -> &'static str {
    match k {
        FdKind::RegularFile { .. } => "deleted regular file",
        FdKind::Directory { .. } => "directory",
        FdKind::Pipe { .. } => "pipe",
        FdKind::Fifo { .. } => "fifo",
        FdKind::Tty { .. } => "tty",
        FdKind::PtyMaster { .. } => "pty master",
        FdKind::Socket { .. } => "socket",
        FdKind::EventFd { .. } => "eventfd",
        FdKind::Epoll { .. } => "epoll",
        FdKind::SignalFd { .. } => "signalfd",
        FdKind::TimerFd { .. } => "timerfd",
        FdKind::Inotify { .. } => "inotify",
        FdKind::Device { .. } => "device",
        _ => "unsupported fd",
    }
}

/// Installs every disposition as the image recorded it (handlers and
/// sa_restorer point into the restored program). Signals are blocked.
pub fn sigactions(s: &SignalState) {
    for (i, a) in s.actions.iter().enumerate().take(64) {
        let sig = i as i32 + 1;
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if let Err(e) = sys::rt_sigaction(sig, a.handler, a.flags, a.restorer, a.mask) {
            log::warn(&format!("rt_sigaction({sig}): {e}"));
        }
    }
}

pub fn rlimits(v: &[Rlimit]) {
    for l in v {
        if let Err(e) = sys::setrlimit(l.resource, l.cur, l.max) {
            log::warn(&format!(
                "setrlimit({}, {}, {}): {e}; skipped",
                l.resource, l.cur, l.max
            ));
        }
    }
}
