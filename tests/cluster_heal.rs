//! A real cluster heals from control-plane faults: ZooKeeper stopped for
//! longer than the session timeout, a supervisor paused past its session,
//! a Nimbus that lost its binaries, workers killed while ZooKeeper is down
//! (reaped, no zombies) and a worker stopped with SIGTERM (its components
//! clean up).

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::{Duration, Instant};

/// The session timeout the test clusters run with (`Cluster::conf`).
const SESSION: Duration = Duration::from_millis(4000);

/// Holds a fault for `d`. The duration is the fault being injected (an
/// outage or a pause longer than the session timeout), not a wait for an
/// outcome: outcomes are awaited with `wait_until`.
fn hold_fault(d: Duration) {
    std::thread::sleep(d);
}

fn corpus_lines(input: &std::path::Path) -> u64 {
    std::fs::read_dir(input)
        .unwrap()
        .map(|e| {
            let text = std::fs::read(e.unwrap().path()).unwrap();
            String::from_utf8_lossy(&text).split_inclusive('\n').count() as u64
        })
        .sum()
}

/// Submits the Trident word count (durable redb state) as `name`; returns
/// its state folder.
fn submit_trident(c: &Cluster, name: &str, workers: &str) -> std::path::PathBuf {
    let example = corpus::example_named("trident_word_count");
    let state = c.path().join(format!("{name}-state"));
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        name,
        "--input",
        &corpus::corpus().display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--workers",
        workers,
        "--batch-lines",
        "1000",
        "--count-parallelism",
        "2",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    state
}

/// Waits until every line is committed, kills the topology and checks
/// its counts are exact.
fn finish_exact(c: &Cluster, name: &str, state: &std::path::Path) {
    let input = corpus::corpus();
    let lines = corpus_lines(&input);
    wait_until("every line to commit", Duration::from_secs(300), || {
        committed_lines(c, name) >= lines
    });
    c.kill_and_wait_workers(name);
    let counts = c.path().join(format!("{name}-counts.tsv"));
    let read = std::process::Command::new(corpus::example_named("trident_word_count"))
        .arg("--read")
        .arg(state)
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
    assert_eq!(
        corpus::read_counts(&counts),
        corpus::plain_count(&input),
        "counts are exact"
    );
}

fn supervisor_pid(c: &Cluster, i: usize) -> u32 {
    c.supervisors[i].as_ref().unwrap().child.id()
}

#[test]
fn zookeeper_down_longer_than_the_session_timeout_heals() {
    let mut zk = PrivateZooKeeper::start();
    let mut c = Cluster::on_zookeeper(1, zk.address());
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let state = submit_trident(&c, "zk-down", "3");
    wait_until("a few batches to commit", Duration::from_secs(120), || {
        committed_lines(&c, "zk-down") >= 5_000
    });
    let info = c.info("zk-down").unwrap();
    let sups: Vec<u32> = (0..2).map(|i| supervisor_pid(&c, i)).collect();

    zk.stop();
    let down = Instant::now();
    // A worker killed while ZooKeeper is down is reaped: no zombie stays
    // under its supervisor.
    let victim = slot_of(&info, "b-1");
    let pid = c
        .worker_pid_on(victim.port)
        .expect("worker on the victim slot");
    kill9(pid);
    wait_until(
        "the killed worker to be reaped",
        Duration::from_secs(20),
        || sups.iter().all(|s| zombie_children(*s).is_empty()),
    );
    // Nimbus cannot confirm it leads: it refuses to change anything.
    let refused = c.squall(&["deactivate", "zk-down"]);
    assert!(
        !refused.status.success(),
        "deactivate succeeded with ZooKeeper down: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        said.contains("ZooKeeper") || said.contains("leader"),
        "the refusal names the cause: {said}"
    );
    hold_fault((SESSION * 3).saturating_sub(down.elapsed()));
    zk.resume();

    // Within two session timeouts (plus a round of each daemon's loop),
    // every daemon has a new session (the old ones' ephemeral nodes may
    // linger until ZooKeeper expires them), a leader and both supervisors
    // are registered, and the CLI works.
    let healed = SESSION * 2 + Duration::from_secs(5);
    let renewed = |log: &str| {
        std::fs::read_to_string(c.path().join(log))
            .is_ok_and(|t| t.contains("ZooKeeper session re-created"))
    };
    wait_until(
        "new sessions, a leader and both supervisors",
        healed,
        || {
            ["nimbus-0.log", "supervisor-0.log", "supervisor-1.log"]
                .iter()
                .all(|l| renewed(l))
                && c.cluster_info()
                    .is_some_and(|s| s.leader.is_some() && s.supervisors.len() == 2)
        },
    );
    let list = c.squall_ok(&["list"]);
    assert!(
        list.contains("zk-down") && list.contains("ACTIVE"),
        "{list}"
    );

    // A worker killed after the outage is restarted.
    let info = c.info("zk-down").unwrap();
    c.kill9_worker_and_wait_restart(slot_of(&info, "b-1").port);
    finish_exact(&c, "zk-down", &state);
}

