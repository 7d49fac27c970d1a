//! Shared-memory objects (SHARED_MEMORY, format 1.3; spec §4.12): each
//! object that regions of the images map (anonymous shared memory,
//! POSIX shm, memfd) is made once, before the tree is forked, filled
//! with the pages its regions' chunks hold in every image (each page is
//! in one image only), and put on a descriptor above every image's fds.
//! Every process of the tree inherits the descriptors; its final stage
//! maps its regions from them, shared, and then closes them with every
//! other fd that is not the program's. A write by one process is seen by
//! the others, as before the checkpoint.
//!
//! System V objects (SYSV_IPC, §4.13) are made in a new IPC namespace
//! ([`make_sysv`], called once it exists, before the tree is forked),
//! each with its id (`/proc/sys/kernel/*_next_id`), key and mode; the
//! segments are filled from the chunks of the regions that attach them,
//! which the final stage of each process attaches again at their
//! addresses (shmat SHM_REMAP); semaphore sets get their values, queues
//! their messages.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ckpt_format::{SharedMapping, ShmObject, SysvIpc};

use crate::image::Image;
use crate::{log, sys};

const PAGE: u64 = 4096;

/// Identity of an object across the images: (object tag, dev, inode).
type Key = (u8, u64, u64);

fn key(m: &SharedMapping) -> Key {
    let tag = match m.object {
        ShmObject::Anonymous => 0,
        ShmObject::PosixShm => 1,
        ShmObject::Memfd => 2,
        ShmObject::SysV => 3,
    };
    (tag, m.dev, m.inode)
}

/// The memfd name an anonymous object is made with: the writer takes a
/// memfd of this name for anonymous shared memory again, so the object
/// stays anonymous from one restart to the next.
pub const ANON_NAME: &std::ffi::CStr = c"ckpt-anon-shared";

/// The objects made by [`share`], by key: set once before the tree is
/// forked and inherited by every process of it.
static OBJECTS: OnceLock<BTreeMap<Key, i32>> = OnceLock::new();

/// The System V objects to make, and the bytes of each segment (shmid →
/// (offset, bytes) pieces), gathered by [`share`] for [`make_sysv`].
struct SysvPlan {
    ipc: SysvIpc,
    contents: BTreeMap<i32, Vec<(u64, Vec<u8>)>>,
}

static SYSV: OnceLock<SysvPlan> = OnceLock::new();

/// Whether the images hold System V objects, to be made in a new IPC
/// namespace.
pub fn needs_ipc_namespace() -> bool {
    SYSV.get()
        .is_some_and(|p| !(p.ipc.shm.is_empty() && p.ipc.sem.is_empty() && p.ipc.msg.is_empty()))
}

/// The descriptor of the object `m` maps, made by [`share`].
pub fn fd_of(m: &SharedMapping) -> Option<i32> {
    OBJECTS.get()?.get(&key(m)).copied()
}

/// The descriptor of the memfd object with this identity (st_dev and
/// inode of a descriptor the program held on it), so that the descriptor
/// comes back on the very object its mappings share.
pub fn memfd_of(dev: u64, inode: u64) -> Option<i32> {
    OBJECTS.get()?.get(&(2, dev, inode)).copied()
}

/// One object: what it is, its size, its name, and every region that maps
/// it: (image, region, offset of the region's start in the object).
struct Object {
    object: ShmObject,
    size: u64,
    name: Vec<u8>,
    maps: Vec<(usize, usize, u64)>,
}

/// Makes every object the images' SHARED_MEMORY records name, once, and
/// fills it. Returns the descriptors made (above every image's fds), for
/// the processes that fork the tree to close once their children exist.
pub fn share(imgs: &[Image]) -> Result<Vec<i32>, String> {
    let mut objects: BTreeMap<Key, Object> = BTreeMap::new();
    for (i, img) in imgs.iter().enumerate() {
        for m in &img.shared_memory {
            let r = img
                .regions
                .iter()
                .position(|r| r.start == m.start)
                .ok_or_else(|| {
                    format!(
                        "{}: shared mapping at {:#x} has no region",
                        img.path.display(),
                        m.start.0
                    )
                })?;
            let len = img.regions[r].end.0 - img.regions[r].start.0;
            let o = objects.entry(key(m)).or_insert_with(|| Object {
                object: m.object,
                size: 0,
                name: img.regions[r].name.clone(),
                maps: Vec::new(),
            });
            o.size = o.size.max(m.size).max(m.offset.saturating_add(len));
            o.maps.push((i, r, m.offset));
        }
    }
    gather_sysv(imgs, &objects)?;
    objects.retain(|_, o| o.object != ShmObject::SysV);
    if objects.is_empty() {
        return Ok(Vec::new());
    }
    let base = imgs
        .iter()
        .flat_map(|i| i.fds.iter().map(|e| e.fd.0))
        .max()
        .unwrap_or(2)
        + 1;
    let mut made = BTreeMap::new();
    let mut fds = Vec::new();
    for (k, o) in &objects {
        match make(imgs, o, base) {
            Ok(fd) => {
                fds.push(fd);
                made.insert(*k, fd);
            }
            Err(e) => {
                for fd in fds {
                    sys::close(fd);
                }
                return Err(format!(
                    "shared memory {} ({:?}, inode {}): {e}",
                    String::from_utf8_lossy(&o.name),
                    o.object,
                    k.2
                ));
            }
        }
    }
    let _ = OBJECTS.set(made);
    Ok(fds)
}

