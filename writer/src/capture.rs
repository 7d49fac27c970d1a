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
pub use fds::{fds, peers, set_peers, FdError, MAX_FILE_CONTENTS};
pub use shm::{assign as shared_memory, launch_tag};
pub use sysv::capture as sysv_ipc;

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

/// Whether a mapping is the writer's own library, and how it is stored.
#[derive(Clone, Copy)]
enum Own<'a> {
    No,
    /// Its pages go into the image.
    Embed,
    /// By reference to this copy of the library beside the images.
    Copy(&'a FileIdentity),
}

/// File names of the copies `own_library_copy` makes.
pub const OWN_COPY_PREFIX: &str = "ckpt_writer-";

/// The copy of the writer's own library in the image directory `dir`,
/// made once per library build (`ckpt_writer-<size>-<mtime>-<inode>.so`,
/// written under a lock, synced, renamed into place, never changed), so
/// every image of every process refers to it instead of embedding 1.9 MB
/// of code each (about 0.8 MB compressed: most of a small process's
/// image). None, and the library is embedded as before, when the library
/// file was replaced since it was loaded, or the copy cannot be made. A
/// process restored from such an image runs the copy and refers to it.
/// Called by the checkpoint thread before anything is suspended.
pub fn own_library_copy(dir: &str) -> Option<FileIdentity> {
    use std::os::unix::ffi::OsStrExt;
    let here = own_library_copy as *const () as usize as u64;
    let maps = read_maps();
    let m = maps.iter().find(|m| m.start <= here && here < m.end)?;
    if m.name.ends_with(b" (deleted)") || !m.name.starts_with(b"/") {
        return None;
    }
    let src = file_identity(&m.name).filter(|i| i.inode == m.inode)?;
    let src_path = std::path::Path::new(std::ffi::OsStr::from_bytes(&m.name));
    if src_path
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(OWN_COPY_PREFIX.as_bytes()))
    {
        return Some(src);
    }
    let target = format!(
        "{dir}/{OWN_COPY_PREFIX}{:x}-{:x}-{:x}.so",
        src.size, src.mtime_ns, src.inode
    );
    let want = std::fs::File::open(src_path)
        .ok()
        .and_then(|mut f| loaded_len(&mut f))
        .unwrap_or(src.size)
        .min(src.size);
    let ready = |t: &str| file_identity(t.as_bytes()).filter(|i| i.size == want);
    if let Some(id) = ready(&target) {
        return Some(id);
    }
    // One process copies; the others of the computation wait for it here.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{target}.lock"))
        .ok()?;
    crate::sys::flock_exclusive(&lock);
    if let Some(id) = ready(&target) {
        return Some(id);
    }
    let tmp = format!("{target}.tmp");
    let made = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let from = std::fs::File::open(src_path)?;
        let len = want;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o500)
            .open(&tmp)?;
        use std::io::Read;
        std::io::copy(&mut from.take(len), &mut to)?;
        to.sync_all()?;
        // The file copied must still be the one mapped here.
        if file_identity(&m.name).as_ref() != Some(&src) {
            return Err(std::io::Error::other("the library changed while copied"));
        }
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    let _ = std::fs::remove_file(format!("{target}.lock"));
    if let Err(e) = made {
        crate::log!("cannot copy the writer library to {target}: {e}; embedding it");
        let _ = std::fs::remove_file(&tmp);
        return None;
    }
    ready(&target)
}

/// The length of an ELF file's loaded part: up to the page holding the
/// end of its last PT_LOAD segment's file bytes. What follows (debug
/// information, symbol and section tables: 22 of the 24 MB of a release
/// libckpt_writer.so) is never mapped, and is not copied.
fn loaded_len(f: &mut std::fs::File) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut eh = [0u8; 64];
    f.read_exact(&mut eh).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let u16at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u64at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    let (phoff, phentsize, phnum) = (u64at(&eh, 0x20), u16at(&eh, 0x36), u16at(&eh, 0x38));
    if phentsize < 56 || phnum == 0 || phnum > 256 {
        return None;
    }
    let mut end = 0u64;
    let mut ph = vec![0u8; phentsize as usize];
    for i in 0..phnum {
        f.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        f.read_exact(&mut ph).ok()?;
        const PT_LOAD: u32 = 1;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_LOAD {
            end = end.max(u64at(&ph, 8).checked_add(u64at(&ph, 0x20))?);
        }
    }
    (end > 0).then(|| end.next_multiple_of(PAGE))
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

pub fn file_identity(path: &[u8]) -> Option<FileIdentity> {
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
/// `own_copy`: the copy of the writer's own library beside the images
/// (`own_library_copy`); its regions are stored by reference to it, and
/// embedded when there is none.
pub fn plan_regions(
    skip: &[(u64, u64)],
    max_pages: u32,
    own_copy: Option<&FileIdentity>,
) -> Vec<PlannedRegion> {
    let pagemap = std::fs::File::open("/proc/thread-self/pagemap").ok();
    let mut out = Vec::new();
    let maps = read_maps();
    // The writer's own library: an image must not depend on the
    // libckpt_writer.so file staying the same (it is rebuilt, upgraded), so
    // it refers to a copy that never changes, or embeds the pages.
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
            let own = match (is_own, own_copy) {
                (false, _) => Own::No,
                (true, Some(c)) => Own::Copy(c),
                (true, None) => Own::Embed,
            };
            if let Some(p) = plan_one(&m, start, end, off, pagemap.as_ref(), max_pages, own) {
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
    own: Own,
) -> Option<PlannedRegion> {
    let embed = matches!(own, Own::Embed);
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
    if let (RegionKind::File, Own::Copy(copy)) = (kind, own) {
        // Its pages are the copy's (a byte-for-byte copy of the file
        // mapped here): by reference, the private (relocated) pages stored.
        by_ref = true;
        backing = Some(FileBacking {
            file: copy.clone(),
            offset,
            storage: FileStorage::ByReference,
        });
    } else if kind == RegionKind::File {
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
    let name = match own {
        Own::Copy(c) if kind == RegionKind::File => c.path.clone(),
        _ => name,
    };
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

/// This process's children (live, stopped or zombies), in pid order.
/// Children are listed per thread (the thread that forked them), so
/// every thread's `children` file is read.
pub fn children() -> Vec<i32> {
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
    pids
}

/// This process's children that have exited but are not yet reaped
/// (state `Z`), with the wait status the kernel keeps for them (field 52,
/// `exit_code`, of `/proc/PID/stat`), in pid order.
pub fn zombies() -> Vec<Zombie> {
    children()
        .into_iter()
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
