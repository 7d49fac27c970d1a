//! Test helpers: decode an image both ways and compare with its sample.
#![allow(dead_code)]

pub mod raw_image;

use ckpt_format::sample::{self, Sample};
use ckpt_format::*;

/// Decodes `bytes` with the mapped reader and returns (metadata, pages by chunk).
pub fn decode_mapped(bytes: &[u8]) -> Result<(Metadata, Vec<Vec<u8>>)> {
    let img = MappedImage::from_bytes(bytes.to_vec())?;
    let mut pages = Vec::new();
    for c in img.chunks() {
        let mut out = vec![0u8; c.meta.pages as usize * img.page_size() as usize];
        img.read_chunk(c, &mut out)?;
        pages.push(out);
    }
    Ok((img.metadata().clone(), pages))
}

/// Decodes `bytes` in one pass.
pub fn decode_stream(bytes: &[u8]) -> Result<(Metadata, Vec<Vec<u8>>)> {
    let (m, p) = decode_all(bytes)?;
    Ok((m, p.into_iter().map(|(_, p)| p).collect()))
}

/// Asserts that decoded metadata and pages equal the sample's.
pub fn assert_matches(s: &Sample, m: &Metadata, pages: &[Vec<u8>]) {
    assert_eq!(m.header.as_ref(), Some(&s.header));
    assert_eq!(m.process.as_ref(), Some(&s.process));
    assert_eq!(m.threads, s.threads);
    assert_eq!(m.regions, s.regions);
    assert_eq!(m.fds, s.fds);
    assert_eq!(m.signals.as_ref(), Some(&s.signals));
    assert_eq!(m.timers.as_ref(), Some(&s.timers));
    assert_eq!(m.rlimits, s.rlimits);
    assert_eq!(m.pid_table, s.pid_table);
    assert_eq!(m.socket_peers, s.socket_peers);
    assert_eq!(m.zombies, s.zombies);
    assert_eq!(m.shared_memory, s.shared_memory);
    assert_eq!(m.sysv_ipc, s.sysv_ipc);
    assert_eq!(pages.len(), s.chunks.len());
    for ((c, got), (region, addr, want, _)) in m.chunks.iter().zip(pages).zip(&s.chunks) {
        assert_eq!(c.meta.region, *region);
        assert_eq!(c.meta.addr.0, *addr);
        assert!(got == want, "pages of chunk at {addr:#x} differ");
    }
}

/// A tiny deterministic generator: proptest draws the seed and sizes, this
/// fills every field of every record kind from it.
pub struct Gen(pub u64);

