//! Progress on stderr while a tool works through a large image: shown
//! only when stderr is a terminal and there are more than 64 MiB to go
//! through, redrawn every 16 MiB on one line that is erased at the end;
//! scripts and pipes see nothing.

use std::io::IsTerminal;

/// Progress on stderr for large images when stderr is a terminal; silent
/// otherwise.
pub struct Progress {
    what: &'static str,
    total: u64,
    done: u64,
    shown: u64,
    on: bool,
}

impl Progress {
    /// Shown only for more than 64 MiB of pages and a terminal on stderr.
    pub fn new(what: &'static str, total: u64) -> Self {
        Progress {
            what,
            total,
            done: 0,
            shown: 0,
            on: total > 64 << 20 && std::io::stderr().is_terminal(),
        }
    }
    /// Whether it shows anything.
    pub fn is_on(&self) -> bool {
        self.on
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.on && self.done - self.shown >= 16 << 20 {
            self.shown = self.done;
            eprint!(
                "\r{}: {} / {} ({}%)",
                self.what,
                super::inspect::human(self.done),
                super::inspect::human(self.total),
                self.done * 100 / self.total.max(1)
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.on && self.shown > 0 {
            eprint!("\r\x1b[K");
        }
    }
}
