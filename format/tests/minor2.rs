//! Format 1.2 (spec §9.4, §4.11): the ZOMBIES record, a parent's children
//! that had exited but were not yet reaped. Not critical, safe to copy;
//! only in images of minor 2 or newer.

use ckpt_format::sample;
use ckpt_format::*;

fn zombies() -> Vec<Zombie> {
    vec![
        Zombie {
            pid: Pid(4250),
            status: 7 << 8,
        },
        Zombie {
            pid: Pid(4251),
            status: 15,
        },
    ]
}

fn encode(s: &sample::Sample, minor: u16, z: &[Zombie]) -> Result<Vec<u8>> {
    let mut e = Encoder::with_minor(Vec::new(), &s.header, minor)?;
    e.process(&s.process)?;
    e.thread(&s.threads[0])?;
    e.zombies(z)?;
    e.finish()
}

#[test]
fn zombies_need_1_2_and_round_trip() {
    let s = sample::tiny();
    let z = zombies();
    assert_eq!(minor_for(&[], &z), 2);
    assert_eq!(minor_for(&[], &[]), 0);
    assert!(matches!(encode(&s, 1, &z), Err(Error::Usage(_))));
    let b = encode(&s, 2, &z).unwrap();
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    assert_eq!(img.version(), (1, 2));
    assert_eq!(img.zombies(), &z[..]);
    let e = img
        .index()
        .iter()
        .find(|e| e.kind == RecordKind::Zombies.code())
        .expect("a ZOMBIES record in the index");
    assert_eq!(e.kind, 0x000C);
    assert_eq!(
        e.flags,
        raw::FLAG_SAFE_TO_COPY,
        "not critical, safe to copy"
    );
    assert!(validate_bytes(&b).is_valid());
    assert!(validate_reader(&b[..]).is_valid());
    let (meta, _) = decode_all(&b[..]).unwrap();
    assert_eq!(meta.zombies, z);
}

#[test]
fn a_zombies_record_in_a_1_1_image_is_refused() {
    let s = sample::tiny();
    let mut e = Encoder::with_minor(Vec::new(), &s.header, 1).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    // list of one (pid, status)
    let mut payload = 1u32.to_le_bytes().to_vec();
    payload.extend(4250i32.to_le_bytes());
    payload.extend((7i32 << 8).to_le_bytes());
    e.write_raw_record(0x000C, raw::FLAG_SAFE_TO_COPY, &payload)
        .unwrap();
    let b = e.finish().unwrap();
    let err = MappedImage::from_bytes(b.clone()).err().expect("refused");
    assert!(err.to_string().contains("needs 1.2"), "{err}");
    assert!(!validate_bytes(&b).is_valid());
}

#[test]
fn images_without_zombies_keep_their_minor() {
    let b = sample::tiny().encode().unwrap();
    assert_eq!(&b[10..12], &[0, 0], "preamble minor");
}
