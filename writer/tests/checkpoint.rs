//! End to end: a C program under LD_PRELOAD=libckpt_writer.so, a tiny
//! in-test coordinator, one checkpoint, the image decoded and validated,
//! then the image restored with ckpt-restore and the counter checked.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ckpt_format::{MappedImage, RegionKind, ThreadFlags};
use ckpt_protocol::{CheckpointRequest, Hello, Role, ToClient, ToCoordinator};

fn target_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../target"))
        .join("debug")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-writer-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn compile(dir: &Path) -> PathBuf {
    compile_prog(dir, "counter")
}

fn compile_prog(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{name}.c"));
    let exe = dir.join(name);
    let st = Command::new("cc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "cc failed");
    exe
}

/// Lines of a child's stdout, through a channel.
fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line matching `f`; returns it.
fn wait_line(
    rx: &Receiver<String>,
    secs: u64,
    what: &str,
    mut f: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                assert!(
                    !l.contains("BAD") && !l.contains("STUCK"),
                    "self-check failed: {l}"
                );
                if f(&l) {
                    return l;
                }
            }
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn tick_of(l: &str) -> Option<u64> {
    let mut w = l.split_whitespace();
    (w.next()? == "tick").then_some(())?;
    w.next()?.parse().ok()
}

fn dump_logs(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            eprintln!("--- {}", e.path().display());
            eprintln!("{}", std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
}

/// One coordinator connection from a worker.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    hello: Hello,
}

fn accept_worker(listener: &TcpListener, logs: &Path) -> Conn {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (sock, _) = loop {
        match listener.accept() {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                dump_logs(logs);
                panic!("writer never connected: {e}")
            }
        }
    };
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut r = BufReader::new(sock.try_clone().unwrap());
    let mut w = sock;
    let hello: ToCoordinator = ckpt_protocol::recv(&mut r).unwrap().unwrap();
    let ToCoordinator::Hello(hello) = hello else {
        panic!("first message: {hello:?}")
    };
    ckpt_protocol::send(&mut w, &ToClient::Welcome { interval: 0 }).unwrap();
    Conn { r, w, hello }
}

impl Conn {
    /// Asks for a checkpoint; returns the image path.
    fn checkpoint(&mut self, generation: u64, dir: &Path, logs: &Path) -> String {
        self.checkpoint_with(generation, dir, logs, true)
    }

    fn checkpoint_with(
        &mut self,
        generation: u64,
        dir: &Path,
        logs: &Path,
        compress: bool,
    ) -> String {
        ckpt_protocol::send(
            &mut self.w,
            &ToClient::Checkpoint(CheckpointRequest {
                generation,
                dir: dir.to_string_lossy().into_owned(),
                compress,
                open_files: false,
                computation_id: "00112233445566778899aabbccddeeff".into(),
                // An older coordinator: no barrier, the writer goes alone.
                barrier: false,
            }),
        )
        .unwrap();
        let reply: Option<ToCoordinator> = ckpt_protocol::recv(&mut self.r).unwrap();
        match reply {
            Some(ToCoordinator::Checkpointed {
                generation: g,
                path,
                bytes,
                ..
            }) if g == generation => {
                eprintln!("generation {g}: image {path}: {bytes} bytes");
                path
            }
            other => {
                dump_logs(logs);
                panic!("checkpoint reply: {other:?}")
            }
        }
    }
}

