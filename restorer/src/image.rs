use ckpt_format::{
    ChunkMeta, FdEntry, ImageHeader, Process, Region, Rlimit, SignalState, Thread, Timers,
};
use std::path::{Path, PathBuf};
#[derive(serde::Deserialize)]
pub struct Synth {
    header: ImageHeader,
    process: Process,
    threads: Vec<Thread>,
    regions: Vec<Region>,
    chunks: Vec<(ChunkMeta, Vec<u8>)>,
}
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
    data: Vec<Vec<u8>>,
}
impl Image {
    pub fn open(path: &Path) -> Result<Image, String> {
        let s: Synth = serde_json::from_slice(&std::fs::read(path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        Ok(Image {
            path: path.into(),
            header: s.header,
            process: s.process,
            threads: s.threads,
            regions: s.regions,
            fds: vec![],
            signals: None,
            timers: None,
            rlimits: vec![],
            chunks: s.chunks.iter().map(|c| c.0).collect(),
            data: s.chunks.into_iter().map(|c| c.1).collect(),
        })
    }
    pub fn validate(&self) -> Vec<String> {
        vec![]
    }
    pub fn read_chunk(&self, i: usize, out: &mut [u8]) -> Result<(), String> {
        out.copy_from_slice(&self.data[i]);
        Ok(())
    }
}
