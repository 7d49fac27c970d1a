//! tests/programs/spawn.c: children made by vfork, posix_spawn, system,
//! popen, a raw clone(SIGCHLD) and an exec chain (sh → sh → program),
//! every one of them, and the shells in between, under checkpoint control:
//! launch → `ckpt command l` lists all nine → checkpoint → kill → restart
//! of all the images → checkpoint → kill → restart from the manifest →
//! verdict. After each restart every child ticks again with the pid and
//! parent it had, the popen child's lines still reach the parent through
//! its pipe, and at the end the parent reaps every child (waitpid, system,
//! pclose) with the exit code it chose. Without the writer's clone
//! interposition the raw clone's child never connects (eight, not nine).
//! Also as the unprivileged user nobody.

use ckpt_tests::{program, Computation};
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// The parent, six children and the two shells of system and popen.
const PROCESSES: usize = 9;

const ROLES: [&str; 6] = ["vfork", "posix_spawn", "system", "clone", "chain", "parent"];

/// `tick <role> pid=<pid> ...` → (role, pid).
fn tick(line: &str) -> Option<(String, i32)> {
    let rest = line.strip_prefix("tick ")?;
    let mut w = rest.split_whitespace();
    let role = w.next()?.to_string();
    let pid = w.next()?.strip_prefix("pid=")?.parse().ok()?;
    Some((role, pid))
}

/// Waits until every role ticked and the popen child's lines arrived
/// through the pipe twice; returns each role's pid.
fn all_tick(c: &mut Computation) -> BTreeMap<String, i32> {
    let mut pids = BTreeMap::new();
    let mut popen = 0;
    while pids.len() < ROLES.len() || popen < 2 {
        let line = c.wait_for_line(|l| tick(l).is_some() || l.starts_with("popen got="), T);
        match tick(&line) {
            Some((role, pid)) => {
                assert!(ROLES.contains(&role.as_str()), "{line}");
                pids.insert(role, pid);
            }
            None => popen += 1,
        }
    }
    pids
}

fn story(mut c: Computation) {
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("spawn"), &[&stop], PROCESSES);
    let before = all_tick(&mut c);

    let l = c.command(&["l"]);
    let listing = String::from_utf8_lossy(&l.stdout).into_owned();
    assert!(l.status.success(), "{listing}");
    for (role, pid) in &before {
        assert!(
            listing.contains(&format!("spawn[{pid}]")),
            "{role} {pid} is not listed:\n{listing}"
        );
    }
    assert_eq!(listing.matches("sh[").count(), 2, "{listing}");

    c.tree_story(PROCESSES, T, |c, step| {
        let now = all_tick(c);
        if step.is_restart() {
            assert_eq!(now, before, "same pids after {step}");
        }
    });
    c.verdict_ok(T);
}

#[test]
fn children_of_every_kind_are_checkpointed_with_their_parent() {
    story(Computation::new("spawn"));
}

#[test]
fn children_of_every_kind_as_an_unprivileged_user() {
    if let Some(c) = ckpt_tests::as_nobody("spawn-nobody") {
        story(c);
    }
}

