//! `ckpt coordinator`: accepts workers (checkpointed processes) and
//! `ckpt command` clients, runs checkpoints across all workers, and writes
//! the restart script and manifest after each complete checkpoint.
//!
//! One thread per connection; all state in one `Mutex<State>`. Messages to
//! workers are written under the lock (small lines, bounded write timeout).

use crate::secret;
use anyhow::{Context, Result};
use ckpt_protocol::{
    CheckpointRequest, Command, Hello, ProcessEntry, Reply, Role, ToClient, ToCoordinator,
    WorkerInfo, PROTOCOL_VERSION,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Options of `ckpt coordinator`.
#[derive(Debug, Clone)]
pub struct Opts {
    pub port: u16,
    pub port_file: Option<PathBuf>,
    pub listen: String,
    pub daemon: bool,
    pub exit_on_last: bool,
    pub interval: u64,
    pub ckpt_dir: Option<PathBuf>,
    pub quiet: bool,
    pub tmpdir: PathBuf,
    pub compress: bool,
    pub open_files: bool,
    /// Generations kept (each in `ckpt_gen_<N>/` beside the images), >= 1.
    pub keep: u64,
    /// Log every connection and command.
    pub debug: bool,
}

struct Worker {
    info: WorkerInfo,
    out: TcpStream,
}

#[derive(Clone, Debug, Serialize)]
struct ImageRec {
    host: String,
    program: String,
    pid: i32,
    unique_id: String,
    path: String,
    bytes: u64,
}

struct Pending {
    generation: u64,
    waiting: BTreeSet<u64>,
    images: Vec<ImageRec>,
    failures: Vec<String>,
    waiters: Vec<mpsc::Sender<Reply>>,
    /// The workers that speak the barrier (None: none does).
    barrier: Option<Barrier>,
    /// What every worker was asked (a late joiner gets it too).
    request: CheckpointRequest,
}

/// Longest wait for every member to report `Suspended`; then the
/// checkpoint is abandoned and every member told to resume.
const SUSPEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait, once every member is suspended, for the children they
/// named in `Suspended` that have not connected yet; then the checkpoint
/// goes on without them (as it did before members named them).
const CHILDREN_WITHIN: Duration = Duration::from_secs(5);

/// Where a checkpoint's barrier is: every member stops (`Suspend`), then
/// every member captures and writes (`Write`), then all run again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Suspend,
    Write,
    Released,
}

/// The global barrier of one checkpoint (doc/design.md, "Checkpoint
/// barrier").
struct Barrier {
    phase: Phase,
    /// Workers in the barrier (those still connected and not failed).
    members: BTreeSet<u64>,
    /// Members the current phase still waits for.
    left: BTreeSet<u64>,
    started: Instant,
    /// Members that connected during the write phase (a child forked or
    /// a program exec'd just before its parent stopped), with when they
    /// joined, until they report `Suspended` and are told to write.
    late: BTreeMap<u64, Instant>,
    /// Stopped members: `Continue` was sent (once per checkpoint), and
    /// the answers still awaited, with when it was sent; the barrier
    /// does not move to `Write` before they are in (see
    /// [`continue_stopped`]).
    continuing: Option<(Instant, usize)>,
    /// The live children each member named in its last `Suspended`
    /// (virtual pids on its host, in its pid namespace): the barrier
    /// moves to `Write` only once each is a connected worker, so that no
    /// process of the computation runs while the others are captured.
    children: BTreeMap<u64, Vec<i32>>,
    /// Since when every member is suspended and some of those children
    /// are not connected yet; true once [`CHILDREN_WITHIN`] ran out.
    awaiting: Option<(Instant, bool)>,
}

struct State {
    next_id: u64,
    workers: BTreeMap<u64, Worker>,
    generation: u64,
    completed: u64,
    interval: u64,
    last_start: Instant,
    pending: Option<Pending>,
    ever_connected: bool,
    /// Changes only when a worker reports the id of an older checkpoint
    /// (a coordinator started again after a crash).
    computation_id: String,
    /// Processes outside checkpoint control, by (host, pid): reported by
    /// the process exec'ing a program that cannot carry the writer, and
    /// by each parent at every checkpoint (which replaces what it said
    /// before).
    outsiders: BTreeMap<(String, i32), ckpt_protocol::Outsider>,
}

struct Shared {
    opts: Opts,
    port: u16,
    secret: String,
    exe: String,
    /// `$CKPT_TMPDIR/ckpt-coordinator-<port>.log` of a coordinator in the
    /// foreground (one in the background writes it as its stdout).
    log: Option<Mutex<std::fs::File>>,
    st: Mutex<State>,
}

/// Seconds since the epoch, with milliseconds, for log lines.
fn timestamp() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What happened: to the terminal unless --quiet, and always to the
    /// log.
    fn say(&self, msg: &str) {
        if !self.opts.quiet && !self.opts.daemon {
            println!("[ckpt coordinator] {msg}");
        }
        self.log_line(msg);
    }

    /// To the log only (in the background, stdout is the log).
    fn log_line(&self, msg: &str) {
        let stamp = timestamp();
        if self.opts.daemon {
            println!("{stamp} [ckpt coordinator] {msg}");
        } else if let Some(f) = &self.log {
            let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{stamp} [ckpt coordinator] {msg}");
        }
    }

    fn debug(&self, msg: &str) {
        if self.opts.debug {
            self.say(&format!("debug: {msg}"));
        }
    }

    fn secret_file(&self) -> PathBuf {
        secret::secret_path(&self.opts.tmpdir, self.port)
    }

    /// Leaves: removes the secret file and exits the whole process.
    fn exit(&self, code: i32) -> ! {
        let _ = std::fs::remove_file(self.secret_file());
        let _ = std::io::stdout().flush();
        std::process::exit(code)
    }

    /// `q`: nobody new gets in, every process is killed, and we go.
    fn quit(&self, before_exit: impl FnOnce(&str)) -> ! {
        let _ = std::fs::remove_file(self.secret_file());
        let n = kill_all(self, &mut self.lock());
        before_exit(&format!("killed {n} process(es); coordinator exiting"));
        self.say("quit");
        // Let the killed workers read their Kill before the connections go.
        std::thread::sleep(Duration::from_millis(100));
        self.exit(0)
    }
}

fn send_to(out: &mut TcpStream, msg: &ToClient) -> bool {
    ckpt_protocol::send(out, msg).is_ok()
}

