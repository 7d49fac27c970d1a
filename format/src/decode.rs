//! What the three readers (mapped, stream, validate) share: checking the
//! fixed structures, decoding metadata records into a [`Metadata`], and
//! checking and decoding page-data chunks.

use crate::codec;
use crate::encode::MAX_CHUNK_PAGES;
use crate::error::{malformed, At, Error, Result};
use crate::model::*;
use crate::raw::{self, ChunkHeader, Preamble, RecordHeader, RecordKind};

/// Largest payload of a metadata record (anything but PAGES).
pub const MAX_METADATA_PAYLOAD: u64 = 256 << 20;

/// Largest PAGES payload: a full chunk of the largest page size, plus
/// room for zstd's worst-case expansion and the pad.
pub const MAX_PAGES_PAYLOAD: u64 =
    MAX_CHUNK_PAGES as u64 * 65536 + (MAX_CHUNK_PAGES as u64 * 65536) / 128 + (1 << 20);

/// Checks the 16-byte preamble; returns (major, minor).
pub(crate) fn check_preamble(b: &[u8]) -> Result<(u16, u16)> {
    let at = At {
        offset: 0,
        record: None,
    };
    if b.len() < raw::PREAMBLE_LEN as usize {
        if !raw::MAGIC.starts_with(&b[..b.len().min(8)]) {
            return Err(Error::BadMagic { at });
        }
        return Err(Error::Truncated {
            at,
            needed: raw::PREAMBLE_LEN - b.len() as u64,
            end: b.len() as u64,
        });
    }
    let p: Preamble = raw::from_bytes(&b[..16]).ok_or(Error::BadMagic { at })?;
    if p.magic != raw::MAGIC {
        return Err(Error::BadMagic { at });
    }
    let computed = crc32fast::hash(&b[..12]);
    if computed != p.crc {
        return Err(Error::Crc {
            at,
            what: "preamble",
            stored: p.crc,
            computed,
        });
    }
    if p.major != crate::FORMAT_MAJOR {
        return Err(Error::UnsupportedVersion {
            at,
            major: p.major,
            minor: p.minor,
        });
    }
    Ok((p.major, p.minor))
}

/// Checks a record header's CRC, reserved bits and payload limit.
pub(crate) fn check_record_header(b: &[u8], offset: u64) -> Result<RecordHeader> {
    let h: RecordHeader =
        raw::from_bytes(b).ok_or_else(|| malformed(offset, None, "short record header"))?;
    let computed = crc32fast::hash(&b[..20]);
    let kind = RecordKind::from_code(h.kind);
    let at = At {
        offset,
        record: Some(kind),
    };
    if computed != h.header_crc {
        // The kind itself may be what is corrupt: do not name it.
        return Err(Error::Crc {
            at: At {
                offset,
                record: None,
            },
            what: "record header",
            stored: h.header_crc,
            computed,
        });
    }
    if h.flags & !raw::FLAGS_KNOWN != 0 || h.reserved != 0 {
        return Err(malformed(
            offset,
            Some(kind),
            format!("reserved header bits set (flags {:#06x})", h.flags),
        ));
    }
    let limit = if kind == RecordKind::Pages {
        MAX_PAGES_PAYLOAD
    } else {
        MAX_METADATA_PAYLOAD
    };
    if h.payload_len > limit {
        return Err(Error::LimitExceeded {
            at,
            what: "payload length",
            value: h.payload_len,
            limit,
        });
    }
    if let RecordKind::Unknown(_) = kind {
        if h.flags & raw::FLAG_CRITICAL != 0 {
            return Err(Error::Unsupported {
                at,
                what: format!(
                    "critical record kind {:#06x} unknown to this reader",
                    h.kind
                ),
            });
        }
    }
    Ok(h)
}