/// Merges the images' SYSV_IPC records (one image normally holds them;
/// an id seen twice is taken once) and reads the pages of every segment
/// from the chunks of the regions that attach it.
fn gather_sysv(imgs: &[Image], objects: &BTreeMap<Key, Object>) -> Result<(), String> {
    let mut ipc = SysvIpc::default();
    for i in imgs.iter().filter_map(|i| i.sysv_ipc.as_ref()) {
        for s in &i.shm {
            if !ipc.shm.iter().any(|x| x.perm.id == s.perm.id) {
                ipc.shm.push(*s);
            }
        }
        for s in &i.sem {
            if !ipc.sem.iter().any(|x| x.perm.id == s.perm.id) {
                ipc.sem.push(s.clone());
            }
        }
        for q in &i.msg {
            if !ipc.msg.iter().any(|x| x.perm.id == q.perm.id) {
                ipc.msg.push(q.clone());
            }
        }
    }
    let mut contents: BTreeMap<i32, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
    for o in objects.values().filter(|o| o.object == ShmObject::SysV) {
        let Some(&(i0, r0, _)) = o.maps.first() else {
            continue;
        };
        let shmid = imgs[i0]
            .shared_memory
            .iter()
            .find(|m| m.start == imgs[i0].regions[r0].start)
            .map_or(-1, |m| m.inode as i32);
        if !ipc.shm.iter().any(|s| s.perm.id == shmid) {
            return Err(format!(
                "System V segment {shmid} is attached at {:#x} in {} but the images do not hold it (SYSV_IPC)",
                imgs[i0].regions[r0].start.0,
                imgs[i0].path.display()
            ));
        }
        let pieces = contents.entry(shmid).or_default();
        stored_pages(imgs, o, |at, buf| {
            pieces.push((at, buf));
            Ok(())
        })?;
    }
    let _ = SYSV.set(SysvPlan { ipc, contents });
    Ok(())
}

/// Makes the System V objects [`share`] gathered, in the current (new)
/// IPC namespace, each with its id. A segment marked for removal is
/// marked again at once and stays attached here, so that it lives until
/// the restored processes have attached it (Linux lets a process attach
/// a segment marked for removal by its id).
pub fn make_sysv() -> Result<(), String> {
    let Some(plan) = SYSV.get() else {
        return Ok(());
    };
    let ipc = &plan.ipc;
    let same = |what: &str, want: i32, got: i32| {
        if want == got {
            Ok(())
        } else {
            Err(format!("System V {what} {want} came back as {got}"))
        }
    };
    let mut shm: Vec<_> = ipc.shm.iter().collect();
    shm.sort_by_key(|s| s.perm.id);
    for s in shm {
        let id = s.perm.id;
        let e = |what: &str, err: std::io::Error| format!("System V segment {id}: {what}: {err}");
        sys::shm::set_next_id("shm", id).map_err(|err| e("next id", err))?;
        let got = sys::shm::shm_create(s.perm.key, s.size, s.perm.mode)
            .map_err(|err| e("shmget", err))?;
        same("segment", id, got)?;
        let at = sys::shm::shm_attach(id).map_err(|err| e("shmat", err))?;
        let len = s.size.div_ceil(PAGE) * PAGE;
        for (off, bytes) in plan.contents.get(&id).into_iter().flatten() {
            let n = (bytes.len() as u64).min(len.saturating_sub(*off)) as usize;
            sys::shm::shm_write(at, len, *off, &bytes[..n]).map_err(|err| e("filling", err))?;
        }
        if s.perm.mode & 0o1000 != 0 {
            sys::shm::shm_remove(id).map_err(|err| e("IPC_RMID", err))?;
        } else {
            sys::shm::shm_detach(at);
        }
    }
    let mut sem: Vec<_> = ipc.sem.iter().collect();
    sem.sort_by_key(|s| s.perm.id);
    for s in sem {
        let id = s.perm.id;
        let e =
            |what: &str, err: std::io::Error| format!("System V semaphore set {id}: {what}: {err}");
        sys::shm::set_next_id("sem", id).map_err(|err| e("next id", err))?;
        let got = sys::shm::sem_create(s.perm.key, s.values.len(), s.perm.mode)
            .map_err(|err| e("semget", err))?;
        same("semaphore set", id, got)?;
        sys::shm::sem_set_all(id, &s.values).map_err(|err| e("SETALL", err))?;
    }
    let mut msg: Vec<_> = ipc.msg.iter().collect();
    msg.sort_by_key(|q| q.perm.id);
    for q in msg {
        let id = q.perm.id;
        let e =
            |what: &str, err: std::io::Error| format!("System V message queue {id}: {what}: {err}");
        sys::shm::set_next_id("msg", id).map_err(|err| e("next id", err))?;
        let got = sys::shm::msg_create(q.perm.key, q.perm.mode).map_err(|err| e("msgget", err))?;
        same("message queue", id, got)?;
        if q.qbytes != 0 {
            if let Err(err) = sys::shm::msg_set_qbytes(id, q.qbytes) {
                log::warn(&format!(
                    "System V message queue {id}: its byte limit {} cannot be set: {err}",
                    q.qbytes
                ));
            }
        }
        for (k, m) in q.messages.iter().enumerate() {
            sys::shm::msg_send(id, m.mtype, &m.text)
                .map_err(|err| e(&format!("message {k}"), err))?;
        }
    }
    log::info(&format!(
        "System V: {} segments, {} semaphore sets, {} message queues made",
        ipc.shm.len(),
        ipc.sem.len(),
        ipc.msg.len()
    ));
    Ok(())
}

