//! Deterministic sample images: the golden images in `spec/golden/`, test
//! fixtures, fuzz seeds and benchmark inputs are all built here, so one
//! generator (`cargo run -p ckpt-format --example golden`) recreates them.

use crate::encode::{EncodedChunk, Encoder};
use crate::error::Result;
use crate::model::*;

/// What a sample image holds.
#[derive(Clone, Debug)]
pub struct Sample {
    /// HEADER.
    pub header: ImageHeader,
    /// PROCESS.
    pub process: Process,
    /// THREADs.
    pub threads: Vec<Thread>,
    /// REGIONs.
    pub regions: Vec<Region>,
    /// (region index, first page address, pages bytes, compress).
    pub chunks: Vec<(u32, u64, Vec<u8>, bool)>,
    /// FDs.
    pub fds: Vec<FdEntry>,
    /// SIGNALS.
    pub signals: SignalState,
    /// TIMERS.
    pub timers: Timers,
    /// RLIMITS.
    pub rlimits: Vec<Rlimit>,
    /// PID_TABLE.
    pub pid_table: Vec<PidEntry>,
    /// SOCKET_PEERs.
    pub socket_peers: Vec<SocketPeer>,
    /// ZOMBIES (written, as format 1.2, only when not empty).
    pub zombies: Vec<Zombie>,
    /// SHARED_MEMORY (written, as format 1.3, only when not empty).
    pub shared_memory: Vec<SharedMapping>,
    /// SYSV_IPC (written, as format 1.3, only when present).
    pub sysv_ipc: Option<SysvIpc>,
}

impl Sample {
    /// Encodes the sample into bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let minor = crate::minor_with_ipc(
            crate::minor_for_image(&self.fds, &self.zombies, &self.shared_memory),
            self.sysv_ipc.as_ref(),
        );
        let mut e = Encoder::with_minor(Vec::new(), &self.header, minor)?;
        e.process(&self.process)?;
        for t in &self.threads {
            e.thread(t)?;
        }
        for r in &self.regions {
            e.region(r)?;
        }
        for f in &self.fds {
            e.fd(f)?;
        }
        e.signals(&self.signals)?;
        e.timers(&self.timers)?;
        e.rlimits(&self.rlimits)?;
        e.pid_table(&self.pid_table)?;
        for p in &self.socket_peers {
            e.socket_peer(p)?;
        }
        if !self.zombies.is_empty() {
            e.zombies(&self.zombies)?;
        }
        if !self.shared_memory.is_empty() {
            e.shared_memory(&self.shared_memory)?;
        }
        if let Some(ipc) = &self.sysv_ipc {
            e.sysv_ipc(ipc)?;
        }
        for (region, addr, pages, compress) in &self.chunks {
            let meta = ChunkMeta {
                region: *region,
                addr: Addr(*addr),
                pages: (pages.len() / self.header.page_size as usize) as u32,
                encoding: ChunkEncoding::Raw,
            };
            if *compress {
                e.chunk(&EncodedChunk::zstd(meta, pages, 3)?)?;
            } else {
                e.chunk(&EncodedChunk::raw(meta, pages))?;
            }
        }
        e.finish()
    }
}

fn header(program: &str) -> ImageHeader {
    ImageHeader {
        writer_version: "ckpt 0.1.0".into(),
        arch: 62,
        page_size: 4096,
        created_ns: 1_795_000_000_000_000_000,
        computation_id: *b"golden-sample-01",
        generation: 1,
        vpid: Pid(4242),
        real_pid: 4242,
        program: program.into(),
        unique_id: "0123456789abcdef-4242-1".into(),
        host: HostFingerprint {
            hostname: "golden-host".into(),
            kernel_release: "6.18.0".into(),
            libc_version: "glibc 2.36".into(),
            vdso_symbols: vec![
                VdsoSymbol {
                    name: "__vdso_clock_gettime".into(),
                    offset: 0xc30,
                },
                VdsoSymbol {
                    name: "__vdso_gettimeofday".into(),
                    offset: 0xbe0,
                },
            ],
            xsave_features: 0x602e7,
            xsave_size: 11008,
            cpu_flags: vec!["avx2".into(), "fpu".into(), "sse2".into(), "xsave".into()],
            rseq_size: 32,
        },
    }
}

