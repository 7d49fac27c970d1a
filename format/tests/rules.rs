//! The structural rules of the format, each broken on purpose: images are
//! built here by a second, independent writer ([`RawImage`], straight from
//! the spec tables in `raw.rs`) so they can break rules the `Encoder`
//! refuses to break. Every reader must report each broken rule, with its
//! offset, and `validate` must list every problem, not just the first.

mod common;

use ckpt_format::raw;
use ckpt_format::sample;
use ckpt_format::*;
use common::raw_image::{base, region, Payloads, RawImage, PS};

/// Every reader refuses the image, and both validators list a problem
/// whose message contains `needle`; returns the byte validator's problems.
fn refused(b: &[u8], needle: &str) -> Vec<Error> {
    let e = MappedImage::from_bytes(b.to_vec())
        .and_then(|img| {
            // Page data problems surface when the chunk is read.
            for c in img.chunks() {
                let mut out = vec![0; c.meta.pages as usize * PS as usize];
                img.read_chunk(c, &mut out)?;
            }
            Ok(())
        })
        .expect_err("mapped reader accepted it");
    assert!(e.offset().is_some(), "{e}");
    let e = common::decode_stream(b).expect_err("stream decoder accepted it");
    assert!(e.offset().is_some(), "{e}");
    let rep = validate_bytes(b);
    assert!(
        rep.problems.iter().any(|p| p.to_string().contains(needle)),
        "validate_bytes: no {needle:?} in {:#?}",
        rep.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    );
    let srep = validate_reader(b);
    assert!(
        srep.problems.iter().any(|p| p.to_string().contains(needle)),
        "validate_reader: no {needle:?} in {:#?}",
        srep.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    );
    rep.problems
}

#[test]
fn the_independent_writer_agrees_with_the_encoder() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(0, 0x11000, 2, 0, &vec![7; 2 * PS as usize], None);
    let frame = compress_pages(&vec![9; 3 * PS as usize], 3).unwrap();
    r.chunk(0, 0x14000, 3, 1, &frame, None);
    let b = r.finish();
    let rep = validate_bytes(&b);
    assert!(rep.is_valid(), "{:?}", rep.problems);
    assert!(validate_reader(&b[..]).is_valid());
    let img = MappedImage::from_bytes(b).unwrap();
    assert_eq!(img.regions()[0].start, Addr(0x10000));
    let mut out = vec![0; 3 * PS as usize];
    img.read_chunk(&img.chunks()[1], &mut out).unwrap();
    assert!(out.iter().all(|&b| b == 9));
}

/// The payload tables in `raw::payloads` are the bytes the encoder writes.
#[test]
fn payload_layouts_match_the_spec_tables() {
    let s = sample::tiny();
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    e.rlimits(&[Rlimit {
        resource: 7,
        cur: 1024,
        max: 4096,
    }])
    .unwrap();
    e.socket_peer(&SocketPeer {
        socket_id: 5,
        peer_unique_id: "ab".into(),
        peer_host: "h".into(),
        peer_socket_id: 6,
    })
    .unwrap();
    let img = MappedImage::from_bytes(e.finish().unwrap()).unwrap();
    let mut want = 1u32.to_le_bytes().to_vec();
    want.extend(7u32.to_le_bytes());
    want.extend(1024u64.to_le_bytes());
    want.extend(4096u64.to_le_bytes());
    assert_eq!(img.record_payload(3).unwrap(), &want[..]);
    let mut want = 5u64.to_le_bytes().to_vec();
    want.extend(2u32.to_le_bytes());
    want.extend(b"ab");
    want.extend(1u32.to_le_bytes());
    want.extend(b"h");
    want.extend(6u64.to_le_bytes());
    assert_eq!(img.record_payload(4).unwrap(), &want[..]);
    // A region, as `region()` above builds it by hand.
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    e.region(&Region {
        start: Addr(0x10000),
        end: Addr(0x20000),
        prot: Prot(3),
        ..Default::default()
    })
    .unwrap();
    let img = MappedImage::from_bytes(e.finish().unwrap()).unwrap();
    assert_eq!(
        img.record_payload(3).unwrap(),
        &region(0x10000, 0x20000)[..]
    );
    // Flags: every v1 kind is critical.
    for e in img.index() {
        assert_ne!(e.flags & raw::FLAG_CRITICAL, 0);
    }
}

