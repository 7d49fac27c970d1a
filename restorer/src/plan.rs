//! Builds the flat plan the final stage ([`crate::blob`]) interprets.
//!
//! Ops go to one array, everything they point to (messages, thread
//! blocks, the restart block, structs passed to syscalls) to a data area
//! whose absolute address is known while building.

use crate::blob::*;

/// Syscall numbers used by the plan (x86_64).
pub mod nr {
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const MREMAP: u64 = 25;
    pub const SHMAT: u64 = 30;
    pub const SETITIMER: u64 = 38;
    pub const PRCTL: u64 = 157;
    pub const CLOSE_RANGE: u64 = 436;
}

/// The plan under construction.
pub struct Plan {
    ops: Vec<[u64; OP_WORDS]>,
    data: Vec<u8>,
    data_base: u64,
    data_cap: u64,
}

/// Prefix of every failure message.
const PREFIX: &str = "ckpt-restore: final stage failed: ";

impl Plan {
    /// A plan whose data area will live at `data_base` (at most `data_cap` bytes).
    pub fn new(data_base: u64, data_cap: u64) -> Self {
        Plan {
            ops: Vec::new(),
            data: Vec::new(),
            data_base,
            data_cap,
        }
    }

    /// Appends `bytes` to the data area (16-byte aligned); returns their address.
    pub fn data(&mut self, bytes: &[u8]) -> u64 {
        while !self.data.len().is_multiple_of(16) {
            self.data.push(0);
        }
        let addr = self.data_base + self.data.len() as u64;
        self.data.extend_from_slice(bytes);
        addr
    }

