//! Address-space arithmetic: page rounding, interval sets, and finding a
//! hole that no image region and no current mapping uses.

/// Page size of x86_64 Linux; the image header must agree.
pub const PAGE: u64 = 4096;
/// Lowest address we ever consider for the hole.
const HOLE_FLOOR: u64 = 0x1_0000_0000;
/// Where we prefer the hole to start (far from exe/brk and from mmap_base).
const HOLE_PREFERRED: u64 = 0x1000_0000_0000;
/// End of the user address space on x86_64 with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// Rounds up to a page boundary.
pub const fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

/// A half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }
    #[cfg(test)]
    pub fn overlaps(&self, o: &Range) -> bool {
        self.start < o.end && o.start < self.end
    }
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Finds a free, page-aligned range of `len` bytes that overlaps none of
/// `used`, keeping `guard` free bytes on each side. Prefers addresses at or
/// above [`HOLE_PREFERRED`], then anything above [`HOLE_FLOOR`].
pub fn find_hole(used: &[Range], len: u64, guard: u64) -> Option<Range> {
    let mut v: Vec<Range> = used.iter().copied().filter(|r| r.start < r.end).collect();
    v.sort();
    let want = len + 2 * guard;
    for floor in [HOLE_PREFERRED, HOLE_FLOOR] {
        let mut cursor = floor;
        for r in v
            .iter()
            .chain(std::iter::once(&Range::new(TASK_SIZE, u64::MAX)))
        {
            if r.end <= cursor {
                continue;
            }
            if r.start > cursor && r.start - cursor >= want {
                let s = page_up(cursor + guard);
                if s + len + guard <= r.start {
                    return Some(Range::new(s, s + len));
                }
            }
            cursor = cursor.max(r.end);
        }
    }
    None
}

/// The complement of `keep` inside `[floor, TASK_SIZE)`: what the final
/// stage munmaps.
pub fn complement(keep: &[Range], floor: u64) -> Vec<Range> {
    let mut v: Vec<Range> = keep.to_vec();
    v.sort();
    let mut out = Vec::new();
    let mut cursor = floor;
    for r in v {
        if r.start > cursor {
            out.push(Range::new(cursor, r.start.min(TASK_SIZE)));
        }
        cursor = cursor.max(r.end);
    }
    if cursor < TASK_SIZE {
        out.push(Range::new(cursor, TASK_SIZE));
    }
    out.retain(|r| r.start < r.end);
    out
}

/// A bump allocator of page-aligned slices of the hole.
pub struct Carver {
    next: u64,
    end: u64,
}

impl Carver {
    pub fn new(r: Range) -> Self {
        Carver {
            next: r.start,
            end: r.end,
        }
    }
    /// Takes `len` bytes (rounded up to pages), followed by one guard page.
    pub fn take(&mut self, len: u64) -> Option<Range> {
        let s = self.next;
        let e = s.checked_add(page_up(len.max(1)))?;
        if e + PAGE > self.end {
            return None;
        }
        self.next = e + PAGE;
        Some(Range::new(s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hole_avoids_everything() {
        let used = [
            Range::new(0x1000_0000_0000, 0x1000_0010_0000),
            Range::new(0x1000_0020_0000, 0x1000_0030_0000),
        ];
        let h = find_hole(&used, 0x10_0000, PAGE).unwrap();
        assert!(used
            .iter()
            .all(|u| !u.overlaps(&Range::new(h.start - PAGE, h.end + PAGE))));
        assert!(h.start >= HOLE_PREFERRED);
        assert_eq!(h.len(), 0x10_0000);
    }

    #[test]
    fn complement_covers_gaps() {
        let c = complement(
            &[Range::new(0x2000, 0x3000), Range::new(0x5000, 0x6000)],
            0x1000,
        );
        assert_eq!(
            c,
            vec![
                Range::new(0x1000, 0x2000),
                Range::new(0x3000, 0x5000),
                Range::new(0x6000, TASK_SIZE)
            ]
        );
    }

    #[test]
    fn carver_is_page_aligned() {
        let mut c = Carver::new(Range::new(0x10000, 0x20000));
        let a = c.take(1).unwrap();
        let b = c.take(5000).unwrap();
        assert_eq!(a, Range::new(0x10000, 0x11000));
        assert_eq!(b, Range::new(0x12000, 0x14000));
        assert!(c.take(0x100000).is_none());
    }
}
