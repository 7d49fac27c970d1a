//! `ckpt image repack`: re-encode an image through the [`Encoder`] —
//! another compression, other chunk sizes, the pages of by-reference files
//! embedded (so the image restarts where the files are absent), or stored
//! pages that equal the file dropped (a smaller image for the same host).
//!
//! Unknown records flagged SAFE_TO_COPY are carried byte for byte; other
//! unknown (non-critical) records are dropped with a warning, as a PNG
//! editor does with ancillary chunks. The output is written under a
//! temporary name, validated, synced and only then renamed over OUT.

use super::progress::Progress;
use anyhow::{bail, Context};
use ckpt_format::raw::{self, RecordHeader, FLAG_SAFE_TO_COPY};
use ckpt_format::{
    validate_bytes, Addr, ChunkEncoding, ChunkMeta, EncodedChunk, Encoder, FileIdentity,
    FileStorage, MappedImage, Region, MAX_CHUNK_BYTES, MAX_CHUNK_PAGES,
};
use serde::Serialize;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How the output stores page data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Compression {
    /// Raw pages, page-aligned in the file (a restorer can mmap them).
    None,
    /// One zstd frame per chunk at this level.
    Zstd(i32),
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "raw" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd(3)),
            _ => match s.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(l)) if (1..=22).contains(&l) => Ok(Compression::Zstd(l)),
                _ => Err(format!(
                    "--compress takes none, zstd or zstd:LEVEL (1-22), not {s}"
                )),
            },
        }
    }
}

/// What `repack` changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepackOptions {
    /// Compression of the output; `None` keeps each chunk's encoding.
    pub compress: Option<Compression>,
    /// Largest chunk in pages; contiguous pages are merged up to it and
    /// longer chunks split. `None` keeps the input's chunk boundaries.
    pub chunk_pages: Option<u32>,
    /// Store the pages of by-reference file regions, read from this host.
    pub embed_files: bool,
    /// Drop stored pages of private file regions that equal the file.
    pub by_reference: bool,
    /// Format minor version of the output (1.`n`, at most
    /// [`ckpt_format::FORMAT_MINOR`]); `None`: the lowest one that can
    /// express the image (spec §9.1). A version too old for what the image
    /// holds is refused, never written by dropping it.
    pub format_minor: Option<u16>,
}

/// Parses `--format-version`: `1.N` (or `N`).
pub fn parse_format_version(s: &str) -> Result<u16, String> {
    let minor = s.strip_prefix("1.").unwrap_or(s);
    match minor.parse::<u16>() {
        Ok(m) if m <= ckpt_format::FORMAT_MINOR => Ok(m),
        _ => Err(format!(
            "--format-version takes 1.0 to 1.{} (the versions this build writes), not {s}",
            ckpt_format::FORMAT_MINOR
        )),
    }
}

/// What of the image needs format 1.`minor` or later, for an error.
fn newer_features(img: &MappedImage, minor: u16) -> Vec<String> {
    let mut v = Vec::new();
    for f in img.fds() {
        if f.kind.min_minor() > minor {
            v.push(format!(
                "fd {} (a timerfd with settime flags or ticks: 1.{})",
                f.fd.0,
                f.kind.min_minor()
            ));
        }
    }
    if !img.zombies().is_empty() && minor < 2 {
        v.push(format!(
            "{} unreaped children (ZOMBIES: 1.2)",
            img.zombies().len()
        ));
    }
    if !img.shared_memory().is_empty() && minor < 3 {
        v.push(format!(
            "{} shared-memory mappings (SHARED_MEMORY: 1.3)",
            img.shared_memory().len()
        ));
    }
    if img.sysv_ipc().is_some() && minor < 3 {
        v.push("System V IPC objects (SYSV_IPC: 1.3)".to_string());
    }
    v
}

