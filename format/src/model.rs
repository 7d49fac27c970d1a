//! The decoded image: plain Rust values for every record kind.
//!
//! These types are the contract between the writer, the restorer and the
//! tools. Their byte layout is defined in `spec/v1.md` and implemented in
//! `raw.rs`; nothing here knows about bytes.

use serde::{Deserialize, Serialize};

/// A virtual address in the checkpointed process.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Addr(pub u64);

/// A process or thread id as the program saw it (virtual pid).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Pid(pub i32);

/// A file descriptor number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fd(pub i32);

/// Who wrote the image, where and when, and what the host looked like.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageHeader {
    /// Version string of the writer (`ckpt 0.1.0`).
    pub writer_version: String,
    /// ELF machine number of the architecture (62 = x86_64).
    pub arch: u16,
    /// Page size in bytes; every address and length in the image is a multiple of it.
    pub page_size: u32,
    /// Creation time, nanoseconds since the Unix epoch (UTC).
    pub created_ns: u64,
    /// Identifies the computation (all processes checkpointed together).
    pub computation_id: [u8; 16],
    /// Checkpoint generation within the computation, starting at 1.
    pub generation: u64,
    /// Virtual pid of the process this image holds.
    pub vpid: Pid,
    /// Real (host) pid of the process at checkpoint time.
    pub real_pid: i32,
    /// Short program name (`comm`).
    pub program: String,
    /// Unique id of the process within the computation (`<hostid>-<pid>-<n>`).
    pub unique_id: String,
    /// What the host was: the fingerprint a host check compares before restart.
    pub host: HostFingerprint,
}

/// The environment the image depends on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFingerprint {
    /// Host name.
    pub hostname: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// C library and version (`glibc 2.36`).
    pub libc_version: String,
    /// Symbols exported by the vdso and their offsets from its start.
    pub vdso_symbols: Vec<VdsoSymbol>,
    /// XCR0: the XSAVE feature mask the kernel enabled.
    pub xsave_features: u64,
    /// Size in bytes of the signal-frame XSAVE area on this host.
    pub xsave_size: u32,
    /// CPU feature flags (the `flags` line of /proc/cpuinfo), sorted.
    pub cpu_flags: Vec<String>,
    /// Size of the rseq area the C library registers (0 = none).
    pub rseq_size: u32,
}

/// One vdso symbol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdsoSymbol {
    /// Symbol name (`__vdso_clock_gettime`).
    pub name: String,
    /// Offset from the start of the vdso mapping.
    pub offset: u64,
}

/// Process-wide state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Virtual pid, parent pid, process group and session.
    pub pid: Pid,
    pub ppid: Pid,
    pub pgid: Pid,
    pub sid: Pid,
    /// Credentials: real, effective, saved uid and gid.
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub cwd: Vec<u8>,
    pub umask: u32,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: Vec<u8>,
    /// Command line, one entry per argument.
    pub cmdline: Vec<Vec<u8>>,
    /// Environment at checkpoint time, `NAME=VALUE` entries.
    pub environ: Vec<Vec<u8>>,
    /// Auxiliary vector (type, value) pairs.
    pub auxv: Vec<(u64, u64)>,
    pub personality: u32,
    /// Memory map layout (PR_SET_MM_MAP fields).
    pub mm: MmLayout,
    /// Scheduling policy and nice value.
    pub sched_policy: u32,
    pub nice: i32,
    /// Address, in the process, of the writer's restart hand-off block
    /// (0 = none). The restorer fills it before resuming the threads.
    pub restart_info_addr: Addr,
}

/// The kernel's view of the memory layout (`struct prctl_mm_map`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    pub start_code: Addr,
    pub end_code: Addr,
    pub start_data: Addr,
    pub end_data: Addr,
    pub start_brk: Addr,
    pub brk: Addr,
    pub start_stack: Addr,
    pub arg_start: Addr,
    pub arg_end: Addr,
    pub env_start: Addr,
    pub env_end: Addr,
}

