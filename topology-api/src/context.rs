//! Task layout and the context a task sees at `open` / `prepare`.

use crate::spec::{ComponentKind, TopologySpec};
use crate::time::TopologyClock;
use crate::user_metrics::{Counter, Histogram, MetricRegistry};
use crate::{ComponentId, Config, Fields, SharedStore, StreamId, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

/// Component id of the acker bolt (Storm's `__acker`).
pub const ACKER_COMPONENT: &str = "__acker";

/// One executor: a component and a contiguous range of its task ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    /// The component.
    pub component: ComponentId,
    /// First task id (inclusive) to last (exclusive).
    pub tasks: Range<u32>,
}

impl ExecutorSpec {
    /// The executor's task ids.
    pub fn task_ids(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.tasks.clone().map(TaskId)
    }
}

/// Where every task and executor of a topology is: task ids are dealt to
/// components in component-id order starting at 1 (the `__acker` component
/// included), and each component's tasks are split into contiguous ranges,
/// one per executor, as Storm does. Deterministic: every worker of a
/// topology computes the same layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLayout {
    component_tasks: BTreeMap<ComponentId, Vec<TaskId>>,
    task_component: Vec<ComponentId>,
    executors: Vec<ExecutorSpec>,
}

impl TaskLayout {
    /// Lays out `spec` with `ackers` acker tasks (one executor each).
    pub fn new(spec: &TopologySpec, ackers: u32) -> Self {
        let mut sizes: BTreeMap<ComponentId, (u32, u32)> = spec
            .components
            .iter()
            .map(|(id, c)| (id.clone(), (c.parallelism, c.num_tasks)))
            .collect();
        if ackers > 0 {
            sizes.insert(ACKER_COMPONENT.into(), (ackers, ackers));
        }
        let mut layout = Self {
            component_tasks: BTreeMap::new(),
            task_component: Vec::new(),
            executors: Vec::new(),
        };
        let mut next = 1u32;
        for (id, (parallelism, tasks)) in sizes {
            let first = next;
            next += tasks;
            layout
                .component_tasks
                .insert(id.clone(), (first..next).map(TaskId).collect());
            layout
                .task_component
                .extend(std::iter::repeat_n(id.clone(), tasks as usize));
            for e in 0..parallelism {
                let lo = first + e * tasks / parallelism;
                let hi = first + (e + 1) * tasks / parallelism;
                layout.executors.push(ExecutorSpec {
                    component: id.clone(),
                    tasks: lo..hi,
                });
            }
        }
        layout
    }

    /// The task ids of `component`, sorted; empty if unknown.
    pub fn component_tasks(&self, component: &str) -> &[TaskId] {
        self.component_tasks
            .get(component)
            .map_or(&[], Vec::as_slice)
    }

    /// The component of `task`.
    pub fn task_component(&self, task: TaskId) -> Option<&ComponentId> {
        self.task_component.get((task.0 as usize).checked_sub(1)?)
    }

    /// Total number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.task_component.len()
    }

    /// All executors, in component-id order.
    pub fn executors(&self) -> &[ExecutorSpec] {
        &self.executors
    }

    /// Component ids and their tasks.
    pub fn components(&self) -> impl Iterator<Item = (&ComponentId, &[TaskId])> {
        self.component_tasks.iter().map(|(c, t)| (c, t.as_slice()))
    }
}

/// Asks a bolt task's executor to call [`Bolt::wake`](crate::Bolt::wake)
/// on the task's thread. Cheap to clone and callable from any thread;
/// wakes that arrive before the executor gets to them fold into one call.
#[derive(Clone)]
pub struct TaskWaker(Arc<dyn Fn() + Send + Sync>);

impl TaskWaker {
    /// A waker that runs `wake` (the runtime makes these).
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(wake))
    }

    /// Schedules a call of the task's `Bolt::wake`.
    pub fn wake(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for TaskWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TaskWaker")
    }
}

/// What a task knows about itself and its topology (Storm's
/// `TopologyContext`), given to `Spout::open` and `Bolt::prepare`.
#[derive(Debug, Clone)]
pub struct TopologyContext {
    topology_name: String,
    task_id: TaskId,
    component_id: ComponentId,
    layout: Arc<TaskLayout>,
    spec: Arc<TopologySpec>,
    config: Arc<Config>,
    waker: Option<TaskWaker>,
    store: Option<SharedStore>,
    metrics: MetricRegistry,
    clock: TopologyClock,
}

impl TopologyContext {
    /// A context for `task_id` (the runtime makes these).
    pub fn new(
        topology_name: &str,
        task_id: TaskId,
        layout: Arc<TaskLayout>,
        spec: Arc<TopologySpec>,
        config: Arc<Config>,
    ) -> Self {
        let component_id = layout
            .task_component(task_id)
            .cloned()
            .unwrap_or_else(|| ComponentId::from(""));
        Self {
            topology_name: topology_name.to_owned(),
            task_id,
            component_id,
            layout,
            spec,
            config,
            waker: None,
            store: None,
            metrics: MetricRegistry::default(),
            clock: TopologyClock::default(),
        }
    }

