//! Hostile input never makes a reader allocate more than a small multiple
//! of the bytes it was actually given: lengths and counts are checked
//! against the bytes that exist, payloads read from a pipe grow only as
//! bytes arrive, and a chunk's output buffer is allocated only once its
//! zstd frame header agrees with the chunk.
//!
//! A counting global allocator measures the peak of live bytes allocated
//! by the current thread while a reader runs.

mod common;

use ckpt_format::raw::{self, ChunkHeader};
use ckpt_format::*;
use common::raw_image::{base, Payloads, RawImage, PS};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// bookkeeping touches only const-initialised thread-locals (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize));
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new as isize - l.size() as isize);
        // SAFETY: `p` was allocated by `System` with `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak live bytes the current thread allocated while `f` ran.
fn peak<T>(f: impl FnOnce() -> T) -> (T, u64) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    let v = f();
    (v, PEAK.with(|p| p.get()).max(0) as u64)
}

/// Runs every reader over `b` (which must be refused) and checks none
/// allocated more than `limit` bytes at a time.
fn bounded(name: &str, b: &[u8], limit: u64) {
    let (r, n) = peak(|| {
        let mut d = StreamDecoder::new(b);
        loop {
            match d.next_item() {
                Ok(Some(_)) => {}
                r => break r.map(|_| ()),
            }
        }
    });
    assert!(r.is_err(), "{name}: stream accepted it");
    assert!(n <= limit, "{name}: stream decoder peaked at {n} bytes");
    let (rep, n) = peak(|| validate_reader(b));
    assert!(!rep.is_valid(), "{name}: validate_reader accepted it");
    assert!(n <= limit, "{name}: validate_reader peaked at {n} bytes");
    let (rep, n) = peak(|| validate_bytes(b));
    assert!(!rep.is_valid(), "{name}: validate_bytes accepted it");
    assert!(n <= limit, "{name}: validate_bytes peaked at {n} bytes");
    let v = b.to_vec();
    let (r, n) = peak(move || {
        let img = MappedImage::from_bytes(v)?;
        for c in img.chunks() {
            img.verify_chunk(c)?;
            let raw = c.meta.pages as u64 * img.page_size();
            // What a careful caller does before allocating the output.
            if c.meta.encoding == ChunkEncoding::Zstd && raw > MAX_CHUNK_BYTES {
                return Err(Error::Usage("chunk too large"));
            }
        }
        Ok(img)
    });
    // The mapped reader may open an image whose damage is in page data;
    // what matters here is what it allocated.
    let _ = r;
    assert!(
        n <= limit + b.len() as u64,
        "{name}: mapped reader peaked at {n} bytes"
    );
}

/// A PAGES record whose header claims `payload_len`, followed by `body`.
fn pages_record(r: &mut RawImage, payload_len: u64, body: &[u8]) {
    let h = raw::RecordHeader::new(
        RecordKind::Pages,
        RecordKind::Pages.default_flags(),
        payload_len,
        crc32fast::hash(body),
    );
    r.bytes.extend(raw::to_bytes(&h));
    r.bytes.extend(body);
}

#[test]
fn a_huge_payload_claim_on_a_short_stream() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    let h = raw::RecordHeader::new(RecordKind::Thread, 1, 200 << 20, 0);
    r.bytes.extend(raw::to_bytes(&h));
    r.bytes.extend([0u8; 100]);
    bounded("200 MiB THREAD claim", &r.bytes, 1 << 20);
}

#[test]
fn a_huge_chunk_claim_on_a_short_stream() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    let c = ChunkHeader {
        region: 0,
        pages: 16,
        addr: 0x10000,
        encoding: 0,
        reserved: [0; 3],
        pad: 0,
        stored_len: 250 << 20,
    };
    let body = raw::to_bytes(&c);
    pages_record(&mut r, 32 + (250 << 20), &body);
    bounded("250 MiB PAGES claim", &r.bytes, 1 << 20);
}

#[test]
fn a_tiny_frame_for_a_huge_chunk() {
    // 65536 pages (256 MiB) "compressed" into 20 bytes of garbage, with
    // valid CRCs: refused before the 256 MiB output buffer exists.
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.record(
        RecordKind::Region,
        &common::raw_image::region(0x1000_0000, 0x2000_0000),
    );
    r.chunk(
        1,
        0x1000_0000,
        65536,
        1,
        b"\x28\xb5\x2f\xfd garbage!!",
        None,
    );
    let b = r.finish();
    bounded("garbage frame for 256 MiB", &b, 1 << 20);
    // A real frame that declares 1 page for the same chunk.
    let mut r = base(&p);
    r.record(
        RecordKind::Region,
        &common::raw_image::region(0x1000_0000, 0x2000_0000),
    );
    let frame = compress_pages(&vec![0; PS as usize], 3).unwrap();
    r.chunk(1, 0x1000_0000, 65536, 1, &frame, None);
    let b = r.finish();
    bounded("1-page frame for 256 MiB", &b, 1 << 20);
}

#[test]
fn hostile_counts_in_tiny_payloads() {
    let p = Payloads::of_tiny();
    for (kind, payload) in [
        (RecordKind::PidTable, u32::MAX.to_le_bytes().repeat(4)),
        (RecordKind::Rlimits, u32::MAX.to_le_bytes().to_vec()),
        (RecordKind::Signals, {
            let mut v = 1000u32.to_le_bytes().to_vec();
            v.extend([0u8; 96]);
            v
        }),
        (RecordKind::Thread, {
            let mut v = p.get(RecordKind::Thread, 0);
            v.truncate(12);
            v[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
            v
        }),
    ] {
        let mut r = base(&p);
        r.record(kind, &payload);
        let b = r.finish();
        let start = std::time::Instant::now();
        bounded(&format!("hostile {kind}"), &b, 1 << 20);
        assert!(start.elapsed().as_secs() < 2);
    }
}
