//! `ckpt restart`: make sure a coordinator runs, then exec `ckpt-restore`
//! with every image (the process tree comes back in one pid namespace).

use crate::coordinator::parse_generation_dir;
use crate::launch::{ensure_coordinator, set_env, sibling, CoordTarget};
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Options of `ckpt restart`.
pub struct Opts {
    pub target: CoordTarget,
    pub ckpt_dir: Option<PathBuf>,
    pub images: Vec<PathBuf>,
    /// `--map-path OLD=NEW`, passed to ckpt-restore.
    pub map_paths: Vec<String>,
    /// `--set-env NAME=VALUE`, passed to ckpt-restore.
    pub set_env: Vec<String>,
}

/// A manifest's generation and images.
fn read_manifest(path: &Path) -> Result<(u64, Vec<PathBuf>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let generation = v["generation"]
        .as_u64()
        .with_context(|| format!("{}: no generation", path.display()))?;
    let images = v["images"]
        .as_array()
        .with_context(|| format!("{}: no images list", path.display()))?;
    let images = images
        .iter()
        .map(|i| {
            i["path"]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("{}: an image without a path", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(missing) = images.iter().find(|i| !i.exists()) {
        bail!("{}: image {} is missing", path.display(), missing.display());
    }
    Ok((generation, images))
}

/// The images of the newest usable manifest in `dir`: `ckpt_manifest.json`
/// or one of the kept generations' (`ckpt_gen_<N>/ckpt_manifest.json`),
/// whichever has the highest generation and all its images.
pub fn manifest_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut candidates = vec![dir.join("ckpt_manifest.json")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if parse_generation_dir(&e.file_name().to_string_lossy()).is_some() {
                candidates.push(e.path().join("ckpt_manifest.json"));
            }
        }
    }
    let mut best: Option<(u64, Vec<PathBuf>)> = None;
    let mut why = Vec::new();
    for c in &candidates {
        match read_manifest(c) {
            Ok((g, images)) => {
                if best.as_ref().is_none_or(|b| g > b.0) {
                    best = Some((g, images));
                }
            }
            Err(e) if c.exists() => why.push(format!("{e:#}")),
            Err(_) => {}
        }
    }
    match best {
        Some((_, images)) => Ok(images),
        None if why.is_empty() => bail!("no ckpt_manifest.json in {}", dir.display()),
        None => bail!("no usable manifest: {}", why.join("; ")),
    }
}

/// `ckpt restart`: only returns on error.
pub fn run(o: Opts) -> Result<i32> {
    let images = if o.images.is_empty() {
        let dir = match &o.ckpt_dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().context("current directory")?,
        };
        manifest_images(&dir).with_context(|| {
            format!(
                "no image given, and no usable ckpt_manifest.json in {}",
                dir.display()
            )
        })?
    } else {
        o.images.clone()
    };
    if images.is_empty() {
        bail!("no image to restart");
    }
    // All of them in one ckpt-restore: one pid namespace, the tree rebuilt.
    if let Some(missing) = images.iter().find(|i| !i.exists()) {
        bail!("image {} does not exist", missing.display());
    }
    let restorer = sibling("ckpt-restore", "CKPT_RESTORE")?;
    let port = ensure_coordinator(&o.target)?;
    let mut cmd = Command::new(&restorer);
    for m in &o.map_paths {
        cmd.arg("--map-path").arg(m);
    }
    for e in &o.set_env {
        cmd.arg("--set-env").arg(e);
    }
    if o.target.quiet {
        cmd.arg("--quiet");
    }
    cmd.args(&images);
    set_env(&mut cmd, &o.target, port, o.ckpt_dir.as_deref())?;
    cmd.env_remove("LD_PRELOAD");
    let err = cmd.exec();
    bail!("cannot run {}: {err}", restorer.display())
}
