//! DMTCP's workflow with `ckpt` in place of the dmtcp_ commands: the
//! coordinator's console, `ckpt command` and its exit codes, the restart
//! script and manifest, interval checkpoints and kept generations, a crash
//! in the middle of a checkpoint, a coordinator that dies and comes back,
//! and who may talk to the coordinator.

use ckpt_tests::{ckpt, is_root, program, Computation, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn count(line: &str) -> Option<u64> {
    line.strip_prefix("count ")?.trim().parse().ok()
}

fn is_count(l: &str) -> bool {
    count(l).is_some()
}

/// The last count the current process printed.
fn last_count(c: &Computation) -> u64 {
    let p = c.proc.as_ref().expect("a process");
    p.seen
        .iter()
        .rev()
        .find_map(|l| count(l))
        .expect("a count line")
}

/// The lines a child prints, read on a thread, waited for with a deadline.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(r: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: vec![] }
    }

    /// Takes every line already printed (the writer has exited or gone
    /// quiet for `idle`).
    fn drain(&mut self, idle: Duration) {
        while let Ok(l) = self.rx.recv_timeout(idle) {
            self.seen.push(l);
        }
    }

    fn wait(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(e) => panic!(
                    "no matching line ({e:?}); seen:\n  {}",
                    self.seen.join("\n  ")
                ),
            }
        }
    }
}

/// Waits for a child to exit; its status code.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(Instant::now() < deadline, "no exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns Some, at most `timeout`.
fn eventually<R>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<R>) -> R {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = f() {
            return r;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn manifest(dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("ckpt_manifest.json")).ok()?).ok()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn generation_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ckpt_gen_"))
        .collect();
    v.sort();
    v
}

/// A free TCP port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A coordinator in the foreground, driven through its stdin.
struct Console {
    child: Child,
    stdin: ChildStdin,
    out: Lines,
    port: u16,
}

