//! On-disk layouts of format v1, one per table of `spec/v1.md`.
//!
//! Integers are little-endian. The fixed-size structures (preamble, record
//! header, chunk header, index entry, trailer) are binrw structs below,
//! each field documented with its byte offset. The variable-length payloads
//! of the metadata records are tabled in [`payloads`] and implemented in
//! `codec.rs` (by hand, not derived: every length and count is checked
//! against the bytes that remain before anything is allocated).
//!
//! An image is:
//!
//! ```text
//! offset 0   Preamble (16 bytes)
//! 16         Record  = RecordHeader (24 bytes) + payload (payload_len bytes)
//! ...        Record  (HEADER first, then any order; PAGES after its REGION)
//! I          Record  INDEX (lists every record before it)
//! L - 32     Trailer (32 bytes); the file ends here
//! ```

use binrw::{BinRead, BinWrite};
use std::fmt;

/// Preamble magic: `\x89CKPT\r\n\x1a`. The high byte and the CR LF / ^Z
/// catch 7-bit and text-mode transfers, as PNG's does.
pub const MAGIC: [u8; 8] = *b"\x89CKPT\r\n\x1a";
/// Trailer magic.
pub const TRAILER_MAGIC: [u8; 8] = *b"CKPTTRLR";
/// Size of the preamble in bytes.
pub const PREAMBLE_LEN: u64 = 16;
/// Size of a record header in bytes.
pub const RECORD_HEADER_LEN: u64 = 24;
/// Size of the chunk header at the start of a PAGES payload.
pub const CHUNK_HEADER_LEN: u64 = 32;
/// Size of one index entry.
pub const INDEX_ENTRY_LEN: u64 = 16;
/// Size of the trailer.
pub const TRAILER_LEN: u64 = 32;

/// Record flag: a reader that does not know the kind must refuse the image.
pub const FLAG_CRITICAL: u16 = 1;
/// Record flag: a tool that does not understand the record may copy it
/// unchanged into a repacked image.
pub const FLAG_SAFE_TO_COPY: u16 = 2;
/// Flags a v1 reader knows; any other bit set is an error.
pub const FLAGS_KNOWN: u16 = FLAG_CRITICAL | FLAG_SAFE_TO_COPY;

/// Spec §2: the preamble at offset 0 (16 bytes).
///
/// A reader refuses a major version it does not know (unsupported, not
/// corrupt) and reads every minor version of a major it knows. A minor
/// version only adds: new record kinds (critical or not, see
/// [`RecordHeader::flags`]) and new fields appended at the end of a
/// metadata record's payload. A reader ignores bytes after the fields it
/// knows in an image whose minor version is newer than its own, and
/// refuses them in an image of its own minor version or older.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct Preamble {
    /// Bytes 0..8: [`MAGIC`].
    pub magic: [u8; 8],
    /// Bytes 8..10: format major version (1).
    pub major: u16,
    /// Bytes 10..12: format minor version (0).
    pub minor: u16,
    /// Bytes 12..16: CRC-32 (IEEE, as crc32fast and zlib compute it) of
    /// bytes 0..12.
    pub crc: u32,
}

/// Spec §3.1: the header in front of every record (24 bytes); the payload
/// follows immediately, with no alignment.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct RecordHeader {
    /// Bytes 0..2: record kind ([`RecordKind`]).
    pub kind: u16,
    /// Bytes 2..4: [`FLAG_CRITICAL`] | [`FLAG_SAFE_TO_COPY`]; every other
    /// bit is reserved: a reader refuses a record that sets one.
    pub flags: u16,
    /// Bytes 4..8: zero (a reader refuses anything else).
    pub reserved: u32,
    /// Bytes 8..16: bytes of payload that follow the header. At most
    /// `MAX_METADATA_PAYLOAD` (256 MiB) for every kind but PAGES, at most
    /// `MAX_PAGES_PAYLOAD` for PAGES.
    pub payload_len: u64,
    /// Bytes 16..20: CRC-32 of the whole payload.
    pub payload_crc: u32,
    /// Bytes 20..24: CRC-32 of header bytes 0..20.
    pub header_crc: u32,
}

