//! `ckpt image check-host`: would this image restart on this host? Reads
//! the image's host fingerprint and its by-reference files, compares them
//! with what this machine has, and gives one verdict with its reasons.
//! Exit 0 restartable, 1 not, 2 unreadable.
//!
//! What the host has is gathered once into a [`HostInfo`]; [`check`] is a
//! function of the image and that value (plus the files it stats), so the
//! renderings are tested with a fixed host.

use super::repack::{file_mismatch, open_image};
use ckpt_format::{FileStorage, MappedImage, VdsoSymbol};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What this machine offers a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    /// ELF machine of this host (62 = x86_64).
    pub arch: u16,
    /// `uname -r`.
    pub kernel_release: String,
    /// Unprivileged user namespaces are allowed.
    pub userns: Result<(), String>,
    /// Effective uid of whoever runs the restart (root needs no user
    /// namespace: ckpt-restore makes only the pid namespace).
    pub euid: u32,
    /// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)` answers (CONFIG_CHECKPOINT_RESTORE).
    pub mm_map: bool,
    /// XCR0 (None: no XSAVE, or not x86_64).
    pub xcr0: Option<u64>,
    /// CPU flags of /proc/cpuinfo.
    pub cpu_flags: Vec<String>,
    /// Symbols of the running vdso.
    pub vdso_symbols: Vec<VdsoSymbol>,
}

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// For information only.
    Info,
    /// May matter; does not prevent a restart.
    Warn,
    /// Prevents a restart.
    Fail,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short name (`arch`, `xsave`, `file /usr/lib/libc.so.6`).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was compared.
    pub detail: String,
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostReport {
    /// Every check, in order.
    pub checks: Vec<Check>,
}

impl HostReport {
    /// True when no check failed.
    pub fn restartable(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

fn arch_name(m: u16) -> String {
    match m {
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv64".into(),
        _ => format!("ELF machine {m}"),
    }
}

/// (major, minor) of a kernel release string.
fn kernel_version(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl HostInfo {
    /// This machine.
    pub fn current() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string());
        let userns = match (
            read("/proc/sys/kernel/unprivileged_userns_clone"),
            read("/proc/sys/user/max_user_namespaces"),
        ) {
            (Ok(v), _) if v == "0" => Err("kernel.unprivileged_userns_clone = 0".to_string()),
            (_, Ok(v)) if v == "0" => Err("user.max_user_namespaces = 0".to_string()),
            _ => Ok(()),
        };
        HostInfo {
            arch: match std::env::consts::ARCH {
                "x86_64" => 62,
                "aarch64" => 183,
                "riscv64" => 243,
                _ => 0,
            },
            kernel_release: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            userns,
            // SAFETY: geteuid has no preconditions and cannot fail.
            euid: unsafe { libc::geteuid() },
            mm_map: mm_map_supported(),
            xcr0: xcr0(),
            cpu_flags: cpu_flags(),
            vdso_symbols: running_vdso(),
        }
    }
}

fn mm_map_supported() -> bool {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE only writes the size of struct
    // prctl_mm_map into the c_uint we pass; it changes nothing.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP_SIZE,
            &mut size as *mut libc::c_uint,
            0,
            0,
        )
    };
    r == 0 && size > 0
}

#[cfg(target_arch = "x86_64")]
fn xcr0() -> Option<u64> {
    use std::arch::x86_64::{__cpuid, _xgetbv};
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return None; // no OSXSAVE: xgetbv would fault
    }
    // SAFETY: OSXSAVE is set, so the OS enabled XGETBV; register 0 is XCR0.
    Some(unsafe { _xgetbv(0) })
}

#[cfg(not(target_arch = "x86_64"))]
fn xcr0() -> Option<u64> {
    None
}

