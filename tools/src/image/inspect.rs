//! `ckpt image inspect`: what an image holds, read from its metadata only
//! (page data is never touched, so a 1 GiB image inspects in milliseconds).

use ckpt_format::*;
use serde_json::{json, Value};
use std::fmt::Write;
use std::path::Path;

pub fn run(path: &Path, as_json: bool) -> anyhow::Result<i32> {
    let img = super::repack::open_image(path)?;
    let name = path.display().to_string();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(&img, &name))?);
    } else {
        print!("{}", render(&img, &name));
    }
    Ok(0)
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sizes for people: 4096 → "4.0 KiB".
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Nanoseconds since the epoch as an ISO 8601 UTC date.
pub fn utc(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn perms(r: &Region) -> String {
    let p = r.prot.0;
    format!(
        "{}{}{}{}",
        if p & Prot::READ != 0 { 'r' } else { '-' },
        if p & Prot::WRITE != 0 { 'w' } else { '-' },
        if p & Prot::EXEC != 0 { 'x' } else { '-' },
        if r.shared { 's' } else { 'p' }
    )
}

pub fn kind_name(k: RegionKind) -> &'static str {
    match k {
        RegionKind::Anon => "anon",
        RegionKind::Heap => "heap",
        RegionKind::Stack => "stack",
        RegionKind::File => "file",
        RegionKind::Shm => "shm",
        RegionKind::Vdso => "vdso",
        RegionKind::Vvar => "vvar",
        RegionKind::VvarVclock => "vvar_vclock",
        RegionKind::Vsyscall => "vsyscall",
    }
}

const SIGNAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

pub fn signame(n: i32) -> String {
    match n {
        1..=31 => SIGNAMES[n as usize - 1].to_string(),
        32..=64 => format!("SIGRT{}", n - 32),
        _ => format!("signal {n}"),
    }
}

/// A terminal's modes in `stty` words: the ones that tell a raw terminal
/// from a cooked one (`struct termios2` bytes, spec §4.5).
fn modes(t: &[u8]) -> String {
    if t.len() < 36 {
        return "modes unknown".into();
    }
    let word = |at: usize| u32::from_le_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
    let (iflag, oflag, lflag) = (word(0), word(4), word(12));
    let flag = |on: bool, name: &str| format!("{}{name}", if on { "" } else { "-" });
    // c_cc starts at byte 17; VTIME is c_cc[5], VMIN c_cc[6].
    format!(
        "modes {} {} {} {} {} min {} time {}",
        flag(lflag & libc::ICANON != 0, "icanon"),
        flag(lflag & libc::ECHO != 0, "echo"),
        flag(lflag & libc::ISIG != 0, "isig"),
        flag(iflag & libc::ICRNL != 0, "icrnl"),
        flag(oflag & libc::OPOST != 0, "opost"),
        t[17 + libc::VMIN],
        t[17 + libc::VTIME]
    )
}

