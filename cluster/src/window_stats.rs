//! Windowed statistics: what a task did within the last 10 minutes, 3
//! hours, 1 day, or since Nimbus first saw it (Storm's UI windows `600`,
//! `10800`, `86400` and `:all-time`). Nimbus computes them from the
//! cumulative counters in worker heartbeats; the UI and `squall monitor`
//! read them through [`TopologyInfo`](crate::rpc::TopologyInfo).

use serde::{Deserialize, Serialize};
use squall_topology_api::metrics::{mean, InputCounts, TaskMetrics};
use std::collections::BTreeMap;

/// Storm's UI windows in seconds; `None` is all time.
pub const WINDOWS: [Option<u64>; 4] = [Some(600), Some(10_800), Some(86_400), None];

/// Counts within a window (or deltas between two heartbeats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Tuples emitted, per stream.
    pub emitted: BTreeMap<String, u64>,
    /// Tuples sent to tasks, per stream.
    pub transferred: BTreeMap<String, u64>,
    /// Acks (bolt inputs, or completed spout trees).
    pub acked: u64,
    /// Fails.
    pub failed: u64,
    /// Tuples executed (bolts).
    pub executed: u64,
    /// Sum of sampled complete latencies, ms.
    pub complete_ms: f64,
    /// Complete latency samples.
    pub complete_count: u64,
    /// Sum of sampled execute latencies, ms.
    pub execute_ms: f64,
    /// Execute latency samples.
    pub execute_count: u64,
    /// Sum of sampled process latencies, ms.
    pub process_ms: f64,
    /// Process latency samples.
    pub process_count: u64,
    /// Bolts: per input stream, by (component, stream).
    #[serde(default)]
    pub inputs: BTreeMap<(String, String), InputCounts>,
    /// Complete latency samples at most each of
    /// [`squall_topology_api::metrics::LATENCY_BUCKETS_MS`] (cumulative
    /// over the buckets; empty without samples).
    #[serde(default)]
    pub complete_buckets: Vec<u64>,
    /// Execute latency samples, bucketed the same way.
    #[serde(default)]
    pub execute_buckets: Vec<u64>,
    /// Time under backpressure, ms.
    #[serde(default)]
    pub backpressured_ms: u64,
}

/// `now - then` bucket by bucket (`now` when `then` is empty), or `None`
/// when a bucket went down.
fn buckets_since(now: &[u64], then: &[u64]) -> Option<Vec<u64>> {
    if then.is_empty() {
        return Some(now.to_vec());
    }
    if now.is_empty() {
        return None;
    }
    now.iter()
        .zip(then)
        .map(|(n, t)| n.checked_sub(*t))
        .collect()
}