impl Gen {
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn u32(&mut self) -> u32 {
        self.u64() as u32
    }
    fn i32(&mut self) -> i32 {
        self.u64() as i32
    }
    fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }
    fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.u64() as u8).collect()
    }
    fn string(&mut self, max: u64) -> String {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| char::from_u32(0x20 + self.below(0x2000) as u32).unwrap_or('x'))
            .collect()
    }
    fn timer(&mut self) -> TimerValue {
        TimerValue {
            interval_ns: self.u64(),
            value_ns: self.u64(),
        }
    }
    fn identity(&mut self) -> FileIdentity {
        FileIdentity {
            path: self.bytes(40),
            dev: self.u64(),
            inode: self.u64(),
            size: self.u64(),
            mtime_ns: self.u64() as i64,
        }
    }
    fn pending(&mut self) -> Vec<PendingSignal> {
        (0..self.below(3))
            .map(|_| PendingSignal {
                signo: self.i32(),
                code: self.i32(),
                errno: self.i32(),
                pid: self.i32(),
                uid: self.u32(),
                value: self.u64(),
            })
            .collect()
    }
    fn fd_kind(&mut self) -> FdKind {
        match self.below(14) {
            0 => FdKind::Unsupported,
            1 => FdKind::RegularFile {
                file: self.identity(),
                offset: self.u64(),
                deleted: self.bool(),
                contents: if self.bool() {
                    Some(self.bytes(100))
                } else {
                    None
                },
            },
            2 => FdKind::Directory {
                path: self.bytes(30),
                offset: self.u64(),
            },
            3 => FdKind::Pipe {
                pipe_id: self.u64(),
                write_end: self.bool(),
                buffered: self.bytes(64),
            },
            4 => FdKind::Fifo {
                path: self.bytes(30),
                buffered: self.bytes(64),
            },
            5 => FdKind::Tty {
                path: self.bytes(20),
                termios: self.bytes(60),
                rows: self.u64() as u16,
                cols: self.u64() as u16,
                controlling: self.bool(),
            },
            6 => FdKind::PtyMaster {
                index: self.u32(),
                termios: self.bytes(60),
                rows: self.u64() as u16,
                cols: self.u64() as u16,
            },
            7 => FdKind::Socket {
                family: self.i32(),
                sock_type: self.i32(),
                protocol: self.i32(),
                state: self.u32(),
                local: SockAddr(self.bytes(28)),
                peer: SockAddr(self.bytes(28)),
                options: (0..self.below(3))
                    .map(|_| SockOpt {
                        level: self.i32(),
                        name: self.i32(),
                        value: self.bytes(8),
                    })
                    .collect(),
                inbound: self.bytes(50),
                socket_id: self.u64(),
            },
            8 => FdKind::EventFd {
                count: self.u64(),
                semaphore: self.bool(),
            },
            9 => FdKind::Epoll {
                entries: (0..self.below(4))
                    .map(|_| EpollEntry {
                        fd: Fd(self.i32()),
                        events: self.u32(),
                        data: self.u64(),
                    })
                    .collect(),
            },
            10 => FdKind::SignalFd { mask: self.u64() },
            11 => FdKind::TimerFd {
                clock: self.i32(),
                interval_ns: self.u64(),
                value_ns: self.u64(),
                settime_flags: 0,
                ticks: 0,
            },
            12 => FdKind::Inotify {
                watches: (0..self.below(3))
                    .map(|_| (self.bytes(20), self.u32()))
                    .collect(),
            },
            _ => FdKind::Device {
                path: self.bytes(20),
                rdev: self.u64(),
            },
        }
    }
}

