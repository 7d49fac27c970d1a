//! The image tools (`ckpt image core|diff|repack|check-host|extract`) on
//! images the writer wrote for real test programs: launched under ckpt,
//! checkpointed, and the image handed to the tool as a user would. What
//! the tools say is checked against what the programs printed about their
//! own memory (tests/programs/pattern.c prints where its known bytes are)
//! and, for repack, against the repacked image restarting and the program
//! checking its own memory.

use ckpt_format::{FileStorage, MappedImage, Region};
use ckpt_tests::{ckpt, program, Computation};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn is_tick(l: &str) -> bool {
    l.starts_with("tick ")
}

/// `ckpt image ARGS...`, with `stdin` (a file) on its standard input.
fn image(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(ckpt());
    cmd.arg("image").args(args);
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).expect("stdin file")),
        None => Stdio::null(),
    });
    cmd.output().expect("ckpt image")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {:?}\n{}", o.status, text(o));
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex address")
}

/// What pattern.c printed about its memory.
struct Pattern {
    marker: u64,
    heap: (u64, usize),
    stack: (u64, usize),
    ticker: u64,
}

fn pattern_byte(i: usize, seed: u8) -> u8 {
    ((i * 131 + (i >> 12) * 7 + seed as usize) & 0xff) as u8
}

const MARKER: &str = "ckpt pattern marker 0123456789";

/// Launches pattern.c (`exe`, default the built one) and reads its
/// addresses; waits for two ticks.
fn launch_pattern(c: &mut Computation, exe: Option<&Path>) -> Pattern {
    let stop = c.stop_file().display().to_string();
    let built = program("pattern");
    c.launch(exe.unwrap_or(&built), &[&stop]);
    let word = |c: &mut Computation, key: &str, n: usize| -> String {
        let l = c.wait_for_line(|l| l.starts_with(key), T);
        l.split_whitespace().nth(n).expect("a field").to_string()
    };
    let marker = hex(&word(c, "marker ", 1));
    let heap = c.wait_for_line(|l| l.starts_with("heap "), T);
    let stack = c.wait_for_line(|l| l.starts_with("stack "), T);
    let ticker = hex(&word(c, "ticker ", 1));
    let pair = |l: &str| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (hex(f[1]), f[2].parse().expect("a length"))
    };
    c.wait_lines(2, is_tick, T);
    Pattern {
        marker,
        heap: pair(&heap),
        stack: pair(&stack),
        ticker,
    }
}

fn region_at(img: &MappedImage, addr: u64) -> &Region {
    img.regions()
        .iter()
        .find(|r| r.start.0 <= addr && addr < r.end.0)
        .unwrap_or_else(|| panic!("no region holds {addr:#x}"))
}

fn extract(img: &Path, sel: &[&str], out: &Path) -> Vec<u8> {
    let mut a = vec!["extract", p(img)];
    a.extend_from_slice(sel);
    a.extend_from_slice(&["-o", p(out)]);
    ok(&image(&a, None), &format!("extract {sel:?}"));
    std::fs::read(out).unwrap()
}

