//! `ckpt_save_context`: our own setjmp, in the `ResumeContext` field order
//! (rip, rsp, rbx, rbp, r12, r13, r14, r15), without pointer mangling.
//! Returns 0 when saving; the restorer jumps to the saved rip with the
//! saved rsp and callee-saved registers and rax = 1, so it "returns" 1.

/// Same layout as `ckpt_format::ResumeContext` (eight u64 in that order).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RawResume {
    pub rip: u64,
    pub rsp: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl RawResume {
    pub fn to_model(self) -> ckpt_format::ResumeContext {
        ckpt_format::ResumeContext {
            rip: self.rip,
            rsp: self.rsp,
            rbx: self.rbx,
            rbp: self.rbp,
            r12: self.r12,
            r13: self.r13,
            r14: self.r14,
            r15: self.r15,
        }
    }
}

std::arch::global_asm!(
    ".globl ckpt_save_context",
    ".type ckpt_save_context,@function",
    "ckpt_save_context:",
    "mov rax, [rsp]",
    "mov [rdi], rax",
    "lea rax, [rsp + 8]",
    "mov [rdi + 8], rax",
    "mov [rdi + 16], rbx",
    "mov [rdi + 24], rbp",
    "mov [rdi + 32], r12",
    "mov [rdi + 40], r13",
    "mov [rdi + 48], r14",
    "mov [rdi + 56], r15",
    "xor eax, eax",
    "ret",
    ".size ckpt_save_context, . - ckpt_save_context",
);

extern "C" {
    /// Saves the caller's resume context; 0 now, 1 after a restart.
    pub fn ckpt_save_context(ctx: *mut RawResume) -> u64;
}
