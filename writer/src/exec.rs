//! Programs the writer cannot follow. exec keeps the writer only through
//! LD_PRELOAD in the new environment, and the dynamic loader honours it
//! only for a dynamic program that does not change its user or group
//! (setuid/setgid makes it a secure execution). A program that cannot
//! carry the writer runs outside checkpoint control: the writer says so
//! before the exec (its log and the coordinator), and at each checkpoint
//! it lists its live children without the writer; their parent's image
//! records each as a child killed by SIGKILL (doc/design.md, "Processes
//! outside checkpoint control").

use std::ffi::CStr;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use ckpt_format::model::{Pid, Zombie};

/// Why a process is not under checkpoint control.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// A statically linked program: no dynamic loader reads LD_PRELOAD.
    Static,
    /// A setuid or setgid program: the loader ignores LD_PRELOAD.
    SetId,
    /// Its environment has no LD_PRELOAD naming the writer.
    NoPreload,
    /// The writer has not started in it yet: a program exec'd with it in
    /// `LD_PRELOAD` whose loader has not mapped it, or not run its
    /// constructor. It joins the computation once its writer connects.
    NotLoaded,
    /// The writer is in its memory but has no thread: a clone the writer
    /// did not see (an inline `syscall` instruction).
    NoThread,
}

impl Why {
    pub fn text(self) -> &'static str {
        match self {
            Why::Static => "a static binary (no dynamic loader to preload the writer)",
            Why::SetId => "a setuid/setgid binary (the loader ignores LD_PRELOAD)",
            Why::NoPreload => {
                "its environment has no LD_PRELOAD with the writer (cleared before exec)"
            }
            Why::NotLoaded => "the writer has not started in it yet",
            Why::NoThread => {
                "made by a clone the writer did not see (a raw syscall instruction): no checkpoint thread"
            }
        }
    }
}

const WRITER: &[u8] = b"libckpt_writer";

/// Whether an ELF file is dynamic (has PT_INTERP); None when `f` is not a
/// 64-bit little-endian ELF file we can read.
fn elf_is_dynamic(f: &mut std::fs::File) -> Option<bool> {
    let mut h = [0u8; 64];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().ok()?);
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as u64;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as u64;
    if phentsize < 56 || phnum == 0 || phnum > 256 {
        return None;
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut ph).ok()?;
    Some(
        ph.chunks_exact(phentsize as usize)
            .any(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) == 3),
    )
}

/// Why the program file at `path` cannot carry the writer (None: it can,
/// or we cannot tell). A script is judged by its interpreter.
pub fn program_why(path: &[u8], depth: u32) -> Option<Why> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
    let meta = std::fs::metadata(p).ok()?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mode = meta.mode();
    if (mode & libc::S_ISUID != 0 && meta.uid() != uid)
        || (mode & libc::S_ISGID != 0 && meta.gid() != gid)
    {
        return Some(Why::SetId);
    }
    let mut f = std::fs::File::open(p).ok()?;
    let mut head = [0u8; 256];
    let n = f.read(&mut head).ok()?;
    if head[..n].starts_with(b"#!") && depth < 4 {
        let line = head[2..n].split(|&b| b == b'\n').next()?;
        let interp = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|w| !w.is_empty())?;
        return program_why(interp, depth + 1);
    }
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0)).ok()?;
    match elf_is_dynamic(&mut f)? {
        true => None,
        false => Some(Why::Static),
    }
}

/// Whether an environment block (NUL-separated, or a C array) names the
/// writer in LD_PRELOAD.
fn env_has_writer<'a>(mut vars: impl Iterator<Item = &'a [u8]>) -> bool {
    vars.any(|v| {
        v.strip_prefix(b"LD_PRELOAD=")
            .is_some_and(|l| l.windows(WRITER.len()).any(|w| w == WRITER))
    })
}

/// Why exec of `path` with environment `envp` would leave checkpoint
/// control (None: the writer follows it, or we cannot tell).
///
/// # Safety
/// `envp` is null or a NULL-terminated array of C strings.
pub unsafe fn exec_why(path: &[u8], envp: *const *const libc::c_char) -> Option<Why> {
    if let Some(w) = program_why(path, 0) {
        return Some(w);
    }
    let mut vars = Vec::new();
    let mut p = envp;
    // SAFETY: the caller's NULL-terminated array.
    unsafe {
        while !p.is_null() && !(*p).is_null() {
            vars.push(CStr::from_ptr(*p).to_bytes());
            p = p.add(1);
        }
    }
    if !env_has_writer(vars.into_iter()) {
        return Some(Why::NoPreload);
    }
    None
}

