//! The streaming encoder: writes an image front to back over any `Write`,
//! never seeking, so an image can go to a pipe, ssh or object storage.

use crate::codec::{self, Wire};
use crate::error::{Error, Result};
use crate::model::*;
use crate::raw::{self, ChunkHeader, IndexEntry, Preamble, RecordHeader, RecordKind, Trailer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

/// Largest number of pages one chunk may hold (256 MiB of 4 KiB pages).
pub const MAX_CHUNK_PAGES: u32 = 65536;
/// Largest decoded size of one chunk, whatever the page size: a reader
/// allocates at most this much to decode a chunk.
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;

/// Largest stored (compressed) size a zstd chunk of `raw_len` decoded bytes
/// may have: the decoded size plus 1/128 plus 4 KiB. zstd's own worst case
/// (`ZSTD_compressBound`) is below this, so no real frame is refused, while
/// a reader can bound what it reads for a chunk from its header.
pub fn max_zstd_len(raw_len: u64) -> u64 {
    raw_len + raw_len / 128 + 4096
}

/// A chunk of page data ready to be written: raw pages, or one zstd frame.
/// Building one is pure, so the writer compresses on several threads and
/// hands finished chunks to the (single) encoder in any order.
#[derive(Clone, Debug)]
pub struct EncodedChunk<'a> {
    /// Where the pages go.
    pub meta: ChunkMeta,
    /// The stored bytes: the pages themselves, or the zstd frame.
    pub data: Cow<'a, [u8]>,
}

impl<'a> EncodedChunk<'a> {
    /// Raw pages (borrowed: nothing is copied).
    pub fn raw(mut meta: ChunkMeta, pages: &'a [u8]) -> Self {
        meta.encoding = ChunkEncoding::Raw;
        EncodedChunk {
            meta,
            data: Cow::Borrowed(pages),
        }
    }

    /// The pages compressed into one zstd frame at `level`.
    pub fn zstd(mut meta: ChunkMeta, pages: &[u8], level: i32) -> Result<EncodedChunk<'static>> {
        meta.encoding = ChunkEncoding::Zstd;
        let frame = compress_pages(pages, level)?;
        Ok(EncodedChunk {
            meta,
            data: Cow::Owned(frame),
        })
    }

    /// A zstd frame the caller compressed itself (with its own allocator).
    pub fn from_zstd_frame(mut meta: ChunkMeta, frame: Vec<u8>) -> EncodedChunk<'static> {
        meta.encoding = ChunkEncoding::Zstd;
        EncodedChunk {
            meta,
            data: Cow::Owned(frame),
        }
    }
}

/// Compresses pages into one zstd frame.
pub fn compress_pages(pages: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(pages, level).map_err(|e| Error::Io {
        offset: 0,
        source: e,
    })
}

/// Writes an image. Records may come in any order after the header, except
/// that a chunk must follow the region it belongs to; `finish` writes the
/// index and trailer.
pub struct Encoder<W: Write> {
    w: W,
    offset: u64,
    crc: crc32fast::Hasher,
    index: Vec<IndexEntry>,
    page_size: u64,
    /// (start, end) of every region written so far, in record order.
    regions: Vec<(u64, u64)>,
    /// The same, by start address, to refuse overlaps.
    region_map: BTreeMap<u64, u64>,
    /// Page ranges covered by chunks so far: start -> end.
    chunk_map: BTreeMap<u64, u64>,
    process_written: bool,
    /// SIGNALS, TIMERS, RLIMITS, PID_TABLE written so far (at most once each).
    once_written: Vec<RecordKind>,
    threads: u64,
    /// Format minor version in the preamble.
    minor: u16,
}

/// Pad bytes (a pad is shorter than the largest page size).
static ZEROS: [u8; 65536] = [0; 65536];

/// True when `[start, end)` overlaps a range of `map` (start -> end, the
/// ranges disjoint).
fn overlaps(map: &BTreeMap<u64, u64>, start: u64, end: u64) -> bool {
    map.range(..end)
        .next_back()
        .is_some_and(|(_, &e)| e > start)
}

