//! A testing kit like Storm's `Testing`: run fixed input through a topology
//! to completion and see what every component emitted; feed a spout from a
//! test; wait on conditions with a deadline.

use crate::local_cluster::{LocalCluster, LocalClusterError};
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::{
    Config, FailReason, Fields, OutputFieldsDeclarer, Spout, SpoutOutputCollector, Topology,
    TopologyContext, TopologyError, Value, Values, DEFAULT_STREAM,
};
use squall_worker::{EmitTap, LaunchOptions};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Polls `cond` every 2 ms until it holds (true) or `timeout` passes (false).
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, Default)]
struct FixedProgress {
    emitted: AtomicUsize,
    acked: AtomicUsize,
    failed: AtomicUsize,
}

/// A spout that emits a fixed list of `(stream, values)` once, each tracked
/// with its index as message id, and counts acks and fails (Storm's
/// `FixedTupleSpout`; failed tuples are not replayed). With several tasks,
/// task `i` of `n` emits the tuples whose index is `i` modulo `n`.
pub struct FixedTupleSpout {
    fields: Fields,
    tuples: Arc<Vec<(String, Values)>>,
    progress: Arc<FixedProgress>,
    next: usize,
    step: usize,
}

impl FixedTupleSpout {
    /// A spout declaring `fields` on the default stream, with nothing to
    /// emit until mocked sources give it tuples (see [`complete_topology`]).
    pub fn declaring(fields: impl Into<Fields>) -> Self {
        Self::new(fields, Vec::new())
    }

    /// A spout emitting `tuples` on the default stream.
    pub fn new(fields: impl Into<Fields>, tuples: Vec<Values>) -> Self {
        let tuples = tuples
            .into_iter()
            .map(|v| (DEFAULT_STREAM.to_owned(), v))
            .collect();
        Self::shared(fields.into(), Arc::new(tuples), Arc::default())
    }

    fn shared(
        fields: Fields,
        tuples: Arc<Vec<(String, Values)>>,
        progress: Arc<FixedProgress>,
    ) -> Self {
        Self {
            fields,
            tuples,
            progress,
            next: 0,
            step: 1,
        }
    }
}

impl Spout for FixedTupleSpout {
    fn open(&mut self, ctx: &TopologyContext) {
        self.next = ctx.this_task_index();
        self.step = ctx.this_component_tasks().len().max(1);
    }

    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        if let Some((stream, values)) = self.tuples.get(self.next) {
            out.emit_stream(stream, values.clone(), Some(Value::from(self.next)));
            self.progress.emitted.fetch_add(1, Ordering::AcqRel);
            self.next += self.step;
        }
    }

    fn ack(&mut self, _msg_id: Value) {
        self.progress.acked.fetch_add(1, Ordering::AcqRel);
    }

    fn fail(&mut self, _msg_id: Value, _reason: FailReason) {
        self.progress.failed.fetch_add(1, Ordering::AcqRel);
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(self.fields.clone());
    }
}

/// Input for the spouts of a topology under [`complete_topology`]: per
/// spout id, the tuples it emits (Storm's `MockedSources`).
#[derive(Debug, Default, Clone)]
pub struct MockedSources {
    data: BTreeMap<String, Vec<(String, Values)>>,
}

impl MockedSources {
    /// No mocked data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spout `spout` emits `tuples` on its default stream.
    pub fn add(self, spout: &str, tuples: Vec<Values>) -> Self {
        self.add_stream(spout, DEFAULT_STREAM, tuples)
    }

    /// Spout `spout` emits `tuples` on `stream`.
    pub fn add_stream(mut self, spout: &str, stream: &str, tuples: Vec<Values>) -> Self {
        self.data
            .entry(spout.to_owned())
            .or_default()
            .extend(tuples.into_iter().map(|v| (stream.to_owned(), v)));
        self
    }
}

/// Why [`complete_topology`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// A mocked source names something that is not a spout.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The topology did not start.
    #[error(transparent)]
    Cluster(#[from] LocalClusterError),
    /// The run did not finish in time.
    #[error("topology did not complete within {timeout:?}: {acked} acked and {failed} failed of {total} spout tuples, {in_flight} tuples in flight")]
    Timeout {
        /// The limit.
        timeout: Duration,
        /// Spout tuples acked.
        acked: usize,
        /// Spout tuples failed.
        failed: usize,
        /// Spout tuples in all.
        total: usize,
        /// Tuples still moving.
        in_flight: i64,
    },
}

type Captured = BTreeMap<String, BTreeMap<String, Vec<Values>>>;

/// What a completed run emitted, per component and stream, in emit order per
/// task.
#[derive(Debug, Clone)]
pub struct CompletedTopology {
    emitted: Captured,
    /// Final metrics.
    pub metrics: TopologyMetrics,
}

impl CompletedTopology {
    /// What `component` emitted on its default stream.
    pub fn emitted(&self, component: &str) -> Vec<Values> {
        self.emitted_on(component, DEFAULT_STREAM)
    }

