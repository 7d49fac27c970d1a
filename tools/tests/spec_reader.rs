//! The spec is enough to read an image: `spec/reader.py`, a reader written
//! from `spec/v1.md` alone (Python standard library only), reads every golden
//! image, and what it decodes is what ckpt-format decodes, field for field.
//! It also refuses what ckpt-format refuses: corrupted and truncated goldens.

mod common;

use ckpt_format::raw::{self, Trailer};
use ckpt_format::{FdEntry, FdKind, MappedImage, RecordKind, Region, RegionKind, TimerValue};
use common::goldens;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `python3 spec/reader.py ARG` with `stdin` as its input; `None` when
/// there is no python3 on this machine.
fn run_reader(arg: &str, stdin: &[u8]) -> Option<Output> {
    let child = Command::new("python3")
        .arg(root().join("spec/reader.py"))
        .arg(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("python3: {e}"),
    };
    let mut input = child.stdin.take().unwrap();
    // The reader may stop reading early; a broken pipe is not our failure.
    let _ = input.write_all(stdin);
    drop(input);
    Some(child.wait_with_output().unwrap())
}

fn python_missing() -> bool {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed, spec/reader.py cannot run");
        return true;
    }
    false
}

/// The reader's JSON summary of a valid image.
fn python_summary(arg: &str, stdin: &[u8]) -> Value {
    let out = run_reader(arg, stdin).unwrap();
    assert!(
        out.status.success(),
        "reader.py {arg}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn timer(t: &TimerValue) -> Value {
    json!([t.interval_ns, t.value_ns])
}

fn region_kind(k: RegionKind) -> &'static str {
    match k {
        RegionKind::Anon => "anon",
        RegionKind::Heap => "heap",
        RegionKind::Stack => "stack",
        RegionKind::File => "file",
        RegionKind::Shm => "shm",
        RegionKind::Vdso => "vdso",
        RegionKind::Vvar => "vvar",
        RegionKind::VvarVclock => "vvar_vclock",
        RegionKind::Vsyscall => "vsyscall",
    }
}

fn region(r: &Region, pages: u64, bytes: u64) -> Value {
    let backing = r.backing.as_ref().map(|b| {
        json!({
            "path": text(&b.file.path), "dev": b.file.dev, "inode": b.file.inode,
            "size": b.file.size, "mtime_ns": b.file.mtime_ns, "offset": b.offset,
            "storage": match b.storage {
                ckpt_format::FileStorage::Embedded => "embedded",
                ckpt_format::FileStorage::ByReference => "by_reference",
            },
        })
    });
    json!({
        "start": r.start.0, "end": r.end.0, "prot": r.prot.0, "shared": r.shared,
        "grows_down": r.grows_down, "kind": region_kind(r.kind), "name": text(&r.name),
        "backing": backing, "pages_stored": pages, "bytes_stored": bytes,
    })
}

