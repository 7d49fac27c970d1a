//! The restore process: stages the image's memory in a hole, builds the
//! final-stage plan and jumps to it.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use ckpt_format::abi::{set_cstr, RestartInfo, RESTART_INFO_MAGIC};
use ckpt_format::{FileStorage, Region, RegionKind, Thread};

use crate::barrier::Barrier;
use crate::blob;
use crate::image::Image;
use crate::layout::{complement, find_hole, page_up, Carver, Range, PAGE};
use crate::maps::{self, VdsoSet};
use crate::plan::{nr, Plan, ThreadBlock};
use crate::sys::{self, AnonFlags};
use crate::{environ, fds, log, procstate, vdso};

/// What the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Treat the running vdso as different from the image's.
    pub force_vdso_mismatch: bool,
    /// `--set-env NAME=VALUE` changes (environ.rs).
    pub env: environ::EnvChanges,
    /// Show progress on stderr (`--quiet` not given and stderr a terminal).
    pub progress: bool,
}

/// Progress of the staging of an image's pages, on stderr.
struct Progress {
    /// Where it goes (a duplicate of the restart's stderr); None: nowhere.
    console: Option<i32>,
    name: String,
    total: u64,
    done: u64,
    start: std::time::Instant,
    shown: std::time::Instant,
}

impl Progress {
    fn new(console: Option<i32>, img: &Image) -> Progress {
        let now = std::time::Instant::now();
        Progress {
            console,
            name: img
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            total: img.chunks.iter().map(|c| c.pages as u64 * PAGE).sum(),
            done: 0,
            start: now,
            shown: now,
        }
    }

    fn add(&mut self, bytes: u64) {
        self.done += bytes;
        if self.shown.elapsed() >= std::time::Duration::from_millis(100) {
            self.shown = std::time::Instant::now();
            self.say(&format!("\r{}", self.line("restoring")));
        }
    }

    fn line(&self, what: &str) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let secs = self.start.elapsed().as_secs_f64().max(1e-6);
        format!(
            "{what} {}: {:.1} of {:.1} MiB, {:.0} MiB/s",
            self.name,
            mib(self.done),
            mib(self.total),
            mib(self.done) / secs
        )
    }

    fn finish(&self) {
        let secs = self.start.elapsed().as_secs_f64();
        self.say(&format!("\r{} in {secs:.2} s\n", self.line("restored")));
    }

    fn say(&self, text: &str) {
        if let Some(fd) = self.console {
            // Best effort: a closed terminal does not stop a restart.
            let _ = sys::write_all(fd, text.as_bytes());
        }
    }
}

/// Restart settings for the hand-off block, from the environment.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub coord_host: String,
    pub coord_port: u64,
    pub secret: String,
    pub ckpt_dir: String,
    pub tmpdir: String,
}

impl Settings {
    pub fn from_env() -> Settings {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Settings {
            coord_host: address_of(var("CKPT_COORD_HOST")),
            coord_port: var("CKPT_COORD_PORT").parse().unwrap_or(0),
            secret: var("CKPT_SECRET"),
            ckpt_dir: var("CKPT_DIR"),
            tmpdir: var("CKPT_TMPDIR"),
        }
    }
}

/// The coordinator's host as an address: the restored writer's threads
/// never call getaddrinfo (glibc's malloc, on threads glibc does not know
/// of), so a name is resolved here. One that does not resolve is passed on
/// as it is; the writer then says so.
fn address_of(host: String) -> String {
    use std::net::ToSocketAddrs;
    if host.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    match (host.as_str(), 0).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a.ip().to_string(),
        _ => host,
    }
}

const STACK_LEN: u64 = 256 * 1024;
const THREAD_STACK_LEN: u64 = 16 * 1024;
const MUNMAP_FLOOR: u64 = 0x1000;

/// How one image region gets into place.
enum Place {
    /// Staged in the hole, moved into place with mremap.
    Staged { staging: Range },
    /// Mapped from its file; stored pages that differ are copied over it.
    File {
        fd: i32,
        copies: Vec<(u64, u64, u64)>,
    },
    /// Mapped shared from a shared-memory object made before the tree
    /// was forked (shm.rs), at `offset` in it; its chunks are in the object.
    Shared { fd: i32, offset: u64 },
    /// A System V segment, made before the tree was forked (shm.rs),
    /// attached again by the final stage; the region is at `offset` in it.
    SysV { shmid: i32, offset: u64 },
    /// The running kernel's own vdso/vvar, moved there by mremap.
    KernelVdso,
    /// Not restored (vsyscall).
    Skip,
}

fn range(r: &Region) -> Range {
    Range::new(r.start.0, r.end.0)
}

/// Checks done before anything starts (in the outer process).
pub fn preflight(img: &Image) -> Result<(), String> {
    let p = &img.process;
    if img.header.page_size as u64 != PAGE {
        return Err(format!(
            "image page size {} is not {PAGE}",
            img.header.page_size
        ));
    }
    if img.header.arch != 62 {
        return Err(format!(
            "image architecture {} is not x86_64 (62)",
            img.header.arch
        ));
    }
    if p.pid.0 <= 1 {
        return Err(format!(
            "image pid {} cannot be restored (pid 1 is the new namespace's init)",
            p.pid.0
        ));
    }
    if !img.threads.iter().any(|t| t.tid == p.pid) {
        return Err(format!("image has no thread with tid == pid {}", p.pid.0));
    }
    for (i, r) in img.regions.iter().enumerate() {
        if r.start.0 % PAGE != 0 || r.end.0 % PAGE != 0 || r.start.0 >= r.end.0 {
            return Err(format!(
                "region {i} [{:#x}, {:#x}) is not page-aligned",
                r.start.0, r.end.0
            ));
        }
        if let (RegionKind::File, Some(b)) = (r.kind, &r.backing) {
            if b.storage == FileStorage::ByReference {
                open_backing(r, img.path.parent()).map(|fd| {
                    // SAFETY: closing the fd we just opened.
                    unsafe { libc::close(fd) }
                })?;
            }
        }
    }
    Ok(())
}

