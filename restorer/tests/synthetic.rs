//! Restores images built here, without the writer: a tiny no-libc program
//! (machine code below, copied into the image) with two threads. It prints
//! what it sees after the restore: its pid and tid (set_tid in a new pid
//! namespace), a callee-saved register and its fs base (thread resume),
//! the restart-info block the restorer filled, and a second thread created
//! by clone3 whose exit clears its clear-child-tid word (set_tid_address).
//!
//! Needs the static restorer built first: `scripts/build.sh` (or
//! `cargo build -p ckpt-restore --target x86_64-unknown-linux-musl`).
//! Unprivileged runs use a user namespace; both paths are exercised when
//! the test runs as root and `setpriv` can drop to `nobody`.

use std::arch::global_asm;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_format::abi::RESTART_INFO_MAGIC;
use ckpt_format::*;

// The restorer's own maps and vdso parsers, reused to describe this
// process's vdso the way the writer does.
#[allow(dead_code)]
#[path = "../src/layout.rs"]
mod layout;
#[allow(dead_code)]
#[path = "../src/maps.rs"]
mod maps;
#[allow(dead_code)]
#[path = "../src/sys.rs"]
mod sys;
#[allow(dead_code)]
#[path = "../src/vdso.rs"]
mod vdso;

global_asm!(
    r#"
    .pushsection .rodata.synth_payload,"a",@progbits
    .globl synth_payload_start
    .globl synth_payload_end
    .globl synth_leader
    .globl synth_thread
    .p2align 4
synth_payload_start:
/* rbx = data base, r12 = a value the restorer must load */
synth_leader:
    mov eax, 39
    syscall
    mov rdi, rax
    lea rsi, [rip + .Ls_pid]
    call .Ls_print
    mov eax, 186
    syscall
    mov rdi, rax
    lea rsi, [rip + .Ls_tid]
    call .Ls_print
    mov rdi, r12
    lea rsi, [rip + .Ls_r12]
    call .Ls_print
    mov rdi, qword ptr [rbx + 0x108]
    lea rsi, [rip + .Ls_restarted]
    call .Ls_print
    mov rdi, qword ptr [rbx + 0x110]
    lea rsi, [rip + .Ls_scratch]
    call .Ls_print
    sub rsp, 16
    mov edi, 0x1003
    mov rsi, rsp
    mov eax, 158
    syscall
    mov rdi, qword ptr [rsp]
    add rsp, 16
    lea rsi, [rip + .Ls_fs]
    call .Ls_print
    xor edi, edi
    mov eax, 12
    syscall
    mov rdi, rax
    lea rsi, [rip + .Ls_brk]
    call .Ls_print
    /* clock_gettime through the image's vdso entry point, if any */
    mov rax, qword ptr [rbx + 0x4000]
    test rax, rax
    jz .Ls_wait
    sub rsp, 16
    mov edi, 1
    mov rsi, rsp
    call rax
    mov rdi, rax
    lea rsi, [rip + .Ls_clock_ret]
    call .Ls_print
    mov rdi, qword ptr [rsp]
    add rsp, 16
    lea rsi, [rip + .Ls_clock_sec]
    call .Ls_print
.Ls_wait:
    mov eax, dword ptr [rbx]
    test eax, eax
    jz .Ls_joined
    mov rdi, rbx
    xor esi, esi
    mov edx, eax
    xor r10d, r10d
    mov eax, 202
    syscall
    jmp .Ls_wait
.Ls_joined:
    xor edi, edi
    lea rsi, [rip + .Ls_restored]
    call .Ls_print
    xor edi, edi
    mov eax, 231
    syscall
    ud2
synth_thread:
    mov eax, 186
    syscall
    mov rdi, rax
    lea rsi, [rip + .Ls_thread]
    call .Ls_print
    sub rsp, 16
    mov edi, 0x1003
    mov rsi, rsp
    mov eax, 158
    syscall
    mov rdi, qword ptr [rsp]
    add rsp, 16
    lea rsi, [rip + .Ls_thread_fs]
    call .Ls_print
    mov rdi, r12
    lea rsi, [rip + .Ls_thread_r12]
    call .Ls_print
    xor edi, edi
    mov eax, 60
    syscall
    ud2
/* print "<label> <rdi>\n" (label NUL-terminated at rsi) with one write */
.Ls_print:
    push rbx
    sub rsp, 96
    mov r8, rsp
.Ls_copy:
    mov al, byte ptr [rsi]
    test al, al
    jz .Ls_num
    mov byte ptr [r8], al
    inc r8
    inc rsi
    jmp .Ls_copy
.Ls_num:
    mov byte ptr [r8], 32
    inc r8
    lea r9, [rsp + 95]
    mov r10, r9
    mov rax, rdi
    mov ecx, 10
.Ls_digit:
    xor edx, edx
    div rcx
    add dl, 48
    dec r9
    mov byte ptr [r9], dl
    test rax, rax
    jnz .Ls_digit
.Ls_move:
    mov al, byte ptr [r9]
    mov byte ptr [r8], al
    inc r8
    inc r9
    cmp r9, r10
    jne .Ls_move
    mov byte ptr [r8], 10
    inc r8
    mov rsi, rsp
    mov rdx, r8
    sub rdx, rsp
    mov edi, 1
    mov eax, 1
    syscall
    add rsp, 96
    pop rbx
    ret
.Ls_pid: .asciz "pid"
.Ls_tid: .asciz "tid"
.Ls_r12: .asciz "r12"
.Ls_restarted: .asciz "restarted"
.Ls_scratch: .asciz "scratch_nonzero"
.Ls_fs: .asciz "fs"
.Ls_restored: .asciz "restored"
.Ls_thread: .asciz "thread"
.Ls_thread_fs: .asciz "thread_fs"
.Ls_thread_r12: .asciz "thread_r12"
.Ls_clock_ret: .asciz "clock_ret"
.Ls_brk: .asciz "brk"
.Ls_clock_sec: .asciz "clock_sec"
synth_payload_end:
    .popsection
"#
);