/// `file` as execvp would find it through PATH (itself when it has a '/').
pub fn search_path(file: &[u8]) -> Vec<u8> {
    if file.contains(&b'/') || file.is_empty() {
        return file.to_vec();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/bin:/usr/bin".into());
    use std::os::unix::ffi::OsStrExt;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { &b"."[..] } else { dir };
        let mut full = dir.to_vec();
        full.push(b'/');
        full.extend_from_slice(file);
        let c = std::ffi::CString::new(full.clone()).unwrap_or_default();
        // SAFETY: c is a NUL-terminated path.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return full;
        }
    }
    file.to_vec()
}

/// A live child of this process that is not under checkpoint control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outsider {
    pub pid: i32,
    pub program: String,
    pub why: Why,
}

/// What a live child of this process is, for checkpoint control.
enum Child {
    /// It exited (a zombie) or is on its way out (no memory left).
    Gone,
    /// It holds the writer, started as its own (a fork child, or a
    /// program exec'd with it), or it is a program exec'd with the writer
    /// in `LD_PRELOAD` that the loader has not mapped yet
    /// (`Why::NotLoaded`): its writer is, or soon will be, connected.
    Controlled(Option<Outsider>),
    /// It cannot carry the writer.
    Outside(Outsider),
}

fn child(pid: i32) -> Child {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return Child::Gone;
    };
    let (Some(open), Some(close)) = (
        stat.iter().position(|&b| b == b'('),
        stat.iter().rposition(|&b| b == b')'),
    ) else {
        return Child::Gone;
    };
    if matches!(stat.get(close + 2), Some(b'Z' | b'X')) || open >= close {
        return Child::Gone;
    }
    let program = String::from_utf8_lossy(&stat[open + 1..close]).into_owned();
    let why = match std::fs::read(format!("/proc/{pid}/maps")) {
        Ok(m) if m.windows(WRITER.len()).any(|w| w == WRITER) => match writer_state(pid, &m) {
            Writer::Started => return Child::Controlled(None),
            Writer::Starting => Why::NotLoaded,
            Writer::Copy => Why::NoThread,
        },
        // A process we may not trace: its ids changed at exec.
        Err(_) => Why::SetId,
        Ok(m) if m.is_empty() => return Child::Gone,
        Ok(_) => {
            use std::os::unix::ffi::OsStrExt;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            match exe.and_then(|e| program_why(e.as_os_str().as_bytes(), 0)) {
                Some(w) => w,
                None if !env_has_writer(env.split(|&b| b == 0)) => Why::NoPreload,
                None => Why::NotLoaded,
            }
        }
    };
    let o = Outsider { pid, program, why };
    if why == Why::NotLoaded {
        Child::Controlled(Some(o))
    } else {
        Child::Outside(o)
    }
}

/// This process's live children whose memory holds no writer (read from
/// /proc at checkpoint time, while every process of the computation is
/// stopped), in pid order.
pub fn outsiders() -> Vec<Outsider> {
    crate::capture::children()
        .into_iter()
        .filter_map(|pid| match child(pid) {
            Child::Outside(o) | Child::Controlled(Some(o)) => Some(o),
            Child::Gone | Child::Controlled(None) => None,
        })
        .collect()
}

/// This process's live children that are, or are about to be, processes
/// of its computation under checkpoint control, connected to the
/// coordinator or not yet: fork children (the writer started in them
/// before fork() returned) and programs exec'd with the writer in
/// `LD_PRELOAD`, whose environment names this computation's
/// coordinator ([`crate::capture::launch_tag`]). Reported with
/// `Suspended`: the coordinator lets no process read its state before
/// each of them has connected and stopped (or has left this list), so
/// that none of them runs on, unseen, while the others are captured
/// (a compiler exec'd just before the cut wrote into a pipe whose bytes
/// its reader had already saved, then was captured with that pipe
/// closed; or it was never captured, and its parent's waitpid() failed
/// with ECHILD after a restart). In pid order.
pub fn joining() -> Vec<i32> {
    let mine = crate::capture::launch_tag("thread-self");
    crate::capture::children()
        .into_iter()
        .filter(|&pid| {
            matches!(child(pid), Child::Controlled(_))
                && crate::capture::launch_tag(&pid.to_string()) == mine
        })
        .collect()
}

/// How far the writer got in a process whose memory holds it.
enum Writer {
    /// It started as that process's: a child forked by glibc ran the
    /// writer's atfork handler before fork() returned in it, an exec'd
    /// program its constructor, and both put the process's pid in
    /// `WRITER_PID`.
    Started,
    /// Not yet: an exec'd program whose loader mapped the writer but has
    /// not run its constructor (`WRITER_PID` still 0, or not mapped yet).
    Starting,
    /// Never: a copy of this process made by a clone nobody saw holds its
    /// parent's `WRITER_PID`.
    Copy,
}