fn thread(tid: i32, leader: bool) -> Thread {
    let mut xsave = vec![0u8; 832];
    xsave[0] = 0x7f; // FCW
    xsave[1] = 0x03;
    xsave[24] = 0x80; // MXCSR 0x1f80
    xsave[25] = 0x1f;
    Thread {
        tid: Pid(tid),
        flags: ThreadFlags(if leader { ThreadFlags::LEADER } else { 0 }),
        name: if leader {
            "counter".into()
        } else {
            "worker".into()
        },
        regs: GpRegs {
            rip: 0x5555_5555_5189,
            rsp: 0x7ffd_ce00_0f00 - (tid as u64 - 4242) * 0x10_0000,
            rbp: 0x7ffd_ce00_0f30,
            rax: 0xfffffffffffffffc,
            orig_rax: 230,
            cs: 0x33,
            ss: 0x2b,
            eflags: 0x246,
            fs_base: 0x7f00_0000_0740 + (tid as u64 - 4242) * 0x1000,
            ..Default::default()
        },
        xsave,
        sigmask: 0,
        sigaltstack: SigAltStack {
            sp: Addr(0),
            flags: 2,
            size: 0,
        },
        rseq: Some(Rseq {
            addr: Addr(0x7f00_0000_0de0),
            len: 32,
            sig: 0x5305_3053,
        }),
        robust_list: Addr(0x7f00_0000_0a20),
        robust_list_len: 24,
        clear_child_tid: Addr(if leader { 0 } else { 0x7f00_0000_1a10 }),
        pending: vec![],
        resume: ResumeContext {
            rip: 0x7f00_1000_2000,
            rsp: 0x7ffd_ce00_0a00,
            ..Default::default()
        },
    }
}

/// A tiny image: one thread, a code region by reference, a heap with one
/// raw page and one compressed chunk, a stack page, a vdso, stdio fds.
/// It is golden image `v1-tiny.ckpt`, the spec's worked hexdump.
pub fn tiny() -> Sample {
    let page = |seed: u8| -> Vec<u8> {
        (0..4096u32)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
            .collect()
    };
    let text: Vec<u8> = b"counter 1 2 3 4 "
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect();
    Sample {
        header: header("counter"),
        process: Process {
            pid: Pid(4242),
            ppid: Pid(4200),
            pgid: Pid(4242),
            sid: Pid(4200),
            uid: [1000; 3],
            gid: [1000; 3],
            groups: vec![1000],
            cwd: b"/home/user".to_vec(),
            umask: 0o022,
            exe: b"/home/user/counter".to_vec(),
            cmdline: vec![b"./counter".to_vec()],
            environ: vec![b"HOME=/home/user".to_vec()],
            auxv: vec![(6, 4096), (33, 0x7fff_f7fc_1000)],
            personality: 0,
            mm: MmLayout {
                start_code: Addr(0x5555_5555_4000),
                end_code: Addr(0x5555_5555_5000),
                start_brk: Addr(0x5555_5555_9000),
                brk: Addr(0x5555_5557_a000),
                ..Default::default()
            },
            sched_policy: 0,
            nice: 0,
            restart_info_addr: Addr(0x7f00_1000_8000),
        },
        threads: vec![thread(4242, true)],
        regions: vec![
            Region {
                start: Addr(0x5555_5555_4000),
                end: Addr(0x5555_5555_5000),
                prot: Prot(Prot::READ | Prot::EXEC),
                kind: RegionKind::File,
                name: b"/home/user/counter".to_vec(),
                backing: Some(FileBacking {
                    file: FileIdentity {
                        path: b"/home/user/counter".to_vec(),
                        dev: 0xfe01,
                        inode: 131_073,
                        size: 16_384,
                        mtime_ns: 1_795_000_000_000_000_000,
                    },
                    offset: 0,
                    storage: FileStorage::ByReference,
                }),
                ..Default::default()
            },
            Region {
                start: Addr(0x5555_5555_9000),
                end: Addr(0x5555_5557_a000),
                prot: Prot(Prot::READ | Prot::WRITE),
                kind: RegionKind::Heap,
                name: b"[heap]".to_vec(),
                ..Default::default()
            },
            Region {
                start: Addr(0x7ffd_cdfe_1000),
                end: Addr(0x7ffd_ce00_2000),
                prot: Prot(Prot::READ | Prot::WRITE),
                grows_down: true,
                kind: RegionKind::Stack,
                name: b"[stack]".to_vec(),
                ..Default::default()
            },
            Region {
                start: Addr(0x7fff_f7fc_1000),
                end: Addr(0x7fff_f7fc_3000),
                prot: Prot(Prot::READ | Prot::EXEC),
                kind: RegionKind::Vdso,
                name: b"[vdso]".to_vec(),
                ..Default::default()
            },
        ],
        chunks: vec![
            (1, 0x5555_5555_9000, page(7), false),
            (1, 0x5555_5556_0000, text, true),
            (2, 0x7ffd_ce00_1000, page(3), false),
        ],
        fds: vec![
            FdEntry {
                fd: Fd(0),
                ofd_id: 1,
                status_flags: 2,
                kind: FdKind::Tty {
                    path: b"/dev/pts/3".to_vec(),
                    termios: vec![0; 44],
                    rows: 24,
                    cols: 80,
                    controlling: true,
                },
                ..Default::default()
            },
            FdEntry {
                fd: Fd(1),
                ofd_id: 2,
                status_flags: 0o2001,
                kind: FdKind::RegularFile {
                    file: FileIdentity {
                        path: b"/home/user/out.txt".to_vec(),
                        ..Default::default()
                    },
                    offset: 120,
                    deleted: false,
                    contents: None,
                },
                ..Default::default()
            },
        ],
        signals: SignalState {
            actions: (1..=64)
                .map(|n| {
                    if n == 10 {
                        SigAction {
                            handler: 0x5555_5555_5100,
                            flags: 0x0400_0004,
                            restorer: 0x7f00_0004_2520,
                            mask: 0,
                        }
                    } else {
                        SigAction::default()
                    }
                })
                .collect(),
            pending: vec![],
        },
        timers: Timers {
            real: TimerValue {
                interval_ns: 0,
                value_ns: 0,
            },
            ..Default::default()
        },
        rlimits: vec![
            Rlimit {
                resource: 3,
                cur: 8 << 20,
                max: u64::MAX,
            },
            Rlimit {
                resource: 7,
                cur: 1024,
                max: 4096,
            },
        ],
        pid_table: vec![PidEntry {
            vpid: Pid(4242),
            real_pid: 4242,
            ppid: Pid(4200),
            pgid: Pid(4242),
            sid: Pid(4200),
            threads: vec![Pid(4242)],
        }],
        socket_peers: vec![],
        zombies: vec![],
        shared_memory: vec![],
        sysv_ipc: None,
    }
}