extern "C" {
    fn synth_payload_start();
    fn synth_payload_end();
    fn synth_leader();
    fn synth_thread();
}

fn addr(f: unsafe extern "C" fn()) -> u64 {
    f as *const () as u64
}

const CODE: u64 = 0x5000_0000;
const DATA: u64 = 0x5001_0000;
const DATA_LEN: u64 = 0x10000;
const PID: i32 = 4242;
/// The program break the image records (PR_SET_MM_MAP must restore it).
const BRK: u64 = 0x5100_0000;
const PAGE: usize = 4096;

fn payload() -> Vec<u8> {
    let (s, e) = (addr(synth_payload_start), addr(synth_payload_end));
    // SAFETY: the two labels delimit the payload bytes in our own rodata.
    let bytes = unsafe { std::slice::from_raw_parts(s as *const u8, (e - s) as usize) };
    let mut v = bytes.to_vec();
    v.resize(v.len().div_ceil(PAGE) * PAGE, 0);
    v
}

fn thread(tid: i32, entry: u64, rsp: u64, fs: u64, r12: u64, ctid: u64) -> Thread {
    let mut t = Thread {
        tid: Pid(tid),
        name: format!("t{tid}"),
        ..Default::default()
    };
    t.flags = ThreadFlags(if tid == PID { ThreadFlags::LEADER } else { 0 });
    t.regs.fs_base = fs;
    t.clear_child_tid = Addr(ctid);
    t.sigaltstack.flags = libc::SS_DISABLE;
    t.resume = ResumeContext {
        rip: entry,
        rsp,
        rbx: DATA,
        r12,
        ..Default::default()
    };
    t
}

/// Writes the synthetic image; `threads` = 1 or 2; `with_vdso`: the image
/// holds this process's vvar/vdso (vdso pages stored) and the program
/// calls clock_gettime through its vdso entry point.
fn build_image(path: &Path, nthreads: usize, zstd: bool) {
    build_image_vdso(path, nthreads, zstd, false)
}

