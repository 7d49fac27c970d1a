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

    let images = c.checkpoint_all(2);
    // Continued for the checkpoint, stopped again after it.
    child_stays_stopped(c, 3);
    c.kill();

    let mut a: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    a.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(a);
    c.wait_connected(2, T);
    // A fresh stop, which the restored parent's waitpid() reports.
    c.wait_for_line(|l| l.starts_with("event stopped sig="), T);
    child_stays_stopped(c, 3);

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
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}\n{}", c.diagnostics());
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the parent's status"
    );
}
