//! File descriptors: what each one is, which ones share an open file
//! description, and the bytes waiting in pipes and FIFOs.
//!
//! A descriptor the writer cannot describe well enough for a restart
//! (io_uring, perf events, a device not known to be safe to reopen, ...)
//! fails the checkpoint with an [`FdError`] naming it: an image never
//! silently leaves one out.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use ckpt_format::{EpollEntry, Fd, FdEntry, FdFlags, FdKind, FileIdentity, SockAddr};

use crate::sys;

/// Largest file whose contents an image stores (`--ckpt-open-files`, or
/// an unlinked file); bigger ones are recorded without contents.
pub const MAX_FILE_CONTENTS: u64 = 64 << 20;

/// Character devices a restart reopens by path (major 1, "mem").
const SAFE_DEVICES: &[&[u8]] = &[
    b"/dev/null",
    b"/dev/zero",
    b"/dev/full",
    b"/dev/random",
    b"/dev/urandom",
];

/// Why a descriptor cannot be checkpointed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FdError {
    /// A kind of file ckpt cannot save (`anon_inode:[io_uring]`, ...).
    Unsupported { fd: i32, target: String },
    /// A character device not known to be safe to reopen.
    UnknownDevice { fd: i32, path: String, rdev: u64 },
    /// The bytes in a pipe or FIFO could not be read without consuming them.
    PipePeek { fd: i32, error: std::io::Error },
    /// An epoll registration whose fd number no longer names the file it
    /// registered (closed, or reused, while a dup keeps the file open).
    EpollTarget { fd: i32, target: i32 },
    /// An inotify watch whose path is unknown (added by a raw syscall,
    /// or when the writer's table was full) or no longer names the
    /// watched file.
    InotifyWatch { fd: i32, wd: i32, why: String },
    /// An event fd whose /proc fdinfo lacks a field its state needs.
    FdInfo {
        fd: i32,
        kind: &'static str,
        field: &'static str,
    },
}

impl std::fmt::Display for FdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FdError::Unsupported { fd, target } => {
                let what = target
                    .strip_prefix("anon_inode:")
                    .map(|s| s.trim_matches(['[', ']']))
                    .unwrap_or(target);
                write!(f, "fd {fd}: {what} ({target}) cannot be checkpointed")
            }
            FdError::UnknownDevice { fd, path, rdev } => write!(
                f,
                "fd {fd}: device {path} ({}:{}) is not known to be safe to reopen; cannot be checkpointed",
                libc::major(*rdev),
                libc::minor(*rdev)
            ),
            FdError::PipePeek { fd, error } => {
                write!(f, "fd {fd}: cannot read the bytes buffered in the pipe: {error}")
            }
            FdError::EpollTarget { fd, target } => write!(
                f,
                "fd {fd}: epoll: the registration of fd {target} outlived that fd number (the file is open under another number); cannot be checkpointed"
            ),
            FdError::InotifyWatch { fd, wd, why } => write!(
                f,
                "fd {fd}: inotify watch {wd}: {why}; cannot be checkpointed"
            ),
            FdError::FdInfo { fd, kind, field } => write!(
                f,
                "fd {fd}: {kind}: /proc fdinfo has no readable \"{field}\" line; cannot be checkpointed"
            ),
        }
    }
}

impl std::error::Error for FdError {}

