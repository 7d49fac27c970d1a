//! ckpt-restore: reads the images of a process tree and becomes it again.
//!
//! `ckpt-restore [--debug] [--test-vdso-mismatch] [--map-path OLD=NEW]...
//! [--set-env NAME=VALUE]... IMAGE...`
//!
//! Validates every image first (exit 2 on any problem, nothing
//! started), then creates the pid/mount (and, unprivileged, user)
//! namespaces, an init, and the process tree with the images' pids
//! (tree.rs, ns.rs); each process replaces its address space with its
//! image's and resumes its threads once all are ready (barrier.rs).
//! Exits with the (first) root process's exit status (128+N if killed by
//! signal N; 125 if the final stage failed), once every process ended.

mod barrier;
mod blob;
mod environ;
mod fds;
mod image;
mod layout;
mod log;
mod maps;
mod ns;
mod ns_sys;
mod paths;
mod plan;
mod procstate;
mod restore;
mod shm;
mod sys;
mod tree;
mod tty;
mod vdso;

use std::path::PathBuf;

const USAGE: &str = "usage: ckpt-restore [--debug] [--quiet] [--test-vdso-mismatch] \
                     [--map-path OLD=NEW]... [--set-env NAME=VALUE]... IMAGE...";

/// The value of an option that takes one (`--opt V` or `--opt=V`).
fn value_of(
    name: &str,
    a: &std::ffi::OsStr,
    args: &mut impl Iterator<Item = std::ffi::OsString>,
) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let b = a.as_bytes();
    if b == name.as_bytes() {
        let v = args.next().map(|v| v.as_bytes().to_vec());
        if v.is_none() {
            eprintln!("ckpt-restore: {name} needs a value\n{USAGE}");
            std::process::exit(2);
        }
        return v;
    }
    b.strip_prefix(name.as_bytes())
        .and_then(|r| r.strip_prefix(b"="))
        .map(|v| v.to_vec())
}

fn main() {
    let mut debug = false;
    let mut quiet = false;
    let mut opts = restore::Options::default();
    let mut images = Vec::new();
    // The test switch as an environment variable too, so that a test can
    // set it through `ckpt restart`, which execs us.
    opts.force_vdso_mismatch =
        std::env::var_os("CKPT_TEST_VDSO_MISMATCH").is_some_and(|v| v == "1");
    let mut path_map = paths::PathMap::default();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if let Some(v) = value_of("--map-path", &a, &mut args) {
            if let Err(e) = path_map.add(&v) {
                eprintln!("ckpt-restore: {e}");
                std::process::exit(2);
            }
            continue;
        }
        if let Some(v) = value_of("--set-env", &a, &mut args) {
            if let Err(e) = opts.env.add(&v) {
                eprintln!("ckpt-restore: {e}");
                std::process::exit(2);
            }
            continue;
        }
        match a.to_str() {
            Some("--debug") => debug = true,
            Some("--quiet") => quiet = true,
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
    // SAFETY: isatty only reads the state of fd 2.
    opts.progress = !quiet && unsafe { libc::isatty(2) } == 1;
    if images.is_empty() {
        eprintln!("ckpt-restore: no image given\n{USAGE}");
        std::process::exit(2);
    }
    log::init(debug);
    // Every image is opened, validated and checked before anything starts.
    let mut imgs = Vec::with_capacity(images.len());
    for path in &images {
        let mut img = match image::Image::open(path) {
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
        path_map.apply(&mut img);
        if let Err(e) = restore::preflight(&img) {
            log::error(&format!("{}: {e}", path.display()));
            std::process::exit(2);
        }
        if let Err(e) = fds::reconcile(&img) {
            log::error(&format!("{}: {e}", path.display()));
            std::process::exit(2);
        }
        log::info(&format!(
            "{}: valid; restoring pid {}",
            path.display(),
            img.process.pid.0
        ));
        imgs.push(img);
    }
    let ids: Vec<tree::Ids> = imgs
        .iter()
        .map(|i| tree::Ids {
            pid: i.process.pid.0,
            ppid: i.process.ppid.0,
            pgid: i.process.pgid.0,
            sid: i.process.sid.0,
        })
        .collect();
    let mut tree = match tree::Tree::build(&ids, |w| log::warn(&w)) {
        Ok(t) => t,
        Err(e) => {
            log::error(&e.to_string());
            std::process::exit(2);
        }
    };
    for i in 0..tree.nodes.len() {
        let z: Vec<(i32, i32)> = imgs[tree.nodes[i].image]
            .zombies
            .iter()
            .map(|z| (z.pid.0, z.status))
            .collect();
        tree.add_zombies(i, &z, |w| log::warn(&w));
    }
    let ends: Vec<tree::PipeEnd> = imgs
        .iter()
        .flat_map(|i| {
            i.fds.iter().filter_map(|f| match f.kind {
                ckpt_format::FdKind::Pipe {
                    pipe_id, write_end, ..
                } => Some((i.process.pid.0, f.fd.0, pipe_id, write_end)),
                _ => None,
            })
        })
        .collect();
    // Pipes between processes of the tree: made once here, inherited by all.
    let pipes = tree::shared_pipes(&ends, &tree.root_pids());
    let mut inherited = match fds::share_pipes(&imgs, &pipes) {
        Ok(fds) => fds,
        Err(e) => {
            log::error(&format!("the pipes the processes share: {e}"));
            std::process::exit(2);
        }
    };
    // Shared memory objects: made once here, inherited by all (before
    // the descriptions: a memfd's descriptor is its mappings' object).
    match shm::share(&imgs) {
        Ok(fds) => inherited.extend(fds),
        Err(e) => {
            log::error(&e);
            std::process::exit(2);
        }
    }
    // FIFOs several processes hold: opened and refilled once here.
    match fds::share_fifos(&imgs) {
        Ok(fds) => inherited.extend(fds),
        Err(e) => {
            log::error(&format!("the FIFOs the processes share: {e}"));
            std::process::exit(2);
        }
    }
    // So are the open file descriptions they share (one offset).
    inherited.extend(fds::share_descriptions(&imgs));
    let settings = restore::Settings::from_env();
    let restore_one = |i: usize, barrier: &barrier::Barrier| -> std::convert::Infallible {
        restore::run(&imgs[tree.nodes[i].image], &opts, &settings, barrier)
    };
    match ns::run(&tree, &restore_one, &inherited) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error(&e.to_string());
            std::process::exit(2);
        }
    }
}
