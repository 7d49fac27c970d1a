//! Format 1.3 (spec §9.4, §4.12): the SHARED_MEMORY record, the shared
//! regions that map shared-memory objects (anonymous shared memory, POSIX
//! shm, memfd, System V segments). Critical, safe to copy; only in images
//! of minor 3 or newer; each mapping names a shared REGION by its start.

use ckpt_format::sample;
use ckpt_format::*;

const SHM_AT: u64 = 0x7f00_0000_0000;

fn shared_region() -> Region {
    Region {
        start: Addr(SHM_AT),
        end: Addr(SHM_AT + 2 * 4096),
        prot: Prot(Prot::READ | Prot::WRITE),
        shared: true,
        kind: RegionKind::File,
        name: b"/dev/zero (deleted)".to_vec(),
        ..Default::default()
    }
}

fn mappings() -> Vec<SharedMapping> {
    vec![SharedMapping {
        start: Addr(SHM_AT),
        object: ShmObject::Anonymous,
        dev: 1,
        inode: 2049,
        size: 2 * 4096,
        offset: 0,
    }]
}

fn encode(minor: u16, region: &Region, m: &[SharedMapping]) -> Result<Vec<u8>> {
    let s = sample::tiny();
    let mut e = Encoder::with_minor(Vec::new(), &s.header, minor)?;
    e.process(&s.process)?;
    e.thread(&s.threads[0])?;
    let idx = e.region(region)?;
    e.shared_memory(m)?;
    let page = vec![7u8; 4096];
    e.chunk(&EncodedChunk::raw(
        ChunkMeta {
            region: idx,
            addr: Addr(SHM_AT),
            pages: 1,
            encoding: ChunkEncoding::Raw,
        },
        &page,
    ))?;
    e.finish()
}

#[test]
fn shared_memory_needs_1_3_and_round_trips() {
    let m = mappings();
    assert_eq!(minor_for_image(&[], &[], &m), 3);
    assert_eq!(minor_for_image(&[], &[], &[]), 0);
    assert!(matches!(
        encode(2, &shared_region(), &m),
        Err(Error::Usage(_))
    ));
    let b = encode(3, &shared_region(), &m).unwrap();
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    assert_eq!(img.version(), (1, 3));
    assert_eq!(img.shared_memory(), &m[..]);
    let e = img
        .index()
        .iter()
        .find(|e| e.kind == RecordKind::SharedMemory.code())
        .expect("a SHARED_MEMORY record in the index");
    assert_eq!(e.kind, 0x000D);
    assert_eq!(e.flags, raw::FLAG_CRITICAL | raw::FLAG_SAFE_TO_COPY);
    assert!(validate_bytes(&b).is_valid());
    assert!(validate_reader(&b[..]).is_valid());
    let (meta, _) = decode_all(&b[..]).unwrap();
    assert_eq!(meta.shared_memory, m);
}

#[test]
fn every_object_kind_round_trips() {
    for (object, tag) in [
        (ShmObject::Anonymous, 0u8),
        (ShmObject::PosixShm, 1),
        (ShmObject::Memfd, 2),
        (ShmObject::SysV, 3),
    ] {
        let m = vec![SharedMapping {
            object,
            ..mappings()[0]
        }];
        let b = encode(3, &shared_region(), &m).unwrap();
        let img = MappedImage::from_bytes(b.clone()).unwrap();
        assert_eq!(img.shared_memory()[0].object, object);
        // start (8) then the object tag
        let rec = img
            .index()
            .iter()
            .find(|e| e.kind == 0x000D)
            .unwrap()
            .offset as usize;
        assert_eq!(b[rec + 24 + 4 + 8], tag, "{object:?}");
    }
}

#[test]
fn a_mapping_must_name_a_shared_region() {
    let m = mappings();
    let private = Region {
        shared: false,
        ..shared_region()
    };
    let b = encode(3, &private, &m).unwrap();
    let err = MappedImage::from_bytes(b.clone()).err().expect("refused");
    assert!(err.to_string().contains("not shared"), "{err}");
    assert!(!validate_bytes(&b).is_valid());
    let elsewhere = vec![SharedMapping {
        start: Addr(SHM_AT + 4096),
        ..m[0]
    }];
    let b = encode(3, &shared_region(), &elsewhere).unwrap();
    let err = MappedImage::from_bytes(b).err().expect("refused");
    assert!(err.to_string().contains("no REGION starts there"), "{err}");
}

