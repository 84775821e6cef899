//! Per-task counters kept on the executor thread and published as
//! [`TaskMetrics`] snapshots.

use hdrhistogram::Histogram;
use squall_topology_api::metrics::{
    InputCounts, InputMetrics, LatencySummary, TaskMetrics, TopologyMetrics, LATENCY_BUCKETS_MS,
};
use squall_topology_api::{ComponentId, MetricRegistry, MetricUpdate, StreamMeta};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many errors a task keeps for its metrics.
const MAX_ERRORS: usize = 10;

/// [`LATENCY_BUCKETS_MS`] in µs, so that a sample (whole µs) finds its
/// bucket without a float division.
const LATENCY_BUCKETS_US: [u64; LATENCY_BUCKETS_MS.len()] = {
    let mut us = [0; LATENCY_BUCKETS_MS.len()];
    let mut i = 0;
    while i < us.len() {
        us[i] = (LATENCY_BUCKETS_MS[i] * 1000.0) as u64;
        i += 1;
    }
    us
};

/// Where executors publish their tasks' metrics.
pub type MetricsBoard = Arc<Mutex<TopologyMetrics>>;

/// A latency histogram in microseconds, 1 µs to 1 h, 2 significant
/// digits, with the fixed buckets it is exported in counted as samples
/// arrive; a summary is computed only when samples arrived since the last
/// one (walking a histogram costs the same however few samples it holds).
pub struct Latency {
    histogram: Histogram<u64>,
    /// Samples per [`LATENCY_BUCKETS_MS`] bucket (not cumulative).
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    last: std::cell::RefCell<Option<LatencySummary>>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("valid histogram bounds"),
            buckets: [0; LATENCY_BUCKETS_MS.len()],
            last: std::cell::RefCell::new(None),
        }
    }
}

impl Latency {
    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(us);
        if let Some(c) = self
            .buckets
            .get_mut(LATENCY_BUCKETS_US.partition_point(|b| *b < us))
        {
            *c += 1;
        }
    }

    fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        let mut last = self.last.borrow_mut();
        if let Some(s) = last.as_ref().filter(|s| s.count == h.len()) {
            return s.clone();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let buckets = if h.is_empty() {
            Vec::new()
        } else {
            let mut total = 0;
            self.buckets
                .iter()
                .map(|c| {
                    total += c;
                    total
                })
                .collect()
        };
        let summary = LatencySummary {
            buckets,
            count: h.len(),
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        };
        *last = Some(summary.clone());
        summary
    }
}

/// Picks every n-th tuple for latency timing (`topology.stats.sample.rate`).
#[derive(Debug)]
pub struct Sampler {
    every: u64,
    count: u64,
}

impl Sampler {
    /// Samples a fraction `rate` (0 to 1) of calls.
    pub fn new(rate: f64) -> Self {
        let every = if rate <= 0.0 {
            u64::MAX
        } else {
            (1.0 / rate).round().max(1.0) as u64
        };
        Self { every, count: 0 }
    }

    /// Whether this call is sampled.
    pub fn hit(&mut self) -> bool {
        self.count += 1;
        if self.count >= self.every {
            self.count = 0;
            true
        } else {
            false
        }
    }
}

/// One task's counters.
pub struct TaskStats {
    component: ComponentId,
    stream_names: Vec<String>,
    /// Emits per local stream position.
    pub emitted: Vec<u64>,
    /// Tuples sent to tasks, per local stream position.
    pub transferred: Vec<u64>,
    /// Acks (bolt inputs, or completed spout trees).
    pub acked: u64,
    /// Fails by a bolt's `fail`.
    pub failed_explicit: u64,
    /// Fails by timeout (spouts).
    pub failed_timeout: u64,
    /// Executions (bolts).
    pub executed: u64,
    /// Sampled execute latency.
    pub execute: Latency,
    /// Sampled process latency.
    pub process: Latency,
    /// Complete latency (spouts).
    pub complete: Latency,
    /// Tracked tuples in flight (spouts).
    pub pending: u64,
    /// Busy fraction of the last window (bolts).
    pub capacity: f64,
    /// Time under backpressure, ms.
    pub backpressured_ms: u64,
    errors: VecDeque<String>,
    errors_total: u64,
    /// User metrics by name.
    pub user: BTreeMap<String, f64>,
    registry: Option<MetricRegistry>,
    /// Per input stream number: counters, once a tuple arrived on it.
    inputs: Vec<Option<InputMetrics>>,
}

