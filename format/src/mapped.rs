//! Random access over a memory-mapped image.
//!
//! `open` reads the preamble, the trailer, the index and every metadata
//! record (each checked against its CRCs) and the 32-byte header of each
//! PAGES record; it never touches page data, so inspecting a 1 GiB image
//! faults in only a few pages. Page data is read, CRC-checked and decoded
//! chunk by chunk when asked.

use crate::decode::{self, ChunkRef, Metadata};
use crate::error::{malformed, At, Error, Result};
use crate::model::*;
use crate::raw::{self, IndexEntry, RecordKind, Trailer};
use std::path::Path;

enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An image opened for random access.
pub struct MappedImage {
    bytes: Bytes,
    meta: Metadata,
    index: Vec<IndexEntry>,
}

impl MappedImage {
    /// Maps and opens the image at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let f =
            std::fs::File::open(path.as_ref()).map_err(|source| Error::Io { offset: 0, source })?;
        // SAFETY: the map is read-only; ckpt never writes an image in place
        // (images are written under a temporary name and renamed), so the
        // bytes cannot change under us unless another program truncates the
        // file, which the kernel reports as SIGBUS, as for any mmap reader.
        let map =
            unsafe { memmap2::Mmap::map(&f) }.map_err(|source| Error::Io { offset: 0, source })?;
        // Open touches a few hundred scattered bytes (record headers, the
        // index); with normal fault readahead (read_ahead_kb, often MiBs)
        // each of those faults would pull in the page data around it, and
        // opening a 1 GiB image would read most of it. Page data read
        // later gets normal readahead back. Advice is a hint: errors are
        // ignored.
        let _ = map.advise(memmap2::Advice::Random);
        let img = Self::parse(Bytes::Map(map))?;
        if let Bytes::Map(m) = &img.bytes {
            let _ = m.advise(memmap2::Advice::Normal);
        }
        Ok(img)
    }

    /// Opens an image the caller has mapped.
    pub fn from_mmap(map: memmap2::Mmap) -> Result<Self> {
        Self::parse(Bytes::Map(map))
    }

    /// Opens an image held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Self> {
        let b: &[u8] = &bytes;
        let len = b.len() as u64;
        decode::check_preamble(b)?;
        let min = raw::PREAMBLE_LEN + raw::RECORD_HEADER_LEN + 8 + raw::TRAILER_LEN;
        if len < min {
            return Err(Error::Truncated {
                at: At {
                    offset: len,
                    record: None,
                },
                needed: min - len,
                end: len,
            });
        }
        let toff = len - raw::TRAILER_LEN;
        let tb = &b[toff as usize..];
        let t: Trailer = raw::from_bytes(tb).ok_or_else(|| malformed(toff, None, "trailer"))?;
        let tat = At {
            offset: toff,
            record: None,
        };
        if t.magic != raw::TRAILER_MAGIC {
            // Without a trailer there is no index: walk the records from the
            // front to say where the image stops being whole (usually it was
            // cut short).
            let mut d = crate::stream::StreamDecoder::new(b).skip_page_data();
            loop {
                match d.next_item() {
                    Err(e) => return Err(e),
                    Ok(None) => break,
                    Ok(Some(_)) => {}
                }
            }
            return Err(malformed(toff, None, "no trailer at the end of the image"));
        }
        let computed = crc32fast::hash(&tb[..28]);
        if computed != t.trailer_crc {
            return Err(Error::Crc {
                at: tat,
                what: "trailer",
                stored: t.trailer_crc,
                computed,
            });
        }
        let index = read_index(b, &t, toff)?;

        let mut meta = Metadata {
            version: decode::check_preamble(b)?,
            ..Default::default()
        };
        let mut expect = raw::PREAMBLE_LEN;
        for e in &index {
            if e.offset != expect {
                return Err(malformed(
                    e.offset,
                    None,
                    format!(
                        "index entry at {:#x}, the previous record ends at {expect:#x}",
                        e.offset
                    ),
                ));
            }
            let hb = &b[e.offset as usize..(e.offset + raw::RECORD_HEADER_LEN) as usize];
            let h = decode::check_record_header(hb, e.offset)?;
            if h.kind != e.kind || h.flags != e.flags {
                return Err(malformed(
                    e.offset,
                    Some(RecordKind::from_code(h.kind)),
                    "record differs from its index entry",
                ));
            }
            let kind = RecordKind::from_code(h.kind);
            let pstart = e.offset + raw::RECORD_HEADER_LEN;
            let pend = pstart
                .checked_add(h.payload_len)
                .filter(|&p| p <= t.index_offset)
                .ok_or_else(|| malformed(e.offset, Some(kind), "payload runs past the index"))?;
            let payload = &b[pstart as usize..pend as usize];
            match kind {
                RecordKind::Pages => {
                    let head = &payload[..payload.len().min(raw::CHUNK_HEADER_LEN as usize)];
                    let c = meta.chunk(&h, head, e.offset)?;
                    meta.chunks.push(c);
                }
                RecordKind::Index => {
                    return Err(malformed(e.offset, Some(kind), "INDEX listed in the index"))
                }
                _ => {
                    decode::check_payload_crc(&h, payload, e.offset)?;
                    meta.apply(&h, payload, e.offset)?;
                }
            }
            expect = pend;
        }
        if expect != t.index_offset {
            return Err(malformed(
                expect,
                None,
                "bytes between the last record and the index",
            ));
        }
        meta.check_complete(t.index_offset)?;
        Ok(MappedImage { bytes, meta, index })
    }

    /// Format version (major, minor).
    pub fn version(&self) -> (u16, u16) {
        self.meta.version
    }
    /// Size of the image in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }
    /// The whole image.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// All decoded metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }
    /// The index entries (every record but the INDEX itself).
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }
    /// The payload of the `i`th record of the index (checked at open,
    /// except PAGES payloads: see [`MappedImage::verify_chunk`]); `None`
    /// past the end. `repack` copies unknown safe-to-copy records with it.
    pub fn record_payload(&self, i: usize) -> Option<&[u8]> {
        let e = self.index.get(i)?;
        let start = e.offset + raw::RECORD_HEADER_LEN;
        let h: raw::RecordHeader =
            raw::from_bytes(self.bytes.get(e.offset as usize..start as usize)?)?;
        self.bytes
            .get(start as usize..start.checked_add(h.payload_len)? as usize)
    }
    /// HEADER.
    pub fn header(&self) -> &ImageHeader {
        self.meta.header.as_ref().expect("checked at open")
    }
    /// PROCESS.
    pub fn process(&self) -> &Process {
        self.meta.process.as_ref().expect("checked at open")
    }
    /// THREAD records.
    pub fn threads(&self) -> &[Thread] {
        &self.meta.threads
    }
    /// REGION records, in order.
    pub fn regions(&self) -> &[Region] {
        &self.meta.regions
    }
    /// FD records.
    pub fn fds(&self) -> &[FdEntry] {
        &self.meta.fds
    }
    /// SIGNALS, when the image has the record.
    pub fn signals(&self) -> Option<&SignalState> {
        self.meta.signals.as_ref()
    }
    /// TIMERS, when the image has the record.
    pub fn timers(&self) -> Option<&Timers> {
        self.meta.timers.as_ref()
    }
    /// RLIMITS.
    pub fn rlimits(&self) -> &[Rlimit] {
        &self.meta.rlimits
    }
    /// PID_TABLE.
    pub fn pid_table(&self) -> &[PidEntry] {
        &self.meta.pid_table
    }
    /// The ZOMBIES record's children (empty without one).
    pub fn zombies(&self) -> &[Zombie] {
        &self.meta.zombies
    }

    /// The SHARED_MEMORY record's mappings (empty without one).
    pub fn shared_memory(&self) -> &[SharedMapping] {
        &self.meta.shared_memory
    }

    /// The SYSV_IPC record (None without one).
    pub fn sysv_ipc(&self) -> Option<&SysvIpc> {
        self.meta.sysv_ipc.as_ref()
    }

    /// SOCKET_PEER records.
    pub fn socket_peers(&self) -> &[SocketPeer] {
        &self.meta.socket_peers
    }
    /// PAGES records, in file order.
    pub fn chunks(&self) -> &[ChunkRef] {
        &self.meta.chunks
    }
    /// Unknown non-critical records skipped at open: (offset, kind, flags).
    pub fn skipped_records(&self) -> &[(u64, u16, u16)] {
        &self.meta.skipped
    }
    /// Page size of the image.
    pub fn page_size(&self) -> u64 {
        self.header().page_size as u64
    }
    /// The stored bytes of a chunk (for a raw chunk: its pages, page-aligned
    /// in the file). Not CRC-checked: see [`MappedImage::verify_chunk`].
    pub fn chunk_bytes(&self, c: &ChunkRef) -> &[u8] {
        &self.bytes[c.data_offset as usize..(c.data_offset + c.stored_len) as usize]
    }
    /// Checks a chunk's payload CRC and pad.
    pub fn verify_chunk(&self, c: &ChunkRef) -> Result<()> {
        let start = (c.record_offset + raw::RECORD_HEADER_LEN) as usize;
        let payload = &self.bytes[start..start + c.payload_len as usize];
        let computed = crc32fast::hash(payload);
        if computed != c.payload_crc {
            let at = At {
                offset: c.record_offset,
                record: Some(RecordKind::Pages),
            };
            return Err(Error::Crc {
                at,
                what: "payload",
                stored: c.payload_crc,
                computed,
            });
        }
        decode::check_pad(c, payload)
    }
    /// Verifies a chunk, then decodes its pages into `out`
    /// (`out.len()` must be `pages * page_size`).
    pub fn read_chunk(&self, c: &ChunkRef, out: &mut [u8]) -> Result<()> {
        if out.len() as u64 != c.meta.pages as u64 * self.page_size() {
            return Err(Error::Usage("read_chunk: output is not the chunk's size"));
        }
        self.verify_chunk(c)?;
        decode::decode_chunk_data(c, self.chunk_bytes(c), out)
    }
    /// Full validation of this image, page data and image digest included.
    pub fn validate(&self) -> crate::validate::Report {
        crate::validate::validate_bytes(&self.bytes)
    }
    /// Bytes of page data stored per region (index = region position).
    pub fn stored_bytes_per_region(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(0u64, 0u64); self.regions().len()];
        let ps = self.page_size();
        for c in self.chunks() {
            let e = &mut v[c.meta.region as usize];
            e.0 += c.stored_len;
            e.1 += c.meta.pages as u64 * ps;
        }
        v
    }
}

