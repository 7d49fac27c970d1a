//! File descriptors, recreated before the final stage: regular files
//! (deleted ones from their stored contents), directories, safe devices,
//! pipes and FIFOs with the bytes that were buffered in them, eventfds
//! with their counters, signalfds with their masks, timerfds with their
//! remaining time, interval, settime flags and pending ticks, inotify
//! instances with their watches on their wds, epoll sets with their
//! registrations (added once every other fd is in place).
//!
//! Every open file description of the image (one `ofd_id`) is opened
//! once, at a number above every image fd, then duplicated onto each of
//! its fd numbers with that fd's close-on-exec flag: fds that shared an
//! offset before the checkpoint share it again. One pipe is made per
//! `pipe_id` and its bytes written back before the program sees it, so
//! nothing is lost or read twice. A pipe that several processes of the
//! tree hold is made once, before the tree is forked ([`share_pipes`]),
//! on numbers above every image's fds: each process inherits it, puts
//! its ends on its own numbers and closes the rest. fds 0, 1 and 2 that were redirected to
//! a file (a directory, a device, a FIFO) are reopened like any other fd;
//! otherwise they stay as inherited (the terminal `ckpt restart` runs in,
//! see tty.rs) unless they are an end of a pipe the process holds both
//! ends of.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use ckpt_format::{FdEntry, FdKind};

use crate::tree::SharedPipe;
use crate::{image::Image, log, sys};

/// Why a descriptor could not be recreated; the restart stops.
#[derive(Debug)]
#[non_exhaustive]
pub enum FdRestoreError {
    /// A syscall failed while recreating `fd`.
    Io {
        fd: i32,
        what: String,
        error: std::io::Error,
    },
    /// A deleted file whose contents the image does not hold.
    DeletedWithoutContents { fd: i32, path: String },
    /// A file that is gone since the checkpoint, without saved contents.
    Missing { fd: i32, path: String },
    /// An fd kind the image records but the restorer cannot recreate.
    Unsupported { fd: i32, kind: &'static str },
}

impl fmt::Display for FdRestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdRestoreError::Io { fd, what, error } => write!(f, "fd {fd}: {what}: {error}"),
            FdRestoreError::DeletedWithoutContents { fd, path } => write!(
                f,
                "fd {fd}: {path} was deleted and the image holds no contents for it"
            ),
            FdRestoreError::Missing { fd, path } => write!(
                f,
                "fd {fd}: {path} no longer exists and the image holds no contents for it \
                 (checkpoint with --ckpt-open-files, or restart with --map-path OLD=NEW \
                 if it lives elsewhere now)"
            ),
            FdRestoreError::Unsupported { fd, kind } => {
                write!(f, "fd {fd}: {kind} cannot be restored")
            }
        }
    }
}

impl std::error::Error for FdRestoreError {}

type Result<T> = std::result::Result<T, FdRestoreError>;

fn io<T>(fd: i32, what: impl Into<String>, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|error| FdRestoreError::Io {
        fd,
        what: what.into(),
        error,
    })
}

/// Status flags F_SETFL can set (the rest are fixed at open).
const SETFL_FLAGS: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT;
/// Status flags given to open(2) when reopening a file.
const OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_SYNC
    | libc::O_DSYNC
    | libc::O_PATH;

/// Descriptors the restorer opened for itself, closed when dropped.
pub(crate) struct Temps {
    pub(crate) fds: Vec<i32>,
    /// New descriptors are moved to this number or above.
    pub(crate) base: i32,
}

impl Temps {
    /// Moves a fresh `fd` above every image fd number and keeps it.
    pub(crate) fn keep(&mut self, fd: i32) -> std::io::Result<i32> {
        if fd >= self.base {
            self.fds.push(fd);
            return Ok(fd);
        }
        let high = sys::dup_at_least(fd, self.base);
        sys::close(fd);
        let high = high?;
        self.fds.push(high);
        Ok(high)
    }
}

impl Drop for Temps {
    fn drop(&mut self) {
        for &fd in &self.fds {
            sys::close(fd);
        }
    }
}

/// A pipe recreated for one `pipe_id`.
#[derive(Clone, Copy, Debug)]
struct Pipe {
    read: i32,
    write: i32,
}

/// A pipe of the tree made before the fork, as every process inherits it.
#[derive(Clone, Copy, Debug)]
struct Inherited {
    pipe: Pipe,
    /// Both ends are in the tree: its ends on fds 0-2 are restored too.
    inside: bool,
}

/// The pipes shared by processes of the tree, by `pipe_id`: set once in
/// the restorer before it forks the tree, and inherited (memory and fds)
/// by every process of it. Empty when none or unset.
static SHARED: OnceLock<BTreeMap<u64, Inherited>> = OnceLock::new();

fn shared() -> Option<&'static BTreeMap<u64, Inherited>> {
    SHARED.get()
}

