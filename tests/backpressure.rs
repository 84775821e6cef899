//! Backpressure: a fast spout with no max.spout.pending into a slow bolt
//! completes, with bounded memory and no deadlock.

mod common;

use common::*;
use squall::testing::wait_for;
use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Acks after a pause: about 20k tuples/s at most.
struct Slow;
impl Bolt for Slow {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        std::thread::sleep(Duration::from_micros(50));
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn small_queues() -> Config {
    let mut c = config(120);
    c.executor_receive_buffer_size = 1024;
    c.producer_batch_size = 64;
    c
}

/// Upper bound on tuples that can be pending in a chain: the slow bolt's
/// queue, the spout's and the fan-out bolt's output buffers, and acks on
/// their way (in the acker's queue).
const BOUND: u64 = 4 * 1024;

/// The same for a cycle of two bolts: each bolt's queue (1024 tuples), the
/// buffer each holds for the other while that one's queue is full (at most
/// what it drains from its own queue meanwhile, 1024 each), the acker's
/// queue (1024 acks), and output buffers.
const CYCLE_BOUND: u64 = 6 * 1024;

/// Runs `spout` (a `CountingSpout` of `total` ids) plus what `wire` adds
/// until every id is acked, checking that pending stayed under `bound`.
fn run_to_completion(
    name: &str,
    total: u64,
    bound: u64,
    wire: impl FnOnce(&mut TopologyBuilder),
) -> Arc<SpoutStats> {
    let stats = Arc::new(SpoutStats::default());
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", CountingSpout::factory(total, stats.clone()), 1);
    wire(&mut b);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, &small_queues(), b.create_topology().unwrap())
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(120), || stats.acked() == total),
        "acked {} of {total}: deadlock?",
        stats.acked()
    );
    let max = stats.in_flight_max.load(Ordering::Acquire);
    eprintln!("most tuples pending at once: {max}");
    assert!(
        max <= bound,
        "pending reached {max}, over the bound {bound}"
    );
    cluster.shutdown();
    stats
}

#[test]
fn fast_spout_into_slow_bolt_completes_with_bounded_pending() {
    let stats = run_to_completion("bp", 40_000, BOUND, |b| {
        b.set_bolt("slow", || Slow, 1).shuffle_grouping("spout");
    });
    assert_eq!(stats.failed(), 0);
}

#[test]
fn blocked_fan_out_bolt_does_not_deadlock_acking() {
    // spout -> fan (10 tuples per input, blocks on the slow bolt's full
    // queue) -> slow. Acks from every bolt must still flow.
    run_to_completion("bp-fan", 3_000, BOUND, |b| {
        b.set_bolt("fan", || FanOut(10), 1)
            .shuffle_grouping("spout");
        b.set_bolt("slow", || Slow, 1).shuffle_grouping("fan");
    });
}

/// Sends each tuple round the cycle `ring -> back -> ring` until it has
/// made `LAPS` laps, then acks it.
const LAPS: i64 = 5;
struct Ring;
impl Bolt for Ring {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let n = t.get(0).cloned().unwrap_or(Value::Null);
        let lap = t.get(1).and_then(Value::as_i64).unwrap_or(0);
        if lap < LAPS {
            out.emit_anchored(t, values![n, lap + 1]);
        }
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n", "lap"]);
    }
}

#[test]
fn a_cycle_of_bolts_with_full_queues_does_not_deadlock() {
    // spout -> ring <-> back: each tuple laps the cycle five times, so
    // both bolts' queues fill with each other's tuples.
    let stats = run_to_completion("bp-cycle", 20_000, CYCLE_BOUND, |b| {
        b.set_bolt("ring", || Ring, 1)
            .shuffle_grouping("spout")
            .shuffle_grouping("back");
        b.set_bolt("back", || Ring, 1).shuffle_grouping("ring");
    });
    assert_eq!(stats.failed(), 0);
}

/// Emits ten untracked tuples per input, counting them.
struct CountedFan(Arc<AtomicU64>);
impl Bolt for CountedFan {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        for i in 0..10 {
            out.emit(values![t.get(0).cloned().unwrap_or_default(), i]);
            self.0.fetch_add(1, Ordering::AcqRel);
        }
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["v", "i"]);
    }
}

/// Executes slowly, recording the most tuples the fan had emitted that it
/// had not executed yet.
struct CountedSlow {
    fan: Arc<AtomicU64>,
    executed: Arc<AtomicU64>,
    behind_max: Arc<AtomicU64>,
}
impl Bolt for CountedSlow {
    fn execute(&mut self, _: &Tuple, _: &mut OutputCollector<'_>) {
        std::thread::sleep(Duration::from_micros(20));
        let done = self.executed.fetch_add(1, Ordering::AcqRel) + 1;
        let behind = self.fan.load(Ordering::Acquire).saturating_sub(done);
        self.behind_max.fetch_max(behind, Ordering::AcqRel);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn a_bolt_with_held_output_takes_no_input_until_it_leaves() {
    // spout -> fan (ten tuples per input) -> slow, no ackers: nothing
    // bounds the spout but backpressure. The fan waits while the slow
    // bolt's queue is full, so what it emitted and the slow bolt has not
    // run stays within that queue (1024 tuples), the batch the slow bolt
    // is running (64), and the fan's buffer (under 64) plus its output for
    // one input batch (640): 1,791. A fan that kept taking input would
    // hold ten tuples for every one in its own queue (10,240 more).
    const BEHIND_BOUND: u64 = 2 * 1024;
    let total = 20_000u64;
    let stats = Arc::new(SpoutStats::default());
    let (fan, executed, behind_max) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", CountingSpout::factory(total, stats.clone()), 1);
    let f = fan.clone();
    b.set_bolt("fan", move || CountedFan(f.clone()), 1)
        .shuffle_grouping("spout");
    let (f, e, m) = (fan.clone(), executed.clone(), behind_max.clone());
    b.set_bolt(
        "slow",
        move || CountedSlow {
            fan: f.clone(),
            executed: e.clone(),
            behind_max: m.clone(),
        },
        1,
    )
    .shuffle_grouping("fan");
    let mut config = small_queues();
    config.acker_executors = Some(0);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("bp-wait", &config, b.create_topology().unwrap())
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(120), || executed
            .load(Ordering::Acquire)
            == total * 10),
        "the slow bolt ran {} of {}",
        executed.load(Ordering::Acquire),
        total * 10
    );
    let behind = behind_max.load(Ordering::Acquire);
    eprintln!("most tuples between the fan and the slow bolt: {behind}");
    assert!(
        behind <= BEHIND_BOUND,
        "{behind} tuples between the fan and the slow bolt, over {BEHIND_BOUND}"
    );
    cluster.shutdown();
}