/// Opens a region's backing file and checks it is the file of the image.
fn open_backing(r: &Region, img_dir: Option<&std::path::Path>) -> Result<i32, String> {
    let b = r.backing.as_ref().ok_or("no backing file")?;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(&b.file.path));
    // The writer's copy of its own library (writer capture.rs,
    // own_library_copy): written once, never changed, named after the
    // build it copies. Found beside the image when it is not where it was
    // (the images were moved or copied to another host), and judged by
    // its size: a copy has another inode and mtime.
    let own_copy = path
        .file_name()
        .is_some_and(|n| ckpt_format::is_writer_copy(n.as_bytes()));
    let beside = img_dir.zip(path.file_name()).map(|(d, n)| d.join(n));
    let path = match beside {
        Some(p) if own_copy && !path.exists() => p,
        _ => path.to_path_buf(),
    };
    let name = path.to_string_lossy();
    let write = r.shared && r.prot.0 & 2 != 0;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .map_err(|e| format!("backing file {name} of region {:#x}: {e}", r.start.0))?;
    let m = f.metadata().map_err(|e| format!("{name}: {e}"))?;
    let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
    // A shared mapping's writes change the file's size and mtime: only
    // its identity is checked (spec §4.4, shared regions).
    let changed = if own_copy {
        m.size() != b.file.size
    } else {
        m.ino() != b.file.inode
            || (!r.shared && (m.size() != b.file.size || mtime != b.file.mtime_ns))
    };
    if changed {
        return Err(format!(
            "backing file {name} changed since the checkpoint (inode {} size {} mtime {} now, {} {} {} in the image)",
            m.ino(),
            m.size(),
            mtime,
            b.file.inode,
            b.file.size,
            b.file.mtime_ns
        ));
    }
    Ok(f.into_raw_fd())
}

/// The vdso decision.
struct VdsoPlan {
    matched: bool,
    /// Current kernel block (vvar.., vdso) parts, in address order.
    cur: VdsoSet,
    /// Where the running vdso block goes when not to the image's addresses.
    relocate_to: Option<u64>,
}

/// At most this many chunks are mapped from the image (each is a mapping
/// of its own in the restored process, and vm.max_map_count defaults to
/// 65530); the rest are copied.
const MAX_MAPPED_CHUNKS: u64 = 16384;

/// Splits `[0, len)` into consecutive pieces at the borders of `mapped`
/// (sorted, disjoint (offset, length) pieces inside it).
fn staging_pieces(len: u64, mapped: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(off, l) in mapped {
        if off > at {
            out.push((at, off - at));
        }
        out.push((off, l));
        at = off + l;
    }
    if at < len {
        out.push((at, len - at));
    }
    out
}

fn image_kind(img: &Image, k: RegionKind) -> Option<Range> {
    img.regions.iter().find(|r| r.kind == k).map(range)
}

fn vdso_matches(img: &Image, cur: &VdsoSet, force: bool) -> Result<bool, String> {
    if force {
        log::info("vdso: --test-vdso-mismatch: treating the running vdso as different");
        return Ok(false);
    }
    let (Some(iv), Some(cv)) = (image_kind(img, RegionKind::Vdso), cur.vdso) else {
        return Ok(false);
    };
    for (k, c) in [
        (RegionKind::Vvar, cur.vvar),
        (RegionKind::VvarVclock, cur.vvar_vclock),
        (RegionKind::Vdso, cur.vdso),
    ] {
        match (image_kind(img, k), c) {
            (None, None) => {}
            (Some(i), Some(c))
                if i.len() == c.len()
                    && i.start.wrapping_sub(iv.start) == c.start.wrapping_sub(cv.start) => {}
            (i, c) => {
                log::info(&format!(
                    "vdso: {k:?} differs (image {i:x?}, running {c:x?})"
                ));
                return Ok(false);
            }
        }
    }
    let running =
        vdso::symbols(sys::mapped(cv.start, cv.len())).ok_or("cannot parse the running vdso")?;
    for s in &img.header.host.vdso_symbols {
        if !running
            .iter()
            .any(|r| r.name == s.name && r.offset == s.offset)
        {
            log::info(&format!(
                "vdso: symbol {} at {:#x} differs from the running vdso",
                s.name, s.offset
            ));
            return Ok(false);
        }
    }
    Ok(true)
}

/// Everything the final stage needs, ready to jump.
pub struct Go {
    entry: u64,
    stack_top: u64,
    first_op: u64,
}

/// Restores the image into this process once every process of the tree
/// is ready to (`barrier`); never returns.
pub fn run(img: &Image, opts: &Options, settings: &Settings, barrier: &Barrier) -> ! {
    match prepare(img, opts, settings) {
        Ok(go) => {
            if let Err(e) = barrier.arrive_and_wait() {
                log::error(&format!("{}: not resuming: {e}", img.path.display()));
                std::process::exit(2)
            }
            log::info(&format!("entering the final stage at {:#x}", go.entry));
            // SAFETY: prepare() copied the blob to `entry` (mapped r-x),
            // mapped the stack below `stack_top` and wrote a plan ending in
            // RESUME at `first_op`, all inside the reserved hole the plan
            // keeps mapped.
            unsafe { blob::enter(go.entry, go.stack_top, go.first_op) }
        }
        Err(e) => {
            log::error(&format!("{}: {e}", img.path.display()));
            barrier.break_it();
            std::process::exit(2)
        }
    }
}