/// Makes every pipe of `plan` once, at numbers above every image's fds,
/// with its buffered bytes written once (from the image of
/// `bytes_from`), for the whole tree to inherit. Returns the descriptors
/// made: the processes that fork the tree (the outer restorer, the
/// namespace's init) close them once their children exist; each
/// process of the tree closes them when its own fds are in place.
pub fn share_pipes(imgs: &[Image], plan: &[SharedPipe]) -> Result<Vec<i32>> {
    let top = imgs
        .iter()
        .flat_map(|i| i.fds.iter().map(|e| e.fd.0))
        .max()
        .unwrap_or(2);
    let mut made: BTreeMap<u64, Inherited> = BTreeMap::new();
    let mut fds = Vec::new();
    let r = share_into(imgs, plan, top + 1, &mut made, &mut fds);
    if let Err(e) = r {
        for fd in fds {
            sys::close(fd);
        }
        return Err(e);
    }
    let _ = SHARED.set(made);
    Ok(fds)
}

fn share_into(
    imgs: &[Image],
    plan: &[SharedPipe],
    base: i32,
    made: &mut BTreeMap<u64, Inherited>,
    fds: &mut Vec<i32>,
) -> Result<()> {
    for sp in plan {
        // The first fd of it in the images, to name it in errors.
        let n = imgs
            .iter()
            .flat_map(|i| i.fds.iter())
            .find(|e| matches!(&e.kind, FdKind::Pipe { pipe_id, .. } if *pipe_id == sp.pipe_id))
            .map_or(-1, |e| e.fd.0);
        let (r, w) = io(n, "pipe", sys::pipe())?;
        let read = sys::dup_at_least(r, base);
        sys::close(r);
        let write = sys::dup_at_least(w, base);
        sys::close(w);
        if let Ok(fd) = read {
            fds.push(fd);
        }
        if let Ok(fd) = write {
            fds.push(fd);
        }
        let pipe = Pipe {
            read: io(n, "moving an fd", read)?,
            write: io(n, "moving an fd", write)?,
        };
        let bytes: &[u8] = sp
            .bytes_from
            .and_then(|pid| imgs.iter().find(|i| i.process.pid.0 == pid))
            .and_then(|i| {
                i.fds.iter().find_map(|e| match &e.kind {
                    FdKind::Pipe {
                        pipe_id,
                        write_end: false,
                        buffered,
                    } if *pipe_id == sp.pipe_id && !buffered.is_empty() => {
                        Some(buffered.as_slice())
                    }
                    _ => None,
                })
            })
            .unwrap_or_default();
        if !bytes.is_empty() {
            refill(n, pipe.write, bytes)?;
        }
        log::info(&format!(
            "pipe {} shared by {} ({} buffered bytes, from pid {})",
            sp.pipe_id,
            sp.holders.join(", "),
            bytes.len(),
            sp.bytes_from.unwrap_or(0)
        ));
        made.insert(
            sp.pipe_id,
            Inherited {
                pipe,
                inside: sp.inside,
            },
        );
    }
    Ok(())
}

/// The FIFOs several processes of the tree hold, by path: one holder
/// each (O_RDWR, so it never blocks and keeps the FIFO's pipe alive),
/// opened and refilled once by the restorer before it forks the tree and
/// inherited by every process, which opens its own descriptors on the
/// path while the holder keeps the bytes, then closes it.
static SHARED_FIFOS: OnceLock<BTreeMap<Vec<u8>, i32>> = OnceLock::new();

fn shared_fifos() -> Option<&'static BTreeMap<Vec<u8>, i32>> {
    SHARED_FIFOS.get()
}

/// The FIFOs to make once, by path: held by two processes or more, with
/// the pid whose image gives the bytes (every holder stored the same
/// bytes, taken at one moment while all were suspended: the lowest
/// pid's copy goes back, once). `entries`: (pid, entry) of every
/// restored fd of every image.
pub(crate) fn shared_fifo_plan<'a>(entries: &[(i32, &'a FdEntry)]) -> Vec<(&'a [u8], i32)> {
    let mut by_path: BTreeMap<&[u8], Vec<i32>> = BTreeMap::new();
    for &(pid, e) in entries {
        if let FdKind::Fifo { path, .. } = &e.kind {
            by_path.entry(path.as_slice()).or_default().push(pid);
        }
    }
    by_path
        .into_iter()
        .filter_map(|(path, mut pids)| {
            pids.sort_unstable();
            pids.dedup();
            (pids.len() >= 2).then(|| (path, pids[0]))
        })
        .collect()
}

