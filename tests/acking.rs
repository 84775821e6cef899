//! Acking through LocalCluster, after Storm's integration tests
//! (`TestingTest`, `test-acking` in `integration_test.clj`).

mod common;

use common::*;
use squall::testing::{wait_for, Feeder};
use squall::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn ids(vals: &[Value]) -> BTreeSet<i64> {
    vals.iter().map(|v| v.as_i64().unwrap()).collect()
}

#[test]
fn fan_out_tree_acks_exactly_once_per_spout_tuple() {
    let (feeder, cluster) = run_fed("fan-out", &config(30), |b| {
        b.set_bolt("fan", || FanOut(3), 2).shuffle_grouping("spout");
        b.set_bolt("fan2", || FanOut(2), 3).shuffle_grouping("fan");
        b.set_bolt("sink", || AckAll, 2).all_grouping("fan2");
    });
    for i in 0..200 {
        feeder.feed(values![i]);
    }
    assert!(
        wait_for(DEADLINE, || feeder.acked().len() == 200),
        "acked {}",
        feeder.acked().len()
    );
    assert!(wait_for(DEADLINE, || cluster.in_flight("fan-out").unwrap() == 0));
    let acked = feeder.acked();
    assert_eq!(acked.len(), 200, "each spout tuple acked exactly once");
    assert_eq!(ids(&acked), (0..200).collect());
    assert!(feeder.failed().is_empty());
    // Metrics are published every 100 ms.
    let executed = || {
        cluster
            .metrics("fan-out")
            .unwrap()
            .component("sink")
            .executed
    };
    assert!(
        wait_for(DEADLINE, || executed() == 200 * 3 * 2 * 2),
        "sink executed {}",
        executed()
    );
    cluster.shutdown();
}

/// Holds inputs until it has two, then emits one tuple anchored to both and
/// acks both.
#[derive(Default)]
struct Pair(Vec<Tuple>);
impl Bolt for Pair {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        self.0.push(t.clone());
        if self.0.len() == 2 {
            let (a, b) = (&self.0[0], &self.0[1]);
            out.emit_anchored(
                &[a, b],
                values![a.get(0).cloned().unwrap(), b.get(0).cloned().unwrap()],
            );
            out.ack(a);
            out.ack(b);
            self.0.clear();
        }
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["a", "b"]);
    }
}

/// Acks only after it has seen `n` tuples (then acks all it holds).
struct AckAfter {
    n: usize,
    held: Vec<Tuple>,
}
impl Bolt for AckAfter {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        self.held.push(t.clone());
        if self.held.len() >= self.n {
            for h in self.held.drain(..) {
                out.ack(&h);
            }
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn tuple_anchored_to_several_inputs_completes_all_their_trees() {
    let (feeder, cluster) = run_fed("multi", &config(30), |b| {
        b.set_bolt("pair", Pair::default, 1)
            .global_grouping("spout");
        b.set_bolt(
            "sink",
            || AckAfter {
                n: 2,
                held: Vec::new(),
            },
            1,
        )
        .global_grouping("pair");
    });
    feeder.feed(values![1]);
    feeder.feed(values![2]);
    feeder.feed(values![3]);
    feeder.feed(values![4]);
    // The two pair tuples are held by the sink until it has both: no tree
    // can complete before that, and then all four do.
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 4));
    assert_eq!(ids(&feeder.acked()), BTreeSet::from([0, 1, 2, 3]));
    cluster.shutdown();
}

#[test]
fn failing_a_tuple_anchored_to_several_inputs_fails_all_their_trees() {
    let (feeder, cluster) = run_fed("multi-fail", &config(30), |b| {
        b.set_bolt("pair", Pair::default, 1)
            .global_grouping("spout");
        b.set_bolt("sink", || FailAll, 1).global_grouping("pair");
    });
    feeder.feed(values![1]);
    feeder.feed(values![2]);
    assert!(wait_for(DEADLINE, || feeder.failed().len() == 2));
    assert!(feeder
        .failed()
        .iter()
        .all(|(_, r)| *r == FailReason::Failed));
    assert!(feeder.acked().is_empty());
    cluster.shutdown();
}

