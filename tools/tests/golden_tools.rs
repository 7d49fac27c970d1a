//! What `repack`, `core` and `extract` print for the golden images of every
//! released format version, as insta snapshots (inspect, validate, diff
//! and check-host have theirs in golden_inspect.rs, diff.rs and
//! check_host.rs), and the layout of the core file they give.

mod common;

use ckpt_format::MappedImage;
use ckpt_tools::image::repack::{self, Compression, RepackOptions};
use ckpt_tools::image::{core, extract};
use common::goldens;
use std::fmt::Write;

fn stem(p: &std::path::Path) -> String {
    p.file_stem().unwrap().to_string_lossy().replace('.', "_")
}

fn name(p: &std::path::Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn repack_summary_of_every_golden() {
    for p in goldens() {
        let img = MappedImage::open(&p).unwrap();
        let opts = RepackOptions {
            compress: Some(Compression::Zstd(3)),
            chunk_pages: Some(1),
            format_minor: Some(ckpt_format::FORMAT_MINOR),
            ..Default::default()
        };
        let (_, sum) = repack::repack_to_vec(&img, &opts).unwrap();
        let n = name(&p);
        insta::assert_snapshot!(
            format!("repack_{}", stem(&p)),
            repack::render(&sum, &n, "out.ckpt")
        );
        insta::assert_snapshot!(
            format!("repack_json_{}", stem(&p)),
            serde_json::to_string_pretty(&repack::to_json(&sum, &n, "out.ckpt")).unwrap()
        );
    }
}

fn u16at(b: &[u8], o: usize) -> u64 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as u64
}
fn u32at(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64
}
fn u64at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The program headers and notes of an ELF core, one line each.
fn describe_core(b: &[u8]) -> String {
    let mut s = String::new();
    assert_eq!(&b[..4], b"\x7fELF");
    assert_eq!(u16at(b, 16), 4, "ET_CORE");
    let (phoff, phnum) = (u64at(b, 32) as usize, u16at(b, 56) as usize);
    for i in 0..phnum {
        let h = phoff + i * 56;
        let (kind, flags) = (u32at(b, h), u32at(b, h + 4));
        let (off, vaddr, filesz, memsz) = (
            u64at(b, h + 8),
            u64at(b, h + 16),
            u64at(b, h + 32),
            u64at(b, h + 40),
        );
        let f = |bit, c| if flags & bit != 0 { c } else { '-' };
        let _ = writeln!(
            s,
            "{} {}{}{} vaddr {vaddr:#x} filesz {filesz:#x} memsz {memsz:#x}",
            if kind == 4 { "NOTE" } else { "LOAD" },
            f(4, 'r'),
            f(2, 'w'),
            f(1, 'x'),
        );
        if kind == 4 {
            let mut o = off as usize;
            while o < (off + filesz) as usize {
                let (namesz, descsz, t) = (u32at(b, o), u32at(b, o + 4), u32at(b, o + 8));
                let nm = String::from_utf8_lossy(&b[o + 12..o + 12 + namesz as usize - 1]);
                let _ = writeln!(s, "  note {nm} type {t:#x} size {descsz}");
                o += 12
                    + (namesz as usize).next_multiple_of(4)
                    + (descsz as usize).next_multiple_of(4);
            }
        }
    }
    s
}

#[test]
fn core_of_every_golden() {
    let dir = std::env::temp_dir().join(format!("ckpt-golden-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for p in goldens() {
        let img = MappedImage::open(&p).unwrap();
        let out = dir.join(format!("{}.core", stem(&p)));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out)
            .unwrap();
        core::write_core(&img, &mut f).unwrap();
        drop(f);
        let text =
            core::render(&img, "core") + "\n" + &describe_core(&std::fs::read(&out).unwrap());
        insta::assert_snapshot!(format!("core_{}", stem(&p)), text);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn extract_range_summary_of_every_golden() {
    for p in goldens() {
        let img = MappedImage::open(&p).unwrap();
        // From the first region's start to a page past the heap: the gaps
        // between regions and after the heap are unmapped.
        let start = img.regions().iter().map(|r| r.start.0).min().unwrap();
        let heap = img.regions().iter().find(|r| r.name == b"[heap]").unwrap();
        let mut out = Vec::new();
        let (n, unmapped) = extract::write_range(&img, start, heap.end.0 + 4096, &mut out).unwrap();
        assert_eq!(n, out.len() as u64);
        insta::assert_snapshot!(
            format!("extract_range_{}", stem(&p)),
            extract::range_summary(n, unmapped)
        );
    }
}