/// Runs the coordinator until `q` (or the last worker leaves with
/// --exit-on-last).
pub fn run(opts: Opts) -> Result<i32> {
    secret::ensure_tmpdir(&opts.tmpdir)?;
    let listener = TcpListener::bind((opts.listen.as_str(), opts.port))
        .with_context(|| format!("listening on {}:{}", opts.listen, opts.port))?;
    let port = listener.local_addr().context("local address")?.port();
    let secret_file = secret::secret_path(&opts.tmpdir, port);
    let (secret, reused) = match std::env::var("CKPT_SECRET") {
        Ok(s) if !s.is_empty() => (s, false),
        _ => match secret::previous_secret(&secret_file) {
            Some(s) => (s, true),
            None => (secret::random_hex(32)?, false),
        },
    };
    secret::write_secret(&secret_file, &secret)?;
    let log = opts.tmpdir.join(format!("ckpt-coordinator-{port}.log"));
    // In the background: the parent returns from here only in the child.
    let ready = if opts.daemon {
        Some(detach(&log, port, opts.quiet)?)
    } else {
        None
    };
    if let Some(pf) = &opts.port_file {
        let tmp = pf.with_extension("tmp");
        std::fs::write(&tmp, format!("{port}\n"))
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, pf)
            .with_context(|| format!("writing the port file {}", pf.display()))?;
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "ckpt".into());
    let log = if opts.daemon {
        None
    } else {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        Some(Mutex::new(f))
    };
    let shared = Arc::new(Shared {
        port,
        secret,
        exe,
        log,
        st: Mutex::new(State {
            next_id: 1,
            workers: BTreeMap::new(),
            generation: 0,
            completed: 0,
            interval: opts.interval,
            last_start: Instant::now(),
            pending: None,
            ever_connected: false,
            computation_id: secret::random_hex(16)?,
            outsiders: BTreeMap::new(),
        }),
        opts,
    });
    shared.log_line(&format!(
        "pid {} listening on {}:{port}, interval {} s, exit on last {}, keep {}",
        std::process::id(),
        shared.opts.listen,
        shared.opts.interval,
        shared.opts.exit_on_last,
        shared.opts.keep
    ));
    if !shared.opts.quiet || shared.opts.daemon {
        println!(
            "ckpt coordinator listening on {}:{port}",
            shared.opts.listen
        );
        println!("  port: {port}");
        println!(
            "  checkpoint interval: {}",
            if shared.opts.interval == 0 {
                "off".to_string()
            } else {
                format!("{} s", shared.opts.interval)
            }
        );
        println!(
            "  exit on last: {}",
            if shared.opts.exit_on_last {
                "yes"
            } else {
                "no"
            }
        );
        println!(
            "  secret file: {}{}",
            shared.secret_file().display(),
            if reused {
                " (taken over from a previous coordinator on this port)"
            } else {
                ""
            }
        );
        println!("  generations kept: {}", shared.opts.keep);
        if !shared.opts.daemon {
            println!("Type '?' for help.");
        }
        let _ = std::io::stdout().flush();
    }
    {
        let sh = shared.clone();
        std::thread::spawn(move || timer(&sh));
    }
    if let Some(mut ready) = ready {
        // The parent waiting in `detach` exits 0 now.
        let _ = ready.write_all(b"R");
    } else {
        let sh = shared.clone();
        std::thread::spawn(move || console(&sh));
    }
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                let sh = shared.clone();
                std::thread::spawn(move || connection(&sh, s));
            }
            Err(e) => shared.say(&format!("accept: {e}")),
        }
    }
    Ok(0)
}

/// `--daemon`: forks; the parent waits until the child is listening and
/// exits 0 (1 if the child died first). The child leaves the caller's
/// session (setsid: no controlling terminal, no SIGHUP when the launching
/// shell goes), writes its output to `log` (0600), and gets the write end
/// of the ready pipe.
fn detach(log: &Path, port: u16, quiet: bool) -> Result<std::fs::File> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    let logf = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("creating the log {}", log.display()))?;
    let devnull = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both fds were just created and are owned here alone.
    let (mut rd, wr) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let _ = std::io::stdout().flush();
    // SAFETY: no other thread exists yet (the coordinator's threads start
    // after this), so the child is a complete copy.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(rd);
            // SAFETY: plain syscalls on fds we own; setsid cannot fail for
            // a fresh child (it is not a process group leader).
            unsafe {
                libc::setsid();
                libc::dup2(devnull.as_raw_fd(), 0);
                libc::dup2(logf.as_raw_fd(), 1);
                libc::dup2(logf.as_raw_fd(), 2);
            }
            Ok(wr)
        }
        pid => {
            drop(wr);
            let mut b = [0u8; 1];
            if rd.read(&mut b).unwrap_or(0) == 1 {
                if !quiet {
                    println!(
                        "ckpt coordinator running in the background: port {port}, pid {pid}, log {}",
                        log.display()
                    );
                }
                std::process::exit(0);
            }
            eprintln!(
                "ckpt coordinator: the background coordinator died while starting (see {})",
                log.display()
            );
            std::process::exit(1);
        }
    }
}

fn timer(sh: &Shared) {
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let mut st = sh.lock();
        continue_stopped(sh, &mut st);
        barrier_timeout(sh, &mut st);
        if st.interval > 0
            && st.pending.is_none()
            && !st.workers.is_empty()
            && st.last_start.elapsed() >= Duration::from_secs(st.interval)
        {
            let _ = start_checkpoint(sh, &mut st, None);
        }
    }
}

fn console(sh: &Shared) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let mut words = line.split_whitespace();
        let cmd = match words.next() {
            None => continue,
            Some("l") | Some("list") => Command::List,
            Some("s") | Some("status") => Command::Status,
            Some("c") => Command::Checkpoint,
            Some("bc") => Command::BlockingCheckpoint,
            Some("k") => Command::Kill,
            Some("q") | Some("quit") => {
                sh.quit(|m| println!("{m}"));
            }
            Some("i") => match words.next().map(|w| w.parse()) {
                Some(Ok(n)) => Command::Interval(n),
                None => {
                    let n = sh.lock().interval;
                    if n == 0 {
                        println!("checkpoint interval: off");
                    } else {
                        println!("checkpoint interval: {n} s");
                    }
                    let _ = std::io::stdout().flush();
                    continue;
                }
                Some(Err(_)) => {
                    println!("usage: i [SECONDS] (show, or set; 0 = off)");
                    continue;
                }
            },
            Some("?") | Some("h") | Some("help") => {
                println!(
                    "Commands:\n  l  list processes\n  s  status\n  c  checkpoint all\n  bc checkpoint all and wait\n  i  show the checkpoint interval\n  i N  checkpoint every N seconds (0 = off)\n  k  kill all processes\n  q  kill all processes and quit\n  ?  this help"
                );
                continue;
            }
            Some(other) => {
                println!("unknown command '{other}' (type ? for help)");
                continue;
            }
        };
        match execute(sh, cmd) {
            Reply::List(list) => {
                if list.is_empty() {
                    println!("no processes connected");
                }
                print!("{}", crate::command::render_list(&list));
            }
            Reply::Status {
                processes,
                running,
                interval,
                generation,
                outside,
            } => {
                println!(
                    "processes: {processes}, running: {}, interval: {interval} s, last checkpoint: {generation}",
                    if running { "yes" } else { "no" }
                );
                for o in outside {
                    println!("outside checkpoint control: {o}");
                }
            }
            Reply::Ok { message } => println!("{message}"),
            Reply::Checkpointed { generation, images } => {
                println!(
                    "checkpoint {generation}: {}",
                    if images.is_empty() {
                        "started".into()
                    } else {
                        images.join(" ")
                    }
                )
            }
            Reply::Error { message } => println!("error: {message}"),
        }
        let _ = std::io::stdout().flush();
    }
}