/// Emits each input anchored twice to the same input.
struct DoubleAnchor;
impl Bolt for DoubleAnchor {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.emit_anchored(&[t, t], values![1]);
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["x"]);
    }
}

#[test]
fn anchoring_twice_to_the_same_input_still_completes() {
    let (feeder, cluster) = run_fed("double", &config(30), |b| {
        b.set_bolt("double", || DoubleAnchor, 1)
            .shuffle_grouping("spout");
        b.set_bolt(
            "sink",
            || AckAfter {
                n: 3,
                held: Vec::new(),
            },
            1,
        )
        .shuffle_grouping("double");
    });
    for i in 0..3 {
        feeder.feed(values![i]);
    }
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 3));
    assert!(feeder.failed().is_empty());
    cluster.shutdown();
}

/// Emits each input unanchored and acks it.
struct Unanchored;
impl Bolt for Unanchored {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.emit(values![1]);
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["x"]);
    }
}

#[test]
fn unanchored_emit_does_not_hold_the_tree() {
    // A blackhole downstream never acks, yet the tree completes long before
    // the 30 s timeout because the emit was not anchored.
    let (feeder, cluster) = run_fed("unanchored", &config(30), |b| {
        b.set_bolt("free", || Unanchored, 1)
            .shuffle_grouping("spout");
        b.set_bolt("hole", || Blackhole, 1).shuffle_grouping("free");
    });
    let start = Instant::now();
    feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 1));
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(feeder.failed().is_empty());
    cluster.shutdown();
}

#[test]
fn explicit_fail_reaches_the_spout_promptly_with_reason_failed() {
    let (feeder, cluster) = run_fed("fail", &config(300), |b| {
        b.set_bolt("fan", || FanOut(2), 1).shuffle_grouping("spout");
        b.set_bolt("fail", || FailAll, 1).shuffle_grouping("fan");
    });
    let start = Instant::now();
    let id = feeder.feed(values![7]);
    assert!(wait_for(Duration::from_secs(60), || !feeder
        .failed()
        .is_empty()));
    // Far sooner than the 300 s message timeout: the fail came from the acker.
    assert!(start.elapsed() < Duration::from_secs(60));
    assert_eq!(feeder.failed(), vec![(id, FailReason::Failed)]);
    assert_eq!(FailReason::Failed.to_string(), "failed");
    assert!(wait_for(DEADLINE, || cluster
        .metrics("fail")
        .unwrap()
        .component("spout")
        .failed
        == 1));
    let tasks = cluster.metrics("fail").unwrap().tasks;
    let spout = tasks
        .values()
        .find(|t| t.component.as_str() == "spout")
        .unwrap();
    assert_eq!((spout.failed_explicit, spout.failed_timeout), (1, 0));
    cluster.shutdown();
}

#[test]
fn tuple_never_acked_fails_after_the_message_timeout_with_reason_timeout() {
    // Simulated time: the timeout happens when the test moves the clock,
    // never because the machine was slow.
    let (feeder, cluster) = run_fed_on(
        LocalCluster::simulated().unwrap(),
        "timeout",
        &config(30),
        |b| {
            b.set_bolt("hole", || Blackhole, 1)
                .shuffle_grouping("spout");
        },
    );
    let id = feeder.feed(values![7]);
    assert!(wait_for(DEADLINE, || executed(&cluster, "timeout", "hole") == 1));
    // No simulated time has passed: nothing can have timed out.
    assert!(feeder.failed().is_empty(), "failed before the 30 s timeout");
    // Storm's rotating pending map: a tuple times out between T and
    // T + T / (buckets - 1) after it was emitted.
    cluster.advance_time(Duration::from_secs(45));
    assert!(wait_for(DEADLINE, || !feeder.failed().is_empty()));
    assert_eq!(feeder.failed(), vec![(id, FailReason::Timeout)]);
    assert_eq!(FailReason::Timeout.to_string(), "timeout");
    assert!(feeder.acked().is_empty());
    assert!(wait_for(DEADLINE, || {
        let m = cluster.metrics("timeout").unwrap();
        m.tasks
            .values()
            .any(|t| t.component.as_str() == "spout" && t.failed_timeout == 1)
    }));
    cluster.shutdown();
}

