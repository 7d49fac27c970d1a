//! libckpt_writer.so: loaded with LD_PRELOAD into an unmodified program.
//!
//! The constructor reads the environment, installs the checkpoint signal
//! handler, and starts the checkpoint thread (coordinator client) and the
//! compression workers. See doc/design.md, "Checkpoint: how threads stop"
//! and "Restart hand-off".

#[macro_use]
pub mod sys;
pub mod alloc;
pub mod capture;
pub mod checkpoint;
pub mod compress;
pub mod config;
pub mod ctx;
pub mod exec;
pub mod inotify;
pub mod interpose;
pub mod jobctl;
pub mod mem;
pub mod procstate;
pub mod rawthread;
pub mod signals;
pub mod suspend;
pub mod timers;

use std::io::BufReader;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use ckpt_protocol::{Hello, Role, ToClient, ToCoordinator, WorkerInfo, PROTOCOL_VERSION};

#[global_allocator]
static GLOBAL: alloc::WriterAlloc = alloc::WriterAlloc;

/// Exit status when the coordinator stops the computation (`k` / `q`).
pub const EXIT_KILLED: i32 = 75;

static STARTED: AtomicBool = AtomicBool::new(false);
/// The pid of the process this writer started in (constructor, or the
/// atfork handler of a fork child): see exec::writer_started.
pub static WRITER_PID: AtomicI32 = AtomicI32::new(0);
/// Generation this process was restored from (0 = never restarted).
static RESTORED_FROM: AtomicU64 = AtomicU64::new(0);
/// Generation of the last image written.
static LAST_GEN: AtomicU64 = AtomicU64::new(0);

/// Pid of the process whose checkpoint thread is answering a checkpoint
/// request (0: none): the image is released to the program before it is
/// synced, renamed and reported, and an exec or exit in that moment would
/// end the thread first (the coordinator would count the image lost). A
/// child forked meanwhile has another pid and does not wait.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

/// Pid of the process whose connection the coordinator welcomed (0:
/// none): only then may another thread add a message to it.
static WELCOMED: AtomicU32 = AtomicU32::new(0);

/// Whether this process's writer is connected and welcomed (checkpoints
/// can come).
pub fn welcomed() -> bool {
    WELCOMED.load(Ordering::Acquire) == WRITER_PID.load(Ordering::Relaxed) as u32
}

/// Before exec or at exit: waits (up to 10 s) until this process's
/// checkpoint, if one is under way, is reported to the coordinator.
pub fn wait_for_reply() {
    let me = sys::getpid() as u32;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while IN_FLIGHT.load(Ordering::Acquire) == me && std::time::Instant::now() < deadline {
        sys::futex_wait(&IN_FLIGHT, me, 50);
    }
}

#[used]
#[link_section = ".fini_array"]
static FINI: extern "C" fn() = at_exit;

extern "C" fn at_exit() {
    wait_for_reply();
}

/// Serialises messages to the coordinator: the checkpoint thread's and a
/// user thread's notice before exec. Held with the checkpoint signal
/// blocked, so a suspended thread never holds it.
static SEND_LOCK: AtomicBool = AtomicBool::new(false);

fn send(s: &TcpStream, msg: &ToCoordinator) -> Result<(), ckpt_protocol::ProtocolError> {
    let bit = 1u64 << (suspend::SIGNO.load(Ordering::Relaxed) - 1);
    let old = sys::sigmask(libc::SIG_BLOCK, Some(bit));
    while SEND_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
    let mut w = s;
    let r = ckpt_protocol::send(&mut w, msg);
    SEND_LOCK.store(false, Ordering::Release);
    sys::sigmask(libc::SIG_SETMASK, Some(old));
    r
}