impl Console {
    fn start(tmpdir: &Path, port_file: &Path) -> Console {
        let mut child = Command::new(ckpt())
            .args(["coordinator", "--port", "0", "--port-file"])
            .arg(port_file)
            .env("CKPT_TMPDIR", tmpdir)
            .env_remove("CKPT_SECRET")
            .env_remove("CKPT_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = Lines::of(child.stdout.take().unwrap());
        let port_line = out.wait(|l| l.trim_start().starts_with("port:"), T);
        let port: u16 = port_line
            .trim()
            .trim_start_matches("port:")
            .trim()
            .parse()
            .unwrap();
        out.wait(|l| l.contains("checkpoint interval: off"), T);
        out.wait(|l| l.contains("exit on last: no"), T);
        let from_file = eventually(T, "port file", || {
            std::fs::read_to_string(port_file)
                .ok()?
                .trim()
                .parse::<u16>()
                .ok()
        });
        assert_eq!(from_file, port, "the port file holds the port printed");
        Console {
            child,
            stdin,
            out,
            port,
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ckpt launch` of the counter against a coordinator at `port`.
fn launch_counter(tmpdir: &Path, ckpt_dir: &Path, port: u16) -> (Child, Lines) {
    let mut child = Command::new(ckpt())
        .args(["launch", "--quiet", "--ckpt-dir"])
        .arg(ckpt_dir)
        .arg(program("counter"))
        .env("CKPT_TMPDIR", tmpdir)
        .env("CKPT_COORD_PORT", port.to_string())
        .env("COUNTER_MS", "100")
        .env_remove("CKPT_SECRET")
        .env_remove("CKPT_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    (child, lines)
}

#[test]
fn console_commands_through_stdin() {
    let dir = TempDir::new("console");
    let tmpdir = dir.path().join("run");
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut con = Console::start(&tmpdir, &dir.path().join("port"));
    assert_eq!(mode(&tmpdir), 0o700, "the runtime dir is created 0700");

    con.type_line("?");
    con.out.wait(|l| l.contains("Commands:"), T);
    con.out
        .wait(|l| l.contains("q  kill all processes and quit"), T);
    con.type_line("s");
    con.out
        .wait(|l| l.starts_with("processes: 0, running: no"), T);
    con.type_line("i");
    con.out.wait(|l| l == "checkpoint interval: off", T);
    con.type_line("i 5");
    con.out.wait(|l| l == "checkpoint interval: 5 s", T);
    con.type_line("i");
    con.out.wait(|l| l == "checkpoint interval: 5 s", T);
    con.type_line("i 0");
    con.out.wait(|l| l == "checkpoint interval: off", T);

    let (mut prog, mut out) = launch_counter(&tmpdir, &images, con.port);
    out.wait(is_count, T);
    con.out
        .wait(|l| l.contains("worker connected: counter["), T);
    con.type_line("l");
    let entry = con.out.wait(|l| l.starts_with("1, "), T);
    // #, PROG[PID]@HOST, ppid PPID, UNIQUE-ID, STATE
    let fields: Vec<&str> = entry.split(", ").collect();
    assert_eq!(fields.len(), 5, "{entry}");
    assert_eq!(fields[1], format!("counter[{}]@{}", prog.id(), hostname()));
    assert_eq!(fields[2], format!("ppid {}", std::process::id()));
    assert!(!fields[3].is_empty());
    assert_eq!(fields[4], "RUNNING");
    con.type_line("s");
    con.out
        .wait(|l| l.starts_with("processes: 1, running: yes"), T);

    con.type_line("c");
    con.out.wait(|l| l == "checkpoint 1: started", T);
    con.out
        .wait(|l| l.contains("checkpoint 1 complete: 1 image(s)"), T);
    let m = eventually(T, "manifest", || manifest(&images));
    assert_eq!(m["generation"], 1);
    out.wait(is_count, T);

    con.type_line("k");
    con.out
        .wait(|l| l.contains("kill sent to 1 process(es)"), T);
    assert_eq!(
        wait_exit(&mut prog, T),
        Some(75),
        "k: the documented status 75"
    );

    let (mut prog, mut out) = launch_counter(&tmpdir, &images, con.port);
    out.wait(is_count, T);
    con.out.wait(|l| l.contains("worker connected"), T);
    con.type_line("q");
    con.out.wait(|l| l.contains("coordinator exiting"), T);
    assert_eq!(
        wait_exit(&mut con.child, T),
        Some(0),
        "q stops the coordinator"
    );
    assert_eq!(wait_exit(&mut prog, T), Some(75), "q: the program exits 75");
    assert!(!tmpdir.join(format!("secret-{}", con.port)).exists());
}

fn hostname() -> String {
    let out = Command::new("uname").arg("-n").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn exit_on_last() {
    let mut c = Computation::with_coordinator_args("exit-on-last", &["--exit-on-last"]);
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    c.kill();
    assert_eq!(c.wait_coordinator_exit(T), Some(0));
}

#[test]
fn daemon_detaches_and_logs() {
    let dir = TempDir::new("daemon");
    let tmpdir = dir.path().join("run");
    let port_file = dir.path().join("port");
    let out = Command::new(ckpt())
        .args(["coordinator", "--daemon", "--port", "0", "--port-file"])
        .arg(&port_file)
        .env("CKPT_TMPDIR", &tmpdir)
        .env_remove("CKPT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains(&format!("port {port}")), "{said}");
    let pid: i32 = said
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said}"));
    // Its own session: the shell that started it can go.
    assert_eq!(session_of(pid), pid, "the daemon leads its own session");
    let cmd = |args: &[&str]| {
        Command::new(ckpt())
            .arg("command")
            .args(args)
            .env("CKPT_TMPDIR", &tmpdir)
            .env("CKPT_COORD_PORT", port.to_string())
            .env_remove("CKPT_SECRET")
            .output()
            .unwrap()
    };
    assert_eq!(cmd(&["s"]).status.code(), Some(1), "reachable, no process");
    let log = tmpdir.join(format!("ckpt-coordinator-{port}.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("listening on 127.0.0.1:{port}")),
        "{text}"
    );
    assert_eq!(mode(&log), 0o600);
    assert!(cmd(&["q"]).status.success());
    eventually(T, "daemon gone", || {
        (!Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid)).then_some(())
    });
}

fn stat_fields(pid: i32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    after.split_whitespace().map(String::from).collect()
}

fn session_of(pid: i32) -> i32 {
    // fields after "(comm)": state ppid pgrp session ...
    stat_fields(pid)[3].parse().unwrap()
}

fn is_zombie(pid: i32) -> bool {
    stat_fields(pid).first().is_some_and(|s| s == "Z")
}

/// The coordinator processes whose environment names `tmpdir`.
fn coordinators_using(tmpdir: &Path) -> Vec<i32> {
    let want = format!("CKPT_TMPDIR={}", tmpdir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|a| a == b"coordinator")
                && env.split(|&b| b == 0).any(|a| a == want.as_bytes())
                && !is_zombie(*pid)
        })
        .collect()
}

#[test]
fn launch_starts_a_detached_coordinator() {
    let dir = TempDir::new("launch-coord");
    let tmpdir = dir.path().join("run");
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let port = free_port();
    let (mut prog, mut out) = launch_counter(&tmpdir, &images, port);
    out.wait(is_count, T);
    let coords = coordinators_using(&tmpdir);
    assert_eq!(coords.len(), 1, "one coordinator started: {coords:?}");
    let coord = coords[0];
    assert_eq!(session_of(coord), coord, "in its own session");
    assert_ne!(
        stat_fields(coord)[1].parse::<i32>().unwrap(),
        prog.id() as i32,
        "not a child the program could wait for"
    );
    let children =
        std::fs::read_to_string(format!("/proc/{}/task/{}/children", prog.id(), prog.id()))
            .unwrap_or_default();
    assert!(
        children.trim().is_empty(),
        "the program has no child: {children}"
    );
    // It is ours to command (the program registers soon after it starts),
    // and goes away with the last process.
    eventually(T, "the program registered", || {
        let s = Command::new(ckpt())
            .args(["command", "s", "--json"])
            .env("CKPT_TMPDIR", &tmpdir)
            .env("CKPT_COORD_PORT", port.to_string())
            .output()
            .unwrap();
        (s.status.code() == Some(0)).then_some(())
    });
    let _ = prog.kill();
    let _ = prog.wait();
    eventually(T, "the launched coordinator exits on last", || {
        coordinators_using(&tmpdir).is_empty().then_some(())
    });
}

#[test]
fn command_short_and_long_forms() {
    let mut c = Computation::new("forms");
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    for (short, long) in [(&["s"][..], &["--status"][..]), (&["l"], &["--list"])] {
        let a = c.command(&[short, &["--json"]].concat());
        let b = c.command(&[long, &["--json"]].concat());
        assert_eq!(a.status.code(), Some(0), "{a:?}");
        assert_eq!(b.status.code(), Some(0), "{b:?}");
        let va: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
        let vb: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
        assert_eq!(va, vb, "{short:?} and {long:?} answer alike");
    }
    let l: serde_json::Value = serde_json::from_slice(&c.command(&["l", "--json"]).stdout).unwrap();
    assert_eq!(l["list"][0]["info"]["program"], "counter");
    assert_eq!(l["list"][0]["state"], "RUNNING");
    let s: serde_json::Value = serde_json::from_slice(&c.command(&["s", "--json"]).stdout).unwrap();
    assert_eq!(s["status"]["running"], true);
    assert_eq!(s["status"]["processes"], 1);

    assert!(c.command(&["i", "9"]).status.success());
    let s: serde_json::Value =
        serde_json::from_slice(&c.command(&["--status", "--json"]).stdout).unwrap();
    assert_eq!(s["status"]["interval"], 9);
    assert!(c.command(&["--interval", "0"]).status.success());

    let a = c.command(&["c"]);
    assert!(a.status.success(), "{a:?}");
    assert!(String::from_utf8_lossy(&a.stdout).contains("checkpoint 1 started"));
    eventually(T, "checkpoint 1 complete", || {
        (manifest(&c.ckpt_dir)?["generation"] == 1).then_some(())
    });
    let b = c.command(&["--checkpoint"]);
    assert!(b.status.success(), "{b:?}");
    eventually(T, "checkpoint 2 complete", || {
        (manifest(&c.ckpt_dir)?["generation"] == 2).then_some(())
    });
    let bc = c.command(&["--bcheckpoint"]);
    assert!(bc.status.success(), "{bc:?}");
    assert!(String::from_utf8_lossy(&bc.stdout).contains("checkpoint 3 complete"));
    // Both at once, or nonsense: usage error.
    assert_eq!(c.command(&["--kill", "s"]).status.code(), Some(64));
    assert_eq!(c.command(&["x"]).status.code(), Some(64));
    assert_eq!(c.command(&["--kill"]).status.code(), Some(0));
    assert_eq!(c.wait_exit(T), Some(75));
}

#[test]
fn coordinator_address_from_environment_and_flags() {
    let c = Computation::new("coord-env");
    let wrong = free_port().to_string();
    let run = |args: &[&str], port_env: &str| {
        Command::new(ckpt())
            .arg("command")
            .args(args)
            .env("CKPT_TMPDIR", &c.tmpdir)
            .env("CKPT_COORD_HOST", "127.0.0.1")
            .env("CKPT_COORD_PORT", port_env)
            .output()
            .unwrap()
    };
    let port = c.port.to_string();
    assert_eq!(run(&["s"], &port).status.code(), Some(1), "env reaches it");
    assert_eq!(run(&["s"], &wrong).status.code(), Some(2), "wrong env port");
    assert_eq!(
        run(&["--coord-port", &port, "s"], &wrong).status.code(),
        Some(1),
        "the flag wins over the environment"
    );
    let out = Command::new(ckpt())
        .args(["command", "s"])
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_HOST", "localhost")
        .env("CKPT_COORD_PORT", &port)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "CKPT_COORD_HOST=localhost: {out:?}"
    );
}

#[test]
fn status_exit_codes_follow_the_computation() {
    let mut c = Computation::new("status-codes");
    assert_eq!(c.command(&["s"]).status.code(), Some(1), "nothing runs yet");
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    assert_eq!(c.command(&["s"]).status.code(), Some(0), "running");
    c.kill();
    assert_eq!(c.command(&["s"]).status.code(), Some(1), "finished");
}

#[test]
fn bc_then_k() {
    let mut c = Computation::new("bc-k");
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    let out = c.command(&["bc", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let img = PathBuf::from(v["checkpointed"]["images"][0].as_str().unwrap());
    // bc returned: the image is complete under its final name, no .tmp left.
    let val = Command::new(ckpt())
        .args(["image", "validate"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(val.status.success(), "{val:?}");
    assert!(!Path::new(&format!("{}.tmp", img.display())).exists());
    assert_eq!(mode(&img), 0o600, "images are 0600");
    assert!(c.command(&["k"]).status.success());
    assert_eq!(c.wait_exit(T), Some(75), "stopped by k after a checkpoint");
    // A restarted process stopped the same way says the same.
    c.restart(&img);
    c.wait_for_line(is_count, T);
    assert!(c.command(&["k"]).status.success());
    assert_eq!(c.wait_exit(T), Some(75), "ckpt restart exits 75 after k");
}

#[test]
fn program_status_passes_through_launch_and_restart() {
    let mut c = Computation::new("own-status");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("counter"), &[&stop]);
    c.wait_for_line(is_count, T);
    let img = c.checkpoint();
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(T), Some(0), "launch: the program's own status");
    c.restart(&img);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(T), Some(0), "restart: the program's own status");
}

/// The DMTCP tutorial: coordinator in the background, launch, l, c, kill,
/// restart with the generated script; the count continues.
#[test]
fn seed_workflow_with_restart_script() {
    let mut c = Computation::new("workflow");
    c.launch(&program("counter"), &[]);
    c.wait_lines(3, is_count, T);
    let l = c.command(&["l"]);
    let text = String::from_utf8_lossy(&l.stdout).into_owned();
    assert!(text.starts_with("1, counter["), "{text}");
    assert!(text.trim_end().ends_with(", RUNNING"), "{text}");
    assert!(c.command(&["c"]).status.success());
    let m = eventually(T, "manifest of checkpoint 1", || {
        manifest(&c.ckpt_dir).filter(|m| m["generation"] == 1)
    });
    let last = last_count(&c);
    c.kill();
    let script = c.ckpt_dir.join("ckpt_restart_script.sh");
    assert_eq!(mode(&script), 0o700);
    assert_eq!(mode(&c.ckpt_dir.join("ckpt_manifest.json")), 0o600);
    let image = m["images"][0]["path"].as_str().unwrap().to_string();
    assert!(image.contains("/ckpt_gen_000001/"), "{image}");
    assert_eq!(m["images"][0]["host"], hostname());
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains(&image), "{text}");

    let mut run = Command::new("sh")
        .arg(&script)
        .env("CKPT", ckpt())
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut out = Lines::of(run.stdout.take().unwrap());
    let first = count(&out.wait(is_count, T)).unwrap();
    assert!(
        first > 1 && first <= last + 1,
        "continues from the checkpoint: {first} (killed at {last})"
    );
    let next = count(&out.wait(is_count, T)).unwrap();
    assert_eq!(next, first + 1);
    assert!(c.command(&["k"]).status.success());
    assert_eq!(
        wait_exit(&mut run, T),
        Some(75),
        "the script exits with the program's status"
    );
}

use std::os::unix::process::CommandExt;

#[test]
fn restart_without_arguments_uses_the_newest_manifest() {
    let mut c = Computation::new("from-manifest");
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    c.checkpoint();
    c.wait_lines(3, is_count, T);
    c.checkpoint();
    let at = last_count(&c);
    c.kill();
    let dir = c.ckpt_dir.display().to_string();
    c.spawn(vec![
        "restart".into(),
        "--quiet".into(),
        "--ckpt-dir".into(),
        dir,
    ]);
    c.wait_connected(1, T);
    let first = count(&c.wait_for_line(is_count, T)).unwrap();
    assert!(
        first >= at,
        "from checkpoint 2 (count {at}), not 1: {first}"
    );
    // The kept generation is 2 only (--keep 1).
    assert_eq!(generation_dirs(&c.ckpt_dir), vec!["ckpt_gen_000002"]);
    // A restarted process continues the numbering.
    let out = c.command(&["bc"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("checkpoint 3 complete"),
        "{out:?}"
    );
}

#[test]
fn interval_checkpoints_keep_n_generations() {
    let mut c = Computation::with_coordinator_args("interval", &["--interval", "1", "--keep", "2"]);
    c.launch(&program("counter"), &[]);
    eventually(Duration::from_secs(60), "4 interval checkpoints", || {
        (manifest(&c.ckpt_dir)?["generation"].as_u64()? >= 4).then_some(())
    });
    assert!(c.command(&["i", "0"]).status.success());
    // A checkpoint may have been under way: wait for the count to settle.
    let g = eventually(T, "no checkpoint in progress", || {
        let l: serde_json::Value =
            serde_json::from_slice(&c.command(&["l", "--json"]).stdout).ok()?;
        (l["list"][0]["state"] == "RUNNING").then(|| manifest(&c.ckpt_dir))?
    })["generation"]
        .as_u64()
        .unwrap();
    let gens = generation_dirs(&c.ckpt_dir);
    assert_eq!(
        gens,
        vec![format!("ckpt_gen_{:06}", g - 1), format!("ckpt_gen_{g:06}")],
        "the newest 2 generations"
    );
    for gdir in &gens {
        let m = manifest(&c.ckpt_dir.join(gdir)).unwrap();
        let img = PathBuf::from(m["images"][0]["path"].as_str().unwrap());
        assert!(img.starts_with(c.ckpt_dir.join(gdir)), "{}", img.display());
        assert_eq!(mode(&c.ckpt_dir.join(gdir)), 0o700);
        let val = Command::new(ckpt())
            .args(["image", "validate"])
            .arg(&img)
            .output()
            .unwrap();
        assert!(val.status.success(), "{val:?}");
    }
    // The older generation restarts, and stays older than the newer one.
    let m = manifest(&c.ckpt_dir.join(&gens[0])).unwrap();
    let older = PathBuf::from(m["images"][0]["path"].as_str().unwrap());
    c.kill();
    c.restart(&older);
    c.wait_lines(2, is_count, T);
}

/// kill -9 during the write of a large image: the previous generation stays
/// complete, described by the manifest, and restartable.
#[test]
fn crash_during_a_checkpoint_leaves_the_previous_generation() {
    let mut c = Computation::new("crash-mid");
    c.env.push(("HEAP_MB".into(), "768".into()));
    c.spawn(vec![
        "launch".into(),
        "--quiet".into(),
        "--no-compress".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
        program("heap1g").display().to_string(),
    ]);
    c.wait_connected(1, T);
    c.wait_for_line(|l| l.starts_with("ready"), Duration::from_secs(120));
    c.wait_for_line(|l| l.starts_with("tick"), T);
    let img = c.checkpoint();
    let before = std::fs::metadata(&img).unwrap().len();
    assert!(before > 512 << 20, "a large image: {before} bytes");
    c.wait_for_line(|l| l.starts_with("tick"), T);
    // A blocking checkpoint, waiting while the program dies under it.
    let mut bc = Command::new(ckpt())
        .args(["command", "bc"])
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = PathBuf::from(format!("{}.tmp", img.display()));
    eventually(
        Duration::from_secs(60),
        "the new image being written",
        || (std::fs::metadata(&tmp).ok()?.len() > 16 << 20).then_some(()),
    );
    c.kill();
    // kill -9 leaves the half-written temporary image behind.
    let partial = std::fs::metadata(&tmp)
        .expect("killed before the new image was complete")
        .len();
    eprintln!("killed with {partial} of {before} bytes written");
    assert_eq!(
        wait_exit(&mut bc, T),
        Some(3),
        "bc reports the failed checkpoint"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut bc.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("disconnected during the checkpoint"), "{err}");
    assert!(
        partial < before,
        "killed mid-write ({partial} of {before} bytes)"
    );
    let m = manifest(&c.ckpt_dir).unwrap();
    assert_eq!(
        m["generation"], 1,
        "the manifest still describes generation 1"
    );
    let kept = PathBuf::from(m["images"][0]["path"].as_str().unwrap());
    let val = Command::new(ckpt())
        .args(["image", "validate"])
        .arg(&kept)
        .output()
        .unwrap();
    assert!(val.status.success(), "{val:?}");
    let dir = c.ckpt_dir.display().to_string();
    c.spawn(vec![
        "restart".into(),
        "--quiet".into(),
        "--ckpt-dir".into(),
        dir,
    ]);
    c.wait_connected(1, Duration::from_secs(60));
    c.wait_lines(2, |l| l.starts_with("tick"), Duration::from_secs(60));
}

/// The coordinator dies and a new one starts on the same port: the program
/// never noticed, registers again, and the next checkpoint succeeds and
/// continues the computation's numbering and id.
#[test]
fn coordinator_killed_and_restarted_while_the_program_runs() {
    let mut c = Computation::new("coord-restart");
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    c.checkpoint();
    let id = manifest(&c.ckpt_dir).unwrap()["computation_id"].clone();
    c.kill_coordinator();
    c.wait_lines(3, is_count, T);
    c.restart_coordinator();
    c.wait_connected(1, T);
    let out = c.command(&["bc", "--json"]);
    assert!(out.status.success(), "{out:?}\n{}", c.diagnostics());
    let m = manifest(&c.ckpt_dir).unwrap();
    assert_eq!(m["generation"], 2, "numbering continues");
    assert_eq!(m["computation_id"], id, "the same computation");
    c.wait_for_line(is_count, T);
}

#[test]
fn debug_logs_under_ckpt_tmpdir() {
    let mut c = Computation::new("debug-log");
    c.spawn(vec![
        "launch".into(),
        "--quiet".into(),
        "--debug".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
        program("counter").display().to_string(),
    ]);
    c.wait_connected(1, T);
    c.wait_for_line(is_count, T);
    c.checkpoint();
    let logs: Vec<PathBuf> = std::fs::read_dir(&c.tmpdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("ckpt-counter-")
        })
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(text.contains("checkpoint 1 written"), "{text}");
    assert!(text.contains("suspended in"), "debug detail: {text}");
    assert_eq!(mode(&logs[0]), 0o600);
    // The coordinator (in the foreground, --quiet) logs every stage too.
    let clog = c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port));
    let text = std::fs::read_to_string(&clog).unwrap();
    for stage in [
        "listening on 127.0.0.1",
        "worker connected: counter[",
        "checkpoint 1 of 1 process(es) started",
        "checkpoint 1 complete: 1 image(s)",
    ] {
        assert!(text.contains(stage), "{stage:?} not in the log:\n{text}");
    }
    assert_eq!(mode(&clog), 0o600);
}

#[test]
fn runtime_dir_open_to_others_is_refused() {
    let dir = TempDir::new("tmpdir-mode");
    let tmpdir = dir.path().join("run");
    std::fs::create_dir(&tmpdir).unwrap();
    std::fs::set_permissions(&tmpdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(ckpt())
        .args(["coordinator", "--daemon", "--port", "0"])
        .env("CKPT_TMPDIR", &tmpdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing the runtime directory") && err.contains("0755"),
        "{err}"
    );
    assert!(!tmpdir.join("secret-0").exists());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let out = Command::new(ckpt())
        .args(["coordinator", "--daemon", "--port", "0"])
        .env("CKPT_TMPDIR", &link)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symlink"),
        "{out:?}"
    );
}

#[test]
fn runtime_dir_of_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to chown the directory");
        return;
    }
    let dir = TempDir::new("tmpdir-owner");
    let tmpdir = dir.path().join("run");
    std::fs::create_dir(&tmpdir).unwrap();
    std::fs::set_permissions(&tmpdir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(Command::new("chown")
        .arg("65534")
        .arg(&tmpdir)
        .status()
        .unwrap()
        .success());
    let out = Command::new(ckpt())
        .args(["coordinator", "--daemon", "--port", "0"])
        .env("CKPT_TMPDIR", &tmpdir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("owned by uid 65534, not by you"), "{err}");
}

#[test]
fn command_without_the_secret_is_refused_clearly() {
    let c = Computation::new("no-secret");
    let elsewhere = TempDir::new("no-secret-run");
    std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(ckpt())
        .args(["command", "k"])
        .env("CKPT_TMPDIR", elsewhere.path())
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the connection: wrong secret"),
        "{err}"
    );
    assert!(err.contains("we had no secret to present"), "{err}");
    assert_eq!(
        c.command(&["s"]).status.code(),
        Some(1),
        "the coordinator is still ours"
    );
}

#[test]
fn listens_on_loopback_only_by_default() {
    let c = Computation::new("loopback");
    let out = Command::new("hostname").arg("-I").output();
    let addr = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .find(|a| {
                a.parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| !ip.is_loopback())
            })
            .map(String::from)
    });
    let Some(addr) = addr else {
        eprintln!("skipped: no non-loopback IPv4 address");
        return;
    };
    let ip: std::net::IpAddr = addr.parse().unwrap();
    let r = std::net::TcpStream::connect_timeout(&(ip, c.port).into(), Duration::from_secs(2));
    assert!(r.is_err(), "{addr}:{} must not answer", c.port);
    assert!(std::net::TcpStream::connect(("127.0.0.1", c.port)).is_ok());
    assert_eq!(mode(&c.tmpdir.join(format!("secret-{}", c.port))), 0o600);
    // Told to listen wider (a multi-host run), it answers there, and still
    // only with the secret.
    let wide = Computation::with_coordinator_args("wide", &["--listen", "0.0.0.0"]);
    let at = |secret: Option<&str>| {
        let mut cmd = Command::new(ckpt());
        cmd.args(["command", "s"])
            .env("CKPT_TMPDIR", &wide.tmpdir)
            .env("CKPT_COORD_HOST", &addr)
            .env("CKPT_COORD_PORT", wide.port.to_string())
            .env_remove("CKPT_SECRET");
        if let Some(s) = secret {
            cmd.env("CKPT_SECRET", s);
        }
        cmd.output().unwrap()
    };
    assert_eq!(at(None).status.code(), Some(1), "reachable at {addr}");
    let refused = at(Some("bad"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("wrong secret"));
}

#[test]
fn restart_starts_a_coordinator_when_none_runs() {
    let mut c = Computation::new("restart-starts");
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    let img = c.checkpoint();
    c.kill();
    c.kill_coordinator();
    assert_eq!(c.command(&["s"]).status.code(), Some(2), "nothing listens");
    // `restart` finds no coordinator on the port and starts one there.
    c.restart(&img);
    c.wait_lines(2, is_count, T);
    assert_eq!(coordinators_using(&c.tmpdir).len(), 1);
    let out = c.command(&["bc"]);
    assert!(out.status.success(), "{out:?}");
    assert!(c.command(&["q"]).status.success());
    assert_eq!(c.wait_exit(T), Some(75));
    eventually(T, "the started coordinator quits", || {
        coordinators_using(&c.tmpdir).is_empty().then_some(())
    });
}

/// `bc` on a terminal shows bytes and rate; in a script (a pipe) and with
/// `--quiet` it says nothing of the kind.
#[test]
fn checkpoint_progress_on_a_terminal_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let mut c = Computation::new("progress");
    c.env.push(("HEAP_MB".into(), "512".into()));
    c.spawn(vec![
        "launch".into(),
        "--quiet".into(),
        "--no-compress".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
        program("heap1g").display().to_string(),
    ]);
    c.wait_connected(1, T);
    c.wait_for_line(|l| l.starts_with("ready"), Duration::from_secs(120));
    let line = format!("'{}' command bc", ckpt().display());
    let tty = Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{tty:?}");
    assert!(said.contains("checkpoint 1 complete"), "{said}");
    let summary = said
        .split(['\r', '\n'])
        .find(|l| l.contains("MiB written in"))
        .unwrap_or_else(|| panic!("no progress on a terminal: {said}"));
    let mib: f64 = summary
        .trim()
        .trim_start_matches("checkpoint: ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(mib > 500.0, "the bytes of a 512 MiB heap: {summary}");
    assert!(summary.contains("MiB/s"), "{summary}");

    let piped = c.command(&["bc"]);
    assert!(piped.status.success(), "{piped:?}");
    assert!(
        !String::from_utf8_lossy(&piped.stderr).contains("MiB"),
        "{piped:?}"
    );
    let quiet = c.command(&["bc", "--quiet"]);
    assert!(quiet.status.success(), "{quiet:?}");
    assert!(
        quiet.stdout.is_empty() && quiet.stderr.is_empty(),
        "{quiet:?}"
    );
    let s = c.command(&["s", "--quiet"]);
    assert_eq!(s.status.code(), Some(0));
    assert!(s.stdout.is_empty());
}

/// `i N` at run time starts interval checkpoints; `launch --interval`
/// sets the running coordinator's interval.
#[test]
fn interval_set_at_run_time_and_by_launch() {
    let mut c = Computation::new("interval-runtime");
    c.spawn(vec![
        "launch".into(),
        "--quiet".into(),
        "--interval".into(),
        "2".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
        program("counter").display().to_string(),
    ]);
    c.wait_connected(1, T);
    let s: serde_json::Value = serde_json::from_slice(&c.command(&["s", "--json"]).stdout).unwrap();
    assert_eq!(
        s["status"]["interval"], 2,
        "launch --interval reached the coordinator"
    );
    assert!(c.command(&["i", "0"]).status.success());
    assert!(c.command(&["i", "1"]).status.success());
    eventually(Duration::from_secs(30), "2 checkpoints from i 1", || {
        (manifest(&c.ckpt_dir)?["generation"].as_u64()? >= 2).then_some(())
    });
    assert!(c.command(&["i", "0"]).status.success());
    c.wait_for_line(is_count, T);
}

/// A process presenting another secret is refused: it runs on, unmanaged,
/// and its log says why.
#[test]
fn worker_with_a_wrong_secret_is_refused() {
    let mut c = Computation::new("worker-secret");
    c.env.push(("CKPT_SECRET".into(), "0".repeat(64)));
    c.spawn(vec![
        "launch".into(),
        "--quiet".into(),
        "--ckpt-dir".into(),
        c.ckpt_dir.display().to_string(),
        program("counter").display().to_string(),
    ]);
    c.wait_lines(2, is_count, T);
    let pid = c.proc.as_ref().unwrap().id();
    let log = c.tmpdir.join(format!("ckpt-counter-{pid}.log"));
    eventually(T, "the refusal in the writer's log", || {
        std::fs::read_to_string(&log)
            .ok()?
            .contains("coordinator refused us: wrong secret")
            .then_some(())
    });
    let clog = c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port));
    let text = std::fs::read_to_string(&clog).unwrap();
    assert!(text.contains("refused: wrong secret"), "{text}");
    assert_eq!(c.command(&["s"]).status.code(), Some(1), "not registered");
}

/// `coordinator --ckpt-dir` sends every image, the manifest and the script
/// there, whatever the processes' own directory.
#[test]
fn coordinator_ckpt_dir_wins() {
    let elsewhere = TempDir::new("coord-dir-images");
    let d = elsewhere.path().display().to_string();
    let mut c = Computation::with_coordinator_args("coord-dir", &["--ckpt-dir", &d]);
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    let img = c.checkpoint();
    assert!(img.starts_with(elsewhere.path()), "{}", img.display());
    let m = manifest(elsewhere.path()).expect("manifest in --ckpt-dir");
    assert!(m["images"][0]["path"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{d}/ckpt_gen_000001/")));
    assert!(elsewhere.path().join("ckpt_restart_script.sh").exists());
    assert!(
        manifest(&c.ckpt_dir).is_none(),
        "nothing in the process's own dir"
    );
}

/// The README's batch job, run twice: the first run is stopped after a
/// checkpoint and resubmits itself (75); the second restarts from the
/// manifest, continues the count, finishes (0) and does not resubmit.
#[test]
fn batch_job_resubmits_until_done() {
    let dir = TempDir::new("batch");
    let tmpdir = dir.path().join("run");
    let work = dir.path().join("work");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let sbatch = bin.join("sbatch");
    std::fs::write(&sbatch, "#!/bin/sh\necho \"$1\" >> \"$RESUBMITS\"\n").unwrap();
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let stop = dir.path().join("stop");
    let job = dir.path().join("job.sh");
    std::fs::write(
        &job,
        format!(
            r#"#!/bin/sh
if [ -f ckpt_manifest.json ]; then ckpt restart & else ckpt launch {} {} & fi
pid=$!
( sleep $((TIME_LIMIT - 600))
  ckpt command bc && ckpt command k ) &
wait $pid; st=$?
[ "$st" -eq 75 ] && sbatch "$0"
exit "$st"
"#,
            program("counter").display(),
            stop.display()
        ),
    )
    .unwrap();
    let resubmits = dir.path().join("resubmits");
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        ckpt().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port();
    let run = |limit: &str| {
        let mut child = Command::new("sh")
            .arg(&job)
            .current_dir(&work)
            .env("PATH", &path)
            .env("TIME_LIMIT", limit)
            .env("RESUBMITS", &resubmits)
            .env("CKPT_TMPDIR", &tmpdir)
            .env("CKPT_COORD_PORT", port.to_string())
            .env("COUNTER_MS", "100")
            .env_remove("CKPT_SECRET")
            .env_remove("CKPT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let lines = Lines::of(child.stdout.take().unwrap());
        (child, lines)
    };
    let kill_group = |child: &Child| {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
    };

    // Run 1: checkpointed and stopped 2 s in.
    let (mut first, mut out) = run("602");
    let n = count(&out.wait(is_count, T)).unwrap();
    assert_eq!(
        wait_exit(&mut first, T),
        Some(75),
        "stopped after a checkpoint"
    );
    out.drain(Duration::from_millis(500));
    let last = out.seen.iter().rev().find_map(|l| count(l)).unwrap_or(n);
    kill_group(&first);
    assert_eq!(
        std::fs::read_to_string(&resubmits).unwrap().trim(),
        job.display().to_string(),
        "resubmitted itself"
    );
    assert!(manifest(&work).is_some());

    // Run 2: restarted from the manifest, runs to its end.
    let (mut second, mut out) = run("630");
    let first_count = count(&out.wait(is_count, T)).unwrap();
    assert!(
        first_count > 1 && first_count <= last + 1,
        "continues from the checkpoint: {first_count} (stopped at {last})"
    );
    std::fs::write(&stop, b"").unwrap();
    let v = out.wait(|l| l.starts_with("VERDICT"), T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(
        wait_exit(&mut second, T),
        Some(0),
        "finished: the program's status"
    );
    kill_group(&second);
    assert_eq!(
        std::fs::read_to_string(&resubmits).unwrap().lines().count(),
        1,
        "no resubmission after the end"
    );
}

/// A writer that does not offer the barrier (an older one: its hello has
/// no `barrier`) is still checkpointed, on its own as before, and its
/// image restarts; a writer that offers it passes it even alone (a
/// barrier of one).
#[test]
fn a_writer_without_the_barrier_is_checkpointed_on_its_own() {
    let mut c = Computation::new("no-barrier");
    c.env.push(("CKPT_NO_BARRIER".into(), "1".into()));
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    let img = c.checkpoint();
    let log =
        std::fs::read_to_string(c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port))).unwrap();
    assert!(log.contains("checkpoint 1 complete"), "{log}");
    assert!(
        !log.contains("barrier:"),
        "no barrier for an older writer:\n{log}"
    );
    c.kill();
    c.restart(&img);
    c.wait_lines(2, is_count, T);
    c.checkpoint();
    c.kill();

    let mut c = Computation::new("barrier-of-one");
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    c.checkpoint();
    let log =
        std::fs::read_to_string(c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port))).unwrap();
    assert!(
        log.contains("checkpoint 1: barrier: all 1 process(es) suspended"),
        "{log}"
    );
    assert!(
        log.contains("checkpoint 1: barrier: all 1 process(es) captured"),
        "{log}"
    );
    c.kill();
}

/// `ckpt command l` and `ckpt image inspect` writing to a pipe whose reader
/// is gone (`ckpt command l | head -1`, the reader already done) end
/// quietly as `ls` does: by SIGPIPE or status 0, no panic on "Broken pipe".
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    const SIGPIPE: i32 = 13;
    let mut c = Computation::new("closedpipe");
    c.launch(&program("counter"), &[]);
    c.wait_for_line(is_count, T);
    let img = c.checkpoint();
    let closed_stdout = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    for args in [
        vec!["command", "l"],
        vec!["image", "inspect", img.to_str().unwrap()],
    ] {
        let out = Command::new(ckpt())
            .args(&args)
            .env("CKPT_TMPDIR", &c.tmpdir)
            .env("CKPT_COORD_HOST", "127.0.0.1")
            .env("CKPT_COORD_PORT", c.port.to_string())
            .env_remove("CKPT_SECRET")
            .stdin(Stdio::null())
            .stdout(closed_stdout())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.signal() == Some(SIGPIPE) || out.status.code() == Some(0),
            "ckpt {args:?}: {:?}\n{err}",
            out.status
        );
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "ckpt {args:?}: {err}"
        );
    }
    // The coordinator did not mind, and the program runs on.
    let l = c.command(&["l"]);
    assert!(l.status.success(), "{l:?}");
    let listed = String::from_utf8_lossy(&l.stdout);
    assert!(listed.contains("counter"), "{listed}");
    c.kill();
}
