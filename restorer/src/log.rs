//! The restorer's log: `$CKPT_TMPDIR/ckpt-restore-<pid>.log`, and stderr
//! with `--debug`. Plain write(2) on a raw fd: fork-safe, no locks.

use std::io::Write;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);
static DEBUG: AtomicBool = AtomicBool::new(false);

/// The CKPT_TMPDIR in effect.
pub fn tmpdir() -> String {
    std::env::var("CKPT_TMPDIR").unwrap_or_else(|_| {
        let user = std::env::var("USER").unwrap_or_else(|_| {
            // SAFETY: plain syscall without pointers.
            format!("{}", unsafe { libc::getuid() })
        });
        format!("/tmp/ckpt-{user}")
    })
}

/// Opens the log file; failures are silent (the log is best effort).
pub fn init(debug: bool) {
    DEBUG.store(
        debug || std::env::var("CKPT_DEBUG").is_ok_and(|v| v == "1"),
        Ordering::Relaxed,
    );
    let dir = tmpdir();
    let _ = std::fs::create_dir_all(&dir);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let path = format!("{dir}/ckpt-restore-{}.log", std::process::id());
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // Far from the fd numbers a restored program uses.
        let fd = f.into_raw_fd();
        let fd = match crate::sys::dup_at_least(fd, 500) {
            Ok(high) => {
                // SAFETY: closing our own fd, duplicated to `high`.
                unsafe { libc::close(fd) };
                high
            }
            Err(_) => fd,
        };
        let _ = crate::sys::set_cloexec(fd, true);
        FD.store(fd, Ordering::Relaxed);
    }
}

fn emit(level: &str, msg: &str, to_stderr: bool) {
    let line = format!("ckpt-restore[{}] {level}: {msg}\n", std::process::id());
    let fd = FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // The file's lines carry CLOCK_MONOTONIC (the clock the writer's
        // and the programs' own stamps use), so a restart's steps can be
        // timed across its processes.
        let t = crate::sys::monotonic_ns();
        let stamped = format!(
            "{}.{:06} {line}",
            t / 1_000_000_000,
            t % 1_000_000_000 / 1000
        );
        // SAFETY: write from a valid buffer to a raw fd we own.
        unsafe { libc::write(fd, stamped.as_ptr() as *const libc::c_void, stamped.len()) };
    }
    if to_stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

pub fn info(msg: &str) {
    emit("info", msg, DEBUG.load(Ordering::Relaxed));
}

pub fn warn(msg: &str) {
    emit("warning", msg, DEBUG.load(Ordering::Relaxed));
}

/// Something the user must know although the restart goes on: the log
/// and stderr.
pub fn notice(msg: &str) {
    emit("warning", msg, true);
}

pub fn error(msg: &str) {
    emit("error", msg, true);
}

/// Moves the log fd above `top` when it sits at or under it, so that
/// recreating the image's fds never writes over it.
pub fn move_log_above(top: i32) {
    let fd = FD.load(Ordering::Relaxed);
    if fd < 0 || fd > top {
        return;
    }
    if let Ok(high) = crate::sys::dup_at_least(fd, top + 1) {
        FD.store(high, Ordering::Relaxed);
        crate::sys::close(fd);
    }
}