/// Every fd of every image that is restored here, as (pid, entry), and
/// the scratch numbers for what is opened once for the whole tree: above
/// every image's fds, so that no process's own fd lands on one.
fn tree_fds(imgs: &[Image]) -> (Vec<(i32, &FdEntry)>, Temps) {
    let entries = imgs
        .iter()
        .flat_map(|i| {
            i.fds
                .iter()
                .filter(|e| restored_here(e, i))
                .map(|e| (i.process.pid.0, e))
        })
        .collect();
    let top = imgs
        .iter()
        .flat_map(|i| i.fds.iter().map(|e| e.fd.0))
        .max()
        .unwrap_or(2);
    let temps = Temps {
        fds: Vec::new(),
        base: top + 1,
    };
    (entries, temps)
}

/// Opens every FIFO that several processes of the tree hold once, at a
/// number above every image's fds, and writes its buffered bytes back
/// once, for the whole tree to inherit. Returns the descriptors made.
pub fn share_fifos(imgs: &[Image]) -> Result<Vec<i32>> {
    let (entries, mut temps) = tree_fds(imgs);
    let mut made: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for (path, pid) in shared_fifo_plan(&entries) {
        let holders: Vec<String> = entries
            .iter()
            .filter(|(_, e)| matches!(&e.kind, FdKind::Fifo { path: p, .. } if p == path))
            .map(|(p, e)| format!("pid {p} fd {}", e.fd.0))
            .collect();
        let (n, bytes) = entries
            .iter()
            .filter(|(p, _)| *p == pid)
            .find_map(|(_, e)| match &e.kind {
                FdKind::Fifo { path: p, buffered } if p == path => {
                    Some((e.fd.0, buffered.as_slice()))
                }
                _ => None,
            })
            .unwrap_or((-1, &[]));
        let h = io(
            n,
            format!("open FIFO {}", String::from_utf8_lossy(path)),
            sys::open(path, libc::O_RDWR | libc::O_NONBLOCK, 0),
        )?;
        let h = io(n, "moving an fd", temps.keep(h))?;
        if !bytes.is_empty() {
            refill(n, h, bytes)?;
        }
        log::info(&format!(
            "FIFO {} shared by {} ({} buffered bytes, from pid {pid})",
            String::from_utf8_lossy(path),
            holders.join(", "),
            bytes.len()
        ));
        made.insert(path.to_vec(), h);
    }
    let fds: Vec<i32> = std::mem::take(&mut temps.fds);
    let _ = SHARED_FIFOS.set(made);
    Ok(fds)
}

/// The open file descriptions several processes of the tree hold, by
/// `ofd_id`: opened once by the restorer before it forks the tree, at a
/// number above every image's fds, and inherited by every process.
static SHARED_OFDS: OnceLock<BTreeMap<u64, i32>> = OnceLock::new();

fn shared_ofds() -> Option<&'static BTreeMap<u64, i32>> {
    SHARED_OFDS.get()
}

