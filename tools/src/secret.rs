//! The computation's secret and the per-user runtime directory
//! (`CKPT_TMPDIR`, default `/tmp/ckpt-$USER`, mode 0700) that holds it as
//! `secret-<port>` (mode 0600).

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The runtime directory: the given one (`--tmpdir` / `CKPT_TMPDIR`) or
/// `/tmp/ckpt-$USER`.
pub fn tmpdir(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| crate::sys::uid().to_string());
    PathBuf::from(format!("/tmp/ckpt-{user}"))
}

/// Creates the runtime directory (mode 0700) if it is missing.
pub fn ensure_tmpdir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    }
    Ok(())
}

/// Where the coordinator on `port` keeps its secret.
pub fn secret_path(tmpdir: &Path, port: u16) -> PathBuf {
    tmpdir.join(format!("secret-{port}"))
}

/// `n` random bytes from /dev/urandom, as lowercase hex.
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes the secret file (0600), replacing an older one.
pub fn write_secret(path: &Path, secret: &str) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the secret file {}", path.display()))?;
    f.write_all(secret.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The secret a client presents to the coordinator on `port`: `CKPT_SECRET`
/// if set, else the content of the secret file.
pub fn read_secret(tmpdir: &Path, port: u16) -> Result<String> {
    if let Ok(s) = std::env::var("CKPT_SECRET") {
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let path = secret_path(tmpdir, port);
    let s = fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the coordinator's secret {} (set CKPT_SECRET, or CKPT_TMPDIR to the coordinator's)",
            path.display()
        )
    })?;
    let s = s.trim().to_string();
    if s.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(s)
}
