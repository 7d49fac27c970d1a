//! Stand-in for `image.rs` while ckpt-format has no `MappedImage` yet:
//! same interface, refuses every image. Build with `--features
//! mapped-image` (the default once the format crate lands) for the real one.

use ckpt_format::{
    ChunkMeta, FdEntry, ImageHeader, Process, Region, Rlimit, SignalState, Thread, Timers,
};
use std::path::{Path, PathBuf};
pub struct Image {
    pub path: PathBuf,
    pub header: ImageHeader,
    pub process: Process,
    pub threads: Vec<Thread>,
    pub regions: Vec<Region>,
    pub fds: Vec<FdEntry>,
    pub signals: Option<SignalState>,
    pub timers: Option<Timers>,
    pub rlimits: Vec<Rlimit>,
    pub chunks: Vec<ChunkMeta>,
}
impl Image {
    pub fn open(path: &Path) -> Result<Image, String> {
        Err(format!(
            "{}: this ckpt-restore was built without MappedImage support (feature mapped-image)",
            path.display()
        ))
    }
    pub fn validate(&self) -> Vec<String> {
        vec![]
    }
    pub fn read_chunk(&self, _i: usize, _out: &mut [u8]) -> Result<(), String> {
        Ok(())
    }
}