/// Spec §5.1: the chunk header at the start of every PAGES payload (32
/// bytes). The payload is this header, `pad` zero bytes, then
/// `stored_len` bytes of data; `payload_len = 32 + pad + stored_len` and
/// the record's payload CRC covers all three.
///
/// Rules a reader enforces: the REGION precedes the chunk; `pages >= 1`
/// and `pages * page_size <= MAX_CHUNK_BYTES` (256 MiB) and
/// `pages <= MAX_CHUNK_PAGES`; `addr` is page-aligned and the pages lie
/// inside the region; no two chunks of an image cover the same page.
/// Pages no chunk covers are zero (anonymous memory) or come from the
/// backing file (`FileStorage::ByReference`).
///
/// - Raw (0): `stored_len = pages * page_size`, and `pad` (< page_size)
///   puts the data at a file offset that is a multiple of the page size,
///   so a restorer can mmap the pages straight from the image.
/// - Zstd (1): `pad = 0`; the data is exactly one zstd frame (RFC 8878,
///   no skippable frames, nothing after it) that decompresses to exactly
///   `pages * page_size` bytes; its header's content size, when present,
///   must say so; and `stored_len <= max_zstd_len(pages * page_size)`. A
///   reader decompresses into a buffer of that size and never allocates
///   from the frame's content-size field.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct ChunkHeader {
    /// Bytes 0..4: index of the REGION record (0 = the first REGION in the
    /// image) the pages belong to.
    pub region: u32,
    /// Bytes 4..8: number of pages.
    pub pages: u32,
    /// Bytes 8..16: address of the first page.
    pub addr: u64,
    /// Byte 16: encoding, 0 raw, 1 zstd; other values are unsupported.
    pub encoding: u8,
    /// Bytes 17..20: zero.
    pub reserved: [u8; 3],
    /// Bytes 20..24: zero bytes between this header and the data.
    pub pad: u32,
    /// Bytes 24..32: bytes of data after the pad.
    pub stored_len: u64,
}

/// Spec §6: one entry of the INDEX record (16 bytes).
///
/// The INDEX payload is `count: u64` then `count` entries, one per record
/// before the INDEX (the INDEX itself is not listed), in file order. The
/// first entry's offset is 16, and each next one is where the previous
/// record's payload ends: a reader checks every entry against the record
/// header it points at.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct IndexEntry {
    /// Bytes 0..8: file offset of the record header.
    pub offset: u64,
    /// Bytes 8..10: its kind, as in its header.
    pub kind: u16,
    /// Bytes 10..12: its flags, as in its header.
    pub flags: u16,
    /// Bytes 12..16: zero.
    pub reserved: u32,
}

/// Spec §7: the trailer, the last 32 bytes of the image; it follows the
/// INDEX record's payload immediately.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct Trailer {
    /// Bytes 0..8: [`TRAILER_MAGIC`].
    pub magic: [u8; 8],
    /// Bytes 8..16: file offset of the INDEX record header.
    pub index_offset: u64,
    /// Bytes 16..24: number of index entries (the INDEX's `count`).
    pub record_count: u64,
    /// Bytes 24..28: CRC-32 of every byte from offset 0 to the trailer.
    pub image_crc: u32,
    /// Bytes 28..32: CRC-32 of trailer bytes 0..28.
    pub trailer_crc: u32,
}

/// Serialises a fixed layout to its bytes.
pub fn to_bytes<T: for<'a> BinWrite<Args<'a> = ()>>(v: &T) -> Vec<u8> {
    let mut c = std::io::Cursor::new(Vec::new());
    // Writing a fixed layout into a Vec cannot fail.
    let _ = v.write_le(&mut c);
    c.into_inner()
}

/// Parses a fixed layout from exactly its bytes (the caller checked the length).
pub fn from_bytes<T: for<'a> BinRead<Args<'a> = ()>>(b: &[u8]) -> Option<T> {
    T::read_le(&mut std::io::Cursor::new(b)).ok()
}

