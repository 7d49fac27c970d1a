//! The command line alone (no checkpointed process needed).

use ckpt_tests::{ckpt, Computation, TempDir};
use std::process::Command;

#[test]
fn coordinator_on_port_zero_writes_its_port_and_a_private_secret() {
    let c = Computation::new("cli-port");
    assert_ne!(c.port, 0);
    let secret = c.tmpdir.join(format!("secret-{}", c.port));
    let meta = std::fs::metadata(&secret).expect("secret file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&secret).unwrap().trim().len(), 64);
}

#[test]
fn status_with_no_process_exits_1() {
    let c = Computation::new("cli-status");
    let out = c.command(&["s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("processes: 0"));
    let out = c.command(&["--status"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn list_json_is_empty() {
    let c = Computation::new("cli-list");
    let out = c.command(&["l", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"list": []}));
}

#[test]
fn checkpoint_with_no_process_exits_3() {
    let c = Computation::new("cli-bc");
    let out = c.command(&["bc"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no processes"));
}

#[test]
fn interval_is_set_and_reported() {
    let c = Computation::new("cli-interval");
    assert!(c.command(&["i", "7"]).status.success());
    let out = c.command(&["s", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"]["interval"], 7);
    assert!(c.command(&["--interval", "0"]).status.success());
}

#[test]
fn wrong_secret_is_refused_with_exit_2() {
    let c = Computation::new("cli-secret");
    let out = Command::new(ckpt())
        .args(["command", "s"])
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env("CKPT_SECRET", "not-the-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("wrong secret"),
        "{err}"
    );
}

#[test]
fn unreachable_coordinator_exits_2() {
    let dir = TempDir::new("cli-unreach");
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(ckpt())
        .args(["command", "--coord-port", &port.to_string(), "s"])
        .env("CKPT_TMPDIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn quit_stops_the_coordinator() {
    let mut c = Computation::new("cli-quit");
    assert!(c.command(&["q"]).status.success());
    assert_eq!(
        c.wait_coordinator_exit(std::time::Duration::from_secs(5)),
        Some(0)
    );
    let out = c.command(&["s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !c.tmpdir.join(format!("secret-{}", c.port)).exists(),
        "secret file removed at quit"
    );
}

#[test]
fn several_images_with_a_broken_one_start_nothing() {
    let c = Computation::new("cli-several");
    let good = c.dir.path().join("a.ckpt");
    let bad = c.dir.path().join("b.ckpt");
    std::fs::write(&good, b"x").unwrap();
    std::fs::write(&bad, b"x").unwrap();
    let out = Command::new(ckpt())
        .arg("restart")
        .arg("--quiet")
        .arg(&good)
        .arg(&bad)
        .env("CKPT_TMPDIR", &c.tmpdir)
        .env("CKPT_COORD_PORT", c.port.to_string())
        .env_remove("CKPT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "refused before anything starts");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.ckpt"), "names the image: {err}");
}
