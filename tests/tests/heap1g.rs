//! 1 GiB of heap with a per-page pattern survives the story.

use ckpt_tests::{program, Computation};
use std::time::Duration;

#[test]
fn heap_1g_story() {
    let mut c = Computation::new("heap1g");
    let stop = c.stop_file().display().to_string();
    c.launch(&program("heap1g"), &[&stop]);
    c.wait_for_line(|l| l.starts_with("ready"), Duration::from_secs(120));
    c.story(&|l: &str| l.starts_with("tick"), Duration::from_secs(180));
    let v = c.verdict(Duration::from_secs(120));
    assert!(v.starts_with("VERDICT OK"), "{v}");
}

/// Bytes of `image` mapped by any process on this machine (from
/// /proc/PID/maps): the restored program's memory mapped from its image.
fn bytes_mapped_from(image: &std::path::Path) -> u64 {
    let name = image.display().to_string();
    let mut total = 0;
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(maps) = std::fs::read_to_string(e.path().join("maps")) else {
            continue;
        };
        for l in maps.lines().filter(|l| l.ends_with(&name)) {
            let range = l.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = range.split_once('-') {
                let (a, b) = (
                    u64::from_str_radix(a, 16).unwrap_or(0),
                    u64::from_str_radix(b, 16).unwrap_or(0),
                );
                total += b.saturating_sub(a);
            }
        }
    }
    total
}

/// Uncompressed images: the restorer maps the raw pages from the image
/// instead of copying them, the restarted program's next checkpoint stores
/// those pages as its own memory (the image they came from is replaced by
/// that checkpoint), and every page is still right after the next restart.
#[test]
fn heap_raw_pages_mapped_from_the_image() {
    let mut c = Computation::new("heap_raw");
    c.env.push(("HEAP_MB".into(), "256".into()));
    c.env.push(("CKPT_NO_COMPRESS".into(), "1".into()));
    let stop = c.stop_file().display().to_string();
    let tick = |l: &str| l.starts_with("tick");
    let t = Duration::from_secs(120);
    c.launch(&program("heap1g"), &[&stop]);
    c.wait_for_line(|l| l.starts_with("ready"), t);
    c.wait_lines(1, tick, t);
    let image = c.checkpoint();
    c.kill();
    c.restart(&image);
    c.wait_lines(2, tick, t);
    let mapped = bytes_mapped_from(&image);
    assert!(
        mapped >= 250 << 20,
        "only {mapped} bytes of the restarted program are mapped from {}",
        image.display()
    );
    // The next checkpoint replaces that very image file.
    let again = c.checkpoint();
    assert_eq!(again, image);
    c.wait_lines(1, tick, t);
    c.kill();
    c.restart(&again);
    c.wait_lines(2, tick, t);
    let v = c.verdict(t);
    assert!(v.starts_with("VERDICT OK"), "{v}");
}
