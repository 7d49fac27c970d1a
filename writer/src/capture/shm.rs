//! Shared-memory objects the process maps (format 1.3, SHARED_MEMORY):
//! `MAP_SHARED | MAP_ANONYMOUS` memory, POSIX shm (`/dev/shm`), memfds
//! and System V segments, as `/proc/PID/maps` names them.
//!
//! Each object's pages are stored once across the images of one
//! checkpoint: a process stores, for each of its mappings of an object,
//! the object pages that no mapping of a lower pid of the computation
//! (nor one of its own at a lower address) covers. The other processes
//! are found in `/proc`: every process whose maps hold this writer
//! library and whose environment holds the same coordinator variables
//! as ours is taken for one of the computation (all of them are stopped
//! in the checkpoint barrier while this runs). Which pages exist is
//! asked of the object (mincore), not of this process's page tables: a
//! page another process wrote is not present in ours.

use std::collections::BTreeMap;

use ckpt_format::{Addr, RegionKind, SharedMapping, ShmObject};

use super::{PlannedRegion, PAGE};
use crate::mem;

/// Identity of an object: what it is, its device and inode.
type Key = (u8, u64, u64);

/// One line of a maps file that maps a shared-memory object.
#[derive(Clone, Debug, PartialEq)]
struct ObjMap {
    start: u64,
    end: u64,
    offset: u64,
    dev: u64,
    inode: u64,
    object: ShmObject,
    name: Vec<u8>,
}

impl ObjMap {
    fn key(&self) -> Key {
        (tag(self.object), self.dev, self.inode)
    }
    /// The object's bytes this line maps.
    fn span(&self) -> (u64, u64) {
        (self.offset, self.offset + (self.end - self.start))
    }
}

fn tag(o: ShmObject) -> u8 {
    match o {
        ShmObject::Anonymous => 0,
        ShmObject::PosixShm => 1,
        ShmObject::Memfd => 2,
        ShmObject::SysV => 3,
    }
}

/// What object a shared mapping named `name` maps, if a shared-memory one.
fn object_of(name: &[u8]) -> Option<ShmObject> {
    let deleted = name.ends_with(b" (deleted)");
    // The restorer makes anonymous shared memory as a memfd of this name
    // (restorer/src/shm.rs, ANON_NAME).
    if name == b"/dev/zero (deleted)" || name == b"/memfd:ckpt-anon-shared (deleted)" {
        Some(ShmObject::Anonymous)
    } else if name.starts_with(b"/SYSV") {
        Some(ShmObject::SysV)
    } else if name.starts_with(b"/memfd:") {
        Some(ShmObject::Memfd)
    } else if name.starts_with(b"/dev/shm/") {
        // Unlinked: nothing left to open by name.
        Some(if deleted {
            ShmObject::Anonymous
        } else {
            ShmObject::PosixShm
        })
    } else {
        None
    }
}

/// One maps line: (start, end, shared, offset, dev, inode, name).
type Line = (u64, u64, bool, u64, u64, u64, Vec<u8>);

fn parse_line(line: &[u8]) -> Option<Line> {
    let mut f = line.splitn(6, |&b| b == b' ');
    let range = f.next()?;
    let perms = f.next()?;
    let off = f.next()?;
    let dev = f.next()?;
    let inode = f.next()?;
    let name: Vec<u8> = f
        .next()
        .map(|n| n.iter().skip_while(|&&b| b == b' ').copied().collect())
        .unwrap_or_default();
    let hex = |b: &[u8]| u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    let mut r = range.split(|&b| b == b'-');
    let (start, end) = (hex(r.next()?)?, hex(r.next()?)?);
    let mut d = dev.split(|&b| b == b':');
    let (major, minor) = (hex(d.next()?)?, hex(d.next()?)?);
    // As stat's st_dev (glibc's makedev), so that a descriptor's file
    // identity names the same object.
    let dev =
        (major & 0xfff) << 8 | (major & !0xfff) << 32 | (minor & 0xff) | (minor & !0xff) << 12;
    let inode = std::str::from_utf8(inode).ok()?.parse().ok()?;
    Some((
        start,
        end,
        perms.get(3) == Some(&b's'),
        hex(off)?,
        dev,
        inode,
        name,
    ))
}

fn parse(data: &[u8]) -> Vec<Line> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .collect()
}

fn objects(lines: &[Line]) -> Vec<ObjMap> {
    lines
        .iter()
        .filter(|l| l.2)
        .filter_map(|(start, end, _, offset, dev, inode, name)| {
            Some(ObjMap {
                start: *start,
                end: *end,
                offset: *offset,
                dev: *dev,
                inode: *inode,
                object: object_of(name)?,
                name: name.clone(),
            })
        })
        .collect()
}