/// `extract` by [heap], [stack], a library's name and a range gives the
/// bytes the program put there; the same from stdin.
#[test]
fn extract_gives_the_bytes_the_program_wrote() {
    let mut c = Computation::new("imgx");
    let pat = launch_pattern(&mut c, None);
    let img_path = c.checkpoint();
    let img = MappedImage::open(&img_path).unwrap();
    let out = c.dir.path().join("out.bin");

    let heap = region_at(&img, pat.heap.0);
    assert_eq!(heap.name, b"[heap]", "malloc'ed memory is in the heap");
    let got = extract(&img_path, &["--name", "[heap]"], &out);
    assert_eq!(got.len() as u64, heap.end.0 - heap.start.0);
    let off = (pat.heap.0 - heap.start.0) as usize;
    let want: Vec<u8> = (0..pat.heap.1).map(|i| pattern_byte(i, 0x5a)).collect();
    assert!(
        got[off..off + pat.heap.1] == want[..],
        "the heap pattern at {:#x}",
        pat.heap.0
    );
    let t = (pat.ticker - heap.start.0) as usize;
    let ticks = i64::from_le_bytes(got[t..t + 8].try_into().unwrap());
    assert!(ticks >= 2, "the ticker holds the tick count: {ticks}");

    let stack = region_at(&img, pat.stack.0);
    assert_eq!(stack.name, b"[stack]");
    let got = extract(&img_path, &["--name", "[stack]"], &out);
    assert_eq!(got.len() as u64, stack.end.0 - stack.start.0);
    let off = (pat.stack.0 - stack.start.0) as usize;
    let want: Vec<u8> = (0..pat.stack.1).map(|i| pattern_byte(i, 0xa5)).collect();
    assert!(got[off..off + pat.stack.1] == want[..], "the stack pattern");

    // The library: its regions in order; where the image stores no page
    // (code, read-only data, by reference), the bytes are the file's.
    let libc: Vec<&Region> = img
        .regions()
        .iter()
        .filter(|r| r.name.ends_with(b"/libc.so.6"))
        .collect();
    assert!(libc.len() >= 2, "libc is mapped");
    let got = extract(&img_path, &["--name", "libc.so.6"], &out);
    let total: u64 = libc.iter().map(|r| r.end.0 - r.start.0).sum();
    assert_eq!(got.len() as u64, total);
    let mut pos = 0usize;
    let mut compared = 0;
    for r in &libc {
        let len = (r.end.0 - r.start.0) as usize;
        let b = r.backing.as_ref().expect("a file region");
        let stored = img
            .chunks()
            .iter()
            .any(|c| img.regions()[c.meta.region as usize].start == r.start);
        if b.storage == FileStorage::ByReference && !stored {
            let f = std::fs::File::open(std::str::from_utf8(&b.file.path).unwrap()).unwrap();
            let mut want = vec![0u8; len];
            let n = f.read_at(&mut want, b.offset).unwrap();
            assert!(n > 0);
            assert!(
                got[pos..pos + len] == want[..],
                "libc at {:#x} (file offset {:#x}) is the file's bytes",
                r.start.0,
                b.offset
            );
            compared += 1;
        }
        pos += len;
    }
    assert!(compared >= 1, "libc's code is by reference");

    // A range across the marker and a range inside the heap pattern.
    let got = extract(
        &img_path,
        &[
            "--range",
            &format!("{:#x}-{:#x}", pat.marker, pat.marker + 64),
        ],
        &out,
    );
    assert_eq!(&got[..MARKER.len()], MARKER.as_bytes());
    assert!(got[MARKER.len()..].iter().all(|&b| b == 0));
    let (a, b) = (pat.heap.0 + 1000, pat.heap.0 + 9000);
    let range = format!("{a:x}-{b:x}");
    let got = extract(&img_path, &["--range", &range], &out);
    let want: Vec<u8> = (1000..9000).map(|i| pattern_byte(i, 0x5a)).collect();
    assert!(got == want, "the heap range");

    // The summary as JSON (the bytes to a file), and every region.
    let o = image(
        &[
            "extract",
            p(&img_path),
            "--name",
            "[heap]",
            "-o",
            p(&out),
            "--json",
        ],
        None,
    );
    ok(&o, "extract --json");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("extract --json");
    assert_eq!(j["schema"], "ckpt-extract/1");
    assert_eq!(j["bytes"], heap.end.0 - heap.start.0);
    assert_eq!(j["regions"][0]["name"], "[heap]");
    assert_eq!(j["regions"][0]["start"], heap.start.0);
    let o = image(
        &["extract", p(&img_path), "--name", "[heap]", "--json"],
        None,
    );
    assert!(
        !o.status.success(),
        "--json without -o: the bytes would mix with the JSON"
    );
    let dir = c.dir.path().join("all");
    let o = image(&["extract", p(&img_path), "--all", p(&dir), "--json"], None);
    ok(&o, "extract --all --json");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let regions = j["regions"].as_array().unwrap();
    assert_eq!(regions.len(), img.regions().len());
    assert_eq!(j["unknown"], 0, "every by-reference file is here: {j}");
    for (r, e) in img.regions().iter().zip(regions) {
        let f = e["file"].as_str().unwrap();
        assert_eq!(
            std::fs::metadata(f).unwrap().len(),
            r.end.0 - r.start.0,
            "{f}"
        );
    }
    let heap_file = regions
        .iter()
        .find(|e| e["name"] == "[heap]")
        .and_then(|e| e["file"].as_str())
        .unwrap();
    let got = std::fs::read(heap_file).unwrap();
    let off = (pat.heap.0 - heap.start.0) as usize;
    assert_eq!(
        got[off..off + 64],
        (0..64).map(|i| pattern_byte(i, 0x5a)).collect::<Vec<_>>()[..]
    );

    // The same from a stream.
    for sel in [vec!["--range", range.as_str()], vec!["--name", "[stack]"]] {
        let mut a = vec!["extract", "-"];
        a.extend_from_slice(&sel);
        let o = image(&a, Some(&img_path));
        ok(&o, "extract -");
        let mut b = vec!["extract", p(&img_path)];
        b.extend_from_slice(&sel);
        let want = image(&b, None).stdout;
        assert!(!want.is_empty());
        assert!(o.stdout == want, "extract - {sel:?} as from the file");
    }
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
}

