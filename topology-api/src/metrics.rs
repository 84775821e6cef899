//! Metrics snapshots: per task, aggregated per component.

use crate::{ComponentId, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bounds, in ms, of the buckets [`LatencySummary::buckets`] counts
/// (`+Inf` implied): 0.1 ms to 60 s, roughly ×2.5 apart.
pub const LATENCY_BUCKETS_MS: [f64; 16] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
    60000.0,
];

/// A distribution in fixed buckets, Prometheus's histogram shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Bucket upper bounds, ascending (`+Inf` implied).
    pub bounds: Vec<f64>,
    /// Observations at most each bound (cumulative, one per bound).
    pub cumulative: Vec<u64>,
    /// All observations.
    pub count: u64,
    /// Sum of all observations.
    pub sum: f64,
}

/// A latency distribution summary, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples taken.
    pub count: u64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest sample, ms.
    pub max_ms: f64,
    /// Samples at most each of [`LATENCY_BUCKETS_MS`] (cumulative; empty
    /// when there are no samples).
    #[serde(default)]
    pub buckets: Vec<u64>,
}

impl LatencySummary {
    /// Sum of the samples, ms.
    pub fn sum_ms(&self) -> f64 {
        self.mean_ms * self.count as f64
    }
}

/// One task's counters since it started (Storm's executor stats, all-time
/// window). Latencies are sampled at `topology.stats.sample.rate`, except
/// complete latency, which is measured for every tracked spout tuple.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// The task's component.
    pub component: ComponentId,
    /// Tuples emitted, per stream (one per emit call).
    pub emitted: BTreeMap<String, u64>,
    /// Tuples sent to tasks (an emit to 3 tasks counts 3).
    pub transferred: u64,
    /// Tuples sent to tasks, per stream.
    #[serde(default)]
    pub transferred_streams: BTreeMap<String, u64>,
    /// Bolt: input tuples acked. Spout: tuple trees completed.
    pub acked: u64,
    /// Bolt: input tuples failed. Spout: trees failed, any reason.
    pub failed: u64,
    /// Spout: trees failed because a bolt failed a tuple.
    pub failed_explicit: u64,
    /// Spout: trees failed by the message timeout.
    pub failed_timeout: u64,
    /// Bolt: tuples executed.
    pub executed: u64,
    /// Bolt: time in `execute`, ms.
    pub execute_latency: LatencySummary,
    /// Bolt: time from the start of `execute` to `ack`, ms.
    pub process_latency: LatencySummary,
    /// Spout: time from emit to tree completion, ms.
    pub complete_latency: LatencySummary,
    /// Spout: tracked tuples in flight now.
    pub pending: u64,
    /// Bolt: fraction of the last metrics window spent executing (1.0 =
    /// busy all the time: add executors).
    pub capacity: f64,
    /// Time the task's executor spent under backpressure (its queue full,
    /// so senders held batches for it) since it started, ms, as seen at
    /// each metrics publication.
    #[serde(default)]
    pub backpressured_ms: u64,
    /// The last errors reported (newest last, at most 10).
    pub errors: Vec<String>,
    /// Errors reported since the task started (the list keeps the last).
    #[serde(default)]
    pub errors_total: u64,
    /// User metrics by name: counters (`incr_metric`) and gauges
    /// (`set_metric`), also fed by multilang `metrics` commands.
    #[serde(default)]
    pub user: BTreeMap<String, f64>,
    /// User histograms by name (`TopologyContext::register_histogram`).
    #[serde(default)]
    pub histograms: BTreeMap<String, HistogramSnapshot>,
    /// Bolt: counters per input stream that delivered tuples.
    #[serde(default)]
    pub inputs: Vec<InputMetrics>,
}

/// A bolt task's counters for one input stream (Storm's per
/// `GlobalStreamId` executor stats), since the task started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputMetrics {
    /// The emitting component.
    pub component: String,
    /// The stream.
    pub stream: String,
    /// The counts.
    pub counts: InputCounts,
}

/// Counts for one input stream of a bolt: since its task started (in
/// [`InputMetrics`]) or within a window (Nimbus's windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputCounts {
    /// Tuples executed.
    pub executed: u64,
    /// Tuples acked.
    pub acked: u64,
    /// Tuples failed.
    pub failed: u64,
    /// Sum of sampled execute latencies, ms.
    pub execute_ms: f64,
    /// Execute latency samples.
    pub execute_count: u64,
    /// Sum of sampled process latencies, ms.
    pub process_ms: f64,
    /// Process latency samples.
    pub process_count: u64,
}

