//! Per-thread attributes the image keeps once per process: personality,
//! scheduling policy and nice value are the main thread's (the program's
//! own; the checkpoint thread only has what the main thread had when the
//! writer started). The restorer sets them before it creates the threads,
//! so every thread inherits them.

/// (personality, policy, nice) of thread `tid`, from /proc; None when
/// the thread is gone (a zombie leader has no stat to speak of).
pub fn thread_sched(tid: i32) -> Option<(u32, u32, i32)> {
    let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    // rest starts with field 3 (state); nice is field 19, policy field 41.
    let f: Vec<&str> = rest.split_whitespace().collect();
    if matches!(f.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    let nice = f.get(19 - 3)?.parse().ok()?;
    let policy = f.get(41 - 3)?.parse().ok()?;
    let pers = std::fs::read_to_string(format!("/proc/self/task/{tid}/personality")).ok()?;
    let pers = u32::from_str_radix(pers.trim(), 16).ok()?;
    Some((pers, policy, nice))
}
