//! `ckpt image diff A B`: what changed between two images — header,
//! process, threads, fds, the memory map, and, region by region (matched
//! by start address), the pages changed, added and removed. Pages are
//! compared by decoding both images chunk by chunk, at most one chunk of
//! each image in memory; a page an image does not store reads as zero.
//! Exit status as diff(1): 0 identical, 1 different, 2 trouble.

use super::inspect::{perms, utc};
use super::memory::{reference, RegionMemory, Source};
use super::progress::Progress;
use super::repack::open_image;
use ckpt_format::{FdEntry, MappedImage, Region};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Field name (`generation`, `host.kernel_release`, `cwd`, `rip`).
    pub field: String,
    /// Value in A.
    pub a: String,
    /// Value in B.
    pub b: String,
}

/// A thread in both images whose state differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ThreadChange {
    /// Thread id.
    pub tid: i32,
    /// Fields that differ (registers by name; `xsave` when the FP state does).
    pub fields: Vec<FieldChange>,
}

/// An fd in both images whose description differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FdChange {
    /// Fd number.
    pub fd: i32,
    /// Fields that differ, nested ones by path.
    pub fields: Vec<FieldChange>,
}

/// A region present in both images (same start) whose description differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionChange {
    /// Start address.
    pub start: u64,
    /// Fields that differ (`end`, `prot`, `kind`, `name`, `backing`, ...).
    pub fields: Vec<FieldChange>,
}

/// Page differences of a region present in both images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PageDiff {
    /// Start address of the region.
    pub start: u64,
    /// Region name.
    pub name: String,
    /// Pages stored in both with different bytes.
    pub changed_pages: u64,
    /// Bytes that differ in those pages.
    pub changed_bytes: u64,
    /// Pages only B has (non-zero; A reads as zero there).
    pub added_pages: u64,
    /// Pages only A has (non-zero; B reads as zero there).
    pub removed_pages: u64,
    /// Address of the first differing page.
    pub first: u64,
}

/// A region only one image has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegionRef {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// `rwxp`.
    pub perms: String,
    /// Name.
    pub name: String,
}

/// Everything that differs between two images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageDiff {
    /// HEADER fields.
    pub header: Vec<FieldChange>,
    /// PROCESS fields.
    pub process: Vec<FieldChange>,
    /// Tids only in B.
    pub threads_added: Vec<i32>,
    /// Tids only in A.
    pub threads_removed: Vec<i32>,
    /// Threads in both that differ.
    pub threads_changed: Vec<ThreadChange>,
    /// Fds only in B.
    pub fds_added: Vec<i32>,
    /// Fds only in A.
    pub fds_removed: Vec<i32>,
    /// Fds in both that differ.
    pub fds_changed: Vec<i32>,
    /// What differs in each of them (`kind.Pipe.buffered`, `flags`, ...).
    pub fd_changes: Vec<FdChange>,
    /// Regions only in B.
    pub regions_added: Vec<RegionRef>,
    /// Regions only in A.
    pub regions_removed: Vec<RegionRef>,
    /// Regions in both whose description differs.
    pub regions_changed: Vec<RegionChange>,
    /// Regions in both whose memory differs.
    pub pages: Vec<PageDiff>,
    /// What could not be compared exactly (a by-reference file that is
    /// not on this host or differs: its absent pages read as zeros).
    pub warnings: Vec<String>,
}

impl ImageDiff {
    /// True when nothing differs (warnings aside).
    pub fn is_identical(&self) -> bool {
        ImageDiff {
            warnings: Vec::new(),
            ..self.clone()
        } == ImageDiff::default()
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) if u > 0xffff => format!("{u:#x}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        // Byte strings (paths, arguments) serialise as arrays of numbers.
        Value::Array(a)
            if !a.is_empty() && a.iter().all(|x| x.as_u64().is_some_and(|n| n < 256)) =>
        {
            let b: Vec<u8> = a.iter().map(|x| x.as_u64().unwrap_or(0) as u8).collect();
            format!("{:?}", String::from_utf8_lossy(&b))
        }
        _ => v.to_string(),
    }
}

