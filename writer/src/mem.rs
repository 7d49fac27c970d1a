//! Small syscall wrappers for the capture (reading our own memory and
//! kernel state). Each unsafe block is one call on valid local buffers.

use std::os::fd::AsRawFd;

use ckpt_format::{Rlimit, SigAction, TimerValue};

/// Our own memory `[addr, addr+len)` as a slice.
/// Callers pass only ranges of mappings that are readable and present.
pub fn slice<'a>(addr: u64, len: u64) -> &'a [u8] {
    // SAFETY: callers pass readable, mapped, present pages of this process
    // (from /proc/self/maps and pagemap) that stay mapped during the write
    // phase: every other thread is suspended.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) }
}

/// Copies our own memory at `addr` into `out` (same ranges as `slice`).
/// Raw chunks go through a copy because a run may include the calling
/// thread's own stack, which a Rust slice must not alias.
pub fn copy_into(addr: u64, out: &mut [u8]) {
    // SAFETY: source as in `slice`; `copy` (memmove) tolerates overlap with
    // memory the caller is using; the destination is the caller's buffer.
    unsafe { std::ptr::copy(addr as *const u8, out.as_mut_ptr(), out.len()) };
}

/// Takes back a `Box<[u8]>` of `len` bytes leaked at `ptr` as a Vec.
pub fn leaked_vec(ptr: usize, len: usize) -> Vec<u8> {
    // SAFETY: ptr/len come from `Box::leak` of a boxed slice of exactly
    // len bytes (capacity == len), taken back exactly once.
    unsafe { Vec::from_raw_parts(ptr as *mut u8, len, len) }
}