pub fn random_sample(seed: u64, threads: usize, regions: usize, fds: usize) -> Sample {
    let mut g = Gen(seed | 1);
    let mut s = sample::tiny();
    s.header.program = g.string(16);
    s.header.unique_id = g.string(30);
    s.header.generation = g.u64();
    s.header.computation_id = core::array::from_fn(|_| g.u64() as u8);
    s.header.host.vdso_symbols = (0..g.below(5))
        .map(|_| VdsoSymbol {
            name: g.string(20),
            offset: g.u64(),
        })
        .collect();
    s.header.host.cpu_flags = (0..g.below(10)).map(|_| g.string(8)).collect();
    s.header.host.xsave_features = g.u64();
    s.process.cmdline = (0..g.below(5)).map(|_| g.bytes(20)).collect();
    s.process.environ = (0..g.below(5)).map(|_| g.bytes(30)).collect();
    s.process.auxv = (0..g.below(20)).map(|_| (g.u64(), g.u64())).collect();
    s.process.groups = (0..g.below(4)).map(|_| g.u32()).collect();
    s.process.mm.brk = Addr(g.u64());
    s.process.nice = g.i32();
    s.threads = (0..threads)
        .map(|i| Thread {
            tid: Pid(g.i32()),
            flags: ThreadFlags(g.u32()),
            name: g.string(15),
            regs: GpRegs {
                rip: g.u64(),
                rsp: g.u64(),
                rax: g.u64(),
                r15: g.u64(),
                fs_base: g.u64(),
                gs: g.u64(),
                ..Default::default()
            },
            xsave: if i % 2 == 0 { g.bytes(11008) } else { vec![] },
            sigmask: g.u64(),
            sigaltstack: SigAltStack {
                sp: Addr(g.u64()),
                flags: g.i32(),
                size: g.u64(),
            },
            rseq: if g.bool() {
                Some(Rseq {
                    addr: Addr(g.u64()),
                    len: g.u32(),
                    sig: g.u32(),
                })
            } else {
                None
            },
            robust_list: Addr(g.u64()),
            robust_list_len: g.u64(),
            clear_child_tid: Addr(g.u64()),
            pending: g.pending(),
            resume: ResumeContext {
                rip: g.u64(),
                rsp: g.u64(),
                rbx: g.u64(),
                rbp: g.u64(),
                r12: g.u64(),
                r13: g.u64(),
                r14: g.u64(),
                r15: g.u64(),
            },
        })
        .collect();
    // Regions laid out one after another, each 1-8 pages, with random chunks.
    let kinds = [
        RegionKind::Anon,
        RegionKind::Heap,
        RegionKind::Stack,
        RegionKind::File,
        RegionKind::Shm,
        RegionKind::Vdso,
        RegionKind::Vvar,
        RegionKind::VvarVclock,
        RegionKind::Vsyscall,
    ];
    let mut addr = 0x1000_0000u64;
    s.regions.clear();
    s.chunks.clear();
    for i in 0..regions {
        let pages = 1 + g.below(8);
        let start = addr;
        addr += (pages + g.below(3)) * 4096;
        let kind = kinds[g.below(kinds.len() as u64) as usize];
        s.regions.push(Region {
            start: Addr(start),
            end: Addr(start + pages * 4096),
            prot: Prot(g.below(8) as u32),
            shared: g.bool(),
            grows_down: g.bool(),
            kind,
            name: g.bytes(30),
            backing: if g.bool() {
                Some(FileBacking {
                    file: g.identity(),
                    offset: g.u64(),
                    storage: if g.bool() {
                        FileStorage::Embedded
                    } else {
                        FileStorage::ByReference
                    },
                })
            } else {
                None
            },
        });
        let mut p = 0;
        while p < pages {
            let n = 1 + g.below(pages - p);
            if g.bool() {
                let data: Vec<u8> = match g.below(3) {
                    0 => (0..n * 4096).map(|_| g.u64() as u8).collect(),
                    1 => b"text text text "
                        .iter()
                        .copied()
                        .cycle()
                        .take((n * 4096) as usize)
                        .collect(),
                    _ => vec![0; (n * 4096) as usize],
                };
                s.chunks.push((i as u32, start + p * 4096, data, g.bool()));
            }
            p += n;
        }
    }
    s.fds = (0..fds)
        .map(|i| FdEntry {
            fd: Fd(i as i32),
            fd_flags: FdFlags(g.u32()),
            ofd_id: g.u64(),
            status_flags: g.u32(),
            kind: g.fd_kind(),
        })
        .collect();
    s.signals = SignalState {
        actions: (0..64)
            .map(|_| SigAction {
                handler: g.u64(),
                flags: g.u64(),
                restorer: g.u64(),
                mask: g.u64(),
            })
            .collect(),
        pending: g.pending(),
    };
    s.timers = Timers {
        real: g.timer(),
        virt: g.timer(),
        prof: g.timer(),
        posix: (0..g.below(3))
            .map(|_| PosixTimer {
                id: g.i32(),
                clock: g.i32(),
                notify: g.i32(),
                signo: g.i32(),
                value: g.u64(),
                notify_tid: Pid(g.i32()),
                timer: g.timer(),
                overrun: g.i32(),
            })
            .collect(),
    };
    s.rlimits = (0..g.below(16))
        .map(|_| Rlimit {
            resource: g.u32(),
            cur: g.u64(),
            max: g.u64(),
        })
        .collect();
    s.pid_table = (0..g.below(4))
        .map(|_| PidEntry {
            vpid: Pid(g.i32()),
            real_pid: g.i32(),
            ppid: Pid(g.i32()),
            pgid: Pid(g.i32()),
            sid: Pid(g.i32()),
            threads: (0..g.below(4)).map(|_| Pid(g.i32())).collect(),
        })
        .collect();
    s.zombies = (0..g.below(3))
        .map(|_| Zombie {
            pid: Pid(g.i32()),
            status: g.i32(),
        })
        .collect();
    s.socket_peers = (0..g.below(3))
        .map(|_| SocketPeer {
            socket_id: g.u64(),
            peer_unique_id: g.string(20),
            peer_host: g.string(10),
            peer_socket_id: g.u64(),
        })
        .collect();
    s
}
