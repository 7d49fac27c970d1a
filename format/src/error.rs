//! The one error type of the crate.
//!
//! Every variant says what was wrong and where (byte offset in the image,
//! and the record kind when one is at fault). "The image is broken"
//! (everything but [`Error::Unsupported`]) is kept apart from "the image is
//! fine but this reader cannot restore it" ([`Error::Unsupported`]), the way
//! zip separates `InvalidArchive` from `UnsupportedArchive`.

use crate::raw::RecordKind;
use std::fmt;

/// Where in the image a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// Byte offset from the start of the image.
    pub offset: u64,
    /// The record the offset lies in, when known.
    pub record: Option<RecordKind>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.record {
            Some(k) => write!(f, "record {k} at offset {:#x}", self.offset),
            None => write!(f, "offset {:#x}", self.offset),
        }
    }
}

/// Errors of decoding, validating and encoding images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first bytes are not a ckpt image.
    #[error("{at}: not a ckpt image (bad magic)")]
    BadMagic {
        /// Where.
        at: At,
    },
    /// A newer (or unknown) major version.
    #[error(
        "{at}: unsupported image version {major}.{minor} (this reader knows {}.x)",
        crate::FORMAT_MAJOR
    )]
    UnsupportedVersion {
        /// Where.
        at: At,
        /// Major version in the image.
        major: u16,
        /// Minor version in the image.
        minor: u16,
    },
    /// The image ends before a structure it announces.
    #[error("{at}: truncated: {needed} more bytes needed, the image ends at {end:#x}")]
    Truncated {
        /// Where the missing structure starts.
        at: At,
        /// Bytes missing.
        needed: u64,
        /// Where the bytes ran out.
        end: u64,
    },
    /// A CRC over a structure does not match.
    #[error("{at}: {what} CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc {
        /// Where.
        at: At,
        /// Which CRC: "preamble", "record header", "payload", "trailer", "image".
        what: &'static str,
        /// CRC stored in the image.
        stored: u32,
        /// CRC of the bytes present.
        computed: u32,
    },
    /// A field has a value the spec does not allow.
    #[error("{at}: malformed: {what}")]
    Malformed {
        /// Where.
        at: At,
        /// What is wrong.
        what: String,
    },
    /// A length or count above a reader limit.
    #[error("{at}: {what} is {value}, above the limit {limit}")]
    LimitExceeded {
        /// Where.
        at: At,
        /// Which length.
        what: &'static str,
        /// Its value in the image.
        value: u64,
        /// The reader's limit.
        limit: u64,
    },
    /// The image is well formed but needs something this reader lacks
    /// (an unknown critical record kind, a chunk encoding it cannot decode).
    #[error("{at}: unsupported: {what}")]
    Unsupported {
        /// Where.
        at: At,
        /// What is not supported.
        what: String,
    },
    /// Page data failed to decompress to exactly its size.
    #[error("{at}: page data does not decompress: {what}")]
    Decompress {
        /// Where.
        at: At,
        /// The decoder's complaint.
        what: String,
    },
    /// Reading or writing failed.
    #[error("I/O at offset {offset:#x}: {source}")]
    Io {
        /// Offset reached when it failed.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The encoder was used out of order (a caller bug, not bad input).
    #[error("encoder misuse: {0}")]
    Usage(&'static str),
}

impl Error {
    /// True when the image is intact but needs a newer reader.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::Unsupported { .. } | Error::UnsupportedVersion { .. }
        )
    }

    /// True when the image ended too early.
    pub fn is_truncation(&self) -> bool {
        matches!(self, Error::Truncated { .. })
    }

    /// The offset the error is at, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::BadMagic { at }
            | Error::UnsupportedVersion { at, .. }
            | Error::Truncated { at, .. }
            | Error::Crc { at, .. }
            | Error::Malformed { at, .. }
            | Error::LimitExceeded { at, .. }
            | Error::Unsupported { at, .. }
            | Error::Decompress { at, .. } => Some(at.offset),
            Error::Io { offset, .. } => Some(*offset),
            Error::Usage(_) => None,
        }
    }

    /// The record kind at fault, when known.
    pub fn record(&self) -> Option<RecordKind> {
        match self {
            Error::BadMagic { at }
            | Error::UnsupportedVersion { at, .. }
            | Error::Truncated { at, .. }
            | Error::Crc { at, .. }
            | Error::Malformed { at, .. }
            | Error::LimitExceeded { at, .. }
            | Error::Unsupported { at, .. }
            | Error::Decompress { at, .. } => at.record,
            _ => None,
        }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn malformed(offset: u64, record: Option<RecordKind>, what: impl Into<String>) -> Error {
    Error::Malformed {
        at: At { offset, record },
        what: what.into(),
    }
}