/// Holds each input, resets its timeout on every tick, acks it on the
/// `ack_on`-th tick; counts its ticks in `ticks`.
/// With `emit_first`, it emits one tuple anchored to each input at once.
struct SlowWorker {
    held: Vec<Tuple>,
    ticks: Arc<AtomicU32>,
    ack_on: u32,
    emit_first: bool,
}
impl Bolt for SlowWorker {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        if !t.is_tick() {
            if self.emit_first {
                out.emit_anchored(t, values![1]);
            }
            self.held.push(t.clone());
            return;
        }
        if self.held.is_empty() {
            return;
        }
        let ticks = self.ticks.fetch_add(1, Ordering::AcqRel) + 1;
        for h in &self.held {
            if ticks >= self.ack_on {
                out.ack(h);
            } else {
                out.reset_timeout(h);
            }
        }
        if ticks >= self.ack_on {
            self.held.clear();
        }
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["x"]);
    }
}

fn slow_worker(
    ack_on: u32,
    emit_first: bool,
    ticks: Arc<AtomicU32>,
) -> impl Fn() -> SlowWorker + Send + Sync {
    move || SlowWorker {
        held: Vec::new(),
        ticks: ticks.clone(),
        ack_on,
        emit_first,
    }
}

/// Feeds one tuple to a `SlowWorker` holding it for `ack_on` one-second
/// ticks under a `timeout` s message timeout, on simulated time moved one
/// second per tick; returns the feeder once the tuple is acked or failed.
fn hold_past_the_timeout(name: &str, timeout: u64, ack_on: u32, emit_first: bool) -> Feeder {
    let ticks = Arc::new(AtomicU32::new(0));
    let t = ticks.clone();
    let (feeder, cluster) = run_fed_on(
        LocalCluster::simulated().unwrap(),
        name,
        &config(timeout),
        |b| {
            b.set_bolt("slow", slow_worker(ack_on, emit_first, t), 1)
                .shuffle_grouping("spout")
                .set_tick_tuple_freq_secs(1);
            b.set_bolt("sink", || AckAll, 1).shuffle_grouping("slow");
        },
    );
    feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || executed(&cluster, name, "slow") >= 1));
    // One second at a time, each time once the bolt saw its tick.
    for second in 1..=ack_on {
        cluster.advance_time(Duration::from_secs(1));
        assert!(
            wait_for(DEADLINE, || ticks.load(Ordering::Acquire) >= second
                || !feeder.failed().is_empty()),
            "tick {second}"
        );
    }
    assert!(wait_for(DEADLINE, || !feeder.acked().is_empty()
        || !feeder.failed().is_empty()));
    cluster.shutdown();
    feeder
}

#[test]
fn reset_timeout_keeps_a_tuple_alive_past_the_timeout() {
    // Acked on the 25th tick: 25 simulated seconds, far past the 10 s timeout.
    let feeder = hold_past_the_timeout("reset", 10, 25, false);
    assert!(
        feeder.failed().is_empty(),
        "timed out despite reset_timeout: {:?}",
        feeder.failed()
    );
    assert_eq!(feeder.acked().len(), 1);
}

#[test]
fn reset_timeout_keeps_the_anchored_edges_of_a_long_held_input() {
    // The input is held for three timeouts after a tuple was anchored to
    // it; its ack must still carry that tuple's edge.
    let feeder = hold_past_the_timeout("reset-anchored", 10, 30, true);
    assert!(feeder.failed().is_empty(), "failed: {:?}", feeder.failed());
    assert_eq!(feeder.acked().len(), 1);
}

