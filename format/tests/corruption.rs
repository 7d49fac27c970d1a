//! Damaged images: every single-byte flip, truncation at every record
//! boundary, unknown records, hostile lengths.

mod common;

use ckpt_format::raw::{self, RecordHeader};
use ckpt_format::sample;
use ckpt_format::*;
use proptest::prelude::*;

fn tiny_bytes() -> Vec<u8> {
    sample::tiny().encode().unwrap()
}

/// Every single-byte flip of the tiny image is either reported by
/// validation (bytes and stream) and refused by the mapped reader, or the
/// image decodes to exactly the original.
#[test]
fn every_byte_flip_is_detected_or_harmless() {
    let orig = tiny_bytes();
    let s = sample::tiny();
    let mut harmless = 0;
    for i in 0..orig.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = orig.clone();
            b[i] ^= mask;
            let rep = validate_bytes(&b);
            let srep = validate_reader(&b[..]);
            let mapped = common::decode_mapped(&b);
            let stream = common::decode_stream(&b);
            if rep.is_valid() {
                // Validation found nothing: then the image must be the same.
                assert!(
                    srep.is_valid(),
                    "byte {i:#x} ^ {mask:#x}: stream validation disagrees"
                );
                let (m, p) =
                    mapped.unwrap_or_else(|e| panic!("byte {i:#x}: valid but mapped fails: {e}"));
                common::assert_matches(&s, &m, &p);
                let (m, p) = stream.unwrap();
                common::assert_matches(&s, &m, &p);
                harmless += 1;
            } else {
                assert!(
                    !srep.is_valid(),
                    "byte {i:#x} ^ {mask:#x}: only the byte validator noticed"
                );
                assert!(
                    stream.is_err(),
                    "byte {i:#x} ^ {mask:#x}: stream decoder accepted a damaged image"
                );
                // Page data is checked lazily by the mapped reader: a flip in
                // page data may open, but reading that chunk must fail.
                assert!(
                    mapped.is_err(),
                    "byte {i:#x} ^ {mask:#x}: mapped reader accepted a damaged image"
                );
                for p in &rep.problems {
                    assert!(p.offset().is_some(), "problem without offset: {p}");
                }
            }
        }
    }
    // Every byte of the tiny image is covered by some CRC except pad bytes,
    // which are checked to be zero: nothing is harmless.
    assert_eq!(harmless, 0, "{harmless} flips went unnoticed");
}

fn record_offsets(b: &[u8]) -> Vec<u64> {
    let img = MappedImage::from_bytes(b.to_vec()).unwrap();
    let mut v: Vec<u64> = img.index().iter().map(|e| e.offset).collect();
    let t: raw::Trailer = raw::from_bytes(&b[b.len() - 32..]).unwrap();
    v.push(t.index_offset);
    v.push(b.len() as u64 - raw::TRAILER_LEN);
    v
}

/// Cut at every record boundary (and inside each record header and
/// payload): every reader says truncated, with the offset where bytes ran
/// out, and never panics.
#[test]
fn truncation_is_reported_with_its_offset() {
    let orig = sample::full().encode().unwrap();
    let mut cuts: Vec<u64> = vec![0, 5, 15, 16];
    for o in record_offsets(&orig) {
        cuts.extend([o, o + 1, o + 23, o + 24, o + 25, o + 100]);
    }
    cuts.push(orig.len() as u64 - 1);
    cuts.retain(|&c| c < orig.len() as u64);
    for cut in cuts {
        let b = &orig[..cut as usize];
        // Even a cut inside the magic is "truncated": what is there
        // starts like an image.
        let e = common::decode_stream(b).expect_err("truncated image decoded");
        assert!(e.is_truncation(), "cut at {cut:#x}: stream says {e}");
        assert!(format!("{e}").contains("truncated"), "{e}");
        let e = MappedImage::from_bytes(b.to_vec())
            .err()
            .expect("truncated image opened");
        assert!(e.is_truncation(), "cut at {cut:#x}: mapped says {e}");
        let srep = validate_reader(b);
        assert!(
            srep.problems.iter().any(|p| p.is_truncation()),
            "cut at {cut:#x}: {:?}",
            srep.problems
        );
        let rep = validate_bytes(b);
        assert!(!rep.is_valid());
        {
            assert!(
                rep.problems.iter().any(|p| p.is_truncation()),
                "cut at {cut:#x}: {:?}",
                rep.problems
            );
            let t = rep.problems.iter().find(|p| p.is_truncation()).unwrap();
            assert!(
                t.offset().unwrap() <= cut,
                "cut at {cut:#x}, reported at {:?}",
                t.offset()
            );
        }
    }
}