/// gdb's output of `info threads` and `thread apply all bt`, the
/// backtrace of each thread by LWP.
fn gdb(exe: &Path, core: &Path, cmds: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch"]);
    for c in cmds {
        cmd.args(["-ex", c]);
    }
    let o = cmd
        .arg(exe)
        .arg(core)
        .output()
        .expect("gdb (scripts/test.sh installs it)");
    text(&o)
}

/// The `Thread N (... (LWP tid)):` sections of `thread apply all bt`.
fn backtraces(out: &str) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = Vec::new();
    for line in out.lines() {
        if line.starts_with("Thread ") && line.ends_with("):") {
            let tid = line
                .split("LWP ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(-1);
            v.push((tid, String::new()));
        } else if let Some(last) = v.last_mut() {
            if line.starts_with('#') {
                last.1.push_str(line);
                last.1.push('\n');
            }
        }
    }
    v
}

/// The lines of `info threads` (`* 1    Thread 0x... (LWP 7892) ...`).
/// Threads gdb's `info threads` lists: "(LWP n)" for the program's
/// threads, which libthread_db knows, plain "LWP n" for the writer's.
fn info_threads(out: &str) -> usize {
    out.lines()
        .filter(|l| {
            l.contains("LWP ")
                && l.trim_start()
                    .starts_with(|c: char| c == '*' || c.is_ascii_digit())
        })
        .count()
}

fn consumed(l: &str) -> i64 {
    l.split("consumed=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count in {l}"))
}