/// `/proc/self/mem`, open during a write phase (-1 otherwise). Pages of
/// mappings without PROT_READ are read through it: the kernel reads them
/// for us (FOLL_FORCE) without changing the mapping's protection.
pub static PROC_MEM: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Opens `/proc/self/mem` for the write phase.
pub fn open_proc_mem() {
    use std::os::fd::IntoRawFd;
    if let Ok(f) = std::fs::File::open("/proc/thread-self/mem") {
        PROC_MEM.store(f.into_raw_fd(), std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn close_proc_mem() {
    let fd = PROC_MEM.swap(-1, std::sync::atomic::Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: our own fd from open_proc_mem.
        unsafe { libc::close(fd) };
    }
}

/// Reads our memory at `addr` through /proc/self/mem; false on failure
/// (then `out` is zero-filled).
pub fn read_proc_mem(addr: u64, out: &mut [u8]) -> bool {
    let fd = PROC_MEM.load(std::sync::atomic::Ordering::Relaxed);
    let mut done = 0usize;
    while fd >= 0 && done < out.len() {
        // SAFETY: reading into the rest of the caller's buffer.
        let n = unsafe {
            libc::pread(
                fd,
                out[done..].as_mut_ptr() as *mut libc::c_void,
                out.len() - done,
                (addr + done as u64) as i64,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    if done < out.len() {
        out[done..].fill(0);
        return false;
    }
    true
}

/// Faults in the page at `addr` through /proc/self/mem; false if it has
/// no data (past the end of its file).
pub fn probe_page(addr: u64) -> bool {
    let mut b = [0u8; 1];
    read_proc_mem(addr, &mut b)
}

/// Copies our memory at `addr` into `out`, directly or (for mappings
/// without PROT_READ) through /proc/self/mem.
pub fn read_pages(addr: u64, direct: bool, out: &mut [u8]) {
    if direct {
        copy_into(addr, out);
    } else if !read_proc_mem(addr, out) {
        crate::log!(
            "cannot read {:#x}+{:#x} through /proc/self/mem",
            addr,
            out.len()
        );
    }
}

pub fn page_is_zero(addr: u64) -> bool {
    // SAFETY: addr is a present page of a readable mapping (see `slice`).
    let words = unsafe { std::slice::from_raw_parts(addr as *const u64, 512) };
    // OR-reduce 64 bytes at a time (vectorised) and stop at the first
    // non-zero line: most non-zero pages are found in the first line.
    words
        .chunks_exact(8)
        .all(|c| c.iter().fold(0, |a, &w| a | w) == 0)
}

pub fn pread_u64s(f: &std::fs::File, off: u64, out: &mut [u64]) -> bool {
    let len = out.len() * 8;
    // SAFETY: reading into out's bytes.
    let n = unsafe {
        libc::pread(
            f.as_raw_fd(),
            out.as_mut_ptr() as *mut libc::c_void,
            len,
            off as i64,
        )
    };
    n == len as isize
}

/// What the page table says of one page (`page_flags`).
pub mod page {
    pub const PRESENT: u8 = 1;
    pub const SWAPPED: u8 = 2;
    /// Mapped from a file's page cache (not a private copy).
    pub const FILE: u8 = 4;
    /// Mapped to the kernel's shared zero page: read but never written.
    pub const ZERO: u8 = 8;
}

// PAGEMAP_SCAN (Linux 6.7): include/uapi/linux/fs.h.
const PAGEMAP_SCAN: u64 = 0xC060_6610; // _IOWR('f', 16, struct pm_scan_arg)
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Whether PAGEMAP_SCAN failed once (an older kernel): then pagemap is read.
static NO_SCAN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The `page::*` flags of the pages `[addr, addr + out.len() pages)` of
/// this process, from one PAGEMAP_SCAN walk (ranges, not 8 bytes a page,
/// and it tells the shared zero page apart, which pagemap shows only to
/// CAP_SYS_ADMIN), or from /proc/self/pagemap on kernels without it.
/// False if neither answers.
pub fn page_flags(pagemap: &std::fs::File, addr: u64, out: &mut [u8]) -> bool {
    const PAGE: u64 = 4096;
    out.fill(0);
    let end = addr + out.len() as u64 * PAGE;
    if !NO_SCAN.load(std::sync::atomic::Ordering::Relaxed) {
        let mut regions = [PageRegion::default(); 64];
        let mut start = addr;
        let mut ok = true;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: 0,
                start,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: 0,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO,
            };
            // SAFETY: `arg` is a valid pm_scan_arg of its own size whose
            // `vec` points at `regions`, vec_len entries long, which the
            // kernel fills; both outlive the call.
            let n = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if n < 0 {
                ok = false;
                break;
            }
            for r in &regions[..n as usize] {
                let mut f = 0u8;
                let c = r.categories;
                if c & PAGE_IS_PRESENT != 0 {
                    f |= page::PRESENT;
                }
                if c & PAGE_IS_SWAPPED != 0 {
                    f |= page::SWAPPED;
                }
                if c & PAGE_IS_FILE != 0 {
                    f |= page::FILE;
                }
                if c & PAGE_IS_PFNZERO != 0 {
                    f |= page::ZERO;
                }
                let a = ((r.start.max(addr) - addr) / PAGE) as usize;
                let b = ((r.end.min(end) - addr) / PAGE) as usize;
                out[a..b.max(a)].fill(f);
            }
            if arg.walk_end <= start {
                ok = false;
                break;
            }
            start = arg.walk_end;
        }
        if ok {
            return true;
        }
        NO_SCAN.store(true, std::sync::atomic::Ordering::Relaxed);
        out.fill(0);
    }
    let mut entries = [0u64; 512];
    let mut i = 0usize;
    while i < out.len() {
        let n = entries.len().min(out.len() - i);
        if !pread_u64s(pagemap, (addr / PAGE + i as u64) * 8, &mut entries[..n]) {
            return false;
        }
        for (o, e) in out[i..i + n].iter_mut().zip(&entries[..n]) {
            *o = ((e >> 63 & 1) as u8 * page::PRESENT)
                | ((e >> 62 & 1) as u8 * page::SWAPPED)
                | ((e >> 61 & 1) as u8 * page::FILE);
        }
        i += n;
    }
    true
}

/// (ppid, pgid, sid, personality, brk, sched policy, nice)
pub fn misc_ids() -> (i32, i32, i32, u32, u64, u32, i32) {
    // SAFETY: plain syscalls with integer arguments.
    unsafe {
        let ppid = libc::getppid();
        let pgid = libc::getpgid(0);
        let sid = libc::getsid(0);
        let pers = libc::personality(0xffff_ffff) as u32;
        let brk = libc::syscall(libc::SYS_brk, 0usize) as u64;
        let pol = libc::sched_getscheduler(0) as u32;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        (ppid, pgid, sid, pers, brk, pol, nice)
    }
}

#[repr(C)]
struct KSigaction {
    handler: u64,
    flags: u64,
    restorer: u64,
    mask: u64,
}

pub fn kernel_sigaction(sig: i32) -> SigAction {
    let mut k = KSigaction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: rt_sigaction(sig, NULL, &old, 8) fills the kernel struct.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            0usize,
            &mut k as *mut KSigaction,
            8usize,
        )
    };
    SigAction {
        handler: k.handler,
        flags: k.flags,
        restorer: k.restorer,
        mask: k.mask,
    }
}

pub fn rlimit(res: u32) -> Option<Rlimit> {
    let mut r = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on ourselves, reading only.
    let rc = unsafe { libc::prlimit64(0, res as _, std::ptr::null(), &mut r) };
    (rc == 0).then_some(Rlimit {
        resource: res,
        cur: r.rlim_cur,
        max: r.rlim_max,
    })
}

pub fn itimer(which: i32) -> TimerValue {
    let mut v = [0i64; 4];
    // SAFETY: struct itimerval is four longs.
    unsafe { libc::syscall(libc::SYS_getitimer, which, v.as_mut_ptr()) };
    let ns = |s: i64, us: i64| (s as u64) * 1_000_000_000 + (us as u64) * 1000;
    TimerValue {
        interval_ns: ns(v[0], v[1]),
        value_ns: ns(v[2], v[3]),
    }
}

pub fn winsize(fd: i32) -> (u16, u16) {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize.
    unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) };
    (w.ws_row, w.ws_col)
}

pub fn uname() -> (String, String) {
    // SAFETY: utsname is plain data filled by uname.
    let u = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        u
    };
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.nodename), s(&u.release))
}

/// (XCR0, XSAVE size for the enabled features)
pub fn xsave_info() -> (u64, u32) {
    // SAFETY: cpuid leaf 0xd and xgetbv(0) are available on every x86_64 with XSAVE.
    unsafe {
        let c = std::arch::x86_64::__cpuid_count(0xd, 0);
        let x = std::arch::x86_64::_xgetbv(0);
        (x, c.ebx)
    }
}

extern "C" {
    fn gnu_get_libc_version() -> *const libc::c_char;
}

pub fn libc_version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe {
        let p = gnu_get_libc_version();
        if p.is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Looks up a data symbol of the process (`__rseq_offset`, ...).
pub fn dlsym_default(name: &[u8]) -> *const u8 {
    // SAFETY: name is NUL-terminated.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr() as *const libc::c_char) as *const u8 }
}

/// Reads a value of type T at p (non-null, from dlsym).
pub fn read_at<T: Copy>(p: *const u8) -> T {
    // SAFETY: p is a symbol of at least size_of::<T>() bytes.
    unsafe { std::ptr::read_unaligned(p as *const T) }
}
