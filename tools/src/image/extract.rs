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
use serde::Serialize;
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
    let mut sum = ExtractSummary::default();
    write_range_into(img, start, end, out, &mut sum)?;
    Ok((sum.bytes, sum.unmapped))
}

/// [`write_range`], adding to `sum`.
fn write_range_into(
    img: &MappedImage,
    start: u64,
    end: u64,
    out: &mut dyn Write,
    sum: &mut ExtractSummary,
) -> anyhow::Result<()> {
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
            sum.unmapped += r.start.0 - pos;
            pos = r.start.0;
        }
        let stop = end.min(r.end.0);
        let mut m = RegionMemory::new(img, i);
        let unknown = m.write(pos, stop, out, &mut progress)?;
        warn_unknown(&m, unknown);
        sum.unknown += unknown;
        sum.regions.push(extracted(i, r, None));
        pos = stop;
    }
    if pos < end {
        fill(out, end - pos)?;
        sum.unmapped += end - pos;
    }
    sum.bytes += end - start;
    Ok(())
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

/// One region `extract` wrote (or wrote part of).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Extracted {
    /// Region index in the image.
    pub index: usize,
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// `rwxp`.
    pub perms: String,
    /// Mapping name.
    pub name: String,
    /// The file it went to (`--all`).
    pub file: Option<String>,
}

/// What `extract` wrote (`--json`: schema `ckpt-extract/1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtractSummary {
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of `--range` no region maps (written as zeros).
    pub unmapped: u64,
    /// Bytes the image leaves to a file that is absent or changed here
    /// (written as zeros).
    pub unknown: u64,
    /// The regions written, in the order written.
    pub regions: Vec<Extracted>,
}

fn extracted(i: usize, r: &Region, file: Option<String>) -> Extracted {
    Extracted {
        index: i,
        start: r.start.0,
        end: r.end.0,
        perms: super::inspect::perms(r),
        name: String::from_utf8_lossy(&r.name).into_owned(),
        file,
    }
}

/// Which memory `extract` writes.
#[derive(Clone, Copy, Debug)]
pub enum Selection<'a> {
    /// `--region N|0xADDR`.
    Region(&'a str),
    /// `--range START-END`.
    Range(&'a str),
    /// `--name NAME`.
    Name(&'a str),
    /// `--all DIR`.
    All(&'a Path),
}

/// The summary as JSON (schema `ckpt-extract/1`, spec/tools-json.md).
pub fn to_json(sum: &ExtractSummary, image: &str, output: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(sum).unwrap_or_default();
    v["schema"] = serde_json::json!("ckpt-extract/1");
    v["image"] = serde_json::json!(image);
    v["output"] = serde_json::json!(output);
    v
}

/// Writes the selected memory of the image at `path` to `output` (or
/// stdout, or the `--all` directory).
pub fn run(
    path: &Path,
    sel: Selection,
    output: Option<&Path>,
    as_json: bool,
) -> anyhow::Result<i32> {
    let all = matches!(sel, Selection::All(_));
    if as_json && output.is_none() && !all {
        bail!("--json prints the summary on stdout: give the bytes a file with -o");
    }
    let img = open_image(path)?;
    let mut sum = ExtractSummary::default();
    let mut note = String::new();
    if let Selection::All(dir) = sel {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let total = img.regions().iter().map(|r| r.end.0 - r.start.0).sum();
        let mut progress = Progress::new("extract", total);
        for (i, r) in img.regions().iter().enumerate() {
            let p = dir.join(file_name(i, r));
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            );
            let (n, unknown) = write_region_counted(&img, i, &mut f, &mut progress)?;
            f.flush()?;
            sum.bytes += n;
            sum.unknown += unknown;
            sum.regions
                .push(extracted(i, r, Some(p.display().to_string())));
        }
        drop(progress);
        note = format!(
            "extracted {} regions into {}\n",
            img.regions().len(),
            dir.display()
        );
    } else {
        let mut sink: Box<dyn Write> = match output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let found = match sel {
            Selection::Region(s) => vec![find_region(&img, s)?],
            Selection::Name(name) => {
                let found = find_by_name(&img, name);
                if found.is_empty() {
                    bail!("no region is named {name}");
                }
                if found.len() > 1 {
                    note = format!(
                        "{} regions named {name}, written in image order\n",
                        found.len()
                    );
                }
                found
            }
            Selection::Range(r) => {
                let (a, b) = parse_range(r)?;
                write_range_into(&img, a, b, &mut sink, &mut sum)?;
                note = range_summary(sum.bytes, sum.unmapped);
                Vec::new()
            }
            Selection::All(_) => Vec::new(),
        };
        let total = found
            .iter()
            .map(|&i| img.regions()[i].end.0 - img.regions()[i].start.0)
            .sum();
        let mut progress = Progress::new("extract", total);
        for &i in &found {
            let (n, unknown) = write_region_counted(&img, i, &mut sink, &mut progress)?;
            sum.bytes += n;
            sum.unknown += unknown;
            sum.regions.push(extracted(i, &img.regions()[i], None));
        }
        drop(progress);
        sink.flush()?;
    }
    if as_json {
        let out = match (sel, output) {
            (Selection::All(d), _) => d.display().to_string(),
            (_, Some(p)) => p.display().to_string(),
            _ => "-".into(),
        };
        let v = to_json(&sum, &path.display().to_string(), &out);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprint!("{note}");
    }
    Ok(0)
}
