//! The few libc calls the CLI needs.

/// The real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// kill(pid, sig); true when it was sent.
pub fn kill(pid: i32, sig: i32) -> bool {
    // SAFETY: kill has no pointer arguments.
    unsafe { libc::kill(pid, sig) == 0 }
}
