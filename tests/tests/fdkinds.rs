//! tests/programs/fdkinds.c through the whole story (launch, two
//! checkpoints, kill, restart, checkpoint, kill, restart): eventfds with
//! their counters and flags, timerfds with their clocks, remaining
//! times, intervals, settime flags and pending ticks, signalfds with
//! their masks, and epoll sets with every registration, its events and
//! its data. Each kind alone, then all of them watched by epoll.

use ckpt_tests::{program, Computation};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn story(kinds: &str) {
    let mut c = Computation::new(&format!("fdkinds-{}", kinds.replace(',', "-")));
    let stop = c.stop_file().display().to_string();
    c.launch(&program("fdkinds"), &[&stop, kinds]);
    c.story(&|l: &str| l.starts_with("tick"), T);
    let v = c.verdict(T);
    assert!(v.starts_with("VERDICT OK"), "{kinds}: {v}");
    assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn eventfd() {
    story("eventfd");
}

#[test]
fn signalfd() {
    story("signalfd");
}

#[test]
fn timerfd() {
    story("timerfd");
}

#[test]
fn epoll_watching_every_kind() {
    story("eventfd,timerfd,signalfd,epoll");
}
