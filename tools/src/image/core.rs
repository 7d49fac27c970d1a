//! `ckpt image core IMAGE -o FILE`: an ELF64 core file of the checkpointed
//! process, for gdb (`gdb PROGRAM FILE`). One PT_NOTE (per thread
//! NT_PRSTATUS, NT_FPREGSET and NT_X86_XSTATE, so gdb shows the AVX and
//! AVX-512 registers too; NT_PRPSINFO, NT_AUXV, NT_FILE), then one
//! PT_LOAD per region. Pages the image does not store are zeros, except in
//! by-reference file regions, whose bytes come from the file when it is
//! the same file; a by-reference region with nothing stored gets
//! `p_filesz = 0`, and gdb reads it from the file named in NT_FILE.

use super::progress::Progress;
use super::repack::{open_identical, open_image};
use anyhow::Context;
use ckpt_format::{FileStorage, GpRegs, MappedImage, Prot, Region, Thread, ThreadFlags};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

const NT_PRSTATUS: u32 = 1;
const NT_FPREGSET: u32 = 2;
const NT_PRPSINFO: u32 = 3;
const NT_AUXV: u32 = 6;
const NT_FILE: u32 = 0x4649_4c45;
const NT_X86_XSTATE: u32 = 0x202;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EHDR_LEN: u64 = 64;
const PHDR_LEN: u64 = 56;

/// One ELF note: "CORE" name, 4-byte aligned.
fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    named_note(out, b"CORE", kind, desc);
}

