//! Residency of shared memory pages (mincore).

/// Which pages of `[addr, addr + out.len() pages)` are in memory: for a
/// shared mapping, whether the object has the page at all (in the page
/// cache or swap cache), mapped into this process's page tables or not
/// (a page another process wrote is not present in ours). `out[i]` bit 0
/// per page. False when mincore fails (then `out` is untouched).
pub fn resident(addr: u64, out: &mut [u8]) -> bool {
    // SAFETY: mincore writes one byte per page of the range into `out`,
    // which has exactly that many; the range is a mapping of ours
    // (mincore fails with ENOMEM otherwise, it never faults pages in).
    unsafe {
        libc::mincore(
            addr as *mut libc::c_void,
            out.len() * 4096,
            out.as_mut_ptr() as *mut libc::c_uchar,
        ) == 0
    }
}
