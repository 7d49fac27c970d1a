//! Arbitrary bytes that open as an image repack, with every option (and
//! into every format version this build writes), into an image that
//! validates.
#![no_main]

use ckpt_format::{validate_bytes, MappedImage};
use ckpt_tools::image::repack::{repack_to_vec, Compression, RepackOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(img) = MappedImage::from_bytes(data.to_vec()) else {
        return;
    };
    for compress in [None, Some(Compression::None), Some(Compression::Zstd(1))] {
        for chunk_pages in [None, Some(1), Some(7)] {
            for by_reference in [false, true] {
                let opts = RepackOptions {
                    compress,
                    chunk_pages,
                    embed_files: false,
                    by_reference,
                    format_minor: None,
                };
                // Damaged page data is an error, not a bad output.
                if let Ok((out, _)) = repack_to_vec(&img, &opts) {
                    let rep = validate_bytes(&out);
                    assert!(rep.is_valid(), "{opts:?}: {:?}", rep.problems);
                }
            }
        }
    }
    // Every format version this build writes: refused (too old for what
    // the image holds) or valid and of that version.
    for m in 0..=ckpt_format::FORMAT_MINOR {
        let opts = RepackOptions {
            format_minor: Some(m),
            ..Default::default()
        };
        if let Ok((out, _)) = repack_to_vec(&img, &opts) {
            let rep = validate_bytes(&out);
            assert!(rep.is_valid(), "{opts:?}: {:?}", rep.problems);
            let y = MappedImage::from_bytes(out).expect("a valid image opens");
            assert_eq!(y.version(), (1, m));
        }
    }
});