/// The descriptions to open once: each computation-wide `ofd_id` of a
/// shareable kind that two processes or more hold, with the (pid, entry)
/// it is opened from (the lowest pid's lowest fd), in id order. `entries`:
/// every restored fd of every image, as (pid, entry).
pub(crate) fn shared_descriptions<'a>(
    entries: &[(i32, &'a FdEntry)],
) -> Vec<(u64, i32, &'a FdEntry)> {
    let mut by_id: BTreeMap<u64, Vec<(i32, &FdEntry)>> = BTreeMap::new();
    for &(pid, e) in entries {
        // Older writers made ids unique within one image only: never
        // joined across images.
        if e.ofd_id_is_computation_wide() && e.kind.shared_across_processes() {
            by_id.entry(e.ofd_id).or_default().push((pid, e));
        }
    }
    by_id
        .into_iter()
        .filter_map(|(id, mut v)| {
            v.sort_by_key(|(pid, e)| (*pid, e.fd.0));
            let first = v[0];
            // Held by one process (dups within it are its own business),
            // or a kind the images disagree on (hand-made or corrupt).
            if v.iter().all(|(p, _)| *p == first.0)
                || v.iter().any(|(_, e)| {
                    std::mem::discriminant(&e.kind) != std::mem::discriminant(&first.1.kind)
                })
            {
                return None;
            }
            Some((id, first.0, first.1))
        })
        .collect()
}

/// Opens every open file description that several processes of the
/// tree share once (a FIFO's after `share_fifos`, whose holder keeps a
/// reader for a write-only open and holds its bytes), with its offset
/// and status flags, at a number above
/// every image's fds, for the whole tree to inherit (each process puts
/// it on its own numbers and closes the rest). One that cannot be opened
/// here is left to each process (which reports the failure, or keeps
/// the restart's own fd 0-2). Returns the descriptors made.
pub fn share_descriptions(imgs: &[Image]) -> Vec<i32> {
    let (entries, mut temps) = tree_fds(imgs);
    let mut made: BTreeMap<u64, i32> = BTreeMap::new();
    for (id, pid, e) in shared_descriptions(&entries) {
        let n = e.fd.0;
        let opened =
            open_description(e, &BTreeMap::new(), &mut Vec::new(), &mut temps).and_then(|s| {
                temps.fds.retain(|&f| f != s);
                match sys::set_status_flags(s, e.status_flags as i32 & SETFL_FLAGS) {
                    Ok(()) => Ok(s),
                    Err(err) => {
                        sys::close(s);
                        io(n, "setting status flags", Err(err))
                    }
                }
            });
        let holders: Vec<String> = entries
            .iter()
            .filter(|(_, o)| o.ofd_id == id)
            .map(|(p, o)| format!("pid {p} fd {}", o.fd.0))
            .collect();
        match opened {
            Ok(s) => {
                log::info(&format!(
                    "{} shared by {} (opened once, from pid {pid})",
                    describe(&e.kind),
                    holders.join(", ")
                ));
                made.insert(id, s);
            }
            Err(err) => log::notice(&format!(
                "pid {pid}: {err}: left to each of {}",
                holders.join(", ")
            )),
        }
    }
    let fds = made.values().copied().collect();
    let _ = SHARED_OFDS.set(made);
    fds
}

/// Whether entry `e` is restored here or left alone.
fn restored_here(e: &FdEntry, img: &Image) -> bool {
    // Kinds of other work (terminals, sockets, event fds) are left alone
    // here; the writer refuses what it cannot describe at all.
    let ours = matches!(
        e.kind,
        FdKind::RegularFile { .. }
            | FdKind::Directory { .. }
            | FdKind::Pipe { .. }
            | FdKind::Fifo { .. }
            | FdKind::Device { .. }
            | FdKind::EventFd { .. }
            | FdKind::SignalFd { .. }
            | FdKind::TimerFd { .. }
            | FdKind::Epoll { .. }
            | FdKind::Inotify { .. }
            | FdKind::Unsupported
    );
    if !ours {
        return false;
    }
    if e.fd.0 > 2 {
        return true;
    }
    // 0-2: a file, directory, device or FIFO they were redirected to
    // (the same one again), or an end of a pipe whose both ends the
    // process holds; terminals and other pipes stay as inherited.
    match &e.kind {
        FdKind::RegularFile { .. }
        | FdKind::Directory { .. }
        | FdKind::Device { .. }
        | FdKind::Fifo { .. } => true,
        FdKind::Pipe {
            pipe_id, write_end, ..
        } => {
            shared()
                .and_then(|m| m.get(pipe_id))
                .is_some_and(|s| s.inside)
                || img.fds.iter().any(|o| {
                    matches!(&o.kind, FdKind::Pipe { pipe_id: p, write_end: w, .. }
                        if p == pipe_id && w != write_end)
                })
        }
        _ => false,
    }
}

/// The changed-file policy, applied before anything starts: each open
/// regular file (not deleted) is compared with the image by size and
/// mtime. Changed or gone with saved contents (`--ckpt-open-files`): the
/// contents are written back (the same inode, truncated; a gone file is
/// created, mode 0600) with the image's mtime. Changed without: the
/// current file is kept, with a warning naming it. Gone without: the
/// restart fails naming it. Each decision goes to the log and stderr.
pub fn reconcile(img: &Image) -> Result<()> {
    let mut done: Vec<&[u8]> = Vec::new();
    for e in &img.fds {
        let FdKind::RegularFile {
            file,
            deleted: false,
            contents,
            ..
        } = &e.kind
        else {
            continue;
        };
        if done.contains(&file.path.as_slice()) {
            continue;
        }
        done.push(&file.path);
        let n = e.fd.0;
        let name = String::from_utf8_lossy(&file.path).into_owned();
        let path = std::ffi::OsStr::from_bytes(&file.path);
        let now = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return io(n, format!("stat {name}"), Err(err)),
        };
        let changed = match &now {
            None => "no longer exists".to_string(),
            Some(m) => {
                let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
                if m.size() == file.size && mtime == file.mtime_ns {
                    continue;
                }
                format!(
                    "changed since the checkpoint (size {} now, {} then; mtime {} now, {} then)",
                    m.size(),
                    file.size,
                    mtime,
                    file.mtime_ns
                )
            }
        };
        match (contents, now) {
            (Some(bytes), _) => {
                io(n, format!("writing back {name}"), put_back(path, bytes, file.mtime_ns))?;
                log::notice(&format!(
                    "fd {n}: {name} {changed}: restored the {} bytes saved in the image",
                    bytes.len()
                ));
            }
            (None, Some(_)) => log::notice(&format!(
                "fd {n}: {name} {changed}: keeping the current file (the image holds no contents for it)"
            )),
            (None, None) => return Err(FdRestoreError::Missing { fd: n, path: name }),
        }
    }
    Ok(())
}

/// Writes `bytes` as the whole of the file at `path` (created if gone)
/// and sets its mtime to `mtime_ns`.
fn put_back(path: &std::ffi::OsStr, bytes: &[u8], mtime_ns: i64) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    let t = if mtime_ns >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(mtime_ns as u64)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_nanos(mtime_ns.unsigned_abs())
    };
    f.set_times(std::fs::FileTimes::new().set_modified(t))?;
    f.sync_all()
}