/// One ELF note with its name, name and desc 4-byte aligned.
fn named_note(out: &mut Vec<u8>, name: &[u8], kind: u32, desc: &[u8]) {
    out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// NT_X86_XSTATE as Linux writes it: the XSAVE area (standard form) of
/// the full size for the enabled features, XCR0 in the first word of the
/// software-reserved bytes (464), where gdb looks for it. The image holds
/// the signal frame's area, which ends after the last component in use
/// and has the kernel's fpx_sw_bytes at 464: the rest is zeros (the
/// components XSTATE_BV leaves out are in their initial state anyway).
fn xstate(img: &MappedImage, t: &Thread) -> Option<Vec<u8>> {
    let h = &img.header().host;
    let size = h.xsave_size as usize;
    if t.xsave.len() < 576 || !(576..=1 << 20).contains(&size) {
        return None;
    }
    let mut b = vec![0u8; size];
    let n = t.xsave.len().min(size);
    b[..n].copy_from_slice(&t.xsave[..n]);
    b[464..512].fill(0);
    b[464..472].copy_from_slice(&h.xsave_features.to_le_bytes());
    Some(b)
}

/// `user_regs_struct`: GpRegs is already in its order.
fn user_regs(r: &GpRegs) -> Vec<u8> {
    [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect()
}

/// `struct elf_prstatus` (x86_64, 336 bytes).
fn prstatus(img: &MappedImage, t: &Thread) -> Vec<u8> {
    let p = img.process();
    let mut b = vec![0u8; 336];
    b[24..32].copy_from_slice(&t.sigmask.to_le_bytes()); // pr_sighold
    b[32..36].copy_from_slice(&t.tid.0.to_le_bytes());
    b[36..40].copy_from_slice(&p.ppid.0.to_le_bytes());
    b[40..44].copy_from_slice(&p.pgid.0.to_le_bytes());
    b[44..48].copy_from_slice(&p.sid.0.to_le_bytes());
    b[112..328].copy_from_slice(&user_regs(&t.regs));
    b[328..332].copy_from_slice(&i32::from(t.xsave.len() >= 512).to_le_bytes());
    b
}

/// `struct elf_prpsinfo` (x86_64, 136 bytes).
fn prpsinfo(img: &MappedImage) -> Vec<u8> {
    let p = img.process();
    let mut b = vec![0u8; 136];
    b[0] = 0; // running
    b[1] = b'R';
    b[3] = p.nice as i8 as u8;
    b[16..20].copy_from_slice(&p.uid[0].to_le_bytes());
    b[20..24].copy_from_slice(&p.gid[0].to_le_bytes());
    b[24..28].copy_from_slice(&p.pid.0.to_le_bytes());
    b[28..32].copy_from_slice(&p.ppid.0.to_le_bytes());
    b[32..36].copy_from_slice(&p.pgid.0.to_le_bytes());
    b[36..40].copy_from_slice(&p.sid.0.to_le_bytes());
    let name = img.header().program.as_bytes();
    let n = name.len().min(15);
    b[40..40 + n].copy_from_slice(&name[..n]);
    let args = p.cmdline.join(&b' ');
    let n = args.len().min(79);
    b[56..56 + n].copy_from_slice(&args[..n]);
    b
}

fn auxv(img: &MappedImage) -> Vec<u8> {
    let mut b: Vec<u8> = Vec::new();
    for &(k, v) in &img.process().auxv {
        if k == 0 {
            break;
        }
        b.extend_from_slice(&k.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&[0u8; 16]);
    b
}

/// NT_FILE: count, page size, (start, end, offset in pages), names.
fn nt_file(img: &MappedImage) -> Vec<u8> {
    let ps = img.page_size();
    let files: Vec<&Region> = img
        .regions()
        .iter()
        .filter(|r| r.backing.is_some())
        .collect();
    let mut b = Vec::new();
    b.extend_from_slice(&(files.len() as u64).to_le_bytes());
    b.extend_from_slice(&ps.to_le_bytes());
    for r in &files {
        let off = r.backing.as_ref().map_or(0, |f| f.offset);
        for v in [r.start.0, r.end.0, off / ps] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    for b2 in files.iter().filter_map(|r| r.backing.as_ref()) {
        b.extend_from_slice(&b2.file.path);
        b.push(0);
    }
    b
}

fn notes(img: &MappedImage) -> Vec<u8> {
    let mut n = Vec::new();
    // The leader first: gdb takes the first NT_PRSTATUS as the current thread.
    let mut threads: Vec<&Thread> = img.threads().iter().collect();
    threads.sort_by_key(|t| t.flags.0 & ThreadFlags::LEADER == 0);
    for t in threads {
        note(&mut n, NT_PRSTATUS, &prstatus(img, t));
        if t.xsave.len() >= 512 {
            note(&mut n, NT_FPREGSET, &t.xsave[..512]);
        }
        if let Some(x) = xstate(img, t) {
            named_note(&mut n, b"LINUX", NT_X86_XSTATE, &x);
        }
    }
    note(&mut n, NT_PRPSINFO, &prpsinfo(img));
    note(&mut n, NT_AUXV, &auxv(img));
    note(&mut n, NT_FILE, &nt_file(img));
    n
}

/// Bytes of region `i` the core stores: none for a by-reference region
/// without stored pages, else the whole region.
fn stored_len(img: &MappedImage, i: usize) -> u64 {
    let r = &img.regions()[i];
    let by_ref = r
        .backing
        .as_ref()
        .is_some_and(|b| b.storage == FileStorage::ByReference);
    if by_ref && !img.chunks().iter().any(|c| c.meta.region as usize == i) {
        0
    } else {
        r.end.0 - r.start.0
    }
}

fn pflags(p: Prot) -> u32 {
    let mut f = 0;
    if p.0 & Prot::EXEC != 0 {
        f |= 1;
    }
    if p.0 & Prot::WRITE != 0 {
        f |= 2;
    }
    if p.0 & Prot::READ != 0 {
        f |= 4;
    }
    f
}

/// Writes region `i` at the current position of `out`: absent pages from
/// the file of a by-reference region when it is unchanged, else zeros.
fn write_region(
    img: &MappedImage,
    i: usize,
    out: &mut std::fs::File,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let r = &img.regions()[i];
    let ps = img.page_size();
    let len = r.end.0 - r.start.0;
    let base = out.stream_position()?;
    // Zeros everywhere first (sparse), then the file's pages, then the stored ones.
    out.set_len(out.metadata()?.len().max(base + len))?;
    if let Some(b) = r
        .backing
        .as_ref()
        .filter(|b| b.storage == FileStorage::ByReference)
    {
        if let Ok(f) = open_identical(&b.file) {
            let mut page = vec![0u8; ps as usize];
            let mut off = 0;
            while off < len {
                page.fill(0);
                let _ = f.read_page_into(b.offset + off, &mut page);
                out.write_all_at(&page, base + off)?;
                off += ps;
            }
        }
    }
    let mut buf = Vec::new();
    for c in img.chunks().iter().filter(|c| c.meta.region as usize == i) {
        buf.resize((c.meta.pages as u64 * ps) as usize, 0);
        img.read_chunk(c, &mut buf)
            .with_context(|| format!("chunk at {:#x}", c.meta.addr.0))?;
        out.write_all_at(&buf, base + (c.meta.addr.0 - r.start.0))?;
        progress.add(buf.len() as u64);
    }
    out.seek(SeekFrom::Start(base + len))?;
    Ok(())
}

/// Writes the core file of `img` to `out`.
pub fn write_core(img: &MappedImage, out: &mut std::fs::File) -> anyhow::Result<()> {
    let ps = img.page_size();
    let notes = notes(img);
    let nregions = img.regions().len() as u64;
    let phnum = 1 + nregions;
    let notes_off = EHDR_LEN + phnum * PHDR_LEN;
    let mut off = (notes_off + notes.len() as u64).next_multiple_of(ps);
    let mut ph = Vec::new();
    let phdr =
        |ph: &mut Vec<u8>, kind: u32, flags: u32, o: u64, va: u64, fsz: u64, msz: u64, al: u64| {
            ph.extend_from_slice(&kind.to_le_bytes());
            ph.extend_from_slice(&flags.to_le_bytes());
            for v in [o, va, 0, fsz, msz, al] {
                ph.extend_from_slice(&v.to_le_bytes());
            }
        };
    phdr(&mut ph, PT_NOTE, 0, notes_off, 0, notes.len() as u64, 0, 4);
    let mut offsets = Vec::new();
    for (i, r) in img.regions().iter().enumerate() {
        let fsz = stored_len(img, i);
        offsets.push(off);
        phdr(
            &mut ph,
            PT_LOAD,
            pflags(r.prot),
            off,
            r.start.0,
            fsz,
            r.end.0 - r.start.0,
            ps,
        );
        off += fsz;
    }
    if phnum > 0xffff {
        anyhow::bail!("{nregions} regions: too many for an ELF core");
    }
    let mut eh = Vec::with_capacity(64);
    eh.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    eh.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    eh.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    eh.extend_from_slice(&1u32.to_le_bytes());
    eh.extend_from_slice(&0u64.to_le_bytes()); // entry
    eh.extend_from_slice(&EHDR_LEN.to_le_bytes()); // phoff
    eh.extend_from_slice(&0u64.to_le_bytes()); // shoff
    eh.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [EHDR_LEN as u16, PHDR_LEN as u16, phnum as u16, 64, 0, 0] {
        eh.extend_from_slice(&v.to_le_bytes());
    }
    out.set_len(0)?;
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&eh)?;
    out.write_all(&ph)?;
    out.write_all(&notes)?;
    let total = img.chunks().iter().map(|c| c.meta.pages as u64 * ps).sum();
    let mut progress = Progress::new("core", total);
    for (i, &o) in offsets.iter().enumerate() {
        if stored_len(img, i) > 0 {
            out.seek(SeekFrom::Start(o))?;
            write_region(img, i, out, &mut progress)?;
        }
    }
    drop(progress);
    out.set_len(off.max(notes_off + notes.len() as u64))?;
    Ok(())
}

pub fn run(image: &Path, output: &Path, as_json: bool) -> anyhow::Result<i32> {
    let img = open_image(image)?;
    if img.header().arch != 62 {
        anyhow::bail!("core files are written for x86_64 images only");
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    write_core(&img, &mut f)?;
    f.sync_all()?;
    let out = output.display().to_string();
    if as_json {
        let v = to_json(&img, &image.display().to_string(), &out);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprint!("{}", render(&img, &out));
    }
    Ok(0)
}

/// By-reference files that are absent or changed here: the core has
/// zeros where the image leaves pages to them (gdb reads a region with no
/// stored page from the file itself, when it is there).
pub fn missing_files(img: &MappedImage) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for b in img.regions().iter().filter_map(|r| r.backing.as_ref()) {
        let path = String::from_utf8_lossy(&b.file.path).into_owned();
        if b.storage == FileStorage::ByReference
            && !missing.contains(&path)
            && open_identical(&b.file).is_err()
        {
            missing.push(path);
        }
    }
    missing
}

/// What `core --json` prints (schema `ckpt-core/1`, spec/tools-json.md).
pub fn to_json(img: &MappedImage, image: &str, output: &str) -> serde_json::Value {
    serde_json::json!({
        "schema": "ckpt-core/1",
        "image": image,
        "output": output,
        "exe": String::from_utf8_lossy(&img.process().exe),
        "threads": img.threads().iter().map(|t| t.tid.0).collect::<Vec<_>>(),
        "regions": img.regions().len(),
        "missing_files": missing_files(img),
    })
}

/// What `core` says once the file is written: what it holds, what the
/// image leaves to files that are not here, and how to open it.
pub fn render(img: &MappedImage, output: &str) -> String {
    let missing = missing_files(img);
    let mut s = format!(
        "wrote {output} ({} threads, {} regions); open it with: gdb {} {output}\n",
        img.threads().len(),
        img.regions().len(),
        String::from_utf8_lossy(&img.process().exe),
    );
    for p in missing {
        s.push_str(&format!(
            "  note: {p} is not here or changed: the core lacks the pages the image leaves to it\n"
        ));
    }
    s
}
