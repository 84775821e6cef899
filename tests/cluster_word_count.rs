//! Word count on a real cluster (ZooKeeper, Nimbus, two supervisors,
//! worker processes over TCP), with faults: a worker killed with `kill -9`,
//! a worker frozen, and a supervisor killed.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::Duration;

fn two_supervisors() -> Cluster {
    two_supervisors_with(&[])
}

/// One Nimbus and two supervisors of two slots, with settings `conf`.
fn two_supervisors_with(conf: &[&str]) -> Cluster {
    let mut c = Cluster::new(1);
    c.extra_conf.extend(conf.iter().map(|s| s.to_string()));
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    c
}

/// A worker of the word count that does not run the spout.
fn slot_without_the_spout(
    info: &squall_cluster::rpc::TopologyInfo,
) -> squall_cluster::schema::WorkerSlot {
    let spout_slot = slot_of(info, "lines");
    info.executors
        .iter()
        .map(|e| e.3.clone())
        .find(|s| *s != spout_slot)
        .expect("a worker without the spout")
}

#[test]
fn word_count_across_three_workers_on_two_supervisors_is_exact() {
    let c = two_supervisors();
    let state = c.submit_word_count("wc", &["--workers", "3", "--max-spout-pending", "5000"]);
    let info = c.info("wc").expect("topology is listed");
    let mut slots: Vec<_> = info.executors.iter().map(|e| e.3.clone()).collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 3, "3 workers: {slots:?}");
    let supervisors: std::collections::BTreeSet<_> = slots.iter().map(|s| &s.supervisor).collect();
    assert_eq!(supervisors.len(), 2, "workers spread over both supervisors");
    let list = c.squall_ok(&["list"]);
    assert!(list.contains("wc") && list.contains("ACTIVE"), "{list}");

    c.wait_word_count_done(&state, Duration::from_secs(240));
    check_counts(&Cluster::merged_counts(&state));
    let (acked, _) = Cluster::spout_progress(&state).unwrap();
    assert_eq!(acked, 187_182, "every line acked once");
    c.squall_ok(&["kill", "wc", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
}

#[test]
fn a_worker_killed_with_kill_9_is_restarted_and_no_line_is_lost() {
    let c = two_supervisors();
    let state = c.submit_word_count(
        "wc-kill",
        &[
            "--workers",
            "3",
            "--max-spout-pending",
            "2000",
            "--repeat",
            "2",
        ],
    );
    Cluster::wait_acked(&state, 20_000, Duration::from_secs(60));
    // A worker without the spout: its counts and in-flight tuples are lost
    // and must be replayed.
    let victim_slot = slot_without_the_spout(&c.info("wc-kill").unwrap());
    c.kill9_worker_and_wait_restart(victim_slot.port);
    c.wait_word_count_done(&state, Duration::from_secs(300));
    let got = Cluster::merged_counts(&state);
    // Two passes over the corpus: every count at least twice the reference.
    check_counts_at_least(&got, 2);
}

#[test]
fn executors_of_a_killed_supervisor_move_to_the_other_one() {
    let mut c = two_supervisors();
    let state = c.submit_word_count(
        "wc-sup",
        &[
            "--workers",
            "2",
            "--max-spout-pending",
            "2000",
            "--repeat",
            "2",
        ],
    );
    Cluster::wait_acked(&state, 20_000, Duration::from_secs(60));
    let info = c.info("wc-sup").unwrap();
    let spout_sup = slot_of(&info, "lines").supervisor;
    let sups = c.cluster_info().unwrap().supervisors;
    let victim = sups.iter().position(|s| s.id != spout_sup).unwrap_or(1);
    let victim_id = sups[victim].id.clone();
    // Supervisor indexes follow start order; find ours by its id file.
    let index = (0..2)
        .find(|i| {
            std::fs::read_to_string(c.path().join(format!("supervisor-{i}/supervisor/id")))
                .is_ok_and(|id| id.trim() == victim_id)
        })
        .unwrap();
    c.supervisors[index].take().unwrap().kill9();
    wait_until(
        "executors to leave the dead supervisor",
        Duration::from_secs(60),
        || {
            c.info("wc-sup").is_some_and(|i| {
                !i.executors.is_empty() && i.executors.iter().all(|e| e.3.supervisor != victim_id)
            })
        },
    );
    c.wait_word_count_done(&state, Duration::from_secs(300));
    let got = Cluster::merged_counts(&state);
    check_counts_at_least(&got, 2);
}

/// Heartbeats go from the workers through their supervisors to Nimbus,
/// never to ZooKeeper: a frozen worker (SIGSTOP) whose supervisor would
/// wait longer than Nimbus is noticed by Nimbus within
/// `nimbus.task.timeout.secs` (8 s here) and its executors move; metrics
/// reach `squall info` the same way.
#[test]
fn a_frozen_worker_is_noticed_by_nimbus_and_no_heartbeat_is_written_to_zookeeper() {
    // The supervisor would restart the frozen worker after 5 s.
    let c = two_supervisors_with(&["supervisor.worker.timeout.secs=600"]);
    let name = "wc-frozen";
    let state = c.submit_word_count(
        name,
        &[
            "--workers",
            "2",
            "--max-spout-pending",
            "2000",
            "--repeat",
            "2",
        ],
    );
    Cluster::wait_acked(&state, 20_000, Duration::from_secs(60));
    wait_until("metrics in squall info", Duration::from_secs(30), || {
        c.info(name).is_some_and(|i| {
            i.metrics
                .components()
                .get("count")
                .is_some_and(|m| m.executed > 0)
        })
    });
    let zk = c.zookeeper().unwrap();
    use squall_cluster::StateStorage;
    assert_eq!(zk.get("/workerbeats").unwrap(), None, "no heartbeat znode");

    let victim = slot_without_the_spout(&c.info(name).unwrap());
    let pid = c.worker_pid_on(victim.port).unwrap();
    signal(pid, "STOP");
    let frozen = std::time::Instant::now();
    wait_until(
        "Nimbus to move the frozen worker's executors",
        Duration::from_secs(60),
        || {
            c.info(name).is_some_and(|i| {
                !i.executors.is_empty() && i.executors.iter().all(|e| e.3 != victim)
            })
        },
    );
    eprintln!(
        "Nimbus moved the executors {:?} after the freeze",
        frozen.elapsed()
    );
    let log = std::fs::read_to_string(&c.nimbus[0].as_ref().unwrap().log).unwrap();
    assert!(log.contains("worker stopped heartbeating"), "{log}");
    // Its supervisor stops it (SIGKILL reaches a stopped process).
    signal(pid, "CONT");
    c.wait_word_count_done(&state, Duration::from_secs(300));
    check_counts_at_least(&Cluster::merged_counts(&state), 2);
    assert_eq!(zk.get("/workerbeats").unwrap(), None, "no heartbeat znode");
}
