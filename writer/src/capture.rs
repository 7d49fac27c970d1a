//! Reading the process's state: /proc files and plain syscalls.
//!
//! Per-process files are read through `/proc/thread-self`, not
//! `/proc/self`: when the main thread has called pthread_exit, the
//! process's `/proc/self` is a zombie's, with no maps, fds, cwd or exe.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use ckpt_format::*;

use crate::mem;

mod fds;
mod shm;
mod sysv;
mod tty;
pub use shm::assign as shared_memory;
pub use sysv::capture as sysv_ipc;
pub use fds::{fds, peers, set_peers, FdError, MAX_FILE_CONTENTS};

pub const PAGE: u64 = 4096;

/// One line of /proc/self/maps.
pub struct MapLine {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub offset: u64,
    pub inode: u64,
    pub name: Vec<u8>,
}

pub fn read_maps() -> Vec<MapLine> {
    let data = std::fs::read("/proc/thread-self/maps").unwrap_or_default();
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut f = line.splitn(6, |&b| b == b' ');
        let range = f.next().unwrap_or_default();
        let perms = f.next().unwrap_or_default();
        let off = f.next().unwrap_or_default();
        let _dev = f.next();
        let inode = f.next().unwrap_or_default();
        let name: Vec<u8> = f
            .next()
            .map(|n| n.iter().skip_while(|&&b| b == b' ').copied().collect())
            .unwrap_or_default();
        let mut r = range.split(|&b| b == b'-');
        let hex =
            |b: &[u8]| u64::from_str_radix(std::str::from_utf8(b).unwrap_or("0"), 16).unwrap_or(0);
        let start = hex(r.next().unwrap_or_default());
        let end = hex(r.next().unwrap_or_default());
        let mut prot = 0;
        if perms.first() == Some(&b'r') {
            prot |= Prot::READ;
        }
        if perms.get(1) == Some(&b'w') {
            prot |= Prot::WRITE;
        }
        if perms.get(2) == Some(&b'x') {
            prot |= Prot::EXEC;
        }
        out.push(MapLine {
            start,
            end,
            prot,
            shared: perms.get(3) == Some(&b's'),
            offset: hex(off),
            inode: std::str::from_utf8(inode)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            name,
        });
    }
    out
}

/// A region plus which of its pages to store.
pub struct PlannedRegion {
    pub region: Region,
    /// Runs of stored pages: (addr, pages), each at most `max_pages`.
    pub runs: Vec<(u64, u32)>,
    /// The pages can be read in place (PROT_READ); otherwise through
    /// /proc/self/mem.
    pub direct: bool,
    /// Mapped from a checkpoint image by the restorer (see `is_ckpt_image`).
    pub from_image: bool,
    /// A read-only private file mapping stored embedded: its pages do not
    /// change from one checkpoint to the next, so their compressed chunks
    /// can be kept (see `compress::cache`).
    pub stable: Option<StableFile>,
}

/// The file behind a stable region (see `PlannedRegion::stable`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StableFile {
    pub dev: u64,
    pub inode: u64,
    pub mtime_ns: i64,
    /// File offset of the region's start.
    pub offset: u64,
    pub region_start: u64,
}

fn file_identity(path: &[u8]) -> Option<FileIdentity> {
    let m = std::fs::metadata(std::ffi::OsStr::from_bytes(path)).ok()?;
    Some(FileIdentity {
        path: path.to_vec(),
        dev: m.dev(),
        inode: m.ino(),
        size: m.size(),
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
    })
}