fn prepare(img: &Image, opts: &Options, settings: &Settings) -> Result<Go, String> {
    let p = &img.process;
    sys::block_all_signals().map_err(|e| format!("blocking signals: {e}"))?;
    // musl caches the tid, stale after our raw clone3: ask the kernel.
    // SAFETY: plain syscall without pointers.
    let (mypid, mytid) = (std::process::id() as i32, unsafe {
        libc::syscall(libc::SYS_gettid)
    });
    log::info(&format!(
        "restoring pid {} (getpid {mypid}, gettid {mytid})",
        p.pid.0
    ));
    if mypid != p.pid.0 {
        log::warn(&format!(
            "running as pid {mypid}, not the image's {}",
            p.pid.0
        ));
    }
    // The writer moves its descriptors near the top of the first 1024
    // (sys::to_high_fd there). Growing the fd table once threads share it
    // waits for an RCU grace period (expand_fdtable: 8 ms measured here),
    // so it is grown now, while this process has one thread.
    sys::grow_fd_table(1023);
    procstate::basics(p);
    // Progress goes to the stderr `ckpt restart` was given, whatever the
    // image's fd 2 becomes (a log file it was redirected to, say).
    let console = if opts.progress {
        let top = img.fds.iter().map(|e| e.fd.0).max().unwrap_or(2).max(2);
        sys::dup_at_least(2, top + 1).ok()
    } else {
        None
    };
    let kept_fds = fds::restore(img).map_err(|e| e.to_string())?;
    if let Some(s) = &img.signals {
        procstate::sigactions(s);
    }

    // Where things are now.
    let cur_maps = maps::current().map_err(|e| format!("/proc/self/maps: {e}"))?;
    let cur_vdso = VdsoSet::from_maps(&cur_maps);
    let matched = vdso_matches(img, &cur_vdso, opts.force_vdso_mismatch)?;
    log::info(&format!(
        "vdso: {}",
        if matched {
            "same as the image's: moving it into place"
        } else {
            "different: relocating"
        }
    ));

    // How each region gets into place.
    let mut places = Vec::with_capacity(img.regions.len());
    for r in &img.regions {
        if let Some(m) = img.shared_memory.iter().find(|m| m.start == r.start) {
            if m.object == ckpt_format::ShmObject::SysV {
                places.push(Place::SysV {
                    shmid: m.inode as i32,
                    offset: m.offset,
                });
                continue;
            }
            let fd = crate::shm::fd_of(m).ok_or(format!(
                "region {:#x}: its shared memory object was not made",
                r.start.0
            ))?;
            places.push(Place::Shared {
                fd,
                offset: m.offset,
            });
            continue;
        }
        let place = match r.kind {
            RegionKind::Vsyscall => Place::Skip,
            RegionKind::Vdso | RegionKind::Vvar | RegionKind::VvarVclock if matched => {
                Place::KernelVdso
            }
            RegionKind::File if r.backing.is_some() => match open_backing(r, img.path.parent()) {
                Ok(fd) => Place::File {
                    fd,
                    copies: Vec::new(),
                },
                Err(e)
                    if r.backing
                        .as_ref()
                        .is_some_and(|b| b.storage == FileStorage::ByReference) =>
                {
                    return Err(e)
                }
                Err(e) => {
                    log::warn(&format!(
                        "{e}; restoring the region's stored pages as anonymous memory"
                    ));
                    Place::Staged {
                        staging: Range::new(0, 0),
                    }
                }
            },
            _ => Place::Staged {
                staging: Range::new(0, 0),
            },
        };
        places.push(place);
    }

    // Chunks per region, bounds-checked.
    let mut chunks_of: Vec<Vec<usize>> = vec![Vec::new(); img.regions.len()];
    for (i, c) in img.chunks.iter().enumerate() {
        let r = img.regions.get(c.region as usize).ok_or(format!(
            "chunk {i} names region {} which does not exist",
            c.region
        ))?;
        let end = c
            .addr
            .0
            .checked_add(c.pages as u64 * PAGE)
            .ok_or(format!("chunk {i} overflows"))?;
        if c.addr.0 < r.start.0 || end > r.end.0 || c.addr.0 % PAGE != 0 {
            return Err(format!(
                "chunk {i} [{:#x}, {end:#x}) lies outside its region {}",
                c.addr.0, c.region
            ));
        }
        chunks_of[c.region as usize].push(i);
    }
    if !matched {
        if let Some(iv) = img.regions.iter().position(|r| r.kind == RegionKind::Vdso) {
            if chunks_of[iv].is_empty() {
                return Err("the image's vdso differs from the running kernel's and its pages are not stored".into());
            }
        }
    }

    // Size of the hole.
    let nthreads = img.threads.len() as u64;
    let nregions = img.regions.len() as u64;
    let code = blob::code();
    // Each chunk mapped from the image adds up to two moves (itself and
    // the anonymous stretch before it).
    let nmapped = (img.chunks.len() as u64).min(MAX_MAPPED_CHUNKS);
    let ops_cap = page_up((nregions * 8 + nthreads * 2 + nmapped * 2 + 128) * blob::OP_BYTES);
    let data_cap = page_up(256 * 1024 + nthreads * 1024 + nregions * 2048);
    let vspan = cur_vdso.span().ok_or("this process has no vdso")?;
    let mut need = page_up(code.len() as u64)
        + STACK_LEN
        + ops_cap
        + data_cap
        + nthreads * THREAD_STACK_LEN
        + vspan.len();
    let mut carves = 6u64;
    for (i, r) in img.regions.iter().enumerate() {
        match places[i] {
            Place::Staged { .. } => need += range(r).len(),
            Place::File { .. } => {
                need += chunks_of[i]
                    .iter()
                    .map(|&c| img.chunks[c].pages as u64 * PAGE)
                    .sum::<u64>()
            }
            _ => continue,
        }
        carves += 1;
    }
    need += (carves + 2) * PAGE;
    let mut used: Vec<Range> = img.regions.iter().map(range).collect();
    used.extend(cur_maps.iter().map(|m| m.range));
    let hole = find_hole(&used, need, 1 << 20)
        .ok_or(format!("no free {need:#x}-byte hole in the address space"))?;
    sys::reserve(hole.start, hole.len())
        .map_err(|e| format!("reserving the hole {hole:x?}: {e}"))?;
    log::info(&format!("hole [{:#x}, {:#x})", hole.start, hole.end));
    used.push(hole);

    // Where the running vdso block goes when it does not take the image's place.
    let relocate_to = if matched {
        None
    } else {
        let r = find_hole(&used, vspan.len(), 16 * PAGE).ok_or("no room for the running vdso")?;
        log::info(&format!("running vdso block moves to {:#x}", r.start));
        Some(r.start)
    };
    let vp = VdsoPlan {
        matched,
        cur: cur_vdso,
        relocate_to,
    };

    let mut carver = Carver::new(hole);
    let oom = || "hole too small (internal error)".to_string();
    let blob_area = carver.take(code.len() as u64).ok_or_else(oom)?;
    let stack = carver.take(STACK_LEN).ok_or_else(oom)?;
    let ops_area = carver.take(ops_cap).ok_or_else(oom)?;
    let data_area = carver.take(data_cap).ok_or_else(oom)?;
    let tstacks = carver
        .take(nthreads.max(1) * THREAD_STACK_LEN)
        .ok_or_else(oom)?;
    let vslot = carver.take(vspan.len()).ok_or_else(oom)?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    for a in [blob_area, stack, ops_area, data_area, tstacks] {
        sys::map_anon_in_hole(a.start, a.len(), rw, AnonFlags::default())
            .map_err(|e| format!("mapping the hole: {e}"))?;
    }
    let mut plan = Plan::new(data_area.start, data_area.len());

    // Stage memory. `mapped_pieces[i]`: (offset, length) of region i's
    // pages mapped from the image file, each its own mapping to move.
    let mut image_fd: Option<Result<std::fs::File, String>> = None;
    let mut mapped_pieces: Vec<Vec<(u64, u64)>> = vec![Vec::new(); img.regions.len()];
    let mut nmapped_chunks = 0u64;
    let mut progress = Progress::new(console, img);
    for (i, r) in img.regions.iter().enumerate() {
        match &mut places[i] {
            Place::Staged { staging } => {
                let len = range(r).len();
                let st = carver.take(len).ok_or_else(oom)?;
                let flags = AnonFlags {
                    shared: r.shared,
                    grows_down: r.grows_down,
                };
                sys::map_anon_in_hole(st.start, len, rw, flags)
                    .map_err(|e| format!("staging region {i}: {e}"))?;
                for &c in &chunks_of[i] {
                    let m = &img.chunks[c];
                    let off = m.addr.0 - r.start.0;
                    let bytes = m.pages as u64 * PAGE;
                    // Raw pages of private memory are mapped from the image
                    // (copy-on-write), not copied: the whole image was
                    // validated above, and the kernel reads a page only when
                    // the program touches it.
                    let mapped = match img.raw_file_offset(c) {
                        Some(file_off)
                            if !r.shared && !r.grows_down && nmapped_chunks < MAX_MAPPED_CHUNKS =>
                        {
                            match image_fd.get_or_insert_with(|| img.open_fd()) {
                                Ok(fd) => match sys::map_file_in_hole(
                                    st.start + off,
                                    bytes,
                                    rw,
                                    fd.as_raw_fd(),
                                    file_off,
                                ) {
                                    Ok(()) => true,
                                    Err(e) => {
                                        // A failed MAP_FIXED may leave a gap.
                                        log::warn(&format!(
                                            "mapping chunk {c} from the image: {e}; copying it"
                                        ));
                                        sys::map_anon_in_hole(st.start + off, bytes, rw, flags)
                                            .map_err(|e| format!("staging region {i}: {e}"))?;
                                        false
                                    }
                                },
                                Err(_) => false,
                            }
                        }
                        _ => false,
                    };
                    if mapped {
                        nmapped_chunks += 1;
                        mapped_pieces[i].push((off, bytes));
                    } else {
                        img.read_chunk(c, sys::hole_mut(st.start + off, bytes))?;
                    }
                    progress.add(bytes);
                }
                *staging = st;
            }
            Place::File { fd, copies } => {
                let total: u64 = chunks_of[i]
                    .iter()
                    .map(|&c| img.chunks[c].pages as u64 * PAGE)
                    .sum();
                if total == 0 {
                    continue;
                }
                if r.shared {
                    log::info(&format!(
                        "region {i}: shared file mapping, its stored pages are the file's"
                    ));
                    continue;
                }
                let st = carver.take(total).ok_or_else(oom)?;
                sys::map_anon_in_hole(st.start, st.len(), rw, AnonFlags::default())
                    .map_err(|e| format!("staging region {i}: {e}"))?;
                let by_ref = r
                    .backing
                    .as_ref()
                    .is_some_and(|b| b.storage == FileStorage::ByReference);
                let file_off = r.backing.as_ref().map_or(0, |b| b.offset);
                let mut at = st.start;
                for &c in &chunks_of[i] {
                    let m = &img.chunks[c];
                    let len = m.pages as u64 * PAGE;
                    img.read_chunk(c, sys::hole_mut(at, len))?;
                    for pg in 0..m.pages as u64 {
                        let (src, dst) = (at + pg * PAGE, m.addr.0 + pg * PAGE);
                        if by_ref
                            || !same_as_file(
                                *fd,
                                file_off + (dst - r.start.0),
                                sys::hole_mut(src, PAGE),
                            )
                        {
                            match copies.last_mut() {
                                Some(l) if l.0 + l.2 == src && l.1 + l.2 == dst => l.2 += PAGE,
                                _ => copies.push((src, dst, PAGE)),
                            }
                        }
                    }
                    at += len;
                }
                log::info(&format!(
                    "region {i}: {} bytes differ from the file",
                    copies.iter().map(|c| c.2).sum::<u64>()
                ));
            }
            _ => {}
        }
    }

    // The mappings keep the image file; its fd number must not outlive
    // staging (the program's fds are put in place later).
    drop(image_fd);
    progress.finish();
    if let Some(fd) = console {
        sys::close(fd);
    }

    // vdso mismatch: redirect the old entry points, fix AT_SYSINFO_EHDR.
    let mut auxv = img.process.auxv.clone();
    if let Some(base) = vp.relocate_to {
        let cv = vp.cur.vdso.ok_or("no running vdso")?;
        let new_vdso = base + (cv.start - vspan.start);
        if let Some(iv) = img.regions.iter().position(|r| r.kind == RegionKind::Vdso) {
            patch_old_vdso(img, iv, &places[iv], cv, new_vdso)?;
            for a in auxv.iter_mut().filter(|a| a.0 == libc::AT_SYSINFO_EHDR) {
                a.1 = new_vdso;
            }
            patch_stack_auxv(img, &places, &img.process.auxv, new_vdso);
        }
    }

    // --set-env: a new environment in a mapping of its own, outside the hole.
    let mut keep = vec![hole];
    if !opts.env.is_empty() {
        let mut avoid = used.clone();
        if let Some(b) = vp.relocate_to {
            avoid.push(Range::new(b, b + vspan.len()));
        }
        let at = new_environ(img, &mut places, &mut plan, &opts.env, &avoid)?;
        keep.push(at);
    }

    // The hand-off block.
    if img.process.restart_info_addr.0 != 0 {
        let addr = img.process.restart_info_addr.0;
        let old = read_staged(img, &places, addr, 16);
        let mut ri = RestartInfo::new();
        if let Some(old) = old {
            let magic = u64::from_le_bytes(old[..8].try_into().unwrap_or_default());
            if magic != RESTART_INFO_MAGIC {
                log::warn(&format!(
                    "no restart-info magic at {addr:#x} (found {magic:#x})"
                ));
            }
            ri.restarted = u64::from_le_bytes(old[8..16].try_into().unwrap_or_default());
        }
        ri.restarted += 1;
        ri.scratch_addr = hole.start;
        ri.scratch_len = hole.len();
        ri.coord_port = settings.coord_port;
        set_cstr(&mut ri.coord_host, settings.coord_host.as_bytes());
        set_cstr(&mut ri.secret, settings.secret.as_bytes());
        set_cstr(&mut ri.ckpt_dir, settings.ckpt_dir.as_bytes());
        set_cstr(&mut ri.tmpdir, settings.tmpdir.as_bytes());
        let bytes = restart_info_bytes(&ri);
        place_bytes(img, &mut places, &mut plan, addr, &bytes)?;
        log::info(&format!(
            "restart info at {addr:#x}: restarted {}",
            ri.restarted
        ));
    }

    // Final protections of the staged copies.
    for (i, r) in img.regions.iter().enumerate() {
        if let Place::Staged { staging } = places[i] {
            sys::mprotect(staging.start, staging.len(), r.prot.0 as i32)
                .map_err(|e| format!("mprotect staging {i}: {e}"))?;
        }
    }

    // The final stage's code.
    sys::hole_mut(blob_area.start, code.len() as u64).copy_from_slice(code);
    sys::mprotect(
        blob_area.start,
        blob_area.len(),
        libc::PROT_READ | libc::PROT_EXEC,
    )
    .map_err(|e| format!("mprotect blob: {e}"))?;

    // The plan.
    for part in vp.cur.parts() {
        plan.mremap(
            part.start,
            part.len(),
            vslot.start + (part.start - vspan.start),
        );
    }
    for r in complement(&keep, MUNMAP_FLOOR) {
        plan.munmap(r.start, r.len());
    }
    for part in vp.cur.parts() {
        let from = vslot.start + (part.start - vspan.start);
        let to = if vp.matched {
            let kind = if Some(part) == vp.cur.vdso {
                RegionKind::Vdso
            } else if Some(part) == vp.cur.vvar {
                RegionKind::Vvar
            } else {
                RegionKind::VvarVclock
            };
            image_kind(img, kind).ok_or("vdso part missing")?.start
        } else {
            vp.relocate_to.unwrap_or(0) + (part.start - vspan.start)
        };
        plan.mremap(from, part.len(), to);
    }
    for (i, r) in img.regions.iter().enumerate() {
        match &places[i] {
            Place::Staged { staging } => {
                // mremap moves one mapping at a time: the anonymous stretches
                // and the pieces mapped from the image separately.
                for (off, len) in staging_pieces(staging.len(), &mapped_pieces[i]) {
                    plan.mremap(staging.start + off, len, r.start.0 + off);
                }
            }
            Place::File { fd, copies } => {
                let prot = r.prot.0 as u64;
                let extra = if copies.is_empty() {
                    0
                } else {
                    libc::PROT_WRITE as u64
                };
                let flags = if r.shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                } as u64;
                let off = r.backing.as_ref().map_or(0, |b| b.offset);
                let what = String::from_utf8_lossy(&r.name).into_owned();
                plan.mmap_fixed(
                    &what,
                    r.start.0,
                    range(r).len(),
                    prot | extra,
                    flags,
                    *fd,
                    off,
                );
                for &(src, dst, len) in copies {
                    plan.copy(src, dst, len);
                }
                if extra != 0 {
                    plan.mprotect(r.start.0, range(r).len(), prot);
                }
            }
            Place::Shared { fd, offset } => {
                let what = String::from_utf8_lossy(&r.name).into_owned();
                plan.mmap_fixed(
                    &what,
                    r.start.0,
                    range(r).len(),
                    r.prot.0 as u64,
                    libc::MAP_SHARED as u64,
                    *fd,
                    *offset,
                );
            }
            Place::SysV { shmid, offset } => {
                // One attach maps the whole segment, from the region at
                // its start; every region of it then takes its protection.
                if *offset == 0 {
                    let mut flags = 0o40000u64; // SHM_REMAP
                    if r.prot.0 & 2 == 0 {
                        flags |= 0o10000; // SHM_RDONLY
                    }
                    if r.prot.0 & 4 != 0 {
                        flags |= 0o100000; // SHM_EXEC
                    }
                    plan.syscall(
                        &format!("shmat {shmid} at {:#x}", r.start.0),
                        nr::SHMAT,
                        [*shmid as u64, r.start.0, flags, 0, 0, 0],
                        blob::CHECK_EQ,
                        r.start.0,
                    );
                }
                plan.mprotect(r.start.0, range(r).len(), r.prot.0 as u64);
            }
            Place::KernelVdso | Place::Skip => {}
        }
    }
    mm_map(img, &mut plan, &auxv);
    close_fds(&mut plan, &kept_fds);
    if let Some(t) = &img.timers {
        for (which, v) in [(0u64, t.real), (1, t.virt), (2, t.prof)] {
            if v.value_ns == 0 {
                continue;
            }
            let tv = |ns: u64| [ns / 1_000_000_000, (ns % 1_000_000_000) / 1000];
            let words = [tv(v.interval_ns), tv(v.value_ns)].concat();
            let b: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let a = plan.data(&b);
            plan.syscall(
                &format!("setitimer({which})"),
                nr::SETITIMER,
                [which, a, 0, 0, 0, 0],
                blob::CHECK_ERR,
                0,
            );
        }
    }
    threads(img, &mut plan, tstacks)?;

    let (ops, data) = plan.finish()?;
    if ops.len() as u64 > ops_area.len() {
        return Err(format!(
            "plan has {} bytes of ops, room for {}",
            ops.len(),
            ops_area.len()
        ));
    }
    sys::hole_mut(ops_area.start, ops.len() as u64).copy_from_slice(&ops);
    sys::hole_mut(data_area.start, data.len() as u64).copy_from_slice(&data);
    log::info(&format!(
        "plan: {} ops, {} data bytes",
        ops.len() as u64 / blob::OP_BYTES,
        data.len()
    ));

    procstate::cwd(p);
    if !img.rlimits.is_empty() {
        procstate::rlimits(&img.rlimits);
    }
    procstate::sched(p);
    Ok(Go {
        entry: blob_area.start,
        stack_top: stack.end,
        first_op: ops_area.start,
    })
}