impl TaskStats {
    /// Counters for a task of `component` whose streams are `stream_names`.
    pub fn new(component: ComponentId, stream_names: Vec<String>) -> Self {
        Self {
            component,
            emitted: vec![0; stream_names.len()],
            transferred: vec![0; stream_names.len()],
            stream_names,
            acked: 0,
            failed_explicit: 0,
            failed_timeout: 0,
            executed: 0,
            execute: Latency::default(),
            process: Latency::default(),
            complete: Latency::default(),
            pending: 0,
            capacity: 0.0,
            backpressured_ms: 0,
            errors: VecDeque::new(),
            errors_total: 0,
            user: BTreeMap::new(),
            registry: None,
            inputs: Vec::new(),
        }
    }

    /// The counters of input stream number `input` (`meta` names it),
    /// `None` for [`squall_topology_api::NO_INPUT`].
    #[inline]
    pub fn input(&mut self, input: u32, meta: &StreamMeta) -> Option<&mut InputCounts> {
        if input == squall_topology_api::NO_INPUT {
            return None;
        }
        let i = input as usize;
        if !matches!(self.inputs.get(i), Some(Some(_))) {
            self.add_input(i, meta);
        }
        self.inputs[i].as_mut().map(|m| &mut m.counts)
    }

    /// Starts the counters of input stream number `i` (`meta` names it).
    #[cold]
    fn add_input(&mut self, i: usize, meta: &StreamMeta) {
        if i >= self.inputs.len() {
            self.inputs.resize_with(i + 1, || None);
        }
        self.inputs[i] = Some(InputMetrics {
            component: meta.component.to_string(),
            stream: meta.stream.to_string(),
            counts: InputCounts::default(),
        });
    }

    /// These counters, also publishing the metrics registered in
    /// `registry` (the task context's).
    pub fn with_registry(mut self, registry: MetricRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Applies a user metric update.
    pub fn update_metric(&mut self, name: &str, update: MetricUpdate) {
        let v = self.user.entry(name.to_owned()).or_insert(0.0);
        match update {
            MetricUpdate::Add(by) => *v += by,
            MetricUpdate::Set(to) => *v = to,
        }
    }

    /// Keeps `error` among the last errors and logs it.
    pub fn report_error(&mut self, error: String) {
        tracing::warn!(component = %self.component, "{error}");
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(error);
        self.errors_total += 1;
    }

    /// A snapshot.
    pub fn snapshot(&self) -> TaskMetrics {
        let per_stream = |counts: &[u64]| {
            self.stream_names
                .iter()
                .cloned()
                .zip(counts.iter().copied())
                .collect()
        };
        let mut user = self.user.clone();
        let mut histograms = BTreeMap::new();
        if let Some(r) = self.registry.as_ref().filter(|r| !r.is_empty()) {
            user.extend(r.values());
            histograms = r.histograms();
        }
        TaskMetrics {
            component: self.component.clone(),
            emitted: per_stream(&self.emitted),
            transferred: self.transferred.iter().sum(),
            transferred_streams: per_stream(&self.transferred),
            acked: self.acked,
            failed: self.failed_explicit + self.failed_timeout,
            failed_explicit: self.failed_explicit,
            failed_timeout: self.failed_timeout,
            executed: self.executed,
            execute_latency: self.execute.summary(),
            process_latency: self.process.summary(),
            complete_latency: self.complete.summary(),
            pending: self.pending,
            capacity: self.capacity,
            backpressured_ms: self.backpressured_ms,
            errors: self.errors.iter().cloned().collect(),
            errors_total: self.errors_total,
            user,
            histograms,
            inputs: self.inputs.iter().flatten().cloned().collect(),
        }
    }
}

/// Tracks busy time for capacity and when to publish next.
pub struct Publisher {
    board: MetricsBoard,
    /// The executor's backpressure status, and its index.
    backpressure: Option<(Arc<crate::backpressure::Backpressure>, usize)>,
    /// Where the executor's capacity is shared, and its index.
    capacity_to: Option<(Arc<crate::outbox::Wiring>, usize)>,
    window_start: Instant,
    busy: Duration,
    next: Instant,
}

/// How often executors publish metrics.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl Publisher {
    /// Publishes to `board`.
    pub fn new(board: MetricsBoard) -> Self {
        let now = Instant::now();
        Self {
            board,
            backpressure: None,
            capacity_to: None,
            window_start: now,
            busy: Duration::ZERO,
            next: now,
        }
    }