impl<W: Write> Encoder<W> {
    /// Starts an image of format 1.0: writes the preamble and the HEADER
    /// record. A record that needs a newer minor is refused; see
    /// [`Encoder::with_minor`].
    pub fn new(w: W, header: &ImageHeader) -> Result<Self> {
        Self::with_minor(w, header, 0)
    }

    /// Starts an image of format 1.`minor` (at most [`crate::FORMAT_MINOR`]).
    /// The preamble comes first and the stream never seeks, so the caller
    /// says up front which minor its records need: the lowest one that can
    /// express them (spec §9.1, [`crate::minor_for_fds`]).
    pub fn with_minor(w: W, header: &ImageHeader, minor: u16) -> Result<Self> {
        if minor > crate::FORMAT_MINOR {
            return Err(Error::Usage(
                "format minor version newer than this encoder's",
            ));
        }
        let ps = header.page_size as u64;
        if !(4096..=65536).contains(&ps) || !ps.is_power_of_two() {
            return Err(Error::Usage(
                "page size must be a power of two from 4 KiB to 64 KiB",
            ));
        }
        let mut e = Encoder {
            w,
            offset: 0,
            crc: crc32fast::Hasher::new(),
            index: Vec::new(),
            page_size: ps,
            regions: Vec::new(),
            region_map: BTreeMap::new(),
            chunk_map: BTreeMap::new(),
            process_written: false,
            once_written: Vec::new(),
            threads: 0,
            minor,
        };
        e.put(&raw::to_bytes(&Preamble::of_minor(minor)))?;
        e.meta(RecordKind::Header, header)?;
        Ok(e)
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(|source| Error::Io {
            offset: self.offset,
            source,
        })?;
        self.crc.update(b);
        self.offset += b.len() as u64;
        Ok(())
    }

    fn record(&mut self, kind: RecordKind, payload: &[u8]) -> Result<()> {
        self.write_raw_record(kind.code(), kind.default_flags(), payload)
    }

    /// Writes a record as it is: used by `repack` to carry records it does
    /// not understand but that are safe to copy.
    pub fn write_raw_record(&mut self, kind: u16, flags: u16, payload: &[u8]) -> Result<()> {
        let h = RecordHeader::new(
            RecordKind::from_code(kind),
            flags,
            payload.len() as u64,
            crc32fast::hash(payload),
        );
        self.index.push(IndexEntry {
            offset: self.offset,
            kind,
            flags,
            reserved: 0,
        });
        self.put(&raw::to_bytes(&h))?;
        self.put(payload)
    }

    /// A metadata record. The payload is decoded back before it is
    /// written, so a value that breaks a limit of spec §8.1 (a string,
    /// path or XSAVE area too long, a payload over
    /// `MAX_METADATA_PAYLOAD`) is refused here, with the offset it would
    /// have had, rather than written as an image no reader accepts.
    fn meta<T: Wire>(&mut self, kind: RecordKind, v: &T) -> Result<()> {
        let payload = codec::encode(v);
        let base = self.offset + raw::RECORD_HEADER_LEN;
        if payload.len() as u64 > crate::decode::MAX_METADATA_PAYLOAD {
            return Err(Error::LimitExceeded {
                at: crate::error::At {
                    offset: self.offset,
                    record: Some(kind),
                },
                what: "payload length",
                value: payload.len() as u64,
                limit: crate::decode::MAX_METADATA_PAYLOAD,
            });
        }
        codec::decode::<T>(&payload, base, kind, self.minor)?;
        self.record(kind, &payload)
    }

    /// A record of a kind an image holds at most once.
    fn once<T: Wire>(&mut self, kind: RecordKind, v: &T) -> Result<()> {
        if self.once_written.contains(&kind) {
            return Err(Error::Usage(
                "SIGNALS, TIMERS, RLIMITS, PID_TABLE, ZOMBIES, SHARED_MEMORY and SYSV_IPC are written at most once",
            ));
        }
        self.meta(kind, v)?;
        self.once_written.push(kind);
        Ok(())
    }