/// `core` of threads.c's image: gdb lists every thread of the image, each
/// backtrace shows the program's (or, for the writer's threads, the
/// writer's) functions, and `p` reads the global the program prints.
#[test]
fn gdb_reads_the_core_of_a_multithreaded_program() {
    let mut c = Computation::new("imgcore");
    let stop = c.stop_file().display().to_string();
    let exe = program("threads");
    c.launch(&exe, &[&stop]);
    let before = c.wait_lines(3, |l| l.starts_with("tick "), T);
    let img_path = c.checkpoint();
    let after = c.wait_lines(2, |l| l.starts_with("tick "), T);
    let (lo, hi) = (consumed(&before[2]), consumed(&after[1]));
    c.kill();

    let img = MappedImage::open(&img_path).unwrap();
    let core = c.dir.path().join("threads.core");
    ok(
        &image(&["core", p(&img_path), "-o", p(&core)], None),
        "image core",
    );
    let out = gdb(
        &exe,
        &core,
        &["info threads", "thread apply all bt", "p consumed"],
    );
    assert_eq!(
        info_threads(&out),
        img.threads().len(),
        "info threads lists the image's {} threads:\n{out}",
        img.threads().len()
    );
    let bts = backtraces(&out);
    assert_eq!(bts.len(), img.threads().len(), "{out}");
    let program_fns = [
        "main",
        "producer",
        "middle",
        "consumer",
        "mutex_waiter",
        "cond_waiter",
        "sleeper",
        "reader",
        "tls_checker",
    ];
    let mut program_threads = 0;
    for t in img.threads() {
        let bt = &bts
            .iter()
            .find(|(tid, _)| *tid == t.tid.0)
            .unwrap_or_else(|| panic!("no backtrace of LWP {}:\n{out}", t.tid.0))
            .1;
        if t.name.starts_with("ckpt-") {
            assert!(
                bt.contains("ckpt_writer"),
                "writer thread {}:\n{bt}",
                t.tid.0
            );
        } else {
            assert!(
                program_fns.iter().any(|f| bt.contains(&format!(" {f} ("))),
                "thread {} shows a function of threads.c:\n{bt}",
                t.tid.0
            );
            program_threads += 1;
        }
    }
    assert_eq!(program_threads, 9, "main and its 8 threads:\n{out}");
    let value: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("$1 = "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("p consumed:\n{out}"));
    assert!(
        lo <= value && value <= hi,
        "consumed {value} between the ticks around the checkpoint ({lo}..{hi})"
    );

    // What it wrote, as JSON.
    let core3 = c.dir.path().join("threads-json.core");
    let o = image(&["core", p(&img_path), "-o", p(&core3), "--json"], None);
    ok(&o, "image core --json");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("core --json");
    assert_eq!(j["schema"], "ckpt-core/1");
    let mut tids: Vec<i64> = j["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    tids.sort();
    let mut want: Vec<i64> = img.threads().iter().map(|t| t.tid.0 as i64).collect();
    want.sort();
    assert_eq!(tids, want);
    assert_eq!(j["missing_files"].as_array().map(Vec::len), Some(0), "{j}");

    // The same core from a stream.
    let core2 = c.dir.path().join("threads-stdin.core");
    ok(
        &image(&["core", "-", "-o", p(&core2)], Some(&img_path)),
        "image core -",
    );
    assert!(
        std::fs::read(&core).unwrap() == std::fs::read(&core2).unwrap(),
        "core from - is the same file"
    );
}

/// `core` of pattern.c's image: `x` reads the marker string and the heap
/// pattern at the addresses the program printed; the second thread is in
/// pattern_worker, with the ymm15 it set.
#[test]
fn gdb_x_reads_the_memory_the_program_wrote() {
    let mut c = Computation::new("imgcorex");
    let pat = launch_pattern(&mut c, None);
    let img_path = c.checkpoint();
    c.kill();
    let core = c.dir.path().join("pattern.core");
    ok(
        &image(&["core", p(&img_path), "-o", p(&core)], None),
        "image core",
    );
    let out = gdb(
        &program("pattern"),
        &core,
        &[
            &format!("x/s {:#x}", pat.marker),
            &format!("x/8xb {:#x}", pat.heap.0 + 4096),
            &format!("x/4xb {:#x}", pat.stack.0 + 100),
            &format!("x/dg {:#x}", pat.ticker),
            "thread apply all bt",
            "thread apply all p/x $ymm15.v4_int64",
        ],
    );
    assert!(
        out.contains(&format!("\"{MARKER}\"")),
        "x/s reads the marker:\n{out}"
    );
    let bytes = |from: usize, n: usize, seed: u8| -> String {
        (from..from + n)
            .map(|i| format!("0x{:02x}", pattern_byte(i, seed)))
            .collect::<Vec<_>>()
            .join("\t")
    };
    assert!(
        out.contains(&bytes(4096, 8, 0x5a)),
        "the heap pattern:\n{out}"
    );
    assert!(
        out.contains(&bytes(100, 4, 0xa5)),
        "the stack pattern:\n{out}"
    );
    let ticks: i64 = out
        .lines()
        .find(|l| l.starts_with(&format!("{:#x}", pat.ticker)))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("x/dg ticker:\n{out}"));
    assert!(ticks >= 2, "the ticker: {ticks}");
    assert!(out.contains(" pattern_worker ("), "{out}");
    // The AVX state (NT_X86_XSTATE): pattern_worker keeps a known ymm15.
    let avx = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .split_whitespace()
        .any(|f| f == "avx");
    if avx {
        assert!(
            out.contains(
                "{0x1122334455667788, 0x102030405060708, 0x99aabbccddeeff00, 0xf0e0d0c0b0a0908}"
            ),
            "gdb reads ymm15 of pattern_worker:\n{out}"
        );
    }
    assert!(out.contains(" main ("), "{out}");
}