/// Turns the maps into regions, leaving out the `skip` ranges (the writer's
/// own arenas that are no part of the program).
pub fn plan_regions(skip: &[(u64, u64)], max_pages: u32) -> Vec<PlannedRegion> {
    let pagemap = std::fs::File::open("/proc/thread-self/pagemap").ok();
    let mut out = Vec::new();
    let maps = read_maps();
    // The writer's own library is embedded: an image must not depend on
    // the libckpt_writer.so file staying the same (it is rebuilt, upgraded).
    let here = plan_regions as *const () as usize as u64;
    let own = maps
        .iter()
        .find(|m| m.start <= here && here < m.end)
        .map(|m| (m.inode, m.name.clone()));
    for m in maps {
        let is_own = own
            .as_ref()
            .is_some_and(|(ino, name)| *ino == m.inode && *name == m.name);
        // Cut the skipped ranges out (the kernel may merge them with a
        // neighbour).
        let mut pieces = vec![(m.start, m.end)];
        for &(s0, s1) in skip.iter().filter(|r| r.0 < r.1) {
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    if b <= s0 || a >= s1 {
                        [Some((a, b)), None]
                    } else {
                        [(a < s0).then_some((a, s0)), (b > s1).then_some((s1, b))]
                    }
                })
                .flatten()
                .collect();
        }
        for (start, end) in pieces {
            let off = m.offset + (start - m.start);
            if let Some(p) = plan_one(&m, start, end, off, pagemap.as_ref(), max_pages, is_own) {
                out.push(p);
            }
        }
    }
    join_image_pieces(out)
}

/// Whether the private file mapping named `name` (inode `inode`) is a
/// ckpt image: its first bytes are the image magic, or, once the image was
/// replaced by a newer one (the mapping's file is deleted), its name is an
/// image's.
fn is_ckpt_image(name: &[u8], inode: u64, deleted: bool) -> bool {
    if deleted {
        return name
            .strip_suffix(b" (deleted)")
            .is_some_and(|n| n.ends_with(b".ckpt"));
    }
    let path = std::ffi::OsStr::from_bytes(name);
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 8];
    use std::io::Read;
    f.metadata().is_ok_and(|md| md.ino() == inode)
        && f.read_exact(&mut magic).is_ok()
        && magic == ckpt_format::raw::MAGIC
}

