//! The final stage must be position independent and self-contained: this
//! disassembles the `ckpt_blob` section of the built restorer and checks
//! that every branch stays inside it, that it calls nothing, and that it
//! makes no rip-relative (absolute-address-dependent) memory references.
//!
//! Needs the static restorer built first (`scripts/build.sh`, or
//! `cargo build -p ckpt-restore --target x86_64-unknown-linux-musl`).

use std::path::PathBuf;
use std::process::Command;

fn restorer() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for p in [
        "target/x86_64-unknown-linux-musl/debug/ckpt-restore",
        "target/debug/ckpt-restore",
    ] {
        let p = root.join(p);
        if p.exists() {
            return p;
        }
    }
    panic!("build the restorer first: scripts/build.sh");
}

#[test]
fn blob_is_self_contained() {
    let out = Command::new("objdump")
        .args(["-d", "-M", "intel", "-j", "ckpt_blob"])
        .arg(restorer())
        .output()
        .expect("objdump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs = Vec::new();
    let mut branches = Vec::new();
    for line in text.lines() {
        let Some((a, rest)) = line.trim_start().split_once(":\t") else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(a, 16) else {
            continue;
        };
        addrs.push(addr);
        let insn = rest.split('\t').nth(1).unwrap_or("").trim().to_string();
        assert!(!insn.starts_with("call"), "the blob calls out: {line}");
        assert!(!insn.contains("rip"), "rip-relative reference: {line}");
        if insn.starts_with('j') {
            branches.push((addr, insn));
        }
    }
    assert!(addrs.len() > 50, "blob disassembly looks empty:\n{text}");
    let (lo, hi) = (addrs[0], *addrs.last().unwrap());
    let mut indirect = 0;
    for (addr, insn) in &branches {
        let target = insn.split_whitespace().nth(1).unwrap_or("");
        match u64::from_str_radix(target, 16) {
            Ok(t) => assert!(
                (lo..=hi).contains(&t),
                "branch at {addr:#x} leaves the blob: {insn}"
            ),
            Err(_) => {
                // `jmp rcx` into the restored program is the only indirect jump.
                assert_eq!(
                    target, "rcx",
                    "unexpected indirect branch at {addr:#x}: {insn}"
                );
                indirect += 1;
            }
        }
    }
    assert_eq!(indirect, 1);
}