#[test]
fn a_supervisor_paused_past_its_session_rejoins_and_gets_slots_again() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let paused = supervisor_pid(&c, 1);
    let paused_id = std::fs::read_to_string(c.path().join("supervisor-1/supervisor/id"))
        .unwrap()
        .trim()
        .to_owned();
    signal(paused, "STOP");
    let since = Instant::now();
    wait_until(
        "Nimbus to drop the paused supervisor",
        Duration::from_secs(30),
        || {
            c.cluster_info()
                .is_some_and(|s| s.supervisors.iter().all(|x| x.id != paused_id))
        },
    );
    hold_fault((SESSION * 2).saturating_sub(since.elapsed()));
    signal(paused, "CONT");
    c.wait_supervisors(2);
    // Four workers need the slots of both supervisors.
    let state = submit_trident(&c, "rejoined", "4");
    wait_until(
        "executors on the rejoined supervisor",
        Duration::from_secs(60),
        || {
            c.info("rejoined")
                .is_some_and(|i| i.executors.iter().any(|e| e.3.supervisor == paused_id))
        },
    );
    finish_exact(&c, "rejoined", &state);
}

#[test]
fn a_new_leader_without_the_first_leaders_files_serves_the_binary() {
    let mut c = Cluster::new(2);
    c.start_nimbus(0);
    wait_until("nimbus 0 to lead", Duration::from_secs(30), || {
        c.cluster_info().is_some_and(|s| s.leader.is_some())
    });
    c.start_nimbus(1);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let state = submit_trident(&c, "blobs", "2");
    wait_until(
        "the binary on both Nimbuses",
        Duration::from_secs(60),
        || {
            c.info("blobs")
                .is_some_and(|i| i.summary.replication_count == 2)
        },
    );
    let info = c.squall_ok(&["info", "blobs"]);
    assert!(info.contains("binary on 2 Nimbus"), "{info}");

    // The leader loses its files and dies; the only supervisor goes too.
    let blobs = c.nimbus_dir(0).join("nimbus").join("blobs");
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    c.nimbus[0].take().unwrap().kill9();
    c.supervisors[0].take().unwrap().kill9();
    for pid in c.worker_pids() {
        kill9(pid);
    }
    wait_until("nimbus 1 to lead", Duration::from_secs(30), || {
        c.cluster_info()
            .is_some_and(|s| s.leader.as_deref() == Some(c.nimbus_addresses()[1].as_str()))
    });
    // A fresh supervisor has no binary: it must fetch it from nimbus 1.
    c.start_supervisor(2);
    wait_until(
        "workers on the fresh supervisor",
        Duration::from_secs(90),
        || c.worker_pids().len() == 2,
    );
    finish_exact(&c, "blobs", &state);
}

#[test]
fn a_worker_stopped_with_sigterm_cleans_up_and_is_replaced() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let state = c.submit_word_count(
        "graceful",
        &[
            "--workers",
            "1",
            "--max-spout-pending",
            "2000",
            "--fast-ack",
        ],
    );
    Cluster::wait_acked(&state, 5_000, Duration::from_secs(60));
    let info = c.info("graceful").unwrap();
    let port = slot_of(&info, "count").port;
    let pid = c.worker_pid_on(port).unwrap();
    signal(pid, "TERM");
    wait_until("the worker to be replaced", Duration::from_secs(60), || {
        c.worker_pid_on(port).is_some_and(|p| p != pid)
    });
    let log = c
        .path()
        .join("supervisor-0/logs")
        .join(&info.summary.id)
        .join(format!("worker-{port}.log"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("count task") && text.contains("closed"),
        "the count bolt's cleanup ran: {text}"
    );
    let sup = supervisor_pid(&c, 0);
    wait_until("no zombie worker", Duration::from_secs(10), || {
        zombie_children(sup).is_empty()
    });
    c.wait_word_count_done(&state, Duration::from_secs(300));
    // Fast acks keep the last counts in memory until a tick or cleanup:
    // killing the topology stops its worker gracefully, which writes them.
    c.kill_and_wait_workers("graceful");
    // Nothing acked is lost; replays may add.
    check_counts_at_least(&Cluster::merged_counts(&state), 1);
}
