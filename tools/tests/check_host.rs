//! `ckpt image check-host`: the golden images checked against fixed hosts
//! (snapshots), and this machine read for real.

use ckpt_format::MappedImage;
use ckpt_tools::image::check_host::{self, HostInfo, Status};
use std::path::PathBuf;

fn golden(name: &str) -> MappedImage {
    MappedImage::open(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../spec/golden")
            .join(name),
    )
    .unwrap()
}

/// The host the golden images were written on.
fn same_host(img: &MappedImage) -> HostInfo {
    let h = &img.header().host;
    HostInfo {
        arch: 62,
        kernel_release: h.kernel_release.clone(),
        userns: Ok(()),
        euid: 1000,
        mm_map: true,
        xcr0: Some(h.xsave_features),
        cpu_flags: h.cpu_flags.clone(),
        vdso_symbols: h.vdso_symbols.clone(),
    }
}

/// Whether pids are in use depends on this machine: not part of a snapshot.
fn normalised(s: String) -> String {
    s.lines()
        .map(|l| {
            if l.contains("  pids: ") {
                "  info  pids: <host-specific>"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn same_host_but_the_program_file_is_absent() {
    let img = golden("v1-tiny.ckpt");
    let rep = check_host::check(&img, &same_host(&img));
    assert!(!rep.restartable());
    let fails: Vec<_> = rep
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .collect();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(fails[0].name, "file /home/user/counter");
    insta::assert_snapshot!(
        "check_host_tiny_same_host",
        normalised(check_host::render(&img, &rep, "v1-tiny.ckpt"))
    );
}

#[test]
fn an_old_kernel_without_avx_fails_with_every_reason() {
    let img = golden("v1-full.ckpt");
    let mut host = same_host(&img);
    host.kernel_release = "5.4.0-150-generic".into();
    host.xcr0 = Some(0x3);
    host.cpu_flags.retain(|f| f != "avx2");
    host.userns = Err("user.max_user_namespaces = 0".into());
    let mut as_root = host.clone();
    host.vdso_symbols[0].offset += 0x10;
    let rep = check_host::check(&img, &host);
    assert!(!rep.restartable());
    let text = normalised(check_host::render(&img, &rep, "v1-full.ckpt"));
    assert!(text.contains("verdict: NOT restartable here: "), "{text}");
    insta::assert_snapshot!("check_host_full_old_host", text);
    let j = check_host::to_json(&rep, "v1-full.ckpt");
    assert_eq!(j["schema"], "ckpt-check-host/1");
    assert_eq!(j["restartable"], false);
    // Root needs no user namespace.
    as_root.euid = 0;
    let rep = check_host::check(&img, &as_root);
    let c = rep
        .checks
        .iter()
        .find(|c| c.name == "user namespaces")
        .unwrap();
    assert_eq!(c.status, Status::Ok, "{c:?}");
}

#[test]
fn this_host_is_read() {
    let host = HostInfo::current();
    assert_ne!(host.kernel_release, "");
    assert!(!host.cpu_flags.is_empty());
    if cfg!(target_arch = "x86_64") {
        assert_eq!(host.arch, 62);
        let x = host.xcr0.expect("x86_64 hosts have XSAVE");
        assert_eq!(x & 3, 3, "x87 and SSE state are always enabled");
    }
    assert!(
        host.vdso_symbols
            .iter()
            .any(|s| s.name.contains("clock_gettime")),
        "{:?}",
        host.vdso_symbols
    );
}

/// The `xsave` check of sample::full() with its threads' XSTATE_BV set to
/// `bv`, on a host whose XCR0 is `have`.
fn xsave_check(bv: u64, have: u64) -> check_host::Check {
    let mut s = ckpt_format::sample::full();
    for t in &mut s.threads {
        t.xsave.resize(832, 0);
        t.xsave[512..520].copy_from_slice(&bv.to_le_bytes());
    }
    let img = MappedImage::from_bytes(s.encode().unwrap()).unwrap();
    assert_eq!(img.header().host.xsave_features, 0x602e7);
    let mut host = same_host(&img);
    host.xcr0 = Some(have);
    let rep = check_host::check(&img, &host);
    rep.checks.into_iter().find(|c| c.name == "xsave").unwrap()
}

#[test]
fn xsave_fails_only_for_components_the_saved_threads_use() {
    // The writer's host had AMX and AVX-512; the threads used AVX only.
    let c = xsave_check(0x7, 0x7);
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.detail.contains("xtiledata") && c.detail.contains("unused"),
        "{c:?}"
    );
    let c = xsave_check(0x7, 0x602e7);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    // A thread's AVX state cannot be loaded where AVX is off.
    let c = xsave_check(0x7, 0x3);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("holds avx, which this CPU lacks"),
        "{c:?}"
    );
    assert!(c.detail.contains("thread(s) 4242"), "{c:?}");
}
