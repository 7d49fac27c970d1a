//! The process tree of a restart: which image's process forks which, and
//! the session and process group each one takes, from the PROCESS records
//! (virtual pid, ppid, pgid, sid; spec §4.2).
//!
//! A process whose parent has an image is forked by that parent (its
//! restorer, before the parent restores itself), so getppid() and the
//! parent's waitpid() work after the restart. A process whose parent has
//! no image (the process `ckpt launch` started, an orphan) is a root: the
//! namespace's init forks it, and it stays in the session and process
//! group of `ckpt restart` (the terminal's foreground job). Below a root,
//! fork gives every child its parent's group and session; a child that
//! was a session leader calls setsid, one that led or joined another
//! group of the tree calls setpgid (its parent does it too, right after
//! the fork, as shells do, so a sibling created later can join it).

use std::collections::BTreeMap;
use std::fmt;

/// What a process does about its session and process group before it
/// forks its own children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Keeps what fork gave it (the parent's, or the restart's for a root).
    Inherit,
    /// setsid(): it led its own session (and so its own group).
    NewSession,
    /// setpgid(0, pgid): it led (pgid == its pid) or joined a group of the tree.
    Group(i32),
}

/// One process to restore.
#[derive(Clone, Debug)]
pub struct Node {
    /// Index of its image in the restorer's list.
    pub image: usize,
    pub pid: i32,
    /// Index of the node that forks it (None: a root, forked by init).
    pub parent: Option<usize>,
    /// Nodes it forks, in pid order.
    pub children: Vec<usize>,
    pub membership: Membership,
    /// Its children that were zombies at checkpoint time, (pid, wait
    /// status): forked after `children`, each exits at once with its
    /// status and stays a zombie until the restored parent reaps it.
    pub zombies: Vec<(i32, i32)>,
}

/// The whole tree, nodes in image order.
#[derive(Clone, Debug)]
pub struct Tree {
    pub nodes: Vec<Node>,
    /// Nodes init forks, in pid order.
    pub roots: Vec<usize>,
}

/// The ids one image records for its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
}

/// Why the images cannot make one tree.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeError {
    /// Two images hold the same pid (images of different restarts?).
    DuplicatePid {
        pid: i32,
        first: usize,
        second: usize,
    },
    /// A pid the new namespace cannot give (1 is its init).
    BadPid { pid: i32, image: usize },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::DuplicatePid { pid, first, second } => write!(
                f,
                "images {} and {} both hold pid {pid}: they cannot share one pid namespace \
                 (restart them separately)",
                first + 1,
                second + 1
            ),
            TreeError::BadPid { pid, image } => write!(
                f,
                "image {} holds pid {pid}, which cannot be restored (pid 1 is the new namespace's init)",
                image + 1
            ),
        }
    }
}

impl std::error::Error for TreeError {}

impl Tree {
    /// Pids of the processes init forks (their parents have no image).
    pub fn root_pids(&self) -> Vec<i32> {
        self.roots.iter().map(|&i| self.nodes[i].pid).collect()
    }

    /// Gives node `i` its zombie children, (pid, wait status) in pid
    /// order; `warn` hears about one whose pid cannot be given (1, or a
    /// pid that a process of the tree or another zombie holds).
    pub fn add_zombies(&mut self, i: usize, zombies: &[(i32, i32)], mut warn: impl FnMut(String)) {
        for &(pid, status) in zombies {
            let taken = pid <= 1
                || self
                    .nodes
                    .iter()
                    .any(|n| n.pid == pid || n.zombies.iter().any(|z| z.0 == pid));
            if taken {
                warn(format!(
                    "pid {}: its unreaped child {pid} cannot be recreated (pid taken); \
                     waitpid() for it will fail",
                    self.nodes[i].pid
                ));
                continue;
            }
            self.nodes[i].zombies.push((pid, status));
        }
        self.nodes[i].zombies.sort_unstable();
    }

