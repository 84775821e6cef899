//! Spouts and bolts shared by the integration tests.
#![allow(dead_code, missing_docs)]

use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Acks every input, emits nothing.
pub struct AckAll;
impl Bolt for AckAll {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Neither acks nor fails: every tree through it times out.
pub struct Blackhole;
impl Bolt for Blackhole {
    fn execute(&mut self, _: &Tuple, _: &mut OutputCollector<'_>) {}
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Fails every input.
pub struct FailAll;
impl Bolt for FailAll {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.fail(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Emits `n` copies of each input, anchored, then acks it.
pub struct FanOut(pub usize);
impl Bolt for FanOut {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        for i in 0..self.0 {
            out.emit_anchored(t, values![t.get(0).cloned().unwrap_or_default(), i]);
        }
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["v", "i"]);
    }
}

/// Emits `[task id, value 0]` for each input (anchored) and acks it: shows
/// which task got what.
#[derive(Default)]
pub struct TaskTagger {
    task: TaskId,
}
impl Bolt for TaskTagger {
    fn prepare(&mut self, ctx: &TopologyContext) {
        self.task = ctx.this_task_id();
    }
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.emit_anchored(
            t,
            values![self.task.0, t.get(0).cloned().unwrap_or_default()],
        );
        out.ack(t);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["task", "v"]);
    }
}

/// A spout emitting ids `0..limit` tracked, replaying failed ids, and
/// counting what it sees. `in_flight_max` records the most tuples it had
/// pending at once.
pub struct CountingSpout {
    pub next: u64,
    pub limit: u64,
    pub replay: Vec<u64>,
    pub stats: Arc<SpoutStats>,
}

#[derive(Default)]
pub struct SpoutStats {
    pub emitted: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    pub in_flight: AtomicU64,
    pub in_flight_max: AtomicU64,
    pub acked_ids: Mutex<Vec<u64>>,
}

impl SpoutStats {
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }
}

impl CountingSpout {
    pub fn factory(
        limit: u64,
        stats: Arc<SpoutStats>,
    ) -> impl Fn() -> CountingSpout + Send + Sync + 'static {
        move || CountingSpout {
            next: 0,
            limit,
            replay: Vec::new(),
            stats: stats.clone(),
        }
    }
}

impl Spout for CountingSpout {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        let id = match self.replay.pop() {
            Some(id) => id,
            None if self.next < self.limit => {
                self.next += 1;
                self.next - 1
            }
            None => return,
        };
        out.emit_with_id(values![id], id);
        self.stats.emitted.fetch_add(1, Ordering::AcqRel);
        let now = self.stats.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.stats.in_flight_max.fetch_max(now, Ordering::AcqRel);
    }
    fn ack(&mut self, id: Value) {
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.stats.acked.fetch_add(1, Ordering::AcqRel);
        self.stats
            .acked_ids
            .lock()
            .unwrap()
            .push(id.as_i64().unwrap() as u64);
    }
    fn fail(&mut self, id: Value, _reason: FailReason) {
        self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.stats.failed.fetch_add(1, Ordering::AcqRel);
        self.replay.push(id.as_i64().unwrap() as u64);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["id"]);
    }
}

/// A config with the given message timeout and one acker.
pub fn config(timeout_secs: u64) -> Config {
    let mut c = Config::new();
    c.message_timeout_secs = timeout_secs;
    c.acker_executors = Some(1);
    c
}

/// Starts topology `name`: a feeder spout `"spout"` declaring `["v"]`, plus
/// what `wire` adds. Returns the feeder and the cluster running it.
pub fn run_fed(
    name: &str,
    config: &Config,
    wire: impl FnOnce(&mut TopologyBuilder),
) -> (testing::Feeder, LocalCluster) {
    run_fed_on(LocalCluster::new(), name, config, wire)
}

/// [`run_fed`] on `cluster` (e.g. `LocalCluster::simulated()`).
pub fn run_fed_on(
    cluster: LocalCluster,
    name: &str,
    config: &Config,
    wire: impl FnOnce(&mut TopologyBuilder),
) -> (testing::Feeder, LocalCluster) {
    let feeder = testing::Feeder::new(["v"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", feeder.spout(), 1);
    wire(&mut b);
    cluster
        .submit_topology(name, config, b.create_topology().unwrap())
        .unwrap();
    (feeder, cluster)
}

/// How many tuples component `c` of topology `name` executed so far.
pub fn executed(cluster: &LocalCluster, name: &str, c: &str) -> u64 {
    cluster.metrics(name).unwrap().component(c).executed
}

/// Whether a task of component `c` of topology `name` reported an error
/// containing `text` (among the last errors each task keeps).
pub fn reported(cluster: &LocalCluster, name: &str, c: &str, text: &str) -> bool {
    let errors = cluster.metrics(name).unwrap().component(c).errors;
    errors.iter().any(|e| e.contains(text))
}
