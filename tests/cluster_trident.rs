//! Trident on a real cluster (ZooKeeper, Nimbus, two supervisors, worker
//! processes over TCP): word count with durable (redb) state survives a
//! worker killed with `kill -9` with exact counts.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::Duration;

#[test]
fn trident_word_count_with_a_worker_killed_is_exact() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let example = corpus::example_named("trident_word_count");
    let input = corpus::corpus();
    let state = c.path().join("trident-state");
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        "tw",
        "--input",
        &input.display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--workers",
        "3",
        "--batch-lines",
        "2000",
        "--spout-parallelism",
        "2",
        "--count-parallelism",
        "2",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    let total: u64 = corpus::plain_count(&input).len() as u64;
    assert!(total > 0);
    wait_until("a few batches to commit", Duration::from_secs(120), || {
        committed_lines(&c, "tw") >= 10_000
    });
    // Kill a worker holding state partitions.
    let info = c.info("tw").unwrap();
    let victim_slot = slot_of(&info, "b-1");
    let before = committed_lines(&c, "tw");
    c.kill9_worker_and_wait_restart(victim_slot.port);
    let lines: u64 = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| {
            let text = std::fs::read(e.unwrap().path()).unwrap();
            String::from_utf8_lossy(&text).split_inclusive('\n').count() as u64
        })
        .sum();
    wait_until("every line to commit", Duration::from_secs(300), || {
        committed_lines(&c, "tw") >= lines
    });
    assert!(before < lines, "the kill came after the last commit");
    c.squall_ok(&["kill", "tw", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    let counts = c.path().join("counts.tsv");
    let read = std::process::Command::new(&example)
        .arg("--read")
        .arg(&state)
        .arg("--top")
        .arg("0")
        .arg("--output")
        .arg(&counts)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let got = corpus::read_counts(&counts);
    assert_eq!(got, corpus::plain_count(&input), "counts are exact");
}