#[test]
fn overlapping_chunks_are_refused() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(0, 0x11000, 4, 0, &vec![1; 4 * PS as usize], None);
    r.chunk(0, 0x13000, 1, 0, &vec![2; PS as usize], None);
    refused(&r.finish(), "overlaps the chunk");
}

#[test]
fn a_chunk_covering_several_is_reported_against_each() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 0, &vec![1; PS as usize], None);
    r.chunk(0, 0x13000, 1, 0, &vec![1; PS as usize], None);
    r.chunk(0, 0x10000, 8, 0, &vec![2; 8 * PS as usize], None);
    let problems = refused(&r.finish(), "overlaps the chunk");
    let n = problems
        .iter()
        .filter(|p| p.to_string().contains("overlaps the chunk"))
        .count();
    assert_eq!(n, 2, "{problems:?}");
}

#[test]
fn chunks_outside_their_region_are_refused() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(0, 0x1f000, 2, 0, &vec![1; 2 * PS as usize], None);
    refused(&r.finish(), "outside region");
}

#[test]
fn chunks_before_their_region_are_refused() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(1, 0x30000, 1, 0, &vec![1; PS as usize], None);
    r.record(RecordKind::Region, &region(0x30000, 0x31000));
    refused(&r.finish(), "only 1 precede it");
}

#[test]
fn misaligned_and_overlapping_regions_are_refused() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.record(RecordKind::Region, &region(0x30001, 0x31000));
    refused(&r.finish(), "not page-aligned");
    let mut r = base(&p);
    r.record(RecordKind::Region, &region(0x1f000, 0x21000));
    refused(&r.finish(), "overlap");
}

#[test]
fn duplicate_once_only_records_are_refused() {
    let p = Payloads::of_tiny();
    for kind in [
        RecordKind::Header,
        RecordKind::Process,
        RecordKind::Signals,
        RecordKind::Timers,
        RecordKind::Rlimits,
        RecordKind::PidTable,
    ] {
        let payload = p.get(kind, 0);
        let mut r = base(&p);
        if kind != RecordKind::Header && kind != RecordKind::Process {
            r.record(kind, &payload);
        }
        r.record(kind, &payload);
        refused(&r.finish(), &format!("second {kind} record"));
    }
}

#[test]
fn missing_header_process_or_threads_are_refused() {
    let p = Payloads::of_tiny();
    let mut r = RawImage::new();
    r.record(RecordKind::Header, &p.get(RecordKind::Header, 0))
        .record(RecordKind::Process, &p.get(RecordKind::Process, 0));
    refused(&r.finish(), "no THREAD record");
    let mut r = RawImage::new();
    r.record(RecordKind::Header, &p.get(RecordKind::Header, 0))
        .record(RecordKind::Thread, &p.get(RecordKind::Thread, 0));
    refused(&r.finish(), "no PROCESS record");
    let mut r = RawImage::new();
    r.record(RecordKind::Process, &p.get(RecordKind::Process, 0))
        .record(RecordKind::Header, &p.get(RecordKind::Header, 0))
        .record(RecordKind::Thread, &p.get(RecordKind::Thread, 0));
    refused(&r.finish(), "first record must be HEADER");
}

#[test]
fn zstd_chunks_must_decompress_to_exactly_their_pages() {
    let p = Payloads::of_tiny();
    for (raw_len, needle) in [(2 * PS as usize, "decompress"), (100, "decompress")] {
        let mut r = base(&p);
        let frame = compress_pages(&vec![0; raw_len], 3).unwrap();
        r.chunk(0, 0x11000, 1, 1, &frame, None);
        refused(&r.finish(), needle);
    }
    // Not a zstd frame at all.
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 1, b"definitely not zstd", None);
    refused(&r.finish(), "decompress");
}

#[test]
fn a_zstd_bomb_is_stopped_at_the_chunk_size() {
    // 64 MiB of zeros compress to a few KiB; declared as one page.
    let p = Payloads::of_tiny();
    let frame = compress_pages(&vec![0; 64 << 20], 1).unwrap();
    assert!(frame.len() < 1 << 20);
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 1, &frame, None);
    let start = std::time::Instant::now();
    refused(&r.finish(), "decompress");
    assert!(start.elapsed().as_secs() < 10);
}

