//! Compressed chunks of read-only embedded file mappings (the writer's own
//! library above all: 2.3 MB compressed to 0.8 MB on every checkpoint),
//! kept from one checkpoint to the next and reused while their key and
//! contents are unchanged.
//!
//! The frames live in one mapping of their own, left out of the image like
//! the scratch arena (in the main arena they would be stored again, as
//! incompressible bytes, in every image). A restored process does not have
//! that mapping: `forget` drops the entries without touching the address.

use std::sync::Mutex;

use crate::capture::StableFile;
use crate::sys;

/// What a chunk's pages are: where, how many, from which file version.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub addr: u64,
    pub pages: u32,
    pub file: StableFile,
}

/// A chunk's encoding at the last checkpoint.
#[derive(Clone, Copy)]
pub enum Kept {
    /// A zstd frame at (address, length).
    Frame(usize, usize),
    /// zstd did not make it smaller: stored raw.
    Raw,
}

struct Entry {
    key: Key,
    /// crc32 of the pages: a read-only mapping can still be changed by
    /// mprotect, write, mprotect; a changed chunk is compressed again.
    crc: u32,
    kept: Kept,
}

struct Cache {
    entries: Vec<Entry>,
    block: u64,
    block_len: u64,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
    block: 0,
    block_len: 0,
});

fn cache() -> std::sync::MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The frames' mapping, for `plan_regions` to leave out.
pub fn range() -> (u64, u64) {
    let c = cache();
    (c.block, c.block + c.block_len)
}

/// The kept encoding of `key`'s pages if they still hash to `crc`. A frame
/// stays valid until the next `keep`.
pub fn lookup(key: &Key, crc: u32) -> Option<Kept> {
    cache()
        .entries
        .iter()
        .find(|e| e.key == *key && e.crc == crc)
        .map(|e| e.kept)
}

/// Replaces the cache with this checkpoint's stable chunks. Called with the
/// main arena live (scratch mode off), before the scratch arena that holds
/// new frames is reset.
pub fn keep(chunks: &[(Key, u32, Kept)]) {
    let mut c = cache();
    let same = c.entries.len() == chunks.len()
        && chunks.iter().zip(&c.entries).all(|((k, crc, kept), e)| {
            e.key == *k
                && e.crc == *crc
                && match (kept, e.kept) {
                    (Kept::Frame(p, _), Kept::Frame(q, _)) => *p == q,
                    (Kept::Raw, Kept::Raw) => true,
                    _ => false,
                }
        });
    if same {
        return;
    }
    let total: usize = chunks
        .iter()
        .map(|(_, _, k)| match k {
            Kept::Frame(_, l) => *l,
            Kept::Raw => 0,
        })
        .sum();
    let len = (total as u64).div_ceil(4096) * 4096;
    let block = if len == 0 {
        std::ptr::null_mut()
    } else {
        sys::mmap_anon(len as usize, 0)
    };
    let mut entries = Vec::with_capacity(chunks.len());
    if len == 0 || !block.is_null() {
        let mut off = 0;
        for &(key, crc, kept) in chunks {
            let kept = match kept {
                Kept::Frame(p, l) => {
                    // SAFETY: (p, l) is a frame in the scratch arena (not
                    // reset yet) or in the old block (unmapped below);
                    // block has room for every frame.
                    unsafe {
                        std::ptr::copy_nonoverlapping(p as *const u8, block.add(off), l);
                    }
                    let f = Kept::Frame(block as usize + off, l);
                    off += l;
                    f
                }
                Kept::Raw => Kept::Raw,
            };
            entries.push(Entry { key, crc, kept });
        }
    }
    if c.block != 0 {
        sys::munmap(c.block, c.block_len);
    }
    c.entries = entries;
    (c.block, c.block_len) = if block.is_null() {
        (0, 0)
    } else {
        (block as u64, len)
    };
}

/// In a restored process: the frames' mapping was not in the image.
pub fn forget() {
    let mut c = cache();
    c.entries.clear();
    c.block = 0;
    c.block_len = 0;
}