/// The name of a memfd as the maps show it: `/memfd:NAME (deleted)`.
fn memfd_name(region_name: &[u8]) -> std::ffi::CString {
    let n = region_name.strip_prefix(b"/memfd:").unwrap_or(region_name);
    let n = n.strip_suffix(b" (deleted)").unwrap_or(n);
    let n: Vec<u8> = n.iter().copied().filter(|&b| b != 0).take(249).collect();
    std::ffi::CString::new(n).unwrap_or_else(|_| ANON_NAME.to_owned())
}

fn make(imgs: &[Image], o: &Object, base: i32) -> Result<i32, String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let fd = match o.object {
        ShmObject::Anonymous => sys::memfd(ANON_NAME).map_err(|e| io("memfd_create", e))?,
        ShmObject::Memfd => sys::memfd(&memfd_name(&o.name)).map_err(|e| io("memfd_create", e))?,
        ShmObject::PosixShm => {
            sys::open(&o.name, libc::O_RDWR | libc::O_CREAT, 0o600).map_err(|e| io("open", e))?
        }
        ShmObject::SysV => return Err("a System V segment has no descriptor".into()),
    };
    let high = sys::dup_at_least(fd, base);
    sys::close(fd);
    let fd = high.map_err(|e| io("moving the descriptor", e))?;
    let r = fill(imgs, o, fd);
    if let Err(e) = r {
        sys::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Reads every page chunk the images store for the regions that map `o`
/// and hands it to `each` with its offset in the object.
fn stored_pages(
    imgs: &[Image],
    o: &Object,
    mut each: impl FnMut(u64, Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    for &(i, r, off) in &o.maps {
        let img = &imgs[i];
        let start = img.regions[r].start.0;
        for (c, meta) in img.chunks.iter().enumerate() {
            if meta.region as usize != r {
                continue;
            }
            let mut buf = vec![0u8; (meta.pages as u64 * PAGE) as usize];
            img.read_chunk(c, &mut buf)?;
            each(off + (meta.addr.0 - start), buf)?;
        }
    }
    Ok(())
}

/// Sizes the object and writes every stored page of it; the rest of what
/// the regions map reads as zero (a POSIX shm file keeps the bytes no
/// region maps).
fn fill(imgs: &[Image], o: &Object, fd: i32) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    sys::shm::set_size(fd, o.size).map_err(|e| io("ftruncate", e))?;
    if o.object == ShmObject::PosixShm {
        for &(i, r, off) in &o.maps {
            let reg = &imgs[i].regions[r];
            let len = (reg.end.0 - reg.start.0).min(o.size.saturating_sub(off));
            if len > 0 {
                sys::shm::punch_hole(fd, off, len).map_err(|e| io("zeroing", e))?;
            }
        }
    }
    let mut pages = 0u64;
    stored_pages(imgs, o, |at, buf| {
        sys::shm::pwrite_all(fd, &buf, at).map_err(|e| io("writing its pages", e))?;
        pages += buf.len() as u64 / PAGE;
        Ok(())
    })?;
    log::info(&format!(
        "shared memory {} ({:?}): {} bytes, {} regions map it, {pages} pages stored",
        String::from_utf8_lossy(&o.name),
        o.object,
        o.size,
        o.maps.len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_names_come_from_the_maps() {
        assert_eq!(memfd_name(b"/memfd:pool (deleted)").as_bytes(), b"pool");
        assert_eq!(memfd_name(b"odd").as_bytes(), b"odd");
    }
}