/// A process that shares memory (format 1.3): the tiny sample plus an
/// anonymous shared region, a POSIX shm region and a System V segment
/// (SHARED_MEMORY), the pages this image holds of them, and a System V
/// semaphore set and message queue (SYSV_IPC). The golden
/// `v1.3-shm.ckpt`.
pub fn shm() -> Sample {
    let mut s = tiny();
    s.header.program = "shmtree".into();
    let shared = |start: u64, pages: u64, kind: RegionKind, name: &[u8]| Region {
        start: Addr(start),
        end: Addr(start + pages * 4096),
        prot: Prot(Prot::READ | Prot::WRITE),
        shared: true,
        kind,
        name: name.to_vec(),
        ..Default::default()
    };
    let first = s.regions.len() as u32;
    s.regions.extend([
        shared(0x7f00_2000_0000, 4, RegionKind::Shm, b"/dev/zero (deleted)"),
        shared(
            0x7f00_2001_0000,
            1,
            RegionKind::Shm,
            b"/dev/shm/ckpt-shmtree-4242",
        ),
        shared(
            0x7f00_2002_0000,
            2,
            RegionKind::Shm,
            b"/SYSV00000000 (deleted)",
        ),
    ]);
    let counters: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8 + 1).collect();
    s.chunks.extend([
        (first, 0x7f00_2000_1000, counters.clone(), false),
        (first + 1, 0x7f00_2001_0000, counters.clone(), true),
        (first + 2, 0x7f00_2002_0000, counters, false),
    ]);
    let mapping = |start: u64, object: ShmObject, inode: u64, size: u64| SharedMapping {
        start: Addr(start),
        object,
        dev: 1,
        inode,
        size,
        offset: 0,
    };
    s.shared_memory = vec![
        mapping(0x7f00_2000_0000, ShmObject::Anonymous, 2049, 4 * 4096),
        mapping(0x7f00_2001_0000, ShmObject::PosixShm, 7, 4096),
        mapping(0x7f00_2002_0000, ShmObject::SysV, 5, 8192),
    ];
    let perm = |id: i32, mode: u32| IpcPerm {
        key: 0,
        id,
        mode,
        uid: 1000,
        gid: 1000,
        cuid: 1000,
        cgid: 1000,
    };
    s.sysv_ipc = Some(SysvIpc {
        shm: vec![SysvShm {
            perm: perm(5, 0o1600),
            size: 8192,
        }],
        sem: vec![SysvSem {
            perm: perm(5, 0o600),
            values: vec![1, 42],
        }],
        msg: vec![SysvMsgQueue {
            perm: perm(5, 0o600),
            qbytes: 16384,
            messages: vec![SysvMessage {
                mtype: 2,
                text: 0x5e17i64.to_le_bytes().to_vec(),
            }],
        }],
    });
    s
}

