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

use ckpt_tests::{program, quote_path, Computation, Tmux};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// [`Tmux::wait_line_after`] within `T`.
fn wait_line_after(
    tmux: &Tmux,
    w: u32,
    after: usize,
    pred: impl Fn(&str) -> bool,
) -> (usize, String) {
    tmux.wait_line_after(w, after, pred, T)
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
    let (i, l) = wait_line_after(tmux, w, after, |l| job_tick(l).is_some());
    let (pid, pgid, fg, _) = job_tick(&l).unwrap();
    assert_eq!((pid, pgid, fg), (job, job, true), "{l}\n{}", tmux.screen(w));
    // One more, so it is running and not a line printed before a stop.
    let (j, _) = wait_line_after(tmux, w, i + 1, |l| job_tick(l).is_some());
    j
}

/// ^Z: the job stops, bash says so.
fn stop(tmux: &Tmux, w: u32) {
    let at = tmux.lines(w).saturating_sub(1);
    tmux.press(w, "C-z");
    wait_line_after(tmux, w, at, |l| {
        l.contains("Stopped") && l.contains("jobctl")
    });
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
    wait_line_after(tmux, w, at, |l| {
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
    let (_, l) = wait_line_after(tmux, w, at, |l| l.starts_with("shell pid="));
    let v: Vec<&str> = l.split_whitespace().collect();
    let shell = v[1].trim_start_matches("pid=");
    assert_eq!(v[2], format!("pgid={shell}"), "{l}");
    assert_eq!(v[3], format!("tpgid={shell}"), "{l}");
    assert_eq!(v[4], format!("job={job}"), "{l}");
    assert!(v[5].starts_with("stat=T"), "the job is stopped: {l}");
    let at = tmux.lines(w).saturating_sub(1);
    tmux.line(w, "fg");
    wait_line_after(tmux, w, at, |l| l == format!("continued pid={job}"));
    job_runs_in_foreground(tmux, w, at, job);
}

#[test]
fn job_control_in_an_interactive_shell_through_tmux() {
    if !Tmux::available() {
        eprintln!("skipped: tmux is not installed");
        return;
    }
    let mut c = Computation::new("jobctl");
    let tmux = Tmux::start("tmux-jobctl", 40, 150);
    let dir = quote_path(&c.ckpt_dir);
    tmux.line(
        0,
        &c.ckpt_shell_line(&format!(
            "launch --quiet --ckpt-dir {dir} env PS1='J$ ' bash --norc --noprofile -i"
        )),
    );
    wait_line_after(&tmux, 0, 0, |l| l.starts_with("J$"));
    c.wait_connected(1, T);
    tmux.line(0, &quote_path(&program("jobctl")));
    let (_, l) = wait_line_after(&tmux, 0, 0, |l| job_tick(l).is_some());
    let job = job_tick(&l).unwrap().0;
    job_runs_in_foreground(&tmux, 0, 0, job);
    c.wait_connected(2, T);

    c.checkpoint_all(2);
    c.kill_through_coordinator(T);

    for w in [1, 2] {
        tmux.window(w);
        tmux.line(
            w,
            &c.ckpt_shell_line(&format!("restart --quiet --ckpt-dir {dir}")),
        );
        c.wait_connected(2, T);
        if w == 1 {
            job_runs_in_foreground(&tmux, w, 0, job);
            stop_list_continue(&tmux, w, job);
            // Checkpointed again while the job is stopped at the prompt.
            stop(&tmux, w);
            c.checkpoint_all(2);
            c.kill_through_coordinator(T);
        } else {
            // Restored stopped, bash reading its next command in the
            // foreground (its prompt was printed before the checkpoint).
            list_continue(&tmux, w, job);
        }
    }
    let at = tmux.lines(2).saturating_sub(1);
    tmux.press(2, "C-c");
    wait_line_after(&tmux, 2, at, |l| l.starts_with("J$"));
    tmux.line(2, "exit 7");
    c.wait_connected(0, T);
    let at = tmux.lines(2).saturating_sub(1);
    tmux.line(2, "echo status=$?");
    wait_line_after(&tmux, 2, at, |l| l == "status=7");
}
