//! One-pass decoding from any `Read` (a pipe, ssh, object storage).
//!
//! Validates as it goes: every CRC, every structural rule, and at the end
//! the index against the records actually seen and the whole-image CRC.
//! Memory stays proportional to what has really arrived: a payload is read
//! in bounded steps, never allocated from its announced length.

use crate::decode::{self, ChunkRef, Metadata};
use crate::error::{malformed, At, Error, Result};
use crate::model::*;
use crate::raw::{self, IndexEntry, RecordKind, Trailer};
use std::io::Read;

/// What the stream yields, in image order. Non-exhaustive: a minor version
/// that adds a record kind adds an item.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    /// HEADER.
    Header(ImageHeader),
    /// PROCESS.
    Process(Process),
    /// A THREAD.
    Thread(Thread),
    /// A REGION.
    Region(Region),
    /// A PAGES chunk, with its pages decoded (empty when data is skipped).
    Chunk {
        /// Where the chunk is and where its pages go.
        chunk: ChunkRef,
        /// The decoded pages.
        pages: Vec<u8>,
    },
    /// An FD.
    Fd(FdEntry),
    /// SIGNALS.
    Signals(SignalState),
    /// TIMERS.
    Timers(Timers),
    /// RLIMITS.
    Rlimits(Vec<Rlimit>),
    /// PID_TABLE.
    PidTable(Vec<PidEntry>),
    /// A SOCKET_PEER.
    SocketPeer(SocketPeer),
    /// The ZOMBIES record (format 1.2).
    Zombies(Vec<Zombie>),
    /// The SHARED_MEMORY record (format 1.3).
    SharedMemory(Vec<SharedMapping>),
    /// The SYSV_IPC record (format 1.3).
    SysvIpc(SysvIpc),
    /// An unknown non-critical record, skipped.
    Unknown {
        /// Its offset.
        offset: u64,
        /// Its kind code.
        kind: u16,
        /// Its flags.
        flags: u16,
    },
    /// The index and trailer were read and agree with the image.
    End,
}

/// Decodes an image in one pass.
///
/// [`StreamDecoder::next_item`] stops at the first problem: after it has
/// returned an error, it returns `Ok(None)`. [`crate::validate_reader`]
/// drives the same decoder but carries on past every problem that leaves
/// the record framing intact, to list them all.
pub struct StreamDecoder<R: Read> {
    r: R,
    offset: u64,
    crc: crc32fast::Hasher,
    meta: Metadata,
    seen: Vec<IndexEntry>,
    started: bool,
    done: bool,
    decode_pages: bool,
    /// Decode page data to check it, but return no pages (validation).
    check_only: bool,
    /// Reused output buffer in `check_only` mode.
    scratch: Vec<u8>,
    /// Problems of the current step that leave the framing intact.
    problems: Vec<Error>,
}

