//! The image as the restorer sees it: decoded values copied out of
//! `ckpt_format::MappedImage`, plus chunk reads. The only file that knows
//! the format crate's API.

use std::path::{Path, PathBuf};

use ckpt_format::{
    ChunkMeta, FdEntry, ImageHeader, MappedImage, Process, Region, Rlimit, SharedMapping,
    SignalState, SysvIpc, Thread, Timers, Zombie,
};

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
    /// Children that had exited, not yet reaped (ZOMBIES, format 1.2).
    pub zombies: Vec<Zombie>,
    /// Shared regions mapping shared-memory objects (SHARED_MEMORY, 1.3).
    pub shared_memory: Vec<SharedMapping>,
    /// The computation's System V IPC objects (SYSV_IPC, 1.3).
    pub sysv_ipc: Option<SysvIpc>,
    /// Page-data chunks in index order.
    pub chunks: Vec<ChunkMeta>,
    mapped: MappedImage,
}

impl Image {
    /// Opens the image (preamble, trailer, index and metadata CRCs checked).
    pub fn open(path: &Path) -> Result<Image, String> {
        let mapped = MappedImage::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Image {
            path: path.to_path_buf(),
            header: mapped.header().clone(),
            process: mapped.process().clone(),
            threads: mapped.threads().to_vec(),
            regions: mapped.regions().to_vec(),
            fds: mapped.fds().to_vec(),
            signals: mapped.signals().cloned(),
            timers: mapped.timers().cloned(),
            rlimits: mapped.rlimits().to_vec(),
            zombies: mapped.zombies().to_vec(),
            shared_memory: mapped.shared_memory().to_vec(),
            sysv_ipc: mapped.sysv_ipc().cloned(),
            chunks: mapped.chunks().iter().map(|c| c.meta).collect(),
            mapped,
        })
    }

    /// Every problem a full validation finds (every page CRC, the digest).
    pub fn validate(&self) -> Vec<String> {
        self.mapped
            .validate()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// File offset of chunk `i`'s pages when they are stored raw and
    /// page-aligned in the file, so that they can be mapped from it.
    pub fn raw_file_offset(&self, i: usize) -> Option<u64> {
        let c = &self.mapped.chunks()[i];
        let len = c.meta.pages as u64 * self.mapped.page_size();
        (c.meta.encoding == ckpt_format::ChunkEncoding::Raw
            && c.data_offset.is_multiple_of(self.mapped.page_size())
            && c.stored_len == len)
            .then_some(c.data_offset)
    }

    /// The image file, opened again for mapping its raw pages.
    pub fn open_fd(&self) -> Result<std::fs::File, String> {
        std::fs::File::open(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Decompresses chunk `i` into `out` (exactly its pages' bytes).
    pub fn read_chunk(&self, i: usize, out: &mut [u8]) -> Result<(), String> {
        let c = &self.mapped.chunks()[i];
        self.mapped
            .read_chunk(c, out)
            .map_err(|e| format!("{}: chunk {i}: {e}", self.path.display()))
    }
}
