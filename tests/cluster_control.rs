//! Topology control on a real cluster: deactivate / activate, rebalance
//! with Storm's wait semantics, and kill with a wait.

mod cluster_support;
mod corpus;

use cluster_support::*;
use std::time::Duration;

fn spout_emitted(c: &Cluster, name: &str) -> u64 {
    c.info(name)
        .map(|i| i.metrics.component("lines").emitted)
        .unwrap_or(0)
}

fn status(c: &Cluster, name: &str) -> Option<String> {
    c.info(name).map(|i| format!("{:?}", i.summary.status))
}

#[test]
fn deactivate_pauses_spouts_activate_resumes_and_rebalance_respreads() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.start_supervisor(2);
    c.wait_supervisors(2);
    let state = c.submit_word_count(
        "ctl",
        &[
            "--workers",
            "2",
            "--max-spout-pending",
            "2000",
            "--repeat",
            "2",
        ],
    );
    wait_until("lines flowing", Duration::from_secs(60), || {
        spout_emitted(&c, "ctl") > 5_000
    });

    c.squall_ok(&["deactivate", "ctl"]);
    assert_eq!(status(&c, "ctl").as_deref(), Some("Inactive"));
    // Heartbeats come every second: wait until two reads 1.5 s apart agree,
    // then check that nothing more is emitted over three more beats.
    let mut last = spout_emitted(&c, "ctl");
    wait_until("spout to stop emitting", Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(1500));
        let now = spout_emitted(&c, "ctl");
        std::mem::replace(&mut last, now) == now
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        spout_emitted(&c, "ctl"),
        last,
        "next_tuple was called while inactive"
    );

    c.squall_ok(&["activate", "ctl"]);
    wait_until("spout to resume", Duration::from_secs(30), || {
        spout_emitted(&c, "ctl") > last
    });

    // Rebalance to 3 workers and 3 count executors after a 2 s wait.
    let out = c.squall_ok(&["rebalance", "ctl", "-w", "2", "-n", "3", "-e", "count=3"]);
    assert!(out.contains("rebalancing"), "{out}");
    assert_eq!(status(&c, "ctl").as_deref(), Some("Rebalancing"));
    let refused = c.squall(&["activate", "ctl"]);
    assert!(
        !refused.status.success(),
        "activate during a rebalance must be refused"
    );
    wait_until("the rebalanced assignment", Duration::from_secs(60), || {
        c.info("ctl").is_some_and(|i| {
            let mut slots: Vec<_> = i.executors.iter().map(|e| e.3.clone()).collect();
            slots.sort();
            slots.dedup();
            let counts = i.executors.iter().filter(|e| e.0 == "count").count();
            slots.len() == 3 && counts == 3 && format!("{:?}", i.summary.status) == "Active"
        })
    });
    // Bad rebalances are refused with the reason.
    let bad = c.squall(&["rebalance", "ctl", "-e", "nope=2"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no component \"nope\""));
    let bad = c.squall(&["rebalance", "ctl", "-e", "count=99"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("must be 1 to"));

    c.wait_word_count_done(&state, Duration::from_secs(200));
    let got = Cluster::merged_counts(&state);
    check_counts_at_least(&got, 2);

    // Kill with a wait: deactivated at once, removed after the wait.
    c.squall_ok(&["kill", "ctl", "-w", "3"]);
    assert_eq!(status(&c, "ctl").as_deref(), Some("Killed"));
    wait_until("the killed topology to go", Duration::from_secs(30), || {
        c.info("ctl").is_none()
    });
    wait_until("its workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    assert!(c.squall_ok(&["list"]).contains("No topologies running."));
}
