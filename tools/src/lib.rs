//! The `ckpt` command line as a library, so its renderings can be tested
//! (insta snapshots of `ckpt image inspect` on the golden images).

pub mod image;