    /// Builds the tree; `warn` hears about sessions and groups that
    /// cannot be rebuilt (the process keeps the inherited ones).
    pub fn build(ids: &[Ids], mut warn: impl FnMut(String)) -> Result<Tree, TreeError> {
        let mut by_pid: BTreeMap<i32, usize> = BTreeMap::new();
        for (i, p) in ids.iter().enumerate() {
            if p.pid <= 1 {
                return Err(TreeError::BadPid {
                    pid: p.pid,
                    image: i,
                });
            }
            if let Some(&first) = by_pid.get(&p.pid) {
                return Err(TreeError::DuplicatePid {
                    pid: p.pid,
                    first,
                    second: i,
                });
            }
            by_pid.insert(p.pid, i);
        }
        let mut nodes: Vec<Node> = ids
            .iter()
            .enumerate()
            .map(|(i, p)| Node {
                image: i,
                pid: p.pid,
                parent: by_pid.get(&p.ppid).copied().filter(|&j| j != i),
                children: Vec::new(),
                membership: Membership::Inherit,
                zombies: Vec::new(),
            })
            .collect();
        // A cycle (corrupt or hand-made ids) would leave processes nobody
        // forks: whoever sits on one becomes a root.
        for i in 0..nodes.len() {
            let mut seen = 0;
            let mut at = nodes[i].parent;
            while let Some(j) = at {
                seen += 1;
                if j == i || seen > nodes.len() {
                    warn(format!(
                        "pid {}: its parent chain loops; restored under init",
                        nodes[i].pid
                    ));
                    nodes[i].parent = None;
                    break;
                }
                at = nodes[j].parent;
            }
        }
        let mut roots = Vec::new();
        for &i in by_pid.values() {
            match nodes[i].parent {
                Some(p) => nodes[p].children.push(i),
                None => roots.push(i),
            }
        }
        // Sessions and groups, top down (a root keeps the restart's).
        let mut order: Vec<usize> = roots.clone();
        let mut k = 0;
        while k < order.len() {
            let i = order[k];
            order.extend(nodes[i].children.iter().copied());
            k += 1;
        }
        // Which groups and sessions exist inside the namespace: led by a
        // non-root process of the tree.
        for &i in &order {
            let Some(p) = nodes[i].parent else { continue };
            let (me, parent) = (ids[i], ids[p]);
            nodes[i].membership = if me.sid == me.pid {
                Membership::NewSession
            } else if me.sid != parent.sid {
                warn(format!(
                    "pid {}: session {} is not its parent's ({}); it keeps its parent's",
                    me.pid, me.sid, parent.sid
                ));
                Membership::Inherit
            } else if me.pgid == parent.pgid {
                Membership::Inherit
            } else if me.pgid == me.pid
                || by_pid.get(&me.pgid).is_some_and(|&l| {
                    nodes[l].parent.is_some() && ids[l].sid == me.sid && ids[l].pgid == me.pgid
                })
            {
                Membership::Group(me.pgid)
            } else {
                warn(format!(
                    "pid {}: process group {} has no leader among the restored processes; \
                     it keeps its parent's",
                    me.pid, me.pgid
                ));
                Membership::Inherit
            };
        }
        Ok(Tree { nodes, roots })
    }
}

/// One end of a pipe an image holds: (pid, fd, pipe_id, write end).
pub type PipeEnd = (i32, i32, u64, bool);

/// A pipe held by more than one process of the tree: the restart makes
/// it once, before the tree is forked, so that every holder inherits the
/// same pipe (see `fds::share_pipes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedPipe {
    pub pipe_id: u64,
    /// Both ends are among the images: the whole pipe is the tree's, so
    /// its ends on fds 0-2 are restored too (`a | b` in a shell).
    pub inside: bool,
    /// The process whose image gives the buffered bytes: the lowest pid
    /// holding a read end (every reader stored them; taken once).
    pub bytes_from: Option<i32>,
    /// Who holds it, for the log: "pid P fd N (read|write)".
    pub holders: Vec<String>,
}