/// tests/programs/static_child.c built with `cc FLAGS`, as `static_child`.
fn child_program(flags: &[&str]) -> (ckpt_tests::TempDir, std::path::PathBuf) {
    let dir = ckpt_tests::TempDir::new("static-child");
    let out = dir.path().join("static_child");
    let src = ckpt_tests::root().join("tests/programs/static_child.c");
    let st = std::process::Command::new("cc")
        .args(flags)
        .args(["-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(st.success(), "cc {flags:?} failed (libc6-dev has libc.a)");
    let _ = std::process::Command::new("chmod")
        .args(["a+rx"])
        .arg(dir.path())
        .status();
    (dir, out)
}

/// A child that cannot carry the writer (fork + execv of `child`): the
/// exec'ing child tells the coordinator before it goes, so `ckpt command
/// l` and `s` name it with the reason (`why`) while the parent goes on
/// being checkpointed alone; the checkpoint says so in the coordinator's
/// log and the manifest; after each restart the parent's waitpid() finds
/// the child killed by SIGKILL (its image records it so), not ECHILD, and
/// the listing no longer shows it.
fn outside_child_story(tag: &str, mode: &str, child: Option<&std::path::Path>, why: &str) {
    let mut c = Computation::new(tag);
    let stop = c.stop_file().display().to_string();
    let child_s = child.map(|p| p.display().to_string());
    let mut args = vec![stop.as_str(), mode];
    args.extend(child_s.as_deref());
    c.launch_tree(&program("spawn"), &args, 1);
    let started = c.wait_for_line(|l| l.starts_with("started static child pid="), T);
    let pid: i32 = started.rsplit('=').next().unwrap().parse().unwrap();
    c.wait_for_line(|l| l.starts_with("tick static "), T);
    c.wait_for_line(|l| l.starts_with("tick parent "), T);

    let outside = |c: &Computation| {
        let l = String::from_utf8_lossy(&c.command(&["l"]).stdout).into_owned();
        let s = String::from_utf8_lossy(&c.command(&["s"]).stdout).into_owned();
        (l, s)
    };
    // Reported at its exec; a clone nobody saw, at the first checkpoint.
    let name = if child.is_some() {
        "static_child"
    } else {
        "spawn"
    };
    let line = format!("{name}[{pid}]");
    let listed = |c: &Computation| {
        let (l, s) = outside(c);
        assert!(
            l.lines().any(|x| x.contains(&line)
                && x.contains("OUTSIDE CHECKPOINT CONTROL")
                && x.contains(why)),
            "{l}"
        );
        assert!(
            s.contains("outside checkpoint control: ") && s.contains(&line),
            "{s}"
        );
    };
    if child.is_some() {
        listed(&c);
    }

    let first = c.checkpoint_all(1);
    listed(&c);
    let log =
        std::fs::read_to_string(c.tmpdir.join(format!("ckpt-coordinator-{}.log", c.port))).unwrap();
    assert!(
        log.contains(&format!("not under checkpoint control: {line}")),
        "{log}"
    );
    let manifest = std::fs::read_to_string(c.ckpt_dir.join("ckpt_manifest.json")).unwrap();
    assert!(
        manifest.contains("outside_checkpoint_control"),
        "{manifest}"
    );
    c.wait_lines(2, |l| l.starts_with("tick parent "), T);
    c.kill();

    c.restart(&first[0]);
    c.wait_lines(2, |l| l.starts_with("tick parent "), T);
    let (l, _) = outside(&c);
    assert!(!l.contains(&line), "not listed after the restart: {l}");
    let second = c.checkpoint();
    c.wait_lines(1, |l| l.starts_with("tick parent "), T);
    c.kill();
    c.restart(&second);
    c.wait_lines(2, |l| l.starts_with("tick parent "), T);
    let v = c.verdict(T);
    assert_eq!(
        v,
        "VERDICT OK static child killed by signal 9",
        "{}",
        c.diagnostics()
    );
    assert_eq!(c.wait_exit(T), Some(0));
}

/// A static child (`cc -static`): no dynamic loader to preload the writer.
#[test]
fn a_static_child_is_reported_and_the_rest_checkpoints() {
    let (_dir, child) = child_program(&["-static"]);
    outside_child_story("spawn-static", "static", Some(&child), "static binary");
}

/// A static child started by execl and one by execlp (through PATH):
/// variadic, and glibc's call its internal execve, so the writer defines
/// them itself (writer/src/execl.c); each is reported before it runs
/// like the execv one (listed before the first checkpoint).
#[test]
fn a_static_child_started_by_execl_or_execlp_is_reported_at_its_exec() {
    let (_dir, child) = child_program(&["-static"]);
    for mode in ["execl", "execlp"] {
        let tag = format!("spawn-{mode}");
        outside_child_story(&tag, mode, Some(&child), "static binary");
    }
}

/// A setuid child (a dynamic program owned by nobody, mode 4755, run by
/// root): the loader ignores LD_PRELOAD in a secure execution.
#[test]
fn a_setuid_child_is_reported_and_the_rest_checkpoints() {
    if !ckpt_tests::is_root() {
        eprintln!("skipped: needs root to make a setuid program of another user");
        return;
    }
    let (_dir, child) = child_program(&[]);
    for args in [&["65534:65534"][..], &["4755"][..]] {
        let cmd = if args[0].contains(':') {
            "chown"
        } else {
            "chmod"
        };
        let st = std::process::Command::new(cmd)
            .args(args)
            .arg(&child)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd} {args:?}");
    }
    outside_child_story(
        "spawn-setuid",
        "static",
        Some(&child),
        "setuid/setgid binary",
    );
}

/// A child exec'd with an empty environment (execve with no LD_PRELOAD):
/// the known hole of a preload, reported like the others.
#[test]
fn a_child_exec_d_without_the_preload_is_reported() {
    let (_dir, child) = child_program(&[]);
    outside_child_story("spawn-noenv", "noenv", Some(&child), "no LD_PRELOAD");
}

/// A child made by clone(SIGCHLD) through an inline syscall instruction:
/// nothing interposed sees it, so it is a copy of the writer without a
/// checkpoint thread. Found at the checkpoint (the writer is in its
/// memory, its thread is not), reported, and handled like the others.
#[test]
fn a_child_of_an_unseen_clone_is_reported() {
    outside_child_story(
        "spawn-asmclone",
        "asmclone",
        None,
        "a clone the writer did not see",
    );
}

/// tests/programs/execafter.c execs in the moment after a checkpoint let
/// its threads go, while its writer still syncs, renames and reports the
/// image (it watches for the image's temporary name). The exec must wait
/// for that: the checkpoint succeeds with the image in place, and a
/// restart from it brings back the program before its exec. (Without the
/// wait the exec ended the checkpoint thread first: "disconnected during
/// the checkpoint", no image.)
#[test]
fn an_exec_right_after_a_checkpoint_waits_for_its_image() {
    let mut c = Computation::new("execafter");
    let stop = c.stop_file().display().to_string();
    let dir = c.ckpt_dir.display().to_string();
    c.launch(&program("execafter"), &[&stop, &dir]);
    c.wait_for_line(|l| l == "spinning", T);
    let image = c.checkpoint();
    assert!(image.exists());
    c.wait_for_line(|l| l == "exec'd while an image was being finished", T);
    c.wait_for_line(|l| l.starts_with("tick after "), T);
    c.kill();
    c.restart(&image);
    // Back before the exec: it spins, and execs again at the next image.
    c.wait_for_line(|l| l == "spinning", T);
    c.checkpoint();
    c.wait_for_line(|l| l == "exec'd while an image was being finished", T);
    let v = c.verdict(T);
    assert_eq!(v, "VERDICT OK", "{}", c.diagnostics());
}
