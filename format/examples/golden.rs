//! Writes the golden images of the current format version:
//!
//! ```text
//! cargo run -p ckpt-format --example golden -- spec/golden
//! ```
//!
//! `v{MAJOR}-tiny.ckpt` is `sample::tiny()` (the spec's worked hexdump),
//! `v{MAJOR}-full.ckpt` is `sample::full()` (every record and fd kind).
//! The bytes are deterministic: `format/tests/golden.rs` regenerates them
//! and fails when they differ from the committed files. Goldens of a
//! released version are never rewritten; a layout change bumps the
//! version and adds new goldens next to the old ones.

use ckpt_format::{sample, FORMAT_MAJOR};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "spec/golden".into()),
    );
    std::fs::create_dir_all(&dir)?;
    for (name, s) in [("tiny", sample::tiny()), ("full", sample::full())] {
        let bytes = s.encode()?;
        let path = dir.join(format!("v{FORMAT_MAJOR}-{name}.ckpt"));
        std::fs::write(&path, &bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
