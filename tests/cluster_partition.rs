//! A supervisor on its own host (a network namespace joined by a veth
//! pair) cut off from ZooKeeper, Nimbus and the other workers, then
//! healed: its executors move while it is away, and once it is back no
//! executor runs in two workers and no line is lost.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::Duration;

fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_supervisor_cut_off_loses_its_executors_and_none_runs_twice_when_it_returns() {
    let ns = NetNs::create();
    let zk = PrivateZooKeeper::start_on(&ns.host_ip);
    let mut c = Cluster::on_zookeeper(1, zk.address());
    c.host = ns.host_ip.clone();
    c.start_nimbus(0);
    c.start_supervisor(2);
    let inside = c.start_supervisor_in(2, &ns);
    c.wait_supervisors(2);
    let state = c.submit_word_count(
        "cut",
        &[
            "--workers",
            "2",
            "--max-spout-pending",
            "2000",
            "--repeat",
            "2",
        ],
    );
    Cluster::wait_acked(&state, 10_000, Duration::from_secs(90));
    let inside_id =
        std::fs::read_to_string(c.path().join(format!("supervisor-{inside}/supervisor/id")))
            .unwrap()
            .trim()
            .to_owned();
    let info = c.info("cut").unwrap();
    let inside_slot = info
        .executors
        .iter()
        .map(|e| e.3.clone())
        .find(|s| s.supervisor == inside_id)
        .expect("a worker on the namespaced supervisor");
    assert_eq!(inside_slot.host, ns.ns_ip);
    let cut_off_worker = c
        .worker_pid_on(inside_slot.port)
        .expect("the namespaced worker's process");

    ns.cut();
    wait_until(
        "the executors to leave the cut-off supervisor",
        Duration::from_secs(60),
        || {
            c.info("cut").is_some_and(|i| {
                !i.executors.is_empty() && i.executors.iter().all(|e| e.3.supervisor != inside_id)
            })
        },
    );
    ns.heal();
    c.wait_supervisors(2);
    // Back on the network, the cut-off worker learns its executors moved
    // and stops (or its supervisor stops it).
    wait_until(
        "the cut-off worker to stop",
        Duration::from_secs(60),
        || !runs(cut_off_worker),
    );
    // Every executor runs in exactly one worker: one process per slot of
    // the assignment, none elsewhere.
    let info = c.info("cut").unwrap();
    let mut slots: Vec<_> = info.executors.iter().map(|e| e.3.clone()).collect();
    slots.sort();
    slots.dedup();
    wait_until(
        "one worker per assigned slot",
        Duration::from_secs(60),
        || {
            c.worker_pids().len() == slots.len()
                && slots.iter().all(|s| c.worker_pid_on(s.port).is_some())
        },
    );
    c.wait_word_count_done(&state, Duration::from_secs(300));
    check_counts_at_least(&Cluster::merged_counts(&state), 2);
}