#[test]
fn a_shared_memory_record_in_a_1_2_image_is_refused() {
    let s = sample::tiny();
    let mut e = Encoder::with_minor(Vec::new(), &s.header, 2).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    e.region(&shared_region()).unwrap();
    let mut payload = 0u32.to_le_bytes().to_vec();
    payload.truncate(4);
    e.write_raw_record(
        0x000D,
        raw::FLAG_CRITICAL | raw::FLAG_SAFE_TO_COPY,
        &payload,
    )
    .unwrap();
    let b = e.finish().unwrap();
    let err = MappedImage::from_bytes(b.clone()).err().expect("refused");
    assert!(err.to_string().contains("needs 1.3"), "{err}");
    assert!(!validate_bytes(&b).is_valid());
}

#[test]
fn images_without_shared_memory_keep_their_minor() {
    let b = sample::tiny().encode().unwrap();
    assert_eq!(&b[10..12], &[0, 0], "preamble minor");
}

fn ipc() -> SysvIpc {
    let perm = |id: i32| IpcPerm {
        key: 0x1234 + id,
        id,
        mode: 0o600,
        uid: 1000,
        gid: 1000,
        cuid: 1000,
        cgid: 1000,
    };
    SysvIpc {
        shm: vec![SysvShm {
            perm: IpcPerm {
                mode: 0o1600,
                ..perm(32768)
            },
            size: 8192,
        }],
        sem: vec![SysvSem {
            perm: perm(3),
            values: vec![1, 0, 65535],
        }],
        msg: vec![SysvMsgQueue {
            perm: perm(5),
            qbytes: 16384,
            messages: vec![
                SysvMessage {
                    mtype: 1,
                    text: b"first".to_vec(),
                },
                SysvMessage {
                    mtype: 7,
                    text: vec![],
                },
            ],
        }],
    }
}

#[test]
fn sysv_ipc_needs_1_3_and_round_trips() {
    let s = sample::tiny();
    assert_eq!(minor_with_ipc(0, Some(&ipc())), 3);
    assert_eq!(minor_with_ipc(1, None), 1);
    let mut e = Encoder::with_minor(Vec::new(), &s.header, 2).unwrap();
    assert!(matches!(e.sysv_ipc(&ipc()), Err(Error::Usage(_))));
    let mut e2 = Encoder::with_minor(Vec::new(), &s.header, 3).unwrap();
    e2.process(&s.process).unwrap();
    e2.thread(&s.threads[0]).unwrap();
    e2.sysv_ipc(&ipc()).unwrap();
    assert!(
        matches!(e2.sysv_ipc(&ipc()), Err(Error::Usage(_))),
        "at most once"
    );
    let b = e2.finish().unwrap();
    drop(e.finish());
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    assert_eq!(img.sysv_ipc(), Some(&ipc()));
    let rec = img.index().iter().find(|e| e.kind == 0x000E).unwrap();
    assert_eq!(rec.flags, raw::FLAG_CRITICAL | raw::FLAG_SAFE_TO_COPY);
    assert!(validate_bytes(&b).is_valid());
    let (meta, _) = decode_all(&b[..]).unwrap();
    assert_eq!(meta.sysv_ipc, Some(ipc()));
}

#[test]
fn a_sysv_ipc_record_in_a_1_2_image_is_refused() {
    let s = sample::tiny();
    let mut e = Encoder::with_minor(Vec::new(), &s.header, 2).unwrap();
    e.process(&s.process).unwrap();
    e.thread(&s.threads[0]).unwrap();
    // three empty lists
    let payload = [0u8; 12];
    e.write_raw_record(
        0x000E,
        raw::FLAG_CRITICAL | raw::FLAG_SAFE_TO_COPY,
        &payload,
    )
    .unwrap();
    let b = e.finish().unwrap();
    let err = MappedImage::from_bytes(b).err().expect("refused");
    assert!(err.to_string().contains("needs 1.3"), "{err}");
}