/// The (dev, inode) of the file mapped at `addr` in `lines`.
fn file_at(lines: &[Line], addr: u64) -> Option<(u64, u64)> {
    lines
        .iter()
        .find(|l| l.0 <= addr && addr < l.1)
        .map(|l| (l.4, l.5))
}

/// The other processes of the computation (those whose maps hold this
/// writer library, `writer`), with their maps; only those with a pid
/// below ours when `below`.
fn others(me: i32, writer: Option<(u64, u64)>, below: bool) -> Vec<(i32, Vec<Line>)> {
    let mut out = Vec::new();
    let Some(writer) = writer else {
        return out;
    };
    let mine = launch_tag("thread-self");
    for pid in crate::sys::numeric_entries(c"/proc") {
        if pid <= 0 || pid == me || (below && pid > me) {
            continue;
        }
        let Ok(data) = std::fs::read(format!("/proc/{pid}/maps")) else {
            continue;
        };
        let lines = parse(&data);
        if lines.iter().any(|l| (l.4, l.5) == writer) && launch_tag(&pid.to_string()) == mine {
            out.push((pid, lines));
        }
    }
    out
}

/// What tells the processes of one computation from those of another:
/// the coordinator and secret variables `ckpt launch` put in the
/// environment every process of the computation inherited (a restart
/// brings the same environment back), as `/proc/PID/environ` shows it.
pub fn launch_tag(pid: &str) -> Vec<u8> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let mut tag = Vec::new();
    for v in env.split(|&b| b == 0) {
        if [
            &b"CKPT_COORD_HOST="[..],
            b"CKPT_COORD_PORT=",
            b"CKPT_SECRET=",
            b"CKPT_SECRET_FILE=",
            b"CKPT_TMPDIR=",
        ]
        .iter()
        .any(|p| v.starts_with(p))
        {
            tag.extend_from_slice(v);
            tag.push(0);
        }
    }
    tag
}

/// The other processes of this process's computation and their maps
/// (see [`others`]).
pub(super) fn computation(below: bool) -> Vec<(i32, Vec<ObjMapLine>)> {
    let lines = parse(&std::fs::read("/proc/thread-self/maps").unwrap_or_default());
    let here = computation as *const () as usize as u64;
    others(crate::sys::getpid(), file_at(&lines, here), below)
        .into_iter()
        .map(|(pid, l)| {
            let shared = objects(&l)
                .into_iter()
                .map(|m| ObjMapLine {
                    object: m.object,
                    inode: m.inode,
                })
                .collect();
            (pid, shared)
        })
        .collect()
}

/// What [`computation`] tells of one shared-object mapping.
pub(super) struct ObjMapLine {
    pub object: ShmObject,
    pub inode: u64,
}

/// Mappings of the objects in `keys` by processes of the computation with
/// a pid below ours.
fn lower_mappings(me: i32, writer: Option<(u64, u64)>, keys: &[Key]) -> Vec<ObjMap> {
    others(me, writer, true)
        .into_iter()
        .flat_map(|(_, lines)| objects(&lines))
        .filter(|m| keys.contains(&m.key()))
        .collect()
}

fn covered(spans: &[(u64, u64)], off: u64) -> bool {
    spans.iter().any(|&(a, b)| a <= off && off < b)
}

