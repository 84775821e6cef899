//! LocalCluster lifecycle: several topologies, activate / deactivate, kill
//! with a wait, tick tuples, metrics.

mod common;

use common::*;
use squall::testing::{wait_for, Feeder};
use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts `next_tuple` calls (and those made while deactivated) and
/// emits a tracked tuple on each.
#[derive(Clone, Default)]
struct Calls {
    all: Arc<AtomicU64>,
    while_inactive: Arc<AtomicU64>,
    deactivations: Arc<AtomicU64>,
}
struct Ticking(Calls, u64, bool);
impl Spout for Ticking {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        self.0.all.fetch_add(1, Ordering::AcqRel);
        if self.2 {
            self.0.while_inactive.fetch_add(1, Ordering::AcqRel);
        }
        self.1 += 1;
        out.emit_with_id(values![self.1], self.1);
    }
    fn activate(&mut self) {
        self.2 = false;
    }
    fn deactivate(&mut self) {
        self.2 = true;
        self.0.deactivations.fetch_add(1, Ordering::AcqRel);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n"]);
    }
}

#[test]
fn deactivate_stops_next_tuple_and_activate_resumes_it() {
    let calls = Calls::default();
    let c = calls.clone();
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", move || Ticking(c.clone(), 0, false), 1)
        .set_max_spout_pending(100);
    b.set_bolt("sink", || AckAll, 1).shuffle_grouping("spout");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("act", &config(30), b.create_topology().unwrap())
        .unwrap();
    assert!(wait_for(DEADLINE, || calls.all.load(Ordering::Acquire) > 10));
    cluster.deactivate("act").unwrap();
    // The spout's executor calls `deactivate` and then never `next_tuple`
    // until `activate`; everything in flight drains meanwhile.
    assert!(wait_for(DEADLINE, || calls
        .deactivations
        .load(Ordering::Acquire)
        == 1));
    let frozen = calls.all.load(Ordering::Acquire);
    assert!(wait_for(DEADLINE, || cluster.in_flight("act").unwrap()
        == 0
        && cluster.metrics("act").unwrap().component("spout").pending
            == 0));
    assert_eq!(
        calls.all.load(Ordering::Acquire),
        frozen,
        "next_tuple called while inactive"
    );
    cluster.activate("act").unwrap();
    assert!(wait_for(DEADLINE, || calls.all.load(Ordering::Acquire) > frozen + 10));
    assert_eq!(calls.while_inactive.load(Ordering::Acquire), 0);
    cluster.shutdown();
}

#[test]
fn several_topologies_run_at_once_and_kill_with_wait_drains() {
    let (f1, f2) = (Feeder::new(["v"]), Feeder::new(["v"]));
    let cluster = LocalCluster::new();
    for (name, feeder) in [("one", &f1), ("two", &f2)] {
        let mut b = TopologyBuilder::new();
        b.set_spout("spout", feeder.spout(), 1);
        b.set_bolt("fan", || FanOut(4), 2).shuffle_grouping("spout");
        b.set_bolt("sink", || AckAll, 2).shuffle_grouping("fan");
        cluster
            .submit_topology(name, &config(30), b.create_topology().unwrap())
            .unwrap();
    }
    assert_eq!(cluster.topology_names(), vec!["one", "two"]);
    for i in 0..500 {
        f1.feed(values![i]);
        f2.feed(values![i]);
    }
    assert!(wait_for(DEADLINE, || f1.acked().len() == 500));
    let metrics = cluster
        .kill_topology_with_wait("two", Duration::from_secs(30))
        .unwrap();
    assert_eq!(cluster.topology_names(), vec!["one"]);
    // The wait drained topology "two" before killing it.
    assert_eq!(
        metrics.component("sink").executed,
        metrics.component("fan").emitted
    );
    cluster.shutdown();
}

/// Emits each tick it gets.
struct TickCounter;
impl Bolt for TickCounter {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        if t.is_tick() {
            out.emit(values![t.get_i64(0).unwrap()]);
        }
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["rate"]);
    }
}

