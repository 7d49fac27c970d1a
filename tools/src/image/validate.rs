//! `ckpt image validate`: exit 0 when every image is valid, 1 when one is
//! not (every problem listed), 2 when one cannot be read at all.

use ckpt_format::{validate_bytes, validate_reader, Error, Report};
use serde_json::json;
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

/// Validates one image; `Err` when it cannot be read.
pub fn validate_path(path: &Path) -> std::io::Result<Report> {
    if path.as_os_str() == "-" {
        return Ok(validate_reader(std::io::stdin().lock()));
    }
    let f = std::fs::File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(validate_bytes(&[]));
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
