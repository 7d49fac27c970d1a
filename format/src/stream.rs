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

/// What the stream yields, in image order.
#[derive(Clone, Debug, PartialEq, Eq)]
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
pub struct StreamDecoder<R: Read> {
    r: R,
    offset: u64,
    crc: crc32fast::Hasher,
    meta: Metadata,
    seen: Vec<IndexEntry>,
    started: bool,
    done: bool,
    decode_pages: bool,
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
        }
    }

    /// Check page data (CRC) without decompressing it or returning it.
    pub fn skip_page_data(mut self) -> Self {
        self.decode_pages = false;
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

    /// Reads exactly `n` bytes, growing the buffer only as bytes arrive.
    fn read_n(&mut self, n: u64, record: Option<RecordKind>, at: u64) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(n.min(1 << 20) as usize);
        let got = (&mut self.r)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(|source| Error::Io {
                offset: self.offset,
                source,
            })? as u64;
        self.crc.update(&buf);
        self.offset += got;
        if got < n {
            return Err(Error::Truncated {
                at: At { offset: at, record },
                needed: n - got,
                end: self.offset,
            });
        }
        Ok(buf)
    }

    /// The next item; `Ok(None)` after [`Item::End`].
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            let p = self
                .read_n(raw::PREAMBLE_LEN, None, 0)
                .map_err(|e| match e {
                    Error::Truncated { end, .. } if end < 8 => Error::BadMagic {
                        at: At {
                            offset: 0,
                            record: None,
                        },
                    },
                    e => e,
                });
            self.meta.version = decode::check_preamble(&p?)?;
        }
        let off = self.offset;
        let hb = self.read_n(raw::RECORD_HEADER_LEN, None, off)?;
        let h = decode::check_record_header(&hb, off)?;
        let kind = RecordKind::from_code(h.kind);
        if kind == RecordKind::Index {
            let payload = self.read_n(h.payload_len, Some(kind), off)?;
            decode::check_payload_crc(&h, &payload, off)?;
            self.finish(off, &payload)?;
            self.done = true;
            return Ok(Some(Item::End));
        }
        self.seen.push(IndexEntry {
            offset: off,
            kind: h.kind,
            flags: h.flags,
            reserved: 0,
        });
        if kind == RecordKind::Pages {
            let payload = self.read_n(h.payload_len, Some(kind), off)?;
            let c = self.meta.chunk(&h, &payload, off)?;
            decode::check_payload_crc(&h, &payload, off)?;
            decode::check_pad(&c, &payload)?;
            let mut pages = Vec::new();
            if self.decode_pages {
                pages = vec![0u8; (c.meta.pages as u64 * self.meta.page_size()) as usize];
                let data = &payload[(c.data_offset - off - raw::RECORD_HEADER_LEN) as usize..];
                decode::decode_chunk_data(&c, data, &mut pages)?;
            }
            self.meta.chunks.push(c);
            return Ok(Some(Item::Chunk { chunk: c, pages }));
        }
        let payload = self.read_n(h.payload_len, Some(kind), off)?;
        decode::check_payload_crc(&h, &payload, off)?;
        self.meta.apply(&h, &payload, off)?;
        let m = &self.meta;
        Ok(Some(match kind {
            RecordKind::Header => Item::Header(m.header.clone().expect("just set")),
            RecordKind::Process => Item::Process(m.process.clone().expect("just set")),
            RecordKind::Thread => Item::Thread(m.threads.last().cloned().expect("just pushed")),
            RecordKind::Region => Item::Region(m.regions.last().cloned().expect("just pushed")),
            RecordKind::Fd => Item::Fd(m.fds.last().cloned().expect("just pushed")),
            RecordKind::Signals => Item::Signals(m.signals.clone().expect("just set")),
            RecordKind::Timers => Item::Timers(m.timers.clone().expect("just set")),
            RecordKind::Rlimits => Item::Rlimits(m.rlimits.clone()),
            RecordKind::PidTable => Item::PidTable(m.pid_table.clone()),
            RecordKind::SocketPeer => {
                Item::SocketPeer(m.socket_peers.last().cloned().expect("just pushed"))
            }
            RecordKind::Unknown(code) => Item::Unknown {
                offset: off,
                kind: code,
                flags: h.flags,
            },
            RecordKind::Pages | RecordKind::Index => unreachable!("handled above"),
        }))
    }

    /// Checks the index against the records seen, then the trailer.
    fn finish(&mut self, index_offset: u64, payload: &[u8]) -> Result<()> {
        let kind = Some(RecordKind::Index);
        let pstart = index_offset + raw::RECORD_HEADER_LEN;
        let count = payload
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let expected = 8 + self.seen.len() as u64 * raw::INDEX_ENTRY_LEN;
        if count != Some(self.seen.len() as u64) || payload.len() as u64 != expected {
            return Err(malformed(
                pstart,
                kind,
                format!(
                    "INDEX lists {count:?} records, the image has {}",
                    self.seen.len()
                ),
            ));
        }
        for (i, (e, seen)) in payload[8..].chunks_exact(16).zip(&self.seen).enumerate() {
            let e: IndexEntry =
                raw::from_bytes(e).ok_or_else(|| malformed(pstart, kind, "index entry"))?;
            if e != *seen {
                return Err(malformed(
                    pstart + 8 + i as u64 * 16,
                    kind,
                    format!(
                        "index entry {i} does not match the record at {:#x}",
                        seen.offset
                    ),
                ));
            }
        }
        let image_crc = self.crc.clone().finalize();
        let toff = self.offset;
        let tb = self.read_n(raw::TRAILER_LEN, None, toff)?;
        let t: Trailer = raw::from_bytes(&tb).ok_or_else(|| malformed(toff, None, "trailer"))?;
        let at = At {
            offset: toff,
            record: None,
        };
        if t.magic != raw::TRAILER_MAGIC {
            return Err(malformed(toff, None, "trailer magic"));
        }
        let computed = crc32fast::hash(&tb[..28]);
        if computed != t.trailer_crc {
            return Err(Error::Crc {
                at,
                what: "trailer",
                stored: t.trailer_crc,
                computed,
            });
        }
        if t.index_offset != index_offset || t.record_count != self.seen.len() as u64 {
            return Err(malformed(toff, None, "trailer disagrees with the index"));
        }
        if t.image_crc != image_crc {
            return Err(Error::Crc {
                at,
                what: "image",
                stored: t.image_crc,
                computed: image_crc,
            });
        }
        self.meta.check_complete(index_offset)?;
        // Anything after the trailer is not part of the image.
        let mut extra = [0u8; 1];
        let n = self.r.read(&mut extra).map_err(|source| Error::Io {
            offset: self.offset,
            source,
        })?;
        if n != 0 {
            return Err(malformed(self.offset, None, "bytes after the trailer"));
        }
        Ok(())
    }
}

/// Decodes a whole image from a reader into its metadata and pages, for
/// tests and small images: (metadata, [(chunk, pages)]).
pub fn decode_all<R: Read>(r: R) -> Result<(Metadata, Vec<(ChunkRef, Vec<u8>)>)> {
    let mut d = StreamDecoder::new(r);
    let mut pages = Vec::new();
    while let Some(item) = d.next_item()? {
        if let Item::Chunk { chunk, pages: p } = item {
            pages.push((chunk, p));
        }
    }
    Ok((d.meta, pages))
}