/// Checks a payload's CRC.
pub(crate) fn check_payload_crc(h: &RecordHeader, payload: &[u8], offset: u64) -> Result<()> {
    let computed = crc32fast::hash(payload);
    if computed != h.payload_crc {
        let at = At {
            offset,
            record: Some(RecordKind::from_code(h.kind)),
        };
        return Err(Error::Crc {
            at,
            what: "payload",
            stored: h.payload_crc,
            computed,
        });
    }
    Ok(())
}

/// A chunk of page data located in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Where the pages go.
    pub meta: ChunkMeta,
    /// File offset of the PAGES record header.
    pub record_offset: u64,
    /// File offset of the stored data (page-aligned for raw chunks).
    pub data_offset: u64,
    /// Bytes of stored data.
    pub stored_len: u64,
    /// CRC-32 of the whole payload (chunk header, pad and data).
    pub payload_crc: u32,
    /// Payload length (chunk header + pad + data).
    pub payload_len: u64,
}

/// Everything but the page data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Format version of the image.
    pub version: (u16, u16),
    /// HEADER.
    pub header: Option<ImageHeader>,
    /// PROCESS.
    pub process: Option<Process>,
    /// THREAD records in order.
    pub threads: Vec<Thread>,
    /// REGION records in order (chunks refer to them by position).
    pub regions: Vec<Region>,
    /// FD records.
    pub fds: Vec<FdEntry>,
    /// SIGNALS.
    pub signals: Option<SignalState>,
    /// TIMERS.
    pub timers: Option<Timers>,
    /// RLIMITS.
    pub rlimits: Vec<Rlimit>,
    /// PID_TABLE.
    pub pid_table: Vec<PidEntry>,
    /// SOCKET_PEER records.
    pub socket_peers: Vec<SocketPeer>,
    /// PAGES records.
    pub chunks: Vec<ChunkRef>,
    /// Unknown non-critical records that were skipped: (offset, kind, flags).
    pub skipped: Vec<(u64, u16, u16)>,
}

impl Metadata {
    pub(crate) fn page_size(&self) -> u64 {
        self.header.as_ref().map_or(4096, |h| h.page_size as u64)
    }

    /// Decodes one metadata record into `self`, enforcing order rules.
    pub(crate) fn apply(&mut self, h: &RecordHeader, payload: &[u8], offset: u64) -> Result<()> {
        let kind = RecordKind::from_code(h.kind);
        let base = offset + raw::RECORD_HEADER_LEN;
        let dup = |what| malformed(offset, Some(kind), what);
        if self.header.is_none() && kind != RecordKind::Header {
            return Err(dup("the first record must be HEADER"));
        }
        match kind {
            RecordKind::Header => {
                if self.header.is_some() {
                    return Err(dup("second HEADER record"));
                }
                let hd: ImageHeader = codec::decode(payload, base, kind)?;
                let ps = hd.page_size as u64;
                if !(4096..=65536).contains(&ps) || !ps.is_power_of_two() {
                    return Err(malformed(
                        base,
                        Some(kind),
                        format!("page size {ps} not a power of two in 4K..64K"),
                    ));
                }
                self.header = Some(hd);
            }
            RecordKind::Process => {
                if self.process.is_some() {
                    return Err(dup("second PROCESS record"));
                }
                self.process = Some(codec::decode(payload, base, kind)?);
            }
            RecordKind::Thread => self.threads.push(codec::decode(payload, base, kind)?),
            RecordKind::Region => {
                let r: Region = codec::decode(payload, base, kind)?;
                let ps = self.page_size();
                if r.start.0 >= r.end.0 || r.start.0 % ps != 0 || r.end.0 % ps != 0 {
                    return Err(malformed(
                        base,
                        Some(kind),
                        format!(
                            "region {:#x}-{:#x} empty or not page-aligned",
                            r.start.0, r.end.0
                        ),
                    ));
                }
                self.regions.push(r);
            }
            RecordKind::Fd => self.fds.push(codec::decode(payload, base, kind)?),
            RecordKind::Signals => {
                if self.signals.is_some() {
                    return Err(dup("second SIGNALS record"));
                }
                self.signals = Some(codec::decode(payload, base, kind)?);
            }
            RecordKind::Timers => {
                if self.timers.is_some() {
                    return Err(dup("second TIMERS record"));
                }
                self.timers = Some(codec::decode(payload, base, kind)?);
            }
            RecordKind::Rlimits => self.rlimits = codec::decode(payload, base, kind)?,
            RecordKind::PidTable => self.pid_table = codec::decode(payload, base, kind)?,
            RecordKind::SocketPeer => self.socket_peers.push(codec::decode(payload, base, kind)?),
            RecordKind::Pages | RecordKind::Index => unreachable!("not metadata"),
            RecordKind::Unknown(code) => self.skipped.push((offset, code, h.flags)),
        }
        Ok(())
    }

