//! System calls that make shared-memory objects and System V IPC objects
//! again (shm.rs).

use std::io;

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// ftruncate(2).
pub fn set_size(fd: i32, size: u64) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::ftruncate(fd, size as libc::off_t) } as libc::c_long).map(drop)
}

/// Frees `[off, off + len)` of the file (reads as zeros after), keeping
/// its size.
pub fn punch_hole(fd: i32, off: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    check(unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off as libc::off_t,
            len as libc::off_t,
        )
    } as libc::c_long)
    .map(drop)
}

/// Writes all of `buf` at file offset `off`.
pub fn pwrite_all(fd: i32, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the kernel reads at most buf.len() bytes of buf.
        let n = check(unsafe {
            libc::pwrite(
                fd,
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                off as libc::off_t,
            )
        } as libc::c_long)? as usize;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwrite wrote nothing",
            ));
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

/// Makes the next System V object of `kind` ("shm", "sem" or "msg")
/// created in this IPC namespace take id `id`
/// (`/proc/sys/kernel/<kind>_next_id`).
pub fn set_next_id(kind: &str, id: i32) -> io::Result<()> {
    let path = format!("/proc/sys/kernel/{kind}_next_id");
    std::fs::write(&path, format!("{id}"))
        .map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))
}

/// shmget(key, size, IPC_CREAT | IPC_EXCL | mode).
pub fn shm_create(key: i32, size: u64, mode: u32) -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    check(unsafe {
        libc::shmget(
            key,
            size as libc::size_t,
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
        )
    } as libc::c_long)
    .map(|r| r as i32)
}

/// Attaches segment `shmid` wherever the kernel likes, read-write.
pub fn shm_attach(shmid: i32) -> io::Result<u64> {
    // SAFETY: a null address lets the kernel choose a free one.
    let p = unsafe { libc::shmat(shmid, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(p as u64)
}

/// Copies `bytes` to `at + off` of a segment attached at `at`, `len`
/// bytes long.
pub fn shm_write(at: u64, len: u64, off: u64, bytes: &[u8]) -> io::Result<()> {
    let end = off.checked_add(bytes.len() as u64);
    if end.is_none_or(|e| e > len) {
        return Err(io::Error::other(format!(
            "{} bytes at offset {off:#x} do not fit a {len}-byte segment",
            bytes.len()
        )));
    }
    // SAFETY: [at + off, at + off + bytes.len()) lies inside the segment
    // we attached read-write at `at` (checked above), which nothing else
    // of ours uses.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (at + off) as *mut u8, bytes.len());
    }
    Ok(())
}

/// Detaches the segment attached at `at`.
pub fn shm_detach(at: u64) {
    // SAFETY: `at` is an attachment of ours that nothing refers to.
    unsafe { libc::shmdt(at as *const libc::c_void) };
}

/// Marks segment `shmid` for removal once the last process detaches it.
pub fn shm_remove(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID does not read the buffer argument.
    check(unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)
        .map(drop)
}

/// semget(key, nsems, IPC_CREAT | IPC_EXCL | mode).
pub fn sem_create(key: i32, nsems: usize, mode: u32) -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    check(unsafe {
        libc::semget(
            key,
            nsems as i32,
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
        )
    } as libc::c_long)
    .map(|r| r as i32)
}

/// Sets every semaphore of set `semid` (semctl SETALL).
pub fn sem_set_all(semid: i32, values: &[u16]) -> io::Result<()> {
    let mut v = values.to_vec();
    // SAFETY: SETALL reads one unsigned short per semaphore of the set,
    // which we made with values.len() semaphores.
    check(unsafe { libc::semctl(semid, 0, libc::SETALL, v.as_mut_ptr()) } as libc::c_long).map(drop)
}

/// msgget(key, IPC_CREAT | IPC_EXCL | mode).
pub fn msg_create(key: i32, mode: u32) -> io::Result<i32> {
    // SAFETY: plain syscall without pointers.
    check(unsafe {
        libc::msgget(
            key,
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32,
        )
    } as libc::c_long)
    .map(|r| r as i32)
}

/// Sets the byte limit of queue `msqid` (msgctl IPC_SET).
pub fn msg_set_qbytes(msqid: i32, qbytes: u64) -> io::Result<()> {
    // SAFETY: zeroed msqid_ds is a valid value; IPC_STAT fills it and
    // IPC_SET reads it back.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    check(unsafe { libc::msgctl(msqid, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    ds.msg_qbytes = qbytes as _;
    // SAFETY: as above.
    check(unsafe { libc::msgctl(msqid, libc::IPC_SET, &mut ds) } as libc::c_long).map(drop)
}

/// Queues one message (mtype, text) on `msqid`, without waiting.
pub fn msg_send(msqid: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_le_bytes());
    buf.extend_from_slice(text);
    // SAFETY: msgsnd reads a long mtype then text.len() bytes from buf.
    check(unsafe {
        libc::msgsnd(
            msqid,
            buf.as_ptr() as *const libc::c_void,
            text.len(),
            libc::IPC_NOWAIT,
        )
    } as libc::c_long)
    .map(drop)
}