fn read_file(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The bytes of the file open as `fd` (a fresh open of the magic link:
/// the program's offset is not touched; works for unlinked files).
fn file_contents(fd: i32, size: u64) -> Option<Vec<u8>> {
    if size > MAX_FILE_CONTENTS {
        crate::log!("fd {fd}: {size} bytes, more than {MAX_FILE_CONTENTS}: contents not stored");
        return None;
    }
    match std::fs::read(format!("/proc/thread-self/fd/{fd}")) {
        Ok(b) if b.len() as u64 <= MAX_FILE_CONTENTS => Some(b),
        Ok(_) => None,
        Err(e) => {
            crate::log!("fd {fd}: contents not stored: {e}");
            None
        }
    }
}

/// The bytes waiting in the pipe or FIFO open as `fd`, left in place:
/// tee(2) duplicates them into a scratch pipe of the same capacity, and
/// the copy is read from there. `readable`: `fd` itself is open for
/// reading; otherwise a read end is opened through /proc (a FIFO's or a
/// pipe's magic link opens the same pipe).
fn pipe_bytes(fd: i32, readable: bool) -> Result<Vec<u8>, FdError> {
    let err = |error| FdError::PipePeek { fd, error };
    let reopened;
    let src = if readable {
        fd
    } else {
        let path = std::ffi::CString::new(format!("/proc/thread-self/fd/{fd}"))
            .map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
        reopened = sys::open(&path, libc::O_RDONLY | libc::O_NONBLOCK).map_err(err)?;
        reopened.0
    };
    let n = sys::pipe_unread(src).map_err(err)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let cap = sys::pipe_capacity(src).map_err(err)?;
    let (r, w) = sys::pipe_nonblock().map_err(err)?;
    if sys::pipe_capacity(w.0).map_err(err)? < cap {
        sys::set_pipe_capacity(w.0, cap).map_err(err)?;
    }
    let teed = sys::tee(src, w.0, n).map_err(err)?;
    if teed != n {
        return Err(err(std::io::Error::other(format!(
            "tee copied {teed} of {n} bytes"
        ))));
    }
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match sys::read(r.0, &mut out[got..]).map_err(err)? {
            0 => break,
            k => got += k,
        }
    }
    out.truncate(got);
    Ok(out)
}

/// One descriptor as /proc shows it.
struct Seen {
    fd: i32,
    target: Vec<u8>,
    pos: u64,
    status_flags: u32,
    cloexec: bool,
    meta: Option<std::fs::Metadata>,
    /// The text of /proc/thread-self/fdinfo/N (event fds keep their state there).
    info: String,
}

fn look(n: i32) -> Option<Seen> {
    // The read_dir fd itself is gone by now: skip what cannot be read.
    let target = std::fs::read_link(format!("/proc/thread-self/fd/{n}")).ok()?;
    let info =
        String::from_utf8_lossy(&read_file(&format!("/proc/thread-self/fdinfo/{n}"))).into_owned();
    let pos = field(&info, "pos:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let flags = field(&info, "flags:")
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0);
    Some(Seen {
        fd: n,
        target: target.as_os_str().as_bytes().to_vec(),
        pos,
        status_flags: flags & !(libc::O_CLOEXEC as u32),
        cloexec: flags & libc::O_CLOEXEC as u32 != 0,
        meta: std::fs::metadata(format!("/proc/thread-self/fd/{n}")).ok(),
        info,
    })
}

/// Open fds, minus the writer's own. `open_files`: store the contents of
/// every regular file (unlinked ones always).
pub fn fds(exclude: &[i32], open_files: bool) -> Result<Vec<FdEntry>, FdError> {
    let mut nums = sys::numeric_entries(c"/proc/thread-self/fd");
    nums.sort();
    let seen: Vec<Seen> = nums
        .into_iter()
        .filter(|n| !exclude.contains(n))
        .filter_map(look)
        .collect();
    // Pipe and FIFO inodes whose bytes are already stored.
    let mut drained: Vec<u64> = Vec::new();
    let mut out: Vec<FdEntry> = Vec::with_capacity(seen.len());
    let mut peers = Peers::new(take_peers());
    for (i, s) in seen.iter().enumerate() {
        let kind = kind_of(s, &seen, open_files, &mut drained)?;
        let ofd_id = ofd_id(&seen, i, &out, &kind, &mut peers);
        out.push(FdEntry {
            fd: Fd(s.fd),
            fd_flags: FdFlags(if s.cloexec {
                libc::FD_CLOEXEC as u32
            } else {
                0
            }),
            ofd_id,
            status_flags: s.status_flags,
            kind,
        });
    }
    Ok(out)
}

fn ino(s: &Seen) -> u64 {
    s.meta.as_ref().map_or(0, |m| m.ino())
}

/// The other processes of the computation on this host (virtual pids,
/// all suspended), from the coordinator's `Write`; taken by the next
/// capture. Empty when checkpointed alone.
static PEERS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Remembers the barrier's members for the capture that follows.
pub fn set_peers(pids: Vec<i32>) {
    if let Ok(mut p) = PEERS.lock() {
        *p = pids;
    }
}

/// The barrier's members of the checkpoint under way (empty when alone).
pub fn peers() -> Vec<i32> {
    PEERS.lock().map(|p| p.clone()).unwrap_or_default()
}

fn take_peers() -> Vec<i32> {
    PEERS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

/// The peers with a lower pid than ours, in pid order, each with its fd
/// numbers (listed when first needed).
struct Peers {
    me: i32,
    lower: Vec<(i32, Option<Vec<i32>>)>,
}

impl Peers {
    fn new(mut pids: Vec<i32>) -> Peers {
        let me = sys::getpid();
        pids.sort_unstable();
        pids.dedup();
        Peers {
            me,
            lower: pids
                .into_iter()
                .filter(|&p| p > 0 && p < me)
                .map(|p| (p, None))
                .collect(),
        }
    }

    /// The first (lowest pid, then lowest fd) descriptor of a lower peer
    /// that is the open file description of our `fd`.
    fn first_holder(&mut self, fd: i32) -> Option<(i32, i32)> {
        for (pid, fds) in &mut self.lower {
            let fds = fds.get_or_insert_with(|| {
                let path = std::ffi::CString::new(format!("/proc/{pid}/fd")).unwrap_or_default();
                let mut v = sys::numeric_entries(&path);
                v.sort_unstable();
                v
            });
            let mut i = 0;
            while i < fds.len() {
                match sys::same_open_file_as(fd, *pid, fds[i]) {
                    Ok(true) => return Some((*pid, fds[i])),
                    Ok(false) => i += 1,
                    // Closed by its own writer's capture (a scratch fd).
                    Err(e) if e.raw_os_error() == Some(libc::EBADF) => i += 1,
                    Err(e) => {
                        crate::log!(
                            "kcmp with pid {pid}: {e}: open file descriptions shared with it \
                             come back separate"
                        );
                        fds.clear();
                    }
                }
            }
        }
        None
    }
}

/// Descriptors that share an open file description (dup, fork,
/// SCM_RIGHTS) get one id in every image of the computation: that of
/// its first holder, the lowest pid (then fd) among this process and the
/// peers that hold it (compared by kcmp, which needs no ptrace attach).
fn ofd_id(seen: &[Seen], i: usize, earlier: &[FdEntry], kind: &FdKind, peers: &mut Peers) -> u64 {
    let s = &seen[i];
    let same_file = |o: &Seen| {
        ino(o) == ino(s) && o.meta.as_ref().map(|m| m.dev()) == s.meta.as_ref().map(|m| m.dev())
    };
    for (j, o) in seen[..i].iter().enumerate() {
        if same_file(o) && sys::same_open_file(o.fd, s.fd) == Some(true) {
            return earlier[j].ofd_id;
        }
    }
    if kind.shared_across_processes() {
        if let Some((pid, fd)) = peers.first_holder(s.fd) {
            return FdEntry::computation_ofd_id(pid, fd);
        }
    }
    FdEntry::computation_ofd_id(peers.me, s.fd)
}

fn kind_of(
    s: &Seen,
    all: &[Seen],
    open_files: bool,
    drained: &mut Vec<u64>,
) -> Result<FdKind, FdError> {
    let n = s.fd;
    let t = &s.target;
    let meta = s.meta.as_ref();
    let ino = ino(s);
    let mode = meta.map_or(0, |m| m.mode()) & libc::S_IFMT;
    let accmode = s.status_flags & libc::O_ACCMODE as u32;
    let readable = accmode != libc::O_WRONLY as u32;
    let mut first_time = |ino: u64| {
        let first = !drained.contains(&ino);
        if first {
            drained.push(ino);
        }
        first
    };
    Ok(if t.starts_with(b"pipe:") {
        // The bytes go with the first read end (a pipe whose read end is
        // in another process has them recorded there).
        let buffered = if readable && first_time(ino) {
            pipe_bytes(n, true)?
        } else {
            Vec::new()
        };
        FdKind::Pipe {
            pipe_id: ino,
            write_end: !readable,
            buffered,
        }
    } else if t.starts_with(b"socket:") {
        FdKind::Socket {
            family: 0,
            sock_type: 0,
            protocol: 0,
            state: 0,
            local: SockAddr::default(),
            peer: SockAddr::default(),
            options: Vec::new(),
            inbound: Vec::new(),
            socket_id: ino,
        }
    } else if super::tty::is_terminal(t) {
        super::tty::kind(n, t, meta.map_or(0, |m| m.rdev()))
    } else if mode == libc::S_IFCHR {
        let rdev = meta.map_or(0, |m| m.rdev());
        if !SAFE_DEVICES.contains(&t.as_slice()) {
            return Err(FdError::UnknownDevice {
                fd: n,
                path: String::from_utf8_lossy(t).into_owned(),
                rdev,
            });
        }
        FdKind::Device {
            path: t.clone(),
            rdev,
        }
    } else if mode == libc::S_IFDIR {
        FdKind::Directory {
            path: t.clone(),
            offset: s.pos,
        }
    } else if mode == libc::S_IFREG {
        let deleted = t.ends_with(b" (deleted)");
        let size = meta.map_or(0, |m| m.size());
        FdKind::RegularFile {
            file: FileIdentity {
                path: t.clone(),
                dev: meta.map_or(0, |m| m.dev()),
                inode: ino,
                size,
                mtime_ns: meta.map_or(0, |m| m.mtime() * 1_000_000_000 + m.mtime_nsec()),
            },
            offset: s.pos,
            deleted,
            contents: if deleted || open_files {
                file_contents(n, size)
            } else {
                None
            },
        }
    } else if t == b"anon_inode:[eventfd]" {
        eventfd(n, &s.info)?
    } else if t == b"anon_inode:[timerfd]" {
        timerfd(n, &s.info)?
    } else if t == b"anon_inode:[eventpoll]" {
        epoll(n, &s.info, all)?
    } else if t == b"anon_inode:inotify" {
        inotify(n, &s.info)?
    } else if t == b"anon_inode:[signalfd]" {
        FdKind::SignalFd {
            mask: info_num(&s.info, "sigmask:", 16).ok_or(FdError::FdInfo {
                fd: n,
                kind: "signalfd",
                field: "sigmask",
            })?,
        }
    } else if mode == libc::S_IFIFO {
        // A FIFO's bytes go with its first descriptor, whatever its mode.
        let buffered = if first_time(ino) {
            pipe_bytes(n, readable)?
        } else {
            Vec::new()
        };
        FdKind::Fifo {
            path: t.clone(),
            buffered,
        }
    } else {
        return Err(FdError::Unsupported {
            fd: n,
            target: String::from_utf8_lossy(t).into_owned(),
        });
    })
}

/// A number in an fdinfo line `key value`, in `radix`.
fn info_num(info: &str, key: &str, radix: u32) -> Option<u64> {
    field(info, key).and_then(|v| u64::from_str_radix(&v, radix).ok())
}

/// An eventfd: its counter (`eventfd-count`, hex) and `EFD_SEMAPHORE`
/// (`eventfd-semaphore`, Linux 6.6). O_NONBLOCK is in the status flags.
fn eventfd(fd: i32, info: &str) -> Result<FdKind, FdError> {
    let missing = |field| FdError::FdInfo {
        fd,
        kind: "eventfd",
        field,
    };
    Ok(FdKind::EventFd {
        count: info_num(info, "eventfd-count:", 16).ok_or(missing("eventfd-count"))?,
        semaphore: info_num(info, "eventfd-semaphore:", 10).ok_or(missing("eventfd-semaphore"))?
            != 0,
    })
}

/// An fdinfo time `(seconds, nanoseconds)` in nanoseconds.
fn info_time(info: &str, key: &str) -> Option<u64> {
    let v = field(info, key)?;
    let (s, ns) = v.trim_matches(['(', ')']).split_once(',')?;
    let s: u64 = s.trim().parse().ok()?;
    let ns: u64 = ns.trim().parse().ok()?;
    s.checked_mul(1_000_000_000)?.checked_add(ns)
}

/// A timerfd: clock (`clockid`), time to the next expiry (`it_value`,
/// relative even for TFD_TIMER_ABSTIME), interval (`it_interval`),
/// settime flags (`settime flags`, octal) and expirations not yet read
/// (`ticks`).
fn timerfd(fd: i32, info: &str) -> Result<FdKind, FdError> {
    let missing = |field| FdError::FdInfo {
        fd,
        kind: "timerfd",
        field,
    };
    Ok(FdKind::TimerFd {
        clock: info_num(info, "clockid:", 10).ok_or(missing("clockid"))? as i32,
        value_ns: info_time(info, "it_value:").ok_or(missing("it_value"))?,
        interval_ns: info_time(info, "it_interval:").ok_or(missing("it_interval"))?,
        settime_flags: info_num(info, "settime flags:", 8).ok_or(missing("settime flags"))? as u32,
        ticks: info_num(info, "ticks:", 10).ok_or(missing("ticks"))?,
    })
}

/// An epoll set: one `tfd: N events: HEX data: HEX ... ino:HEX` line per
/// registration. A registration names a file by the fd number it was
/// added with; that number must still be open on the same inode, or the
/// restart could not register the same file.
fn epoll(fd: i32, info: &str, all: &[Seen]) -> Result<FdKind, FdError> {
    let mut entries = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("tfd:")) {
        let mut words = line.split_whitespace();
        let mut value = |key: &str| {
            words
                .by_ref()
                .skip_while(|w| *w != key)
                .nth(1)
                .map(str::to_string)
        };
        let missing = || FdError::FdInfo {
            fd,
            kind: "epoll",
            field: "tfd",
        };
        let target: i32 = value("tfd:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(missing)?;
        let events = value("events:")
            .and_then(|v| u32::from_str_radix(&v, 16).ok())
            .ok_or_else(missing)?;
        let data = value("data:")
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .ok_or_else(missing)?;
        let inode = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ino:"))
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(missing)?;
        if !all.iter().any(|o| o.fd == target && ino(o) == inode) {
            return Err(FdError::EpollTarget { fd, target });
        }
        entries.push(EpollEntry {
            fd: Fd(target),
            events,
            data,
        });
    }
    Ok(FdKind::Epoll { entries })
}

/// Most watch descriptors an image describes (wds count up for the life
/// of an instance; gaps are stored).
const MAX_INOTIFY_WD: i64 = 1 << 16;

/// An inotify instance: its watches in wd order (entry i is wd i + 1; an
/// empty path is a wd with no watch), each with the path recorded when it
/// was added (inotify.rs), checked against fdinfo's inode and device.
/// Events queued at checkpoint time are not stored (the log says how
/// many bytes).
fn inotify(fd: i32, info: &str) -> Result<FdKind, FdError> {
    let bad = |field| FdError::FdInfo {
        fd,
        kind: "inotify",
        field,
    };
    let mut found: Vec<(i32, u64, u64, u32)> = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("inotify ")) {
        let num = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v, if key == "wd:" { 10 } else { 16 }).ok())
        };
        let wd = num("wd:").ok_or(bad("wd"))? as i32;
        let ino = num("ino:").ok_or(bad("ino"))?;
        let sdev = num("sdev:").ok_or(bad("sdev"))?;
        let mask = num("mask:").ok_or(bad("mask"))? as u32;
        found.push((wd, ino, sdev, mask));
    }
    found.sort();
    let top = found.last().map_or(0, |w| w.0 as i64);
    if top > MAX_INOTIFY_WD {
        return Err(FdError::InotifyWatch {
            fd,
            wd: top as i32,
            why: format!("watch descriptors above {MAX_INOTIFY_WD} are not supported"),
        });
    }
    let mut watches = vec![(Vec::new(), 0u32); top as usize];
    for (wd, ino, sdev, mask) in found {
        let why = |why: String| FdError::InotifyWatch { fd, wd, why };
        let path = crate::inotify::lookup(fd, wd).ok_or_else(|| {
            why(if crate::inotify::overflowed() {
                "its path was not recorded (more watches than the writer records)".into()
            } else {
                "its path was not recorded (added by a raw syscall?)".into()
            })
        })?;
        if path.is_empty() {
            return Err(why(
                "its path could not be resolved when it was added".into()
            ));
        }
        let lossy = String::from_utf8_lossy(&path).into_owned();
        // fdinfo's sdev is the kernel's dev_t: major << 20 | minor.
        let dev = libc::makedev((sdev >> 20) as u32, (sdev & 0xfffff) as u32);
        match std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(&path)) {
            Ok(m) if m.ino() == ino && m.dev() == dev => {}
            Ok(_) => return Err(why(format!("{lossy} names another file now"))),
            Err(e) => return Err(why(format!("{lossy}: {e}"))),
        }
        watches[wd as usize - 1] = (path, mask);
    }
    if let Ok(q) = sys::pipe_unread(fd) {
        if q > 0 {
            crate::log!("fd {fd}: inotify: {q} bytes of queued events are not stored");
        }
    }
    Ok(FdKind::Inotify { watches })
}