/// Stores no page of a shared regular-file mapping by reference. Finds
/// the regions of `regions` that map shared-memory objects, makes
/// them `Shm` regions without a backing file, replaces their pages by the
/// object pages this image holds (see the module doc) and returns their
/// SHARED_MEMORY entries, in region order.
pub fn assign(regions: &mut [PlannedRegion], max_pages: u32) -> Vec<SharedMapping> {
    // A shared mapping of a regular file, by reference: its pages live in
    // the file (spec §4.4, shared regions), none is stored.
    for p in regions.iter_mut().filter(|p| p.region.shared) {
        if p.region
            .backing
            .as_ref()
            .is_some_and(|b| b.storage == ckpt_format::FileStorage::ByReference)
        {
            p.runs.clear();
        }
    }
    let lines = parse(&std::fs::read("/proc/thread-self/maps").unwrap_or_default());
    let own = objects(&lines);
    if own.is_empty() {
        return Vec::new();
    }
    let mut keys: Vec<Key> = own.iter().map(ObjMap::key).collect();
    keys.sort_unstable();
    keys.dedup();
    let me = crate::sys::getpid();
    let here = assign as *const () as usize as u64;
    let lower = lower_mappings(me, file_at(&lines, here), &keys);
    // Object bytes already held: by lower pids, then by our own mappings
    // at lower addresses as they are handled.
    let mut held: BTreeMap<Key, Vec<(u64, u64)>> = BTreeMap::new();
    let mut size: BTreeMap<Key, u64> = BTreeMap::new();
    for m in &lower {
        held.entry(m.key()).or_default().push(m.span());
    }
    for m in lower.iter().chain(own.iter()) {
        let s = size.entry(m.key()).or_default();
        *s = (*s).max(m.span().1);
    }
    for m in own.iter().filter(|m| m.object == ShmObject::PosixShm) {
        let path = std::ffi::OsStr::new(std::str::from_utf8(&m.name).unwrap_or(""));
        if let Ok(md) = std::fs::metadata(path) {
            let s = size.entry(m.key()).or_default();
            *s = (*s).max(md.len());
        }
    }
    let mut out = Vec::new();
    let mut resident = vec![0u8; 4096];
    for p in regions.iter_mut() {
        let (start, end) = (p.region.start.0, p.region.end.0);
        let Some(m) = own.iter().find(|m| m.start <= start && end <= m.end) else {
            continue;
        };
        let key = m.key();
        let offset = m.offset + (start - m.start);
        let spans = held.get(&key).cloned().unwrap_or_default();
        let mut runs: Vec<(u64, u32)> = Vec::new();
        let npages = ((end - start) / PAGE) as usize;
        let mut i = 0;
        while i < npages {
            let n = resident.len().min(npages - i);
            let addr0 = start + i as u64 * PAGE;
            if !crate::sys::shm::resident(addr0, &mut resident[..n]) {
                // Cannot tell: every page is looked at.
                resident[..n].fill(1);
            }
            for (k, &res) in resident[..n].iter().enumerate() {
                let addr = addr0 + k as u64 * PAGE;
                if res & 1 == 0 || covered(&spans, offset + (addr - start)) {
                    continue;
                }
                let zero = if p.direct {
                    mem::page_is_zero(addr)
                } else {
                    let mut b = vec![0u8; PAGE as usize];
                    mem::read_proc_mem(addr, &mut b) && b.iter().all(|&x| x == 0)
                };
                if zero {
                    continue;
                }
                match runs.last_mut() {
                    Some((a, c)) if *a + *c as u64 * PAGE == addr && *c < max_pages => *c += 1,
                    _ => runs.push((addr, 1)),
                }
            }
            i += n;
        }
        crate::debug!(
            "shared {:?} {} at {start:#x}: {} of {npages} pages stored here",
            m.object,
            String::from_utf8_lossy(&m.name),
            runs.iter().map(|r| r.1 as u64).sum::<u64>()
        );
        p.runs = runs;
        p.stable = None;
        p.region.kind = RegionKind::Shm;
        p.region.backing = None;
        held.entry(key)
            .or_default()
            .push((offset, offset + (end - start)));
        out.push(SharedMapping {
            start: Addr(start),
            object: m.object,
            dev: m.dev,
            inode: m.inode,
            size: size.get(&key).copied().unwrap_or(0),
            offset,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tell_the_object() {
        assert_eq!(
            object_of(b"/dev/zero (deleted)"),
            Some(ShmObject::Anonymous)
        );
        assert_eq!(object_of(b"/SYSV00000000 (deleted)"), Some(ShmObject::SysV));
        assert_eq!(object_of(b"/memfd:pool (deleted)"), Some(ShmObject::Memfd));
        assert_eq!(
            object_of(b"/memfd:ckpt-anon-shared (deleted)"),
            Some(ShmObject::Anonymous)
        );
        assert_eq!(object_of(b"/dev/shm/seg"), Some(ShmObject::PosixShm));
        assert_eq!(
            object_of(b"/dev/shm/seg (deleted)"),
            Some(ShmObject::Anonymous)
        );
        assert_eq!(object_of(b"/home/u/data"), None);
        assert_eq!(object_of(b""), None);
    }

    #[test]
    fn parses_a_shared_line() {
        let l = b"7f00000000-7f00002000 rw-s 00001000 00:01 2049                       /dev/zero (deleted)\n\
                  7f00002000-7f00003000 rw-p 00000000 00:00 0 \n";
        let v = parse(l);
        assert_eq!(v.len(), 2);
        let o = objects(&v);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].span(), (0x1000, 0x3000));
        assert_eq!((o[0].dev, o[0].inode), (1, 2049));
        assert_eq!(o[0].object, ShmObject::Anonymous);
    }
}