/// Whether `page` equals the file's bytes at `off`.
fn same_as_file(fd: i32, off: u64, page: &[u8]) -> bool {
    let mut buf = vec![0u8; page.len()];
    // SAFETY: pread into a buffer of the given length.
    let n = unsafe {
        libc::pread(
            fd,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            off as libc::off_t,
        )
    };
    n == buf.len() as isize && buf == page
}

/// The bytes at `addr` in the staged image memory, if staged (or, in a
/// private file mapping, copied over the file or the file's own bytes).
fn read_staged(img: &Image, places: &[Place], addr: u64, len: u64) -> Option<Vec<u8>> {
    for (i, r) in img.regions.iter().enumerate() {
        if !(range(r).contains(addr) && addr + len <= r.end.0) {
            continue;
        }
        match &places[i] {
            Place::Staged { staging } => {
                let off = addr - r.start.0;
                return Some(sys::hole_mut(staging.start + off, len).to_vec());
            }
            Place::File { fd, copies } if !r.shared => {
                if let Some(&(src, dst, _)) = copies
                    .iter()
                    .find(|c| c.1 <= addr && addr + len <= c.1 + c.2)
                {
                    return Some(sys::hole_mut(src + (addr - dst), len).to_vec());
                }
                let off = r.backing.as_ref().map_or(0, |b| b.offset) + (addr - r.start.0);
                let mut buf = vec![0u8; len as usize];
                return sys::pread_exact(*fd, off, &mut buf).ok().map(|_| buf);
            }
            _ => return None,
        }
    }
    None
}

