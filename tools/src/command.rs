//! `ckpt command`: one request to the coordinator, one answer.
//!
//! Exit codes: 0 ok; 1 the command failed, or (status) no process is
//! connected; 2 coordinator unreachable or refused us; 3 checkpoint failed.

use anyhow::{anyhow, Result};
use ckpt_protocol::{Command, Hello, Reply, Role, ToClient, ToCoordinator, PROTOCOL_VERSION};
use std::io::BufReader;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Why a connection did not get as far as a command.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing answers at host:port.
    Unreachable(anyhow::Error),
    /// The coordinator answered and refused (secret, version).
    Refused(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(e) => write!(f, "{e:#}"),
            ConnectError::Refused(r) => write!(f, "{r}"),
        }
    }
}

/// A connected, accepted command client.
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// Opens a TCP connection (bounded wait per address).
pub fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("resolving {host}: {e}"))?
        .collect();
    let mut last = anyhow!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = anyhow!("connecting to the coordinator at {host}:{port}: {e}"),
        }
    }
    Err(last)
}

/// True if something accepts connections at host:port.
pub fn listening(host: &str, port: u16) -> bool {
    tcp_connect(host, port, Duration::from_millis(500)).is_ok()
}

impl Client {
    /// Connects and says hello as a command client.
    pub fn connect(host: &str, port: u16, tmpdir: &Path) -> Result<Client, ConnectError> {
        let stream =
            tcp_connect(host, port, Duration::from_secs(5)).map_err(ConnectError::Unreachable)?;
        // A missing secret file is not fatal here: the coordinator refuses
        // us with a clear reason, which is the better message.
        let (secret, no_secret) = match crate::secret::read_secret(tmpdir, port) {
            Ok(s) => (s, None),
            Err(e) => (String::new(), Some(format!("{e:#}"))),
        };
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|e| ConnectError::Unreachable(e.into()))?,
        );
        let mut c = Client { stream, reader };
        let hello = ToCoordinator::Hello(Hello {
            version: PROTOCOL_VERSION,
            secret,
            role: Role::Command,
        });
        let _ = c.stream.set_read_timeout(Some(Duration::from_secs(10)));
        ckpt_protocol::send(&mut c.stream, &hello)
            .map_err(|e| ConnectError::Unreachable(anyhow!("coordinator at {host}:{port}: {e}")))?;
        match ckpt_protocol::recv::<_, ToClient>(&mut c.reader) {
            Ok(Some(ToClient::Welcome { .. })) => Ok(c),
            Ok(Some(ToClient::Refused { reason })) => Err(ConnectError::Refused(format!(
                "the coordinator at {host}:{port} refused the connection: {reason}{}",
                no_secret
                    .map(|e| format!(" (we had no secret to present: {e})"))
                    .unwrap_or_default()
            ))),
            Ok(other) => Err(ConnectError::Unreachable(anyhow!(
                "coordinator at {host}:{port}: unexpected answer to hello: {other:?}"
            ))),
            Err(e) => Err(ConnectError::Unreachable(anyhow!(
                "coordinator at {host}:{port}: {e}"
            ))),
        }
    }

    /// Sends a command and waits for its reply (no time limit for a
    /// blocking checkpoint, 60 s otherwise).
    pub fn request(&mut self, cmd: Command) -> Result<Reply> {
        let timeout = match cmd {
            Command::BlockingCheckpoint => None,
            _ => Some(Duration::from_secs(60)),
        };
        self.stream.set_read_timeout(timeout)?;
        ckpt_protocol::send(&mut self.stream, &ToCoordinator::Command(cmd))?;
        match ckpt_protocol::recv::<_, ToClient>(&mut self.reader)? {
            Some(ToClient::Reply(r)) => Ok(r),
            Some(other) => Err(anyhow!(
                "unexpected message from the coordinator: {other:?}"
            )),
            None => Err(anyhow!(
                "the coordinator closed the connection before answering"
            )),
        }
    }
}

/// One command against host:port; the error keeps the exit code.
pub fn one(host: &str, port: u16, tmpdir: &Path, cmd: Command) -> Result<Reply, (i32, String)> {
    let mut c = Client::connect(host, port, tmpdir).map_err(|e| (2, e.to_string()))?;
    c.request(cmd).map_err(|e| (2, format!("{e:#}")))
}

/// Renders the process list like DMTCP's coordinator, with each
/// process's parent: `N, program[pid]@host, ppid P, unique-id, STATE`.
pub fn render_list(list: &[ckpt_protocol::ProcessEntry]) -> String {
    let mut out = String::new();
    for p in list {
        out.push_str(&format!(
            "{}, {}[{}]@{}, ppid {}, {}, {}\n",
            p.number,
            p.info.program,
            p.info.vpid,
            p.info.host,
            p.info.ppid,
            if p.info.unique_id.is_empty() {
                "-"
            } else {
                &p.info.unique_id
            },
            p.state
        ));
    }
    out
}

