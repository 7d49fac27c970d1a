//! `ckpt image extract`: the raw bytes of memory regions, as the restored
//! process would see them (spec/v1.md §4.4): pages the image stores, the
//! file's bytes where a by-reference region leaves a page to its file
//! (read from this host when the file is the image's; zeros and a warning
//! when not), zeros elsewhere.

use super::memory::RegionMemory;
use super::progress::Progress;
use super::repack::open_image;
use anyhow::{bail, Context};
use ckpt_format::{MappedImage, Region};
use std::io::Write;
use std::path::Path;

/// Finds a region by index (`3`) or by an address inside it (`0x...`).
pub fn find_region(img: &MappedImage, sel: &str) -> anyhow::Result<usize> {
    if let Some(hex) = sel.strip_prefix("0x").or_else(|| sel.strip_prefix("0X")) {
        let addr = u64::from_str_radix(hex, 16).with_context(|| format!("bad address {sel}"))?;
        return img
            .regions()
            .iter()
            .position(|r| r.start.0 <= addr && addr < r.end.0)
            .with_context(|| format!("no region contains address {addr:#x}"));
    }
    let i: usize = sel
        .parse()
        .with_context(|| format!("--region takes an index or a 0x address, not {sel}"))?;
    if i >= img.regions().len() {
        bail!(
            "region index {i} out of range (the image has {} regions)",
            img.regions().len()
        );
    }
    Ok(i)
}

/// Writes region `i`'s bytes to `out`, a page at a time (bounded
/// memory); returns (bytes written, bytes of unknown pages written as
/// zeros: by reference to a file that is not here or differs).
pub fn write_region(
    img: &MappedImage,
    i: usize,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, u64)> {
    let r = &img.regions()[i];
    let mut progress = Progress::new("extract", r.end.0 - r.start.0);
    write_region_counted(img, i, out, &mut progress)
}

/// [`write_region`], counted in `progress` (several regions, one line).
fn write_region_counted(
    img: &MappedImage,
    i: usize,
    out: &mut dyn Write,
    progress: &mut Progress,
) -> anyhow::Result<(u64, u64)> {
    let r: &Region = &img.regions()[i];
    let mut m = RegionMemory::new(img, i);
    let unknown = m.write(r.start.0, r.end.0, out, progress)?;
    warn_unknown(&m, unknown);
    Ok((r.end.0 - r.start.0, unknown))
}

/// Says on stderr that pages of a by-reference file were written as zeros.
fn warn_unknown(m: &RegionMemory, unknown: u64) {
    if unknown > 0 {
        eprintln!(
            "warning: {unknown} bytes of {:#x}-{:#x} written as zeros: the image leaves them to a file that is not usable here ({})",
            m.region().start.0,
            m.region().end.0,
            m.file_problem.as_deref().unwrap_or("?")
        );
    }
}

fn file_name(i: usize, r: &Region) -> String {
    let name: String = String::from_utf8_lossy(&r.name)
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches('_');
    format!(
        "{i:03}-{:x}-{:x}{}{}.bin",
        r.start.0,
        r.end.0,
        if name.is_empty() { "" } else { "-" },
        name
    )
}

