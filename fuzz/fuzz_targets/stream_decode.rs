//! One-pass decoding of arbitrary bytes: `StreamDecoder` must return an
//! error or `Ok(None)` on any input, never panic, hang or over-allocate.
#![no_main]

use ckpt_format::StreamDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = StreamDecoder::new(data);
    // Every step consumes at least one record header, so the loop is
    // bounded by the input; the cap only guards against a decoder bug.
    for _ in 0..=data.len() {
        match d.next_item() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // After the end or an error the decoder stays finished.
    assert!(matches!(d.next_item(), Ok(None)));
});