/// Tells the coordinator (and the log) that this process is about to
/// exec `program`, which cannot carry the writer.
pub fn notice_exec_outsider(program: &[u8], why: exec::Why) {
    let name = String::from_utf8_lossy(program.rsplit(|&b| b == b'/').next().unwrap_or(program))
        .into_owned();
    let pid = sys::getpid();
    log!(
        "exec of {}: {}; pid {pid} leaves checkpoint control",
        String::from_utf8_lossy(program),
        why.text()
    );
    // A child forked a moment ago may not be connected yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while WELCOMED.load(Ordering::Acquire) != pid as u32 && std::time::Instant::now() < deadline {
        sys::futex_wait(&WELCOMED, WELCOMED.load(Ordering::Acquire), 20);
    }
    let fd = config::SOCK_FD.load(Ordering::SeqCst);
    if fd < 0 || WELCOMED.load(Ordering::Acquire) != pid as u32 || !is_our_socket(fd) {
        log!("not connected: the coordinator does not hear of it");
        return;
    }
    use std::os::fd::FromRawFd;
    // SAFETY: the coordinator socket stays open (ManuallyDrop: not closed here).
    let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    let msg = ToCoordinator::Outsider(ckpt_protocol::Outsider {
        pid,
        // SAFETY: getppid cannot fail.
        ppid: unsafe { libc::getppid() },
        program: name,
        host: mem::uname().0,
        reason: why.text().to_string(),
    });
    if let Err(e) = send(&s, &msg) {
        log!("telling the coordinator about the exec: {e}");
    }
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = ckpt_writer_init;

extern "C" fn ckpt_writer_init() {
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    if std::env::var("CKPT_DEBUG").is_ok_and(|v| v == "1") {
        sys::DEBUG.store(1, Ordering::Relaxed);
    }
    let signo = std::env::var("CKPT_SIGNAL")
        .ok()
        .and_then(|s| s.parse().ok())
        // not SIGKILL/SIGSTOP, not glibc's own SIGCANCEL/SIGSETXID
        .filter(|s: &i32| (1..=64).contains(s) && ![9, 19, 32, 33].contains(s))
        .unwrap_or(62);
    suspend::SIGNO.store(signo, Ordering::Relaxed);
    WRITER_PID.store(sys::getpid(), Ordering::SeqCst);
    let cfg = config::init_from_env();
    // Never print to the program's stderr: panics go to our log.
    std::panic::set_hook(Box::new(|info| log!("writer panic: {info}")));
    let off = mem::dlsym_default(b"__rseq_offset\0");
    let size = mem::dlsym_default(b"__rseq_size\0");
    if !off.is_null() && !size.is_null() {
        suspend::RSEQ_OFFSET.store(mem::read_at::<i64>(off) as u64, Ordering::Relaxed);
        suspend::RSEQ_SIZE.store(mem::read_at::<u32>(size), Ordering::Relaxed);
    }
    interpose::init();
    // CKPT_PTHREADS=1: the writer's threads by pthread_create, as before
    // rawthread.rs (for comparison, and a way out if a C library differs).
    if std::env::var("CKPT_PTHREADS").is_ok_and(|v| v == "1") {
        debug!("CKPT_PTHREADS=1: the writer's threads are pthreads");
    } else if !rawthread::init() {
        log!("cannot prepare the writer's own threads: falling back on pthreads (the program then runs on glibc's multi-threaded paths)");
    }
    if !suspend::install(signo) {
        log!("cannot install the handler for signal {signo}");
        return;
    }
    if !config::init_restart_info() {
        log!("cannot map the restart hand-off block");
        return;
    }
    if !alloc::init_scratch() {
        log!("cannot map the scratch arena");
        return;
    }
    debug!(
        "writer loaded: prog {} pid {} unique id {} coordinator {}:{} signal {signo}",
        cfg.prog,
        sys::getpid(),
        cfg.unique_id,
        cfg.host,
        cfg.port
    );
    start_threads();
}

/// Starts the writer's threads with every signal blocked from their
/// first instruction: a thread inherits its creator's mask, and one that
/// blocked only once running could take a process-directed signal the
/// program blocked (a signal the program reads through a signalfd killed
/// it when it arrived before the checkpoint thread's own sigmask call).
fn start_threads() {
    let old = sys::sigmask(libc::SIG_SETMASK, Some(!0u64));
    spawn_threads();
    sys::sigmask(libc::SIG_SETMASK, Some(old));
}

fn spawn_threads() {
    compress::NWORKERS.store(0, Ordering::SeqCst);
    if rawthread::available() {
        CKPT_RUNNING.store(0, Ordering::SeqCst);
        if !wake() {
            log!("cannot start the checkpoint thread");
        }
        return;
    }
    let _ = std::thread::Builder::new()
        .name("ckpt-thread".into())
        .stack_size(1 << 20)
        .spawn(ckpt_thread);
}