    /// Checks a PAGES record's chunk header (the first 32 payload bytes).
    pub(crate) fn chunk(&self, h: &RecordHeader, head: &[u8], offset: u64) -> Result<ChunkRef> {
        let kind = Some(RecordKind::Pages);
        let base = offset + raw::RECORD_HEADER_LEN;
        if self.header.is_none() {
            return Err(malformed(offset, kind, "the first record must be HEADER"));
        }
        if h.payload_len < raw::CHUNK_HEADER_LEN || head.len() < raw::CHUNK_HEADER_LEN as usize {
            return Err(malformed(
                base,
                kind,
                "PAGES payload shorter than its chunk header",
            ));
        }
        let c: ChunkHeader =
            raw::from_bytes(&head[..32]).ok_or_else(|| malformed(base, kind, "chunk header"))?;
        let ps = self.page_size();
        let region = self.regions.get(c.region as usize).ok_or_else(|| {
            malformed(
                base,
                kind,
                format!(
                    "chunk refers to region {} but only {} precede it",
                    c.region,
                    self.regions.len()
                ),
            )
        })?;
        if c.pages == 0 || c.pages > MAX_CHUNK_PAGES {
            return Err(Error::LimitExceeded {
                at: At {
                    offset: base + 4,
                    record: kind,
                },
                what: "chunk page count",
                value: c.pages as u64,
                limit: MAX_CHUNK_PAGES as u64,
            });
        }
        let len = c.pages as u64 * ps;
        if c.addr % ps != 0
            || c.addr < region.start.0
            || c.addr.checked_add(len).is_none_or(|e| e > region.end.0)
        {
            return Err(malformed(
                base + 8,
                kind,
                format!(
                    "chunk {:#x}+{} pages lies outside region {} ({:#x}-{:#x})",
                    c.addr, c.pages, c.region, region.start.0, region.end.0
                ),
            ));
        }
        if c.reserved != [0; 3] {
            return Err(malformed(
                base + 17,
                kind,
                "chunk header reserved bytes not zero",
            ));
        }
        let encoding = match c.encoding {
            0 => ChunkEncoding::Raw,
            1 => ChunkEncoding::Zstd,
            e => {
                return Err(Error::Unsupported {
                    at: At {
                        offset: base + 16,
                        record: kind,
                    },
                    what: format!("page data encoding {e}"),
                })
            }
        };
        if c.pad as u64 >= ps
            || raw::CHUNK_HEADER_LEN
                .checked_add(c.pad as u64)
                .and_then(|v| v.checked_add(c.stored_len))
                != Some(h.payload_len)
        {
            return Err(malformed(
                base + 20,
                kind,
                "chunk pad + stored length do not add up to the payload length",
            ));
        }
        let data_offset = base + raw::CHUNK_HEADER_LEN + c.pad as u64;
        if encoding == ChunkEncoding::Raw && (c.stored_len != len || data_offset % ps != 0) {
            return Err(malformed(
                base + 24,
                kind,
                "raw chunk not exactly its pages at a page-aligned offset",
            ));
        }
        Ok(ChunkRef {
            meta: ChunkMeta {
                region: c.region,
                addr: Addr(c.addr),
                pages: c.pages,
                encoding,
            },
            record_offset: offset,
            data_offset,
            stored_len: c.stored_len,
            payload_crc: h.payload_crc,
            payload_len: h.payload_len,
        })
    }