/// `--set-env`: writes the changed environment into a fresh private
/// mapping at a free address (not in `avoid`), points every `environ`
/// of the image at it, and returns the mapping, which the final stage
/// keeps (environ.rs says how).
fn new_environ(
    img: &Image,
    places: &mut [Place],
    plan: &mut Plan,
    changes: &environ::EnvChanges,
    avoid: &[Range],
) -> Result<Range, String> {
    let vars = environ::locate(img).map_err(|e| e.to_string())?;
    let old = environ::current(vars[0], &|a, l| read_staged(img, places, a, l))
        .map_err(|e| e.to_string())?;
    let env = changes.apply(old);
    let len = page_up(environ::layout(&env, 0).len() as u64);
    let at = find_hole(avoid, len, 16 * PAGE).ok_or("no room for the new environment")?;
    sys::reserve(at.start, len).map_err(|e| format!("mapping the environment: {e}"))?;
    sys::map_anon_in_hole(
        at.start,
        len,
        libc::PROT_READ | libc::PROT_WRITE,
        AnonFlags::default(),
    )
    .map_err(|e| format!("mapping the environment: {e}"))?;
    let bytes = environ::layout(&env, at.start);
    sys::hole_mut(at.start, bytes.len() as u64).copy_from_slice(&bytes);
    for v in vars {
        place_bytes(img, places, plan, v, &at.start.to_le_bytes())
            .map_err(|e| format!("environ at {v:#x}: {e}"))?;
    }
    log::info(&format!(
        "--set-env: {} variables at {:#x}",
        env.len(),
        at.start
    ));
    Ok(at)
}