/// Starts the compression workers, once per process, when its first
/// checkpoint begins (by the checkpoint thread, before anything is
/// suspended: in the pthread fallback, pthread_create takes libc's locks). Not at start-up: a
/// thread each fork child and exec'd program would pay for, never used
/// by most of them.
pub fn ensure_workers() {
    if compress::NWORKERS.load(Ordering::Acquire) != 0 {
        return;
    }
    let old = sys::sigmask(libc::SIG_SETMASK, Some(!0u64));
    let cpus = rawthread::cpus();
    let nw = (cpus.min(4) - 1).min(compress::MAX_WORKERS);
    for t in &compress::WORKER_TIDS {
        t.store(0, Ordering::SeqCst);
    }
    let mut started = 0;
    for k in 0..nw {
        let ok = if rawthread::available() {
            rawthread::spawn(1 + k, c"ckpt-worker", compress::worker, k).is_some()
        } else {
            std::thread::Builder::new()
                .name("ckpt-worker".into())
                .stack_size(256 << 10)
                .spawn(move || compress::worker(k))
                .is_ok()
        };
        if !ok {
            break;
        }
        started += 1;
    }
    sys::sigmask(libc::SIG_SETMASK, Some(old));
    // Wait until the workers know their tids (they are excluded from signals).
    for k in 0..started {
        while compress::WORKER_TIDS[k].load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
    }
    compress::NWORKERS.store(started, Ordering::SeqCst);
}

/// Ends the compression workers after a checkpoint (or a restart) when
/// they are the writer's own threads: they start again at the next one.
/// Pthread workers stay (making them again would cost a pthread_create).
fn stop_workers() {
    if !rawthread::available() || compress::NWORKERS.load(Ordering::Acquire) == 0 {
        return;
    }
    compress::command(compress::CMD_EXIT);
    if !compress::wait_ack(5000) {
        log!("compression workers did not end");
    }
    compress::NWORKERS.store(0, Ordering::SeqCst);
}

/// Called in the child after fork (pthread_atfork).
pub fn child_after_fork() {
    WRITER_PID.store(sys::getpid(), Ordering::SeqCst);
    rawthread::after_fork();
    ASYNC_ARMED.store(-1, Ordering::SeqCst);
    // The parent may have been between checkpoint phases at the fork.
    alloc::SCRATCH_MODE.store(false, Ordering::SeqCst);
    alloc::reset_scratch();
    suspend::reset_after_fork();
    config::after_fork();
    RESTORED_FROM.store(0, Ordering::SeqCst);
    debug!("forked child: new identity");
    start_threads();
}

/// 1 while the checkpoint thread exists (or is being started). With the
/// writer's own threads (rawthread.rs) it ends whenever it has nothing to
/// do: the coordinator socket is in O_ASYNC mode, and the coordinator's
/// next word raises the checkpoint signal (si_code POLL_IN) in whichever
/// program thread the kernel picks, whose handler starts it again
/// (`wake`). Between checkpoints the program then runs with no thread of
/// ours at all: nothing shares its fd table (a shared one makes every
/// read/write take file references, +10 % on a 64-byte write) and nothing
/// else is scheduled.
static CKPT_RUNNING: AtomicU32 = AtomicU32::new(0);

/// Starts the checkpoint thread unless it runs. Safe in a signal handler:
/// no allocation, no lock. The new thread inherits the caller's signal
/// mask, which must block every signal.
/// True if it started it.
pub fn wake() -> bool {
    if CKPT_RUNNING
        .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    if rawthread::spawn(rawthread::CKPT_THREAD, c"ckpt-thread", |_| ckpt_thread(), 0).is_none() {
        CKPT_RUNNING.store(0, Ordering::Release);
        return false;
    }
    true
}

/// Bumped to let go the program threads held by `on_coordinator_word`.
static HOLD_GEN: AtomicU32 = AtomicU32::new(0);

