//! The vdso as an ELF image: its exported functions, and the jump patch
//! that redirects an old entry point to the running kernel's vdso.

/// A function the vdso exports, as an offset from its first byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sym {
    pub name: String,
    pub offset: u64,
}

fn u16at(b: &[u8], o: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as u64)
}
fn u32at(b: &[u8], o: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as u64)
}
fn u64at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Function symbols of the ELF `image` (the bytes of a mapped vdso).
/// Returns None when it is not a readable ELF64 image.
pub fn symbols(image: &[u8]) -> Option<Vec<Sym>> {
    if image.get(..4)? != b"\x7fELF" || *image.get(4)? != 2 {
        return None;
    }
    let phoff = u64at(image, 0x20)? as usize;
    let phentsize = u16at(image, 0x36)? as usize;
    let phnum = u16at(image, 0x38)? as usize;
    let mut bias = None;
    for i in 0..phnum {
        let p = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32at(image, p)? == 1 {
            bias = Some(u64at(image, p + 16)?.wrapping_sub(u64at(image, p + 8)?));
            break;
        }
    }
    let bias = bias?;
    let shoff = u64at(image, 0x28)? as usize;
    let shentsize = u16at(image, 0x3a)? as usize;
    let shnum = u16at(image, 0x3c)? as usize;
    let sh = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let mut out = Vec::new();
    for i in 0..shnum {
        let s = sh(i)?;
        if u32at(image, s + 4)? != 11 {
            continue; // not SHT_DYNSYM
        }
        let (off, size, link) = (
            u64at(image, s + 0x18)? as usize,
            u64at(image, s + 0x20)? as usize,
            u32at(image, s + 0x28)? as usize,
        );
        let st = sh(link)?;
        let (str_off, str_size) = (
            u64at(image, st + 0x18)? as usize,
            u64at(image, st + 0x20)? as usize,
        );
        let strtab = image.get(str_off..str_off.checked_add(str_size)?)?;
        let syms = image.get(off..off.checked_add(size)?)?;
        for e in syms.chunks_exact(24) {
            let name_off = u32at(e, 0)? as usize;
            let info = e[4];
            let shndx = u16at(e, 6)?;
            let value = u64at(e, 8)?;
            if info & 0xf != 2 || shndx == 0 {
                continue; // not a defined function
            }
            let name = strtab.get(name_off..)?;
            let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            out.push(Sym {
                name: String::from_utf8_lossy(&name[..n]).into_owned(),
                offset: value.wrapping_sub(bias),
            });
        }
    }
    out.sort_by(|a, b| (a.offset, &a.name).cmp(&(b.offset, &b.name)));
    Some(out)
}

/// Length of [`jump_patch`].
pub const PATCH_LEN: usize = 12;

/// `movabs rax, target; jmp rax`.
pub fn jump_patch(target: u64) -> [u8; PATCH_LEN] {
    let mut p = [0u8; PATCH_LEN];
    p[0] = 0x48;
    p[1] = 0xb8;
    p[2..10].copy_from_slice(&target.to_le_bytes());
    p[10] = 0xff;
    p[11] = 0xe0;
    p
}

/// Patches for an old vdso image: (offset in the old vdso, target address)
/// for every symbol listed for the old vdso that the new one exports too.
/// Entry points closer than [`PATCH_LEN`] to a different one are skipped
/// (returned in the second list) since their patches would overlap.
pub fn plan_patches(
    old: &[Sym],
    new: &[Sym],
    new_base: u64,
    old_len: u64,
) -> (Vec<(u64, u64)>, Vec<String>) {
    let mut want: Vec<(u64, u64, String)> = Vec::new();
    for o in old {
        if let Some(n) = new.iter().find(|n| n.name == o.name) {
            if o.offset + PATCH_LEN as u64 <= old_len {
                want.push((o.offset, new_base + n.offset, o.name.clone()));
            }
        }
    }
    want.sort();
    want.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    for (i, w) in want.iter().enumerate() {
        let clash_next = want
            .get(i + 1)
            .is_some_and(|n| n.0 < w.0 + PATCH_LEN as u64);
        let clash_prev = i > 0 && want[i - 1].0 + PATCH_LEN as u64 > w.0;
        if clash_next || clash_prev {
            skipped.push(w.2.clone());
        } else {
            ok.push((w.0, w.1));
        }
    }
    (ok, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_vdso_exports_clock_gettime() {
        let maps = crate::maps::current().unwrap();
        let v = crate::maps::VdsoSet::from_maps(&maps).vdso.expect("a vdso");
        let syms = symbols(crate::sys::mapped(v.start, v.len())).expect("vdso parses");
        assert!(syms
            .iter()
            .any(|s| s.name == "__vdso_clock_gettime" && s.offset < v.len()));
    }

    #[test]
    fn patches_skip_overlaps() {
        let s = |n: &str, o| Sym {
            name: n.into(),
            offset: o,
        };
        let old = [s("a", 0x100), s("b", 0x104), s("c", 0x200), s("d", 0x300)];
        let new = [s("a", 0x10), s("b", 0x20), s("c", 0x30)];
        let (ok, skipped) = plan_patches(&old, &new, 0x1000, 0x1000);
        assert_eq!(ok, vec![(0x200, 0x1030)]);
        assert_eq!(skipped, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(jump_patch(0x1122334455667788)[..3], [0x48, 0xb8, 0x88]);
    }
}
