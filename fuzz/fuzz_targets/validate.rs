//! Full validation of arbitrary bytes, over a slice and over a reader.
//!
//! Both walk the same records with the same rules; `validate_reader` stops
//! where the record framing is lost, but then `validate_bytes` has found a
//! problem too. So the two must agree on whether the image is valid, and a
//! valid image must open and decode through both other entry points.
#![no_main]

use ckpt_format::{decode_all, validate_bytes, validate_reader, MappedImage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let b = validate_bytes(data);
    let r = validate_reader(data);
    assert_eq!(
        b.is_valid(),
        r.is_valid(),
        "validate_bytes: {:?}\nvalidate_reader: {:?}",
        b.problems,
        r.problems
    );
    if b.is_valid() {
        let img = MappedImage::from_bytes(data.to_vec()).expect("a valid image opens");
        for c in img.chunks() {
            let mut out = vec![0u8; (c.meta.pages as u64 * img.page_size()) as usize];
            img.read_chunk(c, &mut out).expect("a valid image's chunks read");
        }
        decode_all(data).expect("a valid image decodes in one pass");
    }
});