#[test]
fn pad_rules_are_enforced() {
    let p = Payloads::of_tiny();
    // A zstd chunk with a pad.
    let frame = compress_pages(&vec![3; PS as usize], 3).unwrap();
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 1, &frame, Some(8));
    refused(&r.finish(), "nonzero pad");
    // A raw chunk whose data is not page-aligned in the file.
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 0, &vec![3; PS as usize], Some(0));
    refused(&r.finish(), "page-aligned offset");
}

#[test]
fn long_paths_are_refused_before_allocating() {
    let p = Payloads::of_tiny();
    let mut reg = region(0x30000, 0x31000);
    reg[23..27].copy_from_slice(&(2u32 << 20).to_le_bytes());
    let mut r = base(&p);
    r.record(RecordKind::Region, &reg);
    let problems = refused(&r.finish(), "path length");
    assert!(problems
        .iter()
        .any(|p| matches!(p, Error::LimitExceeded { limit, .. } if *limit == MAX_PATH)));
}

#[test]
fn oversized_xsave_is_refused() {
    // The encoder will not write one...
    let s = sample::tiny();
    let mut t = s.threads[0].clone();
    t.xsave = vec![0; (MAX_XSAVE + 1) as usize];
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    let err = e
        .thread(&t)
        .expect_err("the encoder wrote an oversized XSAVE area");
    assert!(
        matches!(err, Error::LimitExceeded { limit, .. } if limit == MAX_XSAVE),
        "{err}"
    );
    // ...and every reader refuses one that another writer made: the
    // sample's THREAD payload with its XSAVE area grown past the limit.
    let p = Payloads::of_tiny();
    let good = p.get(RecordKind::Thread, 0);
    let u32_at = |o: usize| u32::from_le_bytes(good[o..o + 4].try_into().unwrap()) as usize;
    let n = 12 + u32_at(8); // spec §4.3: regs at n, xsave at n + 216
    let old = u32_at(n + 216);
    let mut bad = good[..n + 216].to_vec();
    bad.extend_from_slice(&(MAX_XSAVE as u32 + 1).to_le_bytes());
    bad.resize(bad.len() + MAX_XSAVE as usize + 1, 0);
    bad.extend_from_slice(&good[n + 220 + old..]);
    let mut r = base(&p);
    r.record(RecordKind::Thread, &bad);
    refused(&r.finish(), "XSAVE area size");
}

#[test]
fn the_encoder_refuses_what_a_reader_would_refuse() {
    let s = sample::tiny();
    // A string over MAX_STRING.
    let mut h = s.header.clone();
    h.program = "x".repeat(MAX_STRING as usize + 1);
    let err = Encoder::new(Vec::new(), &h)
        .err()
        .expect("long program name written");
    assert!(
        matches!(err, Error::LimitExceeded { limit, .. } if limit == MAX_STRING),
        "{err}"
    );
    // A path over MAX_PATH, reported at the offset it would have had.
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    let mut r = s.regions[0].clone();
    r.name = vec![b'/'; MAX_PATH as usize + 1];
    let at = e.offset();
    match e.region(&r) {
        Err(Error::LimitExceeded { at: a, limit, .. }) => {
            assert_eq!(limit, MAX_PATH);
            assert_eq!(a.offset, at + 24 + 23, "the name's length field");
            assert_eq!(a.record, Some(RecordKind::Region));
        }
        other => panic!("long region name: {other:?}"),
    }
    // Once-only records, twice.
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.signals(&s.signals).unwrap();
    assert!(matches!(e.signals(&s.signals), Err(Error::Usage(_))));
    e.timers(&s.timers).unwrap();
    assert!(matches!(e.timers(&s.timers), Err(Error::Usage(_))));
    e.rlimits(&s.rlimits).unwrap();
    assert!(matches!(e.rlimits(&s.rlimits), Err(Error::Usage(_))));
    e.pid_table(&s.pid_table).unwrap();
    assert!(matches!(e.pid_table(&s.pid_table), Err(Error::Usage(_))));
}

