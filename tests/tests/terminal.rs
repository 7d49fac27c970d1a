//! Terminals as a person sees them, through tmux: tests/programs/rawtty.c
//! puts its terminal in raw mode and answers every key at once. It is
//! launched in one tmux window, checkpointed and killed, restarted in a
//! second window of another size (it prints there, still raw, and gets
//! SIGWINCH), checkpointed and killed again, restarted in a third window
//! where 'q' gets its verdict; a last restart is stopped with ^C, which
//! reaches it because it is the terminal's foreground job.
//! tests/programs/ptypair.c holds a pty pair of its own. A counter whose
//! stdout was redirected to a file writes to that file again after a
//! restart whose stdout is elsewhere.

use ckpt_tests::{ckpt, program, Computation, Stdout, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// A private tmux server (its own socket) with one window per step.
struct Tmux {
    sock: PathBuf,
    _dir: TempDir,
}

impl Tmux {
    fn start(rows: u16, cols: u16) -> Tmux {
        let dir = TempDir::new("tmux");
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
            "env PS1='$ ' bash --norc --noprofile",
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
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

    /// A new window `w` of the given size, running a shell.
    fn window(&self, w: u32, rows: u16, cols: u16) {
        let target = format!("0:{w}");
        self.run(&[
            "new-window",
            "-d",
            "-t",
            &target,
            "env PS1='$ ' bash --norc --noprofile",
        ]);
        self.run(&[
            "resize-window",
            "-t",
            &target,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
    }

    /// Types `text` literally in window `w` (no Enter).
    fn keys(&self, w: u32, text: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), "-l", text]);
    }

    /// Presses a named key (Enter, C-c) in window `w`.
    fn press(&self, w: u32, key: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), key]);
    }

    fn screen(&self, w: u32) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", &format!("0:{w}")])
    }

    /// Waits until a line of window `w` satisfies `pred`; returns it.
    fn wait_line(&self, w: u32, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
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

    fn wait_for(&self, w: u32, text: &str) -> String {
        self.wait_line(w, |l| l.contains(text), T)
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

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The shell line that sets the computation's environment, then `ckpt ARGS`.
fn ckpt_line(c: &Computation, args: &str) -> String {
    format!(
        "export CKPT_TMPDIR={} CKPT_COORD_HOST=127.0.0.1 CKPT_COORD_PORT={}; {} {args}",
        quote(&c.tmpdir),
        c.port,
        quote(&ckpt())
    )
}

/// Waits until the coordinator sees no process.
fn wait_gone(c: &mut Computation) {
    c.wait_connected(0, T);
}

/// Stops the restored process through the coordinator (exit 75).
fn stop(c: &mut Computation, tmux: &Tmux, w: u32) {
    let out = c.command(&["k"]);
    assert!(out.status.success(), "ckpt command k: {out:?}");
    wait_gone(c);
    tmux.keys(w, "echo status=$?");
    tmux.press(w, "Enter");
    tmux.wait_for(w, "status=75");
}

fn inspect(image: &Path) -> String {
    ckpt_tests::inspect(image, &[])
}

fn has_tmux() -> bool {
    Command::new("tmux").arg("-V").output().is_ok()
}

/// Key `k` reached the program at once, in raw mode, in window `w`.
fn key_is_raw(tmux: &Tmux, w: u32, k: char, rows: u16, cols: u16) {
    tmux.keys(w, &k.to_string());
    let l = tmux.wait_for(w, &format!("key={k} "));
    assert!(
        l.contains("raw=yes fg=yes icanon=0 echo=0 vmin=1 vtime=7"),
        "key {k}: {l}"
    );
    assert!(l.ends_with(&format!("rows={rows} cols={cols}")), "{l}");
    // The same answer through fd 3, its /dev/tty.
    tmux.wait_for(w, &format!("fd3 key={k}"));
}

#[test]
fn raw_terminal_program_through_tmux() {
    if !has_tmux() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut c = Computation::new("rawtty");
    let prog = program("rawtty");
    let tmux = Tmux::start(30, 100);

    // Launched in window 0 (30x100), raw at once.
    let launch = format!("--quiet --ckpt-dir {} {}", quote(&c.ckpt_dir), quote(&prog));
    tmux.keys(0, &ckpt_line(&c, &format!("launch {launch}")));
    tmux.press(0, "Enter");
    let ready = tmux.wait_for(0, "ready pid=");
    assert!(ready.contains("rows=30 cols=100"), "{ready}");
    c.wait_connected(1, T);
    key_is_raw(&tmux, 0, 'a', 30, 100);

    let first = c.checkpoint();
    // The image shows the terminal: size, controlling, raw modes.
    let shown = inspect(&first);
    for fd in [0, 1, 2, 3] {
        let l = shown
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{fd} tty ")))
            .unwrap_or_else(|| panic!("no tty fd {fd} in:\n{shown}"));
        assert!(
            l.contains("30x100 controlling, modes -icanon -echo isig -icrnl opost min 1 time 7"),
            "{l}"
        );
    }
    let pid: i32 = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid in the ready line");
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_gone(&mut c);

    // Restarted in window 1 (25x90): prints there, raw, told of the size.
    tmux.window(1, 25, 90);
    tmux.keys(
        1,
        &ckpt_line(&c, &format!("restart --quiet {}", quote(&first))),
    );
    tmux.press(1, "Enter");
    c.wait_connected(1, T);
    tmux.wait_for(1, "winch rows=25 cols=90");
    key_is_raw(&tmux, 1, 'x', 25, 90);
    key_is_raw(&tmux, 1, 'y', 25, 90);
    // Nothing of it went to the first window.
    assert!(!tmux.screen(0).contains("key=x"), "{}", tmux.screen(0));

    let second = c.checkpoint();
    stop(&mut c, &tmux, 1);
    // The program left the terminal raw when it was stopped: the shell
    // in window 1 still ran `echo` (bash sets its own modes).

    // Restarted again in window 2 (24x80): keys, then its verdict.
    tmux.window(2, 24, 80);
    tmux.keys(
        2,
        &ckpt_line(&c, &format!("restart --quiet {}", quote(&second))),
    );
    tmux.press(2, "Enter");
    c.wait_connected(1, T);
    tmux.wait_for(2, "winch rows=24 cols=80");
    key_is_raw(&tmux, 2, 'z', 24, 80);
    tmux.keys(2, "q");
    let v = tmux.wait_line(2, |l| l.starts_with("VERDICT"), T);
    assert_eq!(v.trim(), "VERDICT OK keys=5", "{}", tmux.screen(2));
    wait_gone(&mut c);
    tmux.keys(2, "echo status=$?");
    tmux.press(2, "Enter");
    tmux.wait_for(2, "status=0");

    // A last restart of the same image in window 3: ^C reaches the
    // program, the terminal's foreground job, and the restart ends with it.
    tmux.window(3, 24, 80);
    tmux.keys(
        3,
        &ckpt_line(&c, &format!("restart --quiet {}", quote(&second))),
    );
    tmux.press(3, "Enter");
    c.wait_connected(1, T);
    key_is_raw(&tmux, 3, 'w', 24, 80);
    tmux.press(3, "C-c");
    wait_gone(&mut c);
    tmux.keys(3, "echo status=$?");
    tmux.press(3, "Enter");
    tmux.wait_for(3, "status=130");
}

fn pts(line: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pts="))
        .expect("pts= in a tick line")
        .to_string()
}

/// tests/programs/ptypair.c holds its own pty pair (master and slave
/// open, raw modes and a window size set on them) and does a round trip
/// through it every tick. Launch, checkpoint, kill; the test takes the
/// freed pty number for itself; restart: the program works on with the
/// same fds and modes and a new slave number; checkpoint, kill, restart
/// again, verdict.
#[test]
fn own_pty_pair_story() {
    let mut c = Computation::new("ptypair");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("ptypair"), &[&stop]);
    // The fd numbers are the lowest free ones: 3 and 4, unless whatever
    // runs the tests leaves more fds open in its children.
    let ready = c.wait_for_line(|l| l.starts_with("ready master="), T);
    let fd_of = |key: &str| -> i32 {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {ready:?}"))
    };
    let (master, slave) = (fd_of("master="), fd_of("slave="));
    let is_tick = |l: &str| l.starts_with("tick");
    let before = pts(&c.wait_lines(2, is_tick, T)[1]);
    let first = c.checkpoint();
    let shown = inspect(&first);
    for want in [
        format!("{master} pty master (slave /dev/pts/"),
        "33x111, modes -icanon -echo -isig -icrnl -opost min 1 time 3".to_string(),
        format!("{slave} tty /dev/pts/"),
    ] {
        assert!(shown.contains(&want), "{want} not in:\n{shown}");
    }
    c.wait_lines(2, is_tick, T);
    c.kill();
    // A pty of our own takes the lowest free number: the one just freed.
    let _taken = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ptmx")
        .expect("/dev/ptmx");
    c.restart(&first);
    let after = pts(&c.wait_lines(2, is_tick, T)[1]);
    assert_ne!(before, after, "the restored pty has a new number");
    let second = c.checkpoint();
    c.wait_lines(1, is_tick, T);
    c.kill();
    c.restart(&second);
    c.wait_lines(2, is_tick, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

/// Lines of `path` once it has at least `n` lines, or when one of them
/// starts with "VERDICT" (bounded wait).
fn file_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || lines.iter().any(|l| l.starts_with("VERDICT")) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, not {n}, after {T:?}:\n{text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The counter launched with its stdout appended to a file, restarted
/// with its stdout on a pipe: it writes to the file again, as it did
/// before the checkpoint, and its verdict lands there.
#[test]
fn redirected_stdout_comes_back_to_its_file() {
    let mut c = Computation::new("stdio-file");
    let out = c.dir.path().join("out.txt");
    c.stdout = Stdout::File(out.clone());
    c.env.push(("COUNTER_MS".into(), "100".into()));
    let stop = c.stop_file().display().to_string();
    c.launch(&program("counter"), &[&stop]);
    c.wait_lines(3, |l| l.starts_with("count "), T);
    let img = c.checkpoint();
    c.kill();
    let before = file_lines(&out, 0).len();

    c.stdout = Stdout::Pipe;
    c.restart(&img);
    let lines = file_lines(&out, before + 3);
    assert!(
        lines[before..].iter().all(|l| l.starts_with("count ")),
        "{lines:?}"
    );
    std::fs::write(c.stop_file(), b"stop").unwrap();
    let deadline = Instant::now() + T;
    let verdict = loop {
        let lines = file_lines(&out, usize::MAX);
        if let Some(v) = lines.iter().find(|l| l.starts_with("VERDICT")) {
            break v.clone();
        }
        assert!(Instant::now() < deadline, "no verdict in {}", out.display());
    };
    assert!(verdict.starts_with("VERDICT OK"), "{verdict}");
    assert_eq!(c.wait_exit(T), Some(0));
}