    /// Also counts the time executor `executor` is under backpressure
    /// (held at a publication: the window before it counts).
    pub fn with_backpressure(
        mut self,
        backpressure: Arc<crate::backpressure::Backpressure>,
        executor: usize,
    ) -> Self {
        self.backpressure = Some((backpressure, executor));
        self
    }

    /// Also records executor `executor`'s capacity in `wiring` at each
    /// publication, for locality-aware shuffles to read.
    pub fn with_capacity_to(mut self, wiring: Arc<crate::outbox::Wiring>, executor: usize) -> Self {
        self.capacity_to = Some((wiring, executor));
        self
    }

    /// Adds time spent executing.
    pub fn add_busy(&mut self, d: Duration) {
        self.busy += d;
    }

    /// When the next publication is due.
    pub fn next_due(&self) -> Instant {
        self.next
    }

    /// Publishes the tasks' snapshots if due (or if `force`), updating
    /// capacity over the window since the last publication.
    pub fn maybe_publish<'a>(
        &mut self,
        now: Instant,
        force: bool,
        tasks: impl Iterator<Item = (squall_topology_api::TaskId, &'a mut TaskStats)>,
    ) {
        if !force && now < self.next {
            return;
        }
        let window = now.duration_since(self.window_start);
        let capacity = if window.is_zero() {
            0.0
        } else {
            (self.busy.as_secs_f64() / window.as_secs_f64()).min(1.0)
        };
        if let Some((wiring, e)) = &self.capacity_to {
            wiring.set_capacity(*e, capacity);
        }
        let held_ms = match &self.backpressure {
            Some((bp, e)) if bp.is_held(*e) => window.as_millis() as u64,
            _ => 0,
        };
        self.busy = Duration::ZERO;
        self.window_start = now;
        self.next = now + PUBLISH_EVERY;
        let snaps: Vec<_> = tasks
            .map(|(id, s)| {
                s.capacity = capacity;
                s.backpressured_ms += held_ms;
                (id, s.snapshot())
            })
            .collect();
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        board.tasks.extend(snaps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_shares_the_executors_capacity_through_the_wiring() {
        let queues = (0..2).map(|_| crossbeam_channel::bounded(1).0).collect();
        let wiring = Arc::new(crate::outbox::Wiring::new(
            queues,
            vec![0, 0, 1],
            vec![false, false],
        ));
        let mut publisher =
            Publisher::new(MetricsBoard::default()).with_capacity_to(wiring.clone(), 1);
        let start = Instant::now();
        publisher.add_busy(Duration::from_millis(900));
        publisher.maybe_publish(start + Duration::from_secs(1), false, std::iter::empty());
        let busy = wiring.capacity(1);
        assert!((0.85..=0.9).contains(&busy), "capacity {busy}");
        assert_eq!(wiring.capacity(0), 0.0, "another executor's is untouched");
        publisher.maybe_publish(start + Duration::from_secs(3), false, std::iter::empty());
        assert_eq!(
            wiring.capacity(1),
            0.0,
            "an idle window brings it back to 0"
        );
    }

    #[test]
    fn latency_buckets_are_cumulative_and_follow_new_samples() {
        let mut l = Latency::default();
        assert_eq!(l.summary().buckets, Vec::<u64>::new());
        for us in [50, 200, 200, 3_000, 90_000_000] {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 5);
        // ≤0.1 ms: 1; ≤0.25: 3; ≤5 ms: 4; the 90 s sample is past the last bound.
        assert_eq!(&s.buckets[..6], &[1, 3, 3, 3, 3, 4]);
        assert_eq!(*s.buckets.last().unwrap(), 4);
        assert_eq!(l.summary(), s, "unchanged without new samples");
        l.record(Duration::from_micros(40));
        let s = l.summary();
        assert_eq!((s.count, s.buckets[0]), (6, 2));
    }

    #[test]
    fn a_sample_on_a_bound_counts_in_the_bucket_it_bounds() {
        for (us, ms) in LATENCY_BUCKETS_US.iter().zip(LATENCY_BUCKETS_MS) {
            assert_eq!(*us as f64, ms * 1000.0);
        }
        for (i, &bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            let mut l = Latency::default();
            l.record(Duration::from_micros(bound));
            l.record(Duration::from_micros(bound + 1));
            let s = l.summary();
            assert_eq!(s.buckets[i], 1, "{bound} µs is within the bucket it bounds");
            if let Some(next) = s.buckets.get(i + 1) {
                assert_eq!(*next, 2, "{} µs is in the next", bound + 1);
            }
        }
    }
}