#[test]
fn chunk_page_counts_are_limited() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.chunk(0, 0x10000, MAX_CHUNK_PAGES + 1, 1, b"x", None);
    refused(&r.finish(), "chunk page count");
    let mut r = base(&p);
    r.chunk(0, 0x10000, 0, 0, b"", None);
    refused(&r.finish(), "zero pages");
}

/// Several independent problems in one image: both validators list every
/// one, in image order, each at its own offset.
#[test]
fn validation_lists_every_problem() {
    let mut b = sample::tiny().encode().unwrap();
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    let at = |k: RecordKind| {
        img.index()
            .iter()
            .find(|e| e.kind == k.code())
            .unwrap()
            .offset
    };
    let (thread, fd, signals) = (
        at(RecordKind::Thread),
        at(RecordKind::Fd),
        at(RecordKind::Signals),
    );
    for off in [thread, fd, signals] {
        b[off as usize + 30] ^= 0x55;
    }
    for rep in [validate_bytes(&b), validate_reader(&b[..])] {
        let crc_offsets: Vec<u64> = rep
            .problems
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    Error::Crc {
                        what: "payload",
                        ..
                    }
                )
            })
            .filter_map(|p| p.offset())
            .collect();
        assert_eq!(
            crc_offsets,
            vec![thread, fd, signals],
            "{:#?}",
            rep.problems
        );
        assert!(
            rep.problems
                .iter()
                .any(|p| matches!(p, Error::Crc { what: "image", .. })),
            "{:#?}",
            rep.problems
        );
    }
}

/// An unknown critical record in the middle: the stream validator says
/// unsupported and still finds the damage after it.
#[test]
fn validation_goes_on_past_an_unsupported_record() {
    let p = Payloads::of_tiny();
    let mut r = base(&p);
    r.record_flags(0x7001, raw::FLAG_CRITICAL, b"from the future");
    r.chunk(0, 0x11000, 1, 0, &vec![5; PS as usize], None);
    let mut b = r.finish();
    let img_len = b.len();
    // Damage the chunk's data (its last page byte before the index).
    let chunk_data_end = img_len - 32 - (24 + 8 + 16 * 6);
    b[chunk_data_end - 1] ^= 1;
    for rep in [validate_bytes(&b), validate_reader(&b[..])] {
        assert!(
            rep.problems.iter().any(|p| p.is_unsupported()),
            "{:#?}",
            rep.problems
        );
        assert!(
            rep.problems
                .iter()
                .any(|p| matches!(p, Error::Crc { what: "payload", at, .. } if at.record == Some(RecordKind::Pages))),
            "{:#?}",
            rep.problems
        );
    }
}

#[test]
fn the_stream_decoder_stops_after_an_error() {
    let mut b = sample::tiny().encode().unwrap();
    b[20] ^= 1; // the HEADER record header
    let mut d = StreamDecoder::new(&b[..]);
    assert!(d.next_item().is_err());
    assert!(matches!(d.next_item(), Ok(None)));
}

#[test]
fn trailing_bytes_after_the_trailer_are_refused_by_the_stream() {
    let mut b = sample::tiny().encode().unwrap();
    b.push(0);
    assert!(common::decode_stream(&b).is_err());
    assert!(!validate_reader(&b[..]).is_valid());
    assert!(!validate_bytes(&b).is_valid());
}

