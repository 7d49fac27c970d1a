//! The memory an image describes, page by page, as spec/v1.md defines it
//! (§4.4 storage semantics, §5.4 coverage): a page a chunk covers is the
//! chunk's; an uncovered page of a by-reference file region is the file's
//! (read from this host when the file there is the image's file); any
//! other uncovered page is zero. `diff` and `extract` read memory through
//! this, so a repack that moves pages between the image and the file
//! changes nothing they report.

use super::progress::Progress;
use super::repack::{open_identical, HostFile};
use anyhow::Context;
use ckpt_format::{ChunkRef, FileIdentity, FileStorage, MappedImage, Region};
use std::io::Write;

/// Where the bytes of a page came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A chunk of the image.
    Stored,
    /// The by-reference file on this host.
    File,
    /// Not stored, and zero by definition.
    Zero,
    /// Not stored, by reference, and the file is not here (or differs):
    /// unknown, given as zeros.
    Unknown,
}

/// One region's pages, decoded one chunk at a time (bounded memory).
/// Pages are asked for in ascending address order.
pub struct RegionMemory<'a> {
    img: &'a MappedImage,
    region: &'a Region,
    chunks: Vec<&'a ChunkRef>,
    cur: usize,
    loaded: Option<usize>,
    buf: Vec<u8>,
    file: Option<HostFile>,
    /// Why the by-reference file could not be used, if it could not.
    pub file_problem: Option<String>,
}

/// The file whose bytes an uncovered page of `r` has, if any.
pub fn reference(r: &Region) -> Option<&FileIdentity> {
    r.backing
        .as_ref()
        .filter(|b| b.storage == FileStorage::ByReference)
        .map(|b| &b.file)
}

/// The PAGES chunks of region `i` of `img`, in address order.
pub fn region_chunks(img: &MappedImage, i: usize) -> Vec<&ChunkRef> {
    let mut chunks: Vec<&ChunkRef> = img
        .chunks()
        .iter()
        .filter(|c| c.meta.region as usize == i)
        .collect();
    chunks.sort_by_key(|c| c.meta.addr);
    chunks
}

impl<'a> RegionMemory<'a> {
    /// Region `i` of `img`; opens its by-reference file when identical.
    pub fn new(img: &'a MappedImage, i: usize) -> Self {
        let region = &img.regions()[i];
        let chunks = region_chunks(img, i);
        let (file, file_problem) = match reference(region) {
            None => (None, None),
            Some(id) => match open_identical(id) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(e)),
            },
        };
        RegionMemory {
            img,
            region,
            chunks,
            cur: 0,
            loaded: None,
            buf: Vec::new(),
            file,
            file_problem,
        }
    }

    /// The region.
    pub fn region(&self) -> &'a Region {
        self.region
    }

    /// The stored page at `addr`, if a chunk covers it.
    fn stored(&mut self, addr: u64) -> anyhow::Result<Option<&[u8]>> {
        let ps = self.img.page_size();
        let end = |c: &ChunkRef| c.meta.addr.0 + c.meta.pages as u64 * ps;
        if self.cur < self.chunks.len() && self.chunks[self.cur].meta.addr.0 > addr {
            // Asked again for an earlier page: start over.
            self.cur = 0;
        }
        while self.cur < self.chunks.len() && end(self.chunks[self.cur]) <= addr {
            self.cur += 1;
        }
        let i = self.cur;
        if i == self.chunks.len() || self.chunks[i].meta.addr.0 > addr {
            return Ok(None);
        }
        if self.loaded != Some(i) {
            let c = self.chunks[i];
            self.buf.resize((c.meta.pages as u64 * ps) as usize, 0);
            self.img
                .read_chunk(c, &mut self.buf)
                .with_context(|| format!("chunk at {:#x}", c.meta.addr.0))?;
            self.loaded = Some(i);
        }
        let off = (addr - self.chunks[i].meta.addr.0) as usize;
        Ok(Some(&self.buf[off..off + ps as usize]))
    }

    /// Fills `out` (one page) with the page at `addr` (page-aligned, inside
    /// the region) and says where it came from.
    pub fn page(&mut self, addr: u64, out: &mut [u8]) -> anyhow::Result<Source> {
        if let Some(p) = self.stored(addr)? {
            out.copy_from_slice(p);
            return Ok(Source::Stored);
        }
        let r = self.region;
        match (&self.file, reference(r)) {
            (Some(f), Some(_)) => {
                let off = r.backing.as_ref().map_or(0, |b| b.offset) + (addr - r.start.0);
                f.read_page_into(off, out)
                    .with_context(|| format!("reading {}", String::from_utf8_lossy(&r.name)))?;
                Ok(Source::File)
            }
            (None, Some(_)) => {
                out.fill(0);
                Ok(Source::Unknown)
            }
            _ => {
                out.fill(0);
                Ok(Source::Zero)
            }
        }
    }

    /// Writes the bytes of `[from, to)` (inside the region, any alignment)
    /// to `out`, counted in `progress`; returns the bytes of unknown pages
    /// written as zeros.
    pub fn write(
        &mut self,
        from: u64,
        to: u64,
        out: &mut dyn Write,
        progress: &mut Progress,
    ) -> anyhow::Result<u64> {
        let ps = self.img.page_size();
        let mut page = vec![0u8; ps as usize];
        let mut unknown = 0;
        let mut a = from;
        while a < to {
            let base = a - (a - self.region.start.0) % ps;
            let src = self.page(base, &mut page)?;
            let stop = to.min(base + ps);
            out.write_all(&page[(a - base) as usize..(stop - base) as usize])?;
            if src == Source::Unknown {
                unknown += stop - a;
            }
            progress.add(stop - a);
            a = stop;
        }
        Ok(unknown)
    }
}