/// Starts a checkpoint of every worker (or joins the one under way);
/// returns its generation.
fn start_checkpoint(
    sh: &Shared,
    st: &mut State,
    waiter: Option<mpsc::Sender<Reply>>,
) -> Result<u64, String> {
    if let Some(p) = &mut st.pending {
        if let Some(w) = waiter {
            p.waiters.push(w);
        }
        return Ok(p.generation);
    }
    if st.workers.is_empty() {
        return Err("no processes to checkpoint".into());
    }
    st.generation += 1;
    st.last_start = Instant::now();
    let generation = st.generation;
    let req = CheckpointRequest {
        generation,
        dir: sh
            .opts
            .ckpt_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        compress: sh.opts.compress,
        open_files: sh.opts.open_files,
        computation_id: st.computation_id.clone(),
        barrier: false,
    };
    let mut pending = Pending {
        generation,
        waiting: BTreeSet::new(),
        images: Vec::new(),
        failures: Vec::new(),
        waiters: waiter.into_iter().collect(),
        barrier: None,
        request: req.clone(),
    };
    let mut members = BTreeSet::new();
    for (id, w) in st.workers.iter_mut() {
        // A worker that does not speak the barrier is checkpointed on its
        // own, as before it existed.
        let req = CheckpointRequest {
            barrier: w.info.barrier,
            ..req.clone()
        };
        if send_to(&mut w.out, &ToClient::Checkpoint(req)) {
            pending.waiting.insert(*id);
            if w.info.barrier {
                members.insert(*id);
            }
        } else {
            pending.failures.push(format!(
                "{}[{}]: could not send the request",
                w.info.program, w.info.vpid
            ));
        }
    }
    sh.say(&format!(
        "checkpoint {generation} of {} process(es) started",
        st.workers.len()
    ));
    let alone = pending.waiting.len() - members.len();
    if alone > 0 && !members.is_empty() {
        sh.say(&format!(
            "checkpoint {generation}: {alone} process(es) without the barrier (an older writer) are checkpointed on their own: bytes in flight between them and the others may be lost or doubled"
        ));
    }
    if !members.is_empty() {
        pending.barrier = Some(Barrier {
            phase: Phase::Suspend,
            left: members.clone(),
            members,
            started: Instant::now(),
            late: BTreeMap::new(),
            continuing: None,
            children: BTreeMap::new(),
            awaiting: None,
        });
    }
    st.pending = Some(pending);
    advance_barrier(sh, st);
    maybe_complete(sh, st);
    Ok(generation)
}

/// Moves the pending checkpoint's barrier on once its phase waits for
/// nobody: all suspended → `Write` (or `Resume` when one failed or left);
/// all captured → `Release`.
fn advance_barrier(sh: &Shared, st: &mut State) {
    let State {
        pending, workers, ..
    } = st;
    let Some(p) = pending.as_mut() else { return };
    let Some(b) = p.barrier.as_mut() else { return };
    if !b.left.is_empty() || b.phase == Phase::Suspend && b.continuing.is_some_and(|c| c.1 > 0) {
        return;
    }
    let generation = p.generation;
    let n = b.members.len();
    if b.phase == Phase::Suspend
        && p.failures.is_empty()
        && awaits_children(sh, generation, b, workers)
    {
        return;
    }
    let msg = match b.phase {
        Phase::Released => return,
        Phase::Suspend if p.failures.is_empty() => {
            b.phase = Phase::Write;
            b.left = b.members.clone();
            sh.log_line(&format!(
                "checkpoint {generation}: barrier: all {n} process(es) suspended in {} ms; write",
                b.started.elapsed().as_millis()
            ));
            ToClient::Write {
                generation,
                peers: Vec::new(),
            }
        }
        Phase::Suspend => {
            b.phase = Phase::Released;
            let reason = p.failures.join("; ");
            sh.say(&format!(
                "checkpoint {generation}: abandoned before any image was written ({reason}); {n} process(es) resume"
            ));
            ToClient::Resume { generation, reason }
        }
        Phase::Write => {
            b.phase = Phase::Released;
            sh.log_line(&format!(
                "checkpoint {generation}: barrier: all {n} process(es) captured in {} ms; release",
                b.started.elapsed().as_millis()
            ));
            ToClient::Release { generation }
        }
    };
    // Write names the members on each receiver's host (shared open
    // file descriptions are found by comparing with them).
    let on_host = |host: &str| -> Vec<i32> {
        b.members
            .iter()
            .filter_map(|m| workers.get(m))
            .filter(|w| w.info.host == host)
            .map(|w| w.info.vpid)
            .collect()
    };
    let msgs: Vec<(u64, ToClient)> = b
        .members
        .iter()
        .filter_map(|id| {
            let w = workers.get(id)?;
            let m = match &msg {
                ToClient::Write { generation, .. } => ToClient::Write {
                    generation: *generation,
                    peers: on_host(&w.info.host),
                },
                m => m.clone(),
            };
            Some((*id, m))
        })
        .collect();
    for (id, m) in msgs {
        // A member whose connection broke is dropped by its own thread.
        if let Some(w) = workers.get_mut(&id) {
            send_to(&mut w.out, &m);
        }
    }
}

/// The children the members named that are not connected workers yet
/// (the member's id, the child's virtual pid).
fn unconnected_children(b: &Barrier, workers: &BTreeMap<u64, Worker>) -> Vec<(u64, i32)> {
    let mut out = Vec::new();
    for (id, pids) in &b.children {
        let Some(parent) = workers.get(id) else {
            continue;
        };
        for &pid in pids {
            let connected = workers.values().any(|w| {
                w.info.vpid == pid
                    && w.info.host == parent.info.host
                    && (w.info.pid_ns == parent.info.pid_ns
                        || w.info.pid_ns == 0
                        || parent.info.pid_ns == 0)
            });
            if !connected {
                out.push((*id, pid));
            }
        }
    }
    out
}

/// Every member is suspended: whether the barrier must still wait for
/// children they named that have not connected (a process forked, or a
/// program exec'd, just before its parent stopped, whose writer is not
/// connected yet; it runs meanwhile, and must stop before anything is
/// captured). Gives up after [`CHILDREN_WITHIN`] (then `awaiting` says
/// so, and [`barrier_timeout`] moves the barrier on).
fn awaits_children(
    sh: &Shared,
    generation: u64,
    b: &mut Barrier,
    workers: &BTreeMap<u64, Worker>,
) -> bool {
    if matches!(b.awaiting, Some((_, true))) {
        return false;
    }
    let missing = unconnected_children(b, workers);
    if missing.is_empty() {
        if let Some((since, _)) = b.awaiting.take() {
            sh.debug(&format!(
                "checkpoint {generation}: the children waited for connected in {} ms",
                since.elapsed().as_millis()
            ));
        }
        return false;
    }
    match b.awaiting {
        Some((since, _)) if since.elapsed() >= CHILDREN_WITHIN => {
            let names: Vec<String> = missing
                .iter()
                .map(|(id, pid)| format!("{pid} (child of {})", worker_name(workers, *id)))
                .collect();
            sh.say(&format!(
                "checkpoint {generation}: process(es) {} did not connect within {} s: going on without them (their parent's image names them)",
                names.join(", "),
                CHILDREN_WITHIN.as_secs()
            ));
            b.awaiting = Some((since, true));
            false
        }
        Some(_) => true,
        None => {
            let names: Vec<String> = missing
                .iter()
                .map(|(id, pid)| format!("{pid} (child of {})", worker_name(workers, *id)))
                .collect();
            sh.log_line(&format!(
                "checkpoint {generation}: every member suspended; waiting for process(es) {} to connect",
                names.join(", ")
            ));
            b.awaiting = Some((Instant::now(), false));
            true
        }
    }
}

/// A member reached the barrier's current phase (`write`: it reported
/// `Captured`, else `Suspended`, naming `children`).
fn barrier_reached(
    sh: &Shared,
    st: &mut State,
    id: u64,
    generation: u64,
    write: bool,
    children: Vec<i32>,
) {
    if let Some(b) = barrier_of(&mut st.pending, generation).filter(|_| !write) {
        if children.is_empty() {
            b.children.remove(&id);
        } else {
            b.children.insert(id, children);
        }
    }
    if !write && late_suspended(st, id, generation) {
        return;
    }
    let want = if write { Phase::Write } else { Phase::Suspend };
    if let Some(b) = barrier_of(&mut st.pending, generation).filter(|b| b.phase == want) {
        b.left.remove(&id);
    }
    advance_barrier(sh, st);
}