impl<R: Read> StreamDecoder<R> {
    /// A decoder that decodes page data.
    pub fn new(r: R) -> Self {
        StreamDecoder {
            r,
            offset: 0,
            crc: crc32fast::Hasher::new(),
            meta: Metadata::default(),
            seen: Vec::new(),
            started: false,
            done: false,
            decode_pages: true,
            check_only: false,
            scratch: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Check page data (CRC) without decompressing it or returning it.
    pub fn skip_page_data(mut self) -> Self {
        self.decode_pages = false;
        self
    }

    /// Decompress page data to check it, but return chunks with no pages.
    pub(crate) fn check_page_data_only(mut self) -> Self {
        self.check_only = true;
        self
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Metadata decoded so far (chunks as references).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Records read so far (the INDEX excluded).
    pub fn records_seen(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Reads up to `n` bytes (fewer only at the end of the input), growing
    /// the buffer only as bytes arrive.
    fn read_upto(&mut self, n: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(n.min(64 << 10) as usize);
        let r = (&mut self.r).take(n).read_to_end(&mut buf);
        self.crc.update(&buf);
        self.offset += buf.len() as u64;
        r.map_err(|source| Error::Io {
            offset: self.offset,
            source,
        })?;
        Ok(buf)
    }

    /// Reads exactly `n` bytes, growing the buffer only as bytes arrive.
    fn read_n(&mut self, n: u64, record: Option<RecordKind>, at: u64) -> Result<Vec<u8>> {
        let buf = self.read_upto(n)?;
        let got = buf.len() as u64;
        if got < n {
            return Err(Error::Truncated {
                at: At { offset: at, record },
                needed: n - got,
                end: self.offset,
            });
        }
        Ok(buf)
    }

    /// The next item; `Ok(None)` after [`Item::End`] or after an error.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        let r = self.step();
        if let Some(e) = std::mem::take(&mut self.problems).into_iter().next() {
            self.done = true;
            return Err(e);
        }
        match r {
            Ok(Some(Some(item))) => Ok(Some(item)),
            // A record with no item and no problem cannot happen; read on.
            Ok(Some(None)) => self.next_item(),
            Ok(None) => Ok(None),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// One record. `Err`: the framing is lost (truncation, a broken record
    /// header, I/O), nothing more can be read. `Ok(None)`: the image ended.
    /// `Ok(Some(None))`: the record had problems, pushed to `problems`; the
    /// next record can still be read.
    pub(crate) fn step(&mut self) -> Result<Option<Option<Item>>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            // A short preamble is "truncated" when what there is starts
            // like the magic, "not an image" otherwise.
            let p = self.read_upto(raw::PREAMBLE_LEN)?;
            self.meta.version = decode::check_preamble(&p)?;
        }
        let off = self.offset;
        let hb = self.read_n(raw::RECORD_HEADER_LEN, None, off)?;
        let h = decode::check_record_frame(&hb, off)?;
        let kind = RecordKind::from_code(h.kind);
        if kind == RecordKind::Index {
            let payload = self.read_n(h.payload_len, Some(kind), off)?;
            self.done = true;
            if let Err(e) = decode::check_record_semantics(&h, off) {
                self.problems.push(e);
            }
            match decode::check_payload_crc(&h, &payload, off) {
                Ok(()) => self.check_index(off, &payload),
                Err(e) => self.problems.push(e),
            }
            self.finish(off)?;
            return Ok(Some(if self.problems.is_empty() {
                Some(Item::End)
            } else {
                None
            }));
        }
        self.seen.push(IndexEntry {
            offset: off,
            kind: h.kind,
            flags: h.flags,
            reserved: 0,
        });
        if let Err(e) = decode::check_record_semantics(&h, off) {
            self.read_n(h.payload_len, Some(kind), off)?;
            self.meta.count_unapplied();
            self.problems.push(e);
            return Ok(Some(None));
        }
        if kind == RecordKind::Pages {
            return self.pages(&h, off);
        }
        let payload = self.read_n(h.payload_len, Some(kind), off)?;
        if let Err(e) = decode::check_payload_crc(&h, &payload, off) {
            self.meta.count_unapplied();
            self.problems.push(e);
            return Ok(Some(None));
        }
        if let Err(e) = self.meta.apply(&h, &payload, off) {
            self.problems.push(e);
            return Ok(Some(None));
        }
        let m = &self.meta;
        let item = match kind {
            RecordKind::Header => m.header.clone().map(Item::Header),
            RecordKind::Process => m.process.clone().map(Item::Process),
            RecordKind::Thread => m.threads.last().cloned().map(Item::Thread),
            RecordKind::Region => m.regions.last().cloned().map(Item::Region),
            RecordKind::Fd => m.fds.last().cloned().map(Item::Fd),
            RecordKind::Signals => m.signals.clone().map(Item::Signals),
            RecordKind::Timers => m.timers.clone().map(Item::Timers),
            RecordKind::Rlimits => Some(Item::Rlimits(m.rlimits.clone())),
            RecordKind::PidTable => Some(Item::PidTable(m.pid_table.clone())),
            RecordKind::SocketPeer => m.socket_peers.last().cloned().map(Item::SocketPeer),
            RecordKind::Zombies => Some(Item::Zombies(m.zombies.clone())),
            RecordKind::SharedMemory => Some(Item::SharedMemory(m.shared_memory.clone())),
            RecordKind::SysvIpc => m.sysv_ipc.clone().map(Item::SysvIpc),
            RecordKind::Unknown(code) => Some(Item::Unknown {
                offset: off,
                kind: code,
                flags: h.flags,
            }),
            // Both handled above; never reached.
            RecordKind::Pages | RecordKind::Index => None,
        };
        Ok(Some(item))
    }

    /// A PAGES record: its chunk header is read and checked first, so the
    /// rest is read only once its length is known to fit the chunk.
    fn pages(&mut self, h: &raw::RecordHeader, off: u64) -> Result<Option<Option<Item>>> {
        let kind = Some(RecordKind::Pages);
        let head_len = h.payload_len.min(raw::CHUNK_HEADER_LEN);
        let head = self.read_n(head_len, kind, off)?;
        let chunk = self.meta.chunk(h, &head, off);
        let rest = self.read_n(h.payload_len - head_len, kind, off)?;
        let c = match chunk {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(e);
                return Ok(Some(None));
            }
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.update(&rest);
        let computed = crc.finalize();
        if computed != h.payload_crc {
            self.problems.push(Error::Crc {
                at: At {
                    offset: off,
                    record: kind,
                },
                what: "payload",
                stored: h.payload_crc,
                computed,
            });
            return Ok(Some(None));
        }
        let pad = (c.data_offset - off - raw::RECORD_HEADER_LEN - raw::CHUNK_HEADER_LEN) as usize;
        if rest[..pad].iter().any(|&b| b != 0) {
            self.problems.push(decode::pad_error(&c));
            return Ok(Some(None));
        }
        let data = &rest[pad..];
        let n = (c.meta.pages as u64 * self.meta.page_size()) as usize;
        let mut pages = Vec::new();
        if self.decode_pages && c.meta.encoding == ChunkEncoding::Zstd {
            if let Err(e) = decode::check_zstd_frame(&c, data, n as u64) {
                self.problems.push(e);
                return Ok(Some(None));
            }
        }
        if self.decode_pages {
            let out = if self.check_only {
                self.scratch.resize(n, 0);
                &mut self.scratch[..]
            } else {
                pages = vec![0u8; n];
                &mut pages[..]
            };
            if let Err(e) = decode::decode_chunk_data(&c, data, out) {
                self.problems.push(e);
                return Ok(Some(None));
            }
        }
        self.meta.chunks.push(c);
        Ok(Some(Some(Item::Chunk { chunk: c, pages })))
    }

    /// Checks the INDEX payload against the records seen.
    fn check_index(&mut self, index_offset: u64, payload: &[u8]) {
        let kind = Some(RecordKind::Index);
        let pstart = index_offset + raw::RECORD_HEADER_LEN;
        let count = payload
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let expected = 8 + self.seen.len() as u64 * raw::INDEX_ENTRY_LEN;
        if count != Some(self.seen.len() as u64) || payload.len() as u64 != expected {
            self.problems.push(malformed(
                pstart,
                kind,
                format!(
                    "INDEX lists {} records in {} bytes, the image has {}",
                    count.map_or("no".to_string(), |c| c.to_string()),
                    payload.len(),
                    self.seen.len()
                ),
            ));
            return;
        }
        for (i, (e, seen)) in payload[8..].chunks_exact(16).zip(&self.seen).enumerate() {
            let e: Option<IndexEntry> = raw::from_bytes(e);
            if e.as_ref() != Some(seen) {
                self.problems.push(malformed(
                    pstart + 8 + i as u64 * 16,
                    kind,
                    format!(
                        "index entry {i} does not match the record at {:#x}",
                        seen.offset
                    ),
                ));
            }
        }
    }

    /// Reads and checks the trailer, the image CRC and the image as a
    /// whole. `Err` only when the trailer is cut short or unreadable.
    fn finish(&mut self, index_offset: u64) -> Result<()> {
        let image_crc = self.crc.clone().finalize();
        let toff = self.offset;
        let tb = self.read_n(raw::TRAILER_LEN, None, toff)?;
        let at = At {
            offset: toff,
            record: None,
        };
        let t: Option<Trailer> = raw::from_bytes(&tb);
        let computed = crc32fast::hash(&tb[..28]);
        match t {
            Some(t) if t.magic != raw::TRAILER_MAGIC => {
                self.problems.push(malformed(toff, None, "trailer magic"));
            }
            Some(t) if t.trailer_crc != computed => self.problems.push(Error::Crc {
                at,
                what: "trailer",
                stored: t.trailer_crc,
                computed,
            }),
            Some(t) => {
                if t.index_offset != index_offset || t.record_count != self.seen.len() as u64 {
                    self.problems.push(malformed(
                        toff,
                        None,
                        format!(
                            "trailer gives INDEX at {:#x} with {} records; \
                             it is at {index_offset:#x} after {} records",
                            t.index_offset,
                            t.record_count,
                            self.seen.len()
                        ),
                    ));
                }
                if t.image_crc != image_crc {
                    self.problems.push(Error::Crc {
                        at,
                        what: "image",
                        stored: t.image_crc,
                        computed: image_crc,
                    });
                }
            }
            None => self.problems.push(malformed(toff, None, "trailer")),
        }
        let complete = self.meta.completeness_problems(index_offset);
        self.problems.extend(complete);
        // Anything after the trailer is not part of the image.
        let mut extra = [0u8; 1];
        let n = loop {
            match self.r.read(&mut extra) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => {
                    break r.map_err(|source| Error::Io {
                        offset: self.offset,
                        source,
                    })?
                }
            }
        };
        if n != 0 {
            self.problems
                .push(malformed(self.offset, None, "bytes after the trailer"));
        }
        Ok(())
    }

    /// Takes the problems found so far (validation).
    pub(crate) fn take_problems(&mut self) -> Vec<Error> {
        std::mem::take(&mut self.problems)
    }
}

/// Chunks with their decoded pages, in image order.
pub type ChunkPages = Vec<(ChunkRef, Vec<u8>)>;

/// Decodes a whole image from a reader into its metadata and pages, for
/// tests and small images: (metadata, [(chunk, pages)]).
pub fn decode_all<R: Read>(r: R) -> Result<(Metadata, ChunkPages)> {
    let mut d = StreamDecoder::new(r);
    let mut pages = Vec::new();
    while let Some(item) = d.next_item()? {
        if let Item::Chunk { chunk, pages: p } = item {
            pages.push((chunk, p));
        }
    }
    Ok((d.meta, pages))
}