fn describe_fd(f: &FdEntry) -> String {
    let mut s = match &f.kind {
        FdKind::RegularFile {
            file,
            offset,
            deleted,
            contents,
        } => format!(
            "file {}{} offset {offset}{}",
            lossy(&file.path),
            // /proc gives the path of an unlinked file with " (deleted)".
            if *deleted && !file.path.ends_with(b" (deleted)") {
                " (deleted)"
            } else {
                ""
            },
            contents.as_ref().map_or(String::new(), |c| format!(
                ", contents stored ({})",
                human(c.len() as u64)
            ))
        ),
        FdKind::Directory { path, .. } => format!("directory {}", lossy(path)),
        FdKind::Pipe {
            pipe_id,
            write_end,
            buffered,
        } => format!(
            "pipe {pipe_id:#x} {} end{}",
            if *write_end { "write" } else { "read" },
            if buffered.is_empty() {
                String::new()
            } else {
                format!(", {} buffered", human(buffered.len() as u64))
            }
        ),
        FdKind::Fifo { path, buffered } => format!(
            "fifo {} ({} buffered)",
            lossy(path),
            human(buffered.len() as u64)
        ),
        FdKind::Tty {
            path,
            termios,
            rows,
            cols,
            controlling,
        } => {
            format!(
                "tty {} {rows}x{cols}{}, {}",
                lossy(path),
                if *controlling { " controlling" } else { "" },
                modes(termios)
            )
        }
        FdKind::PtyMaster {
            index,
            termios,
            rows,
            cols,
        } => format!(
            "pty master (slave /dev/pts/{index}) {rows}x{cols}, {}",
            modes(termios)
        ),
        FdKind::Socket {
            family,
            sock_type,
            state,
            inbound,
            socket_id,
            ..
        } => format!(
            "socket family {family} type {sock_type} state {state} id {socket_id:#x}{}",
            if inbound.is_empty() {
                String::new()
            } else {
                format!(", {} inbound", human(inbound.len() as u64))
            }
        ),
        FdKind::EventFd { count, semaphore } => format!(
            "eventfd count {count}{}",
            if *semaphore { " semaphore" } else { "" }
        ),
        FdKind::Epoll { entries } => format!(
            "epoll watching {}",
            entries
                .iter()
                .map(|e| format!("{}:{:#x}", e.fd.0, e.events))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        FdKind::SignalFd { mask } => format!("signalfd mask {mask:#x}"),
        FdKind::TimerFd {
            clock,
            interval_ns,
            value_ns,
            settime_flags,
            ticks,
        } => {
            format!(
                "timerfd clock {clock} value {value_ns} ns interval {interval_ns} ns{}{}",
                if *settime_flags != 0 {
                    format!(" settime flags {settime_flags:#x}")
                } else {
                    String::new()
                },
                if *ticks != 0 {
                    format!(", {ticks} ticks pending")
                } else {
                    String::new()
                }
            )
        }
        FdKind::Inotify { watches } => {
            // Entry i is wd i + 1; an empty path is a gap (spec §4.5).
            let live: Vec<String> = watches
                .iter()
                .enumerate()
                .filter(|(_, (p, _))| !p.is_empty())
                .map(|(i, (p, m))| format!("wd {} {} mask {m:#x}", i + 1, lossy(p)))
                .collect();
            let shown = live.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            let more = live.len().saturating_sub(8);
            format!(
                "inotify {} watches{}{shown}{}",
                live.len(),
                if live.is_empty() { "" } else { ": " },
                if more > 0 {
                    format!(", {more} more")
                } else {
                    String::new()
                }
            )
        }
        FdKind::Device { path, rdev } => {
            format!("device {} ({}:{})", lossy(path), rdev >> 8, rdev & 0xff)
        }
        FdKind::Unsupported => "unsupported (restart will refuse it)".into(),
    };
    let _ = write!(
        s,
        "  [flags {:#o}{}]",
        f.status_flags,
        if f.fd_flags.0 & 1 != 0 {
            " cloexec"
        } else {
            ""
        }
    );
    s
}

fn timer(t: &TimerValue) -> String {
    if t.value_ns == 0 {
        "off".into()
    } else {
        format!(
            "{} ms left, every {} ms",
            t.value_ns / 1_000_000,
            t.interval_ns / 1_000_000
        )
    }
}

/// The human-readable report.
pub fn render(img: &MappedImage, name: &str) -> String {
    let h = img.header();
    let p = img.process();
    let (maj, min) = img.version();
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "image        {name} ({}, format {maj}.{min})",
        human(img.file_len())
    );
    let _ = writeln!(w, "writer       {}", h.writer_version);
    let _ = writeln!(w, "created      {}", utc(h.created_ns));
    let _ = writeln!(
        w,
        "computation  {} generation {}",
        h.computation_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        h.generation
    );
    let _ = writeln!(
        w,
        "process      {} pid {} (real {}) unique id {}",
        h.program, h.vpid.0, h.real_pid, h.unique_id
    );
    let f = &h.host;
    let arch = if h.arch == 62 {
        "x86_64".to_string()
    } else {
        format!("machine {}", h.arch)
    };
    let _ = writeln!(
        w,
        "host         {}, Linux {}, {}, {arch}, page size {}",
        f.hostname, f.kernel_release, f.libc_version, h.page_size
    );
    let _ = writeln!(
        w,
        "fpu          XCR0 {:#x}, XSAVE area {} bytes, rseq area {} bytes",
        f.xsave_features, f.xsave_size, f.rseq_size
    );
    let _ = writeln!(w, "cpu flags    {}", f.cpu_flags.join(" "));
    let _ = writeln!(
        w,
        "vdso         {}",
        f.vdso_symbols
            .iter()
            .map(|s| format!("{}+{:#x}", s.name, s.offset))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "process");
    let _ = writeln!(
        w,
        "  pid {} ppid {} pgid {} sid {}",
        p.pid.0, p.ppid.0, p.pgid.0, p.sid.0
    );
    let _ = writeln!(
        w,
        "  uid {}/{}/{} gid {}/{}/{} groups {:?}",
        p.uid[0], p.uid[1], p.uid[2], p.gid[0], p.gid[1], p.gid[2], p.groups
    );
    let _ = writeln!(w, "  exe {}", lossy(&p.exe));
    let _ = writeln!(
        w,
        "  cmdline {}",
        p.cmdline
            .iter()
            .map(|a| lossy(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        w,
        "  cwd {}  umask {:04o}  personality {:#x}",
        lossy(&p.cwd),
        p.umask,
        p.personality
    );
    let _ = writeln!(
        w,
        "  environment {} variables, auxv {} entries",
        p.environ.len(),
        p.auxv.len()
    );
    let m = &p.mm;
    let _ = writeln!(
        w,
        "  mm code {:#x}-{:#x} data {:#x}-{:#x} brk {:#x}-{:#x} stack {:#x}",
        m.start_code.0,
        m.end_code.0,
        m.start_data.0,
        m.end_data.0,
        m.start_brk.0,
        m.brk.0,
        m.start_stack.0
    );
    let _ = writeln!(w, "  sched policy {} nice {}", p.sched_policy, p.nice);
    let _ = writeln!(w);
    let _ = writeln!(w, "threads ({})", img.threads().len());
    for t in img.threads() {
        let mut flags = Vec::new();
        if t.flags.0 & ThreadFlags::LEADER != 0 {
            flags.push("leader");
        }
        if t.flags.0 & ThreadFlags::CHECKPOINT_THREAD != 0 {
            flags.push("checkpoint thread");
        }
        let _ = writeln!(
            w,
            "  tid {} \"{}\"{}{}",
            t.tid.0,
            t.name,
            if flags.is_empty() { "" } else { " " },
            flags.join(", ")
        );
        let r = &t.regs;
        let _ = writeln!(
            w,
            "    rip {:016x} rsp {:016x} rbp {:016x} eflags {:x}",
            r.rip, r.rsp, r.rbp, r.eflags
        );
        let _ = writeln!(
            w,
            "    rax {:016x} rbx {:016x} rcx {:016x} rdx {:016x}",
            r.rax, r.rbx, r.rcx, r.rdx
        );
        let _ = writeln!(
            w,
            "    rsi {:016x} rdi {:016x} r8  {:016x} r9  {:016x}",
            r.rsi, r.rdi, r.r8, r.r9
        );
        let _ = writeln!(
            w,
            "    r10 {:016x} r11 {:016x} r12 {:016x} r13 {:016x}",
            r.r10, r.r11, r.r12, r.r13
        );
        let _ = writeln!(
            w,
            "    r14 {:016x} r15 {:016x} fs_base {:x} gs_base {:x} orig_rax {}",
            r.r14, r.r15, r.fs_base, r.gs_base, r.orig_rax as i64
        );
        let alt = if t.sigaltstack.flags & 2 != 0 || t.sigaltstack.size == 0 {
            "none".to_string()
        } else {
            format!("{:#x}+{}", t.sigaltstack.sp.0, t.sigaltstack.size)
        };
        let rseq = t.rseq.map_or("none".to_string(), |r| {
            format!("{:#x}+{} sig {:#x}", r.addr.0, r.len, r.sig)
        });
        let _ = writeln!(w, "    sigmask {:#x} altstack {alt} rseq {rseq}", t.sigmask);
        let _ = writeln!(
            w,
            "    robust list {:#x}+{} clear_child_tid {:#x} xsave {} bytes pending {}",
            t.robust_list.0,
            t.robust_list_len,
            t.clear_child_tid.0,
            t.xsave.len(),
            if t.pending.is_empty() {
                "none".to_string()
            } else {
                t.pending
                    .iter()
                    .map(|s| signame(s.signo))
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        let _ = writeln!(
            w,
            "    resumes at rip {:#x} rsp {:#x}",
            t.resume.rip, t.resume.rsp
        );
    }
    let _ = writeln!(w);
    let per = img.stored_bytes_per_region();
    let mapped: u64 = img.regions().iter().map(|r| r.end.0 - r.start.0).sum();
    let stored: u64 = per.iter().map(|p| p.0).sum();
    let _ = writeln!(
        w,
        "memory ({} regions, {} mapped, {} stored in {} chunks)",
        img.regions().len(),
        human(mapped),
        human(stored),
        img.chunks().len()
    );
    let _ = writeln!(
        w,
        "  {:>3} {:>12}-{:<12} {:4} {:>10} {:>10} {:>6} {:<11} name",
        "#", "start", "end", "perm", "size", "stored", "ratio", "kind"
    );
    for (i, (r, (st, raw))) in img.regions().iter().zip(&per).enumerate() {
        let ratio = if *st == 0 {
            "-".to_string()
        } else {
            format!("{:.1}x", *raw as f64 / *st as f64)
        };
        let mut name = lossy(&r.name);
        if let Some(b) = &r.backing {
            let how = match b.storage {
                FileStorage::Embedded => "embedded",
                FileStorage::ByReference => "by reference",
            };
            let _ = write!(name, " @{:#x} ({how})", b.offset);
        }
        let _ = writeln!(
            w,
            "  {i:>3} {:>12x}-{:<12x} {:4} {:>10} {:>10} {ratio:>6} {:<11} {name}",
            r.start.0,
            r.end.0,
            perms(r),
            human(r.end.0 - r.start.0),
            human(*st),
            kind_name(r.kind)
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "fds ({})", img.fds().len());
    for f in img.fds() {
        let _ = writeln!(w, "  {:>3} {}", f.fd.0, describe_fd(f));
    }
    if let Some(s) = img.signals() {
        let _ = writeln!(w);
        let handled: Vec<String> = s
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| a.handler != 0)
            .map(|(i, a)| match a.handler {
                1 => format!("{} ignored", signame(i as i32 + 1)),
                h => format!("{} -> {h:#x}{}", signame(i as i32 + 1), sa_details(a)),
            })
            .collect();
        let _ = writeln!(
            w,
            "signals      {}",
            if handled.is_empty() {
                "all default".to_string()
            } else {
                handled.join(", ")
            }
        );
        if !s.pending.is_empty() {
            let _ = writeln!(
                w,
                "  pending    {}",
                s.pending
                    .iter()
                    .map(pending_signal)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    if let Some(t) = img.timers() {
        let _ = writeln!(
            w,
            "timers       real {}, virtual {}, prof {}",
            timer(&t.real),
            timer(&t.virt),
            timer(&t.prof)
        );
        for pt in &t.posix {
            let _ = writeln!(
                w,
                "  posix timer {} clock {} {} -> {}",
                pt.id,
                pt.clock,
                timer(&pt.timer),
                signame(pt.signo)
            );
        }
    }
    if !img.rlimits().is_empty() {
        let lim = |v: u64| {
            if v == u64::MAX {
                "unlimited".to_string()
            } else {
                v.to_string()
            }
        };
        let _ = writeln!(
            w,
            "rlimits      {}",
            img.rlimits()
                .iter()
                .map(|r| format!("{}={}/{}", r.resource, lim(r.cur), lim(r.max)))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if !img.pid_table().is_empty() {
        let _ = writeln!(w, "pid table");
        for e in img.pid_table() {
            let _ = writeln!(
                w,
                "  pid {} (real {}) ppid {} pgid {} sid {} threads {:?}",
                e.vpid.0,
                e.real_pid,
                e.ppid.0,
                e.pgid.0,
                e.sid.0,
                e.threads.iter().map(|t| t.0).collect::<Vec<_>>()
            );
        }
    }
    if !img.zombies().is_empty() {
        let _ = writeln!(w, "ZOMBIES (unreaped children)");
        for z in img.zombies() {
            let _ = writeln!(w, "  pid {} wait status {:#x}", z.pid.0, z.status);
        }
    }
    if !img.shared_memory().is_empty() {
        let _ = writeln!(w, "SHARED_MEMORY (objects the regions map)");
        for m in img.shared_memory() {
            let _ = writeln!(
                w,
                "  {:#x} {:?} dev {:#x} inode {} size {} offset {:#x}",
                m.start.0, m.object, m.dev, m.inode, m.size, m.offset
            );
        }
    }
    if let Some(ipc) = img.sysv_ipc() {
        let _ = writeln!(w, "SYSV_IPC (System V objects)");
        for s in &ipc.shm {
            let _ = writeln!(
                w,
                "  shm id {} key {:#x} mode {:o} size {}",
                s.perm.id, s.perm.key, s.perm.mode, s.size
            );
        }
        for s in &ipc.sem {
            let _ = writeln!(
                w,
                "  sem id {} key {:#x} mode {:o} values {:?}",
                s.perm.id, s.perm.key, s.perm.mode, s.values
            );
        }
        for q in &ipc.msg {
            let _ = writeln!(
                w,
                "  msg id {} key {:#x} mode {:o} {} messages, {} bytes",
                q.perm.id,
                q.perm.key,
                q.perm.mode,
                q.messages.len(),
                q.messages.iter().map(|m| m.text.len()).sum::<usize>()
            );
        }
    }
    for sp in img.socket_peers() {
        let _ = writeln!(
            w,
            "socket peer  {:#x} -> {}@{} socket {:#x}",
            sp.socket_id, sp.peer_unique_id, sp.peer_host, sp.peer_socket_id
        );
    }
    for (off, kind, flags) in img.skipped_records() {
        let _ = writeln!(
            w,
            "skipped      unknown record {kind:#06x} (flags {flags:#x}) at {off:#x}"
        );
    }
    o
}

fn regs_json(r: &GpRegs) -> Value {
    json!({
        "rip": r.rip, "rsp": r.rsp, "rbp": r.rbp, "rax": r.rax, "rbx": r.rbx, "rcx": r.rcx, "rdx": r.rdx,
        "rsi": r.rsi, "rdi": r.rdi, "r8": r.r8, "r9": r.r9, "r10": r.r10, "r11": r.r11, "r12": r.r12,
        "r13": r.r13, "r14": r.r14, "r15": r.r15, "orig_rax": r.orig_rax, "eflags": r.eflags, "cs": r.cs,
        "ss": r.ss, "ds": r.ds, "es": r.es, "fs": r.fs, "gs": r.gs, "fs_base": r.fs_base, "gs_base": r.gs_base,
    })
}

/// The machine-readable report (schema: spec/tools-json.md).
pub fn to_json(img: &MappedImage, name: &str) -> Value {
    let h = img.header();
    let p = img.process();
    let per = img.stored_bytes_per_region();
    let mut v = json!({
        "schema": "ckpt-inspect/1",
        "image": { "path": name, "bytes": img.file_len(), "format": format!("{}.{}", img.version().0, img.version().1) },
        "header": {
            "writer_version": h.writer_version, "arch": h.arch, "page_size": h.page_size,
            "created_ns": h.created_ns, "created": utc(h.created_ns),
            "computation_id": h.computation_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "generation": h.generation, "vpid": h.vpid.0, "real_pid": h.real_pid, "program": h.program,
            "unique_id": h.unique_id,
            "host": {
                "hostname": h.host.hostname, "kernel_release": h.host.kernel_release, "libc_version": h.host.libc_version,
                "vdso_symbols": h.host.vdso_symbols.iter().map(|s| json!({"name": s.name, "offset": s.offset})).collect::<Vec<_>>(),
                "xsave_features": h.host.xsave_features, "xsave_size": h.host.xsave_size,
                "cpu_flags": h.host.cpu_flags, "rseq_size": h.host.rseq_size,
            },
        },
        "process": {
            "pid": p.pid.0, "ppid": p.ppid.0, "pgid": p.pgid.0, "sid": p.sid.0, "uid": p.uid, "gid": p.gid,
            "groups": p.groups, "cwd": lossy(&p.cwd), "umask": p.umask, "exe": lossy(&p.exe),
            "cmdline": p.cmdline.iter().map(|a| lossy(a)).collect::<Vec<_>>(),
            "environ": p.environ.iter().map(|a| lossy(a)).collect::<Vec<_>>(),
            "auxv": p.auxv, "personality": p.personality, "sched_policy": p.sched_policy, "nice": p.nice,
            "mm": serde_json::to_value(p.mm).unwrap_or(Value::Null),
            "restart_info_addr": p.restart_info_addr.0,
        },
        "threads": img.threads().iter().map(|t| json!({
            "tid": t.tid.0, "name": t.name,
            "leader": t.flags.0 & ThreadFlags::LEADER != 0,
            "checkpoint_thread": t.flags.0 & ThreadFlags::CHECKPOINT_THREAD != 0,
            "regs": regs_json(&t.regs), "xsave_bytes": t.xsave.len(), "sigmask": t.sigmask,
            "sigaltstack": {"sp": t.sigaltstack.sp.0, "flags": t.sigaltstack.flags, "size": t.sigaltstack.size},
            "rseq": t.rseq.map(|r| json!({"addr": r.addr.0, "len": r.len, "sig": r.sig})),
            "robust_list": t.robust_list.0, "robust_list_len": t.robust_list_len,
            "clear_child_tid": t.clear_child_tid.0,
            "pending": t.pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
            "resume": serde_json::to_value(t.resume).unwrap_or(Value::Null),
        })).collect::<Vec<_>>(),
        "regions": img.regions().iter().zip(&per).enumerate().map(|(i, (r, (st, raw)))| json!({
            "index": i, "start": r.start.0, "end": r.end.0, "perms": perms(r), "kind": kind_name(r.kind),
            "name": lossy(&r.name), "grows_down": r.grows_down,
            "backing": r.backing.as_ref().map(|b| json!({
                "path": lossy(&b.file.path), "offset": b.offset, "dev": b.file.dev, "inode": b.file.inode,
                "size": b.file.size, "mtime_ns": b.file.mtime_ns,
                "storage": match b.storage { FileStorage::Embedded => "embedded", FileStorage::ByReference => "by_reference" },
            })),
            "stored_bytes": st, "stored_pages_bytes": raw,
        })).collect::<Vec<_>>(),
        "chunks": img.chunks().len(),
        "fds": img.fds().iter().map(|f| json!({
            "fd": f.fd.0, "cloexec": f.fd_flags.0 & 1 != 0, "status_flags": f.status_flags,
            "ofd_id": f.ofd_id, "description": describe_fd(f),
        })).collect::<Vec<_>>(),
        "signals": img.signals().map(|s| json!({
            "handlers": s.actions.iter().enumerate().filter(|(_, a)| a.handler != 0)
                .map(|(i, a)| json!({"signal": i + 1, "name": signame(i as i32 + 1), "handler": a.handler, "flags": a.flags, "mask": a.mask}))
                .collect::<Vec<_>>(),
            "pending": s.pending.iter().map(|p| p.signo).collect::<Vec<_>>(),
        })),
        "timers": img.timers().map(|t| serde_json::to_value(t).unwrap_or(Value::Null)),
        "rlimits": img.rlimits().iter().map(|r| json!({"resource": r.resource, "cur": r.cur, "max": r.max})).collect::<Vec<_>>(),
        "pid_table": img.pid_table().iter().map(|e| json!({
            "vpid": e.vpid.0, "real_pid": e.real_pid, "ppid": e.ppid.0, "pgid": e.pgid.0, "sid": e.sid.0,
            "threads": e.threads.iter().map(|t| t.0).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "socket_peers": img.socket_peers().iter().map(|s| json!({
            "socket_id": s.socket_id, "peer_unique_id": s.peer_unique_id, "peer_host": s.peer_host, "peer_socket_id": s.peer_socket_id,
        })).collect::<Vec<_>>(),
        "skipped_records": img.skipped_records().iter().map(|(o, k, f)| json!({"offset": o, "kind": k, "flags": f})).collect::<Vec<_>>(),
    });
    // Format 1.2, only when there is one (so 1.0 and 1.1 reports are unchanged).
    if !img.zombies().is_empty() {
        v["zombies"] = img
            .zombies()
            .iter()
            .map(|z| json!({"pid": z.pid.0, "status": z.status}))
            .collect::<Vec<_>>()
            .into();
    }
    // Format 1.3, only when there is one.
    if let Some(ipc) = img.sysv_ipc() {
        let perm = |p: &IpcPerm| json!({"key": p.key, "id": p.id, "mode": p.mode, "uid": p.uid, "gid": p.gid});
        v["sysv_ipc"] = json!({
            "shm": ipc.shm.iter().map(|s| json!({"perm": perm(&s.perm), "size": s.size})).collect::<Vec<_>>(),
            "sem": ipc.sem.iter().map(|s| json!({"perm": perm(&s.perm), "values": s.values})).collect::<Vec<_>>(),
            "msg": ipc.msg.iter().map(|q| json!({"perm": perm(&q.perm), "qbytes": q.qbytes,
                "messages": q.messages.len(),
                "bytes": q.messages.iter().map(|m| m.text.len()).sum::<usize>()})).collect::<Vec<_>>(),
        });
    }
    if !img.shared_memory().is_empty() {
        v["shared_memory"] = img
            .shared_memory()
            .iter()
            .map(|m| {
                json!({"start": m.start.0, "object": format!("{:?}", m.object), "dev": m.dev,
                       "inode": m.inode, "size": m.size, "offset": m.offset})
            })
            .collect::<Vec<_>>()
            .into();
    }
    v
}

/// ` [SA_SIGINFO|SA_RESTART, mask SIGUSR2]` for a handler's flags and
/// mask (nothing when both are empty).
fn sa_details(a: &ckpt_format::SigAction) -> String {
    const FLAGS: [(u64, &str); 6] = [
        (0x4, "SA_SIGINFO"),
        (0x0800_0000, "SA_ONSTACK"),
        (0x1000_0000, "SA_RESTART"),
        (0x4000_0000, "SA_NODEFER"),
        (0x8000_0000, "SA_RESETHAND"),
        (0x1, "SA_NOCLDSTOP"),
    ];
    let mut parts: Vec<String> = Vec::new();
    let flags: Vec<&str> = FLAGS
        .iter()
        .filter(|(bit, _)| a.flags & bit != 0)
        .map(|&(_, name)| name)
        .collect();
    if !flags.is_empty() {
        parts.push(flags.join("|"));
    }
    let mask: Vec<String> = (1..=64)
        .filter(|n| a.mask & (1u64 << (n - 1)) != 0)
        .map(signame)
        .collect();
    if !mask.is_empty() {
        parts.push(format!("mask {}", mask.join("|")));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join(", "))
    }
}

/// A pending signal, with its value when it was queued (`SI_QUEUE`).
fn pending_signal(p: &ckpt_format::PendingSignal) -> String {
    const SI_QUEUE: i32 = -1;
    if p.code == SI_QUEUE {
        format!("{} (value {})", signame(p.signo), p.value as i64)
    } else {
        signame(p.signo)
    }
}
