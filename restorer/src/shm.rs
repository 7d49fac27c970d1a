//! Shared-memory objects (SHARED_MEMORY, format 1.3; spec §4.12): each
//! object that regions of the images map (anonymous shared memory,
//! POSIX shm, memfd) is made once, before the tree is forked, filled
//! with the pages its regions' chunks hold in every image (each page is
//! in one image only), and put on a descriptor above every image's fds.
//! Every process of the tree inherits the descriptors; its final stage
//! maps its regions from them, shared, and then closes them with every
//! other fd that is not the program's. A write by one process is seen by
//! the others, as before the checkpoint.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ckpt_format::{SharedMapping, ShmObject};

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

/// The descriptor of the object `m` maps, made by [`share`].
pub fn fd_of(m: &SharedMapping) -> Option<i32> {
    OBJECTS.get()?.get(&key(m)).copied()
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
        ShmObject::SysV => {
            return Err("System V shared memory segments are not restored".into());
        }
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
    for &(i, r, off) in &o.maps {
        let img = &imgs[i];
        let start = img.regions[r].start.0;
        for (c, meta) in img.chunks.iter().enumerate() {
            if meta.region as usize != r {
                continue;
            }
            let mut buf = vec![0u8; (meta.pages as u64 * PAGE) as usize];
            img.read_chunk(c, &mut buf)?;
            sys::shm::pwrite_all(fd, &buf, off + (meta.addr.0 - start))
                .map_err(|e| io("writing its pages", e))?;
            pages += meta.pages as u64;
        }
    }
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
