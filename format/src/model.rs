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
    /// Virtual parent pid.
    pub ppid: Pid,
    /// Process group id (virtual).
    pub pgid: Pid,
    /// Session id (virtual).
    pub sid: Pid,
    /// Credentials: real, effective, saved uid and gid.
    pub uid: [u32; 3],
    /// Real, effective and saved gid.
    pub gid: [u32; 3],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Current working directory (path bytes).
    pub cwd: Vec<u8>,
    /// File mode creation mask.
    pub umask: u32,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: Vec<u8>,
    /// Command line, one entry per argument.
    pub cmdline: Vec<Vec<u8>>,
    /// Environment at checkpoint time, `NAME=VALUE` entries.
    pub environ: Vec<Vec<u8>>,
    /// Auxiliary vector (type, value) pairs.
    pub auxv: Vec<(u64, u64)>,
    /// `personality(2)` flags.
    pub personality: u32,
    /// Memory map layout (PR_SET_MM_MAP fields).
    pub mm: MmLayout,
    /// Scheduling policy and nice value.
    pub sched_policy: u32,
    /// Nice value (-20..=19).
    pub nice: i32,
    /// Address, in the process, of the writer's restart hand-off block
    /// (0 = none). The restorer fills it before resuming the threads.
    pub restart_info_addr: Addr,
}

/// The kernel's view of the memory layout (`struct prctl_mm_map`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmLayout {
    /// Start of the text segment.
    pub start_code: Addr,
    /// End of the text segment.
    pub end_code: Addr,
    /// Start of the data segment.
    pub start_data: Addr,
    /// End of the data segment.
    pub end_data: Addr,
    /// Start of the heap (initial program break).
    pub start_brk: Addr,
    /// Current program break.
    pub brk: Addr,
    /// Start of the main thread's stack.
    pub start_stack: Addr,
    /// Start of the argument strings.
    pub arg_start: Addr,
    /// End of the argument strings.
    pub arg_end: Addr,
    /// Start of the environment strings.
    pub env_start: Addr,
    /// End of the environment strings.
    pub env_end: Addr,
}

/// x86_64 general-purpose registers, in `struct user_regs_struct` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpRegs {
    /// `r15`.
    pub r15: u64,
    /// `r14`.
    pub r14: u64,
    /// `r13`.
    pub r13: u64,
    /// `r12`.
    pub r12: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `r11`.
    pub r11: u64,
    /// `r10`.
    pub r10: u64,
    /// `r9`.
    pub r9: u64,
    /// `r8`.
    pub r8: u64,
    /// `rax`.
    pub rax: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdi`.
    pub rdi: u64,
    /// System call number when interrupted in one (-1 otherwise).
    pub orig_rax: u64,
    /// Instruction pointer.
    pub rip: u64,
    /// Code segment selector.
    pub cs: u64,
    /// Flags register.
    pub eflags: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Stack segment selector.
    pub ss: u64,
    /// FS base (TLS pointer).
    pub fs_base: u64,
    /// GS base.
    pub gs_base: u64,
    /// Data segment selector.
    pub ds: u64,
    /// ES selector.
    pub es: u64,
    /// FS selector.
    pub fs: u64,
    /// GS selector.
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
    /// Where to jump.
    pub rip: u64,
    /// Stack pointer to load.
    pub rsp: u64,
    /// Callee-saved `rbx`.
    pub rbx: u64,
    /// Callee-saved `rbp`.
    pub rbp: u64,
    /// Callee-saved `r12`.
    pub r12: u64,
    /// Callee-saved `r13`.
    pub r13: u64,
    /// Callee-saved `r14`.
    pub r14: u64,
    /// Callee-saved `r15`.
    pub r15: u64,
}

/// An alternate signal stack (`stack_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAltStack {
    /// Base of the stack (`ss_sp`).
    pub sp: Addr,
    /// `ss_flags` (SS_DISABLE = 2, SS_ONSTACK = 1).
    pub flags: i32,
    /// Size in bytes (`ss_size`).
    pub size: u64,
}