/// Inserts a record before the INDEX by re-encoding: the sample plus one
/// extra raw record.
fn with_extra_record(kind: u16, flags: u16) -> Vec<u8> {
    let s = sample::tiny();
    let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    e.write_raw_record(kind, flags, b"from a future writer")
        .unwrap();
    e.finish().unwrap()
}

#[test]
fn unknown_non_critical_records_are_skipped() {
    let b = with_extra_record(0x4000, raw::FLAG_SAFE_TO_COPY);
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    assert_eq!(img.skipped_records().len(), 1);
    assert_eq!(img.skipped_records()[0].1, 0x4000);
    assert!(validate_bytes(&b).is_valid());
    let items: Vec<Item> = {
        let mut d = StreamDecoder::new(&b[..]);
        std::iter::from_fn(|| d.next_item().unwrap()).collect()
    };
    assert!(items
        .iter()
        .any(|i| matches!(i, Item::Unknown { kind: 0x4000, .. })));
}

#[test]
fn unknown_critical_records_are_refused_as_unsupported() {
    let b = with_extra_record(0x4000, raw::FLAG_CRITICAL);
    let e = MappedImage::from_bytes(b.clone()).err().unwrap();
    assert!(e.is_unsupported(), "{e}");
    assert!(format!("{e}").contains("unsupported"), "{e}");
    let e = common::decode_stream(&b).unwrap_err();
    assert!(e.is_unsupported(), "{e}");
    let rep = validate_bytes(&b);
    assert!(
        rep.problems.iter().all(|p| p.is_unsupported()),
        "{:?}",
        rep.problems
    );
}

#[test]
fn reserved_flag_bits_are_refused() {
    let b = with_extra_record(0x4000, 0x0010);
    let e = MappedImage::from_bytes(b).err().unwrap();
    assert!(format!("{e}").contains("reserved"), "{e}");
}

