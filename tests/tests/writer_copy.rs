//! The writer's own library in the images: a copy of it beside the images
//! (`ckpt_writer-<build>.so`), to which every image refers, instead of
//! its pages in every image. The copy must keep a restart working when
//! the installed library is replaced (an upgrade, a rebuild) and when the
//! images are moved.

use ckpt_tests::{bin_dir, ckpt, inspect, program, Computation};
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn count(line: &str) -> Option<u64> {
    line.strip_prefix("count ")?.trim().parse().ok()
}

fn is_count(l: &str) -> bool {
    count(l).is_some()
}

/// The copies of the writer library in `dir`.
fn copies(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("ckpt_writer-") && n.ends_with(".so")
        })
        .collect()
}

/// Restarts `image` and checks that the counter goes on after `before`
/// (the last count seen before the checkpoint).
fn restarts_after(c: &mut Computation, image: &Path, before: u64) {
    c.restart(image);
    let first = count(&c.wait_for_line(is_count, T)).unwrap();
    assert!(
        first > before,
        "restored at {first}, checkpointed after {before}"
    );
    let next = count(&c.wait_for_line(is_count, T)).unwrap();
    assert_eq!(next, first + 1);
}

#[test]
fn images_refer_to_one_copy_and_survive_an_upgrade_of_the_library() {
    let mut c = Computation::new("writer-copy");
    // The library the program is started with, replaced after the
    // checkpoint as an upgrade would (a new file renamed over it).
    let lib_dir = c.tmpdir.join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let lib = lib_dir.join("libckpt_writer.so");
    std::fs::copy(bin_dir().join("libckpt_writer.so"), &lib).unwrap();
    c.env
        .push(("CKPT_WRITER".into(), lib.display().to_string()));
    c.launch(&program("counter"), &[]);
    let seen = c.wait_lines(3, is_count, T);
    let before = count(seen.last().unwrap()).unwrap();
    let image = c.checkpoint();

    let copy = copies(&c.ckpt_dir);
    assert_eq!(copy.len(), 1, "one copy of the writer library: {copy:?}");
    let text = inspect(&image, &[]);
    assert!(
        text.contains(&*copy[0].to_string_lossy()),
        "the image refers to the copy {}:\n{text}",
        copy[0].display()
    );
    // Without the copy the image holds the library's pages: about 1 MB.
    let size = std::fs::metadata(&image).unwrap().len();
    assert!(size < 400 << 10, "image of the counter is {size} bytes");

    // A second checkpoint reuses the copy.
    let again = c.checkpoint();
    assert_eq!(again, image);
    assert_eq!(copies(&c.ckpt_dir), copy);

    let new = lib_dir.join("libckpt_writer.so.new");
    std::fs::write(&new, b"not the library the program ran with").unwrap();
    std::fs::rename(&new, &lib).unwrap();
    c.kill();
    restarts_after(&mut c, &image, before);
}

#[test]
fn moved_images_find_the_copy_beside_them() {
    let mut c = Computation::new("writer-copy-moved");
    c.launch(&program("counter"), &[]);
    let seen = c.wait_lines(3, is_count, T);
    let before = count(seen.last().unwrap()).unwrap();
    let image = c.checkpoint();
    c.kill();
    let moved = c.ckpt_dir.with_extension("moved");
    std::fs::rename(&c.ckpt_dir, &moved).unwrap();
    let moved_image = moved.join(image.file_name().unwrap());
    restarts_after(&mut c, &moved_image, before);
    c.kill();
    std::fs::rename(&moved, &c.ckpt_dir).unwrap();
}

/// `ckpt image check-host` follows ckpt-restore's rule for the copy: an
/// image moved with the copy beside it is restartable (exit 0) and the
/// check says where the copy was found; with the copy gone from both
/// places, not restartable (exit 1), and the verdict names the copy.
#[test]
fn check_host_finds_the_copy_beside_moved_images() {
    let mut c = Computation::new("writer-copy-check-host");
    c.launch(&program("counter"), &[]);
    c.wait_lines(2, is_count, T);
    let image = c.checkpoint();
    c.kill();
    let copy = copies(&c.ckpt_dir);
    assert_eq!(copy.len(), 1, "one copy of the writer library: {copy:?}");
    let copy_name = copy[0].file_name().unwrap().to_owned();
    let moved = c.ckpt_dir.with_extension("moved");
    std::fs::rename(&c.ckpt_dir, &moved).unwrap();
    let moved_image = moved.join(image.file_name().unwrap());
    let check_host = || {
        let o = std::process::Command::new(ckpt())
            .args(["image", "check-host"])
            .arg(&moved_image)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.code(), out + &String::from_utf8_lossy(&o.stderr))
    };

    let (code, out) = check_host();
    assert_eq!(code, Some(0), "{out}");
    let beside = moved.join(&copy_name);
    let line = out
        .lines()
        .find(|l| l.contains(&*copy[0].to_string_lossy()))
        .unwrap_or_else(|| panic!("a check of the copy: {out}"));
    assert!(
        line.trim_start().starts_with("ok") && line.contains(&*beside.to_string_lossy()),
        "found beside the image: {out}"
    );

    std::fs::remove_file(&beside).unwrap();
    let (code, out) = check_host();
    assert_eq!(code, Some(1), "{out}");
    let verdict = out
        .lines()
        .find(|l| l.starts_with("verdict:"))
        .unwrap_or_else(|| panic!("a verdict: {out}"));
    assert!(
        verdict.contains("NOT restartable") && verdict.contains(&*copy_name.to_string_lossy()),
        "the verdict names the copy: {out}"
    );
    std::fs::remove_dir_all(&moved).unwrap();
}
