//! `ckpt image inspect` and `validate` on the golden images of every
//! released format version (spec/golden/), as insta snapshots: a change in
//! what the tools print for a golden image shows up in review.

mod common;

use ckpt_format::MappedImage;
use ckpt_tools::image::{extract, inspect, validate};
use common::goldens;
use std::path::PathBuf;

fn stem(p: &std::path::Path) -> String {
    p.file_stem().unwrap().to_string_lossy().replace('.', "_")
}

#[test]
fn inspect_text_of_every_golden() {
    for p in goldens() {
        let img = MappedImage::open(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(
            format!("inspect_{}", stem(&p)),
            inspect::render(&img, &name)
        );
    }
}

#[test]
fn inspect_json_of_every_golden() {
    for p in goldens() {
        let img = MappedImage::open(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let v = inspect::to_json(&img, &name);
        assert_eq!(v["schema"], "ckpt-inspect/1");
        insta::assert_snapshot!(
            format!("inspect_json_{}", stem(&p)),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }
}

#[test]
fn validate_accepts_goldens_and_rejects_every_corrupted_variant() {
    for p in goldens() {
        let bytes = std::fs::read(&p).unwrap();
        let rep = validate::validate_path(&p).unwrap();
        assert!(rep.is_valid(), "{}: {:?}", p.display(), rep.problems);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(
            format!("validate_{}", stem(&p)),
            validate::render(&name, &rep)
        );
        // A flipped byte in every 7th position, and a cut at every 97th.
        let dir = tempdir();
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            let f = dir.join("flip.ckpt");
            std::fs::write(&f, &b).unwrap();
            let rep = validate::validate_path(&f).unwrap();
            assert!(
                !rep.is_valid(),
                "{}: flip at {i:#x} not detected",
                p.display()
            );
            assert!(rep.problems.iter().all(|e| e.offset().is_some()));
        }
        for cut in (0..bytes.len()).step_by(97) {
            let f = dir.join("cut.ckpt");
            std::fs::write(&f, &bytes[..cut]).unwrap();
            let rep = validate::validate_path(&f).unwrap();
            assert!(
                !rep.is_valid(),
                "{}: cut at {cut:#x} not detected",
                p.display()
            );
        }
    }
}

#[test]
fn corrupt_report_names_offset_and_record() {
    let p = &goldens()[0];
    let mut b = std::fs::read(p).unwrap();
    let img = MappedImage::open(p).unwrap();
    let thread = img
        .index()
        .iter()
        .find(|e| e.kind == ckpt_format::RecordKind::Thread.code())
        .unwrap()
        .offset;
    b[thread as usize + 40] ^= 1;
    let dir = tempdir();
    let f = dir.join("bad.ckpt");
    std::fs::write(&f, &b).unwrap();
    let rep = validate::validate_path(&f).unwrap();
    let text = validate::render("bad.ckpt", &rep);
    assert!(text.contains("INVALID"), "{text}");
    assert!(
        text.contains(&format!("record THREAD at offset {thread:#x}")),
        "{text}"
    );
    let j = validate::to_json("bad.ckpt", &rep);
    assert_eq!(j["valid"], false);
    assert_eq!(j["problems"][0]["record"], "THREAD");
    assert_eq!(j["problems"][0]["offset"], thread);
}

#[test]
fn extract_gives_region_bytes_with_zeros_for_absent_pages() {
    let img = ckpt_format::sample::tiny();
    let dir = tempdir();
    let f = dir.join("tiny.ckpt");
    std::fs::write(&f, img.encode().unwrap()).unwrap();
    let m = MappedImage::open(&f).unwrap();
    // Region 1 is the heap: a raw page at its start and a compressed chunk later.
    let i = extract::find_region(&m, "0x555555560123").unwrap();
    assert_eq!(i, 1);
    assert_eq!(extract::find_region(&m, "1").unwrap(), 1);
    assert!(extract::find_region(&m, "0x10").is_err());
    assert!(extract::find_region(&m, "99").is_err());
    let mut out = Vec::new();
    extract::write_region(&m, 1, &mut out).unwrap();
    let r = &m.regions()[1];
    assert_eq!(out.len() as u64, r.end.0 - r.start.0);
    for (region, addr, pages, _) in &img.chunks {
        if *region == 1 {
            let off = (addr - r.start.0) as usize;
            assert_eq!(&out[off..off + pages.len()], &pages[..]);
        }
    }
    // A page no chunk covers reads as zeros.
    assert!(out[0x1000..0x2000].iter().all(|&b| b == 0));
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ckpt-tools-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
