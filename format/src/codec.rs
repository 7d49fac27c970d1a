//! Payload layouts of the metadata records (spec §4.x tables).
//!
//! A record payload is its fields in declaration order, little-endian:
//! integers at their width; `bool` as one byte 0/1; byte strings and lists
//! as a u32 count then the items; `Option` as a u8 tag 0/1 then the value;
//! enums as a u8 (or u16 for `FdKind`) tag then the variant's fields.
//!
//! Hand-written rather than binrw-derived: a derived count-driven `Vec` read
//! trusts the count, while here every count is checked against the bytes
//! that really remain before anything is allocated, and lists grow only as
//! items actually decode, so memory stays proportional to the input.

use crate::error::{malformed, At, Error, Result};
use crate::model::*;
use crate::raw::RecordKind;

/// Longest UTF-8 string field (names, host names, versions).
pub const MAX_STRING: u64 = 1 << 20;
/// Longest path-like byte string: file paths, region names, and each
/// command-line and environment entry (the kernel's own limits are far
/// lower: PATH_MAX 4096, MAX_ARG_STRLEN 128 KiB). Data fields (file
/// contents, buffered pipe and socket bytes) are bounded only by the
/// record payload limit.
pub const MAX_PATH: u64 = 1 << 20;
/// Largest XSAVE area a thread record may carry.
pub const MAX_XSAVE: u64 = 64 << 10;

/// A bounds-checked reader over one payload.
pub(crate) struct In<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute image offset of `buf[0]`.
    base: u64,
    kind: RecordKind,
    /// Format minor version of the image: fields a minor added are read
    /// only from images of that minor or newer.
    minor: u16,
}

impl<'a> In<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64, kind: RecordKind, minor: u16) -> Self {
        In {
            buf,
            pos: 0,
            base,
            kind,
            minor,
        }
    }

    fn at(&self) -> At {
        At {
            offset: self.base + self.pos as u64,
            record: Some(self.kind),
        }
    }

    pub(crate) fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                at: self.at(),
                needed: n - self.remaining(),
                end: self.base + self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    fn count(&mut self, what: &'static str) -> Result<usize> {
        let at = self.at();
        let n = u32::get(self)? as u64;
        // Every item takes at least one byte: a count above the bytes left
        // is a lie, whatever the item type.
        if n > self.remaining() {
            return Err(Error::LimitExceeded {
                at,
                what,
                value: n,
                limit: self.remaining(),
            });
        }
        Ok(n as usize)
    }

    fn bad(&self, what: impl Into<String>) -> Error {
        malformed(self.base + self.pos as u64, Some(self.kind), what)
    }

    /// Fails unless every byte of the payload was consumed.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.bad(format!(
                "{} trailing bytes after the record's fields",
                self.remaining()
            )));
        }
        Ok(())
    }
}

/// One field's encoding.
pub(crate) trait Wire: Sized {
    fn put(&self, w: &mut Vec<u8>);
    fn get(r: &mut In<'_>) -> Result<Self>;
    /// Reads `n` items; `u8` overrides this with one bulk copy.
    fn get_many(r: &mut In<'_>, n: usize) -> Result<Vec<Self>> {
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(Self::get(r)?);
        }
        Ok(v)
    }
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Vec<u8>) { w.extend_from_slice(&self.to_le_bytes()); }
            fn get(r: &mut In<'_>) -> Result<Self> { Ok(<$t>::from_le_bytes(r.array()?)) }
        }
    )*};
}
wire_int!(u16, u32, u64, i32, i64);

impl Wire for u8 {
    fn put(&self, w: &mut Vec<u8>) {
        w.push(*self);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        Ok(r.take(1)?[0])
    }
    fn get_many(r: &mut In<'_>, n: usize) -> Result<Vec<Self>> {
        Ok(r.take(n as u64)?.to_vec())
    }
}