fn build_image_vdso(path: &Path, nthreads: usize, zstd: bool, with_vdso: bool) {
    let code = payload();
    let base = addr(synth_payload_start);
    let mut data = vec![0u8; DATA_LEN as usize];
    data[0..4].copy_from_slice(&((PID + 1) as u32).to_le_bytes()); // ctid word
    data[0x100..0x108].copy_from_slice(&RESTART_INFO_MAGIC.to_le_bytes());
    let mut extra_regions = Vec::new();
    let mut vdso_bytes = Vec::new();
    let mut vdso_symbols = Vec::new();
    if with_vdso {
        let v = maps::VdsoSet::from_maps(&maps::current().unwrap());
        for (kind, r) in [
            (RegionKind::Vvar, v.vvar),
            (RegionKind::VvarVclock, v.vvar_vclock),
            (RegionKind::Vdso, v.vdso),
        ] {
            let Some(r) = r else { continue };
            let prot = if kind == RegionKind::Vdso {
                Prot::READ | Prot::EXEC
            } else {
                Prot::READ
            };
            extra_regions.push(Region {
                start: Addr(r.start),
                end: Addr(r.end),
                prot: Prot(prot),
                kind,
                ..Default::default()
            });
        }
        let vd = v.vdso.unwrap();
        vdso_bytes = sys::mapped(vd.start, vd.len()).to_vec();
        let syms = vdso::symbols(&vdso_bytes).unwrap();
        let cg = syms
            .iter()
            .find(|s| s.name == "__vdso_clock_gettime")
            .unwrap();
        data[0x4000..0x4008].copy_from_slice(&(vd.start + cg.offset).to_le_bytes());
        vdso_symbols = syms
            .iter()
            .map(|s| VdsoSymbol {
                name: s.name.clone(),
                offset: s.offset,
            })
            .collect();
    }
    let header = ImageHeader {
        host: HostFingerprint {
            vdso_symbols,
            ..Default::default()
        },
        writer_version: "synthetic".into(),
        arch: 62,
        page_size: PAGE as u32,
        vpid: Pid(PID),
        real_pid: PID,
        program: "synthetic".into(),
        unique_id: "synthetic-1".into(),
        generation: 1,
        ..Default::default()
    };
    let process = Process {
        pid: Pid(PID),
        ppid: Pid(1),
        pgid: Pid(PID),
        sid: Pid(PID),
        umask: 0o022,
        cwd: b"/".to_vec(),
        restart_info_addr: Addr(DATA + 0x100),
        exe: b"/bin/true".to_vec(),
        mm: MmLayout {
            start_code: Addr(CODE),
            end_code: Addr(CODE + code.len() as u64),
            start_data: Addr(DATA),
            end_data: Addr(DATA + 0x1000),
            start_brk: Addr(BRK),
            brk: Addr(BRK),
            start_stack: Addr(DATA + 0x8000),
            arg_start: Addr(DATA + 0x9000),
            arg_end: Addr(DATA + 0x9010),
            env_start: Addr(DATA + 0x9010),
            env_end: Addr(DATA + 0x9020),
        },
        ..Default::default()
    };
    let mut threads = vec![thread(
        PID,
        CODE + addr(synth_leader) - base,
        DATA + 0x8000,
        DATA + 0x2000,
        4660,
        0,
    )];
    if nthreads == 2 {
        threads.push(thread(
            PID + 1,
            CODE + addr(synth_thread) - base,
            DATA + 0xf000,
            DATA + 0x3000,
            22136,
            DATA,
        ));
    } else {
        data[0..4].fill(0);
    }
    let mut regions = vec![
        Region {
            start: Addr(CODE),
            end: Addr(CODE + code.len() as u64),
            prot: Prot(Prot::READ | Prot::EXEC),
            kind: RegionKind::Anon,
            ..Default::default()
        },
        Region {
            start: Addr(DATA),
            end: Addr(DATA + DATA_LEN),
            prot: Prot(Prot::READ | Prot::WRITE),
            kind: RegionKind::Stack,
            ..Default::default()
        },
    ];
    regions.extend(extra_regions);
    let vdso_index = regions.iter().position(|r| r.kind == RegionKind::Vdso);
    let f = std::fs::File::create(path).unwrap();
    let mut enc = Encoder::new(f, &header).unwrap();
    enc.process(&process).unwrap();
    for t in &threads {
        enc.thread(t).unwrap();
    }
    for r in &regions {
        enc.region(r).unwrap();
    }
    let mut stored = vec![(0, CODE, &code), (1, DATA, &data)];
    if let Some(i) = vdso_index {
        stored.push((i, regions[i].start.0, &vdso_bytes));
    }
    for (i, start, bytes) in stored {
        let meta = ChunkMeta {
            region: i as u32,
            addr: Addr(start),
            pages: (bytes.len() / PAGE) as u32,
            encoding: if zstd {
                ChunkEncoding::Zstd
            } else {
                ChunkEncoding::Raw
            },
        };
        let c = if zstd {
            EncodedChunk::zstd(meta, bytes, 3).unwrap()
        } else {
            EncodedChunk::raw(meta, bytes)
        };
        enc.chunk(&c).unwrap();
    }
    enc.finish().unwrap();
}

fn restorer() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in [
        "target/x86_64-unknown-linux-musl/debug/ckpt-restore",
        "target/debug/ckpt-restore",
    ] {
        let p = root.join(p);
        if p.exists() {
            return p;
        }
    }
    panic!("build the restorer first: scripts/build.sh");
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-restore-synth-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.join(name)
}

