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

use ckpt_tests::{program, quote_path, Computation, Stdout, Tmux};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// A new window `w` of the given size, running a shell.
fn window(tmux: &Tmux, w: u32, rows: u16, cols: u16) {
    tmux.window(w);
    tmux.resize(w, rows, cols);
}

/// Waits until a line of window `w` contains `text`.
fn wait_for(tmux: &Tmux, w: u32, text: &str) -> String {
    tmux.wait_line(w, |l| l.contains(text), T)
}

/// Waits until the coordinator sees no process.
fn wait_gone(c: &mut Computation) {
    c.wait_connected(0, T);
}

/// Stops the restored process through the coordinator (exit 75).
fn stop(c: &mut Computation, tmux: &Tmux, w: u32) {
    c.kill_through_coordinator(T);
    tmux.keys(w, "echo status=$?");
    tmux.press(w, "Enter");
    wait_for(tmux, w, "status=75");
}

fn inspect(image: &Path) -> String {
    ckpt_tests::inspect(image, &[])
}

/// Key `k` reached the program at once, in raw mode, in window `w`.
fn key_is_raw(tmux: &Tmux, w: u32, k: char, rows: u16, cols: u16) {
    tmux.keys(w, &k.to_string());
    let l = wait_for(tmux, w, &format!("key={k} "));
    assert!(
        l.contains("raw=yes fg=yes icanon=0 echo=0 vmin=1 vtime=7"),
        "key {k}: {l}"
    );
    assert!(l.ends_with(&format!("rows={rows} cols={cols}")), "{l}");
    // The same answer through fd 3, its /dev/tty.
    wait_for(tmux, w, &format!("fd3 key={k}"));
}

#[test]
fn raw_terminal_program_through_tmux() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut c = Computation::new("rawtty");
    let prog = program("rawtty");
    let tmux = Tmux::start("tmux", 30, 100);

    // Launched in window 0 (30x100), raw at once.
    let launch = format!(
        "--quiet --ckpt-dir {} {}",
        quote_path(&c.ckpt_dir),
        quote_path(&prog)
    );
    tmux.keys(0, &c.ckpt_shell_line(&format!("launch {launch}")));
    tmux.press(0, "Enter");
    let ready = wait_for(&tmux, 0, "ready pid=");
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
    window(&tmux, 1, 25, 90);
    tmux.keys(
        1,
        &c.ckpt_shell_line(&format!("restart --quiet {}", quote_path(&first))),
    );
    tmux.press(1, "Enter");
    c.wait_connected(1, T);
    wait_for(&tmux, 1, "winch rows=25 cols=90");
    key_is_raw(&tmux, 1, 'x', 25, 90);
    key_is_raw(&tmux, 1, 'y', 25, 90);
    // Nothing of it went to the first window.
    assert!(!tmux.screen(0).contains("key=x"), "{}", tmux.screen(0));

    let second = c.checkpoint();
    stop(&mut c, &tmux, 1);
    // The program left the terminal raw when it was stopped: the shell
    // in window 1 still ran `echo` (bash sets its own modes).

    // Restarted again in window 2 (24x80): keys, then its verdict.
    window(&tmux, 2, 24, 80);
    tmux.keys(
        2,
        &c.ckpt_shell_line(&format!("restart --quiet {}", quote_path(&second))),
    );
    tmux.press(2, "Enter");
    c.wait_connected(1, T);
    wait_for(&tmux, 2, "winch rows=24 cols=80");
    key_is_raw(&tmux, 2, 'z', 24, 80);
    tmux.keys(2, "q");
    let v = tmux.wait_line(2, |l| l.starts_with("VERDICT"), T);
    assert_eq!(v.trim(), "VERDICT OK keys=5", "{}", tmux.screen(2));
    wait_gone(&mut c);
    tmux.keys(2, "echo status=$?");
    tmux.press(2, "Enter");
    wait_for(&tmux, 2, "status=0");

    // A last restart of the same image in window 3: ^C reaches the
    // program, the terminal's foreground job, and the restart ends with it.
    window(&tmux, 3, 24, 80);
    tmux.keys(
        3,
        &c.ckpt_shell_line(&format!("restart --quiet {}", quote_path(&second))),
    );
    tmux.press(3, "Enter");
    c.wait_connected(1, T);
    key_is_raw(&tmux, 3, 'w', 24, 80);
    tmux.press(3, "C-c");
    wait_gone(&mut c);
    tmux.keys(3, "echo status=$?");
    tmux.press(3, "Enter");
    wait_for(&tmux, 3, "status=130");
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