/// `sum / n`, or 0 when `n` is 0: the mean of sampled latencies.
pub fn mean(sum: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

impl InputCounts {
    /// `self - earlier`, `None` when a count went down (the task
    /// restarted).
    pub fn since(&self, earlier: &InputCounts) -> Option<InputCounts> {
        let counts = [
            (self.executed, earlier.executed),
            (self.acked, earlier.acked),
            (self.failed, earlier.failed),
            (self.execute_count, earlier.execute_count),
            (self.process_count, earlier.process_count),
        ];
        if counts.iter().any(|(now, then)| now < then) {
            return None;
        }
        Some(InputCounts {
            executed: self.executed - earlier.executed,
            acked: self.acked - earlier.acked,
            failed: self.failed - earlier.failed,
            execute_ms: (self.execute_ms - earlier.execute_ms).max(0.0),
            execute_count: self.execute_count - earlier.execute_count,
            process_ms: (self.process_ms - earlier.process_ms).max(0.0),
            process_count: self.process_count - earlier.process_count,
        })
    }

    /// Adds `other` into these counts.
    pub fn add(&mut self, other: &InputCounts) {
        self.executed += other.executed;
        self.acked += other.acked;
        self.failed += other.failed;
        self.execute_ms += other.execute_ms;
        self.execute_count += other.execute_count;
        self.process_ms += other.process_ms;
        self.process_count += other.process_count;
    }

    /// Mean sampled execute latency, ms (0 without samples).
    pub fn execute_latency_ms(&self) -> f64 {
        mean(self.execute_ms, self.execute_count)
    }

    /// Mean sampled process latency, ms (0 without samples).
    pub fn process_latency_ms(&self) -> f64 {
        mean(self.process_ms, self.process_count)
    }
}

/// A component's totals over its tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentMetrics {
    /// Sum of the tasks' emits over all streams.
    pub emitted: u64,
    /// Sum of transfers.
    pub transferred: u64,
    /// Sum of acks.
    pub acked: u64,
    /// Sum of fails.
    pub failed: u64,
    /// Sum of executions.
    pub executed: u64,
    /// Sum of tracked tuples in flight.
    pub pending: u64,
    /// Largest task capacity.
    pub capacity: f64,
    /// Complete latency: the mean is weighted by samples; p50, p99 and max
    /// are the largest over tasks (an upper bound).
    pub complete_latency: LatencySummary,
    /// Execute latency, aggregated the same way.
    pub execute_latency: LatencySummary,
    /// Errors of all tasks.
    pub errors: Vec<String>,
}

/// A snapshot of a running topology's metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyMetrics {
    /// Per task.
    pub tasks: BTreeMap<TaskId, TaskMetrics>,
}

fn merge_latency(into: &mut LatencySummary, l: &LatencySummary) {
    let n = into.count + l.count;
    if n > 0 {
        into.mean_ms = (into.mean_ms * into.count as f64 + l.mean_ms * l.count as f64) / n as f64;
    }
    into.count = n;
    into.p50_ms = into.p50_ms.max(l.p50_ms);
    into.p99_ms = into.p99_ms.max(l.p99_ms);
    into.max_ms = into.max_ms.max(l.max_ms);
}

impl TopologyMetrics {
    /// Every component's aggregate, by component id.
    pub fn components(&self) -> BTreeMap<ComponentId, ComponentMetrics> {
        let ids: std::collections::BTreeSet<&ComponentId> =
            self.tasks.values().map(|t| &t.component).collect();
        ids.into_iter()
            .map(|id| (id.clone(), self.component(id.as_str())))
            .collect()
    }

    /// Totals for `component`'s tasks.
    pub fn component(&self, component: &str) -> ComponentMetrics {
        let mut c = ComponentMetrics::default();
        for t in self
            .tasks
            .values()
            .filter(|t| t.component.as_str() == component)
        {
            c.emitted += t.emitted.values().sum::<u64>();
            c.transferred += t.transferred;
            c.acked += t.acked;
            c.failed += t.failed;
            c.executed += t.executed;
            c.pending += t.pending;
            c.capacity = c.capacity.max(t.capacity);
            merge_latency(&mut c.complete_latency, &t.complete_latency);
            merge_latency(&mut c.execute_latency, &t.execute_latency);
            c.errors.extend(t.errors.iter().cloned());
        }
        c
    }
}