/// x86_64 general-purpose registers, in `struct user_regs_struct` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// Where a suspended thread continues after restart: the callee-saved
/// registers of a point inside the writer's suspend handler (a setjmp
/// buffer). The restorer loads these and jumps to `rip` with `rax = 1`;
/// the handler then returns through rt_sigreturn, which restores the full
/// interrupted context (`regs`, FP state, mask) from the signal frame that
/// lies in the restored stack memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeContext {
    pub rip: u64,
    pub rsp: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// An alternate signal stack (`stack_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAltStack {
    pub sp: Addr,
    pub flags: i32,
    pub size: u64,
}

/// An rseq registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    pub addr: Addr,
    pub len: u32,
    pub sig: u32,
}

/// A signal waiting to be delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    pub signo: i32,
    pub code: i32,
    pub errno: i32,
    pub pid: i32,
    pub uid: u32,
    /// `si_value` (sival_ptr / sival_int).
    pub value: u64,
}

/// Flags of a thread record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadFlags(pub u32);

impl ThreadFlags {
    /// The thread group leader (tid == pid).
    pub const LEADER: u32 = 1;
    /// The writer's own checkpoint thread.
    pub const CHECKPOINT_THREAD: u32 = 2;
}

/// One thread.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    /// Virtual thread id.
    pub tid: Pid,
    pub flags: ThreadFlags,
    /// Thread name (`comm`).
    pub name: String,
    /// Registers at the point the thread was interrupted.
    pub regs: GpRegs,
    /// The XSAVE area of the interrupted context, as the kernel laid it
    /// out in the signal frame (legacy FXSAVE region, header, components).
    pub xsave: Vec<u8>,
    /// Blocked signals at the interrupted point.
    pub sigmask: u64,
    pub sigaltstack: SigAltStack,
    pub rseq: Option<Rseq>,
    /// `set_robust_list` head and length.
    pub robust_list: Addr,
    pub robust_list_len: u64,
    /// `set_tid_address` (clear-child-tid) address.
    pub clear_child_tid: Addr,
    /// Signals pending on this thread only.
    pub pending: Vec<PendingSignal>,
    pub resume: ResumeContext,
}

/// Memory protection bits (PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prot(pub u32);

impl Prot {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const EXEC: u32 = 4;
}

/// What a region of memory is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionKind {
    #[default]
    Anon,
    Heap,
    Stack,
    File,
    Shm,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
}

/// How the bytes of a file-backed region are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileStorage {
    /// Every present page is stored: restarts anywhere.
    #[default]
    Embedded,
    /// Only pages that differ from the file are stored; the rest come from
    /// the file at restart, which must be the same file (see `FileIdentity`).
    ByReference,
}

/// The identity of a file, enough to tell whether it changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub path: Vec<u8>,
    pub dev: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The file behind a file-backed region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBacking {
    pub file: FileIdentity,
    /// Offset in the file of the region's first byte.
    pub offset: u64,
    pub storage: FileStorage,
}

/// One mapping of the address space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub start: Addr,
    pub end: Addr,
    pub prot: Prot,
    /// MAP_SHARED (true) or MAP_PRIVATE.
    pub shared: bool,
    /// VM_GROWSDOWN (a stack mapping).
    pub grows_down: bool,
    pub kind: RegionKind,
    /// Name as /proc/PID/maps shows it (`[heap]`, a path, or empty).
    pub name: Vec<u8>,
    pub backing: Option<FileBacking>,
}

/// Encoding of a page-data chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkEncoding {
    /// Pages stored as they are, page-aligned in the file.
    #[default]
    Raw,
    /// One zstd frame holding the pages.
    Zstd,
}

/// Where a chunk of page data belongs. The data itself is read through
/// the decoders (it is never copied into this struct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// Index of the region (in record order) the pages belong to.
    pub region: u32,
    /// Address of the first page.
    pub addr: Addr,
    /// Number of contiguous pages.
    pub pages: u32,
    pub encoding: ChunkEncoding,
}

/// Flags of a file descriptor (FD_CLOEXEC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdFlags(pub u32);

