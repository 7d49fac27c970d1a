//! What the three readers (mapped, stream, validate) share: checking the
//! fixed structures, decoding metadata records into a [`Metadata`], and
//! checking and decoding page-data chunks.

use crate::codec;
use crate::encode::{max_zstd_len, MAX_CHUNK_BYTES, MAX_CHUNK_PAGES};
use crate::error::{malformed, At, Error, Result};
use crate::model::*;
use crate::raw::{self, ChunkHeader, Preamble, RecordHeader, RecordKind};

/// Largest payload of a metadata record (anything but PAGES).
pub const MAX_METADATA_PAYLOAD: u64 = 256 << 20;

/// Largest PAGES payload: the chunk header, the largest pad (below the
/// largest page size) and a zstd frame of the largest chunk.
pub const MAX_PAGES_PAYLOAD: u64 =
    raw::CHUNK_HEADER_LEN + 65536 + MAX_CHUNK_BYTES + MAX_CHUNK_BYTES / 128 + 4096;

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

/// Checks a record header completely: [`check_record_frame`] then
/// [`check_record_semantics`].
pub(crate) fn check_record_header(b: &[u8], offset: u64) -> Result<RecordHeader> {
    let h = check_record_frame(b, offset)?;
    check_record_semantics(&h, offset)?;
    Ok(h)
}

/// Checks what the framing depends on: the header CRC (so the payload
/// length can be trusted) and the payload length limit. A failure here
/// means the reader cannot tell where the next record starts.
pub(crate) fn check_record_frame(b: &[u8], offset: u64) -> Result<RecordHeader> {
    let h: RecordHeader =
        raw::from_bytes(b).ok_or_else(|| malformed(offset, None, "short record header"))?;
    let computed = crc32fast::hash(&b[..20]);
    let kind = RecordKind::from_code(h.kind);
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
    let limit = if kind == RecordKind::Pages {
        MAX_PAGES_PAYLOAD
    } else {
        MAX_METADATA_PAYLOAD
    };
    if h.payload_len > limit {
        return Err(Error::LimitExceeded {
            at: At {
                offset,
                record: Some(kind),
            },
            what: "payload length",
            value: h.payload_len,
            limit,
        });
    }
    Ok(h)
}