/// Puts `bytes` at `addr` of the restored memory: into the staged copy,
/// or as a COPY op over a file mapping.
fn place_bytes(
    img: &Image,
    places: &mut [Place],
    plan: &mut Plan,
    addr: u64,
    bytes: &[u8],
) -> Result<(), String> {
    let len = bytes.len() as u64;
    for (i, r) in img.regions.iter().enumerate() {
        if !(range(r).contains(addr) && addr + len <= r.end.0) {
            continue;
        }
        match &mut places[i] {
            Place::Staged { staging } => {
                sys::hole_mut(staging.start + (addr - r.start.0), len).copy_from_slice(bytes);
                return Ok(());
            }
            Place::File { copies, .. } if !r.shared => {
                let src = plan.data(bytes);
                copies.push((src, addr, len));
                return Ok(());
            }
            _ => break,
        }
    }
    Err(format!(
        "address {addr:#x} is not in a restorable private region"
    ))
}

fn restart_info_bytes(ri: &RestartInfo) -> Vec<u8> {
    let mut v = Vec::with_capacity(std::mem::size_of::<RestartInfo>());
    for w in [
        ri.magic,
        ri.restarted,
        ri.scratch_addr,
        ri.scratch_len,
        ri.coord_port,
    ] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v.extend_from_slice(&ri.coord_host);
    v.extend_from_slice(&ri.secret);
    v.extend_from_slice(&ri.ckpt_dir);
    v.extend_from_slice(&ri.tmpdir);
    debug_assert_eq!(v.len(), std::mem::size_of::<RestartInfo>());
    v
}

