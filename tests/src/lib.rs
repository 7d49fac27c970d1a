//! Test harness: builds the C programs in `tests/programs/`, runs a
//! coordinator with a private runtime directory, launches programs under
//! `ckpt launch`, reads their output line by line with bounded waits, and
//! checkpoints, kills and restarts them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub mod consumer;
mod tmux;
pub use tmux::Tmux;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The directory holding `ckpt`, `ckpt-restore` and `libckpt_writer.so`.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("debug");
    for f in ["ckpt", "ckpt-restore", "libckpt_writer.so"] {
        if !dir.join(f).exists() {
            panic!(
                "{} is missing: run scripts/build.sh first",
                dir.join(f).display()
            );
        }
    }
    dir
}

/// The `ckpt` binary.
pub fn ckpt() -> PathBuf {
    bin_dir().join("ckpt")
}

/// A directory removed when dropped (kept when CKPT_KEEP=1, for debugging).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ckpt-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("CKPT_KEEP").as_deref() != Ok("1") {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Compiles `tests/programs/<name>.c` (once per test binary) and returns the executable.
pub fn program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    static DIR: OnceLock<TempDir> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let dir = DIR.get_or_init(|| TempDir::new("progs"));
    let src = root().join("tests/programs").join(format!("{name}.c"));
    let out = dir.path().join(name);
    let st = Command::new("cc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run cc to build {}: {e} (apt-get install gcc)",
                src.display()
            )
        });
    assert!(st.success(), "cc failed on {}", src.display());
    // Other users (the unprivileged tests) must be able to run it.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir.path())
        .status();
    built.insert(name.to_string(), out.clone());
    out
}

/// Where a program's stdout goes.
#[derive(Clone, Debug)]
pub enum Stdout {
    /// A pipe read by the harness.
    Pipe,
    /// A regular file, followed by the harness.
    File(PathBuf),
    /// A pseudo-terminal (the command runs under `script`).
    Pty,
}