/// `diff` of two generations of one running program: the heap page the
/// program rewrites each tick changed and the pattern did not; the JSON
/// says the same as the text; an image against itself is identical (exit
/// 0), the generations differ (exit 1); B from a stream gives the same.
#[test]
fn diff_of_two_generations() {
    let mut c = Computation::new("imgdiff");
    let pat = launch_pattern(&mut c, None);
    let first = c.checkpoint();
    let a = c.dir.path().join("gen1.ckpt");
    std::fs::copy(&first, &a).unwrap();
    c.wait_lines(3, is_tick, T);
    let b = c.checkpoint();
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");

    let same = image(&["diff", p(&a), p(&a)], None);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(String::from_utf8_lossy(&same.stdout).contains("identical"));
    let same_json = image(&["diff", "--json", p(&a), p(&a)], None);
    assert_eq!(same_json.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&same_json.stdout).unwrap();
    assert_eq!(j["identical"], true);
    assert_eq!(j["pages"].as_array().unwrap().len(), 0);

    let o = image(&["diff", p(&a), p(&b)], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let human = String::from_utf8_lossy(&o.stdout).into_owned();
    let oj = image(&["diff", "--json", p(&a), p(&b)], None);
    assert_eq!(oj.status.code(), Some(1), "{}", text(&oj));
    let j: serde_json::Value = serde_json::from_slice(&oj.stdout).expect("diff --json");
    assert_eq!(j["schema"], "ckpt-diff/1");
    assert_eq!(j["identical"], false);
    let gen = j["header"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "generation")
        .unwrap_or_else(|| panic!("generation changed: {j}"));
    assert_eq!(
        (gen["a"].as_str(), gen["b"].as_str()),
        (Some("1"), Some("2"))
    );
    assert_eq!(j["threads_added"].as_array().unwrap().len(), 0, "{j}");
    assert_eq!(j["threads_removed"].as_array().unwrap().len(), 0, "{j}");

    let img = MappedImage::open(&a).unwrap();
    let heap = region_at(&img, pat.heap.0);
    let pages = j["pages"].as_array().unwrap();
    let hp = pages
        .iter()
        .find(|p| p["start"] == heap.start.0)
        .unwrap_or_else(|| panic!("the heap changed: {j}"));
    assert_eq!(hp["name"], "[heap]");
    let changed = hp["changed_pages"].as_u64().unwrap();
    assert!(changed >= 1, "the ticker's page changed: {hp}");
    // The pattern (12 pages) did not: the ticker, stdio's buffer and
    // malloc's bookkeeping are all that moves in the heap.
    assert!(changed <= 4, "only a few heap pages change: {hp}");
    let first_changed = hp["first"].as_u64().unwrap();
    assert!(
        first_changed >= pat.heap.0 + pat.heap.1 as u64 || first_changed < pat.heap.0 - 4096,
        "no page of the pattern changed (first change at {first_changed:#x}): {hp}"
    );
    assert!(hp["changed_bytes"].as_u64().unwrap() <= changed * 4096);
    // Nothing absurd: a sleeping program changes few pages.
    let total: u64 = pages
        .iter()
        .map(|p| {
            p["changed_pages"].as_u64().unwrap()
                + p["added_pages"].as_u64().unwrap()
                + p["removed_pages"].as_u64().unwrap()
        })
        .sum();
    assert!(total < 200, "{total} pages differ: {j}");
    for p in pages {
        let r = region_at(&img, p["start"].as_u64().unwrap());
        let f = p["first"].as_u64().unwrap();
        assert!(
            r.start.0 <= f && f < r.end.0,
            "first change inside its region: {p}"
        );
        // The text says the same.
        let line = format!(
            "{:#x} {}: {} changed ({} bytes), {} added, {} removed",
            p["start"].as_u64().unwrap(),
            p["name"].as_str().unwrap(),
            p["changed_pages"],
            p["changed_bytes"],
            p["added_pages"],
            p["removed_pages"]
        );
        assert!(human.contains(line.trim_end()), "{line} in\n{human}");
    }

    // B from a stream.
    let os = image(&["diff", "--json", p(&a), "-"], Some(&b));
    assert_eq!(os.status.code(), Some(1), "{}", text(&os));
    let mut js: serde_json::Value = serde_json::from_slice(&os.stdout).unwrap();
    js["b"] = j["b"].clone();
    assert_eq!(js, j, "diff with - as B");
}

fn repack(input: &Path, output: &Path, opts: &[&str]) -> serde_json::Value {
    let mut a = vec!["repack", "--json", p(input), p(output)];
    a.extend_from_slice(opts);
    let o = image(&a, None);
    ok(&o, &format!("repack {opts:?}"));
    serde_json::from_slice(&o.stdout).expect("repack --json")
}

/// Repack the image with one set of options, then: it validates, its
/// memory is the input's, and it restarts (the program checks its
/// patterns and ticker, then gives its verdict).
fn repack_and_restart(
    c: &mut Computation,
    input: &Path,
    name: &str,
    opts: &[&str],
) -> (PathBuf, serde_json::Value) {
    let out = c.dir.path().join(format!("{name}.ckpt"));
    let sum = repack(input, &out, opts);
    assert_eq!(sum["schema"], "ckpt-repack/1");
    ok(&image(&["validate", p(&out)], None), "validate");
    let d = image(&["diff", "--json", p(input), p(&out)], None);
    let j: serde_json::Value =
        serde_json::from_slice(&d.stdout).unwrap_or_else(|_| panic!("diff {opts:?}: {}", text(&d)));
    assert_eq!(
        j["pages"].as_array().map(Vec::len),
        Some(0),
        "repack {opts:?} keeps the memory: {j}"
    );
    let header: Vec<&serde_json::Value> = j["header"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["field"] != "format")
        .collect();
    assert!(header.is_empty(), "repack {opts:?} keeps the header: {j}");
    for k in [
        "process",
        "threads_changed",
        "fds_changed",
        "regions_added",
        "regions_removed",
    ] {
        assert_eq!(
            j[k].as_array().map(Vec::len),
            Some(0),
            "repack {opts:?}: {k} {j}"
        );
    }
    for r in j["regions_changed"].as_array().unwrap() {
        let f = &r["fields"];
        assert!(
            f.as_array()
                .unwrap()
                .iter()
                .all(|f| f["field"] == "backing.storage"),
            "repack {opts:?} changes only the storage of a file region: {r}"
        );
    }
    c.restart(&out);
    c.wait_lines(2, is_tick, T);
    let v = c.verdict(T);
    assert!(
        v.starts_with("VERDICT OK"),
        "restart after repack {opts:?}: {v}"
    );
    assert_eq!(c.wait_exit(T), Some(0));
    (out, sum)
}

/// Every repack option on a real image: the output validates, `diff`
/// finds no memory difference, and the program restarts from it.
#[test]
fn repacked_images_restart() {
    let mut c = Computation::new("imgrepack");
    launch_pattern(&mut c, None);
    let img = c.checkpoint();
    c.kill();
    let input = c.dir.path().join("in.ckpt");
    std::fs::copy(&img, &input).unwrap();
    let (raw, _) = repack_and_restart(&mut c, &input, "raw", &["--compress", "none"]);
    let (z1, _) = repack_and_restart(&mut c, &input, "zstd1", &["--compress", "zstd:1"]);
    let (z19, _) = repack_and_restart(&mut c, &input, "zstd19", &["--compress", "zstd:19"]);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&z19) < size(&raw), "zstd is smaller than raw");
    assert!(size(&z1) < size(&raw));
    repack_and_restart(&mut c, &input, "chunk1", &["--chunk-pages", "1"]);
    repack_and_restart(
        &mut c,
        &input,
        "chunk256",
        &["--chunk-pages", "256", "--compress", "zstd"],
    );

    // Into the newest format version this build writes, and back.
    let newest = format!("1.{}", ckpt_format::FORMAT_MINOR);
    let from = MappedImage::open(&input).unwrap().version();
    let from = format!("{}.{}", from.0, from.1);
    let (newer, sum) = repack_and_restart(&mut c, &input, "newest", &["--format-version", &newest]);
    assert_eq!(
        MappedImage::open(&newer).unwrap().version(),
        (1, ckpt_format::FORMAT_MINOR)
    );
    assert_eq!(
        sum["format"],
        format!("{from} -> {newest}").as_str(),
        "{sum}"
    );
    let d = image(&["diff", p(&input), p(&newer)], None);
    assert!(
        String::from_utf8_lossy(&d.stdout).contains(&format!("format: {from} -> {newest}")),
        "{}",
        text(&d)
    );
    let (older, _) = repack_and_restart(&mut c, &newer, "oldest", &["--format-version", "1.0"]);
    assert_eq!(MappedImage::open(&older).unwrap().version(), (1, 0));

    // Every file's pages in the image, then the embedded ones (the
    // writer's own library) back to references, and back again.
    let (embedded, sum) = repack_and_restart(&mut c, &input, "embedded", &["--embed-files"]);
    assert!(sum["pages_embedded"].as_u64().unwrap() > 100, "{sum}");
    let e = MappedImage::open(&embedded).unwrap();
    assert!(
        e.regions()
            .iter()
            .filter_map(|r| r.backing.as_ref())
            .all(|b| b.storage == FileStorage::Embedded),
        "every file region embedded"
    );
    assert!(
        size(&embedded) > size(&input),
        "embedding makes the image larger"
    );
    let (by_ref, sum) = repack_and_restart(&mut c, &embedded, "byref", &["--by-reference"]);
    assert!(sum["pages_referenced"].as_u64().unwrap() > 100, "{sum}");
    let r = MappedImage::open(&by_ref).unwrap();
    let warnings = sum["warnings"].to_string();
    let mut kept = 0;
    for b in r
        .regions()
        .iter()
        .filter(|r| !r.shared)
        .filter_map(|r| r.backing.as_ref())
    {
        let path = String::from_utf8_lossy(&b.file.path).into_owned();
        if b.storage != FileStorage::ByReference {
            // Only a file rebuilt since the checkpoint (the writer's
            // library, by a concurrent build) stays embedded, and says so.
            assert!(
                warnings.contains(&format!("{path} stays embedded")),
                "{path}: {sum}"
            );
            kept += 1;
        }
    }
    if kept == 0 {
        assert!(
            size(&by_ref) < size(&input),
            "by reference is smaller than the writer's image (which embeds its own library)"
        );
    }
    repack_and_restart(
        &mut c,
        &by_ref,
        "embedded-again",
        &["--embed-files", "--compress", "zstd"],
    );

    // From a stream.
    let out = c.dir.path().join("stdin.ckpt");
    let o = image(
        &["repack", "-", p(&out), "--compress", "zstd:3"],
        Some(&input),
    );
    ok(&o, "repack -");
    ok(&image(&["validate", p(&out)], None), "validate");
    let d = image(&["diff", p(&input), p(&out)], None);
    assert!(
        !String::from_utf8_lossy(&d.stdout).contains("pages:"),
        "{}",
        text(&d)
    );
}