/// The old vdso, staged from the image, gets a jump at each entry point.
fn patch_old_vdso(
    img: &Image,
    iv: usize,
    place: &Place,
    cur: Range,
    new_vdso: u64,
) -> Result<(), String> {
    let Place::Staged { staging } = place else {
        return Err("the image's vdso is not staged".into());
    };
    let running =
        vdso::symbols(sys::mapped(cur.start, cur.len())).ok_or("cannot parse the running vdso")?;
    let old: Vec<vdso::Sym> = if img.header.host.vdso_symbols.is_empty() {
        vdso::symbols(sys::hole_mut(staging.start, staging.len())).unwrap_or_default()
    } else {
        img.header
            .host
            .vdso_symbols
            .iter()
            .map(|s| vdso::Sym {
                name: s.name.clone(),
                offset: s.offset,
            })
            .collect()
    };
    let r = &img.regions[iv];
    let (patches, skipped) = vdso::plan_patches(&old, &running, new_vdso, range(r).len());
    for (off, target) in &patches {
        sys::hole_mut(staging.start + off, vdso::PATCH_LEN as u64)
            .copy_from_slice(&vdso::jump_patch(*target));
    }
    log::info(&format!(
        "vdso: patched {} entry points of the old vdso at {:#x} to jump to {new_vdso:#x}",
        patches.len(),
        r.start.0
    ));
    if !skipped.is_empty() {
        log::warn(&format!(
            "vdso: entry points too close to patch: {skipped:?}"
        ));
    }
    Ok(())
}

/// Rewrites AT_SYSINFO_EHDR in the auxv on the restored main stack.
fn patch_stack_auxv(img: &Image, places: &[Place], auxv: &[(u64, u64)], new_vdso: u64) {
    let pat: Vec<u8> = auxv
        .iter()
        .flat_map(|(k, v)| [k.to_le_bytes(), v.to_le_bytes()])
        .flatten()
        .collect();
    if pat.is_empty() {
        return;
    }
    for (i, r) in img.regions.iter().enumerate() {
        let Place::Staged { staging } = places[i] else {
            continue;
        };
        if r.kind != RegionKind::Stack && !range(r).contains(img.process.mm.start_stack.0) {
            continue;
        }
        let mem = sys::hole_mut(staging.start, staging.len());
        let Some(pos) = mem.windows(pat.len()).position(|w| w == pat.as_slice()) else {
            continue;
        };
        for (j, (k, _)) in auxv.iter().enumerate() {
            if *k == libc::AT_SYSINFO_EHDR {
                let o = pos + j * 16 + 8;
                mem[o..o + 8].copy_from_slice(&new_vdso.to_le_bytes());
            }
        }
        log::info(&format!(
            "auxv on the stack at {:#x}: AT_SYSINFO_EHDR = {new_vdso:#x}",
            r.start.0 + pos as u64
        ));
        return;
    }
    log::warn("auxv not found on the restored stack: AT_SYSINFO_EHDR keeps the old vdso");
}

/// `sizeof(struct prctl_mm_map)`: 11 addresses, the auxv pointer, two u32.
const MM_MAP_SIZE: u64 = 104;