/// The fields of two serialisable values that differ (`prefix.field`,
/// nested objects by their path: `backing.storage`), skipping top-level
/// fields in `skip`.
fn fields<T: Serialize>(prefix: &str, a: &T, b: &T, skip: &[&str]) -> Vec<FieldChange> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut v = Vec::new();
    value_fields(prefix, &va, &vb, skip, &mut v);
    v
}

fn value_fields(prefix: &str, a: &Value, b: &Value, skip: &[&str], v: &mut Vec<FieldChange>) {
    let (Some(ma), Some(mb)) = (a.as_object(), b.as_object()) else {
        return;
    };
    for (k, x) in ma {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let y = mb.get(k).unwrap_or(&Value::Null);
        if x == y {
            continue;
        }
        if x.is_object() && y.is_object() {
            value_fields(&format!("{prefix}{k}."), x, y, &[], v);
        } else {
            v.push(FieldChange {
                field: format!("{prefix}{k}"),
                a: show(x),
                b: show(y),
            });
        }
    }
}

fn region_ref(r: &Region) -> RegionRef {
    RegionRef {
        start: r.start.0,
        end: r.end.0,
        perms: perms(r),
        name: String::from_utf8_lossy(&r.name).into_owned(),
    }
}

/// Compares the memory of region `ia` of A with region `ib` of B (same
/// start), page by page, as the spec defines memory (see [`RegionMemory`]):
/// the pages either image stores, or, when the two regions do not mean
/// the same by an absent page (one by reference, the other not, or
/// another file), every page of both.
/// The addresses of the pages to compare between region `ia` of A and
/// region `ib` of B (see [`pages`]).
fn page_addrs(a: &MappedImage, ia: usize, b: &MappedImage, ib: usize) -> Vec<u64> {
    let (ra, rb) = (&a.regions()[ia], &b.regions()[ib]);
    let ps = a.page_size();
    let stored = |img: &MappedImage, i: usize| -> Vec<u64> {
        img.chunks()
            .iter()
            .filter(|c| c.meta.region as usize == i)
            .flat_map(|c| (0..c.meta.pages as u64).map(move |k| c.meta.addr.0 + k * ps))
            .collect()
    };
    let mut addrs: Vec<u64> = if reference(ra) == reference(rb) {
        let mut v = stored(a, ia);
        v.extend(stored(b, ib));
        v
    } else {
        let (start, end) = (ra.start.0.min(rb.start.0), ra.end.0.max(rb.end.0));
        (start..end).step_by(ps as usize).collect()
    };
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

fn pages(
    a: &MappedImage,
    ia: usize,
    b: &MappedImage,
    ib: usize,
    addrs: Vec<u64>,
    progress: &mut Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<PageDiff> {
    let r = &a.regions()[ia];
    let mut d = PageDiff {
        start: r.start.0,
        name: String::from_utf8_lossy(&r.name).into_owned(),
        ..Default::default()
    };
    let ps = a.page_size();
    let (mut ra, mut rb) = (RegionMemory::new(a, ia), RegionMemory::new(b, ib));
    let (mut pa, mut pb) = (vec![0u8; ps as usize], vec![0u8; ps as usize]);
    let (mut unknown_a, mut unknown_b) = (false, false);
    let inside =
        |m: &RegionMemory, addr: u64| m.region().start.0 <= addr && addr < m.region().end.0;
    for addr in addrs {
        progress.add(ps);
        let sa = if inside(&ra, addr) {
            ra.page(addr, &mut pa)?
        } else {
            pa.fill(0);
            Source::Zero
        };
        let sb = if inside(&rb, addr) {
            rb.page(addr, &mut pb)?
        } else {
            pb.fill(0);
            Source::Zero
        };
        unknown_a |= sa == Source::Unknown;
        unknown_b |= sb == Source::Unknown;
        if pa == pb {
            continue;
        }
        match (sa == Source::Stored, sb == Source::Stored) {
            (true, false) => d.removed_pages += 1,
            (false, true) => d.added_pages += 1,
            _ => {
                d.changed_pages += 1;
                d.changed_bytes += pa.iter().zip(&pb).filter(|(p, q)| p != q).count() as u64;
            }
        }
        if d.first == 0 {
            d.first = addr;
        }
    }
    for (unknown, m, which) in [(unknown_a, &ra, "A"), (unknown_b, &rb, "B")] {
        if unknown {
            warnings.push(format!(
                "{which} {:#x} {}: pages left to the file compared as zeros ({})",
                r.start.0,
                d.name,
                m.file_problem.as_deref().unwrap_or("file not usable here")
            ));
        }
    }
    Ok(d)
}

fn fd_map(fds: &[FdEntry]) -> BTreeMap<i32, &FdEntry> {
    fds.iter().map(|f| (f.fd.0, f)).collect()
}

/// Which region of B is each region of A (in A's address order): the one
/// with the same start, else one with the same end, name and kind (a
/// stack that grew down, a mapping that grew at its start), else none.
fn pair_regions(a: &MappedImage, b: &MappedImage) -> Vec<(usize, Option<usize>)> {
    let mut order: Vec<usize> = (0..a.regions().len()).collect();
    order.sort_by_key(|&i| a.regions()[i].start);
    let by_start: BTreeMap<u64, usize> = b
        .regions()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.start.0, i))
        .collect();
    let mut taken = vec![false; b.regions().len()];
    let mut pairs: Vec<(usize, Option<usize>)> = order
        .iter()
        .map(|&ia| {
            let ib = by_start.get(&a.regions()[ia].start.0).copied();
            if let Some(ib) = ib {
                taken[ib] = true;
            }
            (ia, ib)
        })
        .collect();
    for (ia, ib) in pairs.iter_mut().filter(|p| p.1.is_none()) {
        let ra = &a.regions()[*ia];
        let found = b.regions().iter().enumerate().position(|(i, rb)| {
            !taken[i] && rb.end == ra.end && rb.name == ra.name && rb.kind == ra.kind
        });
        if let Some(i) = found {
            taken[i] = true;
            *ib = Some(i);
        }
    }
    pairs
}

