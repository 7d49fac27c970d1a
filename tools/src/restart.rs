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

/// What a restart of the manifest at `path` says about the processes that
/// were outside checkpoint control (no image: not restarted).
fn outside_notes(v: &serde_json::Value) -> Vec<String> {
    v["outside_checkpoint_control"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| {
                    format!(
                        "{}[{}] (child of {}) on {} was outside checkpoint control ({}): it has no image and is not restarted; its parent finds it killed by SIGKILL",
                        o["program"].as_str().unwrap_or("?"),
                        o["pid"],
                        o["ppid"],
                        o["host"].as_str().unwrap_or("?"),
                        o["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A manifest's generation, images and notes about outsiders.
fn read_manifest_notes(path: &Path) -> Result<(u64, Vec<PathBuf>, Vec<String>)> {
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
    Ok((generation, images, outside_notes(&v)))
}

/// The images of the newest usable manifest in `dir`: `ckpt_manifest.json`
/// or one of the kept generations' (`ckpt_gen_<N>/ckpt_manifest.json`),
/// whichever has the highest generation and all its images.
pub fn manifest_images(dir: &Path) -> Result<Vec<PathBuf>> {
    manifest_images_notes(dir).map(|(i, _)| i)
}

/// [`manifest_images`] and what it says about processes that were outside
/// checkpoint control.
fn manifest_images_notes(dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let mut candidates = vec![dir.join("ckpt_manifest.json")];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if parse_generation_dir(&e.file_name().to_string_lossy()).is_some() {
                candidates.push(e.path().join("ckpt_manifest.json"));
            }
        }
    }
    let mut best: Option<(u64, Vec<PathBuf>, Vec<String>)> = None;
    let mut why = Vec::new();
    for c in &candidates {
        match read_manifest_notes(c) {
            Ok((g, images, notes)) => {
                if best.as_ref().is_none_or(|b| g > b.0) {
                    best = Some((g, images, notes));
                }
            }
            Err(e) if c.exists() => why.push(format!("{e:#}")),
            Err(_) => {}
        }
    }
    match best {
        Some((_, images, notes)) => Ok((images, notes)),
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
        let (images, notes) = manifest_images_notes(&dir).with_context(|| {
            format!(
                "no image given, and no usable ckpt_manifest.json in {}",
                dir.display()
            )
        })?;
        if !o.target.quiet {
            for n in notes {
                eprintln!("ckpt restart: {n}");
            }
        }
        images
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

#[cfg(test)]
mod outside_tests {
    use super::*;

    #[test]
    fn a_manifest_names_what_the_restart_does_not_bring_back() {
        let dir = std::env::temp_dir().join(format!("ckpt-restart-notes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("a.ckpt");
        std::fs::write(&img, b"x").unwrap();
        let m = serde_json::json!({
            "generation": 3,
            "images": [{"path": img}],
            "outside_checkpoint_control": [{
                "pid": 12, "ppid": 10, "program": "static_child", "host": "h",
                "reason": "a static binary (no dynamic loader to preload the writer)"
            }]
        });
        std::fs::write(dir.join("ckpt_manifest.json"), m.to_string()).unwrap();
        let (images, notes) = manifest_images_notes(&dir).unwrap();
        assert_eq!(images, vec![img]);
        assert_eq!(
            notes,
            vec!["static_child[12] (child of 10) on h was outside checkpoint control (a static binary (no dynamic loader to preload the writer)): it has no image and is not restarted; its parent finds it killed by SIGKILL"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