/// The pipes to share: held by two processes or more, and either wholly
/// inside the tree or on an fd above 2 somewhere (fds 0-2 of a pipe that
/// leads outside, the restart's stdout, stay as inherited: shared already).
/// A pipe no root holds (`roots`: pids of the processes whose parent has
/// no image) was made inside the tree, even when one end is gone (its
/// writer exited, `as` reading what `cc1` wrote before it ended): it is
/// the tree's too, made and refilled even for a single holder on fds 0-2,
/// so the reader gets the bytes and then end-of-file, not the restart's
/// stdin.
pub fn shared_pipes(ends: &[PipeEnd], roots: &[i32]) -> Vec<SharedPipe> {
    let mut by_pipe: BTreeMap<u64, Vec<&PipeEnd>> = BTreeMap::new();
    for e in ends {
        by_pipe.entry(e.2).or_default().push(e);
    }
    let mut out = Vec::new();
    for (pipe_id, v) in by_pipe {
        let held_by_root = v.iter().any(|e| roots.contains(&e.0));
        let inside = (v.iter().any(|e| e.3) && v.iter().any(|e| !e.3)) || !held_by_root;
        let mut pids: Vec<i32> = v.iter().map(|e| e.0).collect();
        pids.sort_unstable();
        pids.dedup();
        let several = pids.len() >= 2 && (inside || v.iter().any(|e| e.1 > 2));
        let lone_stdio = pids.len() == 1 && !held_by_root && v.iter().any(|e| e.1 <= 2);
        if !several && !lone_stdio {
            continue;
        }
        let holders = v
            .iter()
            .map(|e| {
                format!(
                    "pid {} fd {} ({})",
                    e.0,
                    e.1,
                    if e.3 { "write" } else { "read" }
                )
            })
            .collect();
        out.push(SharedPipe {
            pipe_id,
            inside,
            bytes_from: v.iter().filter(|e| !e.3).map(|e| e.0).min(),
            holders,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(i32, i32, i32, i32)]) -> Vec<Ids> {
        v.iter()
            .map(|&(pid, ppid, pgid, sid)| Ids {
                pid,
                ppid,
                pgid,
                sid,
            })
            .collect()
    }

    #[test]
    fn parents_fork_children_in_pid_order() {
        // launch's process 100 (its group and session are the shell's),
        // children 102 and 101, grandchild 103 under 101.
        let v = ids(&[
            (100, 50, 50, 40),
            (102, 100, 50, 40),
            (101, 100, 50, 40),
            (103, 101, 50, 40),
        ]);
        let mut w = Vec::new();
        let t = Tree::build(&v, |s| w.push(s)).unwrap();
        assert_eq!(t.roots, vec![0]);
        assert_eq!(t.nodes[0].children, vec![2, 1]);
        assert_eq!(t.nodes[2].children, vec![3]);
        assert_eq!(t.nodes[3].parent, Some(2));
        assert!(t.nodes.iter().all(|n| n.membership == Membership::Inherit));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn sessions_and_groups_below_a_root() {
        // 200 (root, a shell job leader); 201 setsid; 202 leads a group,
        // 203 (its sibling) joins it; 204 under 201 inherits 201's session.
        let v = ids(&[
            (200, 1, 200, 10),
            (201, 200, 201, 201),
            (202, 200, 202, 10),
            (203, 200, 202, 10),
            (204, 201, 201, 201),
        ]);
        let t = Tree::build(&v, |_| {}).unwrap();
        let m: Vec<Membership> = t.nodes.iter().map(|n| n.membership).collect();
        assert_eq!(
            m,
            vec![
                Membership::Inherit,
                Membership::NewSession,
                Membership::Group(202),
                Membership::Group(202),
                Membership::Inherit,
            ]
        );
    }

    #[test]
    fn a_group_without_a_leader_is_inherited_with_a_warning() {
        let v = ids(&[(300, 1, 300, 10), (301, 300, 999, 10)]);
        let mut w = Vec::new();
        let t = Tree::build(&v, |s| w.push(s)).unwrap();
        assert_eq!(t.nodes[1].membership, Membership::Inherit);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn unrelated_processes_are_all_roots() {
        let v = ids(&[(10, 1, 10, 10), (20, 1, 20, 20)]);
        let t = Tree::build(&v, |_| {}).unwrap();
        assert_eq!(t.roots, vec![0, 1]);
    }

    #[test]
    fn duplicate_and_reserved_pids_are_refused() {
        let v = ids(&[(10, 1, 10, 10), (10, 1, 10, 10)]);
        assert_eq!(
            Tree::build(&v, |_| {}).unwrap_err(),
            TreeError::DuplicatePid {
                pid: 10,
                first: 0,
                second: 1
            }
        );
        let v = ids(&[(1, 0, 0, 0)]);
        assert!(matches!(
            Tree::build(&v, |_| {}),
            Err(TreeError::BadPid { pid: 1, .. })
        ));
    }

    #[test]
    fn a_parent_loop_is_broken() {
        let v = ids(&[(10, 11, 10, 10), (11, 10, 10, 10)]);
        let mut w = Vec::new();
        let t = Tree::build(&v, |s| w.push(s)).unwrap();
        assert!(!t.roots.is_empty());
        assert!(!w.is_empty());
    }

    #[test]
    fn zombies_whose_pid_is_taken_are_left_out_with_a_warning() {
        let v = ids(&[(10, 1, 10, 10), (11, 10, 10, 10)]);
        let mut t = Tree::build(&v, |_| {}).unwrap();
        let mut w = Vec::new();
        // 11 is a process of the tree, 1 the namespace's init
        t.add_zombies(0, &[(13, 15), (11, 0), (12, 7 << 8), (1, 0)], |s| w.push(s));
        assert_eq!(t.nodes[0].zombies, vec![(12, 7 << 8), (13, 15)]);
        assert_eq!(w.len(), 2, "{w:?}");
        // another process's zombie holds 12 already
        t.add_zombies(1, &[(12, 0), (14, 0)], |s| w.push(s));
        assert_eq!(t.nodes[1].zombies, vec![(14, 0)]);
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn pipes_held_by_several_processes_are_shared_once() {
        let ends = [
            // the restart's stdout: write ends only, on fd 1
            (10, 1, 7, true),
            (11, 1, 7, true),
            // a child writes what its sibling reads; the parent kept a
            // read end too: the bytes come from the lowest reader, 10
            (12, 4, 8, true),
            (11, 3, 8, false),
            (10, 5, 8, false),
            // a pipe within one process
            (11, 5, 9, false),
            (11, 6, 9, true),
            // a shell pipeline on stdout and stdin
            (13, 1, 6, true),
            (14, 0, 6, false),
            // an outside pipe dup'ed above 2 in two processes
            (10, 9, 5, true),
            (11, 9, 5, true),
            // a shell's pipe whose writer exited: two readers on fd 0
            (15, 0, 4, false),
            (16, 0, 4, false),
            // one reader on fd 0 whose writer exited (cc1 | as)
            (17, 0, 3, false),
            // the restart's stdin, read by the root only
            (10, 0, 2, false),
        ];
        let s = shared_pipes(&ends, &[10]);
        let ids: Vec<u64> = s.iter().map(|p| p.pipe_id).collect();
        assert_eq!(ids, vec![3, 4, 5, 6, 8], "{s:?}");
        for lone in &s[..2] {
            assert!(lone.inside, "{lone:?}");
        }
        assert_eq!(s[0].bytes_from, Some(17));
        assert_eq!(s[1].bytes_from, Some(15));
        let s = &s[2..];
        assert!(!s[0].inside);
        assert_eq!(s[0].bytes_from, None);
        assert!(s[1].inside);
        assert_eq!(s[1].bytes_from, Some(14));
        assert!(s[2].inside);
        assert_eq!(s[2].bytes_from, Some(10));
        assert_eq!(
            s[2].holders.join(", "),
            "pid 12 fd 4 (write), pid 11 fd 3 (read), pid 10 fd 5 (read)"
        );
    }
}
