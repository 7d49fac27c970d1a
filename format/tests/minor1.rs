//! Format 1.1 (spec §9.1, §4.5): a timerfd's settime flags and pending
//! ticks, appended to its FD record. The encoder writes the lowest minor
//! that can express the image; 1.0 images stay 1.0, byte for byte.

use ckpt_format::sample;
use ckpt_format::*;

fn with_timerfd(settime_flags: u32, ticks: u64) -> (sample::Sample, FdEntry) {
    let s = sample::tiny();
    let fd = FdEntry {
        fd: Fd(5),
        fd_flags: FdFlags(1),
        ofd_id: 9,
        status_flags: 0o2,
        kind: FdKind::TimerFd {
            clock: 0,
            interval_ns: 500,
            value_ns: 1000,
            settime_flags,
            ticks,
        },
    };
    (s, fd)
}

fn encode(s: &sample::Sample, fd: &FdEntry, minor: u16) -> Result<Vec<u8>> {
    let mut e = Encoder::with_minor(Vec::new(), &s.header, minor)?;
    e.process(&s.process)?;
    e.thread(&s.threads[0])?;
    e.fd(fd)?;
    e.finish()
}

#[test]
fn a_timerfd_with_flags_and_ticks_needs_1_1_and_round_trips() {
    let (s, fd) = with_timerfd(1, 3);
    assert_eq!(minor_for_fds(std::slice::from_ref(&fd)), 1);
    assert!(matches!(encode(&s, &fd, 0), Err(Error::Usage(_))));
    let b = encode(&s, &fd, 1).unwrap();
    let img = MappedImage::from_bytes(b.clone()).unwrap();
    assert_eq!(img.version(), (1, 1));
    assert_eq!(img.fds(), std::slice::from_ref(&fd));
    assert!(validate_bytes(&b).is_valid());
    assert!(validate_reader(&b[..]).is_valid());
    let (meta, _) = decode_all(&b[..]).unwrap();
    assert_eq!(meta.fds, vec![fd]);
}

#[test]
fn a_plain_timerfd_stays_1_0_and_reads_back_with_zeros() {
    let (s, fd) = with_timerfd(0, 0);
    assert_eq!(minor_for_fds(std::slice::from_ref(&fd)), 0);
    let b = encode(&s, &fd, 0).unwrap();
    assert_eq!(&b[10..12], &[0, 0], "preamble minor");
    let img = MappedImage::from_bytes(b).unwrap();
    assert_eq!(img.fds(), &[fd]);
}