/// Restores `image`; returns the child and its stdout lines.
fn restore(image: &str, port: u16, logs: &Path) -> (Kill, Receiver<String>, u64) {
    let restorer = target_dir().join("ckpt-restore");
    assert!(
        restorer.exists(),
        "{} missing: run scripts/build.sh",
        restorer.display()
    );
    // A plain `cargo build` of the workspace replaces the static (musl)
    // restorer with a glibc one, whose rseq area the final stage unmaps:
    // the restore then dies with SIGSEGV. Say so instead.
    let head = std::fs::read(&restorer).unwrap_or_default();
    assert!(
        !head[..head.len().min(4096)]
            .windows(8)
            .any(|w| w == b"ld-linux"),
        "{} is dynamically linked: run scripts/build.sh (it installs the static musl build)",
        restorer.display()
    );
    let mut rchild = Kill(
        Command::new(&restorer)
            .arg(image)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_TMPDIR", logs)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rout = lines_of(rchild.0.stdout.take().unwrap());
    let rerr = lines_of(rchild.0.stderr.take().unwrap());
    let first = match rout.recv_timeout(Duration::from_secs(20)) {
        Ok(l) => l,
        Err(_) => {
            std::thread::sleep(Duration::from_millis(200));
            let errs: Vec<String> = rerr.try_iter().collect();
            dump_logs(logs);
            panic!(
                "restored process printed nothing; ckpt-restore stderr:\n{}",
                errs.join("\n")
            );
        }
    };
    eprintln!("first line after restoring {image}: {first}");
    let n = tick_of(&first)
        .or_else(|| tick_of(&wait_line(&rout, 10, "tick", |l| tick_of(l).is_some())))
        .unwrap();
    (rchild, rout, n)
}

/// Stops a restored process through its stop file; checks it exits 0.
fn stop_restored(mut rchild: Kill, stop: &Path) {
    std::fs::write(stop, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = rchild.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "restored process did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::fs::remove_file(stop).unwrap();
    assert_eq!(status.code(), Some(0), "restored exit status");
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cargo test` does not build the package's cdylib: build it (bounded).
fn build_writer() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "-q", "-p", "ckpt-writer"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .expect("cargo build");
    let deadline = Instant::now() + Duration::from_secs(300);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cargo build -p ckpt-writer did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st.success(), "cargo build -p ckpt-writer failed");
    let lib = target_dir().join("libckpt_writer.so");
    assert!(lib.exists(), "{} missing", lib.display());
    lib
}

#[test]
fn checkpoint_then_restore_continues_counting() {
    let lib = build_writer();
    let dir = tmp("ckpt");
    let logs = dir.join("logs");
    let exe = compile(&dir);
    let stop = dir.join("stop");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .arg(&stop)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .env("CKPT_DEBUG", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    wait_line(&out, 10, "first tick", |l| tick_of(l) == Some(3));

    // The coordinator side.
    let mut conn = accept_worker(&listener, &logs);
    assert!(
        matches!(&conn.hello.role, Role::Worker(w) if w.restarted_from == 0 && w.program == "counter")
    );
    let path = conn.checkpoint(1, &dir, &logs);

    // Still counting after the checkpoint.
    let after = tick_of(&wait_line(&out, 10, "a tick", |l| tick_of(l).is_some())).unwrap();
    wait_line(&out, 10, "more ticks", |l| tick_of(l) == Some(after + 3));
    let killed_at = after + 3;
    drop(child);

    // The image.
    let img = MappedImage::open(&path).expect("open image");
    let problems = img.validate();
    assert!(problems.problems.is_empty(), "validate: {problems:?}");
    let threads = img.threads();
    let user: Vec<_> = threads
        .iter()
        .filter(|t| t.flags.0 & ThreadFlags::CHECKPOINT_THREAD == 0 && t.name != "ckpt-worker")
        .collect();
    assert!(
        user.len() >= 3,
        "user threads: {:?}",
        threads.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    assert!(threads.iter().any(|t| t.flags.0 & ThreadFlags::LEADER != 0));
    assert!(user
        .iter()
        .all(|t| t.xsave.len() >= 512 && t.resume.rip != 0));
    let h = img.header();
    assert!(
        h.host
            .vdso_symbols
            .iter()
            .any(|s| s.name.contains("clock_gettime")),
        "vdso symbols: {:?}",
        h.host.vdso_symbols
    );
    assert!(h.host.xsave_size >= 512 && h.host.rseq_size > 0 && !h.host.cpu_flags.is_empty());
    assert_eq!((h.arch, h.page_size, h.generation), (62, 4096, 1));
    let p = img.process();
    assert!(p.mm.start_brk.0 != 0 && p.mm.brk.0 >= p.mm.start_brk.0 && p.mm.arg_start.0 != 0);
    assert!(p.restart_info_addr.0 != 0 && p.cmdline.len() == 2);
    let sig = img.signals().expect("signals record");
    assert_ne!(
        sig.actions[61].handler, 0,
        "checkpoint signal handler recorded"
    );
    let regions = img.regions();
    assert!(
        regions.iter().any(|r| r.kind == RegionKind::Heap),
        "no [heap]"
    );
    assert!(
        regions.iter().any(|r| r.kind == RegionKind::Stack),
        "no [stack]"
    );
    let pat = b"CKPT-PATTERN-000000000000000032";
    let mut found = false;
    for c in img.chunks() {
        let mut buf = vec![0u8; c.meta.pages as usize * 4096];
        img.read_chunk(c, &mut buf).unwrap();
        if buf.windows(pat.len()).any(|w| w == pat) {
            found = true;
            break;
        }
    }
    assert!(found, "heap pattern not in the page data");
    // A page the program made PROT_NONE keeps its data in the image.
    let hidden = b"hidden behind PROT_NONE";
    assert!(
        img.chunks().iter().any(|c| {
            let r = &regions[c.meta.region as usize];
            let mut buf = vec![0u8; c.meta.pages as usize * 4096];
            img.read_chunk(c, &mut buf).unwrap();
            r.prot.0 == 0 && buf.windows(hidden.len()).any(|w| w == hidden)
        }),
        "PROT_NONE page not stored"
    );

    // The real proof: restore and keep counting.
    let (rchild, rout, n) = restore(&path, port, &logs);
    assert!(
        n > 3 && n <= killed_at,
        "restored counter at {n}, checkpoint near {after}"
    );
    // A thread created and joined after the restore (every 10 ticks).
    wait_line(&rout, 10, "join after restore", |l| l == "join ok");
    wait_line(&rout, 10, "PROT_NONE page after restore", |l| {
        l == "hidden ok"
    });
    wait_line(&rout, 10, "ticks after restore", |l| {
        tick_of(l) == Some(n + 25)
    });

    // The restored writer reconnects and checkpoints again.
    let mut conn2 = accept_worker(&listener, &logs);
    assert!(
        matches!(&conn2.hello.role, Role::Worker(w) if w.restarted_from == 1),
        "{:?}",
        conn2.hello
    );
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("restarted (restart #1)"), "log: {log}");
    let path2 = conn2.checkpoint(2, &dir, &logs);
    let at2 = tick_of(&wait_line(&rout, 10, "a tick", |l| tick_of(l).is_some())).unwrap();
    wait_line(&rout, 10, "ticks after 2nd checkpoint", |l| {
        tick_of(l) == Some(at2 + 3)
    });
    stop_restored(rchild, &stop);
    drop(conn);

    // The second generation restores too, and counts on from there.
    let img2 = MappedImage::open(&path2).expect("open image 2");
    assert!(img2.validate().problems.is_empty());
    let (rchild2, rout2, n2) = restore(&path2, port, &logs);
    assert!(
        n2 > n + 25 && n2 <= at2 + 3,
        "second restore at {n2}, checkpoint near {at2}"
    );
    wait_line(&rout2, 10, "ticks after 2nd restore", |l| {
        tick_of(l) == Some(n2 + 10)
    });
    let conn3 = accept_worker(&listener, &logs);
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(log.contains("restarted (restart #2)"), "log: {log}");
    assert!(matches!(&conn3.hello.role, Role::Worker(w) if w.restarted_from == 2));
    stop_restored(rchild2, &stop);
    if std::env::var_os("CKPT_TEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn forked_child_gets_its_own_writer_and_kill_exits_75() {
    let lib = build_writer();
    let dir = tmp("fork");
    let logs = dir.join("logs");
    let exe = compile_prog(&dir, "forker");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .env("CKPT_NO_COMPRESS", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    wait_line(&out, 10, "child output", |l| l == "child 2");
    let mut a = accept_worker(&listener, &logs);
    let mut b = accept_worker(&listener, &logs);
    let (Role::Worker(wa), Role::Worker(wb)) = (a.hello.role.clone(), b.hello.role.clone()) else {
        panic!("roles")
    };
    assert_ne!(
        wa.unique_id, wb.unique_id,
        "the child needs its own identity"
    );
    assert_ne!(wa.real_pid, wb.real_pid);
    let pa = a.checkpoint_with(1, &dir, &logs, true);
    let pb = b.checkpoint_with(1, &dir, &logs, true);
    assert_ne!(pa, pb);
    for (p, w) in [(&pa, &wa), (&pb, &wb)] {
        let img = MappedImage::open(p).unwrap();
        assert!(img.validate().problems.is_empty(), "{p}");
        assert_eq!(img.process().pid.0, w.real_pid);
        assert!(
            img.chunks()
                .iter()
                .all(|c| c.meta.encoding == ckpt_format::ChunkEncoding::Raw),
            "CKPT_NO_COMPRESS=1 must store raw chunks"
        );
    }
    // Both keep running after their checkpoints.
    let p = tick_of(
        &wait_line(&out, 10, "parent line", |l| l.starts_with("parent ")).replace("parent", "tick"),
    )
    .unwrap();
    wait_line(&out, 10, "parent continues", |l| {
        l == format!("parent {}", p + 3)
    });
    let c = tick_of(
        &wait_line(&out, 10, "child line", |l| l.starts_with("child ")).replace("child", "tick"),
    )
    .unwrap();
    wait_line(&out, 10, "child continues", |l| {
        l == format!("child {}", c + 3)
    });
    // Kill: both exit with 75.
    let parent_conn = if wa.real_pid == child.0.id() as i32 {
        &mut a
    } else {
        &mut b
    };
    ckpt_protocol::send(&mut parent_conn.w, &ToClient::Kill).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "parent did not exit on Kill");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(75));
    let child_conn = if wa.real_pid == st.code().map_or(0, |_| child.0.id() as i32) {
        &mut b
    } else {
        &mut a
    };
    ckpt_protocol::send(&mut child_conn.w, &ToClient::Kill).unwrap();
    let gone: Result<Option<ToCoordinator>, _> = ckpt_protocol::recv(&mut child_conn.r);
    assert!(
        matches!(gone, Ok(None) | Err(_)),
        "child still connected: {gone:?}"
    );
    if std::env::var_os("CKPT_TEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Waits (bounded) until `n` "progress" lines in a row say "ok" (a
/// checkpoint may hold the threads across one check).
fn wait_progress(rx: &Receiver<String>, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = 0;
    while ok < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("BAD") => panic!("self-check failed: {l}"),
            Ok(l) if l == "progress ok" => ok += 1,
            Ok(l) if l.starts_with("progress") => ok = 0,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

#[test]
fn threads_in_malloc_stdio_sigsuspend_sigwait_or_blocking_every_signal_are_checkpointed() {
    let lib = build_writer();
    let dir = tmp("stress");
    let logs = dir.join("logs");
    let exe = compile_prog(&dir, "stress");
    let stop = dir.join("stop");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .arg(&stop)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    wait_progress(&out, 1, "the threads to start");
    let mut conn = accept_worker(&listener, &logs);
    // A checkpoint that cannot be written fails, and the program goes on.
    ckpt_protocol::send(
        &mut conn.w,
        &ToClient::Checkpoint(CheckpointRequest {
            generation: 1,
            dir: "/nonexistent/dir".into(),
            compress: true,
            ..Default::default()
        }),
    )
    .unwrap();
    let reply: Option<ToCoordinator> = ckpt_protocol::recv(&mut conn.r).unwrap();
    assert!(
        matches!(&reply, Some(ToCoordinator::CheckpointFailed { generation: 1, reason }) if reason.contains("/nonexistent/dir")),
        "{reply:?}"
    );
    wait_progress(&out, 2, "every thread running after a failed checkpoint");
    let mut path = String::new();
    for generation in 1..=4 {
        path = conn.checkpoint_with(generation, &dir, &logs, generation % 2 == 1);
        wait_progress(&out, 2, "every thread running after the checkpoint");
    }
    drop(child);

    let img = MappedImage::open(&path).expect("open image");
    assert!(img.validate().problems.is_empty());
    let threads = img.threads();
    let user: Vec<_> = threads
        .iter()
        .filter(|t| t.flags.0 & ThreadFlags::CHECKPOINT_THREAD == 0 && t.name != "ckpt-worker")
        .collect();
    assert_eq!(user.len(), 8, "main and seven threads");
    // The thread that blocked every signal: all blocked but the checkpoint
    // signal (62 = bit 61), recorded as the interrupted context's mask.
    assert!(
        user.iter()
            .any(|t| t.sigmask.count_ones() > 50 && t.sigmask & (1 << 61) == 0),
        "masks: {:x?}",
        user.iter().map(|t| t.sigmask).collect::<Vec<_>>()
    );
    assert!(user.iter().all(|t| t.sigmask & (1 << 61) == 0));
    // The program's signal(SIGRTMAX-2, SIG_IGN) did not replace our handler.
    assert!(img.signals().unwrap().actions[61].handler > 1);

    // Restored, every thread (but the pipe reader: pipes are not restored
    // yet) makes progress again.
    let (rchild, rout, _) = restore(&path, port, &logs);
    wait_progress(&rout, 2, "every thread running after the restore");
    stop_restored(rchild, &stop);
    if std::env::var_os("CKPT_TEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn image_restores_after_the_writer_library_is_replaced() {
    let built = build_writer();
    let dir = tmp("relib");
    let logs = dir.join("logs");
    let exe = compile(&dir);
    let stop = dir.join("stop");
    let lib = dir.join("libckpt_writer.so");
    std::fs::copy(&built, &lib).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .arg(&stop)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    wait_line(&out, 10, "first tick", |l| tick_of(l) == Some(3));
    let mut conn = accept_worker(&listener, &logs);
    let path = conn.checkpoint(1, &dir, &logs);
    drop(child);
    let img = MappedImage::open(&path).unwrap();
    // The library's regions refer to the copy the writer made beside the
    // image (ckpt_writer-<build>.so), which the replacement below leaves
    // alone.
    let own: Vec<_> = img
        .regions()
        .iter()
        .filter(|r| {
            std::path::Path::new(std::ffi::OsStr::from_bytes(&r.name))
                .file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b"ckpt_writer-"))
        })
        .collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r.backing.as_ref().is_some_and(|b| {
        b.storage == ckpt_format::FileStorage::ByReference
            && std::path::Path::new(std::ffi::OsStr::from_bytes(&b.file.path)).starts_with(&dir)
    })));
    assert!(!img
        .regions()
        .iter()
        .any(|r| r.name.ends_with(b"/libckpt_writer.so")));

    // A new build of the writer replaces the file (new inode, new size).
    std::fs::remove_file(&lib).unwrap();
    std::fs::write(&lib, b"not the library any more").unwrap();
    let (rchild, rout, n) = restore(&path, port, &logs);
    wait_line(&rout, 10, "ticks after restore", |l| {
        tick_of(l) == Some(n + 12)
    });
    wait_line(&rout, 10, "join after restore", |l| l == "join ok");
    stop_restored(rchild, &stop);
    if std::env::var_os("CKPT_TEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn writer_mallocs(l: &str) -> Option<u64> {
    let w: Vec<&str> = l.split_whitespace().collect();
    (w.len() == 4 && w[0] == "tick" && w[2] == "writer-mallocs").then_some(())?;
    w[3].parse().ok()
}

#[test]
fn checkpoints_never_call_the_programs_malloc() {
    let lib = build_writer();
    let dir = tmp("spy");
    let logs = dir.join("logs");
    let exe = compile_prog(&dir, "mallocspy");
    let stop = dir.join("stop");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .arg(&stop)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    let mut conn = accept_worker(&listener, &logs);
    // After a first checkpoint the writer's start-up is long over; lines
    // printed before it may still be in the pipe: take the second tick.
    conn.checkpoint(1, &dir, &logs);
    let _ = out.try_iter().count();
    wait_line(&out, 10, "a tick", |l| writer_mallocs(l).is_some());
    let before = writer_mallocs(&wait_line(&out, 10, "a tick", |l| {
        writer_mallocs(l).is_some()
    }))
    .unwrap();
    for generation in 2..=4 {
        conn.checkpoint_with(generation, &dir, &logs, generation != 3);
    }
    let after = writer_mallocs(&wait_line(&out, 10, "a tick", |l| {
        writer_mallocs(l).is_some()
    }))
    .unwrap();
    assert_eq!(
        before, after,
        "the writer's threads called libc's malloc during a checkpoint"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_process_whose_main_thread_exited_is_checkpointed() {
    let lib = build_writer();
    let dir = tmp("zleader");
    let logs = dir.join("logs");
    let exe = compile_prog(&dir, "zleader");
    let stop = dir.join("stop");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = Kill(
        Command::new(&exe)
            .arg(&stop)
            .env("LD_PRELOAD", &lib)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("CKPT_DIR", &dir)
            .env("CKPT_TMPDIR", &logs)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = lines_of(child.0.stdout.take().unwrap());
    wait_line(&out, 10, "a tick", |l| tick_of(l) == Some(2));
    let mut conn = accept_worker(&listener, &logs);
    let path = conn.checkpoint(1, &dir, &logs);
    let at = tick_of(&wait_line(&out, 10, "a tick", |l| tick_of(l).is_some())).unwrap();
    wait_line(&out, 10, "ticks go on", |l| tick_of(l) == Some(at + 2));
    drop(child);
    let img = MappedImage::open(&path).unwrap();
    assert!(img.validate().problems.is_empty());
    // The exited main thread is not in the image; the process state is.
    assert!(img
        .threads()
        .iter()
        .all(|t| t.flags.0 & ThreadFlags::LEADER == 0));
    assert!(img.regions().iter().any(|r| r.kind == RegionKind::Heap));
    let p = img.process();
    assert!(!p.cwd.is_empty() && p.exe.ends_with(b"/zleader") && p.mm.start_code.0 != 0);
    assert!(img.fds().iter().any(|f| f.fd.0 == 1));
    let _ = std::fs::remove_dir_all(&dir);
}
