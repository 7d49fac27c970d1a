//! Replays every input in `fuzz/regressions/repack/` (and the golden images)
//! through the checks of the `repack` fuzz target: repacking an image that
//! opens either fails or yields an image that validates.

use ckpt_format::{validate_bytes, MappedImage};
use ckpt_tools::image::repack::{repack_to_vec, Compression, RepackOptions};
use std::path::PathBuf;

#[test]
fn repack_regressions() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in [
        root.join("fuzz/regressions/repack"),
        root.join("spec/golden"),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        files.extend(
            rd.map(|e| e.unwrap().path()).filter(|p| {
                p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            }),
        );
    }
    files.sort();
    assert!(!files.is_empty());
    for p in files {
        let Ok(img) = MappedImage::from_bytes(std::fs::read(&p).unwrap()) else {
            continue;
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
                    if let Ok((out, _)) = repack_to_vec(&img, &opts) {
                        let rep = validate_bytes(&out);
                        assert!(
                            rep.is_valid(),
                            "{}: {opts:?}: {:?}",
                            p.display(),
                            rep.problems
                        );
                    }
                }
            }
        }
    }
}
