//! Settings from the environment (read once in the constructor), the
//! restart hand-off block, and the writer's own fds.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use ckpt_format::abi::{get_cstr, RestartInfo};

use crate::sys;

#[derive(Clone, Default)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub secret: String,
    pub dir: String,
    pub tmpdir: String,
    pub prog: String,
    pub unique_id: String,
    pub computation_id: [u8; 16],
    pub no_compress: bool,
    /// `CKPT_OPEN_FILES=1`: store open regular files' contents.
    pub open_files: bool,
    /// `CKPT_NO_BARRIER=1`: the hello does not offer the checkpoint
    /// barrier, so the coordinator checkpoints this process on its own
    /// (what an older writer gets; for tests and comparisons).
    pub no_barrier: bool,
    pub level: i32,
    /// TEST ONLY: `CKPT_TEST_HOLD_CONNECT=FILE` (see
    /// `checkpoint::test_hold_connect`).
    pub hold_connect: Option<String>,
}

/// The settings behind a spinlock that fork_prepare also takes (a
/// `std::sync::Mutex` held by a writer thread at fork would stay locked
/// forever in the child).
struct Shared {
    lock: AtomicBool,
    cfg: UnsafeCell<Option<Config>>,
}
// SAFETY: `cfg` is only touched while `lock` is held.
unsafe impl Sync for Shared {}

static CONFIG: Shared = Shared {
    lock: AtomicBool::new(false),
    cfg: UnsafeCell::new(None),
};

