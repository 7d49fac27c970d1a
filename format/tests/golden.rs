//! The golden images in `spec/golden/`: every image of every released
//! version still decodes and validates; the current version's goldens are
//! exactly what the encoder writes today (an accidental layout change fails
//! here and forces a version bump); and every way of breaking a golden is
//! caught.

use ckpt_format::raw::{RECORD_HEADER_LEN, TRAILER_LEN};
use ckpt_format::*;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/golden")
}

/// Every `v*.ckpt` in `spec/golden/`, of every version, sorted by name.
fn goldens() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(golden_dir())
        .expect("spec/golden exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with('v') && name.ends_with(".ckpt")
        })
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("golden readable"))
        })
        .collect();
    v.sort();
    v
}

/// The goldens this version writes: (file name, sample).
fn current() -> Vec<(String, sample::Sample)> {
    vec![
        (format!("v{FORMAT_MAJOR}-tiny.ckpt"), sample::tiny()),
        (format!("v{FORMAT_MAJOR}-full.ckpt"), sample::full()),
        // Format 1.3: SHARED_MEMORY and SYSV_IPC.
        (format!("v{FORMAT_MAJOR}.3-shm.ckpt"), sample::shm()),
    ]
}

#[test]
fn every_golden_of_every_version_decodes_and_validates() {
    let all = goldens();
    for (name, _) in current() {
        assert!(
            all.iter().any(|(n, _)| *n == name),
            "{name} missing from spec/golden"
        );
    }
    for (name, bytes) in &all {
        let rep = validate_bytes(bytes);
        assert!(rep.is_valid(), "{name}: validate_bytes: {:?}", rep.problems);
        let rep = validate_reader(&bytes[..]);
        assert!(
            rep.is_valid(),
            "{name}: validate_reader: {:?}",
            rep.problems
        );

        let img = MappedImage::from_bytes(bytes.clone())
            .unwrap_or_else(|e| panic!("{name}: MappedImage: {e}"));
        assert_eq!(img.version().0, FORMAT_MAJOR, "{name}");
        let mut mapped_pages = Vec::new();
        for c in img.chunks() {
            let mut out = vec![0u8; (c.meta.pages as u64 * img.page_size()) as usize];
            img.read_chunk(c, &mut out)
                .unwrap_or_else(|e| panic!("{name}: read_chunk: {e}"));
            mapped_pages.push(out);
        }

        let mut d = StreamDecoder::new(&bytes[..]);
        let mut stream_pages = Vec::new();
        let mut ended = false;
        while let Some(item) = d
            .next_item()
            .unwrap_or_else(|e| panic!("{name}: StreamDecoder: {e}"))
        {
            match item {
                Item::Chunk { pages, .. } => stream_pages.push(pages),
                Item::End => ended = true,
                _ => {}
            }
        }
        assert!(ended, "{name}: stream did not reach the trailer");
        assert_eq!(d.metadata().threads, img.threads(), "{name}");
        assert_eq!(d.metadata().regions, img.regions(), "{name}");
        assert_eq!(stream_pages, mapped_pages, "{name}");
    }
}

#[test]
fn current_goldens_are_exactly_what_the_encoder_writes() {
    for (name, s) in current() {
        let want = s.encode().expect("sample encodes");
        let got = std::fs::read(golden_dir().join(&name)).expect("golden readable");
        assert!(
            got == want,
            "{name} differs from what the encoder writes today ({} vs {} bytes). \
             If the format changed on purpose, bump the format version and add new \
             goldens; never rewrite a released version's goldens.",
            got.len(),
            want.len()
        );
    }
}

/// Asserts both validators refuse `bytes`.
fn refused(name: &str, what: &str, bytes: &[u8]) {
    assert!(
        !validate_bytes(bytes).is_valid(),
        "{name}: {what}: validate_bytes accepted it"
    );
    assert!(
        !validate_reader(bytes).is_valid(),
        "{name}: {what}: validate_reader accepted it"
    );
}

#[test]
fn every_corrupt_variant_of_every_golden_fails_validation() {
    for (name, bytes) in goldens() {
        let img = MappedImage::from_bytes(bytes.clone()).expect("golden opens");
        let len = bytes.len() as u64;
        let trailer = len - TRAILER_LEN;
        let index_offset =
            trailer - (RECORD_HEADER_LEN + 8 + img.index().len() as u64 * raw::INDEX_ENTRY_LEN);
        let mut records: Vec<u64> = img.index().iter().map(|e| e.offset).collect();
        records.push(index_offset);
        let mut bounds = records.clone();
        bounds.push(trailer);

        for (i, w) in bounds.windows(2).enumerate() {
            let (start, end) = (w[0], w[1]);
            // One byte of the record header, the first payload byte and
            // the last payload byte.
            for at in [start + 3, start + RECORD_HEADER_LEN, end - 1] {
                let mut b = bytes.clone();
                b[at as usize] ^= 0x01;
                refused(&name, &format!("record {i}: byte {at:#x} flipped"), &b);
            }
        }
        for at in [0, 9, 12, trailer, trailer + 8, trailer + 16, len - 1] {
            let mut b = bytes.clone();
            b[at as usize] ^= 0x01;
            refused(&name, &format!("byte {at:#x} flipped"), &b);
        }
        for &cut in [0, 8, raw::PREAMBLE_LEN].iter().chain(&bounds) {
            refused(&name, &format!("cut at {cut:#x}"), &bytes[..cut as usize]);
        }
        refused(&name, "trailer dropped", &bytes[..trailer as usize]);
        let mut b = bytes.clone();
        b.push(0);
        refused(&name, "a byte after the trailer", &b);
    }
}
