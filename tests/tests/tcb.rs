//! Every image holds each thread's memory as one consistent state, the
//! memory our own threads keep writing while the image is written too.
//!
//! glibc's x86_64 thread control block starts with two pointers to itself
//! (`tcb` at fs_base+0, `self` at fs_base+16), written once when the
//! thread is created. In every image, for every thread, both must equal
//! the thread's recorded fs base. They did not, about once in 40
//! checkpoints under load, for the checkpoint thread: its stack page was
//! compressed while it changed, and zstd's output decoded to bytes memory
//! never held (the restored process then crashed in glibc).

use ckpt_tests::{ckpt, program, Computation};
use std::process::Command;
use std::time::Duration;

fn u64_at(image: &std::path::Path, addr: u64) -> u64 {
    let out = Command::new(ckpt())
        .args(["image", "extract", "--range"])
        .arg(format!("{addr:x}-{:x}", addr + 8))
        .arg(image)
        .output()
        .expect("ckpt image extract");
    assert!(out.status.success(), "extract failed: {out:?}");
    u64::from_le_bytes(out.stdout[..8].try_into().expect("8 bytes"))
}

fn fs_bases(image: &std::path::Path) -> Vec<(i64, String, u64)> {
    let v: serde_json::Value =
        serde_json::from_str(&ckpt_tests::inspect(image, &["--json"])).expect("inspect --json");
    v["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .map(|t| {
            (
                t["tid"].as_i64().unwrap_or(0),
                t["name"].as_str().unwrap_or("").to_string(),
                t["regs"]["fs_base"].as_u64().expect("fs_base"),
            )
        })
        .collect()
}

#[test]
fn every_thread_control_block_is_consistent_in_every_image() {
    let tick = |l: &str| l.starts_with("count ");
    let mut c = Computation::new("tcb");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("counter"), &[&stop]);
    c.wait_lines(1, tick, Duration::from_secs(20));
    let mut checked = 0;
    for _ in 0..40 {
        let image = c.checkpoint();
        for (tid, name, fs) in fs_bases(&image) {
            if fs == 0 {
                continue;
            }
            let (tcb, me) = (u64_at(&image, fs), u64_at(&image, fs + 16));
            assert!(
                tcb == fs && me == fs,
                "thread {tid} ({name}): fs_base {fs:#x} but the image's TCB says tcb {tcb:#x} self {me:#x}"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 80,
        "only {checked} thread control blocks checked"
    );
}