/// `check-host` on a real image: restartable here (exit 0); once the
/// program's file changed, not restartable (exit 1) and the verdict names
/// the file; from a stream too.
#[test]
fn check_host_names_a_changed_program_file() {
    let mut c = Computation::new("imgcheck");
    let bin = c.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("pattern");
    std::fs::copy(program("pattern"), &exe).unwrap();
    launch_pattern(&mut c, Some(&exe));
    let img = c.checkpoint();
    c.kill();

    let o = image(&["check-host", p(&img)], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verdict: restartable here"), "{out}");
    let file_line = format!("file {}: same file", exe.display());
    assert_eq!(
        out.matches(&file_line).count(),
        1,
        "one check per file: {out}"
    );
    let o = image(&["check-host", "--json", "-"], Some(&img));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["restartable"], true, "{j}");

    // The program's file is rebuilt in place (same path, other bytes).
    let mut bytes = std::fs::read(&exe).unwrap();
    bytes.extend_from_slice(b"\0changed");
    std::fs::remove_file(&exe).unwrap();
    let mut f = std::fs::File::create(&exe).unwrap();
    f.write_all(&bytes).unwrap();
    drop(f);

    let o = image(&["check-host", p(&img)], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let verdict = out
        .lines()
        .find(|l| l.starts_with("verdict:"))
        .unwrap_or_else(|| panic!("a verdict: {out}"));
    assert!(verdict.contains("NOT restartable"), "{out}");
    assert!(
        verdict.contains(&exe.display().to_string()),
        "the verdict names the file: {out}"
    );
    let o = image(&["check-host", "--json", "-"], Some(&img));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["restartable"], false);
    let name = format!("file {}", exe.display());
    let failed: Vec<&serde_json::Value> = j["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|c| c["name"] == name.as_str()),
        "{j}"
    );

    // Gone altogether.
    std::fs::remove_file(&exe).unwrap();
    let o = image(&["check-host", p(&img)], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No such file"),
        "{}",
        text(&o)
    );
}

