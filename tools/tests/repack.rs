//! `ckpt image repack` keeps what an image means: for random variations of
//! the full sample image and every option combination, the repacked image
//! decodes to the same metadata (file storage aside) and the same memory,
//! region by region — absent pages read as zero, or from the file for a
//! by-reference region.

use ckpt_format::raw::FLAG_SAFE_TO_COPY;
use ckpt_format::*;
use ckpt_tools::image::repack::{self, Compression, RepackOptions};
use proptest::prelude::*;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::OnceLock;

const PS: u64 = 4096;
const LIB_START: u64 = 0x7f00_2000_0000;
const LIB_PAGES: u64 = 6;
const UNKNOWN_SAFE: u16 = 0x7f01;
const UNKNOWN_UNSAFE: u16 = 0x7f02;

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-repack-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A file on this host and its identity: page k is filled with k + 1,
/// except page 2, which is zero; the last page is half a page long.
fn host_file() -> &'static FileIdentity {
    static F: OnceLock<FileIdentity> = OnceLock::new();
    F.get_or_init(|| {
        let p = tempdir().join("libsample.so");
        let mut b = Vec::new();
        for k in 0..LIB_PAGES {
            let fill = if k == 2 { 0 } else { k as u8 + 1 };
            let n = if k == LIB_PAGES - 1 { PS / 2 } else { PS };
            b.extend(std::iter::repeat_n(fill, n as usize));
        }
        std::fs::write(&p, &b).unwrap();
        identity(&p)
    })
}

fn identity(p: &std::path::Path) -> FileIdentity {
    let m = std::fs::metadata(p).unwrap();
    FileIdentity {
        path: p.as_os_str().as_encoded_bytes().to_vec(),
        dev: m.dev(),
        inode: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    }
}

fn file_page(k: u64) -> Vec<u8> {
    let mut v = vec![0u8; PS as usize];
    let n = if k == LIB_PAGES - 1 { PS / 2 } else { PS };
    if k != 2 && k < LIB_PAGES {
        v[..n as usize].fill(k as u8 + 1);
    }
    v
}

/// What varies between generated images.
#[derive(Clone, Debug)]
struct Variation {
    /// Heap pages stored: (page index, fill byte, compressed, starts a new chunk).
    heap: Vec<(u64, u8, bool, bool)>,
    /// Library pages stored: (page index, same as the file, compressed).
    lib: Vec<(u64, bool, bool)>,
    /// The library region is by reference (else embedded).
    lib_by_ref: bool,
    /// Keep the sample's own chunks.
    keep_sample_chunks: bool,
    /// Add unknown records.
    unknown: bool,
}

