//! ckpt-format: every byte of a ckpt checkpoint image.
//!
//! See `spec/v1.md` for the normative layout.

pub mod abi;
pub mod model;
pub use model::*;