/// The barrier of the pending checkpoint if it is of `generation` (an
/// answer to an older one finds none).
fn barrier_of(pending: &mut Option<Pending>, generation: u64) -> Option<&mut Barrier> {
    pending
        .as_mut()
        .filter(|p| p.generation == generation)
        .and_then(|p| p.barrier.as_mut())
}

/// A late member (joined in the write phase) is suspended: it writes
/// now, like the others. True if `id` was such a member.
fn late_suspended(st: &mut State, id: u64, generation: u64) -> bool {
    let State {
        pending, workers, ..
    } = st;
    let Some(b) = barrier_of(pending, generation).filter(|b| b.phase == Phase::Write) else {
        return false;
    };
    if b.late.remove(&id).is_none() {
        return false;
    }
    let host = workers.get(&id).map(|w| w.info.host.clone());
    let peers = b
        .members
        .iter()
        .filter_map(|m| workers.get(m))
        .filter(|w| Some(&w.info.host) == host.as_ref())
        .map(|w| w.info.vpid)
        .collect();
    if let Some(w) = workers.get_mut(&id) {
        send_to(&mut w.out, &ToClient::Write { generation, peers });
    }
    true
}

/// A worker connected while a checkpoint is under way: a process that
/// existed before the cut (a child forked, or a program exec'd, just
/// before its parent stopped, whose writer connected only now) joins the
/// checkpoint while the others are still stopped, so that its parent's
/// image does not name a child that no image holds. Once they run again
/// it is too late: it waits for the next checkpoint.
fn join_checkpoint(sh: &Shared, st: &mut State, id: u64) {
    let State {
        pending, workers, ..
    } = st;
    let Some(p) = pending.as_mut() else { return };
    let Some(w) = workers.get_mut(&id) else {
        return;
    };
    let who = format!("{}[{}]", w.info.program, w.info.vpid);
    let generation = p.generation;
    let phase = p.barrier.as_ref().map(|b| b.phase);
    if !w.info.barrier || !matches!(phase, Some(Phase::Suspend | Phase::Write)) {
        sh.say(&format!(
            "checkpoint {generation}: {who} connected after the processes were released: not in this checkpoint"
        ));
        return;
    }
    let req = CheckpointRequest {
        barrier: true,
        ..p.request.clone()
    };
    if !send_to(&mut w.out, &ToClient::Checkpoint(req)) {
        return;
    }
    p.waiting.insert(id);
    let b = p.barrier.as_mut().expect("a barrier");
    b.members.insert(id);
    b.left.insert(id);
    if b.phase == Phase::Write {
        b.late.insert(id, Instant::now());
    }
    sh.say(&format!(
        "checkpoint {generation}: {who} connected during the checkpoint and joins it"
    ));
}

/// Whether `id` left the pending checkpoint before its threads stopped
/// (it exited, or exec'd and comes back as a new connection): it was
/// never part of the cut, so its going does not fail the checkpoint.
fn left_before_stopping(st: &State, id: u64) -> bool {
    st.pending
        .as_ref()
        .and_then(|p| p.barrier.as_ref())
        .is_some_and(|b| {
            (b.phase == Phase::Suspend && b.left.contains(&id)) || b.late.contains_key(&id)
        })
}

/// How long the suspend phase waits before it asks whether the members
/// not suspended yet are stopped.
const STOPPED_AFTER: Duration = Duration::from_millis(300);
/// How long it waits for the answers before it writes anyway.
const CONTINUED_WITHIN: Duration = Duration::from_secs(3);

/// A member stopped by SIGSTOP or SIGTSTP cannot suspend (its writer is
/// stopped too): once the suspend phase has waited [`STOPPED_AFTER`],
/// one suspended member of each host is asked to continue those of its
/// host that are stopped ([`ToClient::Continue`]); each one it continued
/// is told so ([`ToClient::WasStopped`], before `Write`) and stops again
/// after the checkpoint. Only workers that speak it are asked or named.
fn continue_stopped(sh: &Shared, st: &mut State) {
    let State {
        pending, workers, ..
    } = st;
    let Some(p) = pending.as_mut() else { return };
    let generation = p.generation;
    let Some(b) = p.barrier.as_mut() else { return };
    if b.phase != Phase::Suspend {
        return;
    }
    match b.continuing {
        Some((at, n)) if n > 0 && at.elapsed() >= CONTINUED_WITHIN => {
            sh.log_line(&format!(
                "checkpoint {generation}: {n} answer(s) about stopped processes missing; going on"
            ));
            b.continuing = Some((at, 0));
            advance_barrier(sh, st);
            return;
        }
        Some(_) => return,
        None if b.left.is_empty() || b.started.elapsed() < STOPPED_AFTER => return,
        None => {}
    }
    // Those the coordinator can reach itself (its host and pid
    // namespace: a launched process stopped by ^Z, with its whole tree).
    let here = local_pid_ns();
    for id in &b.left {
        let Some(w) = workers.get_mut(id).filter(|w| w.info.continues) else {
            continue;
        };
        if here
            .as_ref()
            .is_none_or(|h| (w.info.host.as_str(), w.info.pid_ns) != (h.0.as_str(), h.1))
        {
            continue;
        }
        if continue_if_stopped(w.info.vpid) {
            sh.say(&format!(
                "checkpoint {generation}: {}[{}] was stopped: continued for the checkpoint, stopped again after it",
                w.info.program, w.info.vpid
            ));
            send_to(&mut w.out, &ToClient::WasStopped { generation });
        }
    }
    let speaks = |id: &u64| workers.get(id).filter(|w| w.info.continues);
    let mut by_host: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for w in b.left.iter().filter_map(speaks) {
        by_host
            .entry(w.info.host.clone())
            .or_default()
            .push(w.info.vpid);
    }
    let asks: Vec<(u64, Vec<i32>)> = by_host
        .into_iter()
        .filter_map(|(host, pids)| {
            let helper = b
                .members
                .iter()
                .filter(|id| !b.left.contains(id))
                .find(|id| speaks(id).is_some_and(|w| w.info.host == host))?;
            Some((*helper, pids))
        })
        .collect();
    let mut asked = 0;
    for (helper, pids) in asks {
        if let Some(w) = workers.get_mut(&helper) {
            if send_to(&mut w.out, &ToClient::Continue { generation, pids }) {
                asked += 1;
            }
        }
    }
    b.continuing = Some((Instant::now(), asked));
}

/// This host's name and the inode of the coordinator's pid namespace.
fn local_pid_ns() -> Option<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let ns = std::fs::metadata("/proc/self/ns/pid").ok()?.ino();
    Some((host.trim().to_string(), ns))
}

/// The state letter of /proc/`pid`/stat (R, S, T, ...).
fn proc_state(pid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let i = stat.iter().rposition(|&b| b == b')')?;
    stat.get(i + 2).copied()
}

