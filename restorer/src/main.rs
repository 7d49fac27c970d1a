//! ckpt-restore: reads a ckpt image and becomes the process again.
//!
//! `ckpt-restore [--debug] [--test-vdso-mismatch] IMAGE`
//!
//! Validates the whole image first (exit 2 on any problem, nothing
//! started), then creates the pid/mount (and, unprivileged, user)
//! namespaces, an init, and the process with the image's pid, which
//! replaces its address space with the image's and resumes the threads.
//! Exits with the restored process's exit status (128+N if killed by
//! signal N; 125 if the final stage failed).

mod blob;
mod fds;
mod image;
mod layout;
mod log;
mod maps;
mod ns;
mod plan;
mod procstate;
mod restore;
mod sys;
mod tty;
mod vdso;

use std::path::PathBuf;

const USAGE: &str = "usage: ckpt-restore [--debug] [--test-vdso-mismatch] IMAGE";

fn main() {
    let mut debug = false;
    let mut opts = restore::Options::default();
    let mut images = Vec::new();
    // The test switch as an environment variable too, so that a test can
    // set it through `ckpt restart`, which execs us.
    opts.force_vdso_mismatch =
        std::env::var_os("CKPT_TEST_VDSO_MISMATCH").is_some_and(|v| v == "1");
    for a in std::env::args_os().skip(1) {
        match a.to_str() {
            Some("--debug") => debug = true,
            Some("--test-vdso-mismatch") => opts.force_vdso_mismatch = true,
            Some("-h") | Some("--help") => {
                println!("{USAGE}");
                return;
            }
            Some(s) if s.starts_with('-') => {
                eprintln!("ckpt-restore: unknown option {s}\n{USAGE}");
                std::process::exit(2);
            }
            _ => images.push(PathBuf::from(a)),
        }
    }
    if images.len() != 1 {
        eprintln!("ckpt-restore: exactly one image is supported\n{USAGE}");
        std::process::exit(2);
    }
    log::init(debug);
    let path = &images[0];
    let img = match image::Image::open(path) {
        Ok(i) => i,
        Err(e) => {
            log::error(&format!("cannot open image: {e}"));
            std::process::exit(2);
        }
    };
    let problems = img.validate();
    if !problems.is_empty() {
        for p in &problems {
            log::error(&format!("{}: corrupt image: {p}", path.display()));
        }
        std::process::exit(2);
    }
    if let Err(e) = restore::preflight(&img) {
        log::error(&format!("{}: {e}", path.display()));
        std::process::exit(2);
    }
    let settings = restore::Settings::from_env();
    log::info(&format!(
        "{}: valid; restoring pid {}",
        path.display(),
        img.process.pid.0
    ));
    let pid = img.process.pid.0;
    match ns::run(pid, || restore::run(&img, &opts, &settings)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error(&format!("{}: {e}", path.display()));
            std::process::exit(2);
        }
    }
}