fn run(cmd: &mut Command) -> (i32, Vec<String>, String) {
    let out = cmd
        .env(
            "CKPT_TMPDIR",
            std::env::temp_dir().join("ckpt-restore-synth-logs"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_two_threads(code: i32, lines: &[String], stderr: &str) {
    assert_eq!(code, 0, "stdout {lines:?}\nstderr {stderr}");
    for want in [
        format!("pid {PID}"),
        format!("tid {PID}"),
        "r12 4660".into(),
        "restarted 1".into(),
        format!("fs {}", DATA + 0x2000),
        format!("thread {}", PID + 1),
        format!("thread_fs {}", DATA + 0x3000),
        "thread_r12 22136".into(),
        format!("brk {BRK}"),
        "restored 0".into(),
    ] {
        assert!(
            lines.contains(&want),
            "missing {want:?} in {lines:?}\nstderr {stderr}"
        );
    }
    assert!(!lines.contains(&"scratch_nonzero 0".to_string()));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("restored 0"),
        "{lines:?}"
    );
}

#[test]
fn one_thread_restores() {
    let img = tmp("one.ckpt");
    build_image(&img, 1, false);
    let (code, lines, stderr) = run(Command::new(restorer()).arg(&img));
    assert_eq!(code, 0, "stdout {lines:?}\nstderr {stderr}");
    assert!(lines.contains(&format!("pid {PID}")), "{lines:?} {stderr}");
    assert!(
        lines.contains(&"restarted 1".to_string()),
        "{lines:?} {stderr}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("restored 0"));
}

#[test]
fn two_threads_restore_with_their_tids() {
    let img = tmp("two.ckpt");
    build_image(&img, 2, true);
    let (code, lines, stderr) = run(Command::new(restorer()).arg("--debug").arg(&img));
    check_two_threads(code, &lines, &stderr);
}

#[test]
fn forced_vdso_mismatch_still_restores() {
    let img = tmp("vdso.ckpt");
    build_image(&img, 2, false);
    let (code, lines, stderr) = run(Command::new(restorer())
        .arg("--test-vdso-mismatch")
        .arg(&img));
    check_two_threads(code, &lines, &stderr);
}

fn check_clock(lines: &[String], stderr: &str) {
    assert!(
        lines.contains(&"clock_ret 0".to_string()),
        "{lines:?}\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("clock_sec ") && l != "clock_sec 0"),
        "{lines:?}"
    );
}

#[test]
fn vdso_moves_to_the_image_address() {
    let img = tmp("vdso-same.ckpt");
    build_image_vdso(&img, 2, false, true);
    let (code, lines, stderr) = run(Command::new(restorer()).arg("--debug").arg(&img));
    check_two_threads(code, &lines, &stderr);
    check_clock(&lines, &stderr);
    assert!(stderr.contains("vdso: same as the image's"), "{stderr}");
}

#[test]
fn vdso_mismatch_redirects_old_entry_points() {
    let img = tmp("vdso-diff.ckpt");
    build_image_vdso(&img, 2, true, true);
    let (code, lines, stderr) = run(Command::new(restorer())
        .args(["--debug", "--test-vdso-mismatch"])
        .arg(&img));
    check_two_threads(code, &lines, &stderr);
    check_clock(&lines, &stderr);
    assert!(stderr.contains("entry points of the old vdso"), "{stderr}");
}

#[test]
fn unprivileged_restore_uses_a_user_namespace() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs root to drop to nobody with setpriv");
        return;
    }
    let img = tmp("unpriv.ckpt");
    build_image(&img, 2, false);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, lines, stderr) = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(restorer())
        .arg(&img)
        .env("CKPT_TMPDIR", "/tmp"));
    check_two_threads(code, &lines, &stderr);
}

#[test]
fn corrupt_image_is_refused_before_anything_starts() {
    let img = tmp("corrupt.ckpt");
    build_image(&img, 2, false);
    let mut bytes = std::fs::read(&img).unwrap();
    // Flip a byte inside the code chunk's pages.
    let code = payload();
    let pos = bytes
        .windows(16)
        .position(|w| w == &code[..16])
        .expect("raw chunk present");
    bytes[pos + 5] ^= 0x40;
    std::fs::write(&img, &bytes).unwrap();
    let (code, lines, stderr) = run(Command::new(restorer()).arg(&img));
    assert_eq!(code, 2, "{lines:?} {stderr}");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(stderr.contains("corrupt"), "{stderr}");
}