/// The workers of this host that are stopped (SIGSTOP, SIGTSTP: state
/// T), looked up when listed rather than remembered, since a SIGCONT
/// from anyone continues them without a word to the coordinator. A
/// worker in the coordinator's pid namespace is /proc/`vpid`; one in
/// another namespace (a restart's) is the process whose pid namespace
/// is the worker's (hello's pid_ns) and whose innermost pid (the last of
/// NSpid in its status) is its vpid, found in one pass over /proc. Only
/// processes the coordinator's user may inspect are seen: those of the
/// computation are. Workers of other hosts are not known stopped.
fn stopped_here(st: &State) -> BTreeSet<u64> {
    use std::os::unix::fs::MetadataExt;
    let Some((host, own_ns)) = local_pid_ns() else {
        return BTreeSet::new();
    };
    let here: Vec<(u64, &Worker)> = st
        .workers
        .iter()
        .filter(|(_, w)| w.info.host == host)
        .map(|(id, w)| (*id, w))
        .collect();
    let mut out = BTreeSet::new();
    // (pid namespace, vpid) -> host pid, for workers in other namespaces.
    let mut wanted: BTreeMap<(u64, i32), Option<i32>> = BTreeMap::new();
    for (id, w) in &here {
        if w.info.pid_ns == own_ns {
            if proc_state(w.info.vpid) == Some(b'T') {
                out.insert(*id);
            }
        } else if w.info.pid_ns != 0 {
            wanted.insert((w.info.pid_ns, w.info.vpid), None);
        }
    }
    if wanted.is_empty() {
        return out;
    }
    let namespaces: BTreeSet<u64> = wanted.keys().map(|k| k.0).collect();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(ns) = std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| m.ino()) else {
            continue;
        };
        if !namespaces.contains(&ns) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<i32>().ok());
        if let Some(slot) = inner.and_then(|v| wanted.get_mut(&(ns, v))) {
            *slot = Some(pid);
        }
    }
    for (id, w) in &here {
        if let Some(Some(pid)) = wanted.get(&(w.info.pid_ns, w.info.vpid)) {
            if proc_state(*pid) == Some(b'T') {
                out.insert(*id);
            }
        }
    }
    out
}

/// SIGCONT to `pid` if it is stopped (state T of /proc/PID/stat).
fn continue_if_stopped(pid: i32) -> bool {
    proc_state(pid) == Some(b'T') && crate::sys::kill(pid, libc::SIGCONT)
}

/// A helper's answer to `Continue`: the members it continued are told
/// they were stopped.
fn stopped_continued(sh: &Shared, st: &mut State, host: &str, generation: u64, pids: &[i32]) {
    let State {
        pending, workers, ..
    } = st;
    let Some(b) = barrier_of(pending, generation) else {
        return;
    };
    for w in workers
        .values_mut()
        .filter(|w| w.info.host == host && pids.contains(&w.info.vpid))
    {
        sh.say(&format!(
            "checkpoint {generation}: {}[{}] was stopped: continued for the checkpoint, stopped again after it",
            w.info.program, w.info.vpid
        ));
        send_to(&mut w.out, &ToClient::WasStopped { generation });
    }
    if let Some((_, n)) = b.continuing.as_mut() {
        *n = n.saturating_sub(1);
    }
    advance_barrier(sh, st);
}

/// A member failed or left: the barrier no longer waits for it.
fn barrier_leave(sh: &Shared, st: &mut State, id: u64) {
    if let Some(b) = st.pending.as_mut().and_then(|p| p.barrier.as_mut()) {
        b.members.remove(&id);
        b.left.remove(&id);
        b.late.remove(&id);
        b.children.remove(&id);
    }
    advance_barrier(sh, st);
}

/// `program[vpid]` of worker `id`, for messages (`worker ID` once gone).
fn worker_name(workers: &BTreeMap<u64, Worker>, id: u64) -> String {
    workers
        .get(&id)
        .map(|w| format!("{}[{}]", w.info.program, w.info.vpid))
        .unwrap_or_else(|| format!("worker {id}"))
}

/// The suspend phase took too long: the members not suspended yet count
/// as failed, and every member is told to resume.
fn barrier_timeout(sh: &Shared, st: &mut State) {
    let Some(p) = st.pending.as_mut() else { return };
    let Some(b) = p.barrier.as_mut() else { return };
    // Children named by the members that did not connect in time.
    if b.phase == Phase::Suspend
        && b.awaiting
            .is_some_and(|(since, gave_up)| !gave_up && since.elapsed() >= CHILDREN_WITHIN)
    {
        advance_barrier(sh, st);
        return;
    }
    // A late member that does not stop holds every other one stopped.
    let slow: Vec<u64> = b
        .late
        .iter()
        .filter(|(_, t)| t.elapsed() >= SUSPEND_TIMEOUT)
        .map(|(id, _)| *id)
        .collect();
    for id in slow {
        b.late.remove(&id);
        b.left.remove(&id);
        b.members.remove(&id);
        p.waiting.remove(&id);
        let who = worker_name(&st.workers, id);
        p.failures.push(format!(
            "{who} (joined late) did not suspend within {} s",
            SUSPEND_TIMEOUT.as_secs()
        ));
    }
    if b.phase != Phase::Suspend || b.started.elapsed() < SUSPEND_TIMEOUT || b.left.is_empty() {
        return;
    }
    for id in std::mem::take(&mut b.left) {
        p.waiting.remove(&id);
        let who = worker_name(&st.workers, id);
        p.failures.push(format!(
            "{who} did not suspend within {} s",
            SUSPEND_TIMEOUT.as_secs()
        ));
    }
    advance_barrier(sh, st);
    maybe_complete(sh, st);
}

/// Finishes the pending checkpoint once no worker is left to answer.
fn maybe_complete(sh: &Shared, st: &mut State) {
    let done = st.pending.as_ref().is_some_and(|p| p.waiting.is_empty());
    if !done {
        return;
    }
    let p = st.pending.take().expect("pending");
    let reply = if !p.failures.is_empty() {
        let message = format!(
            "checkpoint {} failed: {}",
            p.generation,
            p.failures.join("; ")
        );
        sh.say(&message);
        put_back_previous(sh, p.generation, st.completed, &p.images);
        Reply::Error { message }
    } else {
        st.completed = p.generation;
        let outsiders: Vec<ckpt_protocol::Outsider> = st.outsiders.values().cloned().collect();
        if let Err(e) =
            write_restart_files(sh, &st.computation_id, p.generation, &p.images, &outsiders)
        {
            sh.say(&format!("checkpoint {}: {e:#}", p.generation));
        }
        sh.say(&format!(
            "checkpoint {} complete: {} image(s)",
            p.generation,
            p.images.len()
        ));
        Reply::Checkpointed {
            generation: p.generation,
            images: p.images.iter().map(|i| i.path.clone()).collect(),
        }
    };
    for w in p.waiters {
        let _ = w.send(reply.clone());
    }
}