fn read_index(b: &[u8], t: &Trailer, toff: u64) -> Result<Vec<IndexEntry>> {
    let io = t.index_offset;
    let kind = Some(RecordKind::Index);
    if io < raw::PREAMBLE_LEN
        || io
            .checked_add(raw::RECORD_HEADER_LEN)
            .is_none_or(|e| e > toff)
    {
        return Err(malformed(
            toff + 8,
            None,
            format!("index offset {io:#x} outside the image"),
        ));
    }
    let hb = &b[io as usize..(io + raw::RECORD_HEADER_LEN) as usize];
    let h = decode::check_record_header(hb, io)?;
    if h.kind != RecordKind::Index.code() {
        return Err(malformed(
            io,
            Some(RecordKind::from_code(h.kind)),
            "trailer points at a record that is not the INDEX",
        ));
    }
    let pstart = io + raw::RECORD_HEADER_LEN;
    if pstart.checked_add(h.payload_len) != Some(toff) {
        return Err(malformed(
            io,
            kind,
            "INDEX does not end where the trailer starts",
        ));
    }
    let payload = &b[pstart as usize..toff as usize];
    decode::check_payload_crc(&h, payload, io)?;
    if payload.len() < 8 {
        return Err(malformed(
            pstart,
            kind,
            "INDEX payload shorter than its count",
        ));
    }
    let count = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    if count != t.record_count
        || count.checked_mul(raw::INDEX_ENTRY_LEN) != Some(payload.len() as u64 - 8)
    {
        return Err(malformed(
            pstart,
            kind,
            format!("INDEX count {count} disagrees with its length or the trailer"),
        ));
    }
    let mut v = Vec::with_capacity(count as usize);
    for e in payload[8..].chunks_exact(raw::INDEX_ENTRY_LEN as usize) {
        let e: IndexEntry =
            raw::from_bytes(e).ok_or_else(|| malformed(pstart, kind, "index entry"))?;
        if e.reserved != 0 {
            return Err(malformed(
                pstart,
                kind,
                "index entry reserved field not zero",
            ));
        }
        v.push(e);
    }
    Ok(v)
}
