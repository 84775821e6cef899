//! Backpressure across workers on a real cluster: a spout and splitters
//! feeding, over TCP, a count bolt made slow on purpose in another worker,
//! with no `topology.max.spout.pending`. The receiving worker reports its
//! backpressured tasks, the spout waits, and the receiver's memory stays
//! bounded while every line is acked and every word counted exactly.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::{Duration, Instant};

/// The high-water mark of the count worker's resident memory the test
/// allows, MB. Without backpressure the words the slow bolt has not
/// reached pile up in its worker (several hundred MB for this corpus).
const RECEIVER_PEAK_MB: u64 = 120;

#[test]
fn a_slow_bolt_in_another_worker_holds_the_spout_back() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let state = c.submit_word_count(
        "bp",
        &[
            "--workers",
            "2",
            "--split-parallelism",
            "2",
            "--count-delay-us",
            "15",
        ],
    );
    let mut info = None;
    wait_until("the workers", Duration::from_secs(60), || {
        info = c.info("bp").filter(|i| !i.executors.is_empty());
        info.is_some()
    });
    let info = info.unwrap();
    let count = slot_of(&info, "count");
    let spout = slot_of(&info, "lines");
    assert_ne!(
        (count.host.as_str(), count.port),
        (spout.host.as_str(), spout.port),
        "the spout and the count bolt share a worker"
    );
    let mut pid = None;
    wait_until("the count worker", Duration::from_secs(60), || {
        pid = c.worker_pid_on(count.port);
        pid.is_some()
    });
    let pid = pid.unwrap();
    let started = Instant::now();
    let mut peak = 0;
    wait_until("every line to be acked", Duration::from_secs(600), || {
        peak = peak.max(proc_status(pid, "VmHWM:") / 1024);
        Cluster::spout_progress(&state).is_some_and(|(_, done)| done)
    });
    eprintln!(
        "backpressure: every line acked in {:.1} s; count worker peak RSS {peak} MB (bound {RECEIVER_PEAK_MB} MB)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak <= RECEIVER_PEAK_MB,
        "the count worker reached {peak} MB: the spout was not held back"
    );
    assert_eq!(
        c.worker_pid_on(count.port),
        Some(pid),
        "the count worker was restarted"
    );
    c.squall_ok(&["kill", "bp", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    check_counts(&Cluster::merged_counts(&state));
}