    /// Checks that the image is complete and consistent as a whole.
    pub(crate) fn check_complete(&self, end: u64) -> Result<()> {
        let at = At {
            offset: end,
            record: None,
        };
        let missing = |what: &str| Error::Malformed {
            at,
            what: format!("image has no {what} record"),
        };
        if self.header.is_none() {
            return Err(missing("HEADER"));
        }
        if self.process.is_none() {
            return Err(missing("PROCESS"));
        }
        if self.threads.is_empty() {
            return Err(missing("THREAD"));
        }
        let mut regions: Vec<&Region> = self.regions.iter().collect();
        regions.sort_by_key(|r| r.start);
        for w in regions.windows(2) {
            if w[1].start.0 < w[0].end.0 {
                return Err(Error::Malformed {
                    at,
                    what: format!(
                        "regions {:#x}-{:#x} and {:#x}-{:#x} overlap",
                        w[0].start.0, w[0].end.0, w[1].start.0, w[1].end.0
                    ),
                });
            }
        }
        let ps = self.page_size();
        let mut chunks: Vec<&ChunkRef> = self.chunks.iter().collect();
        chunks.sort_by_key(|c| c.meta.addr);
        for w in chunks.windows(2) {
            if w[1].meta.addr.0 < w[0].meta.addr.0 + w[0].meta.pages as u64 * ps {
                return Err(Error::Malformed {
                    at: At {
                        offset: w[1].record_offset,
                        record: Some(RecordKind::Pages),
                    },
                    what: format!(
                        "chunk at {:#x} overlaps the chunk at {:#x} (record at {:#x})",
                        w[1].meta.addr.0, w[0].meta.addr.0, w[0].record_offset
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Decodes a chunk's stored data (already CRC-checked) into `out`, which
/// must be exactly its pages long.
pub(crate) fn decode_chunk_data(c: &ChunkRef, data: &[u8], out: &mut [u8]) -> Result<()> {
    let at = At {
        offset: c.data_offset,
        record: Some(RecordKind::Pages),
    };
    match c.meta.encoding {
        ChunkEncoding::Raw => {
            if data.len() != out.len() {
                return Err(Error::Usage("output buffer is not the chunk's size"));
            }
            out.copy_from_slice(data);
        }
        ChunkEncoding::Zstd => {
            // Decompress into the caller's fixed buffer: the frame's own
            // content-size claim is never trusted for allocation.
            let mut d = zstd::bulk::Decompressor::new().map_err(|e| Error::Decompress {
                at,
                what: e.to_string(),
            })?;
            let n = d
                .decompress_to_buffer(data, out)
                .map_err(|e| Error::Decompress {
                    at,
                    what: e.to_string(),
                })?;
            if n != out.len() {
                return Err(Error::Decompress {
                    at,
                    what: format!("{n} bytes decompressed, the chunk holds {}", out.len()),
                });
            }
        }
    }
    Ok(())
}

/// Checks the payload's pad bytes are zero.
pub(crate) fn check_pad(c: &ChunkRef, payload: &[u8]) -> Result<()> {
    let pad = &payload[raw::CHUNK_HEADER_LEN as usize
        ..(c.data_offset - c.record_offset - raw::RECORD_HEADER_LEN) as usize];
    if pad.iter().any(|&b| b != 0) {
        return Err(malformed(
            c.record_offset + raw::RECORD_HEADER_LEN + raw::CHUNK_HEADER_LEN,
            Some(RecordKind::Pages),
            "pad bytes not zero",
        ));
    }
    Ok(())
}