fn cpu_flags() -> Vec<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut v: Vec<String> = s
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn u16at(b: &[u8], o: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as u64)
}
fn u32at(b: &[u8], o: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as u64)
}
fn u64at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Defined function symbols of an in-memory vdso image, as offsets from
/// its start (the approach of restorer/src/vdso.rs).
pub fn vdso_symbols(image: &[u8]) -> Option<Vec<VdsoSymbol>> {
    if image.get(..4)? != b"\x7fELF" || *image.get(4)? != 2 {
        return None;
    }
    let phoff = u64at(image, 0x20)? as usize;
    let phentsize = u16at(image, 0x36)? as usize;
    let phnum = u16at(image, 0x38)? as usize;
    let mut bias = None;
    for i in 0..phnum {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32at(image, p)? == 1 {
            bias = Some(u64at(image, p + 16)?.wrapping_sub(u64at(image, p + 8)?));
            break;
        }
    }
    let bias = bias?;
    let shoff = u64at(image, 0x28)? as usize;
    let shentsize = u16at(image, 0x3a)? as usize;
    let shnum = u16at(image, 0x3c)? as usize;
    let sh = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let mut out = Vec::new();
    for i in 0..shnum {
        let s = sh(i)?;
        if u32at(image, s + 4)? != 11 {
            continue; // not SHT_DYNSYM
        }
        let (off, size, link) = (
            u64at(image, s + 0x18)? as usize,
            u64at(image, s + 0x20)? as usize,
            u32at(image, s + 0x28)? as usize,
        );
        let st = sh(link)?;
        let (str_off, str_size) = (
            u64at(image, st + 0x18)? as usize,
            u64at(image, st + 0x20)? as usize,
        );
        let strtab = image.get(str_off..str_off.checked_add(str_size)?)?;
        let syms = image.get(off..off.checked_add(size)?)?;
        for e in syms.chunks_exact(24) {
            let name_off = u32at(e, 0)? as usize;
            if e[4] & 0xf != 2 || u16at(e, 6)? == 0 {
                continue; // not a defined function
            }
            let name = strtab.get(name_off..)?;
            let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            out.push(VdsoSymbol {
                name: String::from_utf8_lossy(&name[..n]).into_owned(),
                offset: u64at(e, 8)?.wrapping_sub(bias),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Some(out)
}

/// The running vdso's symbols: found by AT_SYSINFO_EHDR in /proc/self/auxv,
/// its length by /proc/self/maps.
fn running_vdso() -> Vec<VdsoSymbol> {
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    let base = auxv
        .chunks_exact(16)
        .map(|e| (u64at(e, 0).unwrap_or(0), u64at(e, 8).unwrap_or(0)))
        .find(|&(k, _)| k == 33)
        .map(|(_, v)| v);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let range = maps.lines().find(|l| l.ends_with("[vdso]")).and_then(|l| {
        let (s, e) = l.split_whitespace().next()?.split_once('-')?;
        Some((
            u64::from_str_radix(s, 16).ok()?,
            u64::from_str_radix(e, 16).ok()?,
        ))
    });
    match (base, range) {
        (Some(b), Some((s, e))) if b == s && e > s => {
            // SAFETY: [s, e) is this process's [vdso] mapping (readable,
            // never unmapped or written while we run), as /proc/self/maps
            // and the auxiliary vector both say.
            let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, (e - s) as usize) };
            vdso_symbols(bytes).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// XSAVE component names (bits of XCR0).
fn xfeature(bit: u32) -> String {
    const N: [&str; 20] = [
        "x87",
        "sse",
        "avx",
        "bndregs",
        "bndcsr",
        "opmask",
        "zmm_hi256",
        "hi16_zmm",
        "pt",
        "pkru",
        "pasid",
        "cet_u",
        "cet_s",
        "hdc",
        "uintr",
        "lbr",
        "hwp",
        "xtilecfg",
        "xtiledata",
        "apx",
    ];
    N.get(bit as usize)
        .map_or_else(|| format!("bit {bit}"), |n| (*n).to_string())
}

fn names(bits: u64) -> String {
    (0..64)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(xfeature)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The XSAVE components a thread's saved state holds: XSTATE_BV (and, in
/// the compacted form, XCOMP_BV) of its XSAVE header, at byte 512. A
/// restore loads them with XRSTOR, which faults on a component this CPU
/// does not enable.
fn xsave_in_use(xsave: &[u8]) -> u64 {
    let word = |o: usize| {
        xsave
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let (bv, comp) = (word(512), word(520));
    bv | if comp >> 63 == 1 {
        comp & !(1 << 63)
    } else {
        0
    }
}

/// The `xsave` check: what the saved threads' FP state uses must be
/// enabled here (fail); what the writer's host enabled but no saved
/// state uses only matters to a program that asks CPUID (warn).
fn xsave_check(img: &MappedImage, host: &HostInfo, add: &mut impl FnMut(&str, Status, String)) {
    let want = img.header().host.xsave_features;
    let mut used = 0u64;
    let mut users: Vec<(i32, u64)> = Vec::new();
    for t in img.threads() {
        let u = xsave_in_use(&t.xsave);
        used |= u;
        users.push((t.tid.0, u));
    }
    let Some(have) = host.xcr0 else {
        if used == 0 && want == 0 {
            add("xsave", Status::Ok, "image uses no XSAVE".into());
        } else {
            add(
                "xsave",
                Status::Fail,
                format!("image XCR0 {want:#x}, this host has no XSAVE"),
            );
        }
        return;
    };
    let lacking = used & !have;
    if lacking != 0 {
        let tids: Vec<String> = users
            .iter()
            .filter(|(_, u)| u & lacking != 0)
            .map(|(t, _)| t.to_string())
            .collect();
        add(
            "xsave",
            Status::Fail,
            format!(
                "the saved FP state of thread(s) {} holds {}, which this CPU lacks (XCR0 {have:#x})",
                tids.join(" "),
                names(lacking)
            ),
        );
    } else if want & !have != 0 {
        add(
            "xsave",
            Status::Warn,
            format!(
                "image XCR0 {want:#x}, this host {have:#x}: {} missing here, unused by the saved threads (in use: {used:#x})",
                names(want & !have)
            ),
        );
    } else {
        add(
            "xsave",
            Status::Ok,
            format!("image XCR0 {want:#x} within this host's {have:#x}"),
        );
    }
}

/// The writer's copy of its own library (`ckpt_writer-<build>.so`,
/// [`ckpt_format::is_writer_copy`]), by the restorer's rule (restorer
/// restore.rs `open_backing`): at its recorded path, else beside the image
/// in `img_dir` (the images were moved); judged by its size alone, since a
/// copy has another inode and mtime. Ok: where it was found.
fn writer_copy(id: &ckpt_format::FileIdentity, img_dir: Option<&Path>) -> Result<String, String> {
    let recorded = Path::new(std::ffi::OsStr::from_bytes(&id.path));
    let beside = img_dir.zip(recorded.file_name()).map(|(d, n)| d.join(n));
    let (path, found) = match &beside {
        Some(b) if !recorded.exists() => (b.as_path(), "found beside the image: "),
        _ => (recorded, ""),
    };
    let size = std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .map(|m| m.len())
        .map_err(|e| match &beside {
            Some(b) if b != recorded => format!(
                "{}: {e}; not beside the image either ({})",
                recorded.display(),
                b.display()
            ),
            _ => format!("{}: {e}", path.display()),
        })?;
    if size != id.size {
        return Err(format!(
            "{} changed since the checkpoint: size {size} (image: {})",
            path.display(),
            id.size
        ));
    }
    Ok(format!(
        "the writer library's copy, {found}{} (same size, {size} bytes)",
        path.display()
    ))
}

/// Checks `img` against `host`; files the image refers to are looked for
/// where they were (an image read from a stream).
pub fn check(img: &MappedImage, host: &HostInfo) -> HostReport {
    check_in(img, host, None)
}

/// Checks `img`, read from a file in `img_dir`, against `host`: the
/// writer's copy of its library is also looked for beside the image, as
/// ckpt-restore does.
pub fn check_in(img: &MappedImage, host: &HostInfo, img_dir: Option<&Path>) -> HostReport {
    let h = img.header();
    let mut v = Vec::new();
    let mut add = |name: &str, status: Status, detail: String| {
        v.push(Check {
            name: name.into(),
            status,
            detail,
        })
    };
    if h.arch == host.arch {
        add("arch", Status::Ok, arch_name(h.arch));
    } else {
        add(
            "arch",
            Status::Fail,
            format!(
                "image {}, this host {}",
                arch_name(h.arch),
                arch_name(host.arch)
            ),
        );
    }
    add(
        "kernel",
        Status::Info,
        format!(
            "image written on {}, this host runs {}",
            h.host.kernel_release, host.kernel_release
        ),
    );
    match kernel_version(&host.kernel_release) {
        Some(kv) if kv >= (5, 5) => add(
            "clone3 set_tid",
            Status::Ok,
            format!("kernel {}.{} >= 5.5", kv.0, kv.1),
        ),
        Some(kv) => add(
            "clone3 set_tid",
            Status::Fail,
            format!(
                "kernel {}.{} < 5.5: threads cannot get their tids back",
                kv.0, kv.1
            ),
        ),
        None => add(
            "clone3 set_tid",
            Status::Warn,
            format!("cannot parse kernel release {:?}", host.kernel_release),
        ),
    }
    match &host.userns {
        _ if host.euid == 0 => add(
            "user namespaces",
            Status::Ok,
            "not needed: restarting as root".into(),
        ),
        Ok(()) => add("user namespaces", Status::Ok, "unprivileged allowed".into()),
        Err(e) => add(
            "user namespaces",
            Status::Fail,
            format!("{e}: an unprivileged restart needs a user namespace"),
        ),
    }
    if host.mm_map {
        add("PR_SET_MM_MAP", Status::Ok, "supported".into());
    } else {
        add(
            "PR_SET_MM_MAP",
            Status::Fail,
            "prctl(PR_SET_MM_MAP) unavailable (CONFIG_CHECKPOINT_RESTORE off)".into(),
        );
    }
    xsave_check(img, host, &mut add);
    let missing: Vec<&str> = h
        .host
        .cpu_flags
        .iter()
        .filter(|f| host.cpu_flags.binary_search(f).is_err())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        add(
            "cpu flags",
            Status::Ok,
            format!(
                "all {} of the image's flags present",
                h.host.cpu_flags.len()
            ),
        );
    } else {
        add(
            "cpu flags",
            Status::Fail,
            format!("missing here: {}", missing.join(" ")),
        );
    }
    // One check per file (a library is mapped as four or five regions).
    let mut seen: Vec<&ckpt_format::FileIdentity> = Vec::new();
    for r in img.regions() {
        let Some(b) = r.backing.as_ref() else {
            continue;
        };
        if b.storage != FileStorage::ByReference || seen.contains(&&b.file) {
            continue;
        }
        seen.push(&b.file);
        let name = format!("file {}", String::from_utf8_lossy(&b.file.path));
        let own_copy = Path::new(std::ffi::OsStr::from_bytes(&b.file.path))
            .file_name()
            .is_some_and(|n| ckpt_format::is_writer_copy(n.as_bytes()));
        if own_copy {
            match writer_copy(&b.file, img_dir) {
                Ok(d) => add(&name, Status::Ok, d),
                Err(e) => add(&name, Status::Fail, e),
            }
            continue;
        }
        match file_mismatch(&b.file) {
            None => add(&name, Status::Ok, "same file (inode, size, mtime)".into()),
            Some(e) => add(&name, Status::Fail, e),
        }
    }
    let mut vdso = Vec::new();
    for s in &h.host.vdso_symbols {
        match host.vdso_symbols.iter().find(|x| x.name == s.name) {
            None => vdso.push(format!("{} missing", s.name)),
            Some(x) if x.offset != s.offset => vdso.push(format!(
                "{} at {:#x} (image {:#x})",
                s.name, x.offset, s.offset
            )),
            _ => {}
        }
    }
    if vdso.is_empty() {
        add(
            "vdso",
            Status::Ok,
            "same symbols at the same offsets".into(),
        );
    } else {
        add(
            "vdso",
            Status::Warn,
            format!(
                "differs, the restorer redirects the old entry points: {}",
                vdso.join(", ")
            ),
        );
    }
    let mut pids: Vec<i32> = vec![h.vpid.0];
    pids.extend(img.threads().iter().map(|t| t.tid.0));
    pids.sort_unstable();
    pids.dedup();
    let used: Vec<String> = pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .map(|p| p.to_string())
        .collect();
    add(
        "pids",
        Status::Info,
        if used.is_empty() {
            format!("{} pid(s) free here", pids.len())
        } else {
            format!(
                "in use here: {} (no conflict: restart uses a fresh pid namespace)",
                used.join(" ")
            )
        },
    );
    HostReport { checks: v }
}

/// The verdict for people.
pub fn render(img: &MappedImage, rep: &HostReport, name: &str) -> String {
    let h = img.header();
    let mut s = format!(
        "{name}: {} (pid {}), written on {}\n",
        h.program, h.vpid.0, h.host.hostname
    );
    for c in &rep.checks {
        let tag = match c.status {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(s, "  {tag:<4}  {}: {}", c.name, c.detail);
    }
    if rep.restartable() {
        s.push_str("verdict: restartable here\n");
    } else {
        let reasons: Vec<String> = rep
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let _ = writeln!(s, "verdict: NOT restartable here: {}", reasons.join("; "));
    }
    s
}

/// The verdict as JSON (schema `ckpt-check-host/1`, spec/tools-json.md).
pub fn to_json(rep: &HostReport, name: &str) -> Value {
    json!({
        "schema": "ckpt-check-host/1",
        "image": name,
        "restartable": rep.restartable(),
        "checks": rep.checks,
    })
}

pub fn run(path: &Path, as_json: bool) -> i32 {
    let img = match open_image(path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ckpt image check-host: {e:#}");
            return 2;
        }
    };
    // An image read from a stream ("-") has no directory.
    let img_dir = path.parent().filter(|_| path != Path::new("-"));
    let rep = check_in(&img, &HostInfo::current(), img_dir);
    let name = path.display().to_string();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&rep, &name)).unwrap_or_default()
        );
    } else {
        print!("{}", render(&img, &rep, &name));
    }
    i32::from(!rep.restartable())
}
