//! Full validation, listing every problem rather than stopping at the first.
//!
//! Over bytes (a file): one pass front to back; each payload's CRC is
//! computed once and folded into the whole-image CRC (crc32 combine), so a
//! raw image is validated at CRC speed. After a broken record header the
//! walk resumes at the next record the index knows, so one flipped byte does
//! not hide the problems behind it. Over a reader (a pipe): the one-pass
//! decoder, stopping where the framing is lost.

use crate::decode::{self, Metadata};
use crate::error::{malformed, At, Error};
use crate::raw::{self, IndexEntry, RecordKind, Trailer};
use std::io::Read;

/// The outcome of a validation.
#[derive(Debug, Default)]
pub struct Report {
    /// Every problem found, in image order (empty: the image is valid).
    pub problems: Vec<Error>,
    /// Records walked (index and trailer excluded).
    pub records: u64,
    /// PAGES records among them.
    pub chunks: u64,
    /// Bytes of decoded page data they hold.
    pub page_bytes: u64,
    /// Size of the image in bytes.
    pub bytes: u64,
}

impl Report {
    /// True when no problem was found.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Validates a complete image held in memory (or mapped).
pub fn validate_bytes(b: &[u8]) -> Report {
    let mut rep = Report {
        bytes: b.len() as u64,
        ..Default::default()
    };
    let len = b.len() as u64;
    let mut meta = Metadata::default();
    match decode::check_preamble(b) {
        Ok(v) => meta.version = v,
        Err(e) => {
            rep.problems.push(e);
            return rep;
        }
    }
    let (trailer, index) = trailer_and_index(b, &mut rep.problems);
    let records_end = trailer.map_or(len, |t| t.index_offset);

    let mut image_crc = crc32fast::Hasher::new();
    image_crc.update(&b[..raw::PREAMBLE_LEN as usize]);
    let mut seen: Vec<IndexEntry> = Vec::new();
    let mut off = raw::PREAMBLE_LEN;
    let mut scratch = Vec::new();
    let mut crc_chain_ok = true;
    while off < records_end {
        if off + raw::RECORD_HEADER_LEN > len {
            rep.problems.push(Error::Truncated {
                at: At {
                    offset: off,
                    record: None,
                },
                needed: off + raw::RECORD_HEADER_LEN - len,
                end: len,
            });
            crc_chain_ok = false;
            break;
        }
        let hb = &b[off as usize..(off + raw::RECORD_HEADER_LEN) as usize];
        let h = match decode::check_record_frame(hb, off) {
            Ok(h) => h,
            Err(e) => {
                rep.problems.push(e);
                crc_chain_ok = false;
                match index.iter().find(|e| e.offset > off) {
                    Some(next) => {
                        off = next.offset;
                        continue;
                    }
                    None => break,
                }
            }
        };
        let kind = RecordKind::from_code(h.kind);
        if kind == RecordKind::Index {
            if trailer.is_none() {
                // Only reached when the trailer is unusable.
                break;
            }
            rep.problems.push(malformed(
                off,
                Some(kind),
                "INDEX before the offset the trailer gives",
            ));
            crc_chain_ok = false;
            break;
        }
        let pstart = off + raw::RECORD_HEADER_LEN;
        let pend = match pstart.checked_add(h.payload_len).filter(|&e| e <= len) {
            Some(e) => e,
            None => {
                rep.problems.push(Error::Truncated {
                    at: At {
                        offset: off,
                        record: Some(kind),
                    },
                    needed: pstart.saturating_add(h.payload_len) - len,
                    end: len,
                });
                crc_chain_ok = false;
                break;
            }
        };
        let payload = &b[pstart as usize..pend as usize];
        image_crc.update(hb);
        let mut ph = crc32fast::Hasher::new();
        ph.update(payload);
        let computed = ph.clone().finalize();
        image_crc.combine(&ph);
        seen.push(IndexEntry {
            offset: off,
            kind: h.kind,
            flags: h.flags,
            reserved: 0,
        });
        rep.records += 1;
        if let Err(e) = decode::check_record_semantics(&h, off) {
            // Reserved bits or an unknown critical kind: the payload means
            // nothing to this reader, but the framing holds.
            rep.problems.push(e);
            meta.count_unapplied();
            off = pend;
            continue;
        }
        let crc_ok = computed == h.payload_crc;
        if !crc_ok {
            rep.problems.push(Error::Crc {
                at: At {
                    offset: off,
                    record: Some(kind),
                },
                what: "payload",
                stored: h.payload_crc,
                computed,
            });
        }
        if kind == RecordKind::Pages {
            rep.chunks += 1;
            match meta.chunk(&h, payload, off) {
                Ok(c) => {
                    rep.page_bytes += c.meta.pages as u64 * meta.page_size();
                    if crc_ok {
                        if let Err(e) = decode::check_pad(&c, payload) {
                            rep.problems.push(e);
                        }
                        if c.meta.encoding == crate::model::ChunkEncoding::Zstd {
                            let n = c.meta.pages as u64 * meta.page_size();
                            let data = &payload[(c.data_offset - pstart) as usize..];
                            // The frame header first: no output buffer for
                            // a frame that cannot fill it.
                            let r = decode::check_zstd_frame(&c, data, n).and_then(|()| {
                                scratch.resize(n as usize, 0);
                                decode::decode_chunk_data(&c, data, &mut scratch)
                            });
                            if let Err(e) = r {
                                rep.problems.push(e);
                            }
                        }
                    }
                    meta.chunks.push(c);
                }
                Err(e) => rep.problems.push(e),
            }
        } else if crc_ok {
            if let Err(e) = meta.apply(&h, payload, off) {
                rep.problems.push(e);
            }
        } else {
            meta.count_unapplied();
        }
        off = pend;
    }

    if trailer.is_none() && rep.problems.is_empty() {
        rep.problems.push(Error::Truncated {
            at: At {
                offset: off,
                record: None,
            },
            needed: raw::TRAILER_LEN,
            end: len,
        });
    }
    if let Some(t) = trailer {
        if index.len() as u64 == t.record_count && crc_chain_ok {
            index_problems(&index, &seen, t.index_offset, &mut rep.problems);
        }
        if crc_chain_ok && off == t.index_offset {
            // Fold in the index record itself.
            image_crc.update(&b[t.index_offset as usize..(len - raw::TRAILER_LEN) as usize]);
            let computed = image_crc.finalize();
            if computed != t.image_crc {
                rep.problems.push(Error::Crc {
                    at: At {
                        offset: len - raw::TRAILER_LEN,
                        record: None,
                    },
                    what: "image",
                    stored: t.image_crc,
                    computed,
                });
            }
        }
    }
    rep.problems.extend(meta.completeness_problems(records_end));
    rep
}

/// Compares the INDEX entries with the records walked, entry by entry.
fn index_problems(
    index: &[IndexEntry],
    seen: &[IndexEntry],
    index_offset: u64,
    out: &mut Vec<Error>,
) {
    let kind = Some(RecordKind::Index);
    let entries = index_offset + raw::RECORD_HEADER_LEN + 8;
    if index.len() != seen.len() {
        out.push(malformed(
            index_offset,
            kind,
            format!(
                "the INDEX lists {} records, the image holds {}",
                index.len(),
                seen.len()
            ),
        ));
    }
    let bad: Vec<usize> = index
        .iter()
        .zip(seen)
        .enumerate()
        .filter(|(_, (i, s))| i != s)
        .map(|(n, _)| n)
        .collect();
    for &n in bad.iter().take(MAX_INDEX_PROBLEMS) {
        out.push(malformed(
            entries + n as u64 * raw::INDEX_ENTRY_LEN,
            kind,
            format!(
                "index entry {n} ({:#x}, kind {:#06x}) does not match the record at {:#x} (kind {:#06x})",
                index[n].offset, index[n].kind, seen[n].offset, seen[n].kind
            ),
        ));
    }
    if bad.len() > MAX_INDEX_PROBLEMS {
        out.push(malformed(
            entries,
            kind,
            format!(
                "{} more index entries do not match",
                bad.len() - MAX_INDEX_PROBLEMS
            ),
        ));
    }
}

/// Index entries reported one by one before the rest are summed up.
const MAX_INDEX_PROBLEMS: usize = 8;

/// Reads and checks the trailer and index; problems go to `problems`.
fn trailer_and_index(b: &[u8], problems: &mut Vec<Error>) -> (Option<Trailer>, Vec<IndexEntry>) {
    let len = b.len() as u64;
    if len < raw::PREAMBLE_LEN + raw::TRAILER_LEN {
        return (None, Vec::new());
    }
    let toff = len - raw::TRAILER_LEN;
    let tb = &b[toff as usize..];
    let t: Trailer = match raw::from_bytes(tb) {
        Some(t) => t,
        None => return (None, Vec::new()),
    };
    if t.magic != raw::TRAILER_MAGIC {
        // No trailer: the walk will find where the image was cut.
        return (None, Vec::new());
    }
    let computed = crc32fast::hash(&tb[..28]);
    if computed != t.trailer_crc {
        problems.push(Error::Crc {
            at: At {
                offset: toff,
                record: None,
            },
            what: "trailer",
            stored: t.trailer_crc,
            computed,
        });
        return (None, Vec::new());
    }
    let io = t.index_offset;
    if io < raw::PREAMBLE_LEN
        || io
            .checked_add(raw::RECORD_HEADER_LEN)
            .is_none_or(|e| e > toff)
    {
        problems.push(malformed(
            toff + 8,
            None,
            format!("index offset {io:#x} outside the image"),
        ));
        return (None, Vec::new());
    }
    let hb = &b[io as usize..(io + raw::RECORD_HEADER_LEN) as usize];
    let h = match decode::check_record_header(hb, io) {
        Ok(h) if h.kind == RecordKind::Index.code() => h,
        Ok(_) => {
            problems.push(malformed(
                io,
                None,
                "trailer points at a record that is not the INDEX",
            ));
            return (None, Vec::new());
        }
        Err(e) => {
            problems.push(e);
            return (None, Vec::new());
        }
    };
    let pstart = io + raw::RECORD_HEADER_LEN;
    let kind = Some(RecordKind::Index);
    if pstart.checked_add(h.payload_len) != Some(toff) {
        problems.push(malformed(
            io,
            kind,
            "INDEX does not end where the trailer starts",
        ));
        return (Some(t), Vec::new());
    }
    let payload = &b[pstart as usize..toff as usize];
    if let Err(e) = decode::check_payload_crc(&h, payload, io) {
        problems.push(e);
        return (Some(t), Vec::new());
    }
    let count = payload
        .get(..8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    if count != Some(t.record_count)
        || (payload.len() as u64).checked_sub(8) != t.record_count.checked_mul(16)
    {
        problems.push(malformed(
            pstart,
            kind,
            "INDEX count disagrees with its length or the trailer",
        ));
        return (Some(t), Vec::new());
    }
    let entries = payload[8..]
        .chunks_exact(16)
        .filter_map(raw::from_bytes::<IndexEntry>)
        .collect();
    (Some(t), entries)
}

/// Validates an image read once from `r` (a pipe): every problem that
/// leaves the record framing intact is listed and the walk goes on; the
/// first one that does not (truncation, a broken record header) ends it.
pub fn validate_reader<R: Read>(r: R) -> Report {
    let mut rep = Report::default();
    let mut d = crate::stream::StreamDecoder::new(r).check_page_data_only();
    loop {
        let step = d.step();
        rep.problems.extend(d.take_problems());
        match step {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                rep.problems.push(e);
                break;
            }
        }
    }
    let m = d.metadata();
    rep.records = d.records_seen();
    rep.chunks = m.chunks.len() as u64;
    rep.page_bytes = m
        .chunks
        .iter()
        .map(|c| c.meta.pages as u64 * m.page_size())
        .sum();
    rep.bytes = d.offset();
    rep
}