impl Wire for bool {
    fn put(&self, w: &mut Vec<u8>) {
        w.push(*self as u8);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        match u8::get(r)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(r.bad(format!("boolean byte {v}, expected 0 or 1"))),
        }
    }
}

impl<const N: usize> Wire for [u8; N] {
    fn put(&self, w: &mut Vec<u8>) {
        w.extend_from_slice(self);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        r.array()
    }
}

impl Wire for [u32; 3] {
    fn put(&self, w: &mut Vec<u8>) {
        self.iter().for_each(|v| v.put(w));
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        Ok([u32::get(r)?, u32::get(r)?, u32::get(r)?])
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, w: &mut Vec<u8>) {
        (self.len() as u32).put(w);
        self.iter().for_each(|v| v.put(w));
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        let n = r.count("list length")?;
        T::get_many(r, n)
    }
}

impl Wire for String {
    fn put(&self, w: &mut Vec<u8>) {
        self.as_bytes().to_vec().put(w);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        let at = r.at();
        let n = u32::get(r)? as u64;
        if n > MAX_STRING {
            return Err(Error::LimitExceeded {
                at,
                what: "string length",
                value: n,
                limit: MAX_STRING,
            });
        }
        let b = r.take(n)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| malformed(at.offset, at.record, "string is not UTF-8"))
    }
}

/// A byte string of at most `limit` bytes, checked before anything is
/// allocated.
fn get_limited(r: &mut In<'_>, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let at = r.at();
    let n = u32::get(r)? as u64;
    if n > limit {
        return Err(Error::LimitExceeded {
            at,
            what,
            value: n,
            limit,
        });
    }
    Ok(r.take(n)?.to_vec())
}

/// A path-like byte string: at most [`MAX_PATH`] bytes.
fn get_path(r: &mut In<'_>) -> Result<Vec<u8>> {
    get_limited(r, MAX_PATH, "path length")
}

/// A list of path-like byte strings (command line, environment).
fn get_paths(r: &mut In<'_>) -> Result<Vec<Vec<u8>>> {
    let n = r.count("list length")?;
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        v.push(get_path(r)?);
    }
    Ok(v)
}

/// Inotify watches: (path, mask) pairs.
fn get_watches(r: &mut In<'_>) -> Result<Vec<(Vec<u8>, u32)>> {
    let n = r.count("list length")?;
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        v.push((get_path(r)?, u32::get(r)?));
    }
    Ok(v)
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, w: &mut Vec<u8>) {
        match self {
            None => w.push(0),
            Some(v) => {
                w.push(1);
                v.put(w);
            }
        }
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        match u8::get(r)? {
            0 => Ok(None),
            1 => Ok(Some(T::get(r)?)),
            t => Err(r.bad(format!("option tag {t}, expected 0 or 1"))),
        }
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, w: &mut Vec<u8>) {
        self.0.put(w);
        self.1.put(w);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

/// Newtypes are their inner value.
macro_rules! wire_newtype {
    ($($t:ident($inner:ty)),*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Vec<u8>) { self.0.put(w) }
            fn get(r: &mut In<'_>) -> Result<Self> { Ok($t(<$inner>::get(r)?)) }
        }
    )*};
}
wire_newtype!(
    Addr(u64),
    Pid(i32),
    Fd(i32),
    Prot(u32),
    ThreadFlags(u32),
    FdFlags(u32),
    SockAddr(Vec<u8>)
);

/// Reads one struct field: by its type, or (`path`, `paths`) with the
/// path length limit.
macro_rules! get_field {
    ($r:ident) => {
        Wire::get($r)?
    };
    ($r:ident, path) => {
        get_path($r)?
    };
    ($r:ident, paths) => {
        get_paths($r)?
    };
}