/// An rseq registration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rseq {
    /// Address of the `struct rseq` area.
    pub addr: Addr,
    /// Registered length of the area.
    pub len: u32,
    /// Abort signature.
    pub sig: u32,
}

/// A signal waiting to be delivered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// Signal number.
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_errno`.
    pub errno: i32,
    /// Sending pid (`si_pid`).
    pub pid: i32,
    /// Sending uid (`si_uid`).
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
    /// LEADER, CHECKPOINT_THREAD.
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
    /// Alternate signal stack.
    pub sigaltstack: SigAltStack,
    /// rseq registration, when the thread has one.
    pub rseq: Option<Rseq>,
    /// `set_robust_list` head and length.
    pub robust_list: Addr,
    /// Length passed to `set_robust_list`.
    pub robust_list_len: u64,
    /// `set_tid_address` (clear-child-tid) address.
    pub clear_child_tid: Addr,
    /// Signals pending on this thread only.
    pub pending: Vec<PendingSignal>,
    /// Where the restored thread continues (see [`ResumeContext`]).
    pub resume: ResumeContext,
}

/// Memory protection bits (PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prot(pub u32);

impl Prot {
    /// PROT_READ.
    pub const READ: u32 = 1;
    /// PROT_WRITE.
    pub const WRITE: u32 = 2;
    /// PROT_EXEC.
    pub const EXEC: u32 = 4;
}

/// What a region of memory is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionKind {
    /// Anonymous memory.
    #[default]
    Anon,
    /// The `[heap]` (brk area).
    Heap,
    /// The main thread's `[stack]`.
    Stack,
    /// A mapping of a file.
    File,
    /// Shared memory (SysV or `/dev/shm`, memfd).
    Shm,
    /// The `[vdso]` code.
    Vdso,
    /// The `[vvar]` data page(s).
    Vvar,
    /// The `[vvar_vclock]` pages (Linux 6.13+).
    VvarVclock,
    /// The legacy `[vsyscall]` page.
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
    /// Path at checkpoint time.
    pub path: Vec<u8>,
    /// Device number (`st_dev`).
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// The file behind a file-backed region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBacking {
    /// The file.
    pub file: FileIdentity,
    /// Offset in the file of the region's first byte.
    pub offset: u64,
    /// Whether the pages are embedded or referenced.
    pub storage: FileStorage,
}

/// One mapping of the address space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    /// First address (page-aligned).
    pub start: Addr,
    /// Address past the last byte (page-aligned).
    pub end: Addr,
    /// Protection.
    pub prot: Prot,
    /// MAP_SHARED (true) or MAP_PRIVATE.
    pub shared: bool,
    /// VM_GROWSDOWN (a stack mapping).
    pub grows_down: bool,
    /// What the region is.
    pub kind: RegionKind,
    /// Name as /proc/PID/maps shows it (`[heap]`, a path, or empty).
    pub name: Vec<u8>,
    /// The file behind a file-backed region.
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
    /// How the pages are stored.
    pub encoding: ChunkEncoding,
}

/// Flags of a file descriptor (FD_CLOEXEC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdFlags(pub u32);

/// An open file descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdEntry {
    /// The descriptor number.
    pub fd: Fd,
    /// FD_CLOEXEC and friends.
    pub fd_flags: FdFlags,
    /// Identifies the open file description: fds (in this or another image
    /// of the computation) with equal ids share offset and status flags.
    pub ofd_id: u64,
    /// File status flags (O_APPEND, O_NONBLOCK, access mode, ...).
    pub status_flags: u32,
    /// What the descriptor refers to.
    pub kind: FdKind,
}

/// A socket address, as raw `sockaddr` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockAddr(pub Vec<u8>);

/// A socket option (level, name, value bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockOpt {
    /// Option level (`SOL_SOCKET`, `IPPROTO_TCP`, ...).
    pub level: i32,
    /// Option name.
    pub name: i32,
    /// Option value bytes.
    pub value: Vec<u8>,
}

/// One registration in an epoll instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollEntry {
    /// The registered descriptor.
    pub fd: Fd,
    /// Event mask.
    pub events: u32,
    /// User data (`epoll_data`).
    pub data: u64,
}

/// What an fd refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    /// A regular file. `contents` is stored when the file was deleted or
    /// `--ckpt-open-files` was given.
    RegularFile {
        /// The file.
        file: FileIdentity,
        /// File offset.
        offset: u64,
        /// The file was unlinked.
        deleted: bool,
        /// The file's bytes, when stored.
        contents: Option<Vec<u8>>,
    },
    /// A directory.
    Directory {
        /// Path.
        path: Vec<u8>,
        /// Directory stream offset.
        offset: u64,
    },
    /// One end of a pipe; `pipe_id` joins the two ends. Bytes buffered in
    /// the pipe are stored once, with the read end.
    Pipe {
        /// Joins the two ends.
        pipe_id: u64,
        /// True for the write end.
        write_end: bool,
        /// Bytes in the pipe (stored with the read end).
        buffered: Vec<u8>,
    },
    /// A named pipe.
    Fifo {
        /// Path of the FIFO.
        path: Vec<u8>,
        /// Bytes in the FIFO.
        buffered: Vec<u8>,
    },
    /// A terminal (or the slave side of a pty).
    Tty {
        /// Path of the terminal device.
        path: Vec<u8>,
        /// `struct termios2` bytes.
        termios: Vec<u8>,
        /// Window rows.
        rows: u16,
        /// Window columns.
        cols: u16,
        /// The process's controlling terminal.
        controlling: bool,
    },
    /// The master side of a pseudo-terminal.
    PtyMaster {
        /// Pty number (`/dev/pts/N`).
        index: u32,
        /// `struct termios2` bytes.
        termios: Vec<u8>,
        /// Window rows.
        rows: u16,
        /// Window columns.
        cols: u16,
    },
    /// A socket.
    Socket {
        /// Address family.
        family: i32,
        /// Socket type.
        sock_type: i32,
        /// Protocol.
        protocol: i32,
        /// Connection state.
        state: u32,
        /// Local address.
        local: SockAddr,
        /// Peer address.
        peer: SockAddr,
        /// Socket options.
        options: Vec<SockOpt>,
        /// Bytes received but not yet read.
        inbound: Vec<u8>,
        /// Id joining this socket to its peer (see `SocketPeer`).
        socket_id: u64,
    },
    /// An eventfd.
    EventFd {
        /// Counter value.
        count: u64,
        /// EFD_SEMAPHORE.
        semaphore: bool,
    },
    /// An epoll instance.
    Epoll {
        /// Registered descriptors.
        entries: Vec<EpollEntry>,
    },
    /// A signalfd.
    SignalFd {
        /// Signals accepted.
        mask: u64,
    },
    /// A timerfd.
    TimerFd {
        /// Clock id.
        clock: i32,
        /// Reload interval in nanoseconds.
        interval_ns: u64,
        /// Time to the next expiry in nanoseconds.
        value_ns: u64,
        /// `timerfd_settime` flags (TFD_TIMER_ABSTIME = 1,
        /// TFD_TIMER_CANCEL_ON_SET = 2). Format 1.1; 0 in 1.0 images.
        settime_flags: u32,
        /// Expirations not yet read. Format 1.1; 0 in 1.0 images.
        ticks: u64,
    },
    /// An inotify instance.
    Inotify {
        /// (path, mask) of each watch.
        watches: Vec<(Vec<u8>, u32)>,
    },
    /// A character device known to be safe to reopen (/dev/null, ...).
    Device {
        /// Path of the device.
        path: Vec<u8>,
        /// Device number.
        rdev: u64,
    },
    /// Something the writer could not describe: restoring it fails.
    #[default]
    Unsupported,
}

/// One process of the computation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidEntry {
    /// Virtual pid.
    pub vpid: Pid,
    /// Real (host) pid at checkpoint time.
    pub real_pid: i32,
    /// Virtual parent pid.
    pub ppid: Pid,
    /// Process group.
    pub pgid: Pid,
    /// Session.
    pub sid: Pid,
    /// Virtual tids of its threads.
    pub threads: Vec<Pid>,
}

/// A child that had exited but was not yet reaped (a zombie) at
/// checkpoint time: its parent's restorer recreates it, exiting at once
/// with this status, so the parent's waitpid() still finds it. Format 1.2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zombie {
    /// Virtual pid of the child.
    pub pid: Pid,
    /// Its wait status, as waitpid() reports it (exit code in bits 8..16,
    /// or the terminating signal in bits 0..7 with the core-dump bit 7).
    pub status: i32,
}

/// What a shared region maps (format 1.3): the kind of shared-memory
/// object, which tells the restorer how to make it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShmObject {
    /// `MAP_SHARED | MAP_ANONYMOUS` memory (`/dev/zero (deleted)` in the
    /// maps), shared through fork, or any shmem object that has no name
    /// to open again (a `/dev/shm` file already unlinked).
    #[default]
    Anonymous,
    /// A POSIX shared memory object (`shm_open`): a file in `/dev/shm`,
    /// named by the region's name.
    PosixShm,
    /// A memfd (`memfd_create`), named by the region's name
    /// (`/memfd:NAME (deleted)`).
    Memfd,
    /// A System V shared memory segment (`shmat`); `inode` is its shmid.
    SysV,
}

/// A shared region of the image mapping a shared-memory object that
/// several processes may map (format 1.3, the SHARED_MEMORY record).
/// The object is made once at restart and mapped by every region that
/// names it; its pages are stored once across the images of a
/// computation, each in the chunks of one region that maps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedMapping {
    /// Start of the REGION (shared) that maps the object.
    pub start: Addr,
    /// What the object is.
    pub object: ShmObject,
    /// Device of the object's inode at checkpoint time.
    pub dev: u64,
    /// Inode number of the object (the shmid for a SysV segment):
    /// with `dev`, the object's identity across the images.
    pub inode: u64,
    /// Size of the object in bytes at checkpoint time.
    pub size: u64,
    /// Offset in the object of the region's first byte.
    pub offset: u64,
}

/// The permissions and identity of a System V IPC object (format 1.3),
/// as `struct ipc_perm` holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcPerm {
    /// Its key (0 = IPC_PRIVATE, or a key removed by IPC_RMID).
    pub key: i32,
    /// Its id (shmid, semid, msqid).
    pub id: i32,
    /// Permission bits and flags (`mode`; SHM_DEST `0o1000` for a segment
    /// marked for removal).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Creator user id.
    pub cuid: u32,
    /// Creator group id.
    pub cgid: u32,
}

/// A System V shared memory segment (its pages are those of the regions
/// that attach it, listed in SHARED_MEMORY with its shmid as inode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvShm {
    /// Identity and permissions.
    pub perm: IpcPerm,
    /// Size in bytes (`shm_segsz`).
    pub size: u64,
}

/// A System V semaphore set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvSem {
    /// Identity and permissions.
    pub perm: IpcPerm,
    /// The value of each semaphore of the set, in order.
    pub values: Vec<u16>,
}

/// One message of a System V message queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvMessage {
    /// Its type (`mtype`, positive).
    pub mtype: i64,
    /// Its bytes.
    pub text: Vec<u8>,
}

/// A System V message queue with the messages it held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvMsgQueue {
    /// Identity and permissions.
    pub perm: IpcPerm,
    /// Its byte limit (`msg_qbytes`).
    pub qbytes: u64,
    /// The messages, oldest first.
    pub messages: Vec<SysvMessage>,
}

/// The System V IPC objects of a computation (format 1.3, the SYSV_IPC
/// record), held by one of its images.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysvIpc {
    /// Shared memory segments.
    pub shm: Vec<SysvShm>,
    /// Semaphore sets.
    pub sem: Vec<SysvSem>,
    /// Message queues.
    pub msg: Vec<SysvMsgQueue>,
}

/// The far end of a connected socket, possibly in another image or host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketPeer {
    /// This socket's id (`FdKind::Socket::socket_id`).
    pub socket_id: u64,
    /// Unique id of the process holding the far end.
    pub peer_unique_id: String,
    /// Host of that process.
    pub peer_host: String,
    /// The far end's socket id.
    pub peer_socket_id: u64,
}

/// One signal's disposition (`struct sigaction` as the kernel keeps it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigAction {
    /// Handler address (or SIG_DFL 0, SIG_IGN 1).
    pub handler: u64,
    /// `sa_flags`.
    pub flags: u64,
    /// `sa_restorer`.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Process-wide signal state: dispositions 1..=64 and shared pending signals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalState {
    /// `actions[n - 1]` is signal `n`'s disposition.
    pub actions: Vec<SigAction>,
    /// Signals pending on the process as a whole.
    pub pending: Vec<PendingSignal>,
}

/// An interval timer value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerValue {
    /// Reload interval in nanoseconds (0 = one-shot).
    pub interval_ns: u64,
    /// Time to the next expiry in nanoseconds (0 = disarmed).
    pub value_ns: u64,
}

/// A POSIX timer (timer_create).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimer {
    /// Timer id as `timer_create` returned it.
    pub id: i32,
    /// Clock id.
    pub clock: i32,
    /// `sigev_notify`.
    pub notify: i32,
    /// `sigev_signo`.
    pub signo: i32,
    /// `sigev_value`.
    pub value: u64,
    /// Thread notified (SIGEV_THREAD_ID).
    pub notify_tid: Pid,
    /// Current setting.
    pub timer: TimerValue,
    /// Overrun count.
    pub overrun: i32,
}

/// Timers of the process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// ITIMER_REAL.
    pub real: TimerValue,
    /// ITIMER_VIRTUAL.
    pub virt: TimerValue,
    /// ITIMER_PROF.
    pub prof: TimerValue,
    /// POSIX timers.
    pub posix: Vec<PosixTimer>,
}

/// One resource limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// RLIMIT_* number.
    pub resource: u32,
    /// Soft limit.
    pub cur: u64,
    /// Hard limit.
    pub max: u64,
}

impl FdEntry {
    /// An `ofd_id` of the computation (spec §4.5): bit 63 set, then the
    /// virtual pid and the fd number of the description's first holder.
    pub fn computation_ofd_id(pid: i32, fd: i32) -> u64 {
        1 << 63 | (pid as u32 as u64 & 0x7fff_ffff) << 32 | fd as u32 as u64
    }

    /// Whether this entry's `ofd_id` is one of the computation (bit 63,
    /// spec §4.5), which joins descriptors across the images of one
    /// generation; other ids are unique within their image only.
    pub fn ofd_id_is_computation_wide(&self) -> bool {
        self.ofd_id >> 63 == 1
    }
}

impl FdKind {
    /// Whether a restart opens a description of this kind once for every
    /// process of the computation that holds it (the writer looks for the
    /// description's first holder among its peers, the restorer opens it
    /// before forking the tree). A FIFO's description is opened once too
    /// (its bytes go back once, through one holder per path); pipes are
    /// joined by their object; terminals, sockets and epoll are each
    /// process's.
    pub fn shared_across_processes(&self) -> bool {
        matches!(
            self,
            FdKind::RegularFile { .. }
                | FdKind::Directory { .. }
                | FdKind::Fifo { .. }
                | FdKind::Device { .. }
                | FdKind::EventFd { .. }
                | FdKind::SignalFd { .. }
                | FdKind::TimerFd { .. }
                | FdKind::Inotify { .. }
        )
    }

    /// The lowest format minor version that can express this kind's fields.
    pub fn min_minor(&self) -> u16 {
        match self {
            FdKind::TimerFd {
                settime_flags,
                ticks,
                ..
            } if *settime_flags != 0 || *ticks != 0 => 1,
            _ => 0,
        }
    }
}
