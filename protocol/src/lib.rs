//! The coordinator wire protocol.
//!
//! One TCP connection per worker process (and one per `ckpt command`).
//! Every message is one line of JSON terminated by `\n`, at most
//! [`MAX_LINE`] bytes. The first message on a connection is a [`Hello`]
//! carrying the protocol version and the computation's secret; the
//! coordinator closes a connection whose secret is wrong after sending
//! [`ToClient::Refused`].
//!
//! Versioning follows the image format's rule: a change that an older peer
//! could misread bumps [`PROTOCOL_VERSION`]; peers refuse other versions.

#![deny(missing_docs)]

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// Version of this protocol.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest line a peer accepts, newline included.
pub const MAX_LINE: usize = 1 << 20;

/// Default coordinator port (DMTCP uses 7779).
pub const DEFAULT_PORT: u16 = 7779;

/// What a connection is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A checkpointed process (its writer's checkpoint thread).
    Worker(WorkerInfo),
    /// A `ckpt command` client.
    Command,
}

/// A worker's identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Program name.
    pub program: String,
    /// Virtual pid (what the program sees).
    pub vpid: i32,
    /// Real pid on the host.
    pub real_pid: i32,
    /// Host name.
    pub host: String,
    /// Unique id within the computation (stable across restarts).
    pub unique_id: String,
    /// Generation of the image this process was restarted from (0 = never).
    pub restarted_from: u64,
    /// Newest generation this process wrote or was restored from (0 =
    /// none): a coordinator started again after a crash continues the
    /// numbering from here. Absent from older peers (reads as 0).
    #[serde(default)]
    pub last_generation: u64,
    /// Computation id of that generation (hex, 32 digits; empty = none).
    #[serde(default)]
    pub computation_id: String,
    /// Directory its images go to (absolute; empty = unknown). In a list,
    /// the coordinator's `--ckpt-dir` when it has one.
    #[serde(default)]
    pub ckpt_dir: String,
    /// Speaks the checkpoint barrier ([`ToCoordinator::Suspended`],
    /// [`ToClient::Write`], [`ToCoordinator::Captured`],
    /// [`ToClient::Release`], [`ToClient::Resume`]). Absent from older
    /// peers (reads as false): the coordinator checkpoints them on their
    /// own, as before.
    #[serde(default)]
    pub barrier: bool,
    /// Parent's virtual pid (0 = unknown: an older peer).
    #[serde(default)]
    pub ppid: i32,
    /// Speaks [`ToClient::Continue`], [`ToCoordinator::Continued`] and
    /// [`ToClient::WasStopped`] (a process stopped by SIGSTOP/SIGTSTP is
    /// checkpointed too). Absent from older peers (reads as false): they
    /// are never asked, nor told.
    #[serde(default)]
    pub continues: bool,
    /// Inode of its pid namespace (/proc/self/ns/pid; 0 = unknown): a
    /// coordinator on the same host in the same namespace continues a
    /// stopped worker itself (by `vpid`) when no other worker can.
    #[serde(default)]
    pub pid_ns: u64,
}

/// A process of the computation that is not under checkpoint control (a
/// program that cannot carry the writer), as its parent or the process
/// exec'ing it reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outsider {
    /// Its virtual pid.
    pub pid: i32,
    /// Its parent's virtual pid.
    pub ppid: i32,
    /// Program name.
    pub program: String,
    /// Host name.
    pub host: String,
    /// Why the writer cannot be in it, for people.
    pub reason: String,
}

/// First message on every connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The computation's secret (hex).
    pub secret: String,
    /// Who is connecting.
    pub role: Role,
}

/// How a checkpoint should be written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRequest {
    /// Generation number of this checkpoint.
    pub generation: u64,
    /// Directory the image goes to.
    pub dir: String,
    /// zstd-compress page data.
    pub compress: bool,
    /// Store the contents of open regular files.
    pub open_files: bool,
    /// Computation id (hex, 32 digits).
    pub computation_id: String,
    /// Pass the barrier: reply [`ToCoordinator::Suspended`] once every
    /// user thread is stopped and wait for [`ToClient::Write`] (or
    /// [`ToClient::Resume`]), reply [`ToCoordinator::Captured`] once the
    /// image's state is read and keep the threads stopped until
    /// [`ToClient::Release`]. Sent only to workers whose hello set
    /// [`WorkerInfo::barrier`]; absent (false) from older coordinators.
    #[serde(default)]
    pub barrier: bool,
}

