//! `--map-path OLD=NEW`: restart where the files live elsewhere.
//!
//! A prefix rewrite applied once to every path of the image the restorer
//! opens (regular files, deleted files' directories, directories, FIFOs,
//! inotify watches, the cwd, the exe and file-backed regions), right after
//! the image is read, so every later step sees the new places. `OLD`
//! matches whole path components: `/data` maps `/data` and `/data/x`, not
//! `/database`. The longest matching `OLD` wins.

use std::fmt;

use ckpt_format::FdKind;

use crate::{image::Image, log};

/// A `--map-path` argument that is not `OLD=NEW` with two absolute paths.
#[derive(Debug)]
pub struct BadMapping(pub String);

impl fmt::Display for BadMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--map-path {}: expected OLD=NEW, both absolute paths",
            self.0
        )
    }
}

impl std::error::Error for BadMapping {}

/// Every `--map-path` of the command line.
#[derive(Clone, Debug, Default)]
pub struct PathMap {
    /// (OLD, NEW) without trailing slashes (except `/` itself).
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn trim_slash(p: &[u8]) -> &[u8] {
    let mut p = p;
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    p
}

impl PathMap {
    /// Adds one `OLD=NEW`.
    pub fn add(&mut self, arg: &[u8]) -> Result<(), BadMapping> {
        let bad = || BadMapping(String::from_utf8_lossy(arg).into_owned());
        let eq = arg.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (old, new) = (&arg[..eq], &arg[eq + 1..]);
        if !old.starts_with(b"/") || !new.starts_with(b"/") {
            return Err(bad());
        }
        self.pairs
            .push((trim_slash(old).to_vec(), trim_slash(new).to_vec()));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The path `p` stands for on this host, when a mapping applies.
    pub fn map(&self, p: &[u8]) -> Option<Vec<u8>> {
        let (old, new) = self
            .pairs
            .iter()
            .filter(|(old, _)| {
                old.as_slice() == b"/"
                    || p == old.as_slice()
                    || (p.starts_with(old) && p.get(old.len()) == Some(&b'/'))
            })
            .max_by_key(|(old, _)| old.len())?;
        let rest = &p[old.len()..];
        let mut out = new.clone();
        if new.as_slice() == b"/" && rest.starts_with(b"/") {
            out.clear();
        } else if old.as_slice() == b"/" && !rest.is_empty() && new.as_slice() != b"/" {
            out.push(b'/');
        }
        out.extend_from_slice(rest);
        Some(out)
    }

    /// Rewrites `p` in place; logs the change.
    fn rewrite(&self, what: &str, p: &mut Vec<u8>) {
        if let Some(n) = self.map(p) {
            log::info(&format!(
                "--map-path: {what} {} -> {}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(&n)
            ));
            *p = n;
        }
    }

    /// Rewrites every path of `img` the restorer opens.
    pub fn apply(&self, img: &mut Image) {
        if self.is_empty() {
            return;
        }
        self.rewrite("cwd", &mut img.process.cwd);
        self.rewrite("exe", &mut img.process.exe);
        for r in &mut img.regions {
            if let Some(b) = &mut r.backing {
                let before = b.file.path.clone();
                self.rewrite("mapping", &mut b.file.path);
                if b.file.path != before && r.name == before {
                    r.name = b.file.path.clone();
                }
            }
        }
        for e in &mut img.fds {
            let what = format!("fd {}", e.fd.0);
            match &mut e.kind {
                FdKind::RegularFile { file, .. } => self.rewrite(&what, &mut file.path),
                FdKind::Directory { path, .. } | FdKind::Fifo { path, .. } => {
                    self.rewrite(&what, path)
                }
                FdKind::Inotify { watches } => {
                    for (p, _) in watches {
                        self.rewrite(&what, p)
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(args: &[&str]) -> PathMap {
        let mut pm = PathMap::default();
        for a in args {
            pm.add(a.as_bytes()).unwrap();
        }
        pm
    }

    fn map(pm: &PathMap, p: &str) -> Option<String> {
        pm.map(p.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn whole_components_and_longest_prefix() {
        let pm = m(&["/data=/mnt/d", "/data/sub/=/other"]);
        assert_eq!(map(&pm, "/data"), Some("/mnt/d".into()));
        assert_eq!(map(&pm, "/data/x"), Some("/mnt/d/x".into()));
        assert_eq!(map(&pm, "/database"), None);
        assert_eq!(map(&pm, "/data/sub/f"), Some("/other/f".into()));
        assert_eq!(
            map(&pm, "/data/x (deleted)"),
            Some("/mnt/d/x (deleted)".into())
        );
    }

    #[test]
    fn root_on_either_side() {
        let pm = m(&["/=/chroot"]);
        assert_eq!(map(&pm, "/a/b"), Some("/chroot/a/b".into()));
        let pm = m(&["/old=/"]);
        assert_eq!(map(&pm, "/old/a"), Some("/a".into()));
        assert_eq!(map(&pm, "/old"), Some("/".into()));
    }

    #[test]
    fn malformed() {
        let mut pm = PathMap::default();
        assert!(pm.add(b"relative=/x").is_err());
        assert!(pm.add(b"/x").is_err());
        assert!(pm.add(b"/x=y").is_err());
    }
}
