//! Fixed on-disk layouts, one per table of `spec/v1.md`.
//!
//! Integers are little-endian. Variable-length payloads (the model records)
//! are laid out by `codec.rs`; this module holds only what has a fixed size.
//! binrw gives the byte order and the field order; each struct's doc names
//! its spec section.

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

/// Spec §2: the preamble at offset 0.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct Preamble {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Format major version.
    pub major: u16,
    /// Format minor version.
    pub minor: u16,
    /// CRC-32 of bytes 0..12.
    pub crc: u32,
}

/// Spec §3: the header in front of every record.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct RecordHeader {
    /// Record kind ([`RecordKind`]).
    pub kind: u16,
    /// [`FLAG_CRITICAL`] | [`FLAG_SAFE_TO_COPY`].
    pub flags: u16,
    /// Zero.
    pub reserved: u32,
    /// Bytes of payload that follow the header.
    pub payload_len: u64,
    /// CRC-32 of the payload.
    pub payload_crc: u32,
    /// CRC-32 of header bytes 0..20.
    pub header_crc: u32,
}

/// Spec §5: the chunk header at the start of every PAGES payload.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct ChunkHeader {
    /// Index of the REGION record (in order of appearance) the pages belong to.
    pub region: u32,
    /// Number of pages.
    pub pages: u32,
    /// Address of the first page.
    pub addr: u64,
    /// 0 raw, 1 zstd.
    pub encoding: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// Zero bytes between this header and the data.
    pub pad: u32,
    /// Bytes of data after the pad.
    pub stored_len: u64,
}

/// Spec §6: one entry of the INDEX record.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct IndexEntry {
    /// File offset of the record header.
    pub offset: u64,
    /// Its kind.
    pub kind: u16,
    /// Its flags.
    pub flags: u16,
    /// Zero.
    pub reserved: u32,
}

/// Spec §7: the trailer, the last 32 bytes of the image.
#[derive(BinRead, BinWrite, Clone, Copy, Debug, PartialEq, Eq)]
#[brw(little)]
pub struct Trailer {
    /// [`TRAILER_MAGIC`].
    pub magic: [u8; 8],
    /// File offset of the INDEX record header.
    pub index_offset: u64,
    /// Number of index entries.
    pub record_count: u64,
    /// CRC-32 of every byte before the trailer.
    pub image_crc: u32,
    /// CRC-32 of trailer bytes 0..28.
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
    /// The preamble of this version.
    pub fn current() -> Self {
        let mut p = Preamble {
            magic: MAGIC,
            major: crate::FORMAT_MAJOR,
            minor: crate::FORMAT_MINOR,
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

/// Record kinds (spec §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// The index of every record.
    Index,
    /// A kind this reader does not know.
    Unknown(u16),
}

impl RecordKind {
    /// Every kind v1 defines.
    pub const ALL: [RecordKind; 12] = [
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

    /// The flags the v1 encoder writes for this kind. Every v1 kind is
    /// critical: a restart that silently dropped threads, memory, fds,
    /// signal dispositions, timers, limits or the pid table would resume a
    /// different program. Rlimits and socket peers are also safe to copy:
    /// they describe the process, not other records' bytes.
    pub fn default_flags(self) -> u16 {
        match self {
            RecordKind::Rlimits | RecordKind::SocketPeer => FLAG_CRITICAL | FLAG_SAFE_TO_COPY,
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
            RecordKind::Index => "INDEX",
            RecordKind::Unknown(c) => return write!(f, "UNKNOWN({c:#06x})"),
        };
        f.write_str(s)
    }
}

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