/// Fails about a third of its inputs (the first time each id is seen).
#[derive(Default)]
struct Flaky(std::collections::HashSet<i64>);
impl Bolt for Flaky {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let id = t.get_i64(0).unwrap();
        if id % 3 == 0 && self.0.insert(id) {
            out.fail(t);
        } else {
            out.ack(t);
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn replayed_tuples_are_eventually_all_acked() {
    let stats = Arc::new(SpoutStats::default());
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", CountingSpout::factory(3000, stats.clone()), 1);
    b.set_bolt("flaky", Flaky::default, 1)
        .shuffle_grouping("spout");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("replay", &config(30), b.create_topology().unwrap())
        .unwrap();
    assert!(
        wait_for(DEADLINE, || stats.acked() == 3000),
        "acked {}",
        stats.acked()
    );
    assert_eq!(stats.failed(), 1000);
    let acked: BTreeSet<u64> = stats.acked_ids.lock().unwrap().iter().copied().collect();
    assert_eq!(acked, (0..3000).collect());
    cluster.shutdown();
}

#[test]
fn zero_ackers_acks_at_emit() {
    let mut c = config(1);
    c.acker_executors = Some(0);
    let (feeder, cluster) = run_fed("no-ackers", &c, |b| {
        b.set_bolt("hole", || Blackhole, 1)
            .shuffle_grouping("spout");
    });
    for i in 0..10 {
        feeder.feed(values![i]);
    }
    // Nothing downstream acks, yet every tuple is acked: untracked.
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 10));
    assert!(wait_for(DEADLINE, || cluster
        .in_flight("no-ackers")
        .unwrap()
        == 0));
    assert!(feeder.failed().is_empty());
    cluster.shutdown();
}

#[test]
fn emit_without_message_id_is_not_tracked() {
    let (feeder, cluster) = run_fed("untracked", &config(1), |b| {
        b.set_bolt("hole", || Blackhole, 1)
            .shuffle_grouping("spout");
    });
    feeder.feed_untracked(values![1]);
    assert!(wait_for(DEADLINE, || cluster
        .in_flight("untracked")
        .unwrap()
        == 0
        && feeder.queued() == 0));
    let m = cluster.metrics("untracked").unwrap();
    assert_eq!(m.component("spout").pending, 0);
    cluster.shutdown();
}

/// Acks each input after a short pause, so tuples pile up if allowed.
struct SlowAck;
impl Bolt for SlowAck {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        std::thread::sleep(Duration::from_micros(200));
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn in_flight_never_exceeds_max_spout_pending() {
    let stats = Arc::new(SpoutStats::default());
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", CountingSpout::factory(2000, stats.clone()), 1)
        .set_max_spout_pending(10);
    b.set_bolt("slow", || SlowAck, 2).shuffle_grouping("spout");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("pending", &config(30), b.create_topology().unwrap())
        .unwrap();
    assert!(wait_for(DEADLINE, || stats.acked() == 2000));
    let max = stats.in_flight_max.load(Ordering::Acquire);
    assert!(max <= 10, "in flight reached {max}");
    assert!(
        max >= 2,
        "in flight never above {max}: the limit was not exercised"
    );
    cluster.shutdown();
}

#[test]
fn spout_tuples_emitted_to_no_subscriber_are_acked() {
    let feeder = Feeder::new(["v"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", feeder.spout(), 1);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("lonely", &config(30), b.create_topology().unwrap())
        .unwrap();
    feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 1));
    cluster.shutdown();
}

/// Basic bolt: fails inputs whose value is odd by returning an error.
struct EvenOnly;
impl BasicBolt for EvenOnly {
    fn execute(
        &mut self,
        t: &Tuple,
        out: &mut BasicOutputCollector<'_, '_>,
    ) -> Result<(), ExecuteError> {
        let v = t.get_i64(0)?;
        if v % 2 == 1 {
            return Err(format!("odd value {v}").into());
        }
        out.emit(values![v]);
        Ok(())
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["v"]);
    }
}