/// Structs are their fields in order. `field: path` marks a byte string
/// held to [`MAX_PATH`], `field: paths` a list of them.
macro_rules! wire_struct {
    ($($t:ident { $($f:ident $(: $how:ident)?),* $(,)? })*) => {$(
        impl Wire for $t {
            fn put(&self, w: &mut Vec<u8>) { $(self.$f.put(w);)* }
            fn get(r: &mut In<'_>) -> Result<Self> { Ok($t { $($f: get_field!(r $(, $how)?),)* }) }
        }
    )*};
}

wire_struct! {
    VdsoSymbol { name, offset }
    HostFingerprint { hostname, kernel_release, libc_version, vdso_symbols, xsave_features, xsave_size, cpu_flags, rseq_size }
    ImageHeader { writer_version, arch, page_size, created_ns, computation_id, generation, vpid, real_pid, program, unique_id, host }
    MmLayout { start_code, end_code, start_data, end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end }
    Process { pid, ppid, pgid, sid, uid, gid, groups, cwd: path, umask, exe: path, cmdline: paths, environ: paths, auxv, personality, mm, sched_policy, nice, restart_info_addr }
    GpRegs { r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs }
    ResumeContext { rip, rsp, rbx, rbp, r12, r13, r14, r15 }
    SigAltStack { sp, flags, size }
    Rseq { addr, len, sig }
    PendingSignal { signo, code, errno, pid, uid, value }
    FileIdentity { path: path, dev, inode, size, mtime_ns }
    FileBacking { file, offset, storage }
    Region { start, end, prot, shared, grows_down, kind, name: path, backing }
    SockOpt { level, name, value }
    EpollEntry { fd, events, data }
    FdEntry { fd, fd_flags, ofd_id, status_flags, kind }
    PidEntry { vpid, real_pid, ppid, pgid, sid, threads }
    SocketPeer { socket_id, peer_unique_id, peer_host, peer_socket_id }
    Zombie { pid, status }
    SharedMapping { start, object, dev, inode, size, offset }
    IpcPerm { key, id, mode, uid, gid, cuid, cgid }
    SysvShm { perm, size }
    SysvSem { perm, values }
    SysvMessage { mtype, text }
    SysvMsgQueue { perm, qbytes, messages }
    SysvIpc { shm, sem, msg }
    SigAction { handler, flags, restorer, mask }
    SignalState { actions, pending }
    TimerValue { interval_ns, value_ns }
    PosixTimer { id, clock, notify, signo, value, notify_tid, timer, overrun }
    Timers { real, virt, prof, posix }
    Rlimit { resource, cur, max }
}

impl Wire for Thread {
    fn put(&self, w: &mut Vec<u8>) {
        self.tid.put(w);
        self.flags.put(w);
        self.name.put(w);
        self.regs.put(w);
        self.xsave.put(w);
        self.sigmask.put(w);
        self.sigaltstack.put(w);
        self.rseq.put(w);
        self.robust_list.put(w);
        self.robust_list_len.put(w);
        self.clear_child_tid.put(w);
        self.pending.put(w);
        self.resume.put(w);
    }
    fn get(r: &mut In<'_>) -> Result<Self> {
        let tid = Pid::get(r)?;
        let flags = ThreadFlags::get(r)?;
        let name = String::get(r)?;
        let regs = GpRegs::get(r)?;
        let xsave = get_limited(r, MAX_XSAVE, "XSAVE area size")?;
        Ok(Thread {
            tid,
            flags,
            name,
            regs,
            xsave,
            sigmask: Wire::get(r)?,
            sigaltstack: Wire::get(r)?,
            rseq: Wire::get(r)?,
            robust_list: Wire::get(r)?,
            robust_list_len: Wire::get(r)?,
            clear_child_tid: Wire::get(r)?,
            pending: Wire::get(r)?,
            resume: Wire::get(r)?,
        })
    }
}

/// Enums whose variants carry no fields: a u8 tag.
macro_rules! wire_tag_enum {
    ($t:ident { $($v:ident = $n:literal),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, w: &mut Vec<u8>) { w.push(match self { $($t::$v => $n,)* }) }
            fn get(r: &mut In<'_>) -> Result<Self> {
                match u8::get(r)? {
                    $($n => Ok($t::$v),)*
                    t => Err(r.bad(format!(concat!(stringify!($t), " tag {}"), t))),
                }
            }
        }
    };
}