    /// What `component` emitted on `stream`.
    pub fn emitted_on(&self, component: &str, stream: &str) -> Vec<Values> {
        self.emitted
            .get(component)
            .and_then(|s| s.get(stream))
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs `topology` with its spouts replaced by [`FixedTupleSpout`]s emitting
/// `sources`, until every spout tuple is acked or failed and nothing is in
/// flight (at most 60 s), then returns what every component emitted
/// (Storm's `completeTopology`). Spouts without mocked data emit nothing.
pub fn complete_topology(
    topology: &Topology,
    config: &Config,
    sources: MockedSources,
) -> Result<CompletedTopology, CompleteError> {
    complete_topology_within(topology, config, sources, Duration::from_secs(60))
}

/// [`complete_topology`] with a time limit.
pub fn complete_topology_within(
    topology: &Topology,
    config: &Config,
    sources: MockedSources,
    timeout: Duration,
) -> Result<CompletedTopology, CompleteError> {
    let progress: Arc<FixedProgress> = Arc::default();
    let mut total = 0;
    let mut mocked = topology.clone();
    for (id, c) in &topology.spec().components {
        if c.kind != squall_topology_api::spec::ComponentKind::Spout {
            continue;
        }
        let tuples = Arc::new(sources.data.get(id.as_str()).cloned().unwrap_or_default());
        total += tuples.len();
        let fields = c
            .streams
            .get(DEFAULT_STREAM)
            .map(|s| s.fields.clone())
            .unwrap_or_default();
        let p = progress.clone();
        mocked = mocked.with_spout_factory(
            id.as_str(),
            Arc::new(move || {
                Box::new(FixedTupleSpout::shared(
                    fields.clone(),
                    tuples.clone(),
                    p.clone(),
                )) as Box<dyn Spout>
            }),
        )?;
    }
    for id in sources.data.keys() {
        topology.with_spout_factory(
            id,
            Arc::new(|| Box::new(FixedTupleSpout::declaring(Fields::default())) as Box<dyn Spout>),
        )?;
    }
    let captured: Arc<Mutex<Captured>> = Arc::default();
    let sink = captured.clone();
    let tap: EmitTap = Arc::new(move |component, _task, stream, values| {
        let mut c = sink.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(component.0.clone())
            .or_default()
            .entry(stream.0.clone())
            .or_default()
            .push(values.clone());
    });
    let cluster = LocalCluster::new();
    let name = "complete-topology";
    cluster.submit_with(
        name,
        config,
        mocked,
        LaunchOptions {
            tap: Some(tap),
            ..LaunchOptions::default()
        },
    )?;
    let done = || {
        progress.acked.load(Ordering::Acquire) + progress.failed.load(Ordering::Acquire) == total
            && cluster.in_flight(name).unwrap_or(0) == 0
    };
    let finished = wait_for(timeout, || {
        done() && {
            std::thread::sleep(Duration::from_millis(5));
            done()
        }
    });
    let in_flight = cluster.in_flight(name).unwrap_or(0);
    let metrics = cluster.kill_topology(name)?;
    if !finished {
        return Err(CompleteError::Timeout {
            timeout,
            acked: progress.acked.load(Ordering::Acquire),
            failed: progress.failed.load(Ordering::Acquire),
            total,
            in_flight,
        });
    }
    let emitted = std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(CompletedTopology { emitted, metrics })
}

struct FeederShared {
    fields: Fields,
    queue: Mutex<VecDeque<(Values, Option<Value>)>>,
    acked: Mutex<Vec<Value>>,
    failed: Mutex<Vec<(Value, FailReason)>>,
    next_id: AtomicU64,
}

/// Feeds tuples to a [`FeederSpout`] from a test and records what was acked
/// and failed (Storm's `FeederSpout`). Clones share the same spout queue.
#[derive(Clone)]
pub struct Feeder {
    shared: Arc<FeederShared>,
}

impl Feeder {
    /// A feeder whose spout declares `fields` on the default stream.
    pub fn new(fields: impl Into<Fields>) -> Self {
        Self {
            shared: Arc::new(FeederShared {
                fields: fields.into(),
                queue: Mutex::default(),
                acked: Mutex::default(),
                failed: Mutex::default(),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// The spout factory to pass to `set_spout`.
    pub fn spout(&self) -> impl Fn() -> FeederSpout + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || FeederSpout {
            shared: shared.clone(),
        }
    }

    /// Queues a tracked tuple with the next integer message id, returned.
    pub fn feed(&self, values: Values) -> Value {
        let id = Value::from(self.shared.next_id.fetch_add(1, Ordering::AcqRel));
        self.feed_with_id(values, id.clone());
        id
    }

    /// Queues a tracked tuple with message id `id`.
    pub fn feed_with_id(&self, values: Values, id: Value) {
        self.lock_queue().push_back((values, Some(id)));
    }

    /// Queues an untracked tuple.
    pub fn feed_untracked(&self, values: Values) {
        self.lock_queue().push_back((values, None));
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(Values, Option<Value>)>> {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Message ids acked so far, in order.
    pub fn acked(&self) -> Vec<Value> {
        self.shared
            .acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Message ids failed so far, with the reason, in order.
    pub fn failed(&self) -> Vec<(Value, FailReason)> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tuples fed and not yet emitted.
    pub fn queued(&self) -> usize {
        self.lock_queue().len()
    }
}

/// The spout side of a [`Feeder`]: emits what the test feeds.
pub struct FeederSpout {
    shared: Arc<FeederShared>,
}

impl Spout for FeederSpout {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        let next = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front();
        if let Some((values, id)) = next {
            out.emit_stream(DEFAULT_STREAM, values, id);
        }
    }

    fn ack(&mut self, msg_id: Value) {
        self.shared
            .acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg_id);
    }

    fn fail(&mut self, msg_id: Value, reason: FailReason) {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((msg_id, reason));
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(self.shared.fields.clone());
    }
}
