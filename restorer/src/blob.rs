//! The final stage: a position-independent interpreter of a flat plan,
//! written in assembly so it calls no libc, uses no statics and no absolute
//! addresses. It is copied into the hole and entered with `rdi` = the first
//! op and `rsp` = a stack in the hole (see [`enter`]).
//!
//! Op layout (12 little-endian u64 words, [`OP_WORDS`]):
//! `kind, check, nr, a0, a1, a2, a3, a4, a5, expect, desc_ptr, desc_len`.
//! - `SYSCALL`: `syscall(nr, a0..a5)`; `check` = 0 ignore the result,
//!   1 fail on -errno, 2 fail unless the result equals `expect`.
//! - `COPY`: `rep movsb` of `a2` bytes from `a0` to `a1`.
//! - `CLONE`: clone3 a thread from the thread block at `a0`; the parent
//!   checks the new tid equals `expect`, the child resumes the thread.
//! - `RESUME`: the current thread resumes the thread block at `a0`.
//!
//! On failure the stage writes `desc` then the result as 16 hex digits to
//! fd 2 and calls exit_group([`FAIL_EXIT`]).
//!
//! Thread block layout: see the `TB_*` offsets.

use std::arch::global_asm;

pub const OP_WORDS: usize = 12;
pub const OP_BYTES: u64 = (OP_WORDS * 8) as u64;
pub const OP_END: u64 = 0;
pub const OP_SYSCALL: u64 = 1;
pub const OP_COPY: u64 = 2;
pub const OP_CLONE: u64 = 3;
pub const OP_RESUME: u64 = 4;
pub const CHECK_NONE: u64 = 0;
pub const CHECK_ERR: u64 = 1;
pub const CHECK_EQ: u64 = 2;
/// Exit status of the restored process when the final stage fails
/// (hard-coded in the assembly).
#[allow(dead_code)]
pub const FAIL_EXIT: i32 = 125;

/// Thread block field offsets (bytes).
pub const TB_FS_BASE: usize = 0;
pub const TB_ROBUST: usize = 8;
pub const TB_ROBUST_LEN: usize = 16;
pub const TB_RSEQ_ADDR: usize = 24;
pub const TB_RSEQ_LEN: usize = 32;
pub const TB_RSEQ_SIG: usize = 40;
pub const TB_CTID: usize = 48;
/// A `stack_t`: sp, flags (i32 + pad), size.
pub const TB_SS: usize = 56;
pub const TB_RIP: usize = 80;
pub const TB_RSP: usize = 88;
pub const TB_RBX: usize = 96;
pub const TB_RBP: usize = 104;
pub const TB_R12: usize = 112;
pub const TB_R13: usize = 120;
pub const TB_R14: usize = 128;
pub const TB_R15: usize = 136;
pub const TB_DESC: usize = 144;
pub const TB_DESC_LEN: usize = 152;
/// `struct clone_args` (88 bytes, clone3 v2 with set_tid).
pub const TB_CLONE_ARGS: usize = 160;
#[cfg(test)]
pub const CLONE_ARGS_SIZE: usize = 88;
/// The one-element set_tid array.
pub const TB_SET_TID: usize = 248;
pub const TB_SIZE: usize = 256;

