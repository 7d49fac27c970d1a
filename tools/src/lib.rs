//! The `ckpt` command line as a library, so its renderings can be tested
//! (insta snapshots of `ckpt image inspect` on the golden images) and the
//! integration tests can reuse the protocol client.

pub mod command;
pub mod coordinator;
pub mod demo;
pub mod image;
pub mod launch;
pub mod restart;
pub mod secret;
pub mod sys;
