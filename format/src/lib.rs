//! ckpt-format: every byte of a ckpt checkpoint image.
//!
//! The normative layout is `spec/v1.md`; this crate implements it:
//! [`raw`] mirrors the spec's fixed tables, `codec` the record payloads,
//! [`Encoder`] writes an image front to back over any `Write`,
//! [`StreamDecoder`] reads one in a single pass from any `Read`,
//! [`MappedImage`] opens one for random access through mmap, and
//! [`validate`] lists every problem an image has. Pure: no syscalls and no
//! process state beyond reading the file it is given.
//!
//! Hostile input is normal input: every length and count is checked
//! against the bytes that exist before anything is allocated, against the
//! limits [`MAX_STRING`], [`MAX_PATH`], [`MAX_XSAVE`],
//! [`MAX_METADATA_PAYLOAD`], [`MAX_PAGES_PAYLOAD`], [`MAX_CHUNK_PAGES`]
//! and [`MAX_CHUNK_BYTES`]; a payload read from a pipe grows only as its
//! bytes arrive; a chunk's output buffer is allocated only after its zstd
//! frame header agrees with the chunk.
//!
//! Errors are one enum, [`Error`]: every variant carries the offset and,
//! when known, the record kind at fault. [`Error::is_unsupported`] tells
//! "this image needs a newer reader" (a newer major version, an unknown
//! critical record) from "this image is broken".
//!
//! ```
//! use ckpt_format::*;
//!
//! # fn main() -> Result<()> {
//! let s = sample::tiny();
//! let mut enc = Encoder::new(Vec::new(), &s.header)?;
//! enc.process(&s.process)?;
//! enc.thread(&s.threads[0])?;
//! let r = enc.region(&Region {
//!     start: Addr(0x10000),
//!     end: Addr(0x12000),
//!     prot: Prot(Prot::READ | Prot::WRITE),
//!     ..Default::default()
//! })?;
//! let pages = vec![7u8; 4096];
//! let meta = ChunkMeta { region: r, addr: Addr(0x11000), pages: 1, encoding: ChunkEncoding::Raw };
//! enc.chunk(&EncodedChunk::zstd(meta, &pages, 3)?)?;
//! let bytes = enc.finish()?;
//!
//! // Random access: metadata decoded at open, page data on demand.
//! let img = MappedImage::from_bytes(bytes.clone())?;
//! let mut out = vec![0u8; 4096];
//! img.read_chunk(&img.chunks()[0], &mut out)?;
//! assert_eq!(out, pages);
//!
//! // One pass, as from a pipe.
//! let mut dec = StreamDecoder::new(&bytes[..]);
//! while let Some(item) = dec.next_item()? {
//!     if let Item::Chunk { pages: p, .. } = item {
//!         assert_eq!(p, pages);
//!     }
//! }
//!
//! // Every problem, not just the first.
//! assert!(validate_bytes(&bytes).is_valid());
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod abi;
mod codec;
mod decode;
mod encode;
pub mod error;
mod mapped;
pub mod model;
pub mod raw;
pub mod sample;
mod stream;
pub mod validate;

pub use codec::{MAX_PATH, MAX_STRING, MAX_XSAVE};
pub use decode::{ChunkRef, Metadata, MAX_METADATA_PAYLOAD, MAX_PAGES_PAYLOAD};
pub use encode::{
    compress_pages, max_zstd_len, EncodedChunk, Encoder, MAX_CHUNK_BYTES, MAX_CHUNK_PAGES,
};
pub use error::{At, Error, Result};
pub use mapped::MappedImage;
pub use model::*;
pub use raw::RecordKind;
pub use stream::{decode_all, ChunkPages, Item, StreamDecoder};
pub use validate::{validate_bytes, validate_reader, Report};

/// Major version of the format this crate writes and reads.
pub const FORMAT_MAJOR: u16 = 1;
/// Newest minor version this crate writes (it reads every minor of its
/// major). An image is written with the lowest minor that can express it
/// (spec §9.1): see [`minor_for_fds`] and [`Encoder::with_minor`].
pub const FORMAT_MINOR: u16 = 3;

/// The lowest format minor version that can express these descriptors:
/// 1 when a timerfd has settime flags or pending ticks (fields added in
/// 1.1), else 0.
pub fn minor_for_fds(fds: &[FdEntry]) -> u16 {
    fds.iter().map(|f| f.kind.min_minor()).max().unwrap_or(0)
}

/// The lowest format minor version that can express these descriptors
/// and these unreaped children: 2 when there is a zombie (the ZOMBIES
/// record, added in 1.2), else [`minor_for_fds`].
pub fn minor_for(fds: &[FdEntry], zombies: &[Zombie]) -> u16 {
    if zombies.is_empty() {
        minor_for_fds(fds)
    } else {
        2
    }
}

/// The lowest format minor version that can express an image with these
/// descriptors, unreaped children and shared-memory mappings: 3 when
/// there is a shared mapping (the SHARED_MEMORY record, added in 1.3),
/// else [`minor_for`].
pub fn minor_for_image(fds: &[FdEntry], zombies: &[Zombie], shared: &[SharedMapping]) -> u16 {
    if shared.is_empty() {
        minor_for(fds, zombies)
    } else {
        3
    }
}

/// `minor`, or 3 when the image holds System V IPC objects (the SYSV_IPC
/// record, added in 1.3).
pub fn minor_with_ipc(minor: u16, ipc: Option<&SysvIpc>) -> u16 {
    if ipc.is_some() {
        minor.max(3)
    } else {
        minor
    }
}

/// The writer version string stored in images.
pub const WRITER_VERSION: &str = concat!("ckpt ", env!("CARGO_PKG_VERSION"));

/// Whether `name` (a file name, without its directory) is the writer's
/// copy of its own library beside the images
/// (`ckpt_writer-<size>-<mtime>-<inode>.so`, writer capture.rs
/// `own_library_copy`). Such a copy is written once and never changed: a
/// reader looks for it beside the image when it is not at its recorded
/// path (the images were moved), and judges it by its size alone (a copy
/// has another inode and mtime).
pub fn is_writer_copy(name: &[u8]) -> bool {
    name.starts_with(b"ckpt_writer-") && name.ends_with(b".so")
}
