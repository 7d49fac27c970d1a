//! tests/programs/forktree.c (a parent, two children, a grandchild)
//! through launch → checkpoint of every process → kill all → restart of
//! all the images together → checkpoint → kill → restart from the
//! manifest → verdict: every process keeps its pid and its parent, and
//! the parent reaps its children with their exit statuses.

use ckpt_tests::{program, Computation};
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const ROLES: [&str; 4] = ["parent", "child1", "child2", "grandchild"];

/// A parsed `tick <role> pid=<pid> ppid=<ppid> n=<n>` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    pid: i32,
    ppid: i32,
}

fn parse_tick(line: &str) -> Option<(String, Ids, u64)> {
    let mut w = line.split_whitespace();
    if w.next()? != "tick" {
        return None;
    }
    let role = w.next()?.to_string();
    let mut field = |name: &str| -> Option<i64> { w.next()?.strip_prefix(name)?.parse().ok() };
    let pid = field("pid=")? as i32;
    let ppid = field("ppid=")? as i32;
    let n = field("n=")? as u64;
    Some((role, Ids { pid, ppid }, n))
}

/// Waits until every role ticked at least once more; returns their ids.
fn every_role_ticks(c: &mut Computation) -> BTreeMap<String, Ids> {
    let mut seen = BTreeMap::new();
    while seen.len() < ROLES.len() {
        let line = c.wait_for_line(|l| parse_tick(l).is_some(), T);
        let (role, ids, _) = parse_tick(&line).unwrap();
        seen.insert(role, ids);
    }
    seen
}

#[test]
fn fork_tree_keeps_pids_parents_and_exit_statuses() {
    let mut c = Computation::new("forktree");
    story(&mut c);
}

/// The same as an unprivileged user (the restart makes a user namespace).
#[test]
fn fork_tree_as_nobody() {
    let Some(mut c) = ckpt_tests::as_nobody("forktree-nobody") else {
        return;
    };
    story(&mut c);
}

/// launch → bc → kill → restart IMAGES → bc → kill → restart (manifest) → verdict.
fn story(c: &mut Computation) {
    let stop = c.stop_file().display().to_string();
    c.launch_tree(&program("forktree"), &[&stop], 4);
    let dir = c.ckpt_dir.display().to_string();
    let at_launch = every_role_ticks(c);
    let parent = at_launch["parent"].pid;
    assert_eq!(at_launch["child1"].ppid, parent, "{at_launch:?}");
    assert_eq!(at_launch["child2"].ppid, parent, "{at_launch:?}");
    assert_eq!(at_launch["grandchild"].ppid, at_launch["child1"].pid);

    let images = c.checkpoint_all(4);
    every_role_ticks(c);
    c.kill();

    // All the images given: one tree in one pid namespace.
    let mut args: Vec<String> = ["restart", "--quiet"].map(String::from).to_vec();
    args.extend(images.iter().map(|i| i.display().to_string()));
    c.spawn(args);
    c.wait_connected(4, T);
    let restarted = every_role_ticks(c);
    assert_eq!(
        restarted["parent"].ppid, 1,
        "the namespace's init is its parent"
    );
    assert_eq!(
        restarted,
        at_launch_but_parents_parent(&at_launch, &restarted)
    );
    let l = c.command(&["l"]);
    let list = String::from_utf8_lossy(&l.stdout).into_owned();
    assert_eq!(list.lines().count(), 4, "{list}");
    for ids in at_launch.values() {
        assert!(
            list.contains(&format!("forktree[{}]", ids.pid)),
            "pid {} listed: {list}",
            ids.pid
        );
    }

    c.checkpoint_all(4);
    every_role_ticks(c);
    c.kill();

    // No image given: the manifest's, all four.
    c.spawn(
        ["restart", "--quiet", "--ckpt-dir", &dir]
            .map(String::from)
            .to_vec(),
    );
    c.wait_connected(4, T);
    let again = every_role_ticks(c);
    assert_eq!(again, at_launch_but_parents_parent(&at_launch, &again));

    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{v}");
    assert_eq!(
        c.wait_exit(T),
        Some(0),
        "the restart exits with the parent's status"
    );
}

/// The ids at launch, except the parent's own parent, which after a
/// restart is the new namespace's init.
fn at_launch_but_parents_parent(
    at_launch: &BTreeMap<String, Ids>,
    now: &BTreeMap<String, Ids>,
) -> BTreeMap<String, Ids> {
    let mut want = at_launch.clone();
    if let (Some(w), Some(n)) = (want.get_mut("parent"), now.get("parent")) {
        w.ppid = n.ppid;
    }
    want
}
