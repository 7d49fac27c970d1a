//! Shared memory between processes (format 1.3, SHARED_MEMORY):
//! tests/programs/shmtree.c, a fork tree of depth 3 (root → a → a1 → a2,
//! root → b) whose processes count, under a process-shared mutex, in an
//! anonymous shared region, under a process-shared semaphore in a POSIX
//! shm segment, and atomically in a shared mapping of a regular file and
//! in a memfd, while a1 checks, through a pipe from a2, that it sees a2's
//! writes. Through launch → checkpoint of every process → kill → restart
//! of the images → checkpoint → kill → restart from the manifest →
//! verdict, every process's counter keeps growing as the root sees it
//! (the memory is shared again, not copied), the totals go on from the
//! checkpoint's, and each shared object's pages are stored once across
//! the five images (the regular file's live in the file: none stored).
//! With System V IPC (a segment, a semaphore set, a
//! message queue) too, through their ids.

use ckpt_tests::{inspect, program, Computation};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const NPROC: usize = 5;

/// A parsed `tick n=.. total=.. ptotal=.. stotal=.. c=..,.. f=.. m=..` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tick {
    total: i64,
    ptotal: i64,
    stotal: i64,
    /// Counters in the anonymous region.
    c: [i64; NPROC],
    /// In the shared file mapping.
    f: [i64; NPROC],
    /// In the memfd.
    m: [i64; NPROC],
}

fn parse_tick(line: &str) -> Option<Tick> {
    let mut w = line.split_whitespace();
    if w.next()? != "tick" {
        return None;
    }
    let mut field = |name: &str| -> Option<String> { Some(w.next()?.strip_prefix(name)?.into()) };
    let _n = field("n=")?;
    let total = field("total=")?.parse().ok()?;
    let ptotal = field("ptotal=")?.parse().ok()?;
    let stotal = field("stotal=")?.parse().ok()?;
    let mut counters = |name: &str| -> Option<[i64; NPROC]> {
        let v: Vec<i64> = field(name)?
            .split(',')
            .filter_map(|x| x.parse().ok())
            .collect();
        v.try_into().ok()
    };
    Some(Tick {
        total,
        ptotal,
        stotal,
        c: counters("c=")?,
        f: counters("f=")?,
        m: counters("m=")?,
    })
}

/// Waits until the root has seen every process's counter grow (in the
/// anonymous region) and the POSIX (and SysV) totals grow; returns the
/// last tick. A process whose memory is a copy of its own stays still
/// in the root's eyes.
fn every_process_counts(c: &mut Computation, sysv: bool) -> Tick {
    let is_tick = |l: &str| parse_tick(l).is_some() || l.starts_with("VERDICT");
    let next = |c: &mut Computation| {
        let l = c.wait_for_line(is_tick, T);
        parse_tick(&l).unwrap_or_else(|| panic!("{l}\n{}", c.diagnostics()))
    };
    let first = next(c);
    let deadline = Instant::now() + T;
    loop {
        let t = next(c);
        assert_eq!(t.total, t.c.iter().sum::<i64>(), "{t:?}");
        let grown = (0..NPROC)
            .all(|i| t.c[i] > first.c[i] && t.f[i] > first.f[i] && t.m[i] > first.m[i])
            && t.ptotal > first.ptotal
            && (!sysv || t.stotal > first.stotal);
        if grown {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "not every process counts where the root sees it: {first:?} then {t:?}\n{}",
            c.diagnostics()
        );
    }
}

