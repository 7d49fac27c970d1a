//! `ckpt restart` shows how far the restore of a large image is (bytes
//! and rate) when its stderr is a terminal, and says nothing of it in a
//! script or with `--quiet`.

use ckpt_tests::{ckpt, program, Computation};
use std::process::{Command, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// `ckpt restart ARGS IMAGE` of a program that ends at its next tick (the
/// stop file exists), under `script` (a terminal) or with pipes.
fn restart(c: &Computation, image: &std::path::Path, extra: &[&str], tty: bool) -> String {
    let mut args: Vec<String> = vec![ckpt().display().to_string(), "restart".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(image.display().to_string());
    let mut cmd = if tty {
        let line: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let mut s = Command::new("script");
        s.args(["-qfec", &line.join(" "), "/dev/null"]);
        s
    } else {
        let mut s = Command::new(&args[0]);
        s.args(&args[1..]);
        s
    };
    let out = cmd
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_HOST", "127.0.0.1")
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("ckpt restart");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restart failed: {text}");
    assert!(
        text.contains("VERDICT OK"),
        "the program did not finish well: {text}"
    );
    text
}

#[test]
fn restart_progress_on_a_terminal_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let mut c = Computation::new("restart-progress");
    c.env.push(("HEAP_MB".into(), "256".into()));
    let stop = c.stop_file().display().to_string();
    c.launch(&program("heap1g"), &[&stop]);
    c.wait_for_line(|l| l.starts_with("ready"), Duration::from_secs(120));
    c.wait_lines(1, |l: &str| l.starts_with("tick"), T);
    let image = c.checkpoint();
    c.kill();
    std::fs::write(c.stop_file(), b"stop").unwrap();

    let said = restart(&c, &image, &[], true);
    let summary = said
        .split(['\r', '\n'])
        .find(|l| l.starts_with("restored "))
        .unwrap_or_else(|| panic!("no progress on a terminal: {said}"));
    // "restored NAME: 256.0 of 256.0 MiB, N MiB/s in T s"
    let of: f64 = summary
        .split(" of ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {summary:?}"));
    assert!(of >= 256.0, "the pages of a 256 MiB heap: {summary}");
    assert!(summary.contains("MiB/s"), "{summary}");

    let piped = restart(&c, &image, &[], false);
    assert!(!piped.contains("restor"), "progress in a script: {piped}");
    let quiet = restart(&c, &image, &["--quiet"], true);
    assert!(
        !quiet.contains("restored "),
        "progress with --quiet: {quiet}"
    );
}
