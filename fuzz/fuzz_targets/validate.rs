//! Full validation of arbitrary bytes, over a slice and over a reader.
//!
//! Both walk the same records with the same rules; `validate_reader` stops
//! where the record framing is lost, but then `validate_bytes` has found a
//! problem too. So the two must agree on whether the image is valid.
#![no_main]

use ckpt_format::{validate_bytes, validate_reader};
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
});
