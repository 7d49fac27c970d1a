//! A second, independent image writer built from the raw layouts alone,
//! so tests can break rules the `Encoder` refuses to break.
#![allow(dead_code)]

use ckpt_format::raw::{self, ChunkHeader, IndexEntry, RecordHeader, Trailer};
use ckpt_format::sample;
use ckpt_format::*;

pub const PS: u64 = 4096;

/// A minimal image writer built from the raw layouts alone.
pub struct RawImage {
    pub bytes: Vec<u8>,
    pub index: Vec<IndexEntry>,
}

impl RawImage {
    pub fn new() -> Self {
        RawImage {
            bytes: raw::to_bytes(&raw::Preamble::current()),
            index: Vec::new(),
        }
    }

    pub fn offset(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn record(&mut self, kind: RecordKind, payload: &[u8]) -> &mut Self {
        self.record_flags(kind.code(), kind.default_flags(), payload)
    }

    pub fn record_flags(&mut self, kind: u16, flags: u16, payload: &[u8]) -> &mut Self {
        let mut h = RecordHeader::new(
            RecordKind::from_code(kind),
            flags,
            payload.len() as u64,
            crc32fast::hash(payload),
        );
        h.flags = flags;
        h.header_crc = crc32fast::hash(&raw::to_bytes(&h)[..20]);
        self.index.push(IndexEntry {
            offset: self.offset(),
            kind,
            flags,
            reserved: 0,
        });
        self.bytes.extend(raw::to_bytes(&h));
        self.bytes.extend(payload);
        self
    }

    /// A PAGES record; raw data is aligned as the spec requires unless
    /// `pad` is given.
    pub fn chunk(
        &mut self,
        region: u32,
        addr: u64,
        pages: u32,
        encoding: u8,
        data: &[u8],
        pad: Option<u32>,
    ) -> &mut Self {
        let start = self.offset() + raw::RECORD_HEADER_LEN + raw::CHUNK_HEADER_LEN;
        let pad = pad.unwrap_or(if encoding == 0 {
            ((PS - start % PS) % PS) as u32
        } else {
            0
        });
        let h = ChunkHeader {
            region,
            pages,
            addr,
            encoding,
            reserved: [0; 3],
            pad,
            stored_len: data.len() as u64,
        };
        let mut p = raw::to_bytes(&h);
        p.extend(std::iter::repeat_n(0u8, pad as usize));
        p.extend(data);
        self.record(RecordKind::Pages, &p)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let index_offset = self.offset();
        let mut p = (self.index.len() as u64).to_le_bytes().to_vec();
        for e in &self.index {
            p.extend(raw::to_bytes(e));
        }
        let count = self.index.len() as u64;
        let h = RecordHeader::new(
            RecordKind::Index,
            RecordKind::Index.default_flags(),
            p.len() as u64,
            crc32fast::hash(&p),
        );
        self.bytes.extend(raw::to_bytes(&h));
        self.bytes.extend(&p);
        let t = Trailer::new(index_offset, count, crc32fast::hash(&self.bytes));
        self.bytes.extend(raw::to_bytes(&t));
        std::mem::take(&mut self.bytes)
    }
}

/// Payloads of the sample's records, as the encoder lays them out.
pub struct Payloads {
    pub img: MappedImage,
}

impl Payloads {
    pub fn of_tiny() -> Self {
        Payloads {
            img: MappedImage::from_bytes(sample::tiny().encode().unwrap()).unwrap(),
        }
    }
    pub fn get(&self, kind: RecordKind, nth: usize) -> Vec<u8> {
        let i = self
            .img
            .index()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == kind.code())
            .nth(nth)
            .unwrap_or_else(|| panic!("no {kind} #{nth} in the sample"))
            .0;
        self.img.record_payload(i).unwrap().to_vec()
    }
}

/// HEADER, PROCESS, THREAD and one 16-page anon region at 0x10000.
pub fn base(p: &Payloads) -> RawImage {
    let mut r = RawImage::new();
    r.record(RecordKind::Header, &p.get(RecordKind::Header, 0))
        .record(RecordKind::Process, &p.get(RecordKind::Process, 0))
        .record(RecordKind::Thread, &p.get(RecordKind::Thread, 0))
        .record(RecordKind::Region, &region(0x10000, 0x20000));
    r
}

pub fn region(start: u64, end: u64) -> Vec<u8> {
    let mut v = start.to_le_bytes().to_vec();
    v.extend(end.to_le_bytes());
    v.extend(3u32.to_le_bytes()); // prot
    v.extend([0, 0, 0]); // shared, grows_down, kind anon
    v.extend(0u32.to_le_bytes()); // name
    v.push(0); // no backing
    v
}