/// `validate` and `inspect` read a real image from a stream as from the file.
#[test]
fn validate_and_inspect_read_a_stream() {
    let mut c = Computation::new("imgstdin");
    launch_pattern(&mut c, None);
    let img = c.checkpoint();
    c.kill();
    let o = image(&["validate", "-"], Some(&img));
    ok(&o, "validate -");
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("-: valid"),
        "{}",
        text(&o)
    );
    let from_file = image(&["inspect", "--json", p(&img)], None);
    ok(&from_file, "inspect");
    let from_stdin = image(&["inspect", "--json", "-"], Some(&img));
    ok(&from_stdin, "inspect -");
    let mut a: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&from_stdin.stdout).unwrap();
    a["image"] = b["image"].clone();
    assert_eq!(a, b);
}

/// `ckpt image ...` on every image of a test program's computation: each
/// tool succeeds and agrees with the others (validate, inspect, diff of
/// an image with itself and with its repacks, check-host, core read by
/// gdb, extract of every region).
fn every_tool_on(prog: &str, args: &[&str], processes: usize) -> Vec<(u16, u16)> {
    let mut c = Computation::new(&format!("imgall-{prog}"));
    let stop = c.stop_file().display().to_string();
    let args: Vec<String> = args
        .iter()
        .map(|a| match *a {
            "STOP" => stop.clone(),
            "DIR" => c.dir.path().display().to_string(),
            sub if sub.starts_with("DIR/") => {
                let p = c.dir.path().join(&sub[4..]);
                if !sub.ends_with("fifo") {
                    std::fs::create_dir_all(&p).unwrap();
                }
                p.display().to_string()
            }
            other => other.to_string(),
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exe = program(prog);
    c.launch_tree(&exe, &args, processes);
    c.wait_lines(2, |_| true, T);
    let images = c.checkpoint_all(processes);
    c.kill();
    let mut versions = Vec::new();
    for img_path in &images {
        let img = MappedImage::open(img_path).unwrap();
        versions.push(img.version());
        let what = format!("{prog} {}", img_path.display());
        ok(&image(&["validate", p(img_path)], None), &what);
        ok(&image(&["inspect", p(img_path)], None), &what);
        let o = image(&["inspect", "--json", p(img_path)], None);
        ok(&o, &what);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["threads"].as_array().unwrap().len(), img.threads().len());
        let same = image(&["diff", p(img_path), p(img_path)], None);
        assert_eq!(same.status.code(), Some(0), "{what}: {}", text(&same));

        // Repacked: other chunks and compression, the same memory.
        let dir = c.dir.path();
        let out = dir.join("repacked.ckpt");
        repack(
            img_path,
            &out,
            &["--compress", "zstd:1", "--chunk-pages", "16"],
        );
        let d = image(&["diff", p(img_path), p(&out)], None);
        assert_eq!(d.status.code(), Some(0), "{what}: repack: {}", text(&d));
        // Files embedded, then referenced again: the storage changes, the memory does not.
        let emb = dir.join("embedded.ckpt");
        repack(img_path, &emb, &["--embed-files"]);
        let refd = dir.join("referenced.ckpt");
        repack(&emb, &refd, &["--by-reference"]);
        for o in [&emb, &refd] {
            ok(&image(&["validate", p(o)], None), &what);
            let d = image(&["diff", "--json", p(img_path), p(o)], None);
            let j: serde_json::Value = serde_json::from_slice(&d.stdout)
                .unwrap_or_else(|_| panic!("{what}: {}", text(&d)));
            assert_eq!(j["pages"].as_array().map(Vec::len), Some(0), "{what}: {j}");
            assert_eq!(
                j["warnings"].as_array().map(Vec::len),
                Some(0),
                "{what}: {j}"
            );
        }

        let ch = image(&["check-host", p(img_path)], None);
        assert_eq!(ch.status.code(), Some(0), "{what}: {}", text(&ch));

        let core = dir.join("image.core");
        ok(&image(&["core", p(img_path), "-o", p(&core)], None), &what);
        let out = gdb(&exe, &core, &["info threads"]);
        assert_eq!(info_threads(&out), img.threads().len(), "{what}:\n{out}");

        let all = dir.join("regions");
        let _ = std::fs::remove_dir_all(&all);
        let o = image(&["extract", p(img_path), "--all", p(&all), "--json"], None);
        ok(&o, &what);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["regions"].as_array().unwrap().len(), img.regions().len());
        assert_eq!(j["unknown"], 0, "{what}: {j}");
        let o = image(&["extract", "-", "--name", "[stack]"], Some(img_path));
        ok(&o, &what);
        let stack = img.regions().iter().find(|r| r.name == b"[stack]").unwrap();
        assert_eq!(o.stdout.len() as u64, stack.end.0 - stack.start.0);
    }
    versions
}