/// Where `pid`'s writer is ([`Writer`]). (The checkpoint thread, which
/// told them apart before, now ends between checkpoints.) Read from the
/// child's memory at the address `WRITER_PID` has in its mapping of the
/// library.
fn writer_state(pid: i32, maps: &[u8]) -> Writer {
    let ours = std::fs::read("/proc/self/maps").unwrap_or_default();
    let (Some(theirs), Some(ours)) = (writer_base(maps), writer_base(&ours)) else {
        return Writer::Copy;
    };
    let addr = std::ptr::addr_of!(crate::WRITER_PID) as u64 - ours + theirs;
    let mut v = 0i32;
    let local = libc::iovec {
        iov_base: &mut v as *mut i32 as *mut libc::c_void,
        iov_len: 4,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 4,
    };
    // SAFETY: reads 4 bytes of the child's memory into our local `v`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    match v {
        _ if n != 4 => Writer::Starting,
        0 => Writer::Starting,
        v if v == pid => Writer::Started,
        _ => Writer::Copy,
    }
}

/// Where the writer library is loaded in a process, from its maps: the
/// start of its first mapping less that mapping's file offset (the copy
/// beside images, `ckpt_writer-<build>.so`, in a restored process).
fn writer_base(maps: &[u8]) -> Option<u64> {
    let line = maps
        .split(|&b| b == b'\n')
        .find(|l| l.windows(11).any(|w| w == b"ckpt_writer"))?;
    let mut f = line.split(|&b| b == b' ');
    let start = f.next()?.split(|&b| b == b'-').next()?;
    let off = f.nth(1)?;
    let hex = |b: &[u8]| u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    hex(start)?.checked_sub(hex(off)?)
}

/// The outsiders as their parent's image records them: children killed by
/// SIGKILL (what becomes of them when the computation is killed), so the
/// restored parent's waitpid() reaps them instead of failing with ECHILD.
/// One whose program could carry the writer (the moment between its exec
/// and the loader mapping the writer) is left out: it joins the
/// checkpoint once its writer connects.
pub fn as_killed(outsiders: &[Outsider]) -> Vec<Zombie> {
    outsiders
        .iter()
        .filter(|o| o.why != Why::NotLoaded)
        .map(|o| Zombie {
            pid: Pid(o.pid),
            status: libc::SIGKILL,
        })
        .collect()
}

/// At most this many outsiders are reported per checkpoint (all are
/// recorded in the image).
const MAX_REPORTED: usize = 64;

/// One outsider kept for the reply: plain data, because what the capture
/// allocates lives in the checkpoint's scratch arena, reset once the
/// image is written.
#[derive(Clone, Copy)]
struct Slot {
    pid: i32,
    why: Why,
    name: [u8; 16],
    len: u8,
}

const EMPTY: Slot = Slot {
    pid: 0,
    why: Why::NotLoaded,
    name: [0; 16],
    len: 0,
};

/// The outsiders found by the last checkpoint, for the reply to the
/// coordinator (checkpoint thread only).
static LAST: std::sync::Mutex<([Slot; MAX_REPORTED], usize)> =
    std::sync::Mutex::new(([EMPTY; MAX_REPORTED], 0));

/// This checkpoint's children outside checkpoint control, as its image
/// records them: `zombies` gains one killed by SIGKILL per outsider (pid
/// order kept); the list is kept for the reply.
pub fn record_outsiders(zombies: &mut Vec<Zombie>) {
    let o = outsiders();
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    last.1 = 0;
    for x in &o {
        crate::log!(
            "child {} ({}) is not under checkpoint control: {}",
            x.pid,
            x.program,
            x.why.text()
        );
        if last.1 < MAX_REPORTED {
            let mut slot = Slot {
                pid: x.pid,
                why: x.why,
                ..EMPTY
            };
            let n = x.program.len().min(16);
            slot.name[..n].copy_from_slice(&x.program.as_bytes()[..n]);
            slot.len = n as u8;
            let i = last.1;
            last.0[i] = slot;
            last.1 += 1;
        }
    }
    zombies.extend(as_killed(&o));
    zombies.sort_by_key(|z| z.pid.0);
    zombies.dedup_by_key(|z| z.pid.0);
}

/// The outsiders of the last checkpoint (taken).
pub fn take_outsiders() -> Vec<Outsider> {
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let n = std::mem::take(&mut last.1);
    last.0[..n]
        .iter()
        .map(|s| Outsider {
            pid: s.pid,
            program: String::from_utf8_lossy(&s.name[..s.len as usize]).into_owned(),
            why: s.why,
        })
        .collect()
}