wire_tag_enum!(RegionKind {
    Anon = 0, Heap = 1, Stack = 2, File = 3, Shm = 4, Vdso = 5, Vvar = 6, VvarVclock = 7, Vsyscall = 8,
});
wire_tag_enum!(FileStorage { Embedded = 0, ByReference = 1 });
wire_tag_enum!(ShmObject { Anonymous = 0, PosixShm = 1, Memfd = 2, SysV = 3 });

/// `FdKind` tags (spec §4.5).
mod fd_tag {
    pub const UNSUPPORTED: u16 = 0;
    pub const REGULAR_FILE: u16 = 1;
    pub const DIRECTORY: u16 = 2;
    pub const PIPE: u16 = 3;
    pub const FIFO: u16 = 4;
    pub const TTY: u16 = 5;
    pub const PTY_MASTER: u16 = 6;
    pub const SOCKET: u16 = 7;
    pub const EVENTFD: u16 = 8;
    pub const EPOLL: u16 = 9;
    pub const SIGNALFD: u16 = 10;
    pub const TIMERFD: u16 = 11;
    pub const INOTIFY: u16 = 12;
    pub const DEVICE: u16 = 13;
}

impl Wire for FdKind {
    fn put(&self, w: &mut Vec<u8>) {
        use fd_tag::*;
        match self {
            FdKind::Unsupported => UNSUPPORTED.put(w),
            FdKind::RegularFile {
                file,
                offset,
                deleted,
                contents,
            } => {
                REGULAR_FILE.put(w);
                file.put(w);
                offset.put(w);
                deleted.put(w);
                contents.put(w);
            }
            FdKind::Directory { path, offset } => {
                DIRECTORY.put(w);
                path.put(w);
                offset.put(w);
            }
            FdKind::Pipe {
                pipe_id,
                write_end,
                buffered,
            } => {
                PIPE.put(w);
                pipe_id.put(w);
                write_end.put(w);
                buffered.put(w);
            }
            FdKind::Fifo { path, buffered } => {
                FIFO.put(w);
                path.put(w);
                buffered.put(w);
            }
            FdKind::Tty {
                path,
                termios,
                rows,
                cols,
                controlling,
            } => {
                TTY.put(w);
                path.put(w);
                termios.put(w);
                rows.put(w);
                cols.put(w);
                controlling.put(w);
            }
            FdKind::PtyMaster {
                index,
                termios,
                rows,
                cols,
            } => {
                PTY_MASTER.put(w);
                index.put(w);
                termios.put(w);
                rows.put(w);
                cols.put(w);
            }
            FdKind::Socket {
                family,
                sock_type,
                protocol,
                state,
                local,
                peer,
                options,
                inbound,
                socket_id,
            } => {
                SOCKET.put(w);
                family.put(w);
                sock_type.put(w);
                protocol.put(w);
                state.put(w);
                local.put(w);
                peer.put(w);
                options.put(w);
                inbound.put(w);
                socket_id.put(w);
            }
            FdKind::EventFd { count, semaphore } => {
                EVENTFD.put(w);
                count.put(w);
                semaphore.put(w);
            }
            FdKind::Epoll { entries } => {
                EPOLL.put(w);
                entries.put(w);
            }
            FdKind::SignalFd { mask } => {
                SIGNALFD.put(w);
                mask.put(w);
            }
            FdKind::TimerFd {
                clock,
                interval_ns,
                value_ns,
                settime_flags,
                ticks,
            } => {
                TIMERFD.put(w);
                clock.put(w);
                interval_ns.put(w);
                value_ns.put(w);
                // Format 1.1 (spec §4.5): present only when not both zero,
                // so a timerfd without them is a 1.0 record.
                if *settime_flags != 0 || *ticks != 0 {
                    settime_flags.put(w);
                    ticks.put(w);
                }
            }
            FdKind::Inotify { watches } => {
                INOTIFY.put(w);
                watches.put(w);
            }
            FdKind::Device { path, rdev } => {
                DEVICE.put(w);
                path.put(w);
                rdev.put(w);
            }
        }
    }