fn fd(f: &FdEntry) -> Value {
    let mut v = json!({
        "fd": f.fd.0, "fd_flags": f.fd_flags.0, "ofd_id": f.ofd_id,
        "status_flags": f.status_flags,
    });
    let (kind, fields) = match &f.kind {
        FdKind::Unsupported => ("unsupported", json!({})),
        FdKind::RegularFile {
            file,
            offset,
            deleted,
            contents,
        } => (
            "regular_file",
            json!({
                "file": {"path": text(&file.path), "dev": file.dev, "inode": file.inode,
                         "size": file.size, "mtime_ns": file.mtime_ns},
                "offset": offset, "deleted": deleted,
                "contents_len": contents.as_ref().map(|c| c.len()),
            }),
        ),
        FdKind::Directory { path, offset } => {
            ("directory", json!({"path": text(path), "offset": offset}))
        }
        FdKind::Pipe {
            pipe_id,
            write_end,
            buffered,
        } => (
            "pipe",
            json!({"pipe_id": pipe_id, "write_end": write_end, "buffered_len": buffered.len()}),
        ),
        FdKind::Fifo { path, buffered } => (
            "fifo",
            json!({"path": text(path), "buffered_len": buffered.len()}),
        ),
        FdKind::Tty {
            path,
            termios,
            rows,
            cols,
            controlling,
        } => (
            "tty",
            json!({"path": text(path), "termios_len": termios.len(), "rows": rows,
                   "cols": cols, "controlling": controlling}),
        ),
        FdKind::PtyMaster {
            index,
            termios,
            rows,
            cols,
        } => (
            "pty_master",
            json!({"index": index, "termios_len": termios.len(), "rows": rows, "cols": cols}),
        ),
        FdKind::Socket {
            family,
            sock_type,
            protocol,
            state,
            local,
            peer,
            options,
            inbound,
            socket_id,
        } => (
            "socket",
            json!({
                "family": family, "sock_type": sock_type, "protocol": protocol,
                "state": state, "local": hex(&local.0), "peer": hex(&peer.0),
                "options": options.iter()
                    .map(|o| json!([o.level, o.name, hex(&o.value)]))
                    .collect::<Vec<_>>(),
                "inbound_len": inbound.len(), "socket_id": socket_id,
            }),
        ),
        FdKind::EventFd { count, semaphore } => {
            ("eventfd", json!({"count": count, "semaphore": semaphore}))
        }
        FdKind::Epoll { entries } => (
            "epoll",
            json!({"entries": entries.iter()
                .map(|e| json!([e.fd.0, e.events, e.data]))
                .collect::<Vec<_>>()}),
        ),
        FdKind::SignalFd { mask } => ("signalfd", json!({"mask": mask})),
        FdKind::TimerFd {
            clock,
            interval_ns,
            value_ns,
            settime_flags,
            ticks,
        } => (
            "timerfd",
            json!({"clock": clock, "interval_ns": interval_ns, "value_ns": value_ns,
                   "settime_flags": settime_flags, "ticks": ticks}),
        ),
        FdKind::Inotify { watches } => (
            "inotify",
            json!({"watches": watches.iter()
                .map(|(p, m)| json!([text(p), m]))
                .collect::<Vec<_>>()}),
        ),
        FdKind::Device { path, rdev } => ("device", json!({"path": text(path), "rdev": rdev})),
    };
    v["kind"] = json!(kind);
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// What ckpt-format decodes from an image, in the shape of reader.py's
/// summary.
fn rust_summary(path: &Path) -> Value {
    let img = MappedImage::open(path).unwrap();
    let bytes = img.bytes();
    let t: Trailer = raw::from_bytes(&bytes[bytes.len() - raw::TRAILER_LEN as usize..]).unwrap();
    let mut records = Vec::new();
    let mut counts = Map::new();
    let mut count = |name: String| {
        let n = counts.get(&name).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(name, json!(n + 1));
    };
    for (i, e) in img.index().iter().enumerate() {
        let kind = RecordKind::from_code(e.kind);
        let name = match kind {
            RecordKind::Unknown(c) => format!("{c:#06x}"),
            k => k.to_string(),
        };
        let payload_len = img.record_payload(i).unwrap().len();
        records.push(json!({"offset": e.offset, "kind": name, "flags": e.flags,
                            "payload_len": payload_len}));
        count(match kind {
            RecordKind::Unknown(_) => "unknown".into(),
            k => k.to_string(),
        });
    }
    let index_len = 8 + img.index().len() as u64 * raw::INDEX_ENTRY_LEN;
    records.push(json!({"offset": t.index_offset, "kind": "INDEX",
                        "flags": RecordKind::Index.default_flags(), "payload_len": index_len}));
    count("INDEX".into());
    let present = |k: RecordKind| counts.contains_key(&k.to_string());
    let (has_rlimits, has_pids) = (present(RecordKind::Rlimits), present(RecordKind::PidTable));
    let has_zombies = present(RecordKind::Zombies);
    let has_shm = present(RecordKind::SharedMemory);

    let h = img.header();
    let header = json!({
        "writer_version": h.writer_version, "arch": h.arch, "page_size": h.page_size,
        "created_ns": h.created_ns, "computation_id": hex(&h.computation_id),
        "generation": h.generation, "vpid": h.vpid.0, "real_pid": h.real_pid,
        "program": h.program, "unique_id": h.unique_id, "hostname": h.host.hostname,
        "kernel_release": h.host.kernel_release, "libc_version": h.host.libc_version,
        "vdso_symbols": h.host.vdso_symbols.iter()
            .map(|s| json!([s.name, s.offset])).collect::<Vec<_>>(),
        "xsave_features": h.host.xsave_features, "xsave_size": h.host.xsave_size,
        "cpu_flags": h.host.cpu_flags, "rseq_size": h.host.rseq_size,
    });
    let p = img.process();
    let process = json!({
        "pid": p.pid.0, "ppid": p.ppid.0, "pgid": p.pgid.0, "sid": p.sid.0,
        "uid": p.uid, "gid": p.gid, "groups": p.groups, "cwd": text(&p.cwd),
        "umask": p.umask, "exe": text(&p.exe),
        "cmdline": p.cmdline.iter().map(|a| text(a)).collect::<Vec<_>>(),
        "environ": p.environ.iter().map(|a| text(a)).collect::<Vec<_>>(),
        "auxv": p.auxv.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "personality": p.personality, "mm": p.mm, "sched_policy": p.sched_policy,
        "nice": p.nice, "restart_info_addr": p.restart_info_addr.0,
    });
    let threads: Vec<Value> = img
        .threads()
        .iter()
        .map(|t| {
            json!({
                "tid": t.tid.0, "flags": t.flags.0, "name": t.name, "regs": t.regs,
                "xsave_len": t.xsave.len(), "sigmask": t.sigmask,
                "sigaltstack": t.sigaltstack, "rseq": t.rseq,
                "robust_list": t.robust_list.0, "robust_list_len": t.robust_list_len,
                "clear_child_tid": t.clear_child_tid.0, "pending": t.pending,
                "resume": t.resume,
            })
        })
        .collect();
    let ps = img.page_size();
    let mut stored = vec![(0u64, 0u64); img.regions().len()];
    let chunks: Vec<Value> = img
        .chunks()
        .iter()
        .map(|c| {
            let s = &mut stored[c.meta.region as usize];
            s.0 += c.meta.pages as u64;
            s.1 += c.stored_len;
            let pad =
                c.data_offset - c.record_offset - raw::RECORD_HEADER_LEN - raw::CHUNK_HEADER_LEN;
            json!({
                "region": c.meta.region, "addr": c.meta.addr.0, "pages": c.meta.pages,
                "encoding": match c.meta.encoding {
                    ckpt_format::ChunkEncoding::Raw => "raw",
                    ckpt_format::ChunkEncoding::Zstd => "zstd",
                },
                "pad": pad, "stored_len": c.stored_len, "data_offset": c.data_offset,
            })
        })
        .collect();
    assert!(ps >= 4096);
    let regions: Vec<Value> = img
        .regions()
        .iter()
        .zip(&stored)
        .map(|(r, s)| region(r, s.0, s.1))
        .collect();
    let signals = img.signals().map(|s| {
        let sigs = |f: &dyn Fn(u64) -> bool| {
            s.actions
                .iter()
                .enumerate()
                .filter(|(_, a)| f(a.handler))
                .map(|(i, _)| i + 1)
                .collect::<Vec<_>>()
        };
        json!({
            "actions": s.actions.len(), "handled": sigs(&|h| h > 1),
            "ignored": sigs(&|h| h == 1), "pending": s.pending,
        })
    });
    let timers = img.timers().map(|t| {
        json!({
            "real": timer(&t.real), "virt": timer(&t.virt), "prof": timer(&t.prof),
            "posix": t.posix.iter().map(|p| json!({
                "id": p.id, "clock": p.clock, "notify": p.notify, "signo": p.signo,
                "value": p.value, "notify_tid": p.notify_tid.0, "timer": timer(&p.timer),
                "overrun": p.overrun,
            })).collect::<Vec<_>>(),
        })
    });
    let rlimits = has_rlimits.then(|| {
        img.rlimits()
            .iter()
            .map(|r| json!([r.resource, r.cur, r.max]))
            .collect::<Vec<_>>()
    });
    json!({
        "version": format!("{}.{}", img.version().0, img.version().1),
        "file_len": img.file_len(),
        "image_crc": t.image_crc,
        "records": records,
        "counts": counts,
        "header": header,
        "process": process,
        "threads": threads,
        "regions": regions,
        "chunks": chunks,
        "fds": img.fds().iter().map(fd).collect::<Vec<_>>(),
        "signals": signals,
        "timers": timers,
        "rlimits": rlimits,
        "pid_table": has_pids.then(|| img.pid_table()),
        "socket_peers": img.socket_peers(),
        "zombies": has_zombies.then(|| img.zombies()),
        "shared_memory": has_shm.then(|| img.shared_memory().iter().map(|m| json!({
            "start": m.start.0,
            "object": match m.object {
                ckpt_format::ShmObject::Anonymous => "anonymous",
                ckpt_format::ShmObject::PosixShm => "posix_shm",
                ckpt_format::ShmObject::Memfd => "memfd",
                ckpt_format::ShmObject::SysV => "sysv",
            },
            "dev": m.dev, "inode": m.inode, "size": m.size, "offset": m.offset,
        })).collect::<Vec<_>>()),
        "sysv_ipc": img.sysv_ipc().map(|ipc| {
            let perm = |p: &ckpt_format::IpcPerm| json!({"key": p.key, "id": p.id, "mode": p.mode,
                "uid": p.uid, "gid": p.gid, "cuid": p.cuid, "cgid": p.cgid});
            json!({
                "shm": ipc.shm.iter().map(|s| json!({"perm": perm(&s.perm), "size": s.size}))
                    .collect::<Vec<_>>(),
                "sem": ipc.sem.iter().map(|s| json!({"perm": perm(&s.perm), "values": s.values}))
                    .collect::<Vec<_>>(),
                "msg": ipc.msg.iter().map(|q| json!({"perm": perm(&q.perm), "qbytes": q.qbytes,
                    "messages": q.messages.iter().map(|m| json!({"mtype": m.mtype,
                        "text": m.text.iter().map(|b| format!("{b:02x}")).collect::<String>()}))
                        .collect::<Vec<_>>()}))
                    .collect::<Vec<_>>(),
            })
        }),
        "skipped": img.skipped_records().iter()
            .map(|(o, k, f)| json!([o, k, f])).collect::<Vec<_>>(),
    })
}

/// The first path at which two JSON values differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (u, v) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if !x.contains_key(k) || !y.contains_key(k) {
                    return Some(format!("{path}.{k}: {u} vs {v} (missing on one side)"));
                }
                if let Some(d) = first_difference(u, v, &format!("{path}.{k}")) {
                    return Some(d);
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

#[test]
fn spec_reader_decodes_every_golden_as_ckpt_format_does() {
    if python_missing() {
        return;
    }
    for p in goldens() {
        let py = python_summary(p.to_str().unwrap(), &[]);
        let rs = rust_summary(&p);
        if let Some(d) = first_difference(&py, &rs, "summary") {
            panic!("{}: reader.py vs ckpt-format differ at {d}", p.display());
        }
        // Not vacuous: the summary holds the decoded records.
        assert!(py["threads"].as_array().is_some_and(|t| !t.is_empty()));
        assert!(py["chunks"].as_array().is_some_and(|c| !c.is_empty()));
        assert!(py["header"]["program"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
}

/// `v` with every integer replaced by a different small value (1..=251, so
/// that it fits every integer type, `u8` included): an image in which a
/// reader that swapped two fields of the same type would read something
/// else. (The goldens have many zero fields, which cannot show a swap.)
fn distinct<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T, n: &mut u64) -> T {
    fn walk(v: &mut Value, n: &mut u64) {
        match v {
            Value::Number(_) => {
                *n += 1;
                *v = json!(*n % 251 + 1);
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, n)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, n)),
            _ => {}
        }
    }
    let mut j = serde_json::to_value(v).unwrap();
    walk(&mut j, n);
    serde_json::from_value(j).unwrap()
}

#[test]
fn spec_reader_decodes_an_image_whose_fields_all_differ() {
    if python_missing() {
        return;
    }
    let mut s = ckpt_format::sample::full();
    let n = &mut 0;
    s.process = distinct(&s.process, n);
    s.threads = distinct(&s.threads, n);
    s.fds = distinct(&s.fds, n);
    s.signals = distinct(&s.signals, n);
    s.timers = distinct(&s.timers, n);
    s.rlimits = distinct(&s.rlimits, n);
    s.pid_table = distinct(&s.pid_table, n);
    s.socket_peers = distinct(&s.socket_peers, n);
    // A 1.2 image: the ZOMBIES record too.
    s.zombies = distinct(
        &vec![
            ckpt_format::Zombie::default(),
            ckpt_format::Zombie::default(),
        ],
        n,
    );
    // A 1.3 image: the SHARED_MEMORY record too, on a region made shared.
    s.regions[0].shared = true;
    s.shared_memory = vec![distinct(
        &ckpt_format::SharedMapping {
            start: s.regions[0].start,
            object: ckpt_format::ShmObject::Memfd,
            ..Default::default()
        },
        n,
    )];
    s.shared_memory[0].start = s.regions[0].start;
    s.shared_memory[0].object = ckpt_format::ShmObject::Memfd;
    s.sysv_ipc = Some(distinct(
        &ckpt_format::SysvIpc {
            shm: vec![Default::default()],
            sem: vec![ckpt_format::SysvSem {
                values: vec![0, 0],
                ..Default::default()
            }],
            msg: vec![ckpt_format::SysvMsgQueue {
                messages: vec![ckpt_format::SysvMessage {
                    mtype: 0,
                    text: b"hello".to_vec(),
                }],
                ..Default::default()
            }],
        },
        n,
    ));
    for r in &mut s.regions {
        if let Some(b) = &mut r.backing {
            let storage = b.storage;
            *b = distinct(b, n);
            b.storage = storage;
        }
    }
    let dir = std::env::temp_dir().join(format!("ckpt-spec-reader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("distinct.ckpt");
    std::fs::write(&f, s.encode().unwrap()).unwrap();
    let py = python_summary(f.to_str().unwrap(), &[]);
    let rs = rust_summary(&f);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(d) = first_difference(&py, &rs, "summary") {
        panic!("reader.py vs ckpt-format differ at {d}");
    }
    let regs = py["threads"][0]["regs"].as_object().unwrap();
    let mut values: Vec<&Value> = regs.values().collect();
    values.sort_by_key(|v| v.as_u64());
    values.dedup();
    assert_eq!(values.len(), 27, "every register distinct: {regs:?}");
}

#[test]
fn spec_reader_reads_from_stdin() {
    if python_missing() {
        return;
    }
    let p = &goldens()[0];
    let bytes = std::fs::read(p).unwrap();
    assert_eq!(
        python_summary("-", &bytes),
        python_summary(p.to_str().unwrap(), &[])
    );
}

#[test]
fn spec_reader_refuses_corrupted_and_truncated_goldens() {
    if python_missing() {
        return;
    }
    for p in goldens() {
        let bytes = std::fs::read(&p).unwrap();
        let img = MappedImage::open(&p).unwrap();
        // A flipped bit in the middle of every record (header or payload),
        // and a cut at every record boundary.
        let mut offsets: Vec<u64> = img.index().iter().map(|e| e.offset).collect();
        offsets.push(bytes.len() as u64 - raw::TRAILER_LEN);
        for w in offsets.windows(2) {
            for at in [w[0] + 3, (w[0] + w[1]) / 2] {
                let mut b = bytes.clone();
                b[at as usize] ^= 0x04;
                let out = run_reader("-", &b).unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{}: flip at {at:#x} accepted: {}",
                    p.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let out = run_reader("-", &bytes[..w[0] as usize]).unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: cut at {:#x} accepted",
                p.display(),
                w[0]
            );
        }
        // A newer major version is "unsupported" (3), not "invalid" (1).
        let mut b = bytes.clone();
        b[8] = 2;
        let crc = crc32(&b[..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(run_reader("-", &b).unwrap().status.code(), Some(3));
        // Bytes after the trailer.
        let mut b = bytes.clone();
        b.push(0);
        assert_eq!(run_reader("-", &b).unwrap().status.code(), Some(1));
    }
}

/// CRC-32 (IEEE), bitwise: the test does not depend on the crate it checks.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}
