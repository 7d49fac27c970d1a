//! System V IPC objects of the computation (format 1.3, SYSV_IPC; spec
//! §4.13): segments, semaphore sets and message queues of the IPC
//! namespace whose creator is the user this process runs as, listed in
//! `/proc/sysvipc`, captured once per checkpoint by the process of the
//! computation with the lowest pid. A segment is captured only when a
//! process of the computation attaches it (its pages are the attaching
//! regions', SHARED_MEMORY). Messages are copied without being taken off
//! their queue (msgrcv MSG_COPY).

use ckpt_format::{IpcPerm, SharedMapping, ShmObject, SysvIpc, SysvMessage, SysvMsgQueue};
use ckpt_format::{SysvSem, SysvShm};

use crate::sys::shm as sys;

/// One line of a `/proc/sysvipc` file as numbers (perms read as octal).
fn rows(path: &str) -> Vec<Vec<i64>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| {
            l.split_whitespace()
                .enumerate()
                .map(|(i, w)| {
                    if i == 2 {
                        i64::from_str_radix(w, 8).unwrap_or(0)
                    } else {
                        w.parse().unwrap_or(0)
                    }
                })
                .collect::<Vec<i64>>()
        })
        .filter(|r| r.len() >= 8)
        .collect()
}

/// `struct ipc_perm` from a row: key, id, mode, then the uid, gid, cuid
/// and cgid columns starting at `uids`.
fn perm(r: &[i64], uids: usize) -> IpcPerm {
    let at = |i: usize| r.get(i).copied().unwrap_or(0);
    IpcPerm {
        key: at(0) as i32,
        id: at(1) as i32,
        mode: at(2) as u32,
        uid: at(uids) as u32,
        gid: at(uids + 1) as u32,
        cuid: at(uids + 2) as u32,
        cgid: at(uids + 3) as u32,
    }
}

/// The computation's System V objects, when this process is the one of
/// the computation that holds them (the lowest pid) and there are any.
pub fn capture(own: &[SharedMapping]) -> Option<SysvIpc> {
    let uid = sys::euid();
    let mine = |p: &IpcPerm| p.cuid == uid;
    let shm: Vec<(IpcPerm, u64)> = rows("/proc/sysvipc/shm")
        .iter()
        .map(|r| (perm(r, 7), r.get(3).copied().unwrap_or(0) as u64))
        .filter(|(p, _)| mine(p))
        .collect();
    let sem: Vec<(IpcPerm, usize)> = rows("/proc/sysvipc/sem")
        .iter()
        .map(|r| (perm(r, 4), r.get(3).copied().unwrap_or(0) as usize))
        .filter(|(p, _)| mine(p))
        .collect();
    let msg: Vec<(IpcPerm, usize)> = rows("/proc/sysvipc/msg")
        .iter()
        .map(|r| (perm(r, 7), r.get(4).copied().unwrap_or(0) as usize))
        .filter(|(p, _)| mine(p))
        .collect();
    if shm.is_empty() && sem.is_empty() && msg.is_empty() {
        return None;
    }
    let others = super::shm::computation(false);
    let me = crate::sys::getpid();
    if others.iter().any(|(pid, _)| *pid < me) {
        return None; // a lower pid holds them
    }
    // Segments some process of the computation attaches.
    let mut attached: Vec<u64> = own
        .iter()
        .filter(|m| m.object == ShmObject::SysV)
        .map(|m| m.inode)
        .collect();
    attached.extend(others.iter().flat_map(|(_, maps)| {
        maps.iter()
            .filter(|m| m.object == ShmObject::SysV)
            .map(|m| m.inode)
    }));
    let shm = shm
        .into_iter()
        .filter(|(p, _)| attached.contains(&(p.id as u64)))
        .map(|(perm, size)| SysvShm { perm, size })
        .collect();
    let sem = sem
        .into_iter()
        .filter_map(|(perm, n)| match sys::sem_values(perm.id, n) {
            Some(values) => Some(SysvSem { perm, values }),
            None => {
                crate::log!("System V semaphore set {}: GETALL failed", perm.id);
                None
            }
        })
        .collect();
    let msgmax: usize = std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192);
    let mut buf = vec![0u8; msgmax.min(1 << 24) + 8];
    let msg = msg
        .into_iter()
        .map(|(perm, qnum)| {
            let mut messages = Vec::with_capacity(qnum);
            for i in 0..qnum {
                match sys::msg_copy(perm.id, i, &mut buf) {
                    Ok((mtype, text)) => messages.push(SysvMessage { mtype, text }),
                    Err(e) => {
                        crate::log!(
                            "System V message queue {}: message {i} of {qnum}: {e}",
                            perm.id
                        );
                        break;
                    }
                }
            }
            SysvMsgQueue {
                perm,
                qbytes: sys::msg_qbytes(perm.id).unwrap_or(0),
                messages,
            }
        })
        .collect();
    Some(SysvIpc { shm, sem, msg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_gives_the_perm() {
        // key semid perms nsems uid gid cuid cgid otime ctime
        let r = [0i64, 3, 0o600, 1, 1000, 100, 1000, 100, 0, 0];
        let p = perm(&r, 4);
        assert_eq!(
            (p.id, p.mode, p.uid, p.gid, p.cuid, p.cgid),
            (3, 0o600, 1000, 100, 1000, 100)
        );
    }
}
