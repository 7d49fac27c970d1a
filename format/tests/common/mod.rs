//! Test helpers: decode an image both ways and compare with its sample.
#![allow(dead_code)]

use ckpt_format::sample::Sample;
use ckpt_format::*;

/// Decodes `bytes` with the mapped reader and returns (metadata, pages by chunk).
pub fn decode_mapped(bytes: &[u8]) -> Result<(Metadata, Vec<Vec<u8>>)> {
    let img = MappedImage::from_bytes(bytes.to_vec())?;
    let mut pages = Vec::new();
    for c in img.chunks() {
        let mut out = vec![0u8; c.meta.pages as usize * img.page_size() as usize];
        img.read_chunk(c, &mut out)?;
        pages.push(out);
    }
    Ok((img.metadata().clone(), pages))
}

/// Decodes `bytes` in one pass.
pub fn decode_stream(bytes: &[u8]) -> Result<(Metadata, Vec<Vec<u8>>)> {
    let (m, p) = decode_all(bytes)?;
    Ok((m, p.into_iter().map(|(_, p)| p).collect()))
}

/// Asserts that decoded metadata and pages equal the sample's.
pub fn assert_matches(s: &Sample, m: &Metadata, pages: &[Vec<u8>]) {
    assert_eq!(m.header.as_ref(), Some(&s.header));
    assert_eq!(m.process.as_ref(), Some(&s.process));
    assert_eq!(m.threads, s.threads);
    assert_eq!(m.regions, s.regions);
    assert_eq!(m.fds, s.fds);
    assert_eq!(m.signals.as_ref(), Some(&s.signals));
    assert_eq!(m.timers.as_ref(), Some(&s.timers));
    assert_eq!(m.rlimits, s.rlimits);
    assert_eq!(m.pid_table, s.pid_table);
    assert_eq!(m.socket_peers, s.socket_peers);
    assert_eq!(pages.len(), s.chunks.len());
    for ((c, got), (region, addr, want, _)) in m.chunks.iter().zip(pages).zip(&s.chunks) {
        assert_eq!(c.meta.region, *region);
        assert_eq!(c.meta.addr.0, *addr);
        assert!(got == want, "pages of chunk at {addr:#x} differ");
    }
}
