//! The restorer's own mappings, from `/proc/self/maps`.

use crate::layout::Range;

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub range: Range,
    pub name: String,
}

/// Parses the text of a maps file; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(_perms)) = (it.next(), it.next()) else {
            continue;
        };
        let name = it.nth(3).unwrap_or("").to_string();
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        out.push(Mapping {
            range: Range::new(a, b),
            name,
        });
    }
    out
}

/// Reads and parses `/proc/self/maps`.
pub fn current() -> std::io::Result<Vec<Mapping>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/maps")?))
}

/// The kernel-provided vdso block of this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct VdsoSet {
    pub vvar: Option<Range>,
    pub vvar_vclock: Option<Range>,
    pub vdso: Option<Range>,
}

impl VdsoSet {
    pub fn from_maps(maps: &[Mapping]) -> Self {
        let find = |n: &str| maps.iter().find(|m| m.name == n).map(|m| m.range);
        VdsoSet {
            vvar: find("[vvar]"),
            vvar_vclock: find("[vvar_vclock]"),
            vdso: find("[vdso]"),
        }
    }
    /// The parts that exist, in address order.
    pub fn parts(&self) -> Vec<Range> {
        let mut v: Vec<Range> = [self.vvar, self.vvar_vclock, self.vdso]
            .into_iter()
            .flatten()
            .collect();
        v.sort();
        v
    }
    /// The smallest range covering every part.
    pub fn span(&self) -> Option<Range> {
        let p = self.parts();
        Some(Range::new(p.first()?.start, p.last()?.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vdso_lines() {
        let t = "7f9a17c83000-7f9a17c87000 r--p 00000000 00:00 0                          [vvar]\n\
                 7f9a17c87000-7f9a17c89000 r--p 00000000 00:00 0                          [vvar_vclock]\n\
                 7f9a17c89000-7f9a17c8b000 r-xp 00000000 00:00 0                          [vdso]\n\
                 55d0c0a00000-55d0c0a01000 r--p 00000000 fe:00 1234 /usr/bin/x y\n";
        let m = parse(t);
        assert_eq!(m.len(), 4);
        let v = VdsoSet::from_maps(&m);
        assert_eq!(
            v.span().unwrap(),
            Range::new(0x7f9a17c83000, 0x7f9a17c8b000)
        );
        assert_eq!(v.vdso.unwrap().len(), 0x2000);
    }
}
