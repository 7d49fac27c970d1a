//! `ckpt image validate`: exit 0 when every image is valid, 1 when one is
//! not (every problem listed), 2 when one cannot be read at all.

use super::progress::Progress;
use ckpt_format::{validate_bytes, validate_reader, Error, Report};
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How a problem is classed for scripts.
pub fn class(e: &Error) -> &'static str {
    if e.is_unsupported() {
        "unsupported"
    } else if e.is_truncation() {
        "truncated"
    } else {
        "corrupt"
    }
}

/// Counts the bytes read through it in a [`Progress`].
struct Counted<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// Validates one image; `Err` when it cannot be read. A file is mapped and
/// checked in place, except a large one while stderr is a terminal: that
/// one is read through the one-pass validator (the same checks, spec §8.3)
/// so that progress can be shown; `-` is always read in one pass.
pub fn validate_path(path: &Path) -> std::io::Result<Report> {
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        // A regular file on stdin has a size: progress can say how far.
        let size = std::fs::metadata("/proc/self/fd/0")
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        let progress = Progress::new("validate", size);
        return Ok(validate_reader(Counted {
            inner: stdin.lock(),
            progress,
        }));
    }
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(validate_bytes(&[]));
    }
    let progress = Progress::new("validate", len);
    if progress.is_on() {
        let r = std::io::BufReader::with_capacity(1 << 20, f);
        return Ok(validate_reader(Counted { inner: r, progress }));
    }
    // SAFETY: read-only map of a file ckpt never modifies in place; a
    // concurrent truncation by another program would raise SIGBUS, as for
    // any mmap reader.
    let map = unsafe { memmap2::Mmap::map(&f) }?;
    Ok(validate_bytes(&map))
}

/// The report for people.
pub fn render(name: &str, rep: &Report) -> String {
    if rep.is_valid() {
        format!(
            "{name}: valid ({} records, {} chunks, {} of page data, {} bytes)\n",
            rep.records,
            rep.chunks,
            super::inspect::human(rep.page_bytes),
            rep.bytes
        )
    } else {
        let mut s = format!("{name}: INVALID, {} problem(s)\n", rep.problems.len());
        for p in &rep.problems {
            s.push_str(&format!("  {}: {p}\n", class(p)));
        }
        s
    }
}

pub fn to_json(name: &str, rep: &Report) -> serde_json::Value {
    json!({
        "schema": "ckpt-validate/1",
        "image": name,
        "valid": rep.is_valid(),
        "records": rep.records,
        "chunks": rep.chunks,
        "page_bytes": rep.page_bytes,
        "bytes": rep.bytes,
        "problems": rep.problems.iter().map(|p| json!({
            "class": class(p),
            "offset": p.offset(),
            "record": p.record().map(|k| k.to_string()),
            "message": p.to_string(),
        })).collect::<Vec<_>>(),
    })
}

pub fn run(images: &[PathBuf], as_json: bool) -> i32 {
    let mut status = 0;
    let mut out = Vec::new();
    for path in images {
        let name = path.display().to_string();
        match validate_path(path) {
            Ok(rep) => {
                if !rep.is_valid() {
                    status = status.max(1);
                }
                if as_json {
                    out.push(to_json(&name, &rep));
                } else {
                    print!("{}", render(&name, &rep));
                }
            }
            Err(e) => {
                status = 2;
                if as_json {
                    out.push(json!({"schema": "ckpt-validate/1", "image": name, "valid": false, "unreadable": e.to_string()}));
                } else {
                    eprintln!("{name}: cannot read: {e}");
                }
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    }
    status
}
