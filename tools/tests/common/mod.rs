//! What several test files of the image tools share.

use std::path::PathBuf;

/// The golden images of every released format version (spec/golden), in
/// name order.
pub fn goldens() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no golden images in {}", dir.display());
    v
}