/// The checkpoint signal with si_code POLL_IN/POLL_HUP, in a program
/// thread: the coordinator socket has a word. Starts the checkpoint thread
/// and, if it did, holds this thread until that thread has read the word
/// and, for a checkpoint, sent this thread its checkpoint signal too (or,
/// for any other word, answered it; at most 2 s). The held thread then
/// takes that signal as it returns from this one, with no system call in
/// between: a sleep or poll the program was in fails with EINTR once per
/// checkpoint, as in every other thread, not twice. A word that comes
/// while the checkpoint thread runs (the coordinator's release, delivered
/// when the threads run again) holds nobody: the image's sync and rename
/// happen while the program runs.
pub fn on_coordinator_word() {
    let g = HOLD_GEN.load(Ordering::Acquire);
    if !wake() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while HOLD_GEN.load(Ordering::Acquire) == g && std::time::Instant::now() < deadline {
        sys::futex_wait(&HOLD_GEN, g, 100);
    }
}

/// Lets go the threads `on_coordinator_word` holds.
pub fn release_held() {
    HOLD_GEN.fetch_add(1, Ordering::AcqRel);
    sys::futex_wake(&HOLD_GEN);
}

/// How a connection's messages ended.
enum End {
    /// Nothing left to do: the thread ends; the socket stays, armed.
    Idle,
    /// This process was just restored (the connection is stale).
    Restarted,
    /// Refused, closed or failed.
    Lost,
}

fn ckpt_thread() {
    sys::sigmask(libc::SIG_SETMASK, Some(!0u64));
    alloc::mark_writer_thread();
    let mut failing = false;
    loop {
        let cfg = config::get();
        let fd = config::SOCK_FD.load(Ordering::SeqCst);
        let welcomed = fd >= 0 && welcomed();
        if welcomed && !is_our_socket(fd) {
            log!("the coordinator socket (fd {fd}) was closed by the program: connecting again");
            WELCOMED.store(0, Ordering::Release);
            config::SOCK_FD.store(-1, Ordering::SeqCst);
            continue;
        }
        let end = if welcomed {
            // Started again by the coordinator's word.
            session(fd, &cfg, false)
        } else {
            checkpoint::test_hold_connect(&cfg);
            match connect(&cfg) {
                Ok(s) => {
                    use std::os::fd::IntoRawFd;
                    failing = false;
                    let fd = keep_old_number(s).into_raw_fd();
                    SOCK_INO.store(inode_of(fd), Ordering::SeqCst);
                    config::SOCK_FD.store(fd, Ordering::SeqCst);
                    session(fd, &cfg, true)
                }
                Err(e) => {
                    if !failing {
                        jobctl::connected();
                        failing = true;
                        log!(
                            "coordinator {}:{} unreachable ({e}); retrying every second",
                            cfg.host,
                            cfg.port
                        )
                    } else {
                        debug!("coordinator {}:{}: {e}", cfg.host, cfg.port)
                    }
                    sys::sleep_ms(1000);
                    continue;
                }
            }
        };
        release_held();
        match end {
            End::Idle => return,
            // The restorer closed the old socket; its fd number is not ours.
            End::Restarted => WELCOMED.store(0, Ordering::Release),
            End::Lost => {
                WELCOMED.store(0, Ordering::Release);
                let fd = config::SOCK_FD.swap(-1, Ordering::SeqCst);
                if fd >= 0 && is_our_socket(fd) {
                    // SAFETY: closing our own coordinator socket.
                    unsafe { libc::close(fd) };
                }
                // Refused or lost before the welcome: held threads go on.
                jobctl::connected();
                sys::sleep_ms(1000);
            }
        }
    }
}

/// Inode of the coordinator socket this process connected.
static SOCK_INO: AtomicU64 = AtomicU64::new(0);

/// `fd`'s inode if it is a socket (0 if not, or closed).
fn inode_of(fd: i32) -> u64 {
    // SAFETY: fstat into a zeroed stat on our stack.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return 0;
        }
        st.st_ino
    }
}

/// Whether `fd` is still the coordinator socket this process connected: a
/// program that closes every fd it did not open closes it too (and the
/// coordinator sees the process leave), and its next open may get the
/// number back for a file of its own, which must never be read, written
/// or closed as the socket.
fn is_our_socket(fd: i32) -> bool {
    let ino = inode_of(fd);
    ino != 0 && ino == SOCK_INO.load(Ordering::SeqCst)
}

