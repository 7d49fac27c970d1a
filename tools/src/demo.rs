//! `ckpt demo`: the whole story on a bundled counting program.

use crate::command::Client;
use anyhow::{anyhow, bail, Context, Result};
use ckpt_protocol::{Command as Cmd, Reply};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const COUNTER_C: &str = include_str!("../../tests/programs/counter.c");

struct Lines {
    rx: Receiver<String>,
}

impl Lines {
    fn of(child: &mut Child, tag: &'static str) -> Lines {
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                println!("  {tag} | {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// The next count printed, within `timeout`.
    fn next_count(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .rx
                .recv_timeout(left)
                .map_err(|_| anyhow!("the counter printed nothing for {timeout:?}"))?;
            if let Some(n) = line
                .strip_prefix("count ")
                .and_then(|n| n.trim().parse().ok())
            {
                return Ok(n);
            }
            if line.starts_with("VERDICT FAIL") {
                bail!("the counter failed its own check: {line}");
            }
        }
    }
}

fn step(msg: &str) {
    println!("==> {msg}");
}

struct Cleanup {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the demo; exit 0 only if the count continued after the restart.
pub fn run() -> Result<i32> {
    let exe = std::env::current_exe().context("finding the ckpt executable")?;
    let dir = std::env::temp_dir().join(format!("ckpt-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut guard = Cleanup {
        dir: dir.clone(),
        children: vec![],
    };
    let tmpdir = dir.join("run");
    crate::secret::ensure_tmpdir(&tmpdir)?;

    step("compiling the demo program (a counter printing every 200 ms)");
    let src = dir.join("counter.c");
    std::fs::write(&src, COUNTER_C).with_context(|| format!("writing {}", src.display()))?;
    let bin = dir.join("counter");
    let st = Command::new("cc")
        .args(["-O1", "-g", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map_err(|e| {
            anyhow!("cannot run the C compiler `cc` ({e}); install it: apt-get install gcc")
        })?;
    if !st.success() {
        bail!("cc failed to compile {} ({st})", src.display());
    }

    step("starting a coordinator");
    let port_file = dir.join("port");
    let coord = Command::new(&exe)
        .args([
            "coordinator",
            "--daemon",
            "--quiet",
            "--port",
            "0",
            "--port-file",
        ])
        .arg(&port_file)
        .env("CKPT_TMPDIR", &tmpdir)
        .env_remove("CKPT_SECRET")
        .stdin(Stdio::null())
        .spawn()
        .context("starting the coordinator")?;
    guard.children.push(coord);
    let port = wait_port(&port_file)?;
    println!("    coordinator on 127.0.0.1:{port}");

    step("launching the counter under ckpt");
    let mut counter = Command::new(&exe)
        .args([
            "launch",
            "--quiet",
            "--coord-host",
            "127.0.0.1",
            "--coord-port",
        ])
        .arg(port.to_string())
        .arg("--ckpt-dir")
        .arg(&dir)
        .arg(&bin)
        .env("CKPT_TMPDIR", &tmpdir)
        .env_remove("CKPT_SECRET")
        .stdout(Stdio::piped())
        .spawn()
        .context("running ckpt launch")?;
    let lines = Lines::of(&mut counter, "counter");
    let counter_pid = counter.id();
    guard.children.push(counter);
    let mut last = 0;
    while last < 5 {
        last = lines.next_count(Duration::from_secs(20))?;
    }
    // The writer connects in the background: wait until it is listed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect("127.0.0.1", port, &tmpdir).map_err(|e| anyhow!("{e}"))?;
        if let Reply::Status { processes, .. } = c.request(Cmd::Status)? {
            if processes > 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the counter never connected to the coordinator (is libckpt_writer.so built? see {})", tmpdir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    step("checkpointing (blocking)");
    let mut c = Client::connect("127.0.0.1", port, &tmpdir).map_err(|e| anyhow!("{e}"))?;
    let image = match c.request(Cmd::BlockingCheckpoint)? {
        Reply::Checkpointed { images, .. } if !images.is_empty() => PathBuf::from(&images[0]),
        other => bail!("checkpoint failed: {other:?}"),
    };
    // The count the image holds is the last one printed before it.
    while let Ok(l) = lines.rx.try_recv() {
        if let Some(n) = l.strip_prefix("count ").and_then(|n| n.parse().ok()) {
            last = n;
        }
    }
    let kib = std::fs::metadata(&image)
        .map(|m| m.len() / 1024)
        .unwrap_or(0);

    step(&format!("killing the counter (SIGKILL, pid {counter_pid})"));
    if let Some(mut ch) = guard.children.pop() {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    // Drain what was printed between the checkpoint and the kill.
    while lines.rx.recv_timeout(Duration::from_millis(100)).is_ok() {}

    step(&format!("restarting from {}", image.display()));
    let mut restarted = Command::new(&exe)
        .args([
            "restart",
            "--quiet",
            "--coord-host",
            "127.0.0.1",
            "--coord-port",
        ])
        .arg(port.to_string())
        .arg(&image)
        .env("CKPT_TMPDIR", &tmpdir)
        .env_remove("CKPT_SECRET")
        .stdout(Stdio::piped())
        .spawn()
        .context("running ckpt restart")?;
    let rlines = Lines::of(&mut restarted, "restored");
    guard.children.push(restarted);
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(rlines.next_count(Duration::from_secs(20))?);
    }

    step("quitting the coordinator (kills the restored counter)");
    if let Ok(mut c) = Client::connect("127.0.0.1", port, &tmpdir) {
        let _ = c.request(Cmd::Quit);
    }
    for mut ch in guard.children.drain(..).rev() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(ch.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = ch.kill();
        let _ = ch.wait();
    }

    // The restored process prints the count after the one in the image.
    let at = after[0].saturating_sub(1);
    let shown: Vec<String> = after.iter().map(|n| n.to_string()).collect();
    println!();
    println!(
        "checkpointed at count {at} into {} ({kib} KiB)",
        image.display()
    );
    println!(
        "killed the counter, restarted it from the image: count {}",
        shown.join(" ")
    );
    let ok = after[0] > 5 && at <= last && after.windows(2).all(|w| w[1] == w[0] + 1);
    if ok {
        println!("the count continued where the checkpoint left it: ckpt works.");
        Ok(0)
    } else {
        println!("FAILED: the count did not continue from {at}");
        Ok(1)
    }
}

fn wait_port(file: &Path) -> Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!(
                "the coordinator did not write {} within 10 s",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