    /// The PROCESS record (exactly once).
    pub fn process(&mut self, p: &Process) -> Result<()> {
        if self.process_written {
            return Err(Error::Usage("PROCESS written twice"));
        }
        self.process_written = true;
        self.meta(RecordKind::Process, p)
    }

    /// A THREAD record.
    pub fn thread(&mut self, t: &Thread) -> Result<()> {
        self.meta(RecordKind::Thread, t)?;
        self.threads += 1;
        Ok(())
    }

    /// A REGION record; returns its index for the chunks that follow.
    pub fn region(&mut self, r: &Region) -> Result<u32> {
        let (s, e) = (r.start.0, r.end.0);
        if s >= e || s % self.page_size != 0 || e % self.page_size != 0 {
            return Err(Error::Usage("region must be non-empty and page-aligned"));
        }
        if overlaps(&self.region_map, s, e) {
            return Err(Error::Usage("region overlaps a region written before"));
        }
        self.meta(RecordKind::Region, r)?;
        self.regions.push((s, e));
        self.region_map.insert(s, e);
        Ok((self.regions.len() - 1) as u32)
    }

    /// An FD record.
    pub fn fd(&mut self, f: &FdEntry) -> Result<()> {
        if f.kind.min_minor() > self.minor {
            return Err(Error::Usage(
                "a timerfd with settime flags or pending ticks needs format 1.1 (Encoder::with_minor)",
            ));
        }
        self.meta(RecordKind::Fd, f)
    }

    /// The SIGNALS record.
    pub fn signals(&mut self, s: &SignalState) -> Result<()> {
        self.once(RecordKind::Signals, s)
    }

    /// The TIMERS record.
    pub fn timers(&mut self, t: &Timers) -> Result<()> {
        self.once(RecordKind::Timers, t)
    }

    /// The RLIMITS record.
    pub fn rlimits(&mut self, r: &[Rlimit]) -> Result<()> {
        self.once(RecordKind::Rlimits, &r.to_vec())
    }

    /// The PID_TABLE record.
    pub fn pid_table(&mut self, p: &[PidEntry]) -> Result<()> {
        self.once(RecordKind::PidTable, &p.to_vec())
    }

    /// The ZOMBIES record (format 1.2, at most once): children that had
    /// exited but were not yet reaped.
    pub fn zombies(&mut self, z: &[Zombie]) -> Result<()> {
        if self.minor < 2 {
            return Err(Error::Usage(
                "a ZOMBIES record needs format 1.2 (Encoder::with_minor)",
            ));
        }
        self.once(RecordKind::Zombies, &z.to_vec())
    }

    /// The SHARED_MEMORY record (format 1.3, at most once): the shared
    /// regions that map shared-memory objects, each naming its REGION by
    /// its start.
    pub fn shared_memory(&mut self, m: &[SharedMapping]) -> Result<()> {
        if self.minor < 3 {
            return Err(Error::Usage(
                "a SHARED_MEMORY record needs format 1.3 (Encoder::with_minor)",
            ));
        }
        self.once(RecordKind::SharedMemory, &m.to_vec())
    }

    /// The SYSV_IPC record (format 1.3, at most once): the computation's
    /// System V IPC objects.
    pub fn sysv_ipc(&mut self, ipc: &SysvIpc) -> Result<()> {
        if self.minor < 3 {
            return Err(Error::Usage(
                "a SYSV_IPC record needs format 1.3 (Encoder::with_minor)",
            ));
        }
        self.once(RecordKind::SysvIpc, ipc)
    }

    /// A SOCKET_PEER record.
    pub fn socket_peer(&mut self, p: &SocketPeer) -> Result<()> {
        self.meta(RecordKind::SocketPeer, p)
    }