/// One stretch of talk over the coordinator connection `fd`: the hello and
/// welcome first when `fresh`, then its messages.
fn session(fd: i32, cfg: &config::Config, fresh: bool) -> End {
    use std::os::fd::FromRawFd;
    // SAFETY: fd is our open coordinator socket; ManuallyDrop: not closed here.
    let s = std::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    let mut r = BufReader::new(&*s);
    if fresh && !handshake(&s, &mut r, cfg) {
        return End::Lost;
    }
    let idle_exit = rawthread::available() && ASYNC_ARMED.load(Ordering::Acquire) == fd;
    serve(&s, &mut r, idle_exit)
}

/// The socket whose readiness raises the checkpoint signal (-1: none).
static ASYNC_ARMED: AtomicI32 = AtomicI32::new(-1);

/// fcntl(2) F_SETSIG (linux/fcntl.h; not in the libc crate).
const F_SETSIG: i32 = 10;

/// Puts the coordinator socket in O_ASYNC mode: data or hang-up raises
/// the checkpoint signal in this process, with si_code POLL_IN/POLL_HUP.
fn arm_async(fd: i32) -> bool {
    let signo = suspend::SIGNO.load(Ordering::Relaxed);
    // SAFETY: fcntl on our own socket.
    let ok = unsafe {
        libc::fcntl(fd, libc::F_SETOWN, sys::getpid()) == 0
            && libc::fcntl(fd, F_SETSIG, signo) == 0
            && {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) == 0
            }
    };
    ASYNC_ARMED.store(if ok { fd } else { -1 }, Ordering::Release);
    ok
}

/// Whether `fd` has something to read (or hung up) within `ms`
/// milliseconds (0: right now).
fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on our stack.
    unsafe { libc::poll(&mut p, 1, ms) != 0 }
}

/// The connection goes to a high fd number; after a restart, to the old
/// connection's number.
fn keep_old_number(s: TcpStream) -> TcpStream {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let want = config::RESERVED_SOCK_FD.swap(-1, Ordering::SeqCst);
    let fd = if want < 0 {
        sys::to_high_fd(s.into_raw_fd())
    } else {
        sys::move_fd(s.into_raw_fd(), want)
    };
    // SAFETY: fd is the connected socket we own (moved or unchanged).
    unsafe { TcpStream::from_raw_fd(fd) }
}