    fn get(r: &mut In<'_>) -> Result<Self> {
        use fd_tag::*;
        let g = r;
        Ok(match u16::get(g)? {
            UNSUPPORTED => FdKind::Unsupported,
            REGULAR_FILE => FdKind::RegularFile {
                file: Wire::get(g)?,
                offset: Wire::get(g)?,
                deleted: Wire::get(g)?,
                contents: Wire::get(g)?,
            },
            DIRECTORY => FdKind::Directory {
                path: get_path(g)?,
                offset: Wire::get(g)?,
            },
            PIPE => FdKind::Pipe {
                pipe_id: Wire::get(g)?,
                write_end: Wire::get(g)?,
                buffered: Wire::get(g)?,
            },
            FIFO => FdKind::Fifo {
                path: get_path(g)?,
                buffered: Wire::get(g)?,
            },
            TTY => FdKind::Tty {
                path: get_path(g)?,
                termios: Wire::get(g)?,
                rows: Wire::get(g)?,
                cols: Wire::get(g)?,
                controlling: Wire::get(g)?,
            },
            PTY_MASTER => FdKind::PtyMaster {
                index: Wire::get(g)?,
                termios: Wire::get(g)?,
                rows: Wire::get(g)?,
                cols: Wire::get(g)?,
            },
            SOCKET => FdKind::Socket {
                family: Wire::get(g)?,
                sock_type: Wire::get(g)?,
                protocol: Wire::get(g)?,
                state: Wire::get(g)?,
                local: Wire::get(g)?,
                peer: Wire::get(g)?,
                options: Wire::get(g)?,
                inbound: Wire::get(g)?,
                socket_id: Wire::get(g)?,
            },
            EVENTFD => FdKind::EventFd {
                count: Wire::get(g)?,
                semaphore: Wire::get(g)?,
            },
            EPOLL => FdKind::Epoll {
                entries: Wire::get(g)?,
            },
            SIGNALFD => FdKind::SignalFd {
                mask: Wire::get(g)?,
            },
            TIMERFD => {
                let clock = Wire::get(g)?;
                let interval_ns = Wire::get(g)?;
                let value_ns = Wire::get(g)?;
                // The 1.1 fields end the payload when present; a 1.0
                // image has none (its trailing bytes stay an error).
                let (settime_flags, ticks) = if g.minor >= 1 && g.remaining() > 0 {
                    (Wire::get(g)?, Wire::get(g)?)
                } else {
                    (0, 0)
                };
                FdKind::TimerFd {
                    clock,
                    interval_ns,
                    value_ns,
                    settime_flags,
                    ticks,
                }
            }
            INOTIFY => FdKind::Inotify {
                watches: get_watches(g)?,
            },
            DEVICE => FdKind::Device {
                path: get_path(g)?,
                rdev: Wire::get(g)?,
            },
            t => return Err(g.bad(format!("fd kind tag {t}"))),
        })
    }
}

/// Encodes one value as a payload.
pub(crate) fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut w = Vec::new();
    v.put(&mut w);
    w
}

/// Decodes a whole payload as one value; every byte must be used.
pub(crate) fn decode<T: Wire>(
    payload: &[u8],
    base: u64,
    kind: RecordKind,
    minor: u16,
) -> Result<T> {
    let mut r = In::new(payload, base, kind, minor);
    let v = T::get(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Decodes one value from the start of a payload, ignoring what follows
/// (fields a newer minor version appended).
pub(crate) fn decode_prefix<T: Wire>(
    payload: &[u8],
    base: u64,
    kind: RecordKind,
    minor: u16,
) -> Result<T> {
    T::get(&mut In::new(payload, base, kind, minor))
}