/// A richer image: two threads (one a worker with pending signals), every
/// fd kind, timers, a socket peer.
pub fn full() -> Sample {
    let mut s = tiny();
    s.header.program = "pipeline".into();
    s.process.exe = b"/home/user/pipeline".to_vec();
    let mut t2 = thread(4243, false);
    t2.pending = vec![PendingSignal {
        signo: 34,
        code: -1,
        errno: 0,
        pid: 4242,
        uid: 1000,
        value: 7,
    }];
    t2.sigmask = 1 << 9;
    s.threads.push(t2);
    s.pid_table[0].threads.push(Pid(4243));
    let f = |fd: i32, kind: FdKind| FdEntry {
        fd: Fd(fd),
        fd_flags: FdFlags(1),
        ofd_id: 100 + fd as u64,
        status_flags: 0,
        kind,
    };
    s.fds.extend([
        f(
            3,
            FdKind::Directory {
                path: b"/home/user".to_vec(),
                offset: 0,
            },
        ),
        f(
            4,
            FdKind::Pipe {
                pipe_id: 9,
                write_end: false,
                buffered: b"in flight".to_vec(),
            },
        ),
        f(
            5,
            FdKind::Pipe {
                pipe_id: 9,
                write_end: true,
                buffered: vec![],
            },
        ),
        f(
            6,
            FdKind::Fifo {
                path: b"/tmp/fifo".to_vec(),
                buffered: vec![],
            },
        ),
        f(
            7,
            FdKind::PtyMaster {
                index: 4,
                termios: vec![0; 44],
                rows: 50,
                cols: 132,
            },
        ),
        f(
            8,
            FdKind::Socket {
                family: 2,
                sock_type: 1,
                protocol: 6,
                state: 1,
                local: SockAddr(vec![2, 0, 0x1e, 0x61, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                peer: SockAddr(vec![2, 0, 0x9c, 0x40, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                options: vec![SockOpt {
                    level: 6,
                    name: 1,
                    value: 1i32.to_le_bytes().to_vec(),
                }],
                inbound: b"hello".to_vec(),
                socket_id: 77,
            },
        ),
        f(
            9,
            FdKind::EventFd {
                count: 3,
                semaphore: false,
            },
        ),
        f(
            10,
            FdKind::Epoll {
                entries: vec![EpollEntry {
                    fd: Fd(9),
                    events: 1,
                    data: 42,
                }],
            },
        ),
        f(11, FdKind::SignalFd { mask: 1 << 16 }),
        f(
            12,
            FdKind::TimerFd {
                clock: 1,
                interval_ns: 1_000_000,
                value_ns: 250_000,
                settime_flags: 0,
                ticks: 0,
            },
        ),
        f(
            13,
            FdKind::Inotify {
                watches: vec![(b"/home/user".to_vec(), 0x100)],
            },
        ),
        f(
            14,
            FdKind::Device {
                path: b"/dev/null".to_vec(),
                rdev: 0x103,
            },
        ),
        f(
            15,
            FdKind::RegularFile {
                file: FileIdentity {
                    path: b"/tmp/scratch (deleted)".to_vec(),
                    dev: 1,
                    inode: 2,
                    size: 5,
                    mtime_ns: 3,
                },
                offset: 5,
                deleted: true,
                contents: Some(b"hello".to_vec()),
            },
        ),
        f(16, FdKind::Unsupported),
    ]);
    s.timers = Timers {
        real: TimerValue {
            interval_ns: 1_000_000_000,
            value_ns: 400_000_000,
        },
        virt: TimerValue::default(),
        prof: TimerValue {
            interval_ns: 10_000_000,
            value_ns: 10_000_000,
        },
        posix: vec![PosixTimer {
            id: 0,
            clock: 1,
            notify: 0,
            signo: 14,
            value: 5,
            notify_tid: Pid(4242),
            timer: TimerValue {
                interval_ns: 0,
                value_ns: 2_000_000_000,
            },
            overrun: 0,
        }],
    };
    s.signals.pending = vec![PendingSignal {
        signo: 10,
        code: 0,
        errno: 0,
        pid: 1,
        uid: 0,
        value: 0,
    }];
    s.socket_peers = vec![SocketPeer {
        socket_id: 77,
        peer_unique_id: "0123456789abcdef-5000-1".into(),
        peer_host: "node2".into(),
        peer_socket_id: 78,
    }];
    s
}
