//! Random access over arbitrary bytes: `MappedImage::from_bytes` and then
//! every chunk read back through `read_chunk`.
#![no_main]

use ckpt_format::MappedImage;
use libfuzzer_sys::fuzz_target;

/// Chunks decoding to more than this are skipped to keep the fuzzer fast
/// (the format caps a chunk at `MAX_CHUNK_BYTES` anyway).
const MAX_OUT: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = MappedImage::from_bytes(data.to_vec()) else {
        return;
    };
    let ps = img.page_size();
    let _ = img.stored_bytes_per_region();
    for i in 0..img.index().len() {
        let _ = img.record_payload(i);
    }
    for c in img.chunks() {
        let n = c.meta.pages as u64 * ps;
        if n > MAX_OUT {
            continue;
        }
        let mut out = vec![0u8; n as usize];
        let _ = img.read_chunk(c, &mut out);
    }
});