/// A checkpoint failed: the images the others wrote for it are not one
/// cut with anything, so each main image name they replaced gets back
/// its image of the last complete generation `completed` (linked under
/// `ckpt_gen_<N>/` beside it), and one with no image there (a process
/// new since) is removed: restarting "all the images" then gives the
/// last complete generation again, as its manifest does.
fn put_back_previous(sh: &Shared, generation: u64, completed: u64, images: &[ImageRec]) {
    for i in images {
        let p = Path::new(&i.path);
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            continue;
        };
        let prev = parent.join(generation_dir_name(completed)).join(name);
        let r = if completed > 0 && prev.is_file() {
            let tmp = parent.join(format!(".{}.put-back", name.to_string_lossy()));
            let _ = std::fs::remove_file(&tmp);
            std::fs::hard_link(&prev, &tmp)
                .and_then(|()| std::fs::rename(&tmp, p))
                .map(|()| format!("put back the image of checkpoint {completed}"))
        } else {
            std::fs::remove_file(p).map(|()| "removed (no complete checkpoint of it)".into())
        };
        match r {
            Ok(what) => sh.log_line(&format!(
                "checkpoint {generation} failed: {}[{}]: {}: {what}",
                i.program, i.pid, i.path
            )),
            Err(e) => sh.say(&format!(
                "checkpoint {generation} failed: {}[{}]: {} is of this failed checkpoint, not one cut with the others ({e})",
                i.program, i.pid, i.path
            )),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Name of the directory holding generation `g` beside the images.
pub fn generation_dir_name(g: u64) -> String {
    format!("ckpt_gen_{g:06}")
}

/// The generation a `ckpt_gen_<N>` directory name stands for.
pub fn parse_generation_dir(name: &str) -> Option<u64> {
    name.strip_prefix("ckpt_gen_")?.parse().ok()
}

/// Keeps generation `g`: hard links every image into `ckpt_gen_<g>/`
/// beside it (the writer's next image replaces the main name by rename,
/// which leaves the linked inode alone). Returns the images with their
/// generation paths (the main path where linking failed). The links are
/// made durable by the caller's directory syncs.
fn link_generation(sh: &Shared, generation: u64, images: &[ImageRec]) -> Vec<ImageRec> {
    images
        .iter()
        .map(|i| {
            let p = Path::new(&i.path);
            let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                return i.clone();
            };
            let gdir = parent.join(generation_dir_name(generation));
            let link = gdir.join(name);
            let r = std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&gdir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .and_then(|()| {
                    let _ = std::fs::remove_file(&link);
                    std::fs::hard_link(p, &link)
                });
            match r {
                Ok(()) => ImageRec {
                    path: link.display().to_string(),
                    ..i.clone()
                },
                Err(e) => {
                    sh.say(&format!(
                        "checkpoint {generation}: cannot keep {} as {}: {e}",
                        p.display(),
                        link.display()
                    ));
                    i.clone()
                }
            }
        })
        .collect()
}

/// Removes the generations older than the `keep` newest in `dirs`.
fn prune_generations(sh: &Shared, generation: u64, dirs: &BTreeSet<PathBuf>) {
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(g) = parse_generation_dir(&name.to_string_lossy()) else {
                continue;
            };
            if g + sh.opts.keep <= generation && e.file_type().is_ok_and(|t| t.is_dir()) {
                sh.debug(&format!("removing generation {g}: {}", e.path().display()));
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    sh.say(&format!("cannot remove {}: {err}", e.path().display()));
                }
            }
        }
    }
}

/// The machine-readable description of one complete checkpoint.
#[derive(Serialize)]
struct Manifest<'a> {
    computation_id: &'a str,
    generation: u64,
    created_unix: u64,
    coordinator_port: u16,
    images: &'a [ImageRec],
    /// Processes that were outside checkpoint control: no image; their
    /// parents' images record them as killed by SIGKILL.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    outside_checkpoint_control: &'a [ckpt_protocol::Outsider],
}

fn write_restart_files(
    sh: &Shared,
    computation_id: &str,
    generation: u64,
    images: &[ImageRec],
    outsiders: &[ckpt_protocol::Outsider],
) -> Result<()> {
    let dir = match &sh.opts.ckpt_dir {
        Some(d) => d.clone(),
        None => match images.first().and_then(|i| Path::new(&i.path).parent()) {
            Some(p) => p.to_path_buf(),
            None => return Ok(()),
        },
    };
    let kept = link_generation(sh, generation, images);
    let m = Manifest {
        computation_id,
        generation,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        coordinator_port: sh.port,
        images: &kept,
        outside_checkpoint_control: outsiders,
    };
    let json = serde_json::to_string_pretty(&m)? + "\n";
    let gdir = dir.join(generation_dir_name(generation));
    let script = restart_script(&sh.exe, computation_id, generation, &kept);
    let mut files = Vec::new();
    if gdir.is_dir() {
        files.push((gdir.join("ckpt_manifest.json"), json.as_bytes(), 0o600));
    }
    files.push((dir.join("ckpt_manifest.json"), json.as_bytes(), 0o600));
    files.push((dir.join("ckpt_restart_script.sh"), script.as_bytes(), 0o700));
    write_atomic_all(&files)?;
    // Every directory whose entries changed: the writers' renames (the
    // images' directories), the generation links, the files above. Each is
    // synced once, after everything is in place: the first sync commits
    // the journal with all of it, the others find little left to do.
    let mut dirs: BTreeSet<PathBuf> = images
        .iter()
        .filter_map(|i| Path::new(&i.path).parent().map(Path::to_path_buf))
        .collect();
    dirs.insert(dir);
    let synced: BTreeSet<PathBuf> = kept
        .iter()
        .filter_map(|i| Path::new(&i.path).parent().map(Path::to_path_buf))
        .chain(dirs.iter().cloned())
        .collect();
    for d in &synced {
        sync_dir(d)?;
    }
    // Only now, with the new generation complete, described and durable,
    // may the oldest one go.
    prune_generations(sh, generation, &dirs);
    Ok(())
}

/// A shell script that restarts every image on the host it ran on (ssh
/// for the other hosts); the host column is there to be edited. The
/// images of one host go to one `ckpt restart`, which rebuilds their
/// process tree in one pid namespace.
fn restart_script(exe: &str, computation_id: &str, generation: u64, images: &[ImageRec]) -> String {
    let mut s = format!(
        "#!/bin/sh\n\
         # Written by the ckpt coordinator: restarts checkpoint {generation} of computation\n\
         # {computation_id}, every process on the host where it ran (the processes of one\n\
         # host together, so parents get their children back). Edit a host to move its\n\
         # processes (the images must be readable there, at the same paths).\n\
         # The coordinator is found through CKPT_COORD_HOST / CKPT_COORD_PORT\n\
         # (one is started when none runs). Exits with the program's status.\n\
         CKPT=${{CKPT:-{}}}\n\
         here=$(hostname)\n\
         restart() {{ # HOST IMAGE...\n\
         \x20 h=$1; shift\n\
         \x20 if [ \"$h\" = \"$here\" ] || [ \"$h\" = localhost ]; then\n\
         \x20   \"$CKPT\" restart \"$@\"\n\
         \x20 else\n\
         \x20   q=; for i in \"$@\"; do q=\"$q '$i'\"; done\n\
         \x20   ssh \"$h\" \"$CKPT\" restart $q\n\
         \x20 fi\n\
         }}\n",
        shell_quote(exe)
    );
    // Hosts in the order their first image comes.
    let mut hosts: Vec<(&str, Vec<&str>)> = Vec::new();
    for i in images {
        match hosts.iter_mut().find(|h| h.0 == i.host) {
            Some(h) => h.1.push(&i.path),
            None => hosts.push((&i.host, vec![&i.path])),
        }
    }
    let line = |host: &str, paths: &[&str]| {
        let mut l = format!("restart {}", shell_quote(host));
        for p in paths {
            l.push_str(" \\\n  ");
            l.push_str(&shell_quote(p));
        }
        l
    };
    if let [(host, paths)] = hosts.as_slice() {
        s.push_str(&line(host, paths));
        s.push('\n');
        return s;
    }
    s.push_str("pids=\n");
    for (host, paths) in &hosts {
        s.push_str(&format!("{} &\npids=\"$pids $!\"\n", line(host, paths)));
    }
    s.push_str("st=0\nfor p in $pids; do wait \"$p\" || st=$?; done\nexit $st\n");
    s
}