fn variation() -> impl Strategy<Value = Variation> {
    (
        proptest::collection::btree_map(
            0u64..0x21,
            (any::<u8>(), any::<bool>(), any::<bool>()),
            0..12,
        ),
        proptest::collection::btree_map(0u64..LIB_PAGES, (any::<bool>(), any::<bool>()), 0..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(heap, lib, lib_by_ref, keep, unknown)| Variation {
            heap: heap
                .into_iter()
                .map(|(k, (f, c, n))| (k, f, c, n))
                .collect(),
            lib: lib.into_iter().map(|(k, (s, c))| (k, s, c)).collect(),
            lib_by_ref,
            keep_sample_chunks: keep,
            unknown,
        })
}

/// Encodes sample::full() changed by `v`.
fn build(v: &Variation) -> Vec<u8> {
    let mut s = sample::full();
    // Region 0 (the program, by reference) refers to the host file.
    s.regions[0].backing.as_mut().unwrap().file = host_file().clone();
    s.regions.push(Region {
        start: Addr(LIB_START),
        end: Addr(LIB_START + LIB_PAGES * PS),
        prot: Prot(Prot::READ | Prot::WRITE),
        kind: RegionKind::File,
        name: host_file().path.clone(),
        backing: Some(FileBacking {
            file: host_file().clone(),
            offset: 0,
            storage: if v.lib_by_ref {
                FileStorage::ByReference
            } else {
                FileStorage::Embedded
            },
        }),
        ..Default::default()
    });
    let heap_start = s.regions[1].start.0;
    if !v.keep_sample_chunks {
        s.chunks.clear();
    }
    let taken = |s: &sample::Sample, a: u64| {
        s.chunks
            .iter()
            .any(|(_, ca, p, _)| *ca <= a && a < ca + p.len() as u64)
    };
    // Heap pages, merged into runs unless a page starts a new chunk.
    for &(k, fill, compress, new) in &v.heap {
        let a = heap_start + k * PS;
        if taken(&s, a) {
            continue;
        }
        let page = vec![fill; PS as usize];
        match s.chunks.last_mut() {
            Some((1, ca, p, _)) if !new && *ca + p.len() as u64 == a => p.extend(page),
            _ => s.chunks.push((1, a, page, compress)),
        }
    }
    for &(k, same, compress) in &v.lib {
        let mut page = file_page(k);
        if !same {
            page[7] ^= 0x55;
        }
        s.chunks.push((4, LIB_START + k * PS, page, compress));
    }

    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    for t in &s.threads {
        e.thread(t).unwrap();
    }
    for r in &s.regions {
        e.region(r).unwrap();
    }
    for f in &s.fds {
        e.fd(f).unwrap();
    }
    e.signals(&s.signals).unwrap();
    e.timers(&s.timers).unwrap();
    e.rlimits(&s.rlimits).unwrap();
    e.pid_table(&s.pid_table).unwrap();
    if v.unknown {
        e.write_raw_record(UNKNOWN_SAFE, FLAG_SAFE_TO_COPY, b"carry me")
            .unwrap();
        e.write_raw_record(UNKNOWN_UNSAFE, 0, b"drop me").unwrap();
    }
    for p in &s.socket_peers {
        e.socket_peer(p).unwrap();
    }
    for (region, addr, pages, compress) in &s.chunks {
        let meta = ChunkMeta {
            region: *region,
            addr: Addr(*addr),
            pages: (pages.len() as u64 / PS) as u32,
            encoding: ChunkEncoding::Raw,
        };
        if *compress {
            e.chunk(&EncodedChunk::zstd(meta, pages, 3).unwrap())
                .unwrap();
        } else {
            e.chunk(&EncodedChunk::raw(meta, pages)).unwrap();
        }
    }
    e.finish().unwrap()
}

/// The memory of region `i` as the restorer would rebuild it.
fn memory(img: &MappedImage, i: usize) -> Vec<u8> {
    let r = &img.regions()[i];
    let n = ((r.end.0 - r.start.0) / PS) as usize;
    let mut stored = vec![false; n];
    let mut out = vec![0u8; n * PS as usize];
    for c in img.chunks().iter().filter(|c| c.meta.region as usize == i) {
        let off = (c.meta.addr.0 - r.start.0) as usize;
        let len = c.meta.pages as usize * PS as usize;
        img.read_chunk(c, &mut out[off..off + len]).unwrap();
        stored[off / PS as usize..(off + len) / PS as usize].fill(true);
    }
    if let Some(b) = r
        .backing
        .as_ref()
        .filter(|b| b.storage == FileStorage::ByReference)
    {
        let file =
            std::fs::read(std::ffi::OsStr::from_encoded_bytes_checked(&b.file.path)).unwrap();
        for (k, s) in stored.iter().enumerate() {
            if !s {
                let from = b.offset as usize + k * PS as usize;
                for j in 0..PS as usize {
                    out[k * PS as usize + j] = file.get(from + j).copied().unwrap_or(0);
                }
            }
        }
    }
    out
}

trait FromBytes {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr;
}
impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_checked(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// The metadata repack keeps (file storage and format version aside), as
/// one comparable value.
fn comparable(img: &MappedImage) -> String {
    let m = img.metadata();
    let mut regions = m.regions.clone();
    for r in &mut regions {
        if let Some(b) = r.backing.as_mut() {
            b.storage = FileStorage::Embedded;
        }
    }
    format!(
        "{:?}",
        (
            &m.header,
            &m.process,
            &m.threads,
            regions,
            &m.fds,
            (
                &m.signals,
                &m.timers,
                &m.rlimits,
                &m.pid_table,
                &m.socket_peers,
                img.zombies(),
                img.shared_memory()
            ),
        )
    )
}

fn all_options() -> Vec<RepackOptions> {
    let mut v = Vec::new();
    for compress in [
        None,
        Some(Compression::None),
        Some(Compression::Zstd(1)),
        Some(Compression::Zstd(5)),
    ] {
        for chunk_pages in [None, Some(1), Some(3), Some(64)] {
            for (embed_files, by_reference) in [(false, false), (true, false), (false, true)] {
                v.push(RepackOptions {
                    compress,
                    chunk_pages,
                    embed_files,
                    by_reference,
                    format_minor: None,
                });
            }
        }
    }
    v
}

fn check(bytes: Vec<u8>) {
    let x = MappedImage::from_bytes(bytes).unwrap();
    assert!(x.validate().is_valid());
    for opts in all_options() {
        let (out, sum) = repack::repack_to_vec(&x, &opts).unwrap();
        let rep = validate_bytes(&out);
        assert!(rep.is_valid(), "{opts:?}: {:?}", rep.problems);
        let y = MappedImage::from_bytes(out).unwrap();
        assert!(
            comparable(&x) == comparable(&y),
            "{opts:?}: metadata differs"
        );
        assert_eq!(x.version(), y.version(), "{opts:?}");
        for i in 0..x.regions().len() {
            assert!(
                memory(&x, i) == memory(&y, i),
                "{opts:?}: region {i} differs"
            );
        }
        for c in y.chunks() {
            if let Some(n) = opts.chunk_pages {
                assert!(
                    c.meta.pages <= n,
                    "{opts:?}: chunk of {} pages",
                    c.meta.pages
                );
            }
            match opts.compress {
                Some(Compression::None) => assert_eq!(c.meta.encoding, ChunkEncoding::Raw),
                Some(Compression::Zstd(_)) => assert_eq!(c.meta.encoding, ChunkEncoding::Zstd),
                None => {}
            }
        }
        let storage =
            |img: &MappedImage, i: usize| img.regions()[i].backing.as_ref().unwrap().storage;
        if opts.embed_files {
            assert_eq!(storage(&y, 0), FileStorage::Embedded);
            assert_eq!(storage(&y, 4), FileStorage::Embedded);
        }
        if opts.by_reference {
            assert_eq!(storage(&y, 4), FileStorage::ByReference);
        }
        let kinds: Vec<u16> = y.skipped_records().iter().map(|s| s.1).collect();
        if x.skipped_records().is_empty() {
            assert!(kinds.is_empty());
        } else {
            assert_eq!(kinds, vec![UNKNOWN_SAFE], "{opts:?}");
            assert_eq!(sum.records_dropped, vec![UNKNOWN_UNSAFE]);
            let i = y
                .index()
                .iter()
                .position(|e| e.kind == UNKNOWN_SAFE)
                .unwrap();
            assert_eq!(y.record_payload(i).unwrap(), b"carry me");
        }
    }
}

/// Repack of `x` into every format version this build writes: the ones
/// that can express it give the same image in that version; older ones
/// are refused naming what they cannot hold.
fn check_versions(x: &MappedImage) {
    let needed = minor_for_image(x.fds(), x.zombies(), x.shared_memory());
    for m in 0..=FORMAT_MINOR {
        let opts = RepackOptions {
            format_minor: Some(m),
            compress: Some(Compression::Zstd(1)),
            ..Default::default()
        };
        match repack::repack_to_vec(x, &opts) {
            Ok((out, sum)) => {
                assert!(
                    m >= needed,
                    "1.{m} cannot hold an image that needs 1.{needed}"
                );
                assert!(validate_bytes(&out).is_valid(), "1.{m}");
                let y = MappedImage::from_bytes(out).unwrap();
                assert_eq!(y.version(), (1, m));
                assert_eq!(sum.format.is_some(), x.version() != (1, m));
                assert!(comparable(x) == comparable(&y), "1.{m}: metadata differs");
                for i in 0..x.regions().len() {
                    assert!(memory(x, i) == memory(&y, i), "1.{m}: region {i} differs");
                }
                // And back to the lowest version.
                let (back, _) = repack::repack_to_vec(&y, &RepackOptions::default()).unwrap();
                let z = MappedImage::from_bytes(back).unwrap();
                assert_eq!(z.version(), (1, needed));
                assert!(comparable(x) == comparable(&z));
            }
            Err(e) => {
                assert!(m < needed, "1.{m}: {e:#}");
                assert!(format!("{e:#}").contains("cannot write format"), "{e:#}");
            }
        }
    }
}

#[test]
fn format_versions_convert_up_and_refuse_down() {
    let mut s = sample::full();
    s.regions[0].backing.as_mut().unwrap().file = host_file().clone();
    check_versions(&MappedImage::from_bytes(s.encode().unwrap()).unwrap());
    s.zombies = vec![Zombie {
        pid: Pid(4242),
        status: 7 << 8,
    }];
    let x = MappedImage::from_bytes(s.encode().unwrap()).unwrap();
    assert_eq!(x.version(), (1, 2));
    check_versions(&x);
    let err = repack::repack_to_vec(
        &x,
        &RepackOptions {
            format_minor: Some(1),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("1 unreaped children (ZOMBIES: 1.2)"),
        "{err:#}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn repack_keeps_metadata_and_memory(v in variation()) {
        let bytes = build(&v);
        check_versions(&MappedImage::from_bytes(bytes.clone()).unwrap());
        check(bytes);
    }
}

#[test]
fn repack_of_the_golden_images_keeps_metadata_and_memory() {
    // The golden images refer to files this host does not have: only the
    // options that need no file apply.
    for name in ["v1-tiny.ckpt", "v1-full.ckpt"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../spec/golden")
            .join(name);
        let x = MappedImage::open(&p).unwrap();
        let opts = RepackOptions {
            compress: Some(Compression::None),
            chunk_pages: Some(2),
            ..Default::default()
        };
        let (out, _) = repack::repack_to_vec(&x, &opts).unwrap();
        let y = MappedImage::from_bytes(out).unwrap();
        assert_eq!(x.metadata().header, y.metadata().header);
        assert!(comparable(&x) == comparable(&y), "{name}: metadata differs");
        for i in 0..x.regions().len() {
            if x.regions()[i].backing.is_none() {
                assert!(memory(&x, i) == memory(&y, i));
            }
        }
        let err = repack::repack_to_vec(
            &x,
            &RepackOptions {
                embed_files: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/home/user/counter"), "{err:#}");
    }
}

#[test]
fn repack_file_never_clobbers_output_on_error() {
    let dir = tempdir();
    let input = dir.join("in.ckpt");
    let output = dir.join("out.ckpt");
    std::fs::write(&input, sample::tiny().encode().unwrap()).unwrap();
    std::fs::write(&output, b"precious").unwrap();
    let opts = RepackOptions {
        embed_files: true,
        ..Default::default()
    };
    assert!(repack::repack_file(&input, &output, &opts).is_err());
    assert_eq!(std::fs::read(&output).unwrap(), b"precious");
    assert!(!dir.join("out.ckpt.tmp").exists());
    let sum = repack::repack_file(&input, &output, &RepackOptions::default()).unwrap();
    assert!(validate_bytes(&std::fs::read(&output).unwrap()).is_valid());
    assert_eq!(sum.pages_in, sum.pages_out);
}
