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

/// Gives SIGPIPE back its default action (Rust starts a program with it
/// ignored, and `println!` then panics on "Broken pipe"): a command whose
/// standard output is closed early (`ckpt command l | head -1`) ends
/// quietly by the signal, as `ls | head` does. Only for commands that
/// write to stdout; their sockets are TCP, which std writes with
/// MSG_NOSIGNAL. Never for the coordinator, which must outlive a client.
pub fn default_sigpipe() {
    // SAFETY: installs the default action, no handler; no pointers.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
