//! Shared memory and System V IPC: residency of shared pages (mincore),
//! semaphore values and queued messages.

/// Which pages of `[addr, addr + out.len() pages)` are in memory: for a
/// shared mapping, whether the object has the page at all (in the page
/// cache or swap cache), mapped into this process's page tables or not
/// (a page another process wrote is not present in ours). `out[i]` bit 0
/// per page. False when mincore fails (then `out` is untouched).
pub fn resident(addr: u64, out: &mut [u8]) -> bool {
    // SAFETY: mincore writes one byte per page of the range into `out`,
    // which has exactly that many; the range is a mapping of ours
    // (mincore fails with ENOMEM otherwise, it never faults pages in).
    unsafe {
        libc::mincore(
            addr as *mut libc::c_void,
            out.len() * 4096,
            out.as_mut_ptr() as *mut libc::c_uchar,
        ) == 0
    }
}

/// The values of the `n` semaphores of set `semid` (semctl GETALL).
pub fn sem_values(semid: i32, n: usize) -> Option<Vec<u16>> {
    let mut v = vec![0u16; n.max(1)];
    // SAFETY: GETALL writes one unsigned short per semaphore of the set
    // (n, from the kernel's own listing) into v, which holds at least n.
    let r = unsafe { libc::semctl(semid, 0, libc::GETALL, v.as_mut_ptr()) };
    v.truncate(n);
    (r >= 0).then_some(v)
}

/// The byte limit of message queue `msqid` (msgctl IPC_STAT `msg_qbytes`).
pub fn msg_qbytes(msqid: i32) -> Option<u64> {
    // SAFETY: zeroed msqid_ds is a valid value; IPC_STAT fills it.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one struct msqid_ds into ds.
    let r = unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut ds) };
    (r >= 0).then_some(ds.msg_qbytes as u64)
}

/// MSG_COPY (Linux, CONFIG_CHECKPOINT_RESTORE): msgrcv copies the
/// message at position `msgtyp` without removing it.
const MSG_COPY: i32 = 0o40000;

/// A copy of message number `index` of queue `msqid` (oldest is 0),
/// without taking it off the queue: (mtype, text). `buf` is scratch, at
/// least 8 + the largest message.
pub fn msg_copy(msqid: i32, index: usize, buf: &mut [u8]) -> std::io::Result<(i64, Vec<u8>)> {
    // SAFETY: msgrcv writes a long mtype and at most buf.len() - 8 text
    // bytes into buf (MSG_NOERROR truncates longer messages).
    let n = unsafe {
        libc::msgrcv(
            msqid,
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len() - 8,
            index as libc::c_long,
            libc::IPC_NOWAIT | MSG_COPY | libc::MSG_NOERROR,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mtype = i64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
    Ok((mtype, buf[8..8 + n as usize].to_vec()))
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}