/// An open file descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    pub fd: Fd,
    /// FD_CLOEXEC and friends.
    pub fd_flags: FdFlags,
    /// Identifies the open file description: fds (in this or another image
    /// of the computation) with equal ids share offset and status flags.
    pub ofd_id: u64,
    /// File status flags (O_APPEND, O_NONBLOCK, access mode, ...).
    pub status_flags: u32,
    pub kind: FdKind,
}

/// A socket address, as raw `sockaddr` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockAddr(pub Vec<u8>);

/// A socket option (level, name, value bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    pub level: i32,
    pub name: i32,
    pub value: Vec<u8>,
}

/// One registration in an epoll instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEntry {
    pub fd: Fd,
    pub events: u32,
    pub data: u64,
}

/// What an fd refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// A regular file. `contents` is stored when the file was deleted or
    /// `--ckpt-open-files` was given.
    RegularFile {
        file: FileIdentity,
        offset: u64,
        deleted: bool,
        contents: Option<Vec<u8>>,
    },
    Directory {
        path: Vec<u8>,
        offset: u64,
    },
    /// One end of a pipe; `pipe_id` joins the two ends. Bytes buffered in
    /// the pipe are stored once, with the read end.
    Pipe {
        pipe_id: u64,
        write_end: bool,
        buffered: Vec<u8>,
    },
    Fifo {
        path: Vec<u8>,
        buffered: Vec<u8>,
    },
    /// A terminal (or the slave side of a pty).
    Tty {
        path: Vec<u8>,
        /// `struct termios2` bytes.
        termios: Vec<u8>,
        rows: u16,
        cols: u16,
        controlling: bool,
    },
    PtyMaster {
        index: u32,
        termios: Vec<u8>,
        rows: u16,
        cols: u16,
    },
    Socket {
        family: i32,
        sock_type: i32,
        protocol: i32,
        state: u32,
        local: SockAddr,
        peer: SockAddr,
        options: Vec<SockOpt>,
        /// Bytes received but not yet read.
        inbound: Vec<u8>,
        /// Id joining this socket to its peer (see `SocketPeer`).
        socket_id: u64,
    },
    EventFd {
        count: u64,
        semaphore: bool,
    },
    Epoll {
        entries: Vec<EpollEntry>,
    },
    SignalFd {
        mask: u64,
    },
    TimerFd {
        clock: i32,
        interval_ns: u64,
        value_ns: u64,
    },
    Inotify {
        watches: Vec<(Vec<u8>, u32)>,
    },
    /// A character device known to be safe to reopen (/dev/null, ...).
    Device {
        path: Vec<u8>,
        rdev: u64,
    },
    /// Something the writer could not describe: restoring it fails.
    #[default]
    Unsupported,
}

/// One process of the computation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidEntry {
    pub vpid: Pid,
    pub real_pid: i32,
    pub ppid: Pid,
    pub pgid: Pid,
    pub sid: Pid,
    pub threads: Vec<Pid>,
}

/// The far end of a connected socket, possibly in another image or host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPeer {
    pub socket_id: u64,
    pub peer_unique_id: String,
    pub peer_host: String,
    pub peer_socket_id: u64,
}

/// One signal's disposition (`struct sigaction` as the kernel keeps it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Process-wide signal state: dispositions 1..=64 and shared pending signals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalState {
    /// `actions[n - 1]` is signal `n`'s disposition.
    pub actions: Vec<SigAction>,
    pub pending: Vec<PendingSignal>,
}

/// An interval timer value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerValue {
    pub interval_ns: u64,
    pub value_ns: u64,
}

/// A POSIX timer (timer_create).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub notify: i32,
    pub signo: i32,
    pub value: u64,
    pub notify_tid: Pid,
    pub timer: TimerValue,
    pub overrun: i32,
}

/// Timers of the process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    pub real: TimerValue,
    pub virt: TimerValue,
    pub prof: TimerValue,
    pub posix: Vec<PosixTimer>,
}

/// One resource limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: u32,
    pub cur: u64,
    pub max: u64,
}