    /// Replaces bytes previously appended with [`Plan::data`].
    pub fn overwrite(&mut self, addr: u64, bytes: &[u8]) {
        let off = (addr - self.data_base) as usize;
        self.data[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn desc(&mut self, what: &str) -> (u64, u64) {
        let s = format!("{PREFIX}{what} ret=0x");
        (self.data(s.as_bytes()), s.len() as u64)
    }

    /// A syscall op.
    pub fn syscall(&mut self, what: &str, nr: u64, args: [u64; 6], check: u64, expect: u64) {
        let (d, dl) = self.desc(what);
        self.ops.push([
            OP_SYSCALL, check, nr, args[0], args[1], args[2], args[3], args[4], args[5], expect, d,
            dl,
        ]);
    }

    pub fn munmap(&mut self, addr: u64, len: u64) {
        self.syscall(
            &format!("munmap {addr:#x}+{len:#x}"),
            nr::MUNMAP,
            [addr, len, 0, 0, 0, 0],
            CHECK_ERR,
            0,
        );
    }

    /// Moves `[from, from+len)` to `to` (MREMAP_MAYMOVE | MREMAP_FIXED).
    pub fn mremap(&mut self, from: u64, len: u64, to: u64) {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        self.syscall(
            &format!("mremap {from:#x}+{len:#x} -> {to:#x}"),
            nr::MREMAP,
            [from, len, len, flags, to, 0],
            CHECK_EQ,
            to,
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn mmap_fixed(
        &mut self,
        what: &str,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i32,
        off: u64,
    ) {
        let flags = flags | libc::MAP_FIXED as u64;
        self.syscall(
            &format!("mmap {what} at {addr:#x}+{len:#x}"),
            nr::MMAP,
            [addr, len, prot, flags, fd as i64 as u64, off],
            CHECK_EQ,
            addr,
        );
    }

    pub fn mprotect(&mut self, addr: u64, len: u64, prot: u64) {
        self.syscall(
            &format!("mprotect {addr:#x}+{len:#x} {prot}"),
            nr::MPROTECT,
            [addr, len, prot, 0, 0, 0],
            CHECK_ERR,
            0,
        );
    }

    /// Copies `len` bytes from `src` to `dst`.
    pub fn copy(&mut self, src: u64, dst: u64, len: u64) {
        let (d, dl) = self.desc("copy");
        self.ops
            .push([OP_COPY, 0, 0, src, dst, len, 0, 0, 0, 0, d, dl]);
    }

    /// Creates a thread from the thread block at `block`; its tid must be `tid`.
    pub fn clone_thread(&mut self, block: u64, tid: i32) {
        let (d, dl) = self.desc(&format!("clone3 thread tid {tid}"));
        self.ops
            .push([OP_CLONE, 0, 0, block, 0, 0, 0, 0, 0, tid as u64, d, dl]);
    }

    /// The current thread becomes the thread of the block at `block`.
    pub fn resume(&mut self, block: u64) {
        let (d, dl) = self.desc("resume");
        self.ops
            .push([OP_RESUME, 0, 0, block, 0, 0, 0, 0, 0, 0, d, dl]);
    }

    /// A message for a thread block's own failures.
    pub fn thread_desc(&mut self, tid: i32) -> (u64, u64) {
        self.desc(&format!(
            "setting up thread {tid} (fs/robust list/rseq/sigaltstack)"
        ))
    }

    /// The op array and the data area, ready to be copied into the hole.
    pub fn finish(mut self) -> Result<(Vec<u8>, Vec<u8>), String> {
        self.ops.push([OP_END; OP_WORDS]);
        if self.data.len() as u64 > self.data_cap {
            return Err(format!(
                "plan data {} bytes exceeds its {} byte area",
                self.data.len(),
                self.data_cap
            ));
        }
        let ops = self
            .ops
            .iter()
            .flat_map(|op| op.iter().flat_map(|w| w.to_le_bytes()))
            .collect();
        Ok((ops, self.data))
    }
}

/// Serialises a thread block (see the `TB_*` offsets).
#[derive(Default, Clone, Copy, Debug)]
pub struct ThreadBlock {
    pub fs_base: u64,
    pub robust: u64,
    pub robust_len: u64,
    pub rseq_addr: u64,
    pub rseq_len: u64,
    pub rseq_sig: u64,
    pub ctid: u64,
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub ss_size: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rbx: u64,
    pub rbp: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub desc: u64,
    pub desc_len: u64,
    /// clone3: stack area for the new thread (before it loads its own rsp).
    pub stack: u64,
    pub stack_size: u64,
    pub tid: i32,
}

/// clone3 flags for a thread of the restored process.
pub const THREAD_CLONE_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

impl ThreadBlock {
    /// The block's bytes; `self_addr` is where it will live (set_tid points into it).
    pub fn to_bytes(self, self_addr: u64) -> [u8; TB_SIZE] {
        let mut b = [0u8; TB_SIZE];
        let mut put = |off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(TB_FS_BASE, self.fs_base);
        put(TB_ROBUST, self.robust);
        put(TB_ROBUST_LEN, self.robust_len);
        put(TB_RSEQ_ADDR, self.rseq_addr);
        put(TB_RSEQ_LEN, self.rseq_len);
        put(TB_RSEQ_SIG, self.rseq_sig);
        put(TB_CTID, self.ctid);
        put(TB_SS, self.ss_sp);
        put(TB_SS + 8, self.ss_flags as u32 as u64);
        put(TB_SS + 16, self.ss_size);
        put(TB_RIP, self.rip);
        put(TB_RSP, self.rsp);
        put(TB_RBX, self.rbx);
        put(TB_RBP, self.rbp);
        put(TB_R12, self.r12);
        put(TB_R13, self.r13);
        put(TB_R14, self.r14);
        put(TB_R15, self.r15);
        put(TB_DESC, self.desc);
        put(TB_DESC_LEN, self.desc_len);
        // struct clone_args
        let ca = TB_CLONE_ARGS;
        put(ca, THREAD_CLONE_FLAGS); // flags
        put(ca + 8, 0); // pidfd
        put(ca + 16, 0); // child_tid
        put(ca + 24, 0); // parent_tid
        put(ca + 32, 0); // exit_signal
        put(ca + 40, self.stack); // stack
        put(ca + 48, self.stack_size); // stack_size
        put(ca + 56, 0); // tls
        put(ca + 64, self_addr + TB_SET_TID as u64); // set_tid
        put(ca + 72, 1); // set_tid_size
        put(ca + 80, 0); // cgroup
        put(TB_SET_TID, self.tid as u32 as u64);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_fixed_size_and_end() {
        let mut p = Plan::new(0x1000_0000, 1 << 20);
        p.munmap(0x1000, 0x2000);
        p.copy(1, 2, 3);
        let (ops, data) = p.finish().unwrap();
        assert_eq!(ops.len(), 3 * OP_BYTES as usize);
        assert_eq!(&ops[2 * 96..2 * 96 + 8], &[0; 8]);
        assert!(String::from_utf8_lossy(&data).contains("munmap 0x1000+0x2000"));
    }

    #[test]
    fn thread_block_points_set_tid_at_itself() {
        let t = ThreadBlock {
            tid: 77,
            ..Default::default()
        };
        let b = t.to_bytes(0x5000);
        let w = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(w(TB_CLONE_ARGS + 64), 0x5000 + TB_SET_TID as u64);
        assert_eq!(w(TB_SET_TID) as u32, 77);
        assert_eq!(CLONE_ARGS_SIZE, 88);
    }
}
