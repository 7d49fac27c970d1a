//! Job control in an interactive shell with a controlling terminal,
//! through tmux: `bash -i` runs under `ckpt launch` in one window and
//! starts tests/programs/jobctl.c as its foreground job (it prints its
//! pid, group and whether its group is the terminal's foreground). Both
//! are checkpointed and killed, restarted from the manifest in a second
//! window: the job runs on in the foreground; ^Z stops it, `jobs` lists
//! it, bash is the terminal's foreground at its prompt (tcgetpgrp) and
//! leads its own group, the job is stopped (state T); `fg` continues
//! it, in the foreground again. ^Z again: checkpointed and killed with
//! the job stopped, restarted in a third window: bash is at its prompt,
//! `jobs` lists the job stopped, `fg` continues it in the foreground;
//! ^C ends the job, `exit 7` the shell, and the restart ends with its
//! status.

use ckpt_tests::{ckpt, program, Computation, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// A private tmux server (its own socket), one window per step.
struct Tmux {
    sock: PathBuf,
    _dir: TempDir,
}

impl Tmux {
    fn start() -> Tmux {
        let dir = TempDir::new("tmux-jobctl");
        let t = Tmux {
            sock: dir.path().join("sock"),
            _dir: dir,
        };
        t.run(&[
            "new-session",
            "-d",
            "-x",
            "150",
            "-y",
            "40",
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

    fn window(&self, w: u32) {
        self.run(&[
            "new-window",
            "-d",
            "-t",
            &format!("0:{w}"),
            "env PS1='$ ' bash --norc --noprofile",
        ]);
    }

    /// Types `line` and Enter in window `w`.
    fn line(&self, w: u32, line: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), "-l", line]);
        self.press(w, "Enter");
    }

    fn press(&self, w: u32, key: &str) {
        self.run(&["send-keys", "-t", &format!("0:{w}"), key]);
    }

    fn screen(&self, w: u32) -> String {
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

    /// Waits until the last line of window `w` that satisfies `pred`
    /// comes after `after` lines of it; returns it and its index.
    fn wait_line_after(
        &self,
        w: u32,
        after: usize,
        pred: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let deadline = Instant::now() + T;
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
                "window {w}: no matching line after line {after} within {T:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The number of lines window `w` printed so far (up to its last
    /// non-empty one).
    fn lines(&self, w: u32) -> usize {
        let s = self.screen(w);
        s.lines()
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

/// (pid, pgid, fg, n) from `job pid=<pid> pgid=<pgid> fg=<0|1> n=<n>`.
fn job_tick(l: &str) -> Option<(i32, i32, bool, u64)> {
    let mut w = l.trim().strip_prefix("job ")?.split_whitespace();
    let mut field = |name: &str| -> Option<i64> { w.next()?.strip_prefix(name)?.parse().ok() };
    Some((
        field("pid=")? as i32,
        field("pgid=")? as i32,
        field("fg=")? == 1,
        field("n=")? as u64,
    ))
}

/// Waits for a tick of `job` in the foreground after line `after`.
fn job_runs_in_foreground(tmux: &Tmux, w: u32, after: usize, job: i32) -> usize {
    let (i, l) = tmux.wait_line_after(w, after, |l| job_tick(l).is_some());
    let (pid, pgid, fg, _) = job_tick(&l).unwrap();
    assert_eq!((pid, pgid, fg), (job, job, true), "{l}\n{}", tmux.screen(w));
    // One more, so it is running and not a line printed before a stop.
    let (j, _) = tmux.wait_line_after(w, i + 1, |l| job_tick(l).is_some());
    j
}

/// ^Z: the job stops, bash says so.
fn stop(tmux: &Tmux, w: u32) {
    let at = tmux.lines(w).saturating_sub(1);
    tmux.press(w, "C-z");
    tmux.wait_line_after(w, at, |l| l.contains("Stopped") && l.contains("jobctl"));
}

/// ^Z, then [`list_continue`].
fn stop_list_continue(tmux: &Tmux, w: u32, job: i32) {
    stop(tmux, w);
    list_continue(tmux, w, job);
}

/// `jobs` lists the stopped job; the groups and the terminal's
/// foreground; `fg` continues it.
fn list_continue(tmux: &Tmux, w: u32, job: i32) {
    let at = tmux.lines(w).saturating_sub(1);
    tmux.line(w, "jobs");
    tmux.wait_line_after(w, at, |l| {
        l.starts_with("[1]+") && l.contains("Stopped") && l.contains("jobctl")
    });
    // bash leads its own group, which is the terminal's foreground at
    // its prompt; the job keeps its group and is stopped (fields 3, 5
    // and 8 of /proc/PID/stat: state, pgrp, tpgid).
    tmux.line(
        w,
        &format!(
            "s=($(</proc/$$/stat)) j=($(</proc/{job}/stat)); \
             echo shell pid=$$ pgid=${{s[4]}} tpgid=${{s[7]}} job=${{j[4]}} stat=${{j[2]}}"
        ),
    );
    let (_, l) = tmux.wait_line_after(w, at, |l| l.starts_with("shell pid="));
    let v: Vec<&str> = l.split_whitespace().collect();
    let shell = v[1].trim_start_matches("pid=");
    assert_eq!(v[2], format!("pgid={shell}"), "{l}");
    assert_eq!(v[3], format!("tpgid={shell}"), "{l}");
    assert_eq!(v[4], format!("job={job}"), "{l}");
    assert!(v[5].starts_with("stat=T"), "the job is stopped: {l}");
    let at = tmux.lines(w).saturating_sub(1);
    tmux.line(w, "fg");
    tmux.wait_line_after(w, at, |l| l == format!("continued pid={job}"));
    job_runs_in_foreground(tmux, w, at, job);
}

/// `ckpt command k`: every process exits with 75.
fn kill_all(c: &mut Computation) {
    let out = c.command(&["k"]);
    assert!(out.status.success(), "ckpt command k: {out:?}");
    c.wait_connected(0, T);
}

#[test]
fn job_control_in_an_interactive_shell_through_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut c = Computation::new("jobctl");
    let tmux = Tmux::start();
    let dir = quote(&c.ckpt_dir);
    tmux.line(
        0,
        &ckpt_line(
            &c,
            &format!("launch --quiet --ckpt-dir {dir} env PS1='J$ ' bash --norc --noprofile -i"),
        ),
    );
    tmux.wait_line_after(0, 0, |l| l.starts_with("J$"));
    c.wait_connected(1, T);
    tmux.line(0, &quote(&program("jobctl")));
    let (_, l) = tmux.wait_line_after(0, 0, |l| job_tick(l).is_some());
    let job = job_tick(&l).unwrap().0;
    job_runs_in_foreground(&tmux, 0, 0, job);
    c.wait_connected(2, T);

    c.checkpoint_all(2);
    kill_all(&mut c);

    for w in [1, 2] {
        tmux.window(w);
        tmux.line(
            w,
            &ckpt_line(&c, &format!("restart --quiet --ckpt-dir {dir}")),
        );
        c.wait_connected(2, T);
        if w == 1 {
            job_runs_in_foreground(&tmux, w, 0, job);
            stop_list_continue(&tmux, w, job);
            // Checkpointed again while the job is stopped at the prompt.
            stop(&tmux, w);
            c.checkpoint_all(2);
            kill_all(&mut c);
        } else {
            // Restored stopped, bash reading its next command in the
            // foreground (its prompt was printed before the checkpoint).
            list_continue(&tmux, w, job);
        }
    }
    let at = tmux.lines(2).saturating_sub(1);
    tmux.press(2, "C-c");
    tmux.wait_line_after(2, at, |l| l.starts_with("J$"));
    tmux.line(2, "exit 7");
    c.wait_connected(0, T);
    let at = tmux.lines(2).saturating_sub(1);
    tmux.line(2, "echo status=$?");
    tmux.wait_line_after(2, at, |l| l == "status=7");
}
