//! The computation's secret and the per-user runtime directory
//! (`CKPT_TMPDIR`, default `/tmp/ckpt-$USER`, mode 0700) that holds it as
//! `secret-<port>` (mode 0600).
//!
//! The runtime directory is refused unless it is a real directory (not a
//! symlink) owned by us and closed to everyone else: another user who
//! pre-created `/tmp/ckpt-$USER` could otherwise read the secret or plant
//! one of their own.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Creates the runtime directory (mode 0700) if it is missing, and refuses
/// one that is not ours or is open to others.
pub fn ensure_tmpdir(dir: &Path) -> Result<()> {
    if fs::symlink_metadata(dir).is_err() {
        if let Some(parent) = dir.parent() {
            if !parent.as_os_str().is_empty() && !parent.exists() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                // The umask may have taken bits away, never added; be exact.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("chmod 0700 {}", dir.display()))?;
            }
            // Another ckpt created it meanwhile: checked below like any other.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    check_private_dir(dir)
}

/// A directory we own, mode 0700 (no access for group or others), not a
/// symlink.
pub fn check_private_dir(dir: &Path) -> Result<()> {
    let m = fs::symlink_metadata(dir).with_context(|| format!("checking {}", dir.display()))?;
    let fix = "remove it, or set CKPT_TMPDIR to a directory of your own with mode 0700";
    if m.file_type().is_symlink() {
        bail!(
            "refusing the runtime directory {}: it is a symlink ({fix})",
            dir.display()
        );
    }
    if !m.is_dir() {
        bail!(
            "refusing the runtime directory {}: not a directory ({fix})",
            dir.display()
        );
    }
    let me = crate::sys::uid();
    if m.uid() != me {
        bail!(
            "refusing the runtime directory {}: owned by uid {}, not by you (uid {me}) ({fix})",
            dir.display(),
            m.uid()
        );
    }
    if m.mode() & 0o077 != 0 {
        bail!(
            "refusing the runtime directory {}: mode {:04o} lets other users in; it must be 0700 \
             (chmod 0700 it, or {fix})",
            dir.display(),
            m.mode() & 0o7777
        );
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

/// The secret a coordinator that died left behind on this port, if it is
/// ours, private, and well formed. A coordinator started again on the same
/// port takes it over, so the processes still running (which know only
/// that secret) can connect again.
pub fn previous_secret(path: &Path) -> Option<String> {
    let m = fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.uid() != crate::sys::uid() || m.mode() & 0o077 != 0 {
        return None;
    }
    let s = fs::read_to_string(path).ok()?.trim().to_string();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

/// The secret a client presents to the coordinator on `port`: `CKPT_SECRET`
/// if set, else the content of the secret file.
pub fn read_secret(tmpdir: &Path, port: u16) -> Result<String> {
    if let Ok(s) = std::env::var("CKPT_SECRET") {
        if !s.is_empty() {
            return Ok(s);
        }
    }
    // A secret from a directory someone else controls could be theirs.
    check_private_dir(tmpdir)?;
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
