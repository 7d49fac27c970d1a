//! `ckpt launch`: make sure a coordinator runs, then exec the program with
//! the writer preloaded. Also the coordinator start shared with `restart`.

use crate::command::listening;
use crate::secret;
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the coordinator is, and what a newly started one gets.
#[derive(Debug, Clone)]
pub struct CoordTarget {
    pub host: String,
    pub port: u16,
    pub tmpdir: PathBuf,
    pub interval: Option<u64>,
    /// `--keep` for a coordinator started here.
    pub keep: Option<u64>,
    pub quiet: bool,
    /// `--debug`: verbose logs (`CKPT_DEBUG=1`) for the processes and a
    /// coordinator started here.
    pub debug: bool,
}

fn is_local(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0")
        || std::fs::read_to_string("/proc/sys/kernel/hostname").is_ok_and(|h| h.trim() == host)
}

/// A file next to the running `ckpt` (or the override in `env`).
pub fn sibling(name: &str, env: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        if !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    let exe = std::env::current_exe().context("finding the ckpt executable")?;
    let p = exe.parent().unwrap_or(Path::new(".")).join(name);
    if !p.exists() {
        bail!(
            "{} not found (run scripts/build.sh, or set {env})",
            p.display()
        );
    }
    Ok(p)
}

/// Returns the port of a running coordinator at the target, starting one
/// (daemon, exit-on-last) when nothing answers on a local host.
pub fn ensure_coordinator(t: &CoordTarget) -> Result<u16> {
    if t.port != 0 && listening(&t.host, t.port) {
        if let Some(n) = t.interval {
            let _ = crate::command::one(
                &t.host,
                t.port,
                &t.tmpdir,
                ckpt_protocol::Command::Interval(n),
            );
        }
        return Ok(t.port);
    }
    if !is_local(&t.host) {
        bail!(
            "no coordinator answers at {}:{} (start one there with `ckpt coordinator`)",
            t.host,
            t.port
        );
    }
    secret::ensure_tmpdir(&t.tmpdir)?;
    let port_file = t.tmpdir.join(format!("coord-port-{}", std::process::id()));
    let _ = std::fs::remove_file(&port_file);
    let exe = std::env::current_exe().context("finding the ckpt executable")?;
    let mut cmd = Command::new(&exe);
    // --daemon: it forks, leaves our session (it must outlive the shell
    // that launched the program, and never be a child the program could
    // reap) and its first process exits once the port is taken.
    cmd.arg("coordinator")
        .args(["--daemon", "--exit-on-last", "--quiet", "--port"])
        .arg(t.port.to_string())
        .arg("--port-file")
        .arg(&port_file)
        .env("CKPT_TMPDIR", &t.tmpdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if t.host != "127.0.0.1" && t.host != "localhost" {
        cmd.args(["--listen", "0.0.0.0"]);
    }
    if let Some(n) = t.interval {
        cmd.arg("--interval").arg(n.to_string());
    }
    if let Some(n) = t.keep {
        cmd.arg("--keep").arg(n.to_string());
    }
    if t.debug {
        cmd.arg("--debug");
    }
    let out = cmd
        .output()
        .with_context(|| format!("starting {} coordinator", exe.display()))?;
    let port = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    let _ = std::fs::remove_file(&port_file);
    match port {
        Some(p) if out.status.success() => {
            if !t.quiet {
                eprintln!(
                    "ckpt: started a coordinator on port {p} (log: {})",
                    t.tmpdir.join(format!("ckpt-coordinator-{p}.log")).display()
                );
            }
            Ok(p)
        }
        // Lost a race with another launcher starting one on this port?
        _ if t.port != 0 && listening(&t.host, t.port) => Ok(t.port),
        _ => bail!(
            "the coordinator did not start ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Options of `ckpt launch`.
pub struct Opts {
    pub target: CoordTarget,
    pub ckpt_dir: Option<PathBuf>,
    pub no_compress: bool,
    pub open_files: bool,
    pub program: String,
    pub args: Vec<String>,
}

/// Sets the environment every checkpointed process needs.
pub fn set_env(
    cmd: &mut Command,
    t: &CoordTarget,
    port: u16,
    ckpt_dir: Option<&Path>,
) -> Result<()> {
    let secret = secret::read_secret(&t.tmpdir, port)?;
    cmd.env("CKPT_COORD_HOST", &t.host)
        .env("CKPT_COORD_PORT", port.to_string())
        .env("CKPT_SECRET", secret)
        .env("CKPT_TMPDIR", &t.tmpdir)
        // The host part of every process's unique id, asked once here: each
        // program's writer would otherwise call gethostid(), which resolves
        // the host name when there is no /etc/hostid.
        // SAFETY: gethostid has no arguments.
        .env(
            "CKPT_HOSTID",
            format!("{:08x}", unsafe { libc::gethostid() } as u32),
        );
    if t.debug {
        cmd.env("CKPT_DEBUG", "1");
    }
    if let Some(d) = ckpt_dir {
        let abs = std::fs::canonicalize(d)
            .with_context(|| format!("checkpoint directory {}", d.display()))?;
        cmd.env("CKPT_DIR", abs);
    }
    Ok(())
}

/// `ckpt launch`: only returns on error.
pub fn run(o: Opts) -> Result<i32> {
    let writer = sibling("libckpt_writer.so", "CKPT_WRITER")?;
    let writer = std::fs::canonicalize(&writer).with_context(|| format!("{}", writer.display()))?;
    let port = ensure_coordinator(&o.target)?;
    let dir = match &o.ckpt_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("current directory")?,
    };
    let mut cmd = Command::new(&o.program);
    cmd.args(&o.args);
    set_env(&mut cmd, &o.target, port, Some(&dir))?;
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", writer.display()),
        _ => writer.display().to_string(),
    };
    cmd.env("LD_PRELOAD", preload);
    if o.no_compress {
        cmd.env("CKPT_NO_COMPRESS", "1");
    }
    if o.open_files {
        cmd.env("CKPT_OPEN_FILES", "1");
    }
    let err = cmd.exec();
    bail!("cannot run {}: {err}", o.program)
}