    /// A PAGES record. Raw data is placed at a page-aligned file offset.
    pub fn chunk(&mut self, c: &EncodedChunk<'_>) -> Result<()> {
        let m = &c.meta;
        let &(rs, re) = self
            .regions
            .get(m.region as usize)
            .ok_or(Error::Usage("chunk before its region"))?;
        let len = m.pages as u64 * self.page_size;
        if m.pages == 0
            || m.pages > MAX_CHUNK_PAGES
            || len > MAX_CHUNK_BYTES
            || !m.addr.0.is_multiple_of(self.page_size)
        {
            return Err(Error::Usage("chunk page count or address invalid"));
        }
        if m.addr.0 < rs || m.addr.0.checked_add(len).is_none_or(|end| end > re) {
            return Err(Error::Usage("chunk outside its region"));
        }
        if overlaps(&self.chunk_map, m.addr.0, m.addr.0 + len) {
            return Err(Error::Usage("chunk overlaps a chunk written before"));
        }
        let encoding = match m.encoding {
            ChunkEncoding::Raw => {
                if c.data.len() as u64 != len {
                    return Err(Error::Usage("raw chunk length is not pages * page size"));
                }
                0
            }
            ChunkEncoding::Zstd => {
                if c.data.len() as u64 > max_zstd_len(len) {
                    return Err(Error::Usage("zstd frame larger than max_zstd_len(pages)"));
                }
                if crate::decode::zstd_frame_problem(&c.data, len).is_some() {
                    return Err(Error::Usage(
                        "zstd data is not exactly one frame of the chunk's pages",
                    ));
                }
                1
            }
        };
        let data_start = self.offset + raw::RECORD_HEADER_LEN + raw::CHUNK_HEADER_LEN;
        let pad = if encoding == 0 {
            (self.page_size - data_start % self.page_size) % self.page_size
        } else {
            0
        };
        let h = ChunkHeader {
            region: m.region,
            pages: m.pages,
            addr: m.addr.0,
            encoding,
            reserved: [0; 3],
            pad: pad as u32,
            stored_len: c.data.len() as u64,
        };
        let hb = raw::to_bytes(&h);
        let zeros = &ZEROS[..pad as usize];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&hb);
        crc.update(zeros);
        crc.update(&c.data);
        let payload_len = hb.len() as u64 + pad + c.data.len() as u64;
        let kind = RecordKind::Pages;
        let rh = RecordHeader::new(kind, kind.default_flags(), payload_len, crc.finalize());
        self.index.push(IndexEntry {
            offset: self.offset,
            kind: kind.code(),
            flags: rh.flags,
            reserved: 0,
        });
        self.put(&raw::to_bytes(&rh))?;
        self.put(&hb)?;
        self.put(zeros)?;
        self.put(&c.data)?;
        self.chunk_map.insert(m.addr.0, m.addr.0 + len);
        Ok(())
    }

    /// Writes the INDEX record and the trailer; returns the writer.
    pub fn finish(mut self) -> Result<W> {
        if !self.process_written {
            return Err(Error::Usage("image has no PROCESS record"));
        }
        if self.threads == 0 {
            return Err(Error::Usage("image has no THREAD record"));
        }
        let index_offset = self.offset;
        let count = self.index.len() as u64;
        let mut payload = Vec::with_capacity(8 + self.index.len() * 16);
        payload.extend_from_slice(&count.to_le_bytes());
        for e in &self.index {
            payload.extend_from_slice(&raw::to_bytes(e));
        }
        let kind = RecordKind::Index;
        let h = RecordHeader::new(
            kind,
            kind.default_flags(),
            payload.len() as u64,
            crc32fast::hash(&payload),
        );
        self.put(&raw::to_bytes(&h))?;
        self.put(&payload)?;
        let t = Trailer::new(index_offset, count, self.crc.clone().finalize());
        let tb = raw::to_bytes(&t);
        self.w.write_all(&tb).map_err(|source| Error::Io {
            offset: self.offset,
            source,
        })?;
        self.offset += tb.len() as u64;
        self.w.flush().map_err(|source| Error::Io {
            offset: self.offset,
            source,
        })?;
        Ok(self.w)
    }
}
