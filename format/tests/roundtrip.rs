//! Encode → decode is the identity, for the mapped and the one-pass reader.

mod common;

use ckpt_format::sample;
use ckpt_format::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn encode_decode_is_identity(seed in any::<u64>(), threads in 1usize..5, regions in 0usize..6, fds in 0usize..20) {
        let s = common::random_sample(seed, threads, regions, fds);
        let bytes = s.encode().unwrap();
        let (m, pages) = common::decode_mapped(&bytes).unwrap();
        common::assert_matches(&s, &m, &pages);
        let (m2, pages2) = common::decode_stream(&bytes).unwrap();
        common::assert_matches(&s, &m2, &pages2);
        let rep = validate_bytes(&bytes);
        prop_assert!(rep.is_valid(), "{:?}", rep.problems);
        let rep = validate_reader(&bytes[..]);
        prop_assert!(rep.is_valid(), "{:?}", rep.problems);
    }
}

#[test]
fn samples_round_trip() {
    for s in [sample::tiny(), sample::full()] {
        let bytes = s.encode().unwrap();
        let (m, pages) = common::decode_mapped(&bytes).unwrap();
        common::assert_matches(&s, &m, &pages);
        let (m, pages) = common::decode_stream(&bytes).unwrap();
        common::assert_matches(&s, &m, &pages);
    }
}

#[test]
fn raw_chunks_are_page_aligned_in_the_file() {
    let bytes = sample::full().encode().unwrap();
    let img = MappedImage::from_bytes(bytes).unwrap();
    let raw: Vec<_> = img
        .chunks()
        .iter()
        .filter(|c| c.meta.encoding == ChunkEncoding::Raw)
        .collect();
    assert!(!raw.is_empty());
    for c in raw {
        assert_eq!(
            c.data_offset % 4096,
            0,
            "raw chunk data at {:#x}",
            c.data_offset
        );
    }
}

#[test]
fn encoder_never_seeks_and_reports_its_offset() {
    // A Write that is not Seek: the type system proves no seek happens.
    struct Sink(Vec<u8>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let s = sample::tiny();
    let mut e = Encoder::new(Sink(Vec::new()), &s.header).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    let off = e.offset();
    let out = e.finish().unwrap();
    assert!(out.0.len() as u64 > off);
    assert!(MappedImage::from_bytes(out.0).is_ok());
}

/// The one-pass decoder yields one item per record, in file order, then
/// `End`, then nothing.
#[test]
fn stream_items_follow_the_records_in_order() {
    let bytes = sample::full().encode().unwrap();
    let img = MappedImage::from_bytes(bytes.clone()).unwrap();
    let mut d = StreamDecoder::new(&bytes[..]);
    let mut kinds = Vec::new();
    while let Some(item) = d.next_item().unwrap() {
        kinds.push(match item {
            Item::Header(_) => Some(RecordKind::Header),
            Item::Process(_) => Some(RecordKind::Process),
            Item::Thread(_) => Some(RecordKind::Thread),
            Item::Region(_) => Some(RecordKind::Region),
            Item::Chunk { .. } => Some(RecordKind::Pages),
            Item::Fd(_) => Some(RecordKind::Fd),
            Item::Signals(_) => Some(RecordKind::Signals),
            Item::Timers(_) => Some(RecordKind::Timers),
            Item::Rlimits(_) => Some(RecordKind::Rlimits),
            Item::PidTable(_) => Some(RecordKind::PidTable),
            Item::SocketPeer(_) => Some(RecordKind::SocketPeer),
            Item::Zombies(_) => Some(RecordKind::Zombies),
            Item::SharedMemory(_) => Some(RecordKind::SharedMemory),
            Item::SysvIpc(_) => Some(RecordKind::SysvIpc),
            Item::Unknown { kind, .. } => Some(RecordKind::from_code(kind)),
            Item::End => None,
            _ => unreachable!("new item kind"),
        });
    }
    let mut want: Vec<_> = img
        .index()
        .iter()
        .map(|e| Some(RecordKind::from_code(e.kind)))
        .collect();
    want.push(None);
    assert_eq!(kinds, want);
    assert!(matches!(d.next_item(), Ok(None)));
    assert_eq!(d.offset(), bytes.len() as u64);
}

/// Opening an image reads no page data: damage in a chunk's pages is
/// found when that chunk is read (or validated), not at open.
#[test]
fn open_does_not_touch_page_data() {
    let mut bytes = sample::full().encode().unwrap();
    let img = MappedImage::from_bytes(bytes.clone()).unwrap();
    let c = *img
        .chunks()
        .iter()
        .find(|c| c.meta.encoding == ChunkEncoding::Raw)
        .unwrap();
    bytes[c.data_offset as usize + 100] ^= 0x10;
    let img = MappedImage::from_bytes(bytes.clone()).unwrap();
    assert_eq!(
        img.chunks().len(),
        MappedImage::from_bytes(bytes.clone())
            .unwrap()
            .chunks()
            .len()
    );
    let mut out = vec![0; c.meta.pages as usize * 4096];
    let e = img.read_chunk(&c, &mut out).unwrap_err();
    assert!(e.to_string().contains("payload CRC mismatch"), "{e}");
    assert_eq!(e.offset(), Some(c.record_offset));
    assert_eq!(img.chunk_bytes(&c).len() as u64, c.stored_len);
    assert!(!img.validate().is_valid());
}