/// Coordinator → worker or command client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToClient {
    /// Hello accepted.
    Welcome {
        /// The coordinator's checkpoint interval in seconds (0 = none).
        interval: u64,
    },
    /// Hello refused (bad secret or version).
    Refused {
        /// Why.
        reason: String,
    },
    /// Worker: write a checkpoint now.
    Checkpoint(CheckpointRequest),
    /// Worker: exit now (after `k` / `q`).
    Kill,
    /// Worker (barrier): every process of the computation is suspended;
    /// capture and write the image of `generation`.
    Write {
        /// Generation of the checkpoint under way.
        generation: u64,
        /// Virtual pids of the barrier's members on the receiver's host
        /// (the receiver included), all suspended: the writer compares
        /// its descriptors with theirs (kcmp) to give an open file
        /// description they share one id. Absent from older coordinators
        /// (empty: ids are unique within the process only).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        peers: Vec<i32>,
    },
    /// Worker (barrier), while it waits for [`ToClient::Write`]: these
    /// members (virtual pids on its host) have not suspended; continue
    /// (SIGCONT) those that are stopped (state T: a stopped process's
    /// writer cannot run) and reply [`ToCoordinator::Continued`]. Also
    /// outside a checkpoint (generation 0, no reply), just before
    /// [`ToClient::Kill`], so that stopped processes read theirs.
    Continue {
        /// Generation of the checkpoint under way (0: none, a kill).
        generation: u64,
        /// The members not suspended yet.
        pids: Vec<i32>,
    },
    /// Worker (barrier), before [`ToClient::Write`]: it was stopped when
    /// the checkpoint began and was continued for it; it stops again
    /// (SIGSTOP) once the checkpoint is over, and after a restart from
    /// this checkpoint.
    WasStopped {
        /// Generation of the checkpoint under way.
        generation: u64,
    },
    /// Worker (barrier): every process captured its state; let the
    /// threads run again.
    Release {
        /// Generation of the checkpoint under way.
        generation: u64,
    },
    /// Worker (barrier): the checkpoint is abandoned before any image was
    /// written (a process failed, left or did not suspend in time): let
    /// the threads run again and reply [`ToCoordinator::CheckpointFailed`].
    Resume {
        /// Generation abandoned.
        generation: u64,
        /// Why, for the worker's log.
        reason: String,
    },
    /// Command client: the answer to its command.
    Reply(Reply),
}

/// Worker or command client → coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToCoordinator {
    /// First message.
    Hello(Hello),
    /// Worker: the checkpoint of `generation` is complete and synced.
    Checkpointed {
        /// Generation written.
        generation: u64,
        /// Final path of the image.
        path: String,
        /// Bytes in the image.
        bytes: u64,
        /// Its live children outside checkpoint control (their parent's
        /// image records them as killed). Absent from older writers.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outsiders: Vec<Outsider>,
    },
    /// Worker (barrier): every user thread is stopped and what must be
    /// drained is drained; waiting for [`ToClient::Write`]. Sent again,
    /// with the new list, when `children` changes while it waits.
    Suspended {
        /// Generation of the checkpoint under way.
        generation: u64,
        /// Virtual pids of its live children that are, or are about to
        /// be, processes of the computation (forked with the writer, or
        /// exec'd with it in `LD_PRELOAD`), connected or not: the
        /// coordinator sends `Write` only once each of them is connected
        /// (and so a member of the barrier) or has left this list, so
        /// that no process of the computation runs while another's
        /// state is read. Absent from older writers (empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        children: Vec<i32>,
    },
    /// Worker (barrier): the image's state (fds with pipe contents,
    /// memory) is read; the threads stay stopped until
    /// [`ToClient::Release`]. Sent also when the write failed (the
    /// failure follows as [`ToCoordinator::CheckpointFailed`]).
    Captured {
        /// Generation of the checkpoint under way.
        generation: u64,
    },
    /// Worker (barrier): the answer to [`ToClient::Continue`]: the pids
    /// that were stopped and are continued now.
    Continued {
        /// Generation of the checkpoint under way.
        generation: u64,
        /// The stopped members it continued.
        pids: Vec<i32>,
    },
    /// Worker: the checkpoint failed; the process keeps running.
    CheckpointFailed {
        /// Generation attempted.
        generation: u64,
        /// What went wrong (names the resource and fd when one is at fault).
        reason: String,
    },
    /// Command client: a command.
    Command(Command),
    /// Worker: this process is about to exec a program that cannot carry
    /// the writer (it leaves checkpoint control). An older coordinator
    /// refuses the message and drops the connection, which the exec
    /// closes anyway.
    Outsider(Outsider),
}