/// Checks the rest of a (framing-checked) header: reserved bits are zero
/// and the kind is known or not critical. A failure here leaves the
/// framing intact: the next record is right after this payload.
pub(crate) fn check_record_semantics(h: &RecordHeader, offset: u64) -> Result<()> {
    let kind = RecordKind::from_code(h.kind);
    let at = At {
        offset,
        record: Some(kind),
    };
    if h.flags & !raw::FLAGS_KNOWN != 0 || h.reserved != 0 {
        return Err(malformed(
            offset,
            Some(kind),
            format!(
                "reserved header bits set (flags {:#06x}, reserved {:#x})",
                h.flags, h.reserved
            ),
        ));
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
    Ok(())
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
    /// ZOMBIES (format 1.2).
    pub zombies: Vec<Zombie>,
    /// SHARED_MEMORY (format 1.3).
    pub shared_memory: Vec<SharedMapping>,
    /// SYSV_IPC (format 1.3).
    pub sysv_ipc: Option<SysvIpc>,
    /// PAGES records.
    pub chunks: Vec<ChunkRef>,
    /// Unknown non-critical records that were skipped: (offset, kind, flags).
    pub skipped: Vec<(u64, u16, u16)>,
    /// Records seen so far (applied or not), for the first-record rule.
    pub(crate) records: u64,
    /// Once-only kinds seen so far, one bit per kind code.
    pub(crate) once: u32,
}

impl Metadata {
    pub(crate) fn page_size(&self) -> u64 {
        self.header.as_ref().map_or(4096, |h| h.page_size as u64)
    }

    /// Counts a record the caller could not apply (its payload CRC failed),
    /// so the records after it are not taken for the first one.
    pub(crate) fn count_unapplied(&mut self) {
        self.records += 1;
    }

    /// Counts a record and enforces the first-record rule: the image's first
    /// record is its HEADER. Reported once, at the first record; a HEADER
    /// missing altogether is reported by the completeness check.
    fn first_record_rule(&mut self, kind: RecordKind, offset: u64) -> Result<()> {
        self.records += 1;
        if self.records == 1 && kind != RecordKind::Header {
            return Err(malformed(
                offset,
                Some(kind),
                "the first record must be HEADER",
            ));
        }
        Ok(())
    }

    /// Enforces "at most once" for HEADER, PROCESS, SIGNALS, TIMERS,
    /// RLIMITS, PID_TABLE, ZOMBIES, SHARED_MEMORY and SYSV_IPC.
    fn once(&mut self, kind: RecordKind, offset: u64) -> Result<()> {
        let bit = 1u32 << (kind.code() & 31);
        if self.once & bit != 0 {
            return Err(malformed(
                offset,
                Some(kind),
                format!("second {kind} record (at most one is allowed)"),
            ));
        }
        self.once |= bit;
        Ok(())
    }

    /// Decodes a record payload. Trailing bytes after the known fields are
    /// an error, except in an image of a newer minor version: minor
    /// versions may append fields at the end of a record's payload, and
    /// an older reader skips them.
    fn decode<T: codec::Wire>(&self, payload: &[u8], base: u64, kind: RecordKind) -> Result<T> {
        if self.version.1 > crate::FORMAT_MINOR {
            codec::decode_prefix(payload, base, kind, self.version.1)
        } else {
            codec::decode(payload, base, kind, self.version.1)
        }
    }

    /// Decodes one metadata record into `self`, enforcing order rules.
    pub(crate) fn apply(&mut self, h: &RecordHeader, payload: &[u8], offset: u64) -> Result<()> {
        let kind = RecordKind::from_code(h.kind);
        let base = offset + raw::RECORD_HEADER_LEN;
        self.first_record_rule(kind, offset)?;
        if matches!(
            kind,
            RecordKind::Header
                | RecordKind::Process
                | RecordKind::Signals
                | RecordKind::Timers
                | RecordKind::Rlimits
                | RecordKind::PidTable
                | RecordKind::Zombies
                | RecordKind::SharedMemory
                | RecordKind::SysvIpc
        ) {
            self.once(kind, offset)?;
        }
        match kind {
            RecordKind::Header => {
                let hd: ImageHeader = self.decode(payload, base, kind)?;
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
            RecordKind::Process => self.process = Some(self.decode(payload, base, kind)?),
            RecordKind::Thread => self.threads.push(self.decode(payload, base, kind)?),
            RecordKind::Region => {
                let r: Region = self.decode(payload, base, kind)?;
                let ps = self.page_size();
                if r.start.0 >= r.end.0
                    || !r.start.0.is_multiple_of(ps)
                    || !r.end.0.is_multiple_of(ps)
                {
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
            RecordKind::Fd => self.fds.push(self.decode(payload, base, kind)?),
            RecordKind::Signals => self.signals = Some(self.decode(payload, base, kind)?),
            RecordKind::Timers => self.timers = Some(self.decode(payload, base, kind)?),
            RecordKind::Rlimits => self.rlimits = self.decode(payload, base, kind)?,
            RecordKind::PidTable => self.pid_table = self.decode(payload, base, kind)?,
            RecordKind::SocketPeer => self.socket_peers.push(self.decode(payload, base, kind)?),
            RecordKind::Zombies => {
                if self.version.1 < 2 {
                    return Err(malformed(
                        offset,
                        Some(kind),
                        format!("ZOMBIES in a 1.{} image (it needs 1.2)", self.version.1),
                    ));
                }
                self.zombies = self.decode(payload, base, kind)?
            }
            RecordKind::SharedMemory => {
                if self.version.1 < 3 {
                    return Err(malformed(
                        offset,
                        Some(kind),
                        format!(
                            "SHARED_MEMORY in a 1.{} image (it needs 1.3)",
                            self.version.1
                        ),
                    ));
                }
                self.shared_memory = self.decode(payload, base, kind)?
            }
            RecordKind::SysvIpc => {
                if self.version.1 < 3 {
                    return Err(malformed(
                        offset,
                        Some(kind),
                        format!("SYSV_IPC in a 1.{} image (it needs 1.3)", self.version.1),
                    ));
                }
                self.sysv_ipc = Some(self.decode(payload, base, kind)?)
            }
            // The readers route these elsewhere; refuse rather than panic.
            RecordKind::Pages | RecordKind::Index => {
                return Err(malformed(offset, Some(kind), "not a metadata record"))
            }
            RecordKind::Unknown(code) => self.skipped.push((offset, code, h.flags)),
        }
        Ok(())
    }

    /// Checks a PAGES record's chunk header (the first 32 payload bytes).
    pub(crate) fn chunk(&mut self, h: &RecordHeader, head: &[u8], offset: u64) -> Result<ChunkRef> {
        let kind = Some(RecordKind::Pages);
        let base = offset + raw::RECORD_HEADER_LEN;
        self.first_record_rule(RecordKind::Pages, offset)?;
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
        if c.pages == 0 {
            return Err(malformed(base + 4, kind, "chunk of zero pages"));
        }
        let page_limit = (MAX_CHUNK_PAGES as u64).min(MAX_CHUNK_BYTES / ps);
        if c.pages as u64 > page_limit {
            return Err(Error::LimitExceeded {
                at: At {
                    offset: base + 4,
                    record: kind,
                },
                what: "chunk page count",
                value: c.pages as u64,
                limit: page_limit,
            });
        }
        let len = c.pages as u64 * ps;
        if !c.addr.is_multiple_of(ps)
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
        if encoding == ChunkEncoding::Zstd && c.pad != 0 {
            return Err(malformed(base + 20, kind, "zstd chunk with a nonzero pad"));
        }
        if encoding == ChunkEncoding::Zstd && c.stored_len > max_zstd_len(len) {
            return Err(Error::LimitExceeded {
                at: At {
                    offset: base + 24,
                    record: kind,
                },
                what: "zstd chunk stored length",
                value: c.stored_len,
                limit: max_zstd_len(len),
            });
        }
        let data_offset = base + raw::CHUNK_HEADER_LEN + c.pad as u64;
        if encoding == ChunkEncoding::Raw
            && (c.stored_len != len || !data_offset.is_multiple_of(ps))
        {
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

    /// Checks that the image is complete and consistent as a whole; the
    /// first problem.
    pub(crate) fn check_complete(&self, end: u64) -> Result<()> {
        match self.completeness_problems(end).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every way the image fails to be complete and consistent as a whole:
    /// a missing HEADER, PROCESS or THREAD, overlapping regions, overlapping
    /// chunks. `end` is where the records end (the INDEX offset).
    pub(crate) fn completeness_problems(&self, end: u64) -> Vec<Error> {
        let mut v = Vec::new();
        let at = At {
            offset: end,
            record: None,
        };
        for (missing, what) in [
            (self.header.is_none(), "HEADER"),
            (self.process.is_none(), "PROCESS"),
            (self.threads.is_empty(), "THREAD"),
        ] {
            if missing {
                v.push(Error::Malformed {
                    at,
                    what: format!("image has no {what} record"),
                });
            }
        }
        let mut regions: Vec<&Region> = self.regions.iter().collect();
        regions.sort_by_key(|r| r.start);
        for w in regions.windows(2) {
            if w[1].start.0 < w[0].end.0 {
                v.push(Error::Malformed {
                    at,
                    what: format!(
                        "regions {:#x}-{:#x} and {:#x}-{:#x} overlap",
                        w[0].start.0, w[0].end.0, w[1].start.0, w[1].end.0
                    ),
                });
            }
        }
        // Every shared mapping names a shared REGION by its start, once.
        let mut named: Vec<u64> = Vec::with_capacity(self.shared_memory.len());
        for m in &self.shared_memory {
            let r = self.regions.iter().find(|r| r.start == m.start);
            let what = match r {
                None => Some("no REGION starts there"),
                Some(r) if !r.shared => Some("its REGION is not shared"),
                Some(_) if named.contains(&m.start.0) => Some("named twice"),
                Some(_) => None,
            };
            named.push(m.start.0);
            if let Some(what) = what {
                v.push(Error::Malformed {
                    at,
                    what: format!("SHARED_MEMORY mapping at {:#x}: {what}", m.start.0),
                });
            }
        }
        let ps = self.page_size();
        let mut chunks: Vec<&ChunkRef> = self.chunks.iter().collect();
        chunks.sort_by_key(|c| (c.meta.addr, c.record_offset));
        // Compare each chunk with the furthest-reaching one before it, so a
        // chunk covering several others is caught against each of them.
        let mut reach: Option<(u64, &ChunkRef)> = None;
        for c in chunks {
            let c_end = c.meta.addr.0 + c.meta.pages as u64 * ps;
            if let Some((r_end, prev)) = reach {
                if c.meta.addr.0 < r_end {
                    v.push(Error::Malformed {
                        at: At {
                            offset: c.record_offset,
                            record: Some(RecordKind::Pages),
                        },
                        what: format!(
                            "chunk at {:#x} overlaps the chunk at {:#x} (record at {:#x})",
                            c.meta.addr.0, prev.meta.addr.0, prev.record_offset
                        ),
                    });
                }
                if c_end <= r_end {
                    continue;
                }
            }
            reach = Some((c_end, c));
        }
        v
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
            check_zstd_frame(c, data, out.len() as u64)?;
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

/// Checks, without decompressing, that a zstd chunk's data is exactly one
/// zstd frame and that the frame does not declare a content size other
/// than the chunk's `raw_len`: cheap, so a reader refuses most bad frames
/// before it allocates the chunk's output buffer.
pub(crate) fn check_zstd_frame(c: &ChunkRef, data: &[u8], raw_len: u64) -> Result<()> {
    zstd_frame_problem(data, raw_len).map_or(Ok(()), |what| {
        Err(Error::Decompress {
            at: At {
                offset: c.data_offset,
                record: Some(RecordKind::Pages),
            },
            what,
        })
    })
}

/// What is wrong with `data` as the zstd frame of `raw_len` bytes, if
/// anything (see [`check_zstd_frame`]); the encoder checks the same.
pub(crate) fn zstd_frame_problem(data: &[u8], raw_len: u64) -> Option<String> {
    let err = Some;
    // Every zstd block yields at most 128 KiB and takes at least 4 bytes
    // (3 of header, 1 of RLE content; RFC 8878 §3.1.1.2): a frame shorter
    // than this cannot fill the chunk, and no output buffer is ever more
    // than 32768 times the bytes that arrived.
    let min_frame = 4 * raw_len.div_ceil(128 << 10);
    if (data.len() as u64) < min_frame {
        return err(format!(
            "a zstd frame of {} bytes cannot hold {raw_len} bytes",
            data.len()
        ));
    }
    match zstd::zstd_safe::find_frame_compressed_size(data) {
        Ok(n) if n == data.len() => {}
        Ok(n) => {
            return err(format!(
                "the zstd frame is {n} bytes, the chunk stores {}",
                data.len()
            ))
        }
        Err(_) => return err("not a complete zstd frame".into()),
    }
    match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(n)) if n != raw_len => err(format!(
            "the zstd frame declares {n} bytes, the chunk holds {raw_len}"
        )),
        Ok(_) => None,
        Err(_) => err("unreadable zstd frame header".into()),
    }
}

/// Checks the payload's pad bytes are zero.
pub(crate) fn check_pad(c: &ChunkRef, payload: &[u8]) -> Result<()> {
    let pad = &payload[raw::CHUNK_HEADER_LEN as usize
        ..(c.data_offset - c.record_offset - raw::RECORD_HEADER_LEN) as usize];
    if pad.iter().any(|&b| b != 0) {
        return Err(pad_error(c));
    }
    Ok(())
}

/// The error for nonzero pad bytes.
pub(crate) fn pad_error(c: &ChunkRef) -> Error {
    malformed(
        c.record_offset + raw::RECORD_HEADER_LEN + raw::CHUNK_HEADER_LEN,
        Some(RecordKind::Pages),
        "pad bytes not zero",
    )
}
