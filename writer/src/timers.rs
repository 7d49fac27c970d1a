//! POSIX timers (timer_create): found in `/proc/self/timers`, read with
//! timer_gettime and timer_getoverrun. Interval timers (setitimer) are
//! read in `mem::itimer`.
//!
//! The raw timer syscalls of the writer live here.

use ckpt_format::{Pid, PosixTimer, TimerValue};

/// Every POSIX timer of the process, in id order.
pub fn posix_timers() -> Vec<PosixTimer> {
    let text = std::fs::read_to_string("/proc/self/timers").unwrap_or_default();
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "ID" => out.push(PosixTimer {
                id: val.parse().unwrap_or(-1),
                ..Default::default()
            }),
            "signal" => {
                if let (Some(t), Some((signo, value))) = (out.last_mut(), val.split_once('/')) {
                    t.signo = signo.parse().unwrap_or(0);
                    t.value = u64::from_str_radix(value.trim_start_matches("0x"), 16).unwrap_or(0);
                }
            }
            // "signal/pid.N", "none/pid.N", "thread/tid.N", "signal/tid.N"
            "notify" => {
                if let (Some(t), Some((how, who))) = (out.last_mut(), val.split_once('/')) {
                    let base = match how {
                        "none" => libc::SIGEV_NONE,
                        "thread" => libc::SIGEV_THREAD,
                        _ => libc::SIGEV_SIGNAL,
                    };
                    let (kind, n) = who.split_once('.').unwrap_or((who, "0"));
                    let tid = kind == "tid";
                    t.notify = base | if tid { libc::SIGEV_THREAD_ID } else { 0 };
                    t.notify_tid = Pid(if tid { n.parse().unwrap_or(0) } else { 0 });
                }
            }
            "ClockID" => {
                if let Some(t) = out.last_mut() {
                    t.clock = val.parse().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    out.retain(|t| t.id >= 0);
    for t in &mut out {
        t.timer = gettime(t.id);
        t.overrun = getoverrun(t.id);
    }
    out.sort_by_key(|t| t.id);
    out
}

fn gettime(id: i32) -> TimerValue {
    let mut v = [0i64; 4];
    // SAFETY: timer_gettime writes one struct itimerspec (four longs).
    let rc = unsafe { libc::syscall(libc::SYS_timer_gettime, id, v.as_mut_ptr()) };
    if rc != 0 {
        return TimerValue::default();
    }
    let ns = |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.max(0) as u64;
    TimerValue {
        interval_ns: ns(v[0], v[1]),
        value_ns: ns(v[2], v[3]),
    }
}

fn getoverrun(id: i32) -> i32 {
    // SAFETY: plain syscall with an integer argument.
    let r = unsafe { libc::syscall(libc::SYS_timer_getoverrun, id) };
    r.max(0) as i32
}