pub fn run(
    path: &Path,
    region: Option<&str>,
    output: Option<&Path>,
    all: Option<&Path>,
) -> anyhow::Result<i32> {
    let img = open_image(path)?;
    if let Some(dir) = all {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let total = img.regions().iter().map(|r| r.end.0 - r.start.0).sum();
        let mut progress = Progress::new("extract", total);
        for (i, r) in img.regions().iter().enumerate() {
            let p = dir.join(file_name(i, r));
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            );
            write_region_counted(&img, i, &mut f, &mut progress)?;
            f.flush()?;
        }
        drop(progress);
        eprintln!(
            "extracted {} regions into {}",
            img.regions().len(),
            dir.display()
        );
        return Ok(0);
    }
    let Some(region) = region else {
        bail!("give --region, --range, --name or --all");
    };
    let i = find_region(&img, region)?;
    match output {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            );
            write_region(&img, i, &mut f)?;
            f.flush()?;
        }
        None => {
            let mut lock = std::io::BufWriter::new(std::io::stdout().lock());
            write_region(&img, i, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(0)
}

/// Parses `START-END` (hex, `0x` optional) into a page-independent range.
pub fn parse_range(s: &str) -> anyhow::Result<(u64, u64)> {
    let hex = |x: &str| {
        let x = x.trim();
        let x = x
            .strip_prefix("0x")
            .or_else(|| x.strip_prefix("0X"))
            .unwrap_or(x);
        u64::from_str_radix(x, 16).with_context(|| format!("bad address {x:?} in --range {s}"))
    };
    let (a, b) = s
        .split_once('-')
        .with_context(|| format!("--range takes START-END in hex, not {s}"))?;
    let (a, b) = (hex(a)?, hex(b)?);
    if a >= b {
        bail!("--range {s}: START must be below END");
    }
    Ok((a, b))
}

/// Writes the bytes of `[start, end)`, which may span regions; addresses
/// no region maps are written as zeros (and counted in the result).
/// Returns (bytes written, bytes unmapped).
pub fn write_range(
    img: &MappedImage,
    start: u64,
    end: u64,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, u64)> {
    let mut unmapped = 0;
    let mut pos = start;
    let mut progress = Progress::new("extract", end - start);
    let mut regions: Vec<(usize, &Region)> = img.regions().iter().enumerate().collect();
    regions.sort_by_key(|(_, r)| r.start);
    let zeros = vec![0u8; 1 << 16];
    let fill = |out: &mut dyn Write, mut n: u64| -> std::io::Result<()> {
        while n > 0 {
            let k = n.min(zeros.len() as u64);
            out.write_all(&zeros[..k as usize])?;
            n -= k;
        }
        Ok(())
    };
    for (i, r) in regions {
        if r.end.0 <= pos || r.start.0 >= end {
            continue;
        }
        if r.start.0 > pos {
            fill(out, r.start.0 - pos)?;
            unmapped += r.start.0 - pos;
            pos = r.start.0;
        }
        let stop = end.min(r.end.0);
        let mut m = RegionMemory::new(img, i);
        let unknown = m.write(pos, stop, out, &mut progress)?;
        warn_unknown(&m, unknown);
        pos = stop;
    }
    if pos < end {
        fill(out, end - pos)?;
        unmapped += end - pos;
    }
    Ok((end - start, unmapped))
}

/// What `extract --range` says on stderr: nothing when every byte is
/// mapped in the image.
pub fn range_summary(n: u64, unmapped: u64) -> String {
    if unmapped == 0 {
        String::new()
    } else {
        format!("{n} bytes; {unmapped} of them unmapped in the image, written as zeros\n")
    }
}

/// Regions whose mapping name is `name` or whose path's basename is.
pub fn find_by_name(img: &MappedImage, name: &str) -> Vec<usize> {
    img.regions()
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let n = String::from_utf8_lossy(&r.name);
            n == name || n.rsplit('/').next() == Some(name)
        })
        .map(|(i, _)| i)
        .collect()
}

/// `--range` or `--name`.
pub fn run_select(
    path: &Path,
    range: Option<&str>,
    name: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<i32> {
    let img = open_image(path)?;
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if let Some(r) = range {
        let (a, b) = parse_range(r)?;
        let (n, unmapped) = write_range(&img, a, b, &mut sink)?;
        sink.flush()?;
        eprint!("{}", range_summary(n, unmapped));
        return Ok(0);
    }
    let Some(name) = name else {
        bail!("give --range or --name");
    };
    let found = find_by_name(&img, name);
    if found.is_empty() {
        bail!("no region is named {name}");
    }
    let total = found
        .iter()
        .map(|&i| img.regions()[i].end.0 - img.regions()[i].start.0)
        .sum();
    let mut progress = Progress::new("extract", total);
    for &i in &found {
        write_region_counted(&img, i, &mut sink, &mut progress)?;
    }
    drop(progress);
    sink.flush()?;
    if found.len() > 1 {
        eprintln!(
            "{} regions named {name}, written in image order",
            found.len()
        );
    }
    Ok(0)
}