#[test]
fn bolts_get_tick_tuples_at_the_configured_rate() {
    // Simulated time: each simulated second gives each task exactly one tick.
    let feeder = Feeder::new(["v"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", feeder.spout(), 1);
    b.set_bolt("ticks", || TickCounter, 2)
        .shuffle_grouping("spout");
    let mut c = config(30);
    c.tick_tuple_freq_secs = Some(1);
    let cluster = LocalCluster::simulated().unwrap();
    cluster
        .submit_topology("ticks", &c, b.create_topology().unwrap())
        .unwrap();
    let emitted = || cluster.metrics("ticks").unwrap().component("ticks").emitted;
    assert_eq!(emitted(), 0, "a tick before any simulated time passed");
    for second in 1..=5u64 {
        cluster.advance_time(Duration::from_secs(1));
        // Two tasks: two ticks a second.
        assert!(
            wait_for(DEADLINE, || emitted() >= 2 * second),
            "second {second}"
        );
    }
    assert_eq!(emitted(), 10);
    cluster.shutdown();
}

#[test]
fn metrics_cover_emits_transfers_acks_latencies_and_capacity() {
    let feeder = Feeder::new(["v"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", feeder.spout(), 1);
    b.set_bolt("fan", || FanOut(2), 1).shuffle_grouping("spout");
    b.set_bolt("sink", || AckAll, 3).all_grouping("fan");
    let mut c = config(30);
    c.stats_sample_rate = 1.0;
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("metrics", &c, b.create_topology().unwrap())
        .unwrap();
    for i in 0..100 {
        feeder.feed(values![i]);
    }
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 100));
    // Each executor publishes its metrics every 100 ms on its own: wait
    // until all three have published their last figures.
    assert!(wait_for(DEADLINE, || {
        let m = cluster.metrics("metrics").unwrap();
        m.component("sink").executed == 600
            && m.component("fan").executed == 100
            && m.component("spout").complete_latency.count == 100
    }));
    let m = cluster.metrics("metrics").unwrap();
    let (spout, fan, sink) = (
        m.component("spout"),
        m.component("fan"),
        m.component("sink"),
    );
    assert_eq!(
        (spout.emitted, spout.transferred, spout.acked),
        (100, 100, 100)
    );
    assert_eq!(
        (fan.emitted, fan.transferred, fan.acked, fan.executed),
        (200, 600, 100, 100)
    );
    assert_eq!(sink.acked, 600);
    assert_eq!(spout.complete_latency.count, 100);
    assert!(spout.complete_latency.p99_ms > 0.0);
    assert_eq!(fan.execute_latency.count, 100);
    assert!((0.0..=1.0).contains(&fan.capacity));
    let fan_task = m
        .tasks
        .values()
        .find(|t| t.component.as_str() == "fan")
        .unwrap();
    assert_eq!(fan_task.emitted["default"], 200);
    assert_eq!(fan_task.process_latency.count, 100);
    cluster.shutdown();
}

/// Panics on the value 13.
struct Superstitious;
impl Bolt for Superstitious {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        assert_ne!(t.get_i64(0).unwrap(), 13, "unlucky tuple");
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn a_panicking_bolt_is_reported_and_its_trees_time_out() {
    let (feeder, cluster) = run_fed("panic", &config(1), |b| {
        b.set_bolt("bolt", || Superstitious, 1)
            .shuffle_grouping("spout");
    });
    let ok = feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || feeder.acked() == vec![ok.clone()]));
    let unlucky = feeder.feed(values![13]);
    let after = feeder.feed(values![14]);
    assert!(wait_for(DEADLINE, || feeder.failed().len() == 2));
    let mut failed = feeder.failed();
    failed.sort_by_key(|(id, _)| id.as_i64());
    assert_eq!(
        failed,
        vec![(unlucky, FailReason::Timeout), (after, FailReason::Timeout)]
    );
    let errors = cluster.metrics("panic").unwrap().component("bolt").errors;
    assert!(
        errors
            .iter()
            .any(|e| e.contains("panicked: assertion") && e.contains("unlucky tuple")),
        "{errors:?}"
    );
    cluster.shutdown();
}

/// LocalCluster runs on Nimbus and a supervisor: Nimbus validates and
/// records the topology, schedules it onto the supervisor's slot, and its
/// status follows activate / deactivate / kill.
#[test]
fn topologies_go_through_nimbus_and_the_supervisor() {
    let feeder = Feeder::new(["v"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", feeder.spout(), 1);
    b.set_bolt("sink", || AckAll, 3).shuffle_grouping("spout");
    let cluster = LocalCluster::new();
    let mut c = config(30);
    c.workers = 4;
    cluster
        .submit_topology("nimbus-path", &c, b.create_topology().unwrap())
        .unwrap();
    let info = cluster.topology_info("nimbus-path").unwrap();
    assert_eq!(info.summary.status, TopologyStatus::Active);
    assert_eq!(info.summary.num_workers, 1, "LocalCluster runs one worker");
    let sinks: Vec<_> = info.executors.iter().filter(|e| e.0 == "sink").collect();
    assert_eq!(sinks.len(), 3);
    let cluster_info = cluster.cluster_info().unwrap();
    assert_eq!(cluster_info.supervisors.len(), 1);
    assert_eq!(cluster_info.supervisors[0].used_slots, 1);
    assert_eq!(
        info.executors[0].3.supervisor,
        cluster_info.supervisors[0].id
    );

    let id = feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || feeder.acked() == vec![id.clone()]));
    // Metrics reach Nimbus through the worker's heartbeats.
    assert!(wait_for(DEADLINE, || {
        let m = cluster.topology_info("nimbus-path").unwrap().metrics;
        m.component("sink").executed == 1
    }));
    cluster.deactivate("nimbus-path").unwrap();
    let status = cluster.topology_info("nimbus-path").unwrap().summary.status;
    assert_eq!(status, TopologyStatus::Inactive);

    // Nimbus's refusals come back named.
    let mut dup = TopologyBuilder::new();
    dup.set_spout("spout", Feeder::new(["v"]).spout(), 1);
    let err = cluster
        .submit_topology("nimbus-path", &c, dup.create_topology().unwrap())
        .unwrap_err();
    assert!(matches!(err, LocalClusterError::AlreadyRunning(_)), "{err}");
    let mut bad = TopologyBuilder::new();
    bad.set_spout("spout", Feeder::new(["v"]).spout(), 1);
    let err = cluster
        .submit_topology("a/b", &c, bad.create_topology().unwrap())
        .unwrap_err();
    assert!(matches!(err, LocalClusterError::InvalidName(_)), "{err}");

    cluster.kill_topology("nimbus-path").unwrap();
    assert!(matches!(
        cluster.topology_info("nimbus-path"),
        Err(LocalClusterError::NotFound(_))
    ));
    assert_eq!(cluster.cluster_info().unwrap().supervisors[0].used_slots, 0);
    cluster.shutdown();
}