fn connect(cfg: &config::Config) -> std::io::Result<TcpStream> {
    let addrs: Vec<std::net::SocketAddr> = match cfg.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![(ip, cfg.port).into()],
        // getaddrinfo mallocs: never on a thread glibc does not know of.
        Err(_) if rawthread::available() => {
            return Err(std::io::Error::other(format!(
                "{} is not an address and did not resolve when the program started",
                cfg.host
            )))
        }
        Err(_) => (cfg.host.as_str(), cfg.port).to_socket_addrs()?.collect(),
    };
    let mut last = std::io::Error::other("no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Longest wait for the coordinator's word at a barrier (its own timeout
/// for the suspend phase is shorter; the write phase lasts as long as the
/// slowest image).
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// The coordinator's barrier over this process's connection.
struct CoordBarrier<'a, 's> {
    s: &'s TcpStream,
    r: &'a mut BufReader<&'s TcpStream>,
    generation: u64,
}

/// What ended a wait at the barrier.
enum BarrierWord {
    /// The expected message.
    Go,
    /// The coordinator abandoned the checkpoint.
    Abandoned(String),
    /// The connection failed or timed out.
    Lost(String),
}

impl CoordBarrier<'_, '_> {
    /// Tells the coordinator `msg`, then waits for `Write` (`write`) or
    /// `Release` of this generation; `Resume` abandons.
    fn exchange(&mut self, msg: &ToCoordinator, write: bool) -> BarrierWord {
        if let Err(e) = send(self.s, msg) {
            return BarrierWord::Lost(format!("telling the coordinator: {e}"));
        }
        // The children the coordinator waits for are looked at again while
        // no word comes: one that ends before it connects leaves the list.
        let mut children = match msg {
            ToCoordinator::Suspended { children, .. } => children.clone(),
            _ => Vec::new(),
        };
        let since = std::time::Instant::now();
        let _ = self.s.set_read_timeout(Some(BARRIER_WAIT));
        let word = loop {
            if !children.is_empty()
                && self.r.buffer().is_empty()
                && !readable(self.s.as_raw_fd(), 50)
            {
                if since.elapsed() >= BARRIER_WAIT {
                    break BarrierWord::Lost("no word from the coordinator".into());
                }
                let now = exec::joining();
                if now != children {
                    children = now;
                    let again = ToCoordinator::Suspended {
                        generation: self.generation,
                        children: children.clone(),
                    };
                    if let Err(e) = send(self.s, &again) {
                        break BarrierWord::Lost(format!("telling the coordinator: {e}"));
                    }
                }
                continue;
            }
            match ckpt_protocol::recv::<_, ToClient>(&mut *self.r) {
                Ok(Some(ToClient::Write { generation, peers }))
                    if write && generation == self.generation =>
                {
                    capture::set_peers(peers);
                    break BarrierWord::Go;
                }
                Ok(Some(ToClient::Release { generation }))
                    if !write && generation == self.generation =>
                {
                    break BarrierWord::Go
                }
                Ok(Some(ToClient::Resume { generation, reason }))
                    if generation == self.generation =>
                {
                    break BarrierWord::Abandoned(reason)
                }
                Ok(Some(ToClient::Continue { generation, pids }))
                    if generation == self.generation =>
                {
                    let pids = jobctl::continue_stopped(&pids);
                    if let Err(e) = send(self.s, &ToCoordinator::Continued { generation, pids }) {
                        break BarrierWord::Lost(format!("telling the coordinator: {e}"));
                    }
                }
                Ok(Some(ToClient::WasStopped { generation })) if generation == self.generation => {
                    jobctl::set_stopped()
                }
                Ok(Some(ToClient::Kill)) => {
                    log!(
                        "killed by the coordinator during checkpoint {}",
                        self.generation
                    );
                    sys::exit_group(EXIT_KILLED);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    break BarrierWord::Lost("the coordinator closed the connection".into())
                }
                Err(e) => break BarrierWord::Lost(format!("coordinator: {e}")),
            }
        };
        let _ = self.s.set_read_timeout(None);
        word
    }
}

impl checkpoint::Barrier for CoordBarrier<'_, '_> {
    fn suspended(&mut self) -> Result<(), String> {
        let msg = ToCoordinator::Suspended {
            generation: self.generation,
            children: exec::joining(),
        };
        match self.exchange(&msg, true) {
            BarrierWord::Go => Ok(()),
            BarrierWord::Abandoned(reason) => {
                Err(format!("abandoned by the coordinator: {reason}"))
            }
            BarrierWord::Lost(e) => Err(format!("at the suspend barrier: {e}")),
        }
    }

    fn captured(&mut self) {
        let msg = ToCoordinator::Captured {
            generation: self.generation,
        };
        match self.exchange(&msg, false) {
            BarrierWord::Go => {}
            // Nothing is left to wait for: the threads run again.
            BarrierWord::Abandoned(reason) => {
                log!("checkpoint {}: released early: {reason}", self.generation)
            }
            BarrierWord::Lost(e) => log!(
                "checkpoint {}: released without the barrier: {e}",
                self.generation
            ),
        }
    }
}

/// Hello and welcome over a new connection; true once welcomed.
fn handshake(s: &TcpStream, r: &mut BufReader<&TcpStream>, cfg: &config::Config) -> bool {
    let pid = sys::getpid();
    let restored = RESTORED_FROM.load(Ordering::Relaxed);
    let last_generation = restored.max(LAST_GEN.load(Ordering::SeqCst));
    let hello = ToCoordinator::Hello(Hello {
        version: PROTOCOL_VERSION,
        secret: cfg.secret.clone(),
        role: Role::Worker(WorkerInfo {
            program: cfg.prog.clone(),
            vpid: pid,
            real_pid: pid,
            host: mem::uname().0,
            unique_id: cfg.unique_id.clone(),
            restarted_from: restored,
            last_generation,
            computation_id: if last_generation > 0 {
                cfg.computation_id
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            } else {
                String::new()
            },
            ckpt_dir: cfg.dir.clone(),
            barrier: !cfg.no_barrier,
            // SAFETY: getppid cannot fail.
            ppid: unsafe { libc::getppid() },
            continues: true,
            pid_ns: jobctl::pid_ns(),
        }),
    });
    if let Err(e) = send(s, &hello) {
        log!("hello: {e}");
        return false;
    }
    match ckpt_protocol::recv::<_, ToClient>(&mut *r) {
        Ok(Some(ToClient::Welcome { interval })) => {
            if rawthread::available() && !arm_async(s.as_raw_fd()) {
                log!("cannot put the coordinator socket in O_ASYNC mode: the checkpoint thread stays");
            }
            WELCOMED.store(pid as u32, Ordering::Release);
            sys::futex_wake(&WELCOMED);
            jobctl::connected();
            debug!(
                "connected to {}:{} (interval {interval})",
                cfg.host, cfg.port
            )
        }
        Ok(Some(ToClient::Refused { reason })) => {
            log!("coordinator refused us: {reason}");
            return false;
        }
        other => {
            log!("no welcome: {:?}", other.map(|_| ()));
            return false;
        }
    }
    true
}

/// Answers the coordinator's messages until the connection ends, or, with
/// `idle_exit`, until none is waiting (see `CKPT_RUNNING`).
fn serve<'s>(s: &'s TcpStream, r: &mut BufReader<&'s TcpStream>, idle_exit: bool) -> End {
    let pid = sys::getpid();
    loop {
        if idle_exit && r.buffer().is_empty() && !readable(s.as_raw_fd(), 0) {
            CKPT_RUNNING.store(0, Ordering::SeqCst);
            // A word that came after the look above found the thread still
            // running and started none: look again.
            if !readable(s.as_raw_fd(), 0)
                || CKPT_RUNNING
                    .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return End::Idle;
            }
        }
        match ckpt_protocol::recv::<_, ToClient>(&mut *r) {
            Ok(Some(ToClient::Checkpoint(req))) => {
                log!("checkpoint generation {}", req.generation);
                IN_FLIGHT.store(pid as u32, Ordering::Release);
                // Before the image is taken, so a restored process knows it too.
                config::set_computation_id(&req.computation_id);
                let t0 = std::time::Instant::now();
                let outcome = if req.barrier {
                    checkpoint::run(
                        &req,
                        &mut CoordBarrier {
                            s,
                            r: &mut *r,
                            generation: req.generation,
                        },
                    )
                } else {
                    checkpoint::run(&req, &mut checkpoint::Alone)
                };
                let reply = match outcome {
                    checkpoint::Outcome::Written { path, bytes } => {
                        LAST_GEN.store(req.generation, Ordering::SeqCst);
                        log!(
                            "checkpoint {} written: {path} ({bytes} bytes, {} ms)",
                            req.generation,
                            t0.elapsed().as_millis()
                        );
                        let host = mem::uname().0;
                        let outsiders = exec::take_outsiders()
                            .into_iter()
                            .map(|o| ckpt_protocol::Outsider {
                                pid: o.pid,
                                ppid: pid,
                                program: o.program,
                                host: host.clone(),
                                reason: o.why.text().to_string(),
                            })
                            .collect();
                        ToCoordinator::Checkpointed {
                            generation: req.generation,
                            path,
                            bytes,
                            outsiders,
                        }
                    }
                    checkpoint::Outcome::Failed(reason) => {
                        log!("checkpoint {} failed: {reason}", req.generation);
                        ToCoordinator::CheckpointFailed {
                            generation: req.generation,
                            reason,
                        }
                    }
                    checkpoint::Outcome::Restarted => {
                        IN_FLIGHT.store(0, Ordering::Release);
                        RESTORED_FROM.store(req.generation, Ordering::SeqCst);
                        stop_workers();
                        return End::Restarted;
                    }
                };
                let sent = send(s, &reply);
                IN_FLIGHT.store(0, Ordering::Release);
                sys::futex_wake(&IN_FLIGHT);
                jobctl::after_checkpoint();
                stop_workers();
                if let Err(e) = sent {
                    log!("reply: {e}");
                    return End::Lost;
                }
            }
            Ok(Some(ToClient::Continue { pids, .. })) => {
                // A kill follows: stopped processes must read theirs.
                jobctl::continue_stopped(&pids);
            }
            Ok(Some(ToClient::Kill)) => {
                log!("killed by the coordinator");
                sys::exit_group(EXIT_KILLED);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                log!("coordinator closed the connection");
                return End::Lost;
            }
            Err(e) => {
                log!("coordinator: {e}");
                return End::Lost;
            }
        }
        release_held();
    }
}