/// What `repack` did (the `--json` summary, schema `ckpt-repack/1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RepackSummary {
    /// Chunks read.
    pub chunks_in: u64,
    /// Chunks written.
    pub chunks_out: u64,
    /// Pages stored in the input.
    pub pages_in: u64,
    /// Pages stored in the output.
    pub pages_out: u64,
    /// Stored page-data bytes (compressed size) in the output.
    pub stored_bytes_out: u64,
    /// Pages read from files on this host (`--embed-files`).
    pub pages_embedded: u64,
    /// Stored pages dropped because they equal the file (`--by-reference`).
    pub pages_referenced: u64,
    /// Paths of the regions whose storage changed, in region order.
    pub files_changed: Vec<String>,
    /// Kind codes of unknown safe-to-copy records carried.
    pub records_carried: Vec<u16>,
    /// Kind codes of unknown records dropped (not safe to copy).
    pub records_dropped: Vec<u16>,
    /// Things a user should know (a file that could not be referenced, ...).
    pub warnings: Vec<String>,
    /// `1.x -> 1.y` when the output's format version is not the input's.
    pub format: Option<String>,
}

/// A file of this host opened because its identity matches the image's.
pub struct HostFile {
    file: File,
    size: u64,
}

/// Why a file of the image does not match this host's file.
pub fn file_mismatch(id: &FileIdentity) -> Option<String> {
    open_identical(id).err()
}

/// Opens the file an image refers to, when it is the same file: inode,
/// size and modification time equal (the device number is not compared:
/// it changes with containers and reboots while the file does not).
pub fn open_identical(id: &FileIdentity) -> Result<HostFile, String> {
    let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&id.path));
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let m = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    let mut diffs = Vec::new();
    if m.ino() != id.inode {
        diffs.push(format!("inode {} (image: {})", m.ino(), id.inode));
    }
    if m.size() != id.size {
        diffs.push(format!("size {} (image: {})", m.size(), id.size));
    }
    if mtime != id.mtime_ns {
        diffs.push(format!("mtime {mtime} ns (image: {} ns)", id.mtime_ns));
    }
    if !diffs.is_empty() {
        return Err(format!(
            "{} changed since the checkpoint: {}",
            path.display(),
            diffs.join(", ")
        ));
    }
    Ok(HostFile {
        file,
        size: m.size(),
    })
}

impl HostFile {
    /// Reads the page at file offset `off` into `out` (zeros past the end).
    pub fn read_page_into(&self, off: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.read_page(off, out).map(|_| ())
    }

    /// Reads the page at file offset `off` into `out` (zeros past the end);
    /// false when the page lies wholly or partly past the end of the file.
    fn read_page(&self, off: u64, out: &mut [u8]) -> std::io::Result<bool> {
        out.fill(0);
        let mut done = 0;
        while done < out.len() {
            let n = self.file.read_at(&mut out[done..], off + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(off + out.len() as u64 <= self.size)
    }
}

/// Collects contiguous pages of one region into chunks of at most `max`
/// pages and writes them.
struct Chunker<'e, W: Write> {
    enc: &'e mut Encoder<W>,
    ps: u64,
    max: u32,
    region: u32,
    start: u64,
    pages: u32,
    buf: Vec<u8>,
    compress: Compression,
    sum: &'e mut RepackSummary,
}

impl<W: Write> Chunker<'_, W> {
    fn push(&mut self, addr: u64, page: &[u8]) -> anyhow::Result<()> {
        if self.pages > 0
            && (addr != self.start + self.pages as u64 * self.ps || self.pages >= self.max)
        {
            self.flush()?;
        }
        if self.pages == 0 {
            self.start = addr;
        }
        self.buf.extend_from_slice(page);
        self.pages += 1;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pages == 0 {
            return Ok(());
        }
        let meta = ChunkMeta {
            region: self.region,
            addr: Addr(self.start),
            pages: self.pages,
            encoding: ChunkEncoding::Raw,
        };
        let c = match self.compress {
            Compression::None => EncodedChunk::raw(meta, &self.buf),
            Compression::Zstd(l) => EncodedChunk::zstd(meta, &self.buf, l)?,
        };
        self.enc
            .chunk(&c)
            .with_context(|| format!("writing the chunk at {:#x}", self.start))?;
        self.sum.chunks_out += 1;
        self.sum.pages_out += self.pages as u64;
        self.sum.stored_bytes_out += c.data.len() as u64;
        self.buf.clear();
        self.pages = 0;
        Ok(())
    }
}

