//! `ckpt image diff`: two checkpoints of the same program, a generation
//! apart — what moved shows up field by field and page by page.

use ckpt_format::*;
use ckpt_tools::image::diff;

fn open(s: &sample::Sample) -> MappedImage {
    MappedImage::from_bytes(s.encode().unwrap()).unwrap()
}

/// The full sample, one generation later.
fn later() -> sample::Sample {
    let mut s = sample::full();
    s.header.generation = 2;
    s.header.created_ns += 60_000_000_000;
    s.process.cwd = b"/tmp".to_vec();
    s.threads[0].regs.rip += 0x40;
    s.threads[0].regs.rax = 7;
    s.threads.remove(1);
    let mut t = s.threads[0].clone();
    t.tid = Pid(4250);
    t.flags = ThreadFlags(0);
    s.threads.push(t);
    s.fds.retain(|f| f.fd.0 != 6);
    if let FdKind::Pipe { buffered, .. } = &mut s.fds.iter_mut().find(|f| f.fd.0 == 4).unwrap().kind
    {
        buffered.clear();
    }
    s.regions[2].prot = Prot(Prot::READ);
    s.regions.push(Region {
        start: Addr(0x7f00_3000_0000),
        end: Addr(0x7f00_3000_2000),
        prot: Prot(Prot::READ | Prot::WRITE),
        ..Default::default()
    });
    // Heap: the first page changes 16 bytes; one page is added, one zero page too.
    s.chunks[0].2[..16].fill(0xee);
    s.chunks.push((1, 0x5555_5557_0000, vec![1; 4096], false));
    s.chunks.push((1, 0x5555_5557_1000, vec![0; 4096], true));
    // Stack: the stored page is dropped (it read as non-zero: removed).
    s.chunks.retain(|c| c.0 != 2);
    s
}

#[test]
fn identical_images_have_no_difference() {
    let a = open(&sample::full());
    let d = diff::diff(&a, &open(&sample::full())).unwrap();
    assert!(d.is_identical());
    assert_eq!(diff::render(&d, "a", "b"), "--- a\n+++ b\nidentical\n");
    // Repacked (other chunking and compression) is still identical.
    let opts = ckpt_tools::image::repack::RepackOptions {
        chunk_pages: Some(1),
        compress: Some(ckpt_tools::image::repack::Compression::None),
        ..Default::default()
    };
    let (bytes, _) = ckpt_tools::image::repack::repack_to_vec(&a, &opts).unwrap();
    let b = MappedImage::from_bytes(bytes).unwrap();
    assert!(diff::diff(&a, &b).unwrap().is_identical());
}

#[test]
fn a_later_generation_shows_every_change() {
    let d = diff::diff(&open(&sample::full()), &open(&later())).unwrap();
    assert!(!d.is_identical());
    assert_eq!(d.threads_added, vec![4250]);
    assert_eq!(d.threads_removed, vec![4243]);
    assert_eq!(d.fds_removed, vec![6]);
    assert_eq!(d.fds_changed, vec![4]);
    let heap = d.pages.iter().find(|p| p.name == "[heap]").unwrap();
    assert_eq!(
        (heap.changed_pages, heap.changed_bytes, heap.added_pages),
        (1, 16, 1)
    );
    let stack = d.pages.iter().find(|p| p.name == "[stack]").unwrap();
    assert_eq!(stack.removed_pages, 1);
    insta::assert_snapshot!(
        "diff_full_later",
        diff::render(&d, "gen1.ckpt", "gen2.ckpt")
    );
    let j = diff::to_json(&d, "gen1.ckpt", "gen2.ckpt");
    assert_eq!(j["schema"], "ckpt-diff/1");
    assert_eq!(j["identical"], false);
    insta::assert_snapshot!(
        "diff_json_full_later",
        serde_json::to_string_pretty(&j).unwrap()
    );
}

#[test]
fn golden_tiny_against_full() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/golden");
    let a = MappedImage::open(dir.join("v1-tiny.ckpt")).unwrap();
    let b = MappedImage::open(dir.join("v1-full.ckpt")).unwrap();
    let d = diff::diff(&a, &b).unwrap();
    insta::assert_snapshot!(
        "diff_golden_tiny_full",
        diff::render(&d, "v1-tiny.ckpt", "v1-full.ckpt")
    );
}

#[test]
fn a_stack_that_grew_down_is_the_same_region() {
    let a = sample::full();
    let mut b = sample::full();
    let stack = b.regions.iter().position(|r| r.name == b"[stack]").unwrap();
    let old = b.regions[stack].start.0;
    b.regions[stack].start = Addr(old - 0x2000);
    // The new lowest page holds data; the page above it stays untouched.
    b.chunks
        .push((stack as u32, old - 0x2000, vec![9; 4096], false));
    let d = diff::diff(&open(&a), &open(&b)).unwrap();
    assert!(
        d.regions_added.is_empty() && d.regions_removed.is_empty(),
        "{d:?}"
    );
    assert_eq!(d.regions_changed.len(), 1, "{d:?}");
    let c = &d.regions_changed[0];
    assert_eq!(c.start, old);
    assert_eq!(c.fields.len(), 1, "{c:?}");
    assert_eq!(c.fields[0].field, "start");
    assert_eq!(c.fields[0].b, format!("{:#x}", old - 0x2000));
    let p = d.pages.iter().find(|p| p.name == "[stack]").unwrap();
    assert_eq!((p.changed_pages, p.added_pages, p.removed_pages), (0, 1, 0));
    assert_eq!(p.first, old - 0x2000);
}