/// The temporary images a blocking checkpoint is writing on this host,
/// found from the process list (`<dir>/ckpt_<program>_<unique-id>.ckpt`).
fn local_images(list: &[ckpt_protocol::ProcessEntry]) -> Vec<std::path::PathBuf> {
    let here = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    list.iter()
        .filter(|p| p.info.host == here && !p.info.ckpt_dir.is_empty())
        .map(|p| {
            Path::new(&p.info.ckpt_dir)
                .join(format!("ckpt_{}_{}.ckpt", p.info.program, p.info.unique_id))
        })
        .collect()
}

/// Bytes written so far: the temporary image while it grows, the final one
/// once it is renamed (if it is newer than `since`).
fn bytes_written(images: &[std::path::PathBuf], since: std::time::SystemTime) -> u64 {
    images
        .iter()
        .map(|img| {
            let tmp = std::path::PathBuf::from(format!("{}.tmp", img.display()));
            match std::fs::metadata(&tmp) {
                Ok(m) => m.len(),
                Err(_) => std::fs::metadata(img)
                    .ok()
                    .filter(|m| m.modified().is_ok_and(|t| t >= since))
                    .map(|m| m.len())
                    .unwrap_or(0),
            }
        })
        .sum()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// A blocking checkpoint that shows bytes and rate on stderr (a terminal)
/// while the images of the processes on this host are written.
fn bc_with_progress(host: &str, port: u16, tmpdir: &Path) -> Result<Reply, (i32, String)> {
    let mut c = Client::connect(host, port, tmpdir).map_err(|e| (2, e.to_string()))?;
    let images = match c.request(Command::List) {
        Ok(Reply::List(l)) => local_images(&l),
        _ => vec![],
    };
    let since = std::time::SystemTime::now();
    let t0 = std::time::Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shown = {
        let (done, images) = (done.clone(), images.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering;
            let mut shown = false;
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(250));
                let b = bytes_written(&images, since);
                if b > 0 && !done.load(Ordering::Acquire) {
                    let s = t0.elapsed().as_secs_f64().max(0.001);
                    eprint!(
                        "\rcheckpoint: {:.1} MiB written ({:.1} MiB/s)   ",
                        mib(b),
                        mib(b) / s
                    );
                    shown = true;
                }
            }
            shown
        })
    };
    let reply = c.request(Command::BlockingCheckpoint);
    done.store(true, std::sync::atomic::Ordering::Release);
    let shown = shown.join().unwrap_or(false);
    if matches!(reply, Ok(Reply::Checkpointed { .. })) && !images.is_empty() {
        let b = bytes_written(&images, since);
        let s = t0.elapsed().as_secs_f64().max(0.001);
        eprintln!(
            "\rcheckpoint: {:.1} MiB written in {s:.1} s ({:.1} MiB/s)   ",
            mib(b),
            mib(b) / s
        );
    } else if shown {
        eprintln!();
    }
    reply.map_err(|e| (2, format!("{e:#}")))
}

fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(2) == 1 }
}

/// `ckpt command`: prints the answer (nothing but errors with `quiet`),
/// returns the exit code. A blocking checkpoint shows its progress when
/// stderr is a terminal.
pub fn run(host: &str, port: u16, tmpdir: &Path, cmd: Command, json: bool, quiet: bool) -> i32 {
    let is_ckpt = matches!(cmd, Command::Checkpoint | Command::BlockingCheckpoint);
    let progress = cmd == Command::BlockingCheckpoint && !quiet && !json && stderr_is_tty();
    let answer = if progress {
        bc_with_progress(host, port, tmpdir)
    } else {
        one(host, port, tmpdir, cmd.clone())
    };
    let reply = match answer {
        Ok(r) => r,
        Err((code, msg)) => {
            eprintln!("ckpt command: {msg}");
            return code;
        }
    };
    let json = json && !quiet;
    let quiet = quiet || json;
    if json {
        println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    }
    match reply {
        Reply::Ok { message } => {
            if !quiet {
                println!("{message}");
            }
            0
        }
        Reply::Checkpointed { generation, images } => {
            if !quiet {
                if matches!(cmd, Command::BlockingCheckpoint) {
                    println!("checkpoint {generation} complete:");
                    for i in &images {
                        println!("  {i}");
                    }
                } else {
                    println!("checkpoint {generation} started");
                }
            }
            0
        }
        Reply::Status {
            processes,
            running,
            interval,
            generation,
            outside,
        } => {
            if !quiet {
                println!("processes: {processes}");
                for o in &outside {
                    println!("outside checkpoint control: {o}");
                }
                println!("running: {}", if running { "yes" } else { "no" });
                println!(
                    "interval: {}",
                    if interval == 0 {
                        "off".to_string()
                    } else {
                        format!("{interval} s")
                    }
                );
                println!(
                    "last checkpoint: {}",
                    if generation == 0 {
                        "none".into()
                    } else {
                        generation.to_string()
                    }
                );
            }
            if processes > 0 {
                0
            } else {
                1
            }
        }
        Reply::List(list) => {
            if !quiet {
                print!("{}", render_list(&list));
            }
            0
        }
        Reply::Error { message } => {
            eprintln!("ckpt command: {message}");
            if is_ckpt {
                3
            } else {
                1
            }
        }
    }
}
