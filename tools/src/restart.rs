//! `ckpt restart`: make sure a coordinator runs, then exec `ckpt-restore`.

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
}

/// The images named by the manifest in `dir`.
pub fn manifest_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = dir.join("ckpt_manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let images = v["images"]
        .as_array()
        .with_context(|| format!("{}: no images list", path.display()))?;
    images
        .iter()
        .map(|i| {
            i["path"]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("{}: an image without a path", path.display()))
        })
        .collect()
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
    match images.len() {
        0 => bail!("no image to restart"),
        1 => {}
        _ => bail!(
            "restarting several processes together is not supported yet ({} images given)",
            images.len()
        ),
    }
    let image = &images[0];
    if !image.exists() {
        bail!("image {} does not exist", image.display());
    }
    let restorer = sibling("ckpt-restore", "CKPT_RESTORE")?;
    let port = ensure_coordinator(&o.target)?;
    let mut cmd = Command::new(&restorer);
    cmd.arg(image);
    set_env(&mut cmd, &o.target, port, o.ckpt_dir.as_deref())?;
    cmd.env_remove("LD_PRELOAD");
    let err = cmd.exec();
    bail!("cannot run {}: {err}", restorer.display())
}