/// Adds bucket counts `other` into `into`.
fn buckets_add(into: &mut Vec<u64>, other: &[u64]) {
    if into.len() < other.len() {
        into.resize(other.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(other) {
        *a += b;
    }
}

impl Counters {
    /// The counters of a heartbeat's task metrics (cumulative since the
    /// task started).
    pub fn of(m: &TaskMetrics) -> Self {
        Self {
            emitted: m.emitted.clone(),
            transferred: m.transferred_streams.clone(),
            acked: m.acked,
            failed: m.failed,
            executed: m.executed,
            complete_ms: m.complete_latency.sum_ms(),
            complete_count: m.complete_latency.count,
            execute_ms: m.execute_latency.sum_ms(),
            execute_count: m.execute_latency.count,
            process_ms: m.process_latency.sum_ms(),
            process_count: m.process_latency.count,
            inputs: m
                .inputs
                .iter()
                .map(|i| ((i.component.clone(), i.stream.clone()), i.counts.clone()))
                .collect(),
            complete_buckets: m.complete_latency.buckets.clone(),
            execute_buckets: m.execute_latency.buckets.clone(),
            backpressured_ms: m.backpressured_ms,
        }
    }

    /// `self - earlier`, or `None` when a count went down (the task
    /// restarted, so its counters began again from zero).
    pub fn since(&self, earlier: &Counters) -> Option<Counters> {
        fn map_since(
            now: &BTreeMap<String, u64>,
            then: &BTreeMap<String, u64>,
        ) -> Option<BTreeMap<String, u64>> {
            if then
                .iter()
                .any(|(k, v)| now.get(k).copied().unwrap_or(0) < *v)
            {
                return None;
            }
            Some(
                now.iter()
                    .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                    .filter(|(_, v)| *v > 0)
                    .collect(),
            )
        }
        let scalars = [
            (self.acked, earlier.acked),
            (self.failed, earlier.failed),
            (self.executed, earlier.executed),
            (self.complete_count, earlier.complete_count),
            (self.execute_count, earlier.execute_count),
            (self.process_count, earlier.process_count),
            (self.backpressured_ms, earlier.backpressured_ms),
        ];
        if scalars.iter().any(|(now, then)| now < then) {
            return None;
        }
        if earlier.inputs.keys().any(|k| !self.inputs.contains_key(k)) {
            return None;
        }
        let mut inputs = BTreeMap::new();
        for (k, now) in &self.inputs {
            let delta = match earlier.inputs.get(k) {
                Some(then) => now.since(then)?,
                None => now.clone(),
            };
            if delta != InputCounts::default() {
                inputs.insert(k.clone(), delta);
            }
        }
        Some(Counters {
            emitted: map_since(&self.emitted, &earlier.emitted)?,
            transferred: map_since(&self.transferred, &earlier.transferred)?,
            acked: self.acked - earlier.acked,
            failed: self.failed - earlier.failed,
            executed: self.executed - earlier.executed,
            complete_ms: (self.complete_ms - earlier.complete_ms).max(0.0),
            complete_count: self.complete_count - earlier.complete_count,
            execute_ms: (self.execute_ms - earlier.execute_ms).max(0.0),
            execute_count: self.execute_count - earlier.execute_count,
            process_ms: (self.process_ms - earlier.process_ms).max(0.0),
            process_count: self.process_count - earlier.process_count,
            inputs,
            complete_buckets: buckets_since(&self.complete_buckets, &earlier.complete_buckets)?,
            execute_buckets: buckets_since(&self.execute_buckets, &earlier.execute_buckets)?,
            backpressured_ms: self.backpressured_ms - earlier.backpressured_ms,
        })
    }

    /// Adds `other` into these counters.
    pub fn add(&mut self, other: &Counters) {
        for (k, v) in &other.emitted {
            *self.emitted.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.transferred {
            *self.transferred.entry(k.clone()).or_default() += v;
        }
        self.acked += other.acked;
        self.failed += other.failed;
        self.executed += other.executed;
        self.complete_ms += other.complete_ms;
        self.complete_count += other.complete_count;
        self.execute_ms += other.execute_ms;
        self.execute_count += other.execute_count;
        self.process_ms += other.process_ms;
        self.process_count += other.process_count;
        for (k, v) in &other.inputs {
            self.inputs.entry(k.clone()).or_default().add(v);
        }
        buckets_add(&mut self.complete_buckets, &other.complete_buckets);
        buckets_add(&mut self.execute_buckets, &other.execute_buckets);
        self.backpressured_ms += other.backpressured_ms;
    }

    /// Executions over all input streams, or without system streams
    /// (`__tick`, the `__ack_*` streams), as Storm counts them.
    pub fn executed_total(&self, system: bool) -> u64 {
        if system {
            return self.executed;
        }
        let hidden: u64 = self
            .inputs
            .iter()
            .filter(|((_, stream), _)| stream.starts_with("__"))
            .map(|(_, n)| n.executed)
            .sum();
        self.executed.saturating_sub(hidden)
    }

    /// Emits over all streams, or over streams not starting with `__`
    /// (Storm hides system streams unless asked).
    pub fn emitted_total(&self, system: bool) -> u64 {
        sum_streams(&self.emitted, system)
    }

    /// Transfers over all streams, or over non-system streams.
    pub fn transferred_total(&self, system: bool) -> u64 {
        sum_streams(&self.transferred, system)
    }

    /// Mean complete latency, ms (0 without samples).
    pub fn complete_latency_ms(&self) -> f64 {
        mean(self.complete_ms, self.complete_count)
    }

    /// Mean execute latency, ms.
    pub fn execute_latency_ms(&self) -> f64 {
        mean(self.execute_ms, self.execute_count)
    }

    /// Mean process latency, ms.
    pub fn process_latency_ms(&self) -> f64 {
        mean(self.process_ms, self.process_count)
    }
}

fn sum_streams(m: &BTreeMap<String, u64>, system: bool) -> u64 {
    m.iter()
        .filter(|(k, _)| system || !k.starts_with("__"))
        .map(|(_, v)| v)
        .sum()
}

/// One task within one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskWindow {
    /// The task's component.
    pub component: String,
    /// What it did within the window.
    pub counters: Counters,
    /// How much of the window Nimbus has seen the task for, ms (the window
    /// length once the task is older than it): the denominator of rates
    /// and capacity.
    pub covered_ms: u64,
}

impl TaskWindow {
    /// Storm's bolt capacity: executed × mean execute latency ÷ time
    /// covered (1.0 = busy all the time).
    pub fn capacity(&self) -> f64 {
        if self.covered_ms == 0 {
            return 0.0;
        }
        self.counters.executed as f64 * self.counters.execute_latency_ms() / self.covered_ms as f64
    }
}

/// Every task of a topology within one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// The window in seconds; `None` is all time.
    pub window_secs: Option<u64>,
    /// By task id.
    pub tasks: BTreeMap<u32, TaskWindow>,
}

impl WindowStats {
    /// Storm's name of the window: `"600"`, …, `":all-time"`.
    pub fn name(&self) -> String {
        window_name(self.window_secs)
    }

    /// The sum over `component`'s tasks.
    pub fn component(&self, component: &str) -> Counters {
        let mut c = Counters::default();
        for t in self.tasks.values().filter(|t| t.component == component) {
            c.add(&t.counters);
        }
        c
    }
}

/// Storm's name of a window: seconds as text, `":all-time"` for `None`.
pub fn window_name(secs: Option<u64>) -> String {
    secs.map_or_else(|| ":all-time".to_owned(), |s| s.to_string())
}

/// Storm's pretty form of a window: `"10m 0s"`, `"3h 0m 0s"`,
/// `"1d 0h 0m 0s"`, `"All time"`.
pub fn window_pretty(secs: Option<u64>) -> String {
    secs.map_or_else(|| "All time".to_owned(), pretty_duration)
}

/// Storm's pretty duration (`prettyUptimeSec`): `"5m 58s"`, `"1d 2h 3m 4s"`.
pub fn pretty_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_detects_restarts() {
        let mut a = Counters::default();
        a.emitted.insert("default".into(), 10);
        a.acked = 5;
        let mut b = a.clone();
        *b.emitted.get_mut("default").unwrap() += 3;
        b.acked += 1;
        let d = b.since(&a).unwrap();
        assert_eq!(d.emitted["default"], 3);
        assert_eq!(d.acked, 1);
        assert_eq!(a.since(&b), None);
    }

    #[test]
    fn input_streams_are_differenced_and_summed_per_stream() {
        let key = |c: &str| (c.to_owned(), "default".to_owned());
        let input = |executed, execute_ms| InputCounts {
            executed,
            acked: executed,
            execute_ms,
            execute_count: 1,
            ..InputCounts::default()
        };
        let mut then = Counters::default();
        then.inputs.insert(key("a"), input(5, 1.0));
        let mut now = then.clone();
        now.inputs.insert(key("a"), input(8, 3.0));
        now.inputs.insert(key("b"), input(2, 1.0));
        let d = now.since(&then).unwrap();
        assert_eq!(d.inputs[&key("a")].executed, 3);
        assert_eq!(d.inputs[&key("a")].execute_count, 0);
        assert_eq!(d.inputs[&key("b")].acked, 2);
        let mut sum = d.clone();
        sum.add(&d);
        assert_eq!(sum.inputs[&key("b")].executed, 4);
        assert_eq!(now.inputs[&key("a")].execute_latency_ms(), 3.0);
        // A count that went down, or a stream that vanished: a restart.
        assert!(then.since(&now).is_none());
        let mut restarted = Counters::default();
        restarted.inputs.insert(key("b"), input(1, 0.5));
        assert!(restarted.since(&now).is_none());
    }

    #[test]
    fn pretty_forms_match_storm() {
        assert_eq!(window_pretty(Some(600)), "10m 0s");
        assert_eq!(window_pretty(Some(10_800)), "3h 0m 0s");
        assert_eq!(window_pretty(Some(86_400)), "1d 0h 0m 0s");
        assert_eq!(window_pretty(None), "All time");
        assert_eq!(pretty_duration(358), "5m 58s");
        assert_eq!(window_name(None), ":all-time");
    }
}