/// What happens to one region's pages.
enum Mode {
    Copy,
    /// Absent pages come from the file (the region becomes embedded).
    Embed(HostFile),
    /// Stored pages equal to the file are dropped (the region becomes by-reference).
    Reference(HostFile),
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Re-encodes `img` into `out` with `opts`; returns the writer and a summary.
pub fn repack<W: Write>(
    img: &MappedImage,
    out: W,
    opts: &RepackOptions,
) -> anyhow::Result<(W, RepackSummary)> {
    if opts.embed_files && opts.by_reference {
        bail!("--embed-files and --by-reference are opposites; give one");
    }
    let ps = img.page_size();
    let max = match opts.chunk_pages {
        Some(0) => bail!("--chunk-pages must be at least 1"),
        Some(n) => n.min(MAX_CHUNK_PAGES).min((MAX_CHUNK_BYTES / ps) as u32),
        None => u32::MAX,
    };
    let mut sum = RepackSummary::default();
    let mut regions: Vec<Region> = img.regions().to_vec();
    let mut modes = Vec::with_capacity(regions.len());
    for r in regions.iter_mut() {
        let mut mode = Mode::Copy;
        if let Some(b) = r.backing.as_mut() {
            let path = lossy(&b.file.path);
            if opts.embed_files && b.storage == FileStorage::ByReference {
                let f = open_identical(&b.file)
                    .map_err(|e| anyhow::anyhow!("cannot embed the pages of {path}: {e}"))?;
                b.storage = FileStorage::Embedded;
                sum.files_changed.push(path);
                mode = Mode::Embed(f);
            } else if opts.by_reference && b.storage == FileStorage::Embedded && !r.shared {
                match open_identical(&b.file) {
                    Ok(f) => {
                        b.storage = FileStorage::ByReference;
                        sum.files_changed.push(path);
                        mode = Mode::Reference(f);
                    }
                    Err(e) => sum.warnings.push(format!("{path} stays embedded: {e}")),
                }
            }
        }
        modes.push(mode);
    }

    let needed = ckpt_format::minor_with_ipc(
        ckpt_format::minor_for_image(img.fds(), img.zombies(), img.shared_memory()),
        img.sysv_ipc(),
    );
    let minor = match opts.format_minor {
        None => needed,
        Some(m) if m > ckpt_format::FORMAT_MINOR => bail!(
            "format 1.{m} is newer than this build writes (1.{})",
            ckpt_format::FORMAT_MINOR
        ),
        Some(m) if m < needed => bail!(
            "cannot write format 1.{m}: the image holds what 1.{m} cannot express: {}",
            newer_features(img, m).join(", ")
        ),
        Some(m) => m,
    };
    let (_, from_minor) = img.version();
    if from_minor != minor {
        sum.format = Some(format!("1.{from_minor} -> 1.{minor}"));
    }
    let mut enc = Encoder::with_minor(out, img.header(), minor)?;
    enc.process(img.process())?;
    for t in img.threads() {
        enc.thread(t)?;
    }
    for r in &regions {
        enc.region(r)?;
    }
    for f in img.fds() {
        enc.fd(f)?;
    }
    if let Some(s) = img.signals() {
        enc.signals(s)?;
    }
    if let Some(t) = img.timers() {
        enc.timers(t)?;
    }
    if !img.rlimits().is_empty() {
        enc.rlimits(img.rlimits())?;
    }
    if !img.pid_table().is_empty() {
        enc.pid_table(img.pid_table())?;
    }
    for p in img.socket_peers() {
        enc.socket_peer(p)?;
    }
    if !img.zombies().is_empty() {
        enc.zombies(img.zombies())?;
    }
    if !img.shared_memory().is_empty() {
        enc.shared_memory(img.shared_memory())?;
    }
    if let Some(ipc) = img.sysv_ipc() {
        enc.sysv_ipc(ipc)?;
    }
    for &(offset, kind, flags) in img.skipped_records() {
        if flags & FLAG_SAFE_TO_COPY != 0 {
            enc.write_raw_record(kind, flags, unknown_payload(img, offset)?)?;
            sum.records_carried.push(kind);
        } else {
            sum.warnings.push(format!(
                "dropped unknown record kind {kind:#06x} at offset {offset:#x} (not safe to copy)"
            ));
            sum.records_dropped.push(kind);
        }
    }

    let total: u64 = img.chunks().iter().map(|c| c.meta.pages as u64 * ps).sum();
    let mut progress = Progress::new("repack", total);
    let mut buf = Vec::new();
    let mut page = vec![0u8; ps as usize];
    for (i, r) in img.regions().iter().enumerate() {
        let chunks = super::memory::region_chunks(img, i);
        let mode = &modes[i];
        let mut ch = Chunker {
            enc: &mut enc,
            ps,
            max,
            region: i as u32,
            start: 0,
            pages: 0,
            buf: Vec::new(),
            compress: opts.compress.unwrap_or(Compression::None),
            sum: &mut sum,
        };
        let mut pos = r.start.0;
        for c in chunks {
            ch.sum.chunks_in += 1;
            ch.sum.pages_in += c.meta.pages as u64;
            fill_gap(&mut ch, mode, r, pos, c.meta.addr.0, &mut page)?;
            let len = c.meta.pages as u64 * ps;
            buf.resize(len as usize, 0);
            img.read_chunk(c, &mut buf)
                .with_context(|| format!("reading the chunk at {:#x}", c.meta.addr.0))?;
            ch.compress = opts.compress.unwrap_or(match c.meta.encoding {
                ChunkEncoding::Raw => Compression::None,
                ChunkEncoding::Zstd => Compression::Zstd(3),
            });
            for (k, p) in buf.chunks_exact(ps as usize).enumerate() {
                let a = c.meta.addr.0 + k as u64 * ps;
                if let Mode::Reference(f) = mode {
                    let whole = f.read_page(file_off(r, a), &mut page)?;
                    if whole && page == p {
                        ch.sum.pages_referenced += 1;
                        continue;
                    }
                }
                ch.push(a, p)?;
            }
            if opts.chunk_pages.is_none() {
                ch.flush()?;
            }
            progress.add(len);
            pos = c.meta.addr.0 + len;
        }
        fill_gap(&mut ch, mode, r, pos, r.end.0, &mut page)?;
        ch.flush()?;
    }
    drop(progress);
    Ok((enc.finish()?, sum))
}

fn file_off(r: &Region, addr: u64) -> u64 {
    r.backing.as_ref().map_or(0, |b| b.offset) + (addr - r.start.0)
}

/// Pages no chunk covers in `[from, to)`: zero before and after for a
/// copied region; the file's pages (now stored) for an embedded one; for a
/// region turned by-reference, absent would now mean the file's page, so
/// a zero page is stored where the file's is not zero.
fn fill_gap<W: Write>(
    ch: &mut Chunker<'_, W>,
    mode: &Mode,
    r: &Region,
    from: u64,
    to: u64,
    page: &mut [u8],
) -> anyhow::Result<()> {
    let ps = ch.ps;
    let mut a = from;
    while a < to {
        match mode {
            Mode::Copy => return Ok(()),
            Mode::Embed(f) => {
                // Embedded: absent now means zero, so zero pages need no chunk.
                f.read_page(file_off(r, a), page)?;
                if page.iter().any(|&b| b != 0) {
                    ch.push(a, page)?;
                    ch.sum.pages_embedded += 1;
                }
            }
            Mode::Reference(f) => {
                let whole = f.read_page(file_off(r, a), page)?;
                if !whole || page.iter().any(|&b| b != 0) {
                    page.fill(0);
                    ch.push(a, page)?;
                }
            }
        }
        a += ps;
    }
    Ok(())
}

/// The payload of the unknown record at `offset` (its length from the
/// record header; the CRCs were checked when the image was opened).
fn unknown_payload(img: &MappedImage, offset: u64) -> anyhow::Result<&[u8]> {
    let b = img.bytes();
    let start = offset + raw::RECORD_HEADER_LEN;
    let h: RecordHeader = b
        .get(offset as usize..start as usize)
        .and_then(raw::from_bytes)
        .context("record header")?;
    start
        .checked_add(h.payload_len)
        .and_then(|end| b.get(start as usize..end as usize))
        .with_context(|| format!("record at {offset:#x} runs past the image"))
}

/// Repacks into memory (tests, fuzzing): the bytes and the summary.
pub fn repack_to_vec(
    img: &MappedImage,
    opts: &RepackOptions,
) -> anyhow::Result<(Vec<u8>, RepackSummary)> {
    repack(img, Vec::new(), opts)
}

/// Opens an image from a path, or from stdin for `-` (read whole into
/// memory: the tools that take `-` need random access to the chunks).
pub fn open_image(path: &Path) -> anyhow::Result<MappedImage> {
    if path.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut b)
            .context("reading the image from stdin")?;
        return MappedImage::from_bytes(b).context("cannot read image from stdin");
    }
    MappedImage::open(path).with_context(|| format!("cannot read image {}", path.display()))
}