/// Replaces each `(path, data, mode)` by a complete, synced file: every
/// file is written under a temporary name first and synced only then (one
/// journal commit carries them all), then renamed into place. The caller
/// syncs the directories.
fn write_atomic_all(files: &[(PathBuf, &[u8], u32)]) -> Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, data, mode) in files {
        let tmp = path.with_extension("tmp-write");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(data)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(*mode))?;
        staged.push((f, tmp, path));
    }
    for (f, tmp, _) in &staged {
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
    }
    for (_, tmp, path) in staged {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

/// Makes a directory's entries (renames, links) durable: before an older
/// generation is removed, the new one must survive a crash of the host.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))
}

/// `program[pid] (child of ppid) on host: why`.
fn outsider_line(o: &ckpt_protocol::Outsider) -> String {
    format!(
        "{}[{}] (child of {}) on {}: {}",
        o.program, o.pid, o.ppid, o.host, o.reason
    )
}

/// Records what a worker said about processes outside checkpoint
/// control: `from_parent` (its checkpoint's list) replaces the entries of
/// its children; a new entry is said on the console and in the log.
fn note_outsiders(
    sh: &Shared,
    st: &mut State,
    host: &str,
    from_parent: Option<i32>,
    list: Vec<ckpt_protocol::Outsider>,
) {
    let old = std::mem::take(&mut st.outsiders);
    let mut kept: BTreeMap<(String, i32), ckpt_protocol::Outsider> = old
        .clone()
        .into_iter()
        .filter(|((h, _), o)| !(h == host && Some(o.ppid) == from_parent))
        .collect();
    for o in list {
        let key = (o.host.clone(), o.pid);
        if !old.contains_key(&key) {
            sh.say(&format!(
                "not under checkpoint control: {}; checkpoints go on without it, and after a restart its parent finds it killed (SIGKILL)",
                outsider_line(&o)
            ));
        }
        kept.insert(key, o);
    }
    st.outsiders = kept;
}

fn list(sh: &Shared, st: &State) -> Vec<ProcessEntry> {
    let stopped = stopped_here(st);
    let outside = st.outsiders.values().map(|o| ProcessEntry {
        number: 0,
        info: WorkerInfo {
            program: o.program.clone(),
            vpid: o.pid,
            real_pid: o.pid,
            host: o.host.clone(),
            ppid: o.ppid,
            ..Default::default()
        },
        state: format!("OUTSIDE CHECKPOINT CONTROL: {}", o.reason),
    });
    st.workers
        .iter()
        .enumerate()
        .map(|(n, (id, w))| ProcessEntry {
            number: n + 1,
            info: WorkerInfo {
                ckpt_dir: match &sh.opts.ckpt_dir {
                    Some(d) => d.display().to_string(),
                    None => w.info.ckpt_dir.clone(),
                },
                ..w.info.clone()
            },
            state: if st.pending.as_ref().is_some_and(|p| p.waiting.contains(id)) {
                "CHECKPOINTING".into()
            } else if stopped.contains(id) {
                "STOPPED".into()
            } else {
                "RUNNING".into()
            },
        })
        .chain(outside)
        .enumerate()
        .map(|(n, e)| ProcessEntry { number: n + 1, ..e })
        .collect()
}

fn kill_all(sh: &Shared, st: &mut State) -> usize {
    let n = st.workers.len();
    // A stopped process cannot read its Kill: every other process of its
    // host continues it first (those in state T), then all are killed.
    let on_host: Vec<(u64, Vec<i32>)> = st
        .workers
        .iter()
        .filter(|(_, w)| w.info.continues)
        .map(|(id, w)| {
            let pids = st
                .workers
                .values()
                .filter(|o| o.info.host == w.info.host && o.info.vpid != w.info.vpid)
                .map(|o| o.info.vpid)
                .collect();
            (*id, pids)
        })
        .collect();
    for (id, pids) in on_host {
        if let Some(w) = st.workers.get_mut(&id) {
            send_to(
                &mut w.out,
                &ToClient::Continue {
                    generation: 0,
                    pids,
                },
            );
        }
    }
    let here = local_pid_ns();
    for w in st.workers.values_mut() {
        send_to(&mut w.out, &ToClient::Kill);
        if here
            .as_ref()
            .is_some_and(|h| (w.info.host.as_str(), w.info.pid_ns) == (h.0.as_str(), h.1))
        {
            continue_if_stopped(w.info.vpid);
        }
    }
    sh.say(&format!("kill sent to {n} process(es)"));
    n
}

/// Runs a command (from a client or the console) and returns its reply.
fn execute(sh: &Shared, cmd: Command) -> Reply {
    sh.debug(&format!("command: {cmd:?}"));
    let mut st = sh.lock();
    match cmd {
        Command::Status => Reply::Status {
            processes: st.workers.len(),
            running: !st.workers.is_empty(),
            interval: st.interval,
            generation: st.completed,
            outside: st.outsiders.values().map(outsider_line).collect(),
        },
        Command::List => Reply::List(list(sh, &st)),
        Command::Checkpoint => match start_checkpoint(sh, &mut st, None) {
            Ok(generation) => Reply::Checkpointed {
                generation,
                images: vec![],
            },
            Err(message) => Reply::Error { message },
        },
        Command::BlockingCheckpoint => {
            let (tx, rx) = mpsc::channel();
            if let Err(message) = start_checkpoint(sh, &mut st, Some(tx)) {
                return Reply::Error { message };
            }
            drop(st);
            rx.recv().unwrap_or(Reply::Error {
                message: "the checkpoint was abandoned".into(),
            })
        }
        Command::Kill => {
            let n = kill_all(sh, &mut st);
            Reply::Ok {
                message: format!("killed {n} process(es)"),
            }
        }
        // Handled by the callers (it ends the process); never reached.
        Command::Quit => Reply::Error {
            message: "quit is handled by the connection".into(),
        },
        Command::Interval(n) => {
            st.interval = n;
            st.last_start = Instant::now();
            sh.say(&format!("checkpoint interval set to {n} s"));
            Reply::Ok {
                message: format!(
                    "checkpoint interval: {}",
                    if n == 0 {
                        "off".into()
                    } else {
                        format!("{n} s")
                    }
                ),
            }
        }
    }
}