pub fn lock() {
    while CONFIG
        .lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

pub fn unlock() {
    CONFIG.lock.store(false, Ordering::Release);
}
/// The coordinator socket (-1 = none).
pub static SOCK_FD: AtomicI32 = AtomicI32::new(-1);
/// After a restart: the old socket's fd number, held with /dev/null until
/// the new connection is moved onto it (-1 = none).
pub static RESERVED_SOCK_FD: AtomicI32 = AtomicI32::new(-1);

/// The hand-off block lives in its own anonymous mapping (made in the
/// constructor): the restorer stages anonymous memory, so it can read the
/// previous `restarted` count there and write the new block before any
/// thread resumes (see doc/design.md, "Restart hand-off").
static RESTART_INFO: AtomicUsize = AtomicUsize::new(0);

/// Maps the hand-off block and sets its magic (constructor).
pub fn init_restart_info() -> bool {
    let len = std::mem::size_of::<RestartInfo>().next_multiple_of(4096);
    let p = sys::mmap_anon(len, 0) as *mut RestartInfo;
    if p.is_null() {
        return false;
    }
    // SAFETY: p is a fresh private mapping large enough for the block.
    unsafe { std::ptr::write(p, RestartInfo::new()) };
    RESTART_INFO.store(p as usize, Ordering::SeqCst);
    true
}

pub fn restart_info_addr() -> u64 {
    RESTART_INFO.load(Ordering::SeqCst) as u64
}

pub fn restart_info() -> RestartInfo {
    let p = RESTART_INFO.load(Ordering::SeqCst) as *const RestartInfo;
    if p.is_null() {
        return RestartInfo::new();
    }
    // SAFETY: our mapping, never unmapped; volatile because the restorer
    // writes it behind our back.
    unsafe { std::ptr::read_volatile(p) }
}

pub fn get() -> Config {
    lock();
    // SAFETY: under the lock.
    let c = unsafe { (*CONFIG.cfg.get()).clone() };
    unlock();
    c.unwrap_or_default()
}

fn set(c: Config) {
    lock();
    // SAFETY: under the lock; the old value is dropped here (our allocator).
    let old = unsafe { (*CONFIG.cfg.get()).replace(c) };
    unlock();
    drop(old);
}

pub fn own_fds() -> Vec<i32> {
    vec![
        SOCK_FD.load(Ordering::Relaxed),
        RESERVED_SOCK_FD.load(Ordering::Relaxed),
    ]
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// gethostid(), asked once per program: glibc may resolve the host name
/// through NSS (/etc/hosts, even DNS) for it, which a fork child must not
/// pay for, nor do in an atfork handler.
static HOSTID: AtomicU32 = AtomicU32::new(0);
static HOSTID_KNOWN: AtomicBool = AtomicBool::new(false);

fn new_unique_id() -> String {
    if !HOSTID_KNOWN.load(Ordering::Acquire) {
        // `ckpt launch` asks once for the whole computation: without
        // /etc/hostid, glibc resolves the host name for it (70 us here, in
        // every exec'd program).
        let given = env("CKPT_HOSTID")
            .filter(|h| h.len() == 8)
            .and_then(|h| u32::from_str_radix(&h, 16).ok());
        // SAFETY: gethostid has no arguments.
        let id = given.unwrap_or_else(|| unsafe { libc::gethostid() } as u32);
        HOSTID.store(id, Ordering::Relaxed);
        HOSTID_KNOWN.store(true, Ordering::Release);
    }
    let hostid = HOSTID.load(Ordering::Relaxed);
    format!(
        "{hostid:08x}-{}-{:x}",
        sys::getpid(),
        now_ns() & 0xffff_ffff
    )
}

/// The program's name as it goes into file names: `comm`, with anything
/// but `[A-Za-z0-9._+-]` replaced by `_`.
fn prog_name() -> String {
    let comm = std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default();
    let name: String = comm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        format!("prog{name}")
    } else {
        name
    }
}

/// Opens `$tmpdir/ckpt-<prog>-<pid>.log` as the log.
/// Names the log file `$CKPT_TMPDIR/ckpt-<prog>-<pid>.log`; it is created
/// by the first line logged (`open_pending_log`), not before: most fork
/// children and exec'd commands never log, and creating a file per
/// process was most of what ckpt added to a fork (doc/bench.md).
pub fn open_log(tmpdir: &str, prog: &str) {
    let path = format!("{tmpdir}/ckpt-{prog}-{}.log", sys::getpid());
    let Ok(c) = std::ffi::CString::new(path) else {
        return;
    };
    let old = LOG_PATH.swap(Box::into_raw(Box::new(c)), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: `old` came from Box::into_raw above and was swapped out,
        // so nobody else holds it.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// The log file to create at the first line (null: none pending).
static LOG_PATH: AtomicPtr<std::ffi::CString> = AtomicPtr::new(std::ptr::null_mut());

/// Creates the pending log file (from `sys::log_args`, so with raw
/// syscalls only: it may run in a signal handler); -1 if none.
pub fn open_pending_log() -> i32 {
    let p = LOG_PATH.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if p.is_null() {
        return sys::LOG_FD.load(Ordering::Acquire);
    }
    // Leaked on purpose: freeing could run in a signal handler.
    // SAFETY: `p` came from Box::into_raw in open_log and was swapped out.
    let path: &std::ffi::CStr = unsafe { &*p };
    let fd = sys::open_log_file(path);
    if fd >= 0 {
        sys::LOG_FD.store(fd, Ordering::Release);
    }
    fd
}

/// Creates the log file now (after a restart, where its fd number is
/// kept).
fn open_log_now(tmpdir: &str, prog: &str) {
    use std::os::unix::fs::DirBuilderExt;
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(tmpdir);
    open_log(tmpdir, prog);
    open_pending_log();
}

/// `CKPT_SECRET`, else the contents of `CKPT_SECRET_FILE`, else the
/// coordinator's own secret file `$CKPT_TMPDIR/secret-<port>` (what
/// `ckpt coordinator` writes), else none.
fn secret_from_env(tmpdir: &str, port: u16) -> String {
    let from_file = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    env("CKPT_SECRET")
        .or_else(|| env("CKPT_SECRET_FILE").and_then(|p| from_file(&p)))
        .or_else(|| from_file(&format!("{tmpdir}/secret-{port}")))
        .unwrap_or_default()
}

/// Reads the environment (constructor).
pub fn init_from_env() -> Config {
    let user = env("USER").unwrap_or_else(|| {
        // SAFETY: getuid cannot fail.
        format!("{}", unsafe { libc::getuid() })
    });
    let tmpdir = env("CKPT_TMPDIR").unwrap_or_else(|| format!("/tmp/ckpt-{user}"));
    let dir = env("CKPT_DIR").unwrap_or_else(|| ".".into());
    let dir = std::fs::canonicalize(&dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(dir);
    let computation_id = env("CKPT_COMPUTATION_ID")
        .and_then(|s| {
            let mut out = [0u8; 16];
            if s.len() != 32 {
                return None;
            }
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(out)
        })
        .unwrap_or_else(|| {
            let mut out = [0u8; 16];
            out[..8].copy_from_slice(&now_ns().to_le_bytes());
            out[8..12].copy_from_slice(&(sys::getpid() as u32).to_le_bytes());
            out
        });
    let port = env("CKPT_COORD_PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(ckpt_protocol::DEFAULT_PORT);
    let c = Config {
        host: address_of(env("CKPT_COORD_HOST").unwrap_or_else(|| "127.0.0.1".into())),
        port,
        secret: secret_from_env(&tmpdir, port),
        dir,
        tmpdir,
        prog: prog_name(),
        unique_id: env("CKPT_UNIQUE_ID").unwrap_or_else(new_unique_id),
        computation_id,
        no_compress: env("CKPT_NO_COMPRESS").is_some_and(|v| v == "1"),
        open_files: env("CKPT_OPEN_FILES").is_some_and(|v| v == "1"),
        no_barrier: env("CKPT_NO_BARRIER").is_some_and(|v| v == "1"),
        level: env("CKPT_ZSTD_LEVEL")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        hold_connect: env("CKPT_TEST_HOLD_CONNECT"),
    };
    open_log(&c.tmpdir, &c.prog);
    set(c.clone());
    c
}

/// The coordinator's host as an address, resolved now, in the constructor:
/// the writer's threads must never call getaddrinfo (see rawthread.rs). A
/// name that does not resolve is kept; connecting then fails with a
/// message that says so.
fn address_of(host: String) -> String {
    use std::net::ToSocketAddrs;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    match (host.as_str(), 0).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a.ip().to_string(),
        _ => host,
    }
}

/// The computation id the coordinator gave with a checkpoint request (hex,
/// 32 digits): kept so the hello to a restarted coordinator can carry it.
pub fn set_computation_id(hex: &str) {
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        return;
    }
    for (i, o) in out.iter_mut().enumerate() {
        match hex
            .get(2 * i..2 * i + 2)
            .and_then(|b| u8::from_str_radix(b, 16).ok())
        {
            Some(b) => *o = b,
            None => return,
        }
    }
    let mut c = get();
    if c.computation_id != out {
        c.computation_id = out;
        set(c);
    }
}

/// A forked child: new identity, new log.
pub fn after_fork() {
    let mut c = get();
    c.unique_id = new_unique_id();
    c.prog = prog_name();
    let old = sys::LOG_FD.swap(-1, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing the parent's log fd copy we own.
        unsafe { libc::close(old) };
    }
    for fd in [&SOCK_FD, &RESERVED_SOCK_FD] {
        let s = fd.swap(-1, Ordering::SeqCst);
        if s >= 0 {
            // SAFETY: the parent's coordinator connection must not be shared.
            unsafe { libc::close(s) };
        }
    }
    open_log(&c.tmpdir, &c.prog);
    set(c);
}

/// New settings from the restorer's hand-off block.
pub fn apply_restart(ri: &RestartInfo) {
    let mut c = get();
    let s = |b: &[u8]| String::from_utf8_lossy(get_cstr(b)).into_owned();
    if !get_cstr(&ri.coord_host).is_empty() {
        c.host = s(&ri.coord_host);
    }
    if ri.coord_port != 0 {
        c.port = ri.coord_port as u16;
    }
    if !get_cstr(&ri.secret).is_empty() {
        c.secret = s(&ri.secret);
    }
    if !get_cstr(&ri.ckpt_dir).is_empty() {
        c.dir = s(&ri.ckpt_dir);
    }
    if !get_cstr(&ri.tmpdir).is_empty() {
        c.tmpdir = s(&ri.tmpdir);
    }
    // The image's socket and log fds were left out of it: keep their
    // numbers (the fd table then looks as it did before the checkpoint).
    let old_sock = SOCK_FD.swap(-1, Ordering::SeqCst);
    if sys::reserve_fd(old_sock) {
        RESERVED_SOCK_FD.store(old_sock, Ordering::SeqCst);
    }
    let old_log = sys::LOG_FD.swap(-1, Ordering::SeqCst);
    let reserved_log = sys::reserve_fd(old_log);
    open_log_now(&c.tmpdir, &c.prog);
    if reserved_log {
        let new = sys::LOG_FD.load(Ordering::SeqCst);
        sys::LOG_FD.store(sys::move_fd(new, old_log), Ordering::SeqCst);
    }
    set(c);
}