/// Compares two images.
pub fn diff(a: &MappedImage, b: &MappedImage) -> anyhow::Result<ImageDiff> {
    let mut d = ImageDiff {
        header: fields("", a.header(), b.header(), &["host", "created_ns"]),
        ..Default::default()
    };
    let (ha, hb) = (a.header(), b.header());
    if ha.created_ns != hb.created_ns {
        d.header.insert(
            0,
            FieldChange {
                field: "created".into(),
                a: utc(ha.created_ns),
                b: utc(hb.created_ns),
            },
        );
    }
    d.header.extend(fields("host.", &ha.host, &hb.host, &[]));
    let (va, vb) = (a.version(), b.version());
    if va != vb {
        d.header.insert(
            0,
            FieldChange {
                field: "format".into(),
                a: format!("{}.{}", va.0, va.1),
                b: format!("{}.{}", vb.0, vb.1),
            },
        );
    }
    d.process = fields("", a.process(), b.process(), &[]);

    // The writer's own threads (the checkpoint thread, the compression
    // workers) are started anew for every checkpoint: not the program's,
    // not compared.
    let program = |t: &&ckpt_format::model::Thread| {
        t.flags.0 & ckpt_format::model::ThreadFlags::CHECKPOINT_THREAD == 0
            && t.name != "ckpt-worker"
    };
    let ta: BTreeMap<i32, _> = a
        .threads()
        .iter()
        .filter(program)
        .map(|t| (t.tid.0, t))
        .collect();
    let tb: BTreeMap<i32, _> = b
        .threads()
        .iter()
        .filter(program)
        .map(|t| (t.tid.0, t))
        .collect();
    d.threads_added = tb.keys().filter(|k| !ta.contains_key(k)).copied().collect();
    d.threads_removed = ta.keys().filter(|k| !tb.contains_key(k)).copied().collect();
    for (tid, x) in &ta {
        if let Some(y) = tb.get(tid) {
            let mut f = fields("", &x.regs, &y.regs, &[]);
            f.extend(fields("", *x, *y, &["regs", "xsave", "tid"]));
            if x.xsave != y.xsave {
                f.push(FieldChange {
                    field: "xsave".into(),
                    a: format!("{} bytes", x.xsave.len()),
                    b: format!("{} bytes", y.xsave.len()),
                });
            }
            if !f.is_empty() {
                d.threads_changed.push(ThreadChange {
                    tid: *tid,
                    fields: f,
                });
            }
        }
    }

    let (fa, fb) = (fd_map(a.fds()), fd_map(b.fds()));
    d.fds_added = fb.keys().filter(|k| !fa.contains_key(k)).copied().collect();
    d.fds_removed = fa.keys().filter(|k| !fb.contains_key(k)).copied().collect();
    for (k, x) in &fa {
        if let Some(y) = fb.get(k).filter(|y| *y != x) {
            d.fds_changed.push(*k);
            d.fd_changes.push(FdChange {
                fd: *k,
                fields: fields("", *x, *y, &["fd"]),
            });
        }
    }

    let pairs = pair_regions(a, b);
    // The pages to compare first, for the progress's total.
    let plan: Vec<Vec<u64>> = pairs
        .iter()
        .map(|&(ia, ib)| ib.map_or_else(Vec::new, |ib| page_addrs(a, ia, b, ib)))
        .collect();
    let total = plan.iter().map(|v| v.len() as u64).sum::<u64>() * a.page_size();
    let mut progress = Progress::new("diff", total);
    let mut paired_b = vec![false; b.regions().len()];
    for (&(ia, ib), addrs) in pairs.iter().zip(plan) {
        let ra = &a.regions()[ia];
        let Some(ib) = ib else {
            d.regions_removed.push(region_ref(ra));
            continue;
        };
        paired_b[ib] = true;
        let rb = &b.regions()[ib];
        let mut f = fields("", ra, rb, &["prot", "shared"]);
        if perms(ra) != perms(rb) {
            f.insert(
                0,
                FieldChange {
                    field: "prot".into(),
                    a: perms(ra),
                    b: perms(rb),
                },
            );
        }
        if !f.is_empty() {
            d.regions_changed.push(RegionChange {
                start: ra.start.0,
                fields: f,
            });
        }
        let p = pages(a, ia, b, ib, addrs, &mut progress, &mut d.warnings)?;
        if p.changed_pages + p.added_pages + p.removed_pages > 0 {
            d.pages.push(p);
        }
    }
    for (ib, r) in b.regions().iter().enumerate() {
        if !paired_b[ib] {
            d.regions_added.push(region_ref(r));
        }
    }
    d.regions_added.sort_by_key(|r| r.start);
    Ok(d)
}

