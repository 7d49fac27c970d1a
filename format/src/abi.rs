//! The restart hand-off block shared by the writer and the restorer.
//!
//! Not part of the image bytes: it is a `#[repr(C)]` struct that lives in
//! the checkpointed process's memory at `Process::restart_info_addr`. The
//! restorer fills it in the restored memory before any thread resumes; the
//! writer's checkpoint thread reads it on its restarted path. See
//! `doc/design.md`, "Restart hand-off".

/// `RestartInfo::magic`: "CKPTRSTO" read as a little-endian u64.
pub const RESTART_INFO_MAGIC: u64 = u64::from_le_bytes(*b"CKPTRSTO");

/// Hand-off block; all strings are NUL-terminated, empty means "keep".
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RestartInfo {
    /// [`RESTART_INFO_MAGIC`], set by the writer.
    pub magic: u64,
    /// How many times this process has been restarted (restorer adds 1).
    pub restarted: u64,
    /// The restorer's leftover area, which the writer unmaps.
    pub scratch_addr: u64,
    /// Length of that area in bytes.
    pub scratch_len: u64,
    /// New coordinator port (0 = keep).
    pub coord_port: u64,
    /// New coordinator host.
    pub coord_host: [u8; 256],
    /// The computation's secret.
    pub secret: [u8; 128],
    /// New checkpoint directory.
    pub ckpt_dir: [u8; 4096],
    /// New CKPT_TMPDIR.
    pub tmpdir: [u8; 4096],
}

impl RestartInfo {
    /// An empty block carrying the magic.
    pub const fn new() -> Self {
        RestartInfo {
            magic: RESTART_INFO_MAGIC,
            restarted: 0,
            scratch_addr: 0,
            scratch_len: 0,
            coord_port: 0,
            coord_host: [0; 256],
            secret: [0; 128],
            ckpt_dir: [0; 4096],
            tmpdir: [0; 4096],
        }
    }
}

impl Default for RestartInfo {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies `s` into a fixed NUL-terminated field, truncating if needed.
pub fn set_cstr(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len().saturating_sub(1));
    field[..n].copy_from_slice(&s[..n]);
    field[n..].fill(0);
}

/// The bytes of a NUL-terminated field, up to the first NUL.
pub fn get_cstr(field: &[u8]) -> &[u8] {
    let n = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..n]
}