/// Repacks `input` into `output`: written to `OUT.tmp`, validated, synced,
/// renamed. OUT is never replaced by an image that does not validate.
pub fn repack_file(
    input: &Path,
    output: &Path,
    opts: &RepackOptions,
) -> anyhow::Result<RepackSummary> {
    let img = open_image(input)?;
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let (w, sum) = repack(&img, std::io::BufWriter::new(f), opts)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        // SAFETY: read-only map of the file we just wrote and still own;
        // nothing else writes it.
        let map = unsafe { memmap2::Mmap::map(&f) }?;
        let rep = validate_bytes(&map);
        if !rep.is_valid() {
            bail!(
                "the repacked image does not validate ({}); {} left unchanged",
                rep.problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                output.display()
            );
        }
        Ok(sum)
    })();
    match result {
        Ok(sum) => {
            std::fs::rename(&tmp, output).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), output.display())
            })?;
            if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok(sum)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The summary for people.
pub fn render(sum: &RepackSummary, input: &str, output: &str) -> String {
    let mut s = format!(
        "{input} -> {output}: {} chunks ({} pages) -> {} chunks ({} pages, {} stored)\n",
        sum.chunks_in,
        sum.pages_in,
        sum.chunks_out,
        sum.pages_out,
        super::inspect::human(sum.stored_bytes_out)
    );
    if let Some(f) = &sum.format {
        s.push_str(&format!("  format {f}\n"));
    }
    if sum.pages_embedded > 0 {
        s.push_str(&format!(
            "  {} pages embedded from files\n",
            sum.pages_embedded
        ));
    }
    if sum.pages_referenced > 0 {
        s.push_str(&format!(
            "  {} pages left to their files (by reference)\n",
            sum.pages_referenced
        ));
    }
    for f in &sum.files_changed {
        s.push_str(&format!("  storage changed: {f}\n"));
    }
    if !sum.records_carried.is_empty() {
        s.push_str(&format!(
            "  {} unknown safe-to-copy record(s) carried\n",
            sum.records_carried.len()
        ));
    }
    s
}

/// The summary as JSON (schema `ckpt-repack/1`, spec/tools-json.md).
pub fn to_json(sum: &RepackSummary, input: &str, output: &str) -> Value {
    let mut v = serde_json::to_value(sum).unwrap_or_default();
    v["schema"] = json!("ckpt-repack/1");
    v["input"] = json!(input);
    v["output"] = json!(output);
    v
}

pub fn run(
    input: &Path,
    output: &Path,
    opts: &RepackOptions,
    as_json: bool,
) -> anyhow::Result<i32> {
    let sum = repack_file(input, output, opts)?;
    for w in &sum.warnings {
        eprintln!("warning: {w}");
    }
    let (i, o) = (input.display().to_string(), output.display().to_string());
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(&sum, &i, &o))?);
    } else {
        eprint!("{}", render(&sum, &i, &o));
    }
    Ok(0)
}