/// The shared mapping of the regular file `data`: by reference, no page
/// stored (its pages live in the file), in every image.
fn file_pages_in_the_file(images: &[PathBuf], data: &str) {
    for i in images {
        let v: serde_json::Value =
            serde_json::from_str(&inspect(i, &["--json"])).expect("inspect --json");
        let r = v["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .find(|r| r["name"].as_str() == Some(data))
            .unwrap_or_else(|| panic!("{}: no region maps {data}", i.display()));
        assert_eq!(r["backing"]["storage"], "by_reference", "{r}");
        assert_eq!(r["stored_pages_bytes"], 0, "{r}");
    }
}

/// Bytes of page data the images store for each shared object (object,
/// inode), and how many regions of the images map it.
fn stored_per_object(images: &[PathBuf]) -> BTreeMap<(String, u64), (u64, usize)> {
    let mut out: BTreeMap<(String, u64), (u64, usize)> = BTreeMap::new();
    for i in images {
        let v: serde_json::Value =
            serde_json::from_str(&inspect(i, &["--json"])).expect("inspect --json");
        let regions = v["regions"].as_array().expect("regions");
        for m in v["shared_memory"].as_array().into_iter().flatten() {
            let start = m["start"].as_u64().unwrap();
            let r = regions
                .iter()
                .find(|r| r["start"].as_u64() == Some(start))
                .expect("the mapping's region");
            let e = out
                .entry((
                    m["object"].as_str().unwrap().to_string(),
                    m["inode"].as_u64().unwrap(),
                ))
                .or_default();
            e.0 += r["stored_pages_bytes"].as_u64().unwrap();
            e.1 += 1;
        }
    }
    out
}

/// Each object's pages once: the anonymous region holds ten non-zero
/// pages (counters, then the 8-page pattern), mapped by all five
/// processes; five copies would be fifty.
fn stored_once(images: &[PathBuf], sysv: bool) {
    let per = stored_per_object(images);
    eprintln!("stored per shared object (object, inode): (bytes, regions) {per:?}");
    let anon: Vec<_> = per.iter().filter(|(k, _)| k.0 == "Anonymous").collect();
    assert_eq!(anon.len(), 1, "one anonymous shared object: {per:?}");
    let (bytes, maps) = *anon[0].1;
    assert_eq!(maps, NPROC, "every process maps it: {per:?}");
    assert!(
        (8 * 4096..=11 * 4096).contains(&bytes),
        "the anonymous object's pages stored once: {bytes} bytes ({per:?})"
    );
    let memfd: Vec<_> = per.iter().filter(|(k, _)| k.0 == "Memfd").collect();
    assert_eq!(memfd.len(), 1, "one memfd: {per:?}");
    assert_eq!(memfd[0].1 .1, NPROC);
    assert!(memfd[0].1 .0 <= 4096, "{per:?}");
    let posix: Vec<_> = per.iter().filter(|(k, _)| k.0 == "PosixShm").collect();
    assert_eq!(posix.len(), 1, "one POSIX shm object: {per:?}");
    assert_eq!(posix[0].1 .1, NPROC);
    assert!(posix[0].1 .0 <= 4 * 4096, "{per:?}");
    if sysv {
        let s: Vec<_> = per.iter().filter(|(k, _)| k.0 == "SysV").collect();
        assert_eq!(s.len(), 1, "one System V segment: {per:?}");
        assert_eq!(s[0].1 .1, NPROC);
        assert!(s[0].1 .0 <= 2 * 4096, "{per:?}");
    }
}

/// A file removed when dropped.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The launch's semaphore set and message queue, left in the host's IPC
/// namespace by the kill (the restarts' live in namespaces of their own).
fn remove_sysv_objects(ids: &str) {
    let id = |name: &str| -> String {
        ids.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or("-1")
            .to_string()
    };
    let _ = std::process::Command::new("ipcrm")
        .args(["-s", &id("sem="), "-q", &id("msg=")])
        .status();
}

#[test]
fn shared_memory_stays_shared_across_restarts() {
    let mut c = Computation::new("shmtree");
    story(&mut c, false);
}

/// The same as an unprivileged user (the restart makes a user namespace).
#[test]
fn shared_memory_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("shmtree-nobody") else {
        return;
    };
    story(&mut c, false);
}

/// With System V IPC too: a segment marked for removal, a semaphore set
/// (one semaphore guarding the segment, one holding 42) and a message
/// queue holding a sentinel message, all used through the ids the
/// processes got at the start: a restart makes them again, in an IPC
/// namespace of its own, with the same ids, values and messages.
#[test]
fn system_v_ipc_keeps_its_ids_values_and_messages() {
    let mut c = Computation::new("shmtree-sysv");
    story(&mut c, true);
}

/// System V IPC as an unprivileged user (the IPC namespace is made in the
/// restart's user namespace).
#[test]
fn system_v_ipc_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("shmtree-sysv-nobody") else {
        return;
    };
    story(&mut c, true);
}

/// launch → bc → kill → restart IMAGES → bc → kill → restart (manifest) → verdict.
fn story(c: &mut Computation, sysv: bool) {
    let stop = c.stop_file().display().to_string();
    let mut args = vec![stop.as_str()];
    if sysv {
        args.push("sysv");
    }
    c.launch_tree(&program("shmtree"), &args, NPROC);
    // The root (ckpt launch became it) names its POSIX shm after its pid;
    // removed however the test ends.
    let _shm = RemoveOnDrop(format!(
        "/dev/shm/ckpt-shmtree-{}",
        c.proc.as_ref().expect("launched").id()
    ));
    let ids = sysv.then(|| c.wait_for_line(|l| l.starts_with("sysv ids"), T));
    let dir = c.ckpt_dir.display().to_string();
    every_process_counts(c, sysv);

    let images = c.checkpoint_all(NPROC);
    stored_once(&images, sysv);
    file_pages_in_the_file(&images, &format!("{stop}.data"));
    let before_kill = every_process_counts(c, sysv);
    c.kill();
    if let Some(ids) = &ids {
        remove_sysv_objects(ids);
    }

    let mut a: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    a.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(a);
    c.wait_connected(NPROC, T);
    let restarted = every_process_counts(c, sysv);
    eprintln!("before the kill {before_kill:?}, after the restart {restarted:?}");
    assert!(
        restarted.total > 0 && restarted.ptotal > 0,
        "the counts go on from the checkpoint's: {restarted:?} (before the kill: {before_kill:?})"
    );

    let images = c.checkpoint_all(NPROC);
    stored_once(&images, sysv);
    every_process_counts(c, sysv);
    c.kill();

    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(NPROC, T);
    every_process_counts(c, sysv);

    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
    if let Some(ids) = ids {
        let at_the_end = c
            .proc
            .as_ref()
            .expect("the restarted computation")
            .seen
            .iter()
            .rev()
            .find(|l| l.starts_with("sysv ids"))
            .cloned();
        assert_eq!(
            at_the_end,
            Some(ids),
            "the same System V ids after two restarts"
        );
    }
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the root's status"
    );
}