#[test]
fn the_encoder_refuses_to_write_a_broken_image() {
    let s = sample::tiny();
    let new = || {
        let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
        e.process(&s.process).unwrap();
        e
    };
    let reg = |start: u64, end: u64| Region {
        start: Addr(start),
        end: Addr(end),
        ..Default::default()
    };
    let meta = |region, addr, pages| ChunkMeta {
        region,
        addr: Addr(addr),
        pages,
        encoding: ChunkEncoding::Raw,
    };
    let page = vec![0u8; PS as usize];

    assert!(matches!(new().finish(), Err(Error::Usage(_))), "no thread");
    let mut e = new();
    assert!(e.process(&s.process).is_err(), "second PROCESS");
    let mut e = new();
    e.region(&reg(0x10000, 0x20000)).unwrap();
    assert!(e.region(&reg(0x1f000, 0x21000)).is_err(), "overlap");
    assert!(e.region(&reg(0x30001, 0x31000)).is_err(), "misaligned");
    assert!(e.region(&reg(0x30000, 0x30000)).is_err(), "empty");
    assert_eq!(e.region(&reg(0x20000, 0x21000)).unwrap(), 1);
    assert!(
        e.chunk(&EncodedChunk::raw(meta(2, 0x20000, 1), &page))
            .is_err(),
        "no such region"
    );
    e.chunk(&EncodedChunk::raw(meta(0, 0x10000, 1), &page))
        .unwrap();
    assert!(
        e.chunk(&EncodedChunk::raw(meta(0, 0x10000, 1), &page))
            .is_err(),
        "overlapping chunk"
    );
    assert!(
        e.chunk(&EncodedChunk::raw(meta(0, 0x1f000, 2), &[0; 8192]))
            .is_err(),
        "outside its region"
    );
    assert!(
        e.chunk(&EncodedChunk::raw(meta(1, 0x20000, 1), &page[..100]))
            .is_err(),
        "raw length"
    );
    let two_pages = compress_pages(&[0; 8192], 3).unwrap();
    assert!(
        e.chunk(&EncodedChunk::from_zstd_frame(
            meta(1, 0x20000, 1),
            two_pages
        ))
        .is_err(),
        "frame of another size"
    );
    assert!(
        e.chunk(&EncodedChunk::from_zstd_frame(
            meta(1, 0x20000, 1),
            b"not zstd".to_vec()
        ))
        .is_err(),
        "not a frame"
    );
    e.chunk(&EncodedChunk::zstd(meta(1, 0x20000, 1), &page, 3).unwrap())
        .unwrap();
    e.thread(&s.threads[0]).unwrap();
    let b = e.finish().unwrap();
    assert!(validate_bytes(&b).is_valid());
}

#[test]
fn a_zstd_chunk_is_exactly_one_frame() {
    let p = Payloads::of_tiny();
    // Two frames that together decompress to the page: refused.
    let mut two = compress_pages(&vec![1; PS as usize / 2], 3).unwrap();
    two.extend(compress_pages(&vec![2; PS as usize / 2], 3).unwrap());
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 1, &two, None);
    refused(&r.finish(), "zstd frame is");
    // A skippable frame after the page's frame: refused.
    let mut skip = compress_pages(&vec![1; PS as usize], 3).unwrap();
    skip.extend(0x184D2A50u32.to_le_bytes());
    skip.extend(4u32.to_le_bytes());
    skip.extend([0; 4]);
    let mut r = base(&p);
    r.chunk(0, 0x11000, 1, 1, &skip, None);
    refused(&r.finish(), "zstd frame is");
    // A frame whose header claims another size: refused from the header.
    let mut r = base(&p);
    let frame = compress_pages(&vec![1; 2 * PS as usize], 3).unwrap();
    r.chunk(0, 0x11000, 1, 1, &frame, None);
    refused(&r.finish(), "declares 8192 bytes");
}

/// Minor versions may append fields to a record: a reader skips them in
/// an image of a newer minor, and refuses them in its own.
#[test]
fn fields_appended_by_a_newer_minor_are_skipped() {
    let p = Payloads::of_tiny();
    let build = |minor: u16| {
        let mut r = RawImage::new();
        let mut pre = raw::Preamble::current();
        pre.minor = minor;
        pre.crc = crc32fast::hash(&raw::to_bytes(&pre)[..12]);
        r.bytes = raw::to_bytes(&pre);
        let mut thread = p.get(RecordKind::Thread, 0);
        thread.extend(b"a field from the future");
        r.record(RecordKind::Header, &p.get(RecordKind::Header, 0))
            .record(RecordKind::Process, &p.get(RecordKind::Process, 0))
            .record(RecordKind::Thread, &thread);
        r.finish()
    };
    let newer = build(FORMAT_MINOR + 1);
    let img = MappedImage::from_bytes(newer.clone()).unwrap();
    assert_eq!(img.version(), (FORMAT_MAJOR, FORMAT_MINOR + 1));
    assert_eq!(img.threads()[0], sample::tiny().threads[0]);
    assert!(validate_bytes(&newer).is_valid());
    assert!(validate_reader(&newer[..]).is_valid());
    refused(&build(FORMAT_MINOR), "trailing bytes");
}