#[test]
fn basic_bolt_acks_on_ok_and_fails_and_reports_on_error() {
    let (feeder, cluster) = run_fed("basic", &config(30), |b| {
        b.set_basic_bolt("even", || EvenOnly, 1)
            .shuffle_grouping("spout");
        b.set_bolt("sink", || AckAll, 1).shuffle_grouping("even");
    });
    let even = feeder.feed(values![2]);
    let odd = feeder.feed(values![3]);
    assert!(wait_for(DEADLINE, || feeder.acked().len()
        + feeder.failed().len()
        == 2));
    assert_eq!(feeder.acked(), vec![even]);
    assert_eq!(feeder.failed(), vec![(odd, FailReason::Failed)]);
    let errors = Arc::new(Mutex::new(Vec::new()));
    assert!(wait_for(DEADLINE, || {
        let e = cluster.metrics("basic").unwrap().component("even").errors;
        *errors.lock().unwrap() = e.clone();
        !e.is_empty()
    }));
    assert_eq!(errors.lock().unwrap()[0], "odd value 3");
    cluster.shutdown();
}

/// Two spout executors, `ackers` acker executors, acker threads as
/// `spout_thread` says: every tree completes or fails and is replayed, and
/// the ackers' metrics count every tree, whichever thread runs them.
fn two_spouts_with_ackers(name: &str, ackers: u32, spout_thread: bool) {
    const LIMIT: u64 = 1500;
    let stats = Arc::new(SpoutStats::default());
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", CountingSpout::factory(LIMIT, stats.clone()), 2);
    b.set_bolt("flaky", Flaky::default, 2)
        .fields_grouping("spout", ["id"]);
    let mut c = config(30);
    c.acker_executors = Some(ackers);
    c.acker_spout_thread = spout_thread;
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, &c, b.create_topology().unwrap())
        .unwrap();
    assert!(
        wait_for(DEADLINE, || stats.acked() == 2 * LIMIT),
        "acked {}",
        stats.acked()
    );
    // Flaky fails each id divisible by 3 once, whichever spout sent it.
    let fails = LIMIT.div_ceil(3);
    assert_eq!(stats.failed(), fails);
    let mut acked = stats.acked_ids.lock().unwrap().clone();
    acked.sort_unstable();
    let expected: Vec<u64> = (0..LIMIT).flat_map(|i| [i, i]).collect();
    assert_eq!(acked, expected, "each id acked once per spout task");
    // The ackers told a spout about every tree: a completion or a failure.
    let acker = || cluster.metrics(name).unwrap().component("__acker");
    assert!(
        wait_for(DEADLINE, || acker().emitted == 2 * LIMIT + fails),
        "ackers told {} of {} trees",
        acker().emitted,
        2 * LIMIT + fails
    );
    // An init and an ack or fail per tree.
    assert!(acker().executed >= 2 * (2 * LIMIT + fails));
    assert!(wait_for(DEADLINE, || cluster.in_flight(name).unwrap() == 0));
    cluster.shutdown();
}

#[test]
fn an_acker_run_in_a_spout_thread_serves_the_other_spout_executor_too() {
    // One acker: it runs in one spout executor's thread; the other spout
    // executor's inits and completions travel as messages.
    two_spouts_with_ackers("inline-one", 1, true);
}

#[test]
fn ackers_run_in_each_spout_thread_complete_and_fail_every_tree() {
    two_spouts_with_ackers("inline-two", 2, true);
}

#[test]
fn ackers_in_their_own_threads_complete_and_fail_every_tree() {
    two_spouts_with_ackers("own-threads", 2, false);
}