/// brk, arg/env, auxv and exe with PR_SET_MM_MAP.
fn mm_map(img: &Image, plan: &mut Plan, auxv: &[(u64, u64)]) {
    let m = &img.process.mm;
    let f = [
        m.start_code,
        m.end_code,
        m.start_data,
        m.end_data,
        m.start_brk,
        m.brk,
        m.start_stack,
        m.arg_start,
        m.arg_end,
        m.env_start,
        m.env_end,
    ];
    if f.iter().any(|a| a.0 == 0) {
        log::warn("mm layout incomplete in the image: brk and arg/env stay as they are");
        return;
    }
    let exe_fd = std::fs::File::open(std::ffi::OsStr::from_bytes(&img.process.exe))
        .map(|f| f.into_raw_fd())
        .map_err(|e| {
            log::warn(&format!(
                "exe {}: {e}",
                String::from_utf8_lossy(&img.process.exe)
            ))
        })
        .ok();
    let mut aux: Vec<u64> = auxv.iter().flat_map(|&(k, v)| [k, v]).collect();
    if aux.len() >= 2 && aux[aux.len() - 2] != 0 {
        aux.extend([0, 0]);
    }
    let aux_b: Vec<u8> = aux.iter().flat_map(|w| w.to_le_bytes()).collect();
    let aux_addr = plan.data(&aux_b);
    let mut map = |auxv: bool, fd: Option<i32>| {
        let mut b: Vec<u8> = f.iter().flat_map(|a| a.0.to_le_bytes()).collect();
        b.extend_from_slice(&(if auxv { aux_addr } else { 0 }).to_le_bytes());
        b.extend_from_slice(&(if auxv { aux_b.len() as u32 } else { 0 }).to_le_bytes());
        b.extend_from_slice(&fd.map_or(u32::MAX, |f| f as u32).to_le_bytes());
        plan.data(&b)
    };
    let plain = map(false, None);
    let with_auxv = map(true, None);
    let with_exe = exe_fd.map(|fd| map(true, Some(fd)));
    let (pr_set_mm, pr_set_mm_map) = (libc::PR_SET_MM as u64, libc::PR_SET_MM_MAP as u64);
    plan.syscall(
        "prctl(PR_SET_MM_MAP) brk/arg/env",
        nr::PRCTL,
        [pr_set_mm, pr_set_mm_map, plain, MM_MAP_SIZE, 0, 0],
        blob::CHECK_ERR,
        0,
    );
    plan.syscall(
        "prctl(PR_SET_MM_MAP) auxv",
        nr::PRCTL,
        [pr_set_mm, pr_set_mm_map, with_auxv, MM_MAP_SIZE, 0, 0],
        blob::CHECK_NONE,
        0,
    );
    if let Some(a) = with_exe {
        plan.syscall(
            "prctl(PR_SET_MM_MAP) exe",
            nr::PRCTL,
            [pr_set_mm, pr_set_mm_map, a, MM_MAP_SIZE, 0, 0],
            blob::CHECK_NONE,
            0,
        );
    }
}

/// Closes every fd but the restored ones (ours: log, image, files, exe).
fn close_fds(plan: &mut Plan, kept: &[i32]) {
    let mut from = 0u64;
    for &k in kept {
        let k = k as u64;
        if k > from {
            plan.syscall(
                "close_range",
                nr::CLOSE_RANGE,
                [from, k - 1, 0, 0, 0, 0],
                blob::CHECK_NONE,
                0,
            );
        }
        from = k + 1;
    }
    plan.syscall(
        "close_range",
        nr::CLOSE_RANGE,
        [from, u32::MAX as u64, 0, 0, 0, 0],
        blob::CHECK_NONE,
        0,
    );
}

fn thread_block(plan: &mut Plan, t: &Thread, stack: Range) -> ThreadBlock {
    let (desc, desc_len) = plan.thread_desc(t.tid.0);
    let ss = t.sigaltstack;
    let disabled = ss.size == 0 || ss.flags & libc::SS_DISABLE != 0;
    let (rseq_addr, rseq_len, rseq_sig) = t
        .rseq
        .map_or((0, 0, 0), |r| (r.addr.0, r.len as u64, r.sig as u64));
    let r = &t.resume;
    ThreadBlock {
        fs_base: t.regs.fs_base,
        robust: t.robust_list.0,
        robust_len: t.robust_list_len,
        rseq_addr,
        rseq_len,
        rseq_sig,
        ctid: t.clear_child_tid.0,
        ss_sp: if disabled { 0 } else { ss.sp.0 },
        ss_flags: if disabled {
            libc::SS_DISABLE
        } else {
            ss.flags & (1 << 31)
        },
        ss_size: if disabled { 0 } else { ss.size },
        rip: r.rip,
        rsp: r.rsp,
        rbx: r.rbx,
        rbp: r.rbp,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        desc,
        desc_len,
        stack: stack.start,
        stack_size: stack.len(),
        tid: t.tid.0,
    }
}

/// Thread creation ops: every other thread first, the leader last.
fn threads(img: &Image, plan: &mut Plan, stacks: Range) -> Result<(), String> {
    let pid = img.process.pid;
    let mut leader = None;
    for (slot, t) in img.threads.iter().enumerate() {
        let slot = slot as u64;
        if t.resume.rip == 0 || t.resume.rsp == 0 {
            return Err(format!("thread {} has no resume context", t.tid.0));
        }
        let st = Range::new(
            stacks.start + slot * THREAD_STACK_LEN,
            stacks.start + (slot + 1) * THREAD_STACK_LEN,
        );
        let tb = thread_block(plan, t, st);
        let addr = plan.data(&[0u8; blob::TB_SIZE]);
        plan.overwrite(addr, &tb.to_bytes(addr));
        if t.tid == pid {
            leader = Some(addr);
        } else {
            plan.clone_thread(addr, t.tid.0);
        }
    }
    procstate::pending_and_timers(img, plan)?;
    plan.resume(leader.ok_or("no leader thread")?);
    log::info(&format!("{} threads", img.threads.len()));
    Ok(())
}
