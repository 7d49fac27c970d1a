//! A private tmux server (its own socket), one window per step of a
//! story, for tests that need a terminal as a person has one: keys typed
//! and pressed, the screen read back with bounded waits.

use crate::TempDir;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The shell every window runs.
const SHELL: &str = "env PS1='$ ' bash --norc --noprofile";

/// A tmux server of its own, killed when dropped.
pub struct Tmux {
    sock: PathBuf,
    _dir: TempDir,
}

impl Tmux {
    /// Whether tmux is installed.
    pub fn available() -> bool {
        Command::new("tmux").arg("-V").output().is_ok()
    }

    /// A server with window 0 (`rows` x `cols`) running a shell.
    pub fn start(tag: &str, rows: u16, cols: u16) -> Tmux {
        let dir = TempDir::new(tag);
        let t = Tmux {
            sock: dir.path().join("sock"),
            _dir: dir,
        };
        t.run(&[
            "new-session",
            "-d",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            SHELL,
        ]);
        t
    }

    /// `tmux ARGS...` on this server; its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new window `w` running a shell.
    pub fn window(&self, w: u32) {
        self.run(&["new-window", "-d", "-t", &format!("0:{w}"), SHELL]);
    }

    /// Window `w` resized to `rows` x `cols`.
    pub fn resize(&self, w: u32, rows: u16, cols: u16) {
        self.run(&[
            "resize-window",
            "-t",
            &format!("0:{w}"),
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
    }

    /// Types `text` literally in window `w` (no Enter).
    pub fn keys(&self, w: u32, text: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), "-l", text]);
    }

    /// Presses a named key (Enter, C-c, C-z) in window `w`.
    pub fn press(&self, w: u32, key: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), key]);
    }

    /// Types `line` and Enter in window `w`.
    pub fn line(&self, w: u32, line: &str) {
        self.keys(w, line);
        self.press(w, "Enter");
    }

    /// What window `w` shows, with up to 200 lines of its history.
    pub fn screen(&self, w: u32) -> String {
        self.run(&[
            "capture-pane",
            "-p",
            "-J",
            "-S",
            "-200",
            "-t",
            &format!("0:{w}"),
        ])
    }

    /// Waits until a line of window `w` satisfies `pred`; returns the
    /// first that does.
    pub fn wait_line(&self, w: u32, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen(w);
            if let Some(l) = screen.lines().find(|l| pred(l)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "window {w}: no matching line within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the last line of window `w` that satisfies `pred`
    /// comes after `after` lines of it; returns it and its index.
    pub fn wait_line_after(
        &self,
        w: u32,
        after: usize,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> (usize, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen(w);
            let found = screen
                .lines()
                .enumerate()
                .skip(after)
                .filter(|(_, l)| pred(l))
                .last();
            if let Some((i, l)) = found {
                return (i, l.to_string());
            }
            assert!(
                Instant::now() < deadline,
                "window {w}: no matching line after line {after} within {timeout:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number of lines window `w` printed so far (up to its last
    /// non-empty one).
    pub fn lines(&self, w: u32) -> usize {
        self.screen(w)
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .last()
            .map_or(0, |(i, _)| i + 1)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .status();
    }
}