fn connection(sh: &Shared, s: TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let peer = s
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let Ok(mut out) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    // The hello must come quickly.
    let _ = r.get_ref().set_read_timeout(Some(Duration::from_secs(10)));
    let hello: Hello = match ckpt_protocol::recv::<_, ToCoordinator>(&mut r) {
        Ok(Some(ToCoordinator::Hello(h))) => h,
        Ok(_) | Err(_) => {
            let _ = send_to(
                &mut out,
                &ToClient::Refused {
                    reason: "the first message must be a hello".into(),
                },
            );
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        let reason = format!(
            "protocol version {} is not supported (this coordinator speaks {PROTOCOL_VERSION})",
            hello.version
        );
        sh.say(&format!("{peer}: refused: {reason}"));
        send_to(&mut out, &ToClient::Refused { reason });
        return;
    }
    if hello.secret != sh.secret {
        let reason = "wrong secret: this computation's secret is in the coordinator's secret file \
                      (CKPT_TMPDIR/secret-<port>) or CKPT_SECRET"
            .to_string();
        sh.say(&format!("{peer}: refused: wrong secret"));
        send_to(&mut out, &ToClient::Refused { reason });
        return;
    }
    let _ = r.get_ref().set_read_timeout(None);
    sh.debug(&format!("{peer}: accepted {:?}", hello.role));
    let interval = sh.lock().interval;
    if !send_to(&mut out, &ToClient::Welcome { interval }) {
        return;
    }
    match hello.role {
        Role::Command => command_client(sh, r, out),
        Role::Worker(info) => worker(sh, r, out, info),
    }
}

fn command_client(sh: &Shared, mut r: BufReader<TcpStream>, mut out: TcpStream) {
    while let Ok(Some(msg)) = ckpt_protocol::recv::<_, ToCoordinator>(&mut r) {
        let ToCoordinator::Command(cmd) = msg else {
            send_to(
                &mut out,
                &ToClient::Reply(Reply::Error {
                    message: "expected a command".into(),
                }),
            );
            continue;
        };
        if cmd == Command::Quit {
            sh.debug("command: Quit");
            sh.quit(|message| {
                send_to(
                    &mut out,
                    &ToClient::Reply(Reply::Ok {
                        message: message.to_string(),
                    }),
                );
                let _ = out.shutdown(std::net::Shutdown::Both);
            });
        }
        let reply = execute(sh, cmd);
        send_to(&mut out, &ToClient::Reply(reply));
    }
}

fn worker(sh: &Shared, mut r: BufReader<TcpStream>, out: TcpStream, info: WorkerInfo) {
    let id = {
        let mut st = sh.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.ever_connected = true;
        // A restarted process, or one that outlived an earlier coordinator,
        // continues its computation's generations (and id).
        let last = info.restarted_from.max(info.last_generation);
        if last > st.completed && st.pending.is_none() {
            if info.computation_id.len() == 32 {
                st.computation_id = info.computation_id.clone();
            }
            st.completed = last;
        }
        st.generation = st.generation.max(last);
        sh.say(&format!(
            "worker connected: {}[{}]@{} {}{}",
            info.program,
            info.vpid,
            info.host,
            info.unique_id,
            if info.restarted_from > 0 {
                format!(" (restarted from checkpoint {})", info.restarted_from)
            } else {
                String::new()
            }
        ));
        st.workers.insert(
            id,
            Worker {
                info: info.clone(),
                out,
            },
        );
        // A program exec'd back under control (same pid, new writer).
        st.outsiders.remove(&(info.host.clone(), info.vpid));
        if info.restarted_from > 0 {
            // Its outsiders were not restarted (its image has them killed).
            st.outsiders
                .retain(|(h, _), o| !(h == &info.host && o.ppid == info.vpid));
        }
        join_checkpoint(sh, &mut st, id);
        id
    };
    loop {
        match ckpt_protocol::recv::<_, ToCoordinator>(&mut r) {
            Ok(Some(ToCoordinator::Checkpointed {
                generation,
                path,
                bytes,
                outsiders,
            })) => {
                let mut st = sh.lock();
                note_outsiders(sh, &mut st, &info.host, Some(info.vpid), outsiders);
                if let Some(p) = st.pending.as_mut().filter(|p| p.generation == generation) {
                    if p.waiting.remove(&id) {
                        p.images.push(ImageRec {
                            host: info.host.clone(),
                            program: info.program.clone(),
                            pid: info.vpid,
                            unique_id: info.unique_id.clone(),
                            path,
                            bytes,
                        });
                    }
                }
                maybe_complete(sh, &mut st);
            }
            Ok(Some(ToCoordinator::Outsider(o))) => {
                let mut st = sh.lock();
                note_outsiders(sh, &mut st, &info.host, None, vec![o]);
            }
            Ok(Some(ToCoordinator::Suspended {
                generation,
                children,
            })) => {
                let mut st = sh.lock();
                sh.debug(&format!(
                    "checkpoint {generation}: {}[{}] suspended (children {children:?})",
                    info.program, info.vpid
                ));
                barrier_reached(sh, &mut st, id, generation, false, children);
            }
            Ok(Some(ToCoordinator::Continued { generation, pids })) => {
                let mut st = sh.lock();
                stopped_continued(sh, &mut st, &info.host, generation, &pids);
            }
            Ok(Some(ToCoordinator::Captured { generation })) => {
                let mut st = sh.lock();
                sh.debug(&format!(
                    "checkpoint {generation}: {}[{}] captured",
                    info.program, info.vpid
                ));
                barrier_reached(sh, &mut st, id, generation, true, Vec::new());
            }
            Ok(Some(ToCoordinator::CheckpointFailed { generation, reason })) => {
                let mut st = sh.lock();
                if let Some(p) = st.pending.as_mut().filter(|p| p.generation == generation) {
                    if p.waiting.remove(&id) {
                        p.failures
                            .push(format!("{}[{}]: {reason}", info.program, info.vpid));
                    }
                    barrier_leave(sh, &mut st, id);
                }
                maybe_complete(sh, &mut st);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let mut st = sh.lock();
    st.workers.remove(&id);
    // Its outside children went with it (or are orphans no image knows).
    st.outsiders
        .retain(|(h, _), o| !(h == &info.host && o.ppid == info.vpid));
    sh.say(&format!(
        "worker disconnected: {}[{}]",
        info.program, info.vpid
    ));
    let mut had_waiters = false;
    let before_stopping = left_before_stopping(&st, id);
    if let Some(p) = st.pending.as_mut() {
        if before_stopping && p.waiting.remove(&id) {
            sh.say(&format!(
                "checkpoint {}: {}[{}] left before it stopped (it exited or exec'd): not in this checkpoint",
                p.generation, info.program, info.vpid
            ));
        } else if p.waiting.remove(&id) {
            had_waiters = !p.waiters.is_empty();
            p.failures.push(format!(
                "{}[{}] disconnected during the checkpoint",
                info.program, info.vpid
            ));
        }
    }
    barrier_leave(sh, &mut st, id);
    maybe_complete(sh, &mut st);
    if sh.opts.exit_on_last && st.ever_connected && st.workers.is_empty() {
        drop(st);
        if had_waiters {
            std::thread::sleep(Duration::from_millis(300));
        }
        sh.say("last process left; exiting");
        sh.exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(host: &str, path: &str) -> ImageRec {
        ImageRec {
            host: host.into(),
            program: "p".into(),
            pid: 1,
            unique_id: "u".into(),
            path: path.into(),
            bytes: 0,
        }
    }

    #[test]
    fn restart_script_restarts_one_hosts_images_together() {
        let s = restart_script(
            "/bin/ckpt",
            "c1",
            3,
            &[
                rec("a", "/i/x.ckpt"),
                rec("b", "/i/y.ckpt"),
                rec("a", "/i/it's.ckpt"),
            ],
        );
        assert!(
            s.contains("restart 'a' \\\n  '/i/x.ckpt' \\\n  '/i/it'\\''s.ckpt' &\n"),
            "{s}"
        );
        assert!(s.contains("restart 'b' \\\n  '/i/y.ckpt' &\n"), "{s}");
        assert_eq!(s.matches(" &\n").count(), 2, "{s}");
        let one = restart_script("/bin/ckpt", "c1", 3, &[rec("a", "/x"), rec("a", "/y")]);
        assert!(
            one.ends_with("restart 'a' \\\n  '/x' \\\n  '/y'\n"),
            "{one}"
        );
        for script in [&s, &one] {
            let st = std::process::Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(st.success(), "sh -n: {script}");
        }
    }
}