fn plan_one(
    m: &MapLine,
    start: u64,
    end: u64,
    offset: u64,
    pagemap: Option<&std::fs::File>,
    max_pages: u32,
    embed: bool,
) -> Option<PlannedRegion> {
    let name = m.name.clone();
    let deleted = name.ends_with(b" (deleted)");
    let (kind, grows_down) = match name.as_slice() {
        b"[heap]" => (RegionKind::Heap, false),
        b"[stack]" => (RegionKind::Stack, true),
        b"[vdso]" => (RegionKind::Vdso, false),
        b"[vvar]" => (RegionKind::Vvar, false),
        b"[vvar_vclock]" => (RegionKind::VvarVclock, false),
        b"[vsyscall]" => (RegionKind::Vsyscall, false),
        n if n.starts_with(b"/") && m.inode != 0 => (RegionKind::File, false),
        n if n.starts_with(b"/SYSV") || n.starts_with(b"/dev/shm/") => (RegionKind::Shm, false),
        _ => (RegionKind::Anon, false),
    };
    // Pages the restorer mapped straight from a checkpoint image (raw
    // chunks): anonymous memory to the program. The image they come from
    // is replaced by the next checkpoint, so they are stored, every page,
    // as anonymous memory, never as a reference to the image.
    let from_image =
        kind == RegionKind::File && !m.shared && is_ckpt_image(&name, m.inode, deleted);
    let (kind, name) = if from_image {
        (RegionKind::Anon, Vec::new())
    } else {
        (kind, name)
    };
    let mut backing = None;
    let mut by_ref = false;
    let mut stable = None;
    if kind == RegionKind::File {
        let ident = if deleted { None } else { file_identity(&name) };
        // A shared mapping of a regular file: its pages live in the file
        // (spec §4.4, shared regions); by reference, none stored.
        let storage = if ident.as_ref().is_some_and(|i| i.inode == m.inode) && !embed {
            by_ref = true;
            FileStorage::ByReference
        } else {
            FileStorage::Embedded
        };
        if !by_ref && !m.shared && m.prot & Prot::WRITE == 0 && m.prot & Prot::READ != 0 {
            let id = ident.as_ref();
            stable = Some(StableFile {
                dev: id.map_or(0, |i| i.dev),
                inode: m.inode,
                mtime_ns: id.map_or(0, |i| i.mtime_ns),
                offset,
                region_start: start,
            });
        }
        backing = Some(FileBacking {
            file: ident.unwrap_or(FileIdentity {
                path: name.clone(),
                ..Default::default()
            }),
            offset,
            storage,
        });
    }
    let region = Region {
        start: Addr(start),
        end: Addr(end),
        prot: Prot(m.prot),
        shared: m.shared,
        grows_down,
        kind,
        name,
        backing,
    };
    let mut runs: Vec<(u64, u32)> = Vec::new();
    let no_data = matches!(
        kind,
        RegionKind::Vvar | RegionKind::VvarVclock | RegionKind::Vsyscall
    );
    // A PROT_NONE (or exec-only) mapping may still hold data the program
    // hid with mprotect: its present pages are read through /proc/self/mem.
    let direct = m.prot & Prot::READ != 0;
    let mut probe = [0u64; 512];
    if !no_data {
        let all = kind == RegionKind::Vdso;
        let anon = !m.shared && !matches!(kind, RegionKind::File) && !from_image;
        let npages = ((end - start) / PAGE) as usize;
        let mut flags = vec![0u8; 4096.min(npages)];
        let mut i = 0usize;
        while i < npages {
            let n = flags.len().min(npages - i);
            let ok = pagemap
                .is_some_and(|f| mem::page_flags(f, start + i as u64 * PAGE, &mut flags[..n]));
            for (k, &fl) in flags[..n].iter().enumerate() {
                let fl = if ok { fl } else { mem::page::PRESENT };
                let present = fl & mem::page::PRESENT != 0;
                let swapped = fl & mem::page::SWAPPED != 0;
                let filepage = fl & mem::page::FILE != 0;
                // Read but never written: the kernel's zero page.
                let zeropage = fl & mem::page::ZERO != 0;
                let addr = start + (i + k) as u64 * PAGE;
                let store = if all {
                    true
                } else if m.shared {
                    present
                } else if by_ref {
                    (present && !filepage) || swapped
                } else if anon {
                    (present || swapped)
                        && !zeropage
                        && !if direct {
                            mem::page_is_zero(addr)
                        } else {
                            let b = bytes_of_mut(&mut probe);
                            mem::read_proc_mem(addr, b) && b.iter().all(|&x| x == 0)
                        }
                } else {
                    // An embedded private file mapping: every page the file
                    // has (a fault-in through /proc/self/mem tells, without
                    // SIGBUS past the end of the file).
                    present || swapped || mem::probe_page(addr)
                };
                if store {
                    match runs.last_mut() {
                        Some((a, c)) if *a + *c as u64 * PAGE == addr && *c < max_pages => *c += 1,
                        _ => runs.push((addr, 1)),
                    }
                }
            }
            i += n;
        }
    }
    Some(PlannedRegion {
        region,
        runs,
        direct,
        from_image,
        stable,
    })
}

/// Joins a region mapped from a checkpoint image with its private
/// anonymous neighbours of the same protection: the restorer mapped each
/// raw chunk of one anonymous region separately, and the program's memory
/// is that one region again (data structures may straddle the pieces).
fn join_image_pieces(regions: Vec<PlannedRegion>) -> Vec<PlannedRegion> {
    let mut out: Vec<PlannedRegion> = Vec::with_capacity(regions.len());
    for p in regions {
        let plain = |q: &PlannedRegion| {
            q.region.kind == RegionKind::Anon && !q.region.shared && !q.region.grows_down
        };
        if let Some(last) = out.last_mut() {
            if (last.from_image || p.from_image)
                && plain(last)
                && plain(&p)
                && last.region.end == p.region.start
                && last.region.prot == p.region.prot
                && last.direct == p.direct
            {
                last.region.end = p.region.end;
                last.runs.extend(p.runs);
                last.from_image |= p.from_image;
                continue;
            }
        }
        out.push(p);
    }
    out
}