impl Preamble {
    /// The preamble of the newest version this crate writes.
    pub fn current() -> Self {
        Self::of_minor(crate::FORMAT_MINOR)
    }

    /// The preamble of format 1.`minor`.
    pub fn of_minor(minor: u16) -> Self {
        let mut p = Preamble {
            magic: MAGIC,
            major: crate::FORMAT_MAJOR,
            minor,
            crc: 0,
        };
        p.crc = crc32fast::hash(&to_bytes(&p)[..12]);
        p
    }
}

impl RecordHeader {
    /// A header for a payload, with both CRCs computed.
    pub fn new(kind: RecordKind, flags: u16, payload_len: u64, payload_crc: u32) -> Self {
        let mut h = RecordHeader {
            kind: kind.code(),
            flags,
            reserved: 0,
            payload_len,
            payload_crc,
            header_crc: 0,
        };
        h.header_crc = crc32fast::hash(&to_bytes(&h)[..20]);
        h
    }
}

impl Trailer {
    /// A trailer with its CRC computed.
    pub fn new(index_offset: u64, record_count: u64, image_crc: u32) -> Self {
        let mut t = Trailer {
            magic: TRAILER_MAGIC,
            index_offset,
            record_count,
            image_crc,
            trailer_crc: 0,
        };
        t.trailer_crc = crc32fast::hash(&to_bytes(&t)[..28]);
        t
    }
}

/// Record kinds (spec §3.3). Non-exhaustive: a minor version may add kinds,
/// which older readers see as [`RecordKind::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordKind {
    /// Image header: who, where, when, host fingerprint. First, once.
    Header,
    /// Process-wide state. Once.
    Process,
    /// One thread.
    Thread,
    /// One memory region.
    Region,
    /// A chunk of page data.
    Pages,
    /// One file descriptor.
    Fd,
    /// Signal dispositions and shared pending signals.
    Signals,
    /// Interval and POSIX timers.
    Timers,
    /// Resource limits.
    Rlimits,
    /// The pid table of the computation.
    PidTable,
    /// The far end of a connected socket.
    SocketPeer,
    /// Children that had exited but were not yet reaped (format 1.2).
    Zombies,
    /// Shared regions mapping shared-memory objects (format 1.3).
    SharedMemory,
    /// System V IPC objects of the computation (format 1.3).
    SysvIpc,
    /// The index of every record.
    Index,
    /// A kind this reader does not know.
    Unknown(u16),
}

impl RecordKind {
    /// Every kind v1 defines.
    pub const ALL: [RecordKind; 15] = [
        RecordKind::Header,
        RecordKind::Process,
        RecordKind::Thread,
        RecordKind::Region,
        RecordKind::Pages,
        RecordKind::Fd,
        RecordKind::Signals,
        RecordKind::Timers,
        RecordKind::Rlimits,
        RecordKind::PidTable,
        RecordKind::SocketPeer,
        RecordKind::Zombies,
        RecordKind::SharedMemory,
        RecordKind::SysvIpc,
        RecordKind::Index,
    ];

    /// The kind's code in a record header.
    pub fn code(self) -> u16 {
        match self {
            RecordKind::Header => 0x0001,
            RecordKind::Process => 0x0002,
            RecordKind::Thread => 0x0003,
            RecordKind::Region => 0x0004,
            RecordKind::Pages => 0x0005,
            RecordKind::Fd => 0x0006,
            RecordKind::Signals => 0x0007,
            RecordKind::Timers => 0x0008,
            RecordKind::Rlimits => 0x0009,
            RecordKind::PidTable => 0x000A,
            RecordKind::SocketPeer => 0x000B,
            RecordKind::Zombies => 0x000C,
            RecordKind::SharedMemory => 0x000D,
            RecordKind::SysvIpc => 0x000E,
            RecordKind::Index => 0x00FF,
            RecordKind::Unknown(c) => c,
        }
    }

    /// The kind of a code.
    pub fn from_code(code: u16) -> Self {
        RecordKind::ALL
            .iter()
            .copied()
            .find(|k| k.code() == code)
            .unwrap_or(RecordKind::Unknown(code))
    }