/// A running process (launched or restarted) and its output.
pub struct Proc {
    child: Child,
    lines: Receiver<String>,
    _stdin: Option<std::process::ChildStdin>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Proc {
    /// The pid of the process `ckpt` became (launch and restart exec).
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

fn reader<R: Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let line = line.trim_end_matches('\r').to_string();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn file_follower(path: PathBuf, start: u64) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pos = start;
        let mut partial = String::new();
        loop {
            if let Ok(data) = std::fs::read(&path) {
                if (data.len() as u64) > pos {
                    partial.push_str(&String::from_utf8_lossy(&data[pos as usize..]));
                    pos = data.len() as u64;
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        if tx.send(line.trim_end().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
            // Polling a file: there is no pipe to block on.
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    rx
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `p` quoted for a POSIX shell.
pub fn quote_path(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

/// Where [`Computation::tree_story`] hands over to the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every process was checkpointed (the first time) and runs on.
    Checkpointed,
    /// Restarted from all the first checkpoint's images, named together.
    RestartedFromImages,
    /// Every restarted process was checkpointed and runs on.
    CheckpointedAgain,
    /// Restarted from the checkpoint directory's manifest.
    RestartedFromManifest,
}

impl Step {
    /// Whether the tree was just restarted.
    pub fn is_restart(self) -> bool {
        matches!(
            self,
            Step::RestartedFromImages | Step::RestartedFromManifest
        )
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Checkpointed => "the first checkpoint",
            Step::RestartedFromImages => "the restart from the images",
            Step::CheckpointedAgain => "the second checkpoint",
            Step::RestartedFromManifest => "the restart from the manifest",
        })
    }
}

/// A coordinator with a private runtime and checkpoint directory, and the
/// process of the computation.
pub struct Computation {
    /// Everything of this computation lives here.
    pub dir: TempDir,
    /// CKPT_TMPDIR.
    pub tmpdir: PathBuf,
    /// Checkpoint directory.
    pub ckpt_dir: PathBuf,
    /// Coordinator port.
    pub port: u16,
    coord: Child,
    coord_args: Vec<String>,
    /// The current process.
    pub proc: Option<Proc>,
    /// Commands are prefixed with this (e.g. setpriv, bash -c 'ulimit ...').
    pub wrapper: Vec<String>,
    /// Where stdout goes.
    pub stdout: Stdout,
    /// Extra environment for launch/restart.
    pub env: Vec<(String, String)>,
}

impl Computation {
    /// Starts a coordinator on port 0.
    pub fn new(tag: &str) -> Computation {
        Self::with_wrapper(tag, vec![])
    }

    /// Starts a coordinator (itself under `wrapper`) on port 0.
    pub fn with_wrapper(tag: &str, wrapper: Vec<String>) -> Computation {
        Self::with_wrapper_prepared(tag, wrapper, |_| {})
    }

    /// Like [`with_wrapper`](Self::with_wrapper); `prepare` gets the
    /// computation's directory before the coordinator starts (chown it).
    pub fn with_wrapper_prepared(
        tag: &str,
        wrapper: Vec<String>,
        prepare: impl FnOnce(&Path),
    ) -> Computation {
        Self::build(tag, wrapper, prepare, &[])
    }

    /// A coordinator on port 0 with extra options (`--interval 1`,
    /// `--keep 2`, `--exit-on-last`, ...).
    pub fn with_coordinator_args(tag: &str, args: &[&str]) -> Computation {
        Self::build(tag, vec![], |_| {}, args)
    }

    fn build(
        tag: &str,
        wrapper: Vec<String>,
        prepare: impl FnOnce(&Path),
        args: &[&str],
    ) -> Computation {
        let dir = TempDir::new(tag);
        let tmpdir = dir.path().join("run");
        let ckpt_dir = dir.path().join("images");
        std::fs::create_dir_all(&ckpt_dir).unwrap();
        std::fs::create_dir_all(&tmpdir).unwrap();
        let _ = Command::new("chmod").arg("0700").arg(&tmpdir).status();
        prepare(dir.path());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (coord, port) =
            Self::start_coordinator_at(&wrapper, &tmpdir, &dir.path().join("port"), 0, &args);
        Computation {
            dir,
            tmpdir,
            ckpt_dir,
            port,
            coord,
            coord_args: args,
            proc: None,
            wrapper,
            stdout: Stdout::Pipe,
            env: vec![],
        }
    }

    /// Starts a coordinator (console on a closed stdin, so it reads
    /// nothing) and waits for its port file.
    fn start_coordinator_at(
        wrapper: &[String],
        tmpdir: &Path,
        port_file: &Path,
        port: u16,
        args: &[String],
    ) -> (Child, u16) {
        let _ = std::fs::remove_file(port_file);
        let mut cmd = Self::wrapped(wrapper, &ckpt());
        cmd.args([
            "coordinator",
            "--quiet",
            "--port",
            &port.to_string(),
            "--port-file",
        ])
        .arg(port_file)
        .args(args)
        .env("CKPT_TMPDIR", tmpdir)
        .env_remove("CKPT_SECRET")
        .env_remove("CKPT_DIR")
        .stdin(Stdio::null());
        let mut coord = cmd.spawn().expect("starting the coordinator");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            if let Ok(Some(st)) = coord.try_wait() {
                panic!("the coordinator exited at once: {st}");
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator wrote no port file within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (coord, port)
    }

    /// Kills the coordinator with SIGKILL (the processes keep running).
    pub fn kill_coordinator(&mut self) {
        let _ = self.coord.kill();
        let _ = self.coord.wait();
    }

    /// Starts a coordinator again on the same port, with the same options.
    pub fn restart_coordinator(&mut self) {
        let (coord, port) = Self::start_coordinator_at(
            &self.wrapper,
            &self.tmpdir,
            &self.dir.path().join("port"),
            self.port,
            &self.coord_args,
        );
        assert_eq!(port, self.port);
        self.coord = coord;
    }

    fn wrapped(wrapper: &[String], exe: &Path) -> Command {
        if wrapper.is_empty() {
            Command::new(exe)
        } else {
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg(exe);
            c
        }
    }

    /// Runs `ckpt ARGS...` as the computation's process (its output is
    /// what `wait_for_line` reads); kills the previous one.
    pub fn spawn(&mut self, args: Vec<String>) {
        if let Some(p) = self.proc.as_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let mut full: Vec<String> = self.wrapper.clone();
        full.push(ckpt().display().to_string());
        full.extend(args);
        let mut cmd = match &self.stdout {
            Stdout::Pty => {
                let line: Vec<String> = full.iter().map(|a| shell_quote(a)).collect();
                let mut c = Command::new("script");
                c.args(["-qfec", &line.join(" "), "/dev/null"]);
                c
            }
            _ => {
                let mut c = Command::new(&full[0]);
                c.args(&full[1..]);
                c
            }
        };
        cmd.env("CKPT_TMPDIR", &self.tmpdir)
            .env("CKPT_COORD_HOST", "127.0.0.1")
            .env("CKPT_COORD_PORT", self.port.to_string())
            .env_remove("CKPT_SECRET")
            .env_remove("CKPT_DIR")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .process_group(0);
        let (child, lines) = match &self.stdout {
            Stdout::File(path) => {
                let start = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("stdout file");
                cmd.stdout(f);
                let child = cmd.spawn().expect("spawn");
                (child, file_follower(path.clone(), start))
            }
            _ => {
                cmd.stdout(Stdio::piped());
                let mut child = cmd.spawn().expect("spawn");
                let out = child.stdout.take().unwrap();
                (child, reader(out))
            }
        };
        let mut child = child;
        let stdin = child.stdin.take();
        self.proc = Some(Proc {
            child,
            lines,
            _stdin: stdin,
            seen: vec![],
        });
    }

    /// `ckpt launch PROGRAM ARGS...`; waits until the process is connected.
    pub fn launch(&mut self, program: &Path, args: &[&str]) {
        self.launch_tree(program, args, 1);
    }

    /// `ckpt launch PROGRAM ARGS...` of a program that forks: waits until
    /// `processes` processes are connected.
    pub fn launch_tree(&mut self, program: &Path, args: &[&str], processes: usize) {
        self.spawn_launch(program, args);
        self.wait_connected(processes, Duration::from_secs(20));
    }

    /// `ckpt launch PROGRAM ARGS...` (images in the checkpoint
    /// directory), without waiting for anything.
    pub fn spawn_launch(&mut self, program: &Path, args: &[&str]) {
        let mut a = vec![
            "launch".to_string(),
            "--quiet".into(),
            "--ckpt-dir".into(),
            self.ckpt_dir.display().to_string(),
        ];
        a.push(program.display().to_string());
        a.extend(args.iter().map(|s| s.to_string()));
        self.spawn(a);
    }

    /// `ckpt restart IMAGE`; waits until the process is connected.
    pub fn restart(&mut self, image: &Path) {
        self.restart_all(&[image.to_path_buf()], 1, Duration::from_secs(30));
    }

    /// `ckpt restart IMAGES...`: the images of a tree in one restart;
    /// waits until `processes` processes are connected.
    pub fn restart_all(&mut self, images: &[PathBuf], processes: usize, timeout: Duration) {
        let mut args: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
        args.extend(images.iter().map(|i| i.display().to_string()));
        self.spawn(args);
        self.wait_connected(processes, timeout);
    }

    /// `ckpt restart --ckpt-dir DIR`: the images the checkpoint
    /// directory's manifest names, without waiting for anything.
    pub fn spawn_restart_manifest(&mut self) {
        let dir = self.ckpt_dir.display().to_string();
        self.spawn(
            ["restart", "--quiet", "--ckpt-dir", &dir]
                .map(String::from)
                .to_vec(),
        );
    }

    /// [`spawn_restart_manifest`](Self::spawn_restart_manifest); waits
    /// until `processes` processes are connected.
    pub fn restart_manifest(&mut self, processes: usize, timeout: Duration) {
        self.spawn_restart_manifest();
        self.wait_connected(processes, timeout);
    }

    /// Waits for a line matching `pred`; panics on timeout, on the
    /// process's end, or on a "VERDICT FAIL" line.
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let p = self.proc.as_mut().expect("no process");
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match p.lines.recv_timeout(left) {
                Ok(line) => {
                    p.seen.push(line.clone());
                    if line.contains("VERDICT FAIL") {
                        panic!(
                            "the program failed its own check: {line}\n{}",
                            self.diagnostics()
                        );
                    }
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no matching line within {timeout:?}\n{}",
                        self.diagnostics()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = p.child.try_wait();
                    panic!(
                        "the process ended ({st:?}) before a matching line\n{}",
                        self.diagnostics()
                    )
                }
            }
        }
    }

    /// Waits until `n` lines matching `pred` arrived.
    pub fn wait_lines(
        &mut self,
        n: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        (0..n)
            .map(|_| self.wait_for_line(&pred, deadline.saturating_duration_since(Instant::now())))
            .collect()
    }

    /// The last lines seen and the logs, for a failure message.
    pub fn diagnostics(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.proc {
            let from = p.seen.len().saturating_sub(15);
            s.push_str(&format!(
                "last output:\n  {}\n",
                p.seen[from..].join("\n  ")
            ));
        }
        if let Ok(rd) = std::fs::read_dir(&self.tmpdir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(20);
                    s.push_str(&format!("{name}:\n  {}\n", lines[from..].join("\n  ")));
                }
            }
        }
        s
    }

    /// `ckpt command ARGS...`.
    pub fn command(&self, args: &[&str]) -> Output {
        Self::wrapped(&self.wrapper, &ckpt())
            .arg("command")
            .args(args)
            .env("CKPT_TMPDIR", &self.tmpdir)
            .env("CKPT_COORD_HOST", "127.0.0.1")
            .env("CKPT_COORD_PORT", self.port.to_string())
            .env_remove("CKPT_SECRET")
            .output()
            .expect("ckpt command")
    }

    /// Number of processes connected (from `ckpt command s --json`).
    pub fn processes(&self) -> usize {
        let out = self.command(&["s", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["status"]["processes"].as_u64().unwrap_or(0) as usize
    }

    /// Waits until `n` processes are connected.
    pub fn wait_connected(&mut self, n: usize, timeout: Duration) {
        self.wait_processes(|k| k == n, &format!("{n} process(es)"), timeout);
    }

    /// Waits until at least `n` processes are connected (a tree whose
    /// short-lived children come and go).
    pub fn wait_connected_at_least(&mut self, n: usize, timeout: Duration) {
        self.wait_processes(|k| k >= n, &format!("at least {n} process(es)"), timeout);
    }

    /// Waits until the number of processes connected satisfies `enough`.
    fn wait_processes(&mut self, enough: impl Fn(usize) -> bool, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !enough(self.processes()) {
            if let Some(p) = self.proc.as_mut() {
                if let Ok(Some(st)) = p.child.try_wait() {
                    // Collect what it said before going.
                    while let Ok(l) = p.lines.recv_timeout(Duration::from_millis(200)) {
                        p.seen.push(l);
                    }
                    panic!(
                        "the process exited ({st}) before connecting\n{}",
                        self.diagnostics()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what} not connected within {timeout:?}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A blocking checkpoint; returns the image path.
    pub fn checkpoint(&self) -> PathBuf {
        self.bc_images().remove(0)
    }

    /// `ckpt command bc --json`: the images of the computation's `n`
    /// processes, each checked to exist.
    pub fn checkpoint_all(&self, n: usize) -> Vec<PathBuf> {
        let images = self.bc_images();
        assert_eq!(images.len(), n, "one image per process: {images:?}");
        images
    }

    /// `ckpt command bc --json` of whatever is connected (a tree whose
    /// short-lived children come and go): its images, each checked to
    /// exist.
    pub fn checkpoint_any(&self) -> Vec<PathBuf> {
        self.bc_images()
    }

    /// `ckpt command bc`, which must fail: what it said (stdout, then
    /// stderr).
    pub fn checkpoint_fails(&self) -> String {
        let out = self.command(&["bc"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "the checkpoint succeeded: {text}");
        text
    }

    /// `ckpt command bc --json`: its images (at least one), each checked
    /// to exist.
    fn bc_images(&self) -> Vec<PathBuf> {
        let out = self.command(&["bc", "--json"]);
        assert!(
            out.status.success(),
            "checkpoint failed ({}): {}{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.diagnostics()
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bc --json output");
        let images: Vec<PathBuf> = v["checkpointed"]["images"]
            .as_array()
            .expect("an image list")
            .iter()
            .map(|i| PathBuf::from(i.as_str().expect("an image path")))
            .collect();
        assert!(!images.is_empty(), "bc named no image: {v}");
        for i in &images {
            assert!(i.exists(), "image {} does not exist", i.display());
        }
        images
    }

    /// Kills the process with SIGKILL (its whole process group), and makes
    /// sure the coordinator saw it go.
    pub fn kill(&mut self) {
        let Some(mut p) = self.proc.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", p.child.id())])
            .status();
        let _ = p.child.kill();
        let _ = p.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.processes() != 0 {
            if Instant::now() > deadline {
                // SIGKILL did not reach it (a restored process outside our
                // process group): stop it through the coordinator.
                let _ = self.command(&["k"]);
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.processes() != 0 {
                    assert!(
                        Instant::now() < deadline,
                        "the process does not die\n{}",
                        self.diagnostics()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ckpt command k`: the coordinator kills every process (they exit
    /// with 75); waits until none is connected.
    pub fn kill_through_coordinator(&mut self, timeout: Duration) {
        let out = self.command(&["k"]);
        assert!(out.status.success(), "ckpt command k: {out:?}");
        self.wait_connected(0, timeout);
    }

    /// Waits for the coordinator to exit; returns its status code.
    pub fn wait_coordinator_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.coord.try_wait() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "the coordinator did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let p = self.proc.as_mut().expect("no process");
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                return st.code();
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A file that makes the programs print their verdict and exit.
    pub fn stop_file(&self) -> PathBuf {
        self.dir.path().join("stop")
    }

    /// Creates the stop file and returns the verdict line.
    pub fn verdict(&mut self, timeout: Duration) -> String {
        std::fs::write(self.stop_file(), b"stop").unwrap();
        let line = self.wait_for_line(|l| l.starts_with("VERDICT"), timeout);
        let _ = std::fs::remove_file(self.stop_file());
        line
    }

    /// Creates the stop file; the verdict must be `VERDICT OK...` and the
    /// process (launched or restarted) must exit with 0. Returns the
    /// verdict line.
    pub fn verdict_ok(&mut self, timeout: Duration) -> String {
        let v = self.verdict(timeout);
        assert!(v.starts_with("VERDICT OK"), "{v}\n{}", self.diagnostics());
        assert_eq!(
            self.wait_exit(timeout),
            Some(0),
            "the process exits with the status of the computation's root"
        );
        v
    }

    /// The shell line that sets this computation's environment, then runs
    /// `ckpt ARGS` (ARGS already quoted for the shell).
    pub fn ckpt_shell_line(&self, args: &str) -> String {
        format!(
            "export CKPT_TMPDIR={} CKPT_COORD_HOST=127.0.0.1 CKPT_COORD_PORT={}; {} {args}",
            quote_path(&self.tmpdir),
            self.port,
            quote_path(&ckpt())
        )
    }

    /// A process tree's story once it runs (launched, or restarted): a
    /// checkpoint of its `processes` processes → kill → restart of all
    /// the images together → checkpoint → kill → restart from the
    /// manifest, each restart waiting (up to `timeout`) for every process
    /// to connect. After each step `at` checks that the tree goes on (and
    /// whatever the test judges there).
    pub fn tree_story(
        &mut self,
        processes: usize,
        timeout: Duration,
        mut at: impl FnMut(&mut Computation, Step),
    ) {
        let images = self.checkpoint_all(processes);
        at(self, Step::Checkpointed);
        self.kill();
        self.restart_all(&images, processes, timeout);
        at(self, Step::RestartedFromImages);
        self.checkpoint_all(processes);
        at(self, Step::CheckpointedAgain);
        self.kill();
        self.restart_manifest(processes, timeout);
        at(self, Step::RestartedFromManifest);
    }

    /// tests/programs/NAME.c (given the stop file) through the whole story,
    /// its ticks as progress ("tick ...", not "stalled"), then its own
    /// verdict, which must be OK.
    pub fn program_story(&mut self, name: &str) {
        let stop = self.stop_file().display().to_string();
        self.launch(&program(name), &[&stop]);
        self.story(
            &|l: &str| l.starts_with("tick") && !l.contains("stalled"),
            Duration::from_secs(30),
        );
        self.verdict_ok(Duration::from_secs(30));
    }

    /// The whole story: progress → checkpoint (unaffected) → checkpoint
    /// again → kill → restart → progress → checkpoint → kill → restart →
    /// progress. `progress` recognises a line showing the program works.
    pub fn story(&mut self, progress: &dyn Fn(&str) -> bool, timeout: Duration) {
        self.wait_lines(2, progress, timeout);
        let first = self.checkpoint();
        self.wait_lines(2, progress, timeout);
        let second = self.checkpoint();
        assert_eq!(first, second, "the same process writes the same image name");
        self.wait_lines(1, progress, timeout);
        self.kill();
        self.restart(&second);
        self.wait_lines(2, progress, timeout);
        let third = self.checkpoint();
        self.wait_lines(1, progress, timeout);
        self.kill();
        self.restart(&third);
        self.wait_lines(2, progress, timeout);
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", p.child.id())])
                .status();
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        // q kills whatever is still connected (e.g. a restored process).
        let _ = self.command(&["q"]);
        let _ = self.coord.kill();
        let _ = self.coord.wait();
    }
}

/// Whether we run as root (some tests need to switch users).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// A computation whose commands all run as the unprivileged user nobody
/// (uid and gid 65534, through setpriv), its directory given to nobody;
/// None (and the reason on stderr) when not root or setpriv is missing.
pub fn as_nobody(tag: &str) -> Option<Computation> {
    if !is_root() {
        eprintln!("skipped: needs root to switch to an unprivileged user (setpriv)");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return None;
    }
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ]
    .map(String::from)
    .to_vec();
    // The coordinator's runtime directory must belong to nobody before it starts.
    Some(Computation::with_wrapper_prepared(tag, wrapper, |dir| {
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(dir)
            .status()
            .expect("chown");
        Command::new("chmod")
            .arg("a+rx")
            .arg(dir.parent().expect("a parent directory"))
            .status()
            .expect("chmod");
    }))
}

/// `ckpt image inspect [ARGS...] IMAGE`: its standard output.
pub fn inspect(image: &Path, args: &[&str]) -> String {
    let out = Command::new(ckpt())
        .args(["image", "inspect"])
        .args(args)
        .arg(image)
        .output()
        .expect("ckpt image inspect");
    assert!(
        out.status.success(),
        "ckpt image inspect {}: {out:?}",
        image.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