fn bytes_of_mut(w: &mut [u64; 512]) -> &mut [u8] {
    // SAFETY: any bit pattern is a valid u8; same memory, same lifetime.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, 4096) }
}

fn read_file(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn split_nul(b: &[u8]) -> Vec<Vec<u8>> {
    b.split(|&c| c == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect()
}

fn status_field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// Fields of /proc/self/stat after the comm, 1-based as in proc(5).
fn stat_fields() -> Vec<u64> {
    let s = read_file("/proc/thread-self/stat");
    let close = s.iter().rposition(|&b| b == b')').unwrap_or(0);
    let rest = String::from_utf8_lossy(&s[(close + 2).min(s.len())..]).into_owned();
    // rest starts at field 3 (state)
    let mut v = vec![0u64, 0, 0];
    for f in rest.split_whitespace() {
        v.push(f.parse::<i64>().map(|x| x as u64).unwrap_or(0));
    }
    v
}

pub fn process(restart_info_addr: u64) -> Process {
    let pid = crate::sys::getpid();
    let status = String::from_utf8_lossy(&read_file("/proc/thread-self/status")).into_owned();
    let ids = |k: &str| -> [u32; 3] {
        let v: Vec<u32> = status_field(&status, k)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        [
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
            v.get(2).copied().unwrap_or(0),
        ]
    };
    let groups = status_field(&status, "Groups:")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let umask = status_field(&status, "Umask:")
        .and_then(|u| u32::from_str_radix(&u, 8).ok())
        .unwrap_or(0o022);
    let st = stat_fields();
    let f = |i: usize| Addr(st.get(i).copied().unwrap_or(0));
    let auxv_b = read_file("/proc/thread-self/auxv");
    let mut auxv = Vec::new();
    for c in auxv_b.chunks_exact(16) {
        let k = u64::from_le_bytes(c[..8].try_into().unwrap_or_default());
        let v = u64::from_le_bytes(c[8..].try_into().unwrap_or_default());
        if k == 0 {
            break;
        }
        auxv.push((k, v));
    }
    let (ppid, pgid, sid, personality, brk, policy, nice) = mem::misc_ids();
    let (personality, policy, nice) =
        crate::procstate::thread_sched(pid).unwrap_or((personality, policy, nice));
    Process {
        pid: Pid(pid),
        ppid: Pid(ppid),
        pgid: Pid(pgid),
        sid: Pid(sid),
        uid: ids("Uid:"),
        gid: ids("Gid:"),
        groups,
        cwd: std::fs::read_link("/proc/thread-self/cwd")
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .unwrap_or_default(),
        umask,
        exe: std::fs::read_link("/proc/thread-self/exe")
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .unwrap_or_default(),
        cmdline: split_nul(&read_file("/proc/thread-self/cmdline")),
        environ: split_nul(&read_file("/proc/thread-self/environ")),
        auxv,
        personality,
        mm: MmLayout {
            start_code: f(26),
            end_code: f(27),
            start_stack: f(28),
            start_data: f(45),
            end_data: f(46),
            start_brk: f(47),
            brk: Addr(brk),
            arg_start: f(48),
            arg_end: f(49),
            env_start: f(50),
            env_end: f(51),
        },
        sched_policy: policy,
        nice,
        restart_info_addr: Addr(restart_info_addr),
    }
}

/// This process's children that have exited but are not yet reaped
/// (state `Z`), with the wait status the kernel keeps for them (field 52,
/// `exit_code`, of `/proc/PID/stat`), in pid order. Children are listed
/// per thread (the thread that forked them), so every thread's
/// `children` file is read.
pub fn zombies() -> Vec<Zombie> {
    let mut pids = Vec::new();
    // getdents64, not read_dir: libc's opendir would call the program's
    // malloc during a checkpoint.
    for tid in crate::sys::numeric_entries(c"/proc/self/task") {
        let list =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).unwrap_or_default();
        pids.extend(
            list.split_whitespace()
                .filter_map(|w| w.parse::<i32>().ok()),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| {
            let s = read_file(&format!("/proc/{pid}/stat"));
            let close = s.iter().rposition(|&b| b == b')')?;
            let rest = String::from_utf8_lossy(s.get(close + 2..)?).into_owned();
            // rest starts at field 3 (state); exit_code is field 52
            let mut f = rest.split_whitespace();
            if f.next()? != "Z" {
                return None;
            }
            let status = f.nth(52 - 4)?.parse::<i32>().ok()?;
            Some(Zombie {
                pid: Pid(pid),
                status,
            })
        })
        .collect()
}

pub fn signals() -> SignalState {
    SignalState {
        actions: (1..=64).map(mem::kernel_sigaction).collect(),
        pending: crate::signals::shared_pending(),
    }
}

pub fn rlimits() -> Vec<Rlimit> {
    (0..16).filter_map(mem::rlimit).collect()
}

pub fn timers() -> Timers {
    Timers {
        real: mem::itimer(0),
        virt: mem::itimer(1),
        prof: mem::itimer(2),
        posix: crate::timers::posix_timers(),
    }
}

pub fn fingerprint(vdso: Option<(u64, u64)>) -> HostFingerprint {
    let (hostname, release) = mem::uname();
    let cpuinfo = String::from_utf8_lossy(&read_file("/proc/cpuinfo")).into_owned();
    let mut cpu_flags: Vec<String> = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("flags")
                .map(|r| r.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    cpu_flags.sort();
    let (xcr0, xsize) = mem::xsave_info();
    HostFingerprint {
        hostname,
        kernel_release: release,
        libc_version: format!("glibc {}", mem::libc_version()),
        vdso_symbols: vdso
            .map(|(s, e)| vdso_symbols(mem::slice(s, e - s)))
            .unwrap_or_default(),
        xsave_features: xcr0,
        xsave_size: xsize,
        cpu_flags,
        rseq_size: crate::suspend::RSEQ_SIZE.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Symbols of the in-memory vdso ELF image (dynsym, via section headers).
pub fn vdso_symbols(img: &[u8]) -> Vec<VdsoSymbol> {
    let rd = |o: usize, n: usize| -> Option<u64> {
        let b = img.get(o..o + n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(v))
    };
    let mut out = Vec::new();
    (|| -> Option<()> {
        if img.get(..4)? != b"\x7fELF" {
            return None;
        }
        let shoff = rd(0x28, 8)? as usize;
        let shentsize = rd(0x3a, 2)? as usize;
        let shnum = rd(0x3c, 2)? as usize;
        // the vdso's load address: first PT_LOAD p_vaddr
        let phoff = rd(0x20, 8)? as usize;
        let phnum = rd(0x38, 2)? as usize;
        let mut base = 0;
        for i in 0..phnum {
            let p = phoff + i * 56;
            if rd(p, 4)? == 1 {
                base = rd(p + 16, 8)?;
                break;
            }
        }
        for i in 0..shnum {
            let sh = shoff + i * shentsize;
            if rd(sh + 4, 4)? != 11 {
                continue; // SHT_DYNSYM
            }
            let off = rd(sh + 0x18, 8)? as usize;
            let size = rd(sh + 0x20, 8)? as usize;
            let link = rd(sh + 0x28, 4)? as usize;
            let strsh = shoff + link * shentsize;
            let stroff = rd(strsh + 0x18, 8)? as usize;
            for k in 0..size / 24 {
                let s = off + k * 24;
                let name_off = rd(s, 4)? as usize;
                let value = rd(s + 8, 8)?;
                let info = rd(s + 4, 1)?;
                if value == 0 || info & 0xf != 2 {
                    continue; // functions only
                }
                let name_b = img.get(stroff + name_off..)?;
                let end = name_b.iter().position(|&c| c == 0)?;
                out.push(VdsoSymbol {
                    name: String::from_utf8_lossy(&name_b[..end]).into_owned(),
                    offset: value - base,
                });
            }
        }
        Some(())
    })();
    out
}