#[test]
fn every_tool_on_counter() {
    every_tool_on("counter", &["STOP"], 1);
}

#[test]
fn every_tool_on_fdkinds() {
    every_tool_on("fdkinds", &["STOP", "eventfd,timerfd,signalfd,epoll"], 1);
}

#[test]
fn every_tool_on_files() {
    every_tool_on("files", &["STOP", "DIR/files"], 1);
}

#[test]
fn every_tool_on_pipes() {
    every_tool_on("pipes", &["STOP", "DIR/fifo"], 1);
}

#[test]
fn every_tool_on_procstate() {
    every_tool_on("procstate", &["STOP", "DIR"], 1);
}

#[test]
fn every_tool_on_signals_and_timers() {
    every_tool_on("signals", &["STOP"], 1);
    every_tool_on("sigblock", &["STOP"], 1);
    every_tool_on("timers", &["STOP"], 1);
}

#[test]
fn every_tool_on_vdso_rseq_and_inotify() {
    every_tool_on("vdso_rseq", &["STOP"], 1);
    every_tool_on("inotify", &["STOP", "DIR/watched"], 1);
}

#[test]
fn every_tool_on_process_trees() {
    let v = every_tool_on("zombie", &["STOP"], 1);
    assert_eq!(v, vec![(1, 2)], "zombies are a 1.2 image");
    every_tool_on("forktree", &["STOP"], 4);
    every_tool_on("pipeline", &["STOP"], 3);
    every_tool_on("ofd", &["DIR", "STOP"], 2);
}

#[test]
fn every_tool_on_shared_memory() {
    // Format 1.3 images (SHARED_MEMORY) of five processes.
    let v = every_tool_on("shmtree", &["STOP"], 5);
    assert!(v.contains(&(1, 3)), "{v:?}");
}