/// A `ckpt command`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Checkpoint all, return at once.
    Checkpoint,
    /// Checkpoint all, return when every image is complete and synced.
    BlockingCheckpoint,
    /// Status.
    Status,
    /// List the processes.
    List,
    /// Kill the computation.
    Kill,
    /// Kill the computation and stop the coordinator.
    Quit,
    /// Set the checkpoint interval (seconds, 0 = off).
    Interval(u64),
}

/// One process as `l` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// Position in the list, from 1.
    pub number: usize,
    /// The worker (for an outsider: its pid, ppid, program and host).
    pub info: WorkerInfo,
    /// RUNNING, CHECKPOINTING, or OUTSIDE CHECKPOINT CONTROL: why.
    pub state: String,
}

/// Answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Done.
    Ok {
        /// What happened, for people.
        message: String,
    },
    /// A checkpoint finished (for `bc`) or was started (for `c`).
    Checkpointed {
        /// Generation.
        generation: u64,
        /// Images written (empty for `c`).
        images: Vec<String>,
    },
    /// Status.
    Status {
        /// Number of processes connected.
        processes: usize,
        /// True while a computation is running.
        running: bool,
        /// Checkpoint interval in seconds.
        interval: u64,
        /// Last completed generation.
        generation: u64,
        /// Processes of the computation outside checkpoint control, one
        /// line each (`program[pid] (child of ppid) on host: why`).
        /// Absent from older coordinators.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outside: Vec<String>,
    },
    /// The process list.
    List(Vec<ProcessEntry>),
    /// The command failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Protocol errors.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A line longer than [`MAX_LINE`].
    #[error("message longer than {MAX_LINE} bytes")]
    TooLong,
    /// A line that is not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
}

/// Writes one message as a line.
pub fn send<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()?;
    Ok(())
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub fn recv<R: BufRead, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, ProtocolError> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return if line.len() > MAX_LINE {
            Err(ProtocolError::TooLong)
        } else {
            Err(ProtocolError::Closed)
        };
    }
    Ok(Some(serde_json::from_slice(&line)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let msg = ToCoordinator::Command(Command::Interval(5));
        let mut buf = Vec::new();
        send(&mut buf, &msg).unwrap();
        let got: ToCoordinator = recv(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(got, msg);
        let long = vec![b'x'; MAX_LINE + 10];
        assert!(matches!(
            recv::<_, ToCoordinator>(&mut &long[..]),
            Err(ProtocolError::TooLong)
        ));
        assert!(recv::<_, ToCoordinator>(&mut &b""[..]).unwrap().is_none());
        assert!(matches!(
            recv::<_, ToCoordinator>(&mut &b"{}\n"[..]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn barrier_fields_are_optional_both_ways() {
        // An older writer's hello and an older coordinator's request.
        let old: WorkerInfo = serde_json::from_str(
            r#"{"program":"p","vpid":1,"real_pid":1,"host":"h","unique_id":"u","restarted_from":0}"#,
        )
        .unwrap();
        assert!(!old.barrier);
        let req: CheckpointRequest = serde_json::from_str(
            r#"{"generation":3,"dir":"","compress":true,"open_files":false,"computation_id":""}"#,
        )
        .unwrap();
        assert!(!req.barrier);
        // A Write from an older coordinator has no peers.
        let w: ToClient = serde_json::from_str(r#"{"write":{"generation":4}}"#).unwrap();
        assert_eq!(
            w,
            ToClient::Write {
                generation: 4,
                peers: Vec::new()
            }
        );
        // An older peer ignores the new field.
        let v = serde_json::to_value(CheckpointRequest {
            barrier: true,
            ..req
        })
        .unwrap();
        assert_eq!(v["barrier"], true);
        for m in [
            ToClient::Write {
                generation: 2,
                peers: Vec::new(),
            },
            ToClient::Write {
                generation: 2,
                peers: vec![10, 11],
            },
            ToClient::Release { generation: 2 },
            ToClient::Continue {
                generation: 2,
                pids: vec![7, 8],
            },
            ToClient::WasStopped { generation: 2 },
            ToClient::Resume {
                generation: 2,
                reason: "r".into(),
            },
        ] {
            let mut buf = Vec::new();
            send(&mut buf, &m).unwrap();
            assert_eq!(recv::<_, ToClient>(&mut &buf[..]).unwrap().unwrap(), m);
        }
    }
}