    /// The counter `name` of this task (Storm's `registerCounter`); calling
    /// again with the same name returns the same counter. Its value is
    /// published with the task's metrics (`TaskMetrics::user`).
    pub fn register_counter(&self, name: &str) -> Counter {
        self.metrics.counter(name)
    }

    /// Registers gauge `name` (Storm's `registerGauge`): `read` is called
    /// on the task's executor thread each time the task's metrics are
    /// published (every 100 ms), and its value appears in
    /// `TaskMetrics::user`.
    pub fn register_gauge(&self, name: &str, read: impl Fn() -> f64 + Send + Sync + 'static) {
        self.metrics.gauge(name, read)
    }

    /// The histogram `name` of this task (Storm's `registerHistogram`),
    /// with [`DEFAULT_BUCKETS`](crate::user_metrics::DEFAULT_BUCKETS)
    /// (Prometheus's defaults, meant for seconds).
    pub fn register_histogram(&self, name: &str) -> Histogram {
        self.metrics
            .histogram(name, &crate::user_metrics::DEFAULT_BUCKETS)
    }

    /// The histogram `name` with bucket upper bounds `bounds` (any unit;
    /// `+Inf` is implied).
    pub fn register_histogram_with_buckets(&self, name: &str, bounds: &[f64]) -> Histogram {
        self.metrics.histogram(name, bounds)
    }

    /// Every metric this task registered (the runtime reads it when it
    /// publishes the task's metrics).
    pub fn metric_registry(&self) -> &MetricRegistry {
        &self.metrics
    }

    /// This context with `waker` for the task (the runtime sets it for bolt
    /// tasks).
    pub fn with_waker(mut self, waker: TaskWaker) -> Self {
        self.waker = Some(waker);
        self
    }

    /// This context with the cluster's coordination store (the runtime
    /// sets it for every task).
    pub fn with_store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// This context on `clock` (the runtime sets the topology's).
    pub fn with_clock(mut self, clock: TopologyClock) -> Self {
        self.clock = clock;
        self
    }

    /// The time the topology runs on: the system's, or simulated under
    /// `LocalCluster::simulated` (read time through it, not the system,
    /// so simulated-time tests see what the component sees).
    pub fn clock(&self) -> &TopologyClock {
        &self.clock
    }

    /// The cluster's [`CoordinationStore`](crate::CoordinationStore):
    /// ZooKeeper in a cluster, memory in `LocalCluster`; `None` only in
    /// contexts made by hand.
    pub fn store(&self) -> Option<&SharedStore> {
        self.store.as_ref()
    }

    /// The waker of this bolt task (`None` for spouts, whose executor polls
    /// `next_tuple` anyway).
    pub fn waker(&self) -> Option<&TaskWaker> {
        self.waker.as_ref()
    }

    /// The topology's definition: components, streams and subscriptions.
    pub fn spec(&self) -> &TopologySpec {
        &self.spec
    }

    /// Every component id with its task ids.
    pub fn layout(&self) -> &TaskLayout {
        &self.layout
    }

    /// The topology's name.
    pub fn topology_name(&self) -> &str {
        &self.topology_name
    }

    /// This task's id.
    pub fn this_task_id(&self) -> TaskId {
        self.task_id
    }

    /// This task's component.
    pub fn this_component_id(&self) -> &ComponentId {
        &self.component_id
    }

    /// The task ids of this task's component.
    pub fn this_component_tasks(&self) -> &[TaskId] {
        self.layout.component_tasks(self.component_id.as_str())
    }

    /// This task's index among its component's tasks (0-based).
    pub fn this_task_index(&self) -> usize {
        self.this_component_tasks()
            .iter()
            .position(|t| *t == self.task_id)
            .unwrap_or(0)
    }

    /// The task ids of `component`.
    pub fn component_tasks(&self, component: &str) -> &[TaskId] {
        self.layout.component_tasks(component)
    }

    /// The component of `task`.
    pub fn task_component(&self, task: TaskId) -> Option<&ComponentId> {
        self.layout.task_component(task)
    }

    /// The fields of this component's output `stream`.
    pub fn output_fields(&self, stream: &str) -> Option<&Fields> {
        let c = self.spec.components.get(&self.component_id)?;
        c.streams.get(&StreamId::from(stream)).map(|s| &s.fields)
    }

    /// Whether this task runs a spout.
    pub fn is_spout(&self) -> bool {
        self.spec
            .components
            .get(&self.component_id)
            .is_some_and(|c| c.kind == ComponentKind::Spout)
    }

    /// The topology's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
