//! `ckpt image extract --range/--name` and `ckpt image validate` (files and
//! `-`), run as the user runs them: the `ckpt` binary on the golden images.

mod common;

use ckpt_format::{ChunkRef, MappedImage, RecordKind};
use common::goldens;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/golden")
        .join(name)
}

fn ckpt(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ckpt");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-image-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The image's memory as the spec defines it (§4.4, §5.4): for every
/// address, the byte of the chunk that covers it, or zero.
struct Memory {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl Memory {
    fn of(img: &MappedImage) -> Self {
        let ps = img.page_size();
        let chunks = img
            .chunks()
            .iter()
            .map(|c: &ChunkRef| {
                let mut buf = vec![0u8; (c.meta.pages as u64 * ps) as usize];
                img.read_chunk(c, &mut buf).unwrap();
                (c.meta.addr.0, buf)
            })
            .collect();
        Memory { chunks }
    }

    fn bytes(&self, start: u64, end: u64) -> Vec<u8> {
        (start..end)
            .map(|a| {
                self.chunks
                    .iter()
                    .find(|(s, b)| a >= *s && a < s + b.len() as u64)
                    .map_or(0, |(s, b)| b[(a - s) as usize])
            })
            .collect()
    }
}

fn extract(image: &Path, sel: &[&str], out: &Path) -> Output {
    let mut args = vec!["image", "extract", image.to_str().unwrap()];
    args.extend_from_slice(sel);
    args.extend_from_slice(&["-o", out.to_str().unwrap()]);
    ckpt(&args, &[])
}

#[test]
fn extract_range_gives_the_bytes_of_the_decoded_pages() {
    let p = golden("v1-tiny.ckpt");
    let img = MappedImage::open(&p).unwrap();
    let mem = Memory::of(&img);
    let dir = tempdir("range");
    let out = dir.join("range.bin");
    let heap = &img.regions()[1];
    assert_eq!(heap.name, b"[heap]");
    // Inside the heap, not page-aligned at either end: half of the raw
    // page, the pages no chunk covers, half of the zstd chunk.
    let chunks: Vec<&ChunkRef> = img.chunks().iter().filter(|c| c.meta.region == 1).collect();
    assert!(chunks.len() >= 2, "the heap holds a raw and a zstd chunk");
    let (a, b) = (heap.start.0 + 0x800, chunks[1].meta.addr.0 + 0x1800);
    let o = extract(&p, &["--range", &format!("{a:#x}-{b:#x}")], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len() as u64, b - a);
    let want = mem.bytes(a, b);
    assert_eq!(got, want);
    assert!(want.iter().any(|&x| x != 0), "the range holds stored pages");
    assert!(
        o.stderr.is_empty(),
        "no unmapped bytes: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Across regions: the code region (by reference, nothing stored), the
    // unmapped gap after it, the start of the heap; hex without 0x.
    let code = &img.regions()[0];
    let (a, b) = (code.start.0, heap.start.0 + 0x1000);
    let o = extract(&p, &["--range", &format!("{a:x}-{b:x}")], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got, mem.bytes(a, b));
    let gap = heap.start.0 - code.end.0;
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(msg.contains(&format!("{gap} of them unmapped")), "{msg}");

    // Bad ranges are refused with a message, not a panic.
    for bad in ["10-5", "zz-10", "100", "5-5"] {
        let o = extract(&p, &["--range", bad], &out);
        assert_eq!(o.status.code(), Some(1), "--range {bad}");
        assert!(!o.stderr.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn extract_name_gives_whole_regions() {
    let p = golden("v1-tiny.ckpt");
    let img = MappedImage::open(&p).unwrap();
    let mem = Memory::of(&img);
    let dir = tempdir("name");
    let out = dir.join("name.bin");
    for (name, i) in [
        ("[heap]", 1),
        ("[stack]", 2),
        ("counter", 0),
        ("/home/user/counter", 0),
    ] {
        let r = &img.regions()[i];
        let o = extract(&p, &["--name", name], &out);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = std::fs::read(&out).unwrap();
        assert_eq!(got.len() as u64, r.end.0 - r.start.0, "{name}");
        assert!(got == mem.bytes(r.start.0, r.end.0), "{name}: bytes differ");
    }
    let o = extract(&p, &["--name", "no-such-region"], &out);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no region is named"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_reads_an_image_from_stdin() {
    for p in goldens() {
        let bytes = std::fs::read(&p).unwrap();
        let o = ckpt(&["image", "validate", "-"], &bytes);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stdout)
        );
        let o = ckpt(&["image", "validate", "--json", "-"], &bytes);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["valid"], true, "{v}");
        // A pipe that ends early, and one with a flipped byte in the middle.
        let o = ckpt(&["image", "validate", "-"], &bytes[..bytes.len() / 2]);
        assert_eq!(o.status.code(), Some(1));
        let mut b = bytes.clone();
        b[bytes.len() / 2] ^= 0x80;
        let o = ckpt(&["image", "validate", "--json", "-"], &b);
        assert_eq!(o.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v[0]["valid"], false, "{v}");
        assert!(v[0]["problems"][0]["offset"].is_u64(), "{v}");
    }
}

#[test]
fn validate_accepts_the_goldens_and_rejects_every_corrupted_variant() {
    let dir = tempdir("variants");
    for p in goldens() {
        let bytes = std::fs::read(&p).unwrap();
        let o = ckpt(&["image", "validate", p.to_str().unwrap()], &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("valid"));

        let img = MappedImage::open(&p).unwrap();
        let trailer = bytes.len() - 32;
        let mut bounds: Vec<usize> = img.index().iter().map(|e| e.offset as usize).collect();
        let index_at = {
            let last = img.index().last().unwrap();
            last.offset as usize + 24 + img.record_payload(img.index().len() - 1).unwrap().len()
        };
        bounds.push(index_at);
        bounds.push(trailer);
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        // Every record's header, payload start and payload end; the
        // preamble; the INDEX; the trailer.
        for w in bounds.windows(2) {
            for at in [w[0] + 1, w[0] + 24, w[1] - 1] {
                let mut b = bytes.clone();
                b[at] ^= 0x01;
                variants.push((format!("bit flip at {at:#x}"), b));
            }
            variants.push((format!("cut at {:#x}", w[0]), bytes[..w[0]].to_vec()));
        }
        for at in [
            0,
            9,
            12,
            trailer,
            trailer + 8,
            trailer + 16,
            trailer + 24,
            trailer + 31,
        ] {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            variants.push((format!("bit flip at {at:#x}"), b));
        }
        variants.push(("no trailer".into(), bytes[..trailer].to_vec()));
        variants.push((
            "a byte after the trailer".into(),
            [&bytes[..], &[0]].concat(),
        ));
        variants.push(("empty".into(), Vec::new()));
        // Two records swapped: the first two REGIONs change places, so the
        // chunks of one region land in the other.
        let regions: Vec<usize> = img
            .index()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == RecordKind::Region.code())
            .map(|(i, _)| i)
            .collect();
        assert!(regions.len() >= 2);
        let (r0, r1) = (bounds[regions[0]], bounds[regions[0] + 1]);
        let (r2, r3) = (bounds[regions[1]], bounds[regions[1] + 1]);
        assert_eq!(r1, r2, "adjacent REGION records");
        let swapped = [&bytes[..r0], &bytes[r2..r3], &bytes[r0..r1], &bytes[r3..]].concat();
        variants.push(("two REGION records swapped".into(), swapped));

        let f = dir.join("variant.ckpt");
        for (what, b) in &variants {
            std::fs::write(&f, b).unwrap();
            let o = ckpt(&["image", "validate", f.to_str().unwrap()], &[]);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{}: {what} accepted:\n{}{}",
                p.display(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("INVALID"),
                "{what}"
            );
        }
    }
    // A file that cannot be read at all is 2, not 1.
    let o = ckpt(
        &[
            "image",
            "validate",
            dir.join("missing.ckpt").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An image with 80 MiB of stored pages (zstd, so the file is small).
fn big_image(dir: &Path) -> PathBuf {
    big_image_as(dir, "big.ckpt", true)
}

/// 80 MiB of stored pages, zstd (a small file) or raw (an 80 MiB file).
fn big_image_as(dir: &Path, name: &str, compress: bool) -> PathBuf {
    use ckpt_format::{Addr, Prot, Region, RegionKind};
    let mut s = ckpt_format::sample::tiny();
    let start = 0x7f00_0000_0000u64;
    let mib = 1u64 << 20;
    s.regions.push(Region {
        start: Addr(start),
        end: Addr(start + 80 * mib),
        prot: Prot(Prot::READ | Prot::WRITE),
        kind: RegionKind::Anon,
        ..Default::default()
    });
    let r = (s.regions.len() - 1) as u32;
    for k in 0..80u64 {
        s.chunks.push((
            r,
            start + k * mib,
            vec![(k as u8) | 1; mib as usize],
            compress,
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, s.encode().unwrap()).unwrap();
    p
}

/// `ckpt ARGS` with a terminal on stdin, stdout and stderr (script(1));
/// everything it wrote.
fn on_a_terminal(args: &[&str]) -> String {
    let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_ckpt"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    on_a_terminal_sh(&line.join(" "))
}

/// A shell command line run with a terminal on stdin, stdout and stderr.
fn on_a_terminal_sh(line: &str) -> String {
    let o = Command::new("script")
        .args(["-qfec", line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux; scripts/test.sh installs it)");
    assert!(
        o.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn progress_on_a_terminal_only_for_large_images() {
    let dir = tempdir("progress");
    let big = big_image(&dir);
    let b = big.to_str().unwrap();
    let out = dir.join("out.ckpt");
    let core = dir.join("big.core");
    let x = dir.join("x.bin");
    let runs: [(&str, Vec<&str>); 4] = [
        ("repack", vec!["image", "repack", b, out.to_str().unwrap()]),
        ("diff", vec!["image", "diff", b, b]),
        (
            "core",
            vec!["image", "core", b, "-o", core.to_str().unwrap()],
        ),
        (
            "extract",
            vec![
                "image",
                "extract",
                b,
                "--range",
                "7f0000000000-7f0005000000",
                "-o",
                x.to_str().unwrap(),
            ],
        ),
    ];
    for (what, args) in &runs {
        let tty = on_a_terminal(args);
        assert!(
            tty.contains(&format!("\r{what}: ")) && tty.contains("MiB / 80.0 MiB ("),
            "{what} shows progress on a terminal: {tty:?}"
        );
        assert!(
            tty.contains("\r\x1b[K"),
            "{what} erases its progress line: {tty:?}"
        );
        let piped = ckpt(args, &[]);
        let err = String::from_utf8_lossy(&piped.stderr);
        assert!(
            !err.contains(&format!("{what}: ")) && !err.contains('\r'),
            "{what}: no progress without a terminal: {err:?}"
        );
    }
    // validate of a large file (80 MiB raw) and of the same on stdin.
    let raw = big_image_as(&dir, "big-raw.ckpt", false);
    let r = raw.to_str().unwrap();
    let piped = ckpt(&["image", "validate", r], &[]);
    assert!(piped.status.success());
    let verdict = String::from_utf8_lossy(&piped.stdout)
        .trim_end()
        .to_string();
    assert!(
        verdict.ends_with("bytes)") && verdict.contains(": valid ("),
        "{verdict}"
    );
    assert!(piped.stderr.is_empty(), "{piped:?}");
    let tty = on_a_terminal(&["image", "validate", r]);
    assert!(
        tty.contains("\rvalidate: ") && tty.contains("MiB / 80."),
        "{tty:?}"
    );
    assert!(
        tty.contains(&verdict),
        "the same verdict on a terminal: {tty:?}"
    );
    let tty = on_a_terminal_sh(&format!(
        "'{}' image validate - < '{r}'",
        env!("CARGO_BIN_EXE_ckpt")
    ));
    assert!(tty.contains("\rvalidate: "), "{tty:?}");
    assert!(tty.contains(&verdict.replacen(r, "-", 1)), "{tty:?}");

    // A small image shows none, even on a terminal.
    let tiny = golden("v1-tiny.ckpt");
    let t = tiny.to_str().unwrap();
    let tty = on_a_terminal(&["image", "diff", t, t]);
    assert!(!tty.contains('\r') || !tty.contains("diff: "), "{tty:?}");
}
