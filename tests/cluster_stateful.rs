//! Stateful bolts on a real cluster (ZooKeeper, Nimbus, two supervisors,
//! worker processes over TCP): the stateful word count keeps its counts in
//! redb files; the worker holding a count task (not the spout's) is killed
//! with `kill -9` mid-run, and the counts read from the files afterwards
//! equal a plain count exactly: no word lost, none counted twice.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::path::Path;
use std::time::Duration;

/// (acked, emitted, total) from the spout's progress file.
fn progress(dir: &Path) -> Option<(u64, u64, u64)> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("lines-") && name.ends_with(".progress") {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let f: Vec<u64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if f.len() == 3 {
                return Some((f[0], f[1], f[2]));
            }
        }
    }
    None
}

#[test]
fn stateful_word_count_with_a_state_worker_killed_is_exact() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let example = corpus::example_named("stateful_word_count");
    let input = corpus::small_corpus(c.path());
    let state = c.path().join("state");
    let progress_dir = c.path().join("progress");
    let provider = format!("topology.state.provider.config={}", state.display());
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        "swc",
        "--input",
        &input.display().to_string(),
        "--workers",
        "2",
        "--max-spout-pending",
        "500",
        "--progress-dir",
        &progress_dir.display().to_string(),
        "-c",
        "topology.state.provider=redb",
        "-c",
        &provider,
        "-c",
        "topology.state.checkpoint.interval.ms=200",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    wait_until(
        "a few thousand lines acked",
        Duration::from_secs(120),
        || progress(&progress_dir).is_some_and(|(acked, _, _)| acked >= 2_000),
    );
    let info = c.info("swc").unwrap();
    let spout = slot_of(&info, "lines");
    let victim = info
        .executors
        .iter()
        .filter(|e| e.0 == "count" && e.3 != spout)
        .map(|e| e.3.clone())
        .next()
        .unwrap_or_else(|| panic!("every count task shares the spout's worker: {info:?}"));
    let (acked_before, _, total) = progress(&progress_dir).unwrap();
    c.kill9_worker_and_wait_restart(victim.port);
    wait_until("every line acked", Duration::from_secs(300), || {
        progress(&progress_dir).is_some_and(|(acked, _, total)| acked >= total)
    });
    assert!(acked_before < total, "the kill came before the end");
    c.squall_ok(&["kill", "swc", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    let counts = c.path().join("counts.tsv");
    let read = std::process::Command::new(&example)
        .args(["--read", &state.display().to_string(), "--name", "swc"])
        .args(["--top", "0", "--output", &counts.display().to_string()])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let got = corpus::read_counts(&counts);
    corpus::assert_same_counts(&got, &corpus::plain_count(&input));
}