/// The differences for people.
pub fn render(d: &ImageDiff, a: &str, b: &str) -> String {
    let mut s = format!("--- {a}\n+++ {b}\n");
    for w in &d.warnings {
        let _ = writeln!(s, "note: {w}");
    }
    if d.is_identical() {
        s.push_str("identical\n");
        return s;
    }
    let changes = |s: &mut String, title: &str, v: &[FieldChange]| {
        if !v.is_empty() {
            let _ = writeln!(s, "{title}:");
            for c in v {
                let _ = writeln!(s, "  {}: {} -> {}", c.field, c.a, c.b);
            }
        }
    };
    changes(&mut s, "header", &d.header);
    changes(&mut s, "process", &d.process);
    if !(d.threads_added.is_empty() && d.threads_removed.is_empty() && d.threads_changed.is_empty())
    {
        s.push_str("threads:\n");
        for t in &d.threads_added {
            let _ = writeln!(s, "  + tid {t}");
        }
        for t in &d.threads_removed {
            let _ = writeln!(s, "  - tid {t}");
        }
        for t in &d.threads_changed {
            let f: Vec<String> = t
                .fields
                .iter()
                .map(|c| format!("{} {} -> {}", c.field, c.a, c.b))
                .collect();
            let _ = writeln!(s, "  ~ tid {}: {}", t.tid, f.join(", "));
        }
    }
    if !(d.fds_added.is_empty() && d.fds_removed.is_empty() && d.fds_changed.is_empty()) {
        s.push_str("fds:\n");
        for f in &d.fds_added {
            let _ = writeln!(s, "  + fd {f}");
        }
        for f in &d.fds_removed {
            let _ = writeln!(s, "  - fd {f}");
        }
        for c in &d.fd_changes {
            let f: Vec<String> = c
                .fields
                .iter()
                .map(|c| format!("{} {} -> {}", c.field, c.a, c.b))
                .collect();
            let _ = writeln!(s, "  ~ fd {}: {}", c.fd, f.join(", "));
        }
    }
    if !(d.regions_added.is_empty() && d.regions_removed.is_empty() && d.regions_changed.is_empty())
    {
        s.push_str("regions:\n");
        for (sign, v) in [("+", &d.regions_added), ("-", &d.regions_removed)] {
            for r in v {
                let line = format!(
                    "  {sign} {:#x}-{:#x} {} {}",
                    r.start, r.end, r.perms, r.name
                );
                let _ = writeln!(s, "{}", line.trim_end());
            }
        }
        for r in &d.regions_changed {
            let f: Vec<String> = r
                .fields
                .iter()
                .map(|c| format!("{} {} -> {}", c.field, c.a, c.b))
                .collect();
            let _ = writeln!(s, "  ~ {:#x}: {}", r.start, f.join(", "));
        }
    }
    if !d.pages.is_empty() {
        s.push_str("pages:\n");
        for p in &d.pages {
            let _ = writeln!(
                s,
                "  {:#x} {}: {} changed ({} bytes), {} added, {} removed; first at {:#x}",
                p.start,
                p.name,
                p.changed_pages,
                p.changed_bytes,
                p.added_pages,
                p.removed_pages,
                p.first
            );
        }
    }
    s
}

/// The differences as JSON (schema `ckpt-diff/1`, spec/tools-json.md).
pub fn to_json(d: &ImageDiff, a: &str, b: &str) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    v["schema"] = json!("ckpt-diff/1");
    v["a"] = json!(a);
    v["b"] = json!(b);
    v["identical"] = json!(d.is_identical());
    v
}

/// Opens both images and compares them; exit status as diff(1).
pub fn run(a: &Path, b: &Path, as_json: bool) -> i32 {
    if a.as_os_str() == "-" && b.as_os_str() == "-" {
        eprintln!("ckpt image diff: only one of the images can be `-`");
        return 2;
    }
    let result = (|| -> anyhow::Result<(ImageDiff, String, String)> {
        let ia = open_image(a)?;
        let ib = open_image(b)?;
        let d = diff(&ia, &ib)?;
        Ok((d, a.display().to_string(), b.display().to_string()))
    })();
    match result {
        Ok((d, na, nb)) => {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&d, &na, &nb)).unwrap_or_default()
                );
            } else {
                print!("{}", render(&d, &na, &nb));
            }
            i32::from(!d.is_identical())
        }
        Err(e) => {
            eprintln!("ckpt image diff: {e:#}");
            2
        }
    }
}
