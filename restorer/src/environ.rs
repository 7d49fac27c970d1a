//! `--set-env NAME=VALUE`: a changed environment for the restored program.
//!
//! The environment a program sees is libc's `environ` (`__environ`): a
//! pointer to a NULL-terminated array of "NAME=VALUE" strings, both in the
//! program's own memory (the array and strings start on the initial stack;
//! setenv moves the array to the heap). getenv() reads through that
//! pointer every time. So the restorer:
//!
//! 1. finds every definition of `__environ`/`environ`/`_environ` in the
//!    `.dynsym` of the ELF files the image maps (libc's, or the program's
//!    own when it copy-relocated `environ`; all aliases share one
//!    address per object), at the object's load bias;
//! 2. reads the current array and strings from the staged memory through
//!    the first of them (the program's own definition comes first, as in
//!    the dynamic linker's lookup order);
//! 3. lays out a new array and strings (the old ones with each NAME
//!    replaced or appended) in a fresh private mapping of its own at a free
//!    address, and writes that address into every definition.
//!
//! The old strings stay where they were (and /proc/PID/environ, which
//! shows the initial stack's strings, still shows them). setenv and
//! unsetenv keep working: the new mapping is writable and glibc's setenv
//! copies an array it did not allocate before growing it.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use ckpt_format::RegionKind;

use crate::image::Image;

/// Symbol names of libc's environment pointer (aliases of one variable).
const NAMES: [&[u8]; 3] = [b"__environ", b"environ", b"_environ"];

/// Why the environment could not be changed; the restart stops.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvError {
    /// A `--set-env` argument without `=` or with an empty name.
    BadArgument(String),
    /// No mapped ELF object defines `environ`.
    NoEnvironSymbol,
    /// The environment array or a string is not in restorable memory.
    Unreadable { addr: u64 },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::BadArgument(a) => write!(f, "--set-env {a}: expected NAME=VALUE"),
            EnvError::NoEnvironSymbol => write!(
                f,
                "--set-env: no object of the image defines environ (no libc mapped?)"
            ),
            EnvError::Unreadable { addr } => write!(
                f,
                "--set-env: the environment at {addr:#x} is not in the image's memory"
            ),
        }
    }
}

impl std::error::Error for EnvError {}

