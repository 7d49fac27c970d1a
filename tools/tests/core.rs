//! `ckpt image core`: a two-thread C program is stopped at a known point,
//! an image is built from the live process (/proc/PID/maps, /proc/PID/mem
//! and PTRACE_GETREGS — independent of the writer), turned into a core
//! file, and gdb, given the program and the core, lists both threads,
//! prints the global variable and the local of the known frame.

use ckpt_format::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PROGRAM: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

volatile long global_var = 0x1234abcd;

static void *worker(void *arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}

static int known_frame(int known) {
    volatile int local = known * 2;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
    return local;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    usleep(100000);
    return known_frame(21);
}
"#;

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-core-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn kind_of(name: &str) -> RegionKind {
    match name {
        "[heap]" => RegionKind::Heap,
        "[stack]" => RegionKind::Stack,
        "[vdso]" => RegionKind::Vdso,
        n if n.starts_with('/') => RegionKind::File,
        _ => RegionKind::Anon,
    }
}

/// An image of the stopped process `pid`, built from /proc and ptrace.
fn image_of(pid: i32, exe: &Path) -> Vec<u8> {
    let mut threads = Vec::new();
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    tids.sort();
    for &tid in &tids {
        // SAFETY: plain ptrace requests on a thread of our own child; the
        // register struct is written by the kernel and read back below.
        let regs = unsafe {
            assert_eq!(
                libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0),
                0,
                "seize {tid}"
            );
            assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
            let mut st = 0;
            assert_eq!(libc::waitpid(tid, &mut st, libc::__WALL), tid);
            let mut r: libc::user_regs_struct = std::mem::zeroed();
            assert_eq!(libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut r), 0);
            r
        };
        threads.push(Thread {
            tid: Pid(tid),
            flags: ThreadFlags(if tid == pid { ThreadFlags::LEADER } else { 0 }),
            name: "prog".into(),
            regs: GpRegs {
                r15: regs.r15,
                r14: regs.r14,
                r13: regs.r13,
                r12: regs.r12,
                rbp: regs.rbp,
                rbx: regs.rbx,
                r11: regs.r11,
                r10: regs.r10,
                r9: regs.r9,
                r8: regs.r8,
                rax: regs.rax,
                rcx: regs.rcx,
                rdx: regs.rdx,
                rsi: regs.rsi,
                rdi: regs.rdi,
                orig_rax: regs.orig_rax,
                rip: regs.rip,
                cs: regs.cs,
                eflags: regs.eflags,
                rsp: regs.rsp,
                ss: regs.ss,
                fs_base: regs.fs_base,
                gs_base: regs.gs_base,
                ds: regs.ds,
                es: regs.es,
                fs: regs.fs,
                gs: regs.gs,
            },
            ..Default::default()
        });
    }
    let auxv_bytes = std::fs::read(format!("/proc/{pid}/auxv")).unwrap();
    let auxv = auxv_bytes
        .chunks_exact(16)
        .map(|e| {
            (
                u64::from_le_bytes(e[..8].try_into().unwrap()),
                u64::from_le_bytes(e[8..].try_into().unwrap()),
            )
        })
        .collect();
    let header = ImageHeader {
        writer_version: "core test".into(),
        arch: 62,
        page_size: 4096,
        generation: 1,
        vpid: Pid(pid),
        real_pid: pid,
        program: "prog".into(),
        ..Default::default()
    };
    let process = Process {
        pid: Pid(pid),
        exe: exe.as_os_str().as_encoded_bytes().to_vec(),
        cmdline: vec![exe.as_os_str().as_encoded_bytes().to_vec()],
        auxv,
        ..Default::default()
    };
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut e = Encoder::new(Vec::new(), &header).unwrap();
    e.process(&process).unwrap();
    for t in &threads {
        e.thread(t).unwrap();
    }
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (s, en) = f[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(en, 16).unwrap(),
        );
        let name = f.get(5).copied().unwrap_or("");
        let perms = f[1].as_bytes();
        if perms[0] != b'r' || name == "[vvar]" || name == "[vsyscall]" || name.starts_with("[vvar")
        {
            continue;
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut bytes, start).is_err() {
            continue;
        }
        let mut prot = Prot::READ;
        if perms[1] == b'w' {
            prot |= Prot::WRITE;
        }
        if perms[2] == b'x' {
            prot |= Prot::EXEC;
        }
        let backing = name.starts_with('/').then(|| {
            let m = std::fs::metadata(name).unwrap();
            FileBacking {
                file: FileIdentity {
                    path: name.as_bytes().to_vec(),
                    dev: m.dev(),
                    inode: m.ino(),
                    size: m.size(),
                    mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                },
                offset: u64::from_str_radix(f[2], 16).unwrap(),
                storage: FileStorage::Embedded,
            }
        });
        let r = e
            .region(&Region {
                start: Addr(start),
                end: Addr(end),
                prot: Prot(prot),
                shared: perms[3] == b's',
                grows_down: name == "[stack]",
                kind: kind_of(name),
                name: name.as_bytes().to_vec(),
                backing,
            })
            .unwrap();
        for (k, chunk) in bytes.chunks(16 * 4096).enumerate() {
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            let meta = ChunkMeta {
                region: r,
                addr: Addr(start + (k * 16 * 4096) as u64),
                pages: (chunk.len() / 4096) as u32,
                encoding: ChunkEncoding::Raw,
            };
            e.chunk(&EncodedChunk::zstd(meta, chunk, 1).unwrap())
                .unwrap();
        }
    }
    for &tid in &tids {
        // SAFETY: detaching our own tracee (stopped by PTRACE_INTERRUPT).
        unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    }
    e.finish().unwrap()
}

#[test]
fn gdb_reads_the_core_of_an_image() {
    if Command::new("gdb").arg("--version").output().is_err() {
        eprintln!("gdb is not installed: skipped");
        return;
    }
    let dir = tempdir();
    let src = dir.join("prog.c");
    let exe = dir.join("prog");
    std::fs::write(&src, PROGRAM).unwrap();
    let st = Command::new("cc")
        .args(["-g", "-O0", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let mut child = Command::new(&exe).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as i32;
    let bytes = image_of(pid, &exe);
    child.kill().unwrap();
    let _ = child.wait();
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);

    let img_path = dir.join("prog.ckpt");
    std::fs::write(&img_path, &bytes).unwrap();
    let core = dir.join("prog.core");
    let img = MappedImage::open(&img_path).unwrap();
    assert_eq!(img.threads().len(), 2);
    ckpt_tools::image::core::run(&img_path, &core, false).unwrap();

    let gdb = Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            "info threads",
            "-ex",
            "thread apply all bt",
        ])
        .args([
            "-ex",
            "p/x global_var",
            "-ex",
            "frame function known_frame",
            "-ex",
            "p local",
        ])
        .arg(&exe)
        .arg(&core)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&gdb.stdout).into_owned() + &String::from_utf8_lossy(&gdb.stderr);
    assert!(text.contains("0x1234abcd"), "{text}");
    assert!(text.contains("known_frame"), "{text}");
    assert!(text.contains("= 42"), "{text}");
    let threads = text
        .lines()
        .filter(|l| {
            l.contains("LWP")
                && l.trim_start()
                    .starts_with(|c: char| c == '*' || c.is_ascii_digit())
        })
        .count();
    assert!(threads >= 2, "both threads listed:\n{text}");
    for t in img.threads() {
        assert!(text.contains(&format!("LWP {}", t.tid.0)), "{text}");
    }
}
