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
//! against the bytes that exist before anything is allocated.

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
/// Minor version this crate writes (it reads every minor of its major).
pub const FORMAT_MINOR: u16 = 0;
/// The writer version string stored in images.
pub const WRITER_VERSION: &str = concat!("ckpt ", env!("CARGO_PKG_VERSION"));