/// Every `--set-env` of the command line, in order.
#[derive(Clone, Debug, Default)]
pub struct EnvChanges {
    sets: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EnvChanges {
    pub fn add(&mut self, arg: &[u8]) -> Result<(), EnvError> {
        match arg.iter().position(|&b| b == b'=') {
            Some(eq) if eq > 0 => {
                self.sets.push((arg[..eq].to_vec(), arg[eq + 1..].to_vec()));
                Ok(())
            }
            _ => Err(EnvError::BadArgument(
                String::from_utf8_lossy(arg).into_owned(),
            )),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// `old` ("NAME=VALUE" strings) with every change applied: a NAME that
    /// is there is replaced in place (every occurrence), a new one appended.
    pub fn apply(&self, old: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut env = old;
        for (name, value) in &self.sets {
            let mut s = name.clone();
            s.push(b'=');
            s.extend_from_slice(value);
            let mut found = false;
            for e in env.iter_mut() {
                if e.starts_with(name) && e.get(name.len()) == Some(&b'=') {
                    *e = s.clone();
                    found = true;
                }
            }
            if !found {
                env.push(s);
            }
        }
        env
    }
}

/// The bytes of a new environment placed at `at`: the pointer array
/// (NULL-terminated), then the NUL-terminated strings.
pub fn layout(env: &[Vec<u8>], at: u64) -> Vec<u8> {
    let array = (env.len() as u64 + 1) * 8;
    let mut ptrs = Vec::with_capacity(array as usize);
    let mut strings = Vec::new();
    for s in env {
        ptrs.extend_from_slice(&(at + array + strings.len() as u64).to_le_bytes());
        strings.extend_from_slice(s);
        strings.push(0);
    }
    ptrs.extend_from_slice(&0u64.to_le_bytes());
    ptrs.extend_from_slice(&strings);
    ptrs
}

/// Reads the environment through the pointer at `var`; `read(addr, len)`
/// gives restored memory (None where there is none).
pub fn current(
    var: u64,
    read: &dyn Fn(u64, u64) -> Option<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, EnvError> {
    let word = |a: u64| -> Result<u64, EnvError> {
        let b = read(a, 8).ok_or(EnvError::Unreadable { addr: a })?;
        Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()))
    };
    let array = word(var)?;
    let mut env = Vec::new();
    if array == 0 {
        return Ok(env);
    }
    // Bounded: no environment has a million entries or 1 MiB strings.
    for i in 0..1_000_000u64 {
        let p = word(array + i * 8)?;
        if p == 0 {
            return Ok(env);
        }
        let mut s = Vec::new();
        loop {
            // Up to the end of p's page at a time.
            let at = p + s.len() as u64;
            let len = 4096 - at % 4096;
            let b = read(at, len).ok_or(EnvError::Unreadable { addr: at })?;
            match b.iter().position(|&c| c == 0) {
                Some(n) => {
                    s.extend_from_slice(&b[..n]);
                    break;
                }
                None => s.extend_from_slice(&b),
            }
            if s.len() > 1 << 20 {
                return Err(EnvError::Unreadable { addr: p });
            }
        }
        env.push(s);
    }
    Err(EnvError::Unreadable { addr: array })
}

/// Addresses of `environ` in the restored process, the program's own
/// definition (if any) first.
pub fn locate(img: &Image) -> Result<Vec<u64>, EnvError> {
    let mut found: Vec<(bool, u64)> = Vec::new();
    let mut seen: Vec<&[u8]> = Vec::new();
    for r in &img.regions {
        let Some(b) = &r.backing else { continue };
        if r.kind != RegionKind::File || b.offset != 0 || seen.contains(&b.file.path.as_slice()) {
            continue;
        }
        seen.push(&b.file.path);
        let Ok(f) = std::fs::File::open(std::ffi::OsStr::from_bytes(&b.file.path)) else {
            continue;
        };
        if let Some((first_vaddr, value)) = environ_in(&f) {
            let bias = r.start.0.wrapping_sub(first_vaddr & !0xfff);
            let exe = b.file.path == img.process.exe;
            found.push((exe, bias.wrapping_add(value)));
        }
    }
    found.sort_by_key(|&(exe, _)| !exe);
    if found.is_empty() {
        return Err(EnvError::NoEnvironSymbol);
    }
    Ok(found.into_iter().map(|(_, a)| a).collect())
}

/// (vaddr of the first PT_LOAD, st_value of a defined environ symbol) of
/// an ELF64 little-endian file; None for anything else.
fn environ_in(f: &std::fs::File) -> Option<(u64, u64)> {
    let read = |off: u64, len: usize| -> Option<Vec<u8>> {
        if len > 64 << 20 {
            return None;
        }
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off).ok()?;
        Some(b)
    };
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let eh = read(0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let (phoff, shoff) = (u64_at(&eh, 32)?, u64_at(&eh, 40)?);
    let (phentsize, phnum) = (u16_at(&eh, 54)? as usize, u16_at(&eh, 56)? as usize);
    let (shentsize, shnum) = (u16_at(&eh, 58)? as usize, u16_at(&eh, 60)? as usize);
    if phentsize < 56 || shentsize < 64 {
        return None;
    }
    let ph = read(phoff, phentsize * phnum)?;
    let first_vaddr = (0..phnum)
        .map(|i| i * phentsize)
        .find(|&o| u32_at(&ph, o) == Some(1))
        .and_then(|o| u64_at(&ph, o + 16))?;
    let sh = read(shoff, shentsize * shnum)?;
    for i in 0..shnum {
        let s = i * shentsize;
        if u32_at(&sh, s + 4)? != 11 {
            continue; // not SHT_DYNSYM
        }
        let (off, size) = (u64_at(&sh, s + 24)?, u64_at(&sh, s + 32)?);
        let link = u32_at(&sh, s + 40)? as usize;
        let ls = link.checked_mul(shentsize)?;
        let (stroff, strsize) = (u64_at(&sh, ls + 24)?, u64_at(&sh, ls + 32)?);
        let syms = read(off, size as usize)?;
        let strs = read(stroff, strsize as usize)?;
        for sym in syms.chunks_exact(24) {
            let name = u32_at(sym, 0)? as usize;
            let shndx = u16_at(sym, 6)?;
            let value = u64_at(sym, 8)?;
            if shndx == 0 || value == 0 {
                continue;
            }
            let rest = strs.get(name..)?;
            let n = &rest[..rest.iter().position(|&c| c == 0)?];
            if NAMES.contains(&n) {
                return Some((first_vaddr, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_and_append() {
        let mut c = EnvChanges::default();
        c.add(b"A=new").unwrap();
        c.add(b"B=").unwrap();
        let env = c.apply(vec![b"AB=1".to_vec(), b"A=old".to_vec()]);
        assert_eq!(
            env,
            vec![b"AB=1".to_vec(), b"A=new".to_vec(), b"B=".to_vec()]
        );
        assert!(c.add(b"=x").is_err());
        assert!(c.add(b"noeq").is_err());
    }

    #[test]
    fn layout_points_at_its_strings() {
        let env = vec![b"A=1".to_vec(), b"BB=22".to_vec()];
        let at = 0x10000;
        let b = layout(&env, at);
        let word = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        assert_eq!(word(2), 0);
        assert_eq!(&b[(word(0) - at) as usize..][..4], b"A=1\0");
        assert_eq!(&b[(word(1) - at) as usize..][..6], b"BB=22\0");
    }

    #[test]
    fn finds_libc_environ() {
        let libc = std::fs::File::open("/lib/x86_64-linux-gnu/libc.so.6");
        if let Ok(f) = libc {
            assert!(environ_in(&f).is_some());
        }
    }
}