/// Recreates the image's descriptors on their numbers. Returns the fd
/// numbers that now belong to the restored process (0, 1, 2 included).
pub fn restore(img: &Image) -> Result<Vec<i32>> {
    let mine: Vec<&FdEntry> = img.fds.iter().filter(|e| restored_here(e, img)).collect();
    let top = img.fds.iter().map(|e| e.fd.0).max().unwrap_or(2);
    log::move_log_above(top);
    let mut temps = Temps {
        fds: Vec::new(),
        base: top + 1,
    };

    // One pipe per pipe_id, refilled with its bytes; a pipe of the tree
    // is the inherited one, refilled already.
    let mut pipes: BTreeMap<u64, Pipe> = BTreeMap::new();
    for e in &mine {
        if let FdKind::Pipe {
            pipe_id, buffered, ..
        } = &e.kind
        {
            if let Some(s) = shared().and_then(|m| m.get(pipe_id)) {
                pipes.insert(*pipe_id, s.pipe);
                continue;
            }
            if !pipes.contains_key(pipe_id) {
                pipes.insert(*pipe_id, new_pipe(e.fd.0, &mut temps)?);
            }
            if !buffered.is_empty() {
                let w = pipes[pipe_id].write;
                refill(e.fd.0, w, buffered)?;
            }
        }
    }
    // One holder per FIFO path (O_RDWR never blocks), refilled; a FIFO
    // of the tree is the inherited holder, refilled already.
    let mut fifos: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    for e in &mine {
        if let FdKind::Fifo { path, buffered } = &e.kind {
            if let Some(&h) = shared_fifos().and_then(|m| m.get(path)) {
                fifos.insert(path.clone(), h);
                continue;
            }
            if !fifos.contains_key(path) {
                let h = io(
                    e.fd.0,
                    format!("open FIFO {}", String::from_utf8_lossy(path)),
                    sys::open(path, libc::O_RDWR | libc::O_NONBLOCK, 0),
                )?;
                let h = io(e.fd.0, "moving an fd", temps.keep(h))?;
                fifos.insert(path.clone(), h);
            }
            if !buffered.is_empty() {
                refill(e.fd.0, fifos[path], buffered)?;
            }
        }
    }

    // One source per open file description, then every fd onto its number.
    let mut sources: BTreeMap<u64, i32> = BTreeMap::new();
    let mut pipe_ends_used: Vec<(u64, bool)> = Vec::new();
    let mut kept = vec![0, 1, 2];
    for e in &mine {
        let n = e.fd.0;
        let src = match sources.get(&e.ofd_id) {
            Some(&s) => s,
            None => {
                let inherited = shared_ofds().and_then(|m| m.get(&e.ofd_id)).copied();
                let opened = match inherited {
                    Some(s) => Ok(s),
                    None => open_description(e, &pipes, &mut pipe_ends_used, &mut temps),
                };
                let s = match opened {
                    Ok(s) => s,
                    // stdin/stdout/stderr redirected to a file this user
                    // cannot open (a root-owned log when restarting as
                    // another user, say) keep what the restart inherited,
                    // as they would without a redirection.
                    Err(err) if n <= 2 => {
                        log::notice(&format!("{err}; keeping the fd ckpt restart was given"));
                        continue;
                    }
                    Err(err) => return Err(err),
                };
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
        log::info(&format!("fd {n}: {}", describe(&e.kind)));
        kept.push(n);
    }
    for e in img.fds.iter().filter(|e| !restored_here(e, img)) {
        log::info(&format!(
            "fd {}: {} not restored here",
            e.fd.0,
            describe(&e.kind)
        ));
    }
    // The tree's pipes are on their numbers (or not ours): the inherited
    // descriptors go, so that a reader sees end-of-file once the last
    // writer closes.
    for s in shared().into_iter().flat_map(|m| m.values()) {
        sys::close(s.pipe.read);
        sys::close(s.pipe.write);
    }
    // So do the tree's FIFO holders: every fd of them is open on its path.
    for &h in shared_fifos().into_iter().flat_map(|m| m.values()) {
        sys::close(h);
    }
    // So do the shared descriptions, now on their numbers.
    for &s in shared_ofds().into_iter().flat_map(|m| m.values()) {
        sys::close(s);
    }
    kept.extend(crate::tty::restore(img, top + 1)?);
    // Registrations last, when every fd they name is on its number.
    for e in &mine {
        if let FdKind::Epoll { entries } = &e.kind {
            let ep = sources[&e.ofd_id];
            // A one-shot registration that already fired keeps only its
            // private bits, and ADD always arms EPOLLERR | EPOLLHUP: it is
            // added first, alone, armed for everything, and fired once here
            // (when its file is ready at all) so it is disabled again.
            let private =
                (libc::EPOLLONESHOT | libc::EPOLLET | libc::EPOLLWAKEUP | libc::EPOLLEXCLUSIVE)
                    as u32;
            let (disabled, armed): (Vec<_>, Vec<_>) =
                entries.iter().partition(|r| r.events & !private == 0);
            for r in &disabled {
                io(
                    e.fd.0,
                    format!("epoll_ctl ADD disabled one-shot fd {}", r.fd.0),
                    sys::epoll_add(ep, r.fd.0, r.events | !private & 0xffff, r.data),
                )?;
                if !io(e.fd.0, "epoll_wait", sys::epoll_poll_one(ep))? {
                    log::warn(&format!(
                        "fd {}: epoll: the fired one-shot registration of fd {} comes back armed (its file is not ready now)",
                        e.fd.0, r.fd.0
                    ));
                }
            }
            for r in armed {
                io(
                    e.fd.0,
                    format!(
                        "epoll_ctl ADD fd {} events {:#x} data {:#x}",
                        r.fd.0, r.events, r.data
                    ),
                    sys::epoll_add(ep, r.fd.0, r.events, r.data),
                )?;
            }
            log::info(&format!(
                "fd {}: epoll: {} registrations",
                e.fd.0,
                entries.len()
            ));
        }
    }
    kept.sort();
    kept.dedup();
    Ok(kept)
}

fn new_pipe(fd: i32, temps: &mut Temps) -> Result<Pipe> {
    let (r, w) = io(fd, "pipe", sys::pipe())?;
    let read = io(fd, "moving an fd", temps.keep(r));
    let write = io(fd, "moving an fd", temps.keep(w));
    Ok(Pipe {
        read: read?,
        write: write?,
    })
}

/// Writes a pipe's or FIFO's bytes back through `w`, first making room.
/// The status flags of `w`'s description are set afterwards.
fn refill(fd: i32, w: i32, bytes: &[u8]) -> Result<()> {
    let cap = io(fd, "F_GETPIPE_SZ", sys::pipe_capacity(w))?;
    if cap < bytes.len() {
        io(
            fd,
            format!("F_SETPIPE_SZ {} (for the buffered bytes)", bytes.len()),
            sys::set_pipe_capacity(w, bytes.len()),
        )?;
    }
    // Never block: the pipe is ours alone and has room for every byte.
    io(fd, "O_NONBLOCK", sys::set_status_flags(w, libc::O_NONBLOCK))?;
    io(
        fd,
        format!("writing back {} buffered bytes", bytes.len()),
        sys::write_all(w, bytes),
    )?;
    log::info(&format!(
        "fd {fd}: {} buffered bytes written back",
        bytes.len()
    ));
    Ok(())
}

/// Opens the open file description `e` refers to (the first fd of it).
fn open_description(
    e: &FdEntry,
    pipes: &BTreeMap<u64, Pipe>,
    pipe_ends_used: &mut Vec<(u64, bool)>,
    temps: &mut Temps,
) -> Result<i32> {
    let n = e.fd.0;
    let flags = e.status_flags as i32 & OPEN_FLAGS;
    let lossy = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let fd = match &e.kind {
        FdKind::Pipe {
            pipe_id, write_end, ..
        } => {
            let p = &pipes[pipe_id];
            let end = if *write_end { p.write } else { p.read };
            if !pipe_ends_used.contains(&(*pipe_id, *write_end)) {
                // The pipe's own end is this description.
                pipe_ends_used.push((*pipe_id, *write_end));
                return Ok(end);
            }
            // Another description of the same end (the program reopened
            // /proc/self/fd/N): a fresh open of the pipe.
            let path = format!("/proc/self/fd/{end}");
            let acc = if *write_end {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
            io(
                n,
                "reopening a pipe",
                sys::open(path.as_bytes(), acc | libc::O_NONBLOCK, 0),
            )?
        }
        FdKind::Fifo { path, .. } => io(
            n,
            format!("open FIFO {}", lossy(path)),
            sys::open(path, (flags & libc::O_ACCMODE) | libc::O_NONBLOCK, 0),
        )?,
        FdKind::RegularFile {
            file,
            offset,
            deleted,
            contents,
        } => {
            let memfd = crate::shm::memfd_of(file.dev, file.inode).filter(|_| *deleted);
            let fd = if let Some(obj) = memfd {
                // A memfd the program also maps: the object made for its
                // mappings (shm.rs), whose bytes are the mappings'.
                io(
                    n,
                    "reopening the shared memfd",
                    sys::open(format!("/proc/self/fd/{obj}").as_bytes(), flags, 0),
                )?
            } else if *deleted {
                let Some(bytes) = contents else {
                    return Err(FdRestoreError::DeletedWithoutContents {
                        fd: n,
                        path: lossy(&file.path),
                    });
                };
                deleted_file(n, &file.path, bytes, flags, temps)?
            } else {
                io(
                    n,
                    format!("open {}", lossy(&file.path)),
                    sys::open(&file.path, flags, 0),
                )?
            };
            if flags & libc::O_PATH == 0 {
                if let Err(err) = sys::lseek(fd, *offset) {
                    sys::close(fd);
                    return io(n, format!("lseek to {offset}"), Err(err));
                }
            }
            fd
        }
        FdKind::Directory { path, offset } => {
            let fd = io(
                n,
                format!("open directory {}", lossy(path)),
                sys::open(
                    path,
                    (flags & libc::O_PATH) | libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                ),
            )?;
            if flags & libc::O_PATH == 0 && *offset != 0 {
                if let Err(err) = sys::lseek(fd, *offset) {
                    sys::close(fd);
                    return io(n, format!("directory lseek to {offset}"), Err(err));
                }
            }
            fd
        }
        FdKind::Device { path, .. } => io(
            n,
            format!("open device {}", lossy(path)),
            sys::open(path, flags, 0),
        )?,
        FdKind::EventFd { count, semaphore } => io(
            n,
            format!("eventfd with count {count}"),
            sys::eventfd(*count, *semaphore),
        )?,
        FdKind::SignalFd { mask } => io(
            n,
            format!("signalfd with mask {mask:#x}"),
            sys::signalfd(*mask),
        )?,
        FdKind::Epoll { .. } => io(n, "epoll_create1", sys::epoll_create())?,
        FdKind::Inotify { watches } => inotify(n, watches, temps)?,
        FdKind::TimerFd {
            clock,
            interval_ns,
            value_ns,
            settime_flags,
            ticks,
        } => io(
            n,
            format!("timerfd on clock {clock}"),
            sys::timerfd(*clock, *value_ns, *interval_ns, *settime_flags, *ticks),
        )?,
        other => {
            return Err(FdRestoreError::Unsupported {
                fd: n,
                kind: describe(other),
            })
        }
    };
    io(n, "moving an fd", temps.keep(fd))
}

/// An inotify instance with its watches on their wds. A fresh instance
/// numbers watches 1, 2, ... and never reuses a number while it lives, so
/// they are added in wd order, a gap (a removed watch) filled by a watch
/// on a memfd of our own removed at once; the IN_IGNORED events the
/// removals queue (and any event of the moment) are drained before the
/// program runs.
fn inotify(n: i32, watches: &[(Vec<u8>, u32)], temps: &mut Temps) -> Result<i32> {
    let fd = io(n, "inotify_init1", sys::inotify::init())?;
    let r = add_watches(n, fd, watches, temps);
    if r.is_err() {
        sys::close(fd);
    }
    r.map(|_| fd)
}

fn add_watches(n: i32, fd: i32, watches: &[(Vec<u8>, u32)], temps: &mut Temps) -> Result<()> {
    let mut gap: Option<Vec<u8>> = None;
    for (i, (path, mask)) in watches.iter().enumerate() {
        let want = i as i32 + 1;
        let lossy = String::from_utf8_lossy(path);
        let wd = if path.is_empty() {
            if gap.is_none() {
                let m = io(n, "memfd_create", sys::memfd(c"ckpt-inotify-gap"))?;
                let m = io(n, "moving an fd", temps.keep(m))?;
                gap = Some(format!("/proc/self/fd/{m}").into_bytes());
            }
            let g = gap.as_deref().unwrap_or_default();
            let wd = io(
                n,
                format!("inotify: a stand-in for wd {want}"),
                sys::inotify::add_watch(fd, g, libc::IN_ATTRIB),
            )?;
            io(n, "inotify_rm_watch", sys::inotify::rm_watch(fd, wd))?;
            wd
        } else {
            io(
                n,
                format!("inotify: watch {want} on {lossy}"),
                sys::inotify::add_watch(fd, path, *mask),
            )?
        };
        if wd != want {
            return io(
                n,
                format!("inotify: watch on {lossy} came back as wd {wd}, not {want}"),
                Err(std::io::ErrorKind::Other.into()),
            );
        }
    }
    let dropped = sys::inotify::drain(fd);
    log::info(&format!(
        "fd {n}: inotify: {} watches ({} bytes of stand-in events drained)",
        watches.iter().filter(|w| !w.0.is_empty()).count(),
        dropped
    ));
    Ok(())
}

/// A deleted file comes back as an unnamed file in its old directory
/// (O_TMPFILE: same file system, never visible), or a memfd when that
/// directory is gone, holding the stored bytes, then reopened with the
/// image's flags.
fn deleted_file(n: i32, path: &[u8], bytes: &[u8], flags: i32, temps: &mut Temps) -> Result<i32> {
    let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
    let dir = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => &b"/"[..],
        Some(i) => &path[..i],
        None => &b"."[..],
    };
    let tmp = match sys::open(dir, libc::O_TMPFILE | libc::O_RDWR, 0o600) {
        Ok(fd) => fd,
        Err(e) => {
            log::info(&format!(
                "fd {n}: O_TMPFILE in {}: {e}; using a memfd",
                String::from_utf8_lossy(dir)
            ));
            io(n, "memfd_create", sys::memfd(c"ckpt-deleted"))?
        }
    };
    let tmp = io(n, "moving an fd", temps.keep(tmp))?;
    io(
        n,
        "writing the deleted file's contents",
        sys::write_all(tmp, bytes),
    )?;
    // A second open of the same file, with the image's access mode and flags.
    io(
        n,
        "reopening the deleted file",
        sys::open(format!("/proc/self/fd/{tmp}").as_bytes(), flags, 0),
    )
}

fn describe(k: &FdKind) -> &'static str {
    match k {
        FdKind::RegularFile { deleted: true, .. } => "deleted regular file",
        FdKind::RegularFile { .. } => "regular file",
        FdKind::Directory { .. } => "directory",
        FdKind::Pipe {
            write_end: true, ..
        } => "pipe (write end)",
        FdKind::Pipe { .. } => "pipe (read end)",
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

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_format::{Fd, FdFlags, FileIdentity};

    fn file(fd: i32, ofd_id: u64) -> FdEntry {
        FdEntry {
            fd: Fd(fd),
            fd_flags: FdFlags(0),
            ofd_id,
            status_flags: libc::O_WRONLY as u32,
            kind: FdKind::RegularFile {
                file: FileIdentity {
                    path: b"/tmp/f".to_vec(),
                    dev: 1,
                    inode: 2,
                    size: 0,
                    mtime_ns: 0,
                },
                offset: 10,
                deleted: false,
                contents: None,
            },
        }
    }

    #[test]
    fn descriptions_held_by_several_processes_are_opened_once() {
        let wide = |pid: u64, fd: u64| 1 << 63 | pid << 32 | fd;
        let (a, b, c, d, e, f) = (
            file(3, wide(10, 3)),
            file(5, wide(10, 3)),
            file(4, wide(10, 3)),
            // opened after the fork in each process: one id each
            file(6, wide(10, 6)),
            file(6, wide(11, 6)),
            // ids of an older writer: per image, never joined
            file(7, 7 << 48 | 2),
        );
        let g = file(7, 7 << 48 | 2);
        let entries = [
            (11, &c),
            (10, &a),
            (10, &b),
            (10, &d),
            (11, &e),
            (10, &f),
            (11, &g),
        ];
        let s = shared_descriptions(&entries);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].0, s[0].1, s[0].2.fd.0), (wide(10, 3), 10, 3));
    }

    #[test]
    fn a_description_held_by_one_process_is_its_own() {
        let id = 1 << 63 | 10 << 32 | 3;
        let (a, b) = (file(3, id), file(4, id));
        assert!(shared_descriptions(&[(10, &a), (10, &b)]).is_empty());
    }

    fn fifo(fd: i32, path: &[u8], bytes: &[u8]) -> FdEntry {
        FdEntry {
            fd: Fd(fd),
            fd_flags: FdFlags(0),
            ofd_id: fd as u64,
            status_flags: libc::O_RDONLY as u32,
            kind: FdKind::Fifo {
                path: path.to_vec(),
                buffered: bytes.to_vec(),
            },
        }
    }

    #[test]
    fn a_fifo_of_several_processes_is_refilled_once_from_the_lowest_pid() {
        let (a, b, c, d) = (
            fifo(3, b"/t/q", b"xy"),
            fifo(4, b"/t/q", b""),
            fifo(5, b"/t/q", b"xy"),
            // held by one process only (twice): its own business
            fifo(6, b"/t/alone", b"z"),
        );
        let e = fifo(7, b"/t/alone", b"");
        let entries = [(12, &a), (12, &b), (11, &c), (12, &d), (12, &e)];
        let plan = shared_fifo_plan(&entries);
        assert_eq!(plan, vec![(&b"/t/q"[..], 11)]);
    }

    #[test]
    fn a_fifo_opened_before_a_fork_is_one_description() {
        let wide = 1 << 63 | 11 << 32 | 3;
        let (mut a, mut b) = (fifo(3, b"/t/q", b"xy"), fifo(4, b"/t/q", b"xy"));
        a.ofd_id = wide;
        b.ofd_id = wide;
        // opened after the fork by each: its own description
        let (c, d) = (fifo(5, b"/t/q", b""), fifo(5, b"/t/q", b""));
        let entries = [(12, &b), (11, &a), (11, &c), (12, &d)];
        let s = shared_descriptions(&entries);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!((s[0].0, s[0].1, s[0].2.fd.0), (wide, 11, 3));
        assert_eq!(shared_fifo_plan(&entries), vec![(&b"/t/q"[..], 11)]);
    }
}