global_asm!(
    r#"
    .pushsection ckpt_blob,"ax",@progbits
    .globl ckpt_blob_start
    .globl ckpt_blob_end
    .p2align 4
ckpt_blob_start:
    cld
    mov r12, rdi
.Lckb_loop:
    mov rax, qword ptr [r12]
    cmp rax, 1
    je .Lckb_syscall
    cmp rax, 2
    je .Lckb_copy
    cmp rax, 3
    je .Lckb_clone
    cmp rax, 4
    je .Lckb_resume
    mov rax, -22
    jmp .Lckb_fail_op
.Lckb_syscall:
    mov rax, qword ptr [r12+16]
    mov rdi, qword ptr [r12+24]
    mov rsi, qword ptr [r12+32]
    mov rdx, qword ptr [r12+40]
    mov r10, qword ptr [r12+48]
    mov r8, qword ptr [r12+56]
    mov r9, qword ptr [r12+64]
    syscall
    mov rcx, qword ptr [r12+8]
    cmp rcx, 1
    je .Lckb_chk_err
    cmp rcx, 2
    je .Lckb_chk_eq
    jmp .Lckb_next
.Lckb_chk_err:
    cmp rax, -4095
    jae .Lckb_fail_op
    jmp .Lckb_next
.Lckb_chk_eq:
    cmp rax, qword ptr [r12+72]
    jne .Lckb_fail_op
.Lckb_next:
    add r12, 96
    jmp .Lckb_loop
.Lckb_copy:
    mov rsi, qword ptr [r12+24]
    mov rdi, qword ptr [r12+32]
    mov rcx, qword ptr [r12+40]
    rep movsb
    jmp .Lckb_next
.Lckb_clone:
    mov rbx, qword ptr [r12+24]
    lea rdi, [rbx+160]
    mov esi, 88
    mov eax, 435
    syscall
    test rax, rax
    jz .Lckb_thread
    cmp rax, qword ptr [r12+72]
    jne .Lckb_fail_op
    jmp .Lckb_next
.Lckb_resume:
    mov rbx, qword ptr [r12+24]
.Lckb_thread:
    mov edi, 0x1002
    mov rsi, qword ptr [rbx]
    mov eax, 158
    syscall
    test rax, rax
    jnz .Lckb_fail_thread
    mov rdi, qword ptr [rbx+8]
    test rdi, rdi
    jz .Lckb_no_robust
    mov rsi, qword ptr [rbx+16]
    mov eax, 273
    syscall
    test rax, rax
    jnz .Lckb_fail_thread
.Lckb_no_robust:
    mov rsi, qword ptr [rbx+32]
    test rsi, rsi
    jz .Lckb_no_rseq
    mov rdi, qword ptr [rbx+24]
    xor edx, edx
    mov r10, qword ptr [rbx+40]
    mov eax, 334
    syscall
    test rax, rax
    jnz .Lckb_fail_thread
.Lckb_no_rseq:
    mov rdi, qword ptr [rbx+48]
    mov eax, 218
    syscall
    lea rdi, [rbx+56]
    xor esi, esi
    mov eax, 131
    syscall
    test rax, rax
    jnz .Lckb_fail_thread
    mov rcx, qword ptr [rbx+80]
    mov rsp, qword ptr [rbx+88]
    mov rbp, qword ptr [rbx+104]
    mov r12, qword ptr [rbx+112]
    mov r13, qword ptr [rbx+120]
    mov r14, qword ptr [rbx+128]
    mov r15, qword ptr [rbx+136]
    mov rbx, qword ptr [rbx+96]
    mov eax, 1
    jmp rcx
.Lckb_fail_thread:
    mov r14, rax
    mov rsi, qword ptr [rbx+144]
    mov rdx, qword ptr [rbx+152]
    jmp .Lckb_die
.Lckb_fail_op:
    mov r14, rax
    mov rsi, qword ptr [r12+80]
    mov rdx, qword ptr [r12+88]
.Lckb_die:
    mov edi, 2
    mov eax, 1
    syscall
    sub rsp, 64
    and rsp, -16
    mov byte ptr [rsp+16], 10
    lea rdi, [rsp+16]
    mov ecx, 16
.Lckb_hex:
    mov eax, r14d
    and eax, 15
    cmp eax, 10
    jb .Lckb_digit
    add eax, 87
    jmp .Lckb_store
.Lckb_digit:
    add eax, 48
.Lckb_store:
    dec rdi
    mov byte ptr [rdi], al
    shr r14, 4
    dec ecx
    jnz .Lckb_hex
    mov rsi, rdi
    mov edx, 17
    mov edi, 2
    mov eax, 1
    syscall
    mov edi, 125
    mov eax, 231
    syscall
    ud2
ckpt_blob_end:
    .popsection
"#
);

extern "C" {
    fn ckpt_blob_start();
    fn ckpt_blob_end();
}

/// The machine code of the final stage.
pub fn code() -> &'static [u8] {
    let s = ckpt_blob_start as *const () as usize;
    let e = ckpt_blob_end as *const () as usize;
    // SAFETY: both labels delimit one contiguous run of bytes in our own
    // executable's text, which stays mapped and read-only for the life of
    // the process.
    unsafe { std::slice::from_raw_parts(s as *const u8, e - s) }
}

/// Switches to `stack_top` and jumps to the blob copy at `entry` with
/// `rdi = first_op`. Never returns.
///
/// # Safety
/// `entry` must hold a copy of [`code`] mapped executable, `stack_top` a
/// writable 16-byte-aligned stack top, `first_op` a valid plan; all three
/// in memory the plan does not unmap.
pub unsafe fn enter(entry: u64, stack_top: u64, first_op: u64) -> ! {
    // SAFETY: per the function contract; nothing of the current stack or
    // code is used after the jump.
    unsafe {
        std::arch::asm!(
            "mov rsp, {stk}",
            "jmp {entry}",
            stk = in(reg) stack_top,
            entry = in(reg) entry,
            in("rdi") first_op,
            options(noreturn)
        )
    }
}
