//! tests/programs/stopped.c (a parent whose child it stopped with
//! SIGTSTP, as ^Z would) through launch → checkpoint of both while the
//! child is stopped → kill → restart of both images → checkpoint → kill
//! → restart from the manifest → SIGCONT → verdict: a stopped process
//! does not block the checkpoint (another process of the computation
//! continues it for the checkpoint, and it stops again after it), it is
//! stopped again after each restart, and its parent's
//! waitpid(WUNTRACED) reports it stopped; SIGCONT continues it.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn child_state(l: &str) -> Option<char> {
    l.strip_prefix("tick parent child=")?.chars().next()
}

/// `ckpt command l`: (vpid, ppid, state) of each process listed.
fn listed(c: &Computation) -> Vec<(i32, i32, String)> {
    let out = c.command(&["l"]);
    assert!(out.status.success(), "ckpt command l: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // N, program[pid]@host, ppid P, unique-id, STATE
            let f: Vec<&str> = l.splitn(5, ", ").collect();
            let pid = f
                .get(1)?
                .split_once('[')?
                .1
                .split_once(']')?
                .0
                .parse()
                .ok()?;
            let ppid = f.get(2)?.strip_prefix("ppid ")?.parse().ok()?;
            Some((pid, ppid, f.get(4)?.to_string()))
        })
        .collect()
}

/// `ckpt command l` shows the child `child` (STOPPED or RUNNING) and its
/// parent RUNNING.
fn list_shows_child(c: &Computation, child: &str) {
    let l = listed(c);
    assert_eq!(l.len(), 2, "{l:?}");
    let parent = l
        .iter()
        .find(|p| l.iter().all(|o| o.0 != p.1))
        .expect("the parent");
    let kid = l.iter().find(|p| p.1 == parent.0).expect("the child");
    assert_eq!(
        (parent.2.as_str(), kid.2.as_str()),
        ("RUNNING", child),
        "{l:?}"
    );
}

/// Waits until the parent sees the child stopped in `n` ticks in a row.
fn child_stays_stopped(c: &mut Computation, n: usize) {
    let mut run = 0;
    while run < n {
        let l = c.wait_for_line(
            |l| child_state(l).is_some() || l.starts_with("tick child"),
            T,
        );
        run = if child_state(&l) == Some('T') {
            run + 1
        } else {
            0
        };
    }
}

#[test]
fn a_stopped_process_is_stopped_again_after_a_restart() {
    let mut c = Computation::new("stopped");
    story(&mut c);
}

#[test]
fn a_stopped_process_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("stopped-nobody") else {
        return;
    };
    story(&mut c);
}

fn story(c: &mut Computation) {
    let stop = c.stop_file();
    let dir = stop.parent().expect("the test's directory").to_path_buf();
    let args = [dir.display().to_string(), stop.display().to_string()];
    c.launch_tree(&program("stopped"), &[&args[0], &args[1]], 2);
    c.wait_lines(2, |l| l.starts_with("tick child"), T);
    std::fs::write(dir.join("stop-child"), b"").unwrap();
    c.wait_for_line(|l| l == "event stopped sig=20", T);
    child_stays_stopped(c, 3);
    list_shows_child(c, "STOPPED");

    let images = c.checkpoint_all(2);
    // Continued for the checkpoint, stopped again after it.
    child_stays_stopped(c, 3);
    list_shows_child(c, "STOPPED");
    c.kill();

    let mut a: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    a.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(a);
    c.wait_connected(2, T);
    // A fresh stop, which the restored parent's waitpid() reports.
    c.wait_for_line(|l| l.starts_with("event stopped sig="), T);
    child_stays_stopped(c, 3);
    // In the restart's pid namespace too.
    list_shows_child(c, "STOPPED");

    c.checkpoint_all(2);
    child_stays_stopped(c, 3);
    c.kill();

    let ckpt_dir = c.ckpt_dir.display().to_string();
    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &ckpt_dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(2, T);
    c.wait_for_line(|l| l.starts_with("event stopped sig="), T);
    child_stays_stopped(c, 3);

    std::fs::write(dir.join("cont-child"), b"").unwrap();
    c.wait_for_line(|l| l == "event continued", T);
    c.wait_lines(2, |l| l.starts_with("tick child"), T);
    list_shows_child(c, "RUNNING");
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the parent's status"
    );
}

/// The state letter of /proc/`pid`/stat.
fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// `pid` and its descendants (host pids), from /proc/PID/task/*/children.
fn tree_of(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", out[i]));
        for t in tasks.into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    out
}

/// Waits until one of `pids()` is stopped (state T); returns it.
fn wait_stopped(pids: impl Fn() -> Vec<u32>) -> u32 {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(p) = pids().into_iter().find(|&p| state(p) == Some('T')) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing stopped within {T:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(sig: &str, target: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, "--", target])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig} {target}");
}

/// The whole computation stopped, as ^Z stops `ckpt launch PROGRAM` in a
/// shell: no other process can continue it, the coordinator does (same
/// host and pid namespace), and it is stopped again after the checkpoint
/// (and `ckpt command k` still kills it) and after the restart, until
/// SIGCONT.
#[test]
fn a_launched_process_stopped_as_a_whole() {
    let mut c = Computation::new("stopped-root");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("counter"), &[&stop]);
    let is_count = |l: &str| l.starts_with("count ");
    c.wait_lines(2, is_count, T);
    let pid = c.proc.as_ref().expect("launched").id();
    signal("-TSTP", &pid.to_string());
    wait_stopped(|| vec![pid]);

    let l = listed(&c);
    assert!(l.len() == 1 && l[0].2 == "STOPPED", "ckpt command l: {l:?}");
    let image = c.checkpoint();
    wait_stopped(|| vec![pid]);
    // `ckpt command k` reaches a stopped process too.
    let out = c.command(&["k"]);
    assert!(out.status.success(), "ckpt command k: {out:?}");
    c.wait_connected(0, T);
    assert_eq!(c.wait_exit(T), Some(75), "killed by the coordinator");

    c.restart(&image);
    let restart = c.proc.as_ref().expect("restarted").id();
    let restored = wait_stopped(|| tree_of(restart));
    assert_ne!(
        restored, restart,
        "the restored process, not ckpt-restore, is stopped"
    );
    c.wait_connected(1, T);
    let l = listed(&c);
    assert!(l.len() == 1 && l[0].2 == "STOPPED", "ckpt command l: {l:?}");
    // SIGCONT to the restart's group (the restored process is in it).
    signal("-CONT", &format!("-{restart}"));
    c.wait_lines(2, is_count, T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
}
