//! Kafka on a real cluster (ZooKeeper, Nimbus, two supervisors, worker
//! processes, the UI) against a real broker: the Kafka word count runs
//! under `squall jar`, a worker running a spout task is killed with
//! `kill -9` mid-run, and the run still completes: every line counted at
//! least once, and the restarted spout task resumed from its group's last
//! commit. The UI's lag endpoint shows the spout's partitions.

mod cluster_support;
mod corpus;
mod kafka_support;

use cluster_support::*;
use kafka_support::Broker;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const GROUP: &str = "kwc-kafka";

/// The offsets spout tasks started partitions at, from the worker logs:
/// (time, "lines-<p>", offset), in time order.
fn starts(dir: &Path) -> Vec<(String, String, i64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "log") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines() {
                    let Some(rest) = line.split("reading ").nth(1) else {
                        continue;
                    };
                    // The time stamp: the first word with a `T`, less any
                    // terminal colour codes.
                    let time: String = line
                        .split_whitespace()
                        .find(|w| w.contains('T'))
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || ":.-".contains(*c))
                        .collect();
                    if let Some((tp, offset)) = rest.split_once(" from offset ") {
                        if let Ok(o) = offset.trim().parse() {
                            found.push((time, tp.to_owned(), o));
                        }
                    }
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn kafka_word_count_survives_a_spout_worker_kill() {
    let broker = Broker::start();
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    let ui = c.start_ui();
    c.wait_supervisors(2);
    let example = corpus::example_named("kafka_word_count");
    let input = corpus::small_corpus(c.path());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&example)
            .args(["--brokers", &broker.address, "--topic", "lines"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["--produce", "--input", &input.display().to_string()]);
    let ends = broker.end_offsets("lines");
    assert_eq!(ends.len(), 4);
    let counts_dir = c.path().join("counts");
    std::fs::create_dir_all(&counts_dir).unwrap();
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        "kwc",
        "--brokers",
        &broker.address,
        "--topic",
        "lines",
        "--group",
        GROUP,
        "--workers",
        "2",
        "--commit-period-ms",
        "300",
        "--counts-dir",
        &counts_dir.display().to_string(),
        "-c",
        "topology.max.spout.pending=2000",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    let committed = || broker.committed(GROUP, "lines");
    let total: i64 = ends.values().sum();
    // Every partition with records has a commit before the kill, so the
    // restarted task has a commit to resume from whichever it reads.
    wait_until(
        "a tenth of the lines committed, and a commit on every partition",
        Duration::from_secs(120),
        || {
            let c = committed();
            c.values().sum::<i64>() >= total / 10
                && ends
                    .iter()
                    .all(|(p, end)| *end == 0 || c.get(p).copied().unwrap_or(0) > 0)
        },
    );
    let info = c.info("kwc").unwrap();
    let victim = slot_of(&info, "kafka");
    let before = committed();
    c.kill9_worker_and_wait_restart(victim.port);
    assert!(
        before.values().sum::<i64>() < total,
        "the kill came before the end"
    );
    // A partition with no records has nothing to commit.
    let done = || {
        let c = committed();
        ends.iter()
            .all(|(p, end)| c.get(p).copied().unwrap_or(0) >= *end)
    };
    let caught_up = squall::testing::wait_for(Duration::from_secs(300), done);
    assert!(
        caught_up,
        "group committed {:?} of {ends:?}; errors {:?}",
        committed(),
        c.info("kwc").map(|i| i.errors)
    );
    // The restarted task took its partitions up at the group's commit, or
    // later: nothing before the last commit was read again.
    let starts = starts(c.path());
    let mut restarted = 0;
    for (p, commit) in &before {
        let tp = format!("lines-{p}");
        let of_tp: Vec<i64> = starts
            .iter()
            .filter(|(_, t, _)| *t == tp)
            .map(|s| s.2)
            .collect();
        if of_tp.len() < 2 {
            continue;
        }
        restarted += 1;
        let last = of_tp[of_tp.len() - 1];
        assert!(
            last >= *commit,
            "{tp} restarted at {last} before its commit {commit}: {starts:?}"
        );
    }
    assert!(restarted > 0, "no partition was taken up again: {starts:?}");
    // The UI shows every partition caught up.
    let id = c.info("kwc").unwrap().summary.id;
    let lag_url = format!("{ui}/api/v1/topology/{id}/lag");
    let lag = || -> Option<BTreeMap<String, i64>> {
        let body: serde_json::Value = ureq::get(&lag_url).call().ok()?.into_json().ok()?;
        assert_eq!(body["kafka"]["spoutType"], "KAFKA");
        let parts = body["kafka"]["spoutLagResult"]["lines"]
            .as_object()?
            .clone();
        Some(
            parts
                .into_iter()
                .map(|(p, r)| (p, r["lag"].as_i64().unwrap_or(-1)))
                .collect(),
        )
    };
    wait_until(
        "the lag endpoint to show 4 caught-up partitions",
        Duration::from_secs(60),
        || lag().is_some_and(|l| l.len() == 4 && l.values().all(|v| *v == 0)),
    );
    // Every line counted at least once (a killed worker's lines after the
    // last commit are counted again).
    wait_until("counts written", Duration::from_secs(30), || {
        let got = std::process::Command::new(&example)
            .args(["--read", &counts_dir.display().to_string(), "--top", "0"])
            .output()
            .unwrap();
        got.status.success()
    });
    c.squall_ok(&["kill", "kwc", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    let merged = c.path().join("counts.tsv");
    run(&[
        "--read",
        &counts_dir.display().to_string(),
        "--top",
        "0",
        "--output",
        &merged.display().to_string(),
    ]);
    let got = corpus::read_counts(&merged);
    let expected = corpus::plain_count(&input);
    for (word, n) in &expected {
        let g = got.get(word).copied().unwrap_or(0);
        assert!(g >= *n, "{word}: counted {g}, in the corpus {n}");
    }
}

/// Records committed so far by Trident spout `name`: the ends of its last
/// committed batch's partition ranges.
fn trident_committed(c: &Cluster, name: &str) -> i64 {
    use squall_cluster::{StorageStore, ZkStorage};
    let Ok(zk) = ZkStorage::connect(&zookeeper(), &c.root, Duration::from_secs(10)) else {
        return 0;
    };
    let store = StorageStore::shared(std::sync::Arc::new(zk));
    match squall::trident::committed(&*store, name) {
        Ok(Some((_, Some(meta)))) => squall::connectors::kafka::meta_ranges(&meta)
            .iter()
            .map(|r| r.end)
            .sum(),
        _ => 0,
    }
}

#[test]
fn kafka_trident_word_count_with_a_worker_killed_is_exact() {
    let broker = Broker::start();
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let input = corpus::small_corpus(c.path());
    let produce = std::process::Command::new(corpus::example_named("kafka_word_count"))
        .args([
            "--brokers",
            &broker.address,
            "--topic",
            "lines",
            "--produce",
        ])
        .args(["--input", &input.display().to_string()])
        .output()
        .unwrap();
    assert!(
        produce.status.success(),
        "{}",
        String::from_utf8_lossy(&produce.stderr)
    );
    let total: i64 = broker.end_offsets("lines").values().sum();
    let example = corpus::example_named("trident_word_count");
    let state = c.path().join("trident-state");
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        "tk",
        "--kafka",
        &broker.address,
        "--topic",
        "lines",
        "--state-dir",
        &state.display().to_string(),
        "--workers",
        "3",
        "--batch-lines",
        "200",
        "--spout-parallelism",
        "2",
        "--count-parallelism",
        "2",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    wait_until("a few batches to commit", Duration::from_secs(120), || {
        trident_committed(&c, "tk") >= total / 10
    });
    // Kill a worker holding state partitions.
    let info = c.info("tk").unwrap();
    let victim = slot_of(&info, "b-1");
    let before = trident_committed(&c, "tk");
    c.kill9_worker_and_wait_restart(victim.port);
    wait_until("every record to commit", Duration::from_secs(300), || {
        trident_committed(&c, "tk") >= total
    });
    assert!(before < total, "the kill came after the last commit");
    c.squall_ok(&["kill", "tk", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    let counts = c.path().join("counts.tsv");
    let read = std::process::Command::new(&example)
        .args(["--read", &state.display().to_string(), "--top", "0"])
        .args(["--output", &counts.display().to_string()])
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