    /// The flags the v1 encoder writes for this kind.
    ///
    /// CRITICAL, every v1 kind: a reader that skipped any of them would
    /// restart a different program, silently. HEADER (page size, arch),
    /// PROCESS (identity, credentials, mm layout), THREAD, REGION and PAGES
    /// are the program itself; FD: a lost descriptor breaks the program's
    /// I/O; SIGNALS: dropped dispositions turn a handled signal into a
    /// fatal one; TIMERS: a dropped alarm never fires; RLIMITS: limits
    /// change what the program may do (open files, stack, CPU); PID_TABLE:
    /// without it the process tree and its pids cannot be rebuilt;
    /// SOCKET_PEER: without it connections cannot be rejoined; INDEX: the
    /// random-access readers depend on it.
    ///
    /// ZOMBIES (1.2) is the one kind that is not critical: a reader that
    /// skips it restarts the program without its unreaped children (the
    /// parent's waitpid() for them fails with ECHILD), as every restart
    /// did before 1.2; everything else is restored.
    ///
    /// SHARED_MEMORY (1.3) is critical: a reader that skipped it would
    /// give every process a copy of memory that the processes shared, and
    /// the regions whose pages another image holds would come back zero.
    ///
    /// SYSV_IPC (1.3) is critical: without it the program's System V
    /// semaphores, queues and segments would be missing after a restart.
    ///
    /// SAFE_TO_COPY, on the kinds whose meaning does not depend on their
    /// position or on other records' positions or file offsets (PNG's
    /// rule): PROCESS, THREAD, FD, SIGNALS, TIMERS, RLIMITS, PID_TABLE,
    /// SOCKET_PEER, ZOMBIES, SHARED_MEMORY (it names regions by address),
    /// SYSV_IPC. Not on HEADER (must be first), REGION (chunks refer to
    /// regions by position), PAGES (region position, page-aligned file
    /// offsets) or INDEX (file offsets).
    pub fn default_flags(self) -> u16 {
        match self {
            RecordKind::Process
            | RecordKind::Thread
            | RecordKind::Fd
            | RecordKind::Signals
            | RecordKind::Timers
            | RecordKind::Rlimits
            | RecordKind::PidTable
            | RecordKind::SocketPeer
            | RecordKind::SharedMemory
            | RecordKind::SysvIpc => FLAG_CRITICAL | FLAG_SAFE_TO_COPY,
            RecordKind::Zombies => FLAG_SAFE_TO_COPY,
            _ => FLAG_CRITICAL,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RecordKind::Header => "HEADER",
            RecordKind::Process => "PROCESS",
            RecordKind::Thread => "THREAD",
            RecordKind::Region => "REGION",
            RecordKind::Pages => "PAGES",
            RecordKind::Fd => "FD",
            RecordKind::Signals => "SIGNALS",
            RecordKind::Timers => "TIMERS",
            RecordKind::Rlimits => "RLIMITS",
            RecordKind::PidTable => "PID_TABLE",
            RecordKind::SocketPeer => "SOCKET_PEER",
            RecordKind::Zombies => "ZOMBIES",
            RecordKind::SharedMemory => "SHARED_MEMORY",
            RecordKind::SysvIpc => "SYSV_IPC",
            RecordKind::Index => "INDEX",
            RecordKind::Unknown(c) => return write!(f, "UNKNOWN({c:#06x})"),
        };
        f.write_str(s)
    }
}