#[test]
fn newer_major_version_is_unsupported() {
    let mut b = tiny_bytes();
    b[8] = 2;
    let crc = crc32fast::hash(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    let e = MappedImage::from_bytes(b).err().unwrap();
    assert!(e.is_unsupported(), "{e}");
    assert!(format!("{e}").contains("version 2.0"), "{e}");
}

/// A THREAD whose name claims 4 GiB in a 100-byte payload, with valid CRCs:
/// refused quickly, without allocating.
#[test]
fn hostile_lengths_fail_fast_without_allocating() {
    let s = sample::tiny();
    for (kind, payload) in [
        (RecordKind::Thread.code(), {
            let mut p = 4242i32.to_le_bytes().to_vec();
            p.extend(0u32.to_le_bytes());
            p.extend(u32::MAX.to_le_bytes()); // name length
            p.extend([b'x'; 90]);
            p
        }),
        (
            RecordKind::PidTable.code(),
            u32::MAX.to_le_bytes().repeat(4),
        ), // list count
        (RecordKind::Fd.code(), {
            let mut p = vec![0u8; 20];
            p.extend(1u16.to_le_bytes()); // regular file
            p.extend(0xffff_fff0u32.to_le_bytes()); // path length
            p
        }),
    ] {
        let mut e = Encoder::new(Vec::new(), &s.header).unwrap();
        e.process(&s.process).unwrap();
        e.thread(&s.threads[0]).unwrap();
        e.write_raw_record(kind, raw::FLAG_CRITICAL, &payload)
            .unwrap();
        let b = e.finish().unwrap();
        let start = std::time::Instant::now();
        let err = MappedImage::from_bytes(b.clone())
            .err()
            .expect("hostile record accepted");
        let msg = format!("{err}");
        assert!(
            msg.contains("limit") || msg.contains("truncated") || msg.contains("above"),
            "{msg}"
        );
        assert!(common::decode_stream(&b).is_err());
        assert!(!validate_bytes(&b).is_valid());
        assert!(start.elapsed().as_secs() < 2);
    }
}

/// A record header claiming a payload far beyond any limit.
#[test]
fn oversized_payload_claims_are_limited() {
    let mut b = tiny_bytes();
    let off = raw::PREAMBLE_LEN as usize;
    let mut h: RecordHeader = raw::from_bytes(&b[off..off + 24]).unwrap();
    h.payload_len = u64::MAX / 2;
    h.header_crc = crc32fast::hash(&raw::to_bytes(&h)[..20]);
    b[off..off + 24].copy_from_slice(&raw::to_bytes(&h));
    let e = common::decode_stream(&b).unwrap_err();
    assert!(format!("{e}").contains("above the limit"), "{e}");
}

#[test]
fn errors_name_the_offset_and_record() {
    let mut b = tiny_bytes();
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    let thread = img
        .index()
        .iter()
        .find(|e| e.kind == RecordKind::Thread.code())
        .unwrap()
        .offset;
    b[thread as usize + 30] ^= 0xff;
    let e = MappedImage::from_bytes(b).err().unwrap();
    let msg = format!("{e}");
    assert!(msg.contains("THREAD"), "{msg}");
    assert!(msg.contains(&format!("{thread:#x}")), "{msg}");
    assert!(msg.contains("CRC"), "{msg}");
}

/// One damage to an image.
#[derive(Clone, Debug)]
enum Damage {
    Xor(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
    Overwrite(usize, Vec<u8>),
}

impl Damage {
    fn apply(&self, b: &mut Vec<u8>) {
        let at = |i: usize, b: &Vec<u8>| i % b.len().max(1);
        match self {
            Damage::Xor(i, m) => {
                let i = at(*i, b);
                b[i] ^= m;
            }
            Damage::Truncate(i) => b.truncate(at(*i, b)),
            Damage::Insert(i, v) => b.insert(at(*i, b), *v),
            Damage::Delete(i) => {
                b.remove(at(*i, b));
            }
            Damage::Overwrite(i, v) => {
                let i = at(*i, b);
                let n = v.len().min(b.len() - i);
                b[i..i + n].copy_from_slice(&v[..n]);
            }
        }
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, m)| Damage::Xor(i, m)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Damage::Insert(i, v)),
        any::<usize>().prop_map(Damage::Delete),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Damage::Overwrite(i, v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any damage to any image is reported by both validators and refused
    /// by both strict readers, or the image still decodes to exactly the
    /// original. Never a panic.
    #[test]
    fn any_damage_is_detected_or_harmless(
        seed in any::<u64>(),
        regions in 0usize..5,
        fds in 0usize..6,
        d in damage(),
    ) {
        let s = common::random_sample(seed, 2, regions, fds);
        let orig = s.encode().unwrap();
        let mut b = orig.clone();
        d.apply(&mut b);
        let rep = validate_bytes(&b);
        let srep = validate_reader(&b[..]);
        let mapped = common::decode_mapped(&b);
        let stream = common::decode_stream(&b);
        if rep.is_valid() {
            prop_assert!(srep.is_valid(), "{:?}", srep.problems);
            let (m, p) = mapped.unwrap();
            common::assert_matches(&s, &m, &p);
            let (m, p) = stream.unwrap();
            common::assert_matches(&s, &m, &p);
        } else {
            prop_assert!(!srep.is_valid(), "only validate_bytes noticed: {:?}", rep.problems);
            prop_assert!(stream.is_err());
            prop_assert!(mapped.is_err(), "mapped accepted: {:?}", rep.problems);
            for p in rep.problems.iter().chain(&srep.problems) {
                prop_assert!(p.offset().is_some(), "problem without offset: {}", p);
            }
        }
    }
}
