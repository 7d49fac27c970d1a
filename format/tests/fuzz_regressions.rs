//! Replays every input in `fuzz/regressions/<target>/` through the checks
//! its fuzz target makes (`fuzz/fuzz_targets/`), so a crash the fuzzer once
//! found stays fixed. The `repack` target needs ckpt-tools: its inputs are
//! replayed by `tools/tests/fuzz_regressions.rs`.

use ckpt_format::{decode_all, validate_bytes, validate_reader, MappedImage, StreamDecoder};
use std::path::PathBuf;

/// The inputs of one target's regression directory (the golden images too,
/// so the replay is never empty).
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut v = Vec::new();
    for dir in [
        root.join("fuzz/regressions").join(target),
        root.join("spec/golden"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        files.sort();
        for p in files {
            v.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert!(!v.is_empty());
    v
}

#[test]
fn stream_decode_regressions() {
    for (name, data) in inputs("stream_decode") {
        let mut d = StreamDecoder::new(&data[..]);
        let mut steps = 0;
        while let Ok(Some(_)) = d.next_item() {
            steps += 1;
            assert!(steps <= data.len(), "{name}: the decoder does not stop");
        }
        assert!(
            matches!(d.next_item(), Ok(None)),
            "{name}: not finished after the end"
        );
    }
}

#[test]
fn mapped_open_regressions() {
    for (_name, data) in inputs("mapped_open") {
        let Ok(img) = MappedImage::from_bytes(data) else {
            continue;
        };
        let ps = img.page_size();
        let _ = img.stored_bytes_per_region();
        for i in 0..img.index().len() {
            let _ = img.record_payload(i);
        }
        for c in img.chunks() {
            let n = c.meta.pages as u64 * ps;
            if n <= 64 << 20 {
                let mut out = vec![0u8; n as usize];
                let _ = img.read_chunk(c, &mut out);
            }
        }
    }
}

#[test]
fn validate_regressions() {
    for (name, data) in inputs("validate") {
        let b = validate_bytes(&data);
        let r = validate_reader(&data[..]);
        assert_eq!(
            b.is_valid(),
            r.is_valid(),
            "{name}: {:?} / {:?}",
            b.problems,
            r.problems
        );
        if b.is_valid() {
            let img = MappedImage::from_bytes(data.clone()).expect("a valid image opens");
            for c in img.chunks() {
                let mut out = vec![0u8; (c.meta.pages as u64 * img.page_size()) as usize];
                img.read_chunk(c, &mut out)
                    .expect("a valid image's chunks read");
            }
            decode_all(&data[..]).expect("a valid image decodes in one pass");
        }
    }
}