/// Spec §4: the payloads of the metadata records.
///
/// A payload is its fields in the order tabled, with no padding and no
/// alignment, and nothing after the last field (a reader refuses trailing
/// bytes, unless the image's minor version is newer than the reader's: see
/// [`Preamble`]). Field types:
///
/// | type | bytes |
/// |---|---|
/// | `u8` `u16` `u32` `u64` `i32` `i64` | little-endian, 1/2/4/8 bytes |
/// | `bool` | one byte, 0 or 1 (anything else is refused) |
/// | `bytes` | `u32` length, then that many bytes |
/// | `path` | `bytes` of at most `MAX_PATH` (1 MiB) |
/// | `str` | `bytes` of at most `MAX_STRING` (1 MiB), valid UTF-8 |
/// | `list<T>` | `u32` count, then that many `T` |
/// | `option<T>` | `u8` tag: 0 none; 1, then a `T` (other tags refused) |
/// | `[u8; N]`, `[u32; N]` | N items, no count |
/// | `addr`, `pid` | `u64` address, `i32` pid |
///
/// A reader checks every length and count against the payload bytes that
/// remain before it allocates: a count above the bytes left is refused
/// (every item takes at least one byte).
///
/// **HEADER** (0x0001): `writer_version: str`, `arch: u16` (ELF machine,
/// 62 = x86_64), `page_size: u32` (a power of two, 4096..=65536),
/// `created_ns: u64`, `computation_id: [u8; 16]`, `generation: u64`,
/// `vpid: pid`, `real_pid: i32`, `program: str`, `unique_id: str`, then
/// the host fingerprint: `hostname: str`, `kernel_release: str`,
/// `libc_version: str`, `vdso_symbols: list<(name: str, offset: u64)>`,
/// `xsave_features: u64`, `xsave_size: u32`, `cpu_flags: list<str>`,
/// `rseq_size: u32`.
///
/// **PROCESS** (0x0002): `pid, ppid, pgid, sid: pid`, `uid: [u32; 3]`,
/// `gid: [u32; 3]` (real, effective, saved), `groups: list<u32>`,
/// `cwd: path`, `umask: u32`, `exe: path`, `cmdline: list<path>`,
/// `environ: list<path>`, `auxv: list<(u64, u64)>`, `personality: u32`,
/// `mm`: 11 × `addr` (start_code, end_code, start_data, end_data,
/// start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end),
/// `sched_policy: u32`, `nice: i32`, `restart_info_addr: addr`.
///
/// **THREAD** (0x0003): `tid: pid`, `flags: u32` (1 leader, 2 checkpoint
/// thread), `name: str`, `regs`: 27 × `u64` in `struct user_regs_struct`
/// order (r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx,
/// rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es,
/// fs, gs), `xsave: bytes` (at most `MAX_XSAVE`, 64 KiB),
/// `sigmask: u64`, `sigaltstack: (sp: addr, flags: i32, size: u64)`,
/// `rseq: option<(addr: addr, len: u32, sig: u32)>`, `robust_list: addr`,
/// `robust_list_len: u64`, `clear_child_tid: addr`,
/// `pending: list<siginfo>`, `resume`: 8 × `u64` (rip, rsp, rbx, rbp,
/// r12, r13, r14, r15). A `siginfo` is `signo: i32`, `code: i32`,
/// `errno: i32`, `pid: i32`, `uid: u32`, `value: u64`.
///
/// **REGION** (0x0004): `start: addr`, `end: addr` (page-aligned,
/// `start < end`; regions of an image do not overlap), `prot: u32`,
/// `shared: bool`, `grows_down: bool`, `kind: u8` (0 anon, 1 heap,
/// 2 stack, 3 file, 4 shm, 5 vdso, 6 vvar, 7 vvar_vclock, 8 vsyscall),
/// `name: path`, `backing: option<file backing>`. A file backing is
/// `path: path`, `dev: u64`, `inode: u64`, `size: u64`, `mtime_ns: i64`,
/// `offset: u64`, `storage: u8` (0 embedded, 1 by reference).
///
/// **FD** (0x0006): `fd: i32`, `fd_flags: u32`, `ofd_id: u64`,
/// `status_flags: u32`, then `kind: u16` and the kind's fields:
///
/// | tag | kind | fields |
/// |---|---|---|
/// | 0 | unsupported | none |
/// | 1 | regular file | file identity (`path: path`, `dev: u64`, `inode: u64`, `size: u64`, `mtime_ns: i64`), `offset: u64`, `deleted: bool`, `contents: option<bytes>` |
/// | 2 | directory | `path: path`, `offset: u64` |
/// | 3 | pipe | `pipe_id: u64`, `write_end: bool`, `buffered: bytes` |
/// | 4 | fifo | `path: path`, `buffered: bytes` |
/// | 5 | tty | `path: path`, `termios: bytes`, `rows: u16`, `cols: u16`, `controlling: bool` |
/// | 6 | pty master | `index: u32`, `termios: bytes`, `rows: u16`, `cols: u16` |
/// | 7 | socket | `family: i32`, `sock_type: i32`, `protocol: i32`, `state: u32`, `local: bytes`, `peer: bytes`, `options: list<(level: i32, name: i32, value: bytes)>`, `inbound: bytes`, `socket_id: u64` |
/// | 8 | eventfd | `count: u64`, `semaphore: bool` |
/// | 9 | epoll | `entries: list<(fd: i32, events: u32, data: u64)>` |
/// | 10 | signalfd | `mask: u64` |
/// | 11 | timerfd | `clock: i32`, `interval_ns: u64`, `value_ns: u64` |
/// | 12 | inotify | `watches: list<(path: path, mask: u32)>` |
/// | 13 | device | `path: path`, `rdev: u64` |
///
/// **SIGNALS** (0x0007): `actions: list<(handler: u64, flags: u64,
/// restorer: u64, mask: u64)>` (entry n - 1 is signal n),
/// `pending: list<siginfo>`.
///
/// **TIMERS** (0x0008): `real`, `virt`, `prof`: each
/// `(interval_ns: u64, value_ns: u64)`; `posix: list<(id: i32, clock: i32,
/// notify: i32, signo: i32, value: u64, notify_tid: pid, interval_ns: u64,
/// value_ns: u64, overrun: i32)>`.
///
/// **RLIMITS** (0x0009): `list<(resource: u32, cur: u64, max: u64)>`.
///
/// **PID_TABLE** (0x000A): `list<(vpid: pid, real_pid: i32, ppid: pid,
/// pgid: pid, sid: pid, threads: list<pid>)>`.
///
/// **SOCKET_PEER** (0x000B): `socket_id: u64`, `peer_unique_id: str`,
/// `peer_host: str`, `peer_socket_id: u64`.
///
/// **ZOMBIES** (0x000C, format 1.2, not critical):
/// `list<(pid: pid, status: i32)>`.
///
/// **SHARED_MEMORY** (0x000D, format 1.3): `list<(start: addr, object: u8,
/// dev: u64, inode: u64, size: u64, offset: u64)>`.
///
/// **SYSV_IPC** (0x000E, format 1.3): `shm: list<(perm, size: u64)>`,
/// `sem: list<(perm, values: list<u16>)>`, `msg: list<(perm, qbytes: u64,
/// messages: list<(mtype: i64, text: bytes)>)>`, where `perm` is `(key:
/// i32, id: i32, mode: u32, uid: u32, gid: u32, cuid: u32, cgid: u32)`.
///
/// HEADER must be the first record and appear once; PROCESS must appear
/// once; at least one THREAD; SIGNALS, TIMERS, RLIMITS, PID_TABLE,
/// ZOMBIES, SHARED_MEMORY and SYSV_IPC at most once each.
pub mod payloads {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes_match_the_spec() {
        assert_eq!(to_bytes(&Preamble::current()).len() as u64, PREAMBLE_LEN);
        assert_eq!(
            to_bytes(&RecordHeader::new(RecordKind::Thread, 1, 0, 0)).len() as u64,
            RECORD_HEADER_LEN
        );
        let c = ChunkHeader {
            region: 0,
            pages: 1,
            addr: 0,
            encoding: 0,
            reserved: [0; 3],
            pad: 0,
            stored_len: 0,
        };
        assert_eq!(to_bytes(&c).len() as u64, CHUNK_HEADER_LEN);
        let e = IndexEntry {
            offset: 0,
            kind: 0,
            flags: 0,
            reserved: 0,
        };
        assert_eq!(to_bytes(&e).len() as u64, INDEX_ENTRY_LEN);
        assert_eq!(to_bytes(&Trailer::new(0, 0, 0)).len() as u64, TRAILER_LEN);
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::from_code(k.code()), k);
        }
        assert_eq!(RecordKind::from_code(0x7777), RecordKind::Unknown(0x7777));
    }
}
