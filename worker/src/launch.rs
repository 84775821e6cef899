//! Starting a topology's executors and controlling them.

use crate::acking::{Acker, ACK_ACK_STREAM, ACK_FAIL_STREAM, ACK_RESET_TIMEOUT_STREAM};
use crate::backpressure::Backpressure;
use crate::bolt_executor::BoltExecutor;
use crate::inline_acker::InlineAcker;
use crate::message::{Envelope, StreamTable};
use crate::outbox::Wiring;
use crate::routing::{Locality, Router};
use crate::shared::{EmitTap, Output, Shared};
use crate::spout_executor::SpoutExecutor;
use crate::stats::MetricsBoard;
use squall_cluster::memory_store;
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::spec::{
    ComponentConfig, ComponentKind, ComponentSpec, InputSpec, TopologySpec,
};
use squall_topology_api::{
    Bolt, BoltFactory, ComponentId, Config, GroupingSpec, OutputFieldsDeclarer, SharedStore,
    TaskId, TaskLayout, Topology, TopologyClock, ACKER_COMPONENT,
};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Why a topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The OS refused a thread.
    #[error("could not start executor thread for {component:?}: {error}")]
    Spawn {
        /// The executor's component.
        component: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The topology has no factory for a component of its spec.
    #[error("no spout or bolt factory for component {0:?}")]
    MissingFactory(String),
}

/// Options for [`launch`].
#[derive(Default, Clone)]
pub struct LaunchOptions {
    /// Observer of every emit (testing kit).
    pub tap: Option<EmitTap>,
    /// Start with spouts deactivated.
    pub start_inactive: bool,
    /// The spec to run instead of the topology's own (same components and
    /// tasks, other parallelism: a rebalanced topology).
    pub spec: Option<TopologySpec>,
    /// Run only some executors here; batches for the others go to a
    /// transfer queue (a worker of a cluster).
    pub partial: Option<Partial>,
    /// The coordination store tasks see; `None`: a fresh one in memory.
    pub store: Option<SharedStore>,
    /// The time executors and tasks run on; `None`: the system's.
    pub clock: Option<TopologyClock>,
    /// Where sampled events go (`squall debug`); `None`: the log.
    pub events: Option<crossbeam_channel::Sender<crate::sampling::SampledEvent>>,
}

/// Which executors a worker runs, and where batches for the rest go.
#[derive(Clone)]
pub struct Partial {
    /// Indexes (into [`TaskLayout::executors`]) of the executors run here.
    pub local: Vec<usize>,
    /// The transfer queue: receives every batch for a task not run here,
    /// encoded by the sending executor, all of its messages for one
    /// executor.
    pub transfer: crossbeam_channel::Sender<Envelope>,
}

/// What a transport needs to deliver batches to the executors of a worker.
#[derive(Clone)]
pub struct Inbound {
    /// Queues and task placement.
    pub wiring: Arc<Wiring>,
    /// In-flight counter (add before delivering).
    pub in_flight: Arc<AtomicI64>,
    /// Set when the worker stops.
    pub stop: Arc<AtomicBool>,
    /// Whether each executor index runs here.
    pub local: Arc<Vec<bool>>,
    /// Task and executor layout.
    pub layout: Arc<TaskLayout>,
    /// Which executors are backpressured, here and in peer workers.
    pub backpressure: Arc<Backpressure>,
}

/// The spec plus the system component `__acker` (when tracking is on),
/// whose direct streams every spout subscribes to.
pub fn system_spec(spec: &TopologySpec, ackers: u32) -> TopologySpec {
    let mut spec = spec.clone();
    if ackers == 0 {
        return spec;
    }
    let mut d = OutputFieldsDeclarer::new();
    Acker::default().declare_output_fields(&mut d);
    let (streams, _) = d.finish();
    for c in spec
        .components
        .values_mut()
        .filter(|c| c.kind == ComponentKind::Spout)
    {
        for s in [ACK_ACK_STREAM, ACK_FAIL_STREAM, ACK_RESET_TIMEOUT_STREAM] {
            c.inputs.push(InputSpec {
                component: ACKER_COMPONENT.into(),
                stream: s.into(),
                grouping: GroupingSpec::Direct,
            });
        }
    }
    spec.components.insert(
        ACKER_COMPONENT.into(),
        ComponentSpec {
            kind: ComponentKind::Bolt,
            parallelism: ackers,
            num_tasks: ackers,
            inputs: Vec::new(),
            streams,
            config: ComponentConfig::default(),
        },
    );
    spec
}

/// A topology whose executors run on threads of this process.
pub struct RunningTopology {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    local: Arc<Vec<bool>>,
}

/// Starts every executor of `topology` as a thread of this process (one
/// worker holding all executors, as in Storm's local mode).
pub fn launch(
    name: &str,
    topology: &Topology,
    config: &Config,
    options: LaunchOptions,
) -> Result<RunningTopology, LaunchError> {
    let ackers = config.effective_ackers();
    let user_spec = options.spec.as_ref().unwrap_or(topology.spec());
    let layout = Arc::new(TaskLayout::new(user_spec, ackers));
    let spec = Arc::new(system_spec(user_spec, ackers));
    let streams = Arc::new(StreamTable::new(&spec));
    let capacity = (config.executor_receive_buffer_size / config.producer_batch_size.max(1)).max(2);
    let n = layout.executors().len();
    let local: Vec<bool> = match &options.partial {
        None => vec![true; n],
        Some(p) => (0..n).map(|i| p.local.contains(&i)).collect(),
    };
    let (mut senders, mut receivers): (Vec<_>, Vec<_>) = (0..n)
        .map(|i| match &options.partial {
            Some(p) if !local[i] => (p.transfer.clone(), None),
            _ => {
                let (s, r) = crossbeam_channel::bounded::<Envelope>(capacity);
                (s, Some(r))
            }
        })
        .unzip();
    // An acker executor run by a spout executor receives on its queue.
    let hosted = if config.acker_spout_thread {
        acker_hosts(&layout, &spec, &local)
    } else {
        Vec::new()
    };
    let mut hosted_by = vec![None; n];
    for &(acker, spout) in &hosted {
        senders[acker] = senders[spout].clone();
        receivers[acker] = None;
        hosted_by[spout] = Some(layout.executors()[acker].tasks.clone());
    }
    let local = Arc::new(local);
    let mut executor_of_task = vec![0u32; layout.num_tasks() + 1];
    for (i, e) in layout.executors().iter().enumerate() {
        for t in e.tasks.clone() {
            executor_of_task[t as usize] = i as u32;
        }
    }
    let ackers = layout.component_tasks(ACKER_COMPONENT).to_vec();
    let runs_here = |t: &TaskId| local[executor_of_task[t.0 as usize] as usize];
    let mut local_ackers: Vec<u64> = (0..ackers.len() as u64)
        .filter(|&i| runs_here(&ackers[i as usize]))
        .collect();
    if local_ackers.is_empty() {
        local_ackers = (0..ackers.len() as u64).collect();
    }
    let shared = Arc::new(Shared {
        name: name.to_owned(),
        topology: topology.clone(),
        ackers,
        local_ackers,
        spec,
        layout: layout.clone(),
        streams,
        config: Arc::new(config.clone()),
        store: options.store.unwrap_or_else(memory_store),
        wiring: Arc::new(Wiring::new(
            senders,
            executor_of_task,
            local.iter().map(|l| !l).collect(),
        )),
        active: AtomicBool::new(!options.start_inactive),
        stop: Arc::new(AtomicBool::new(false)),
        in_flight: Arc::new(AtomicI64::new(0)),
        board: Arc::new(Mutex::new(TopologyMetrics::default())),
        backpressure: Arc::new({
            let bp = Backpressure::new(n, layout.num_tasks());
            match &options.partial {
                Some(p) => bp.with_transfer(p.transfer.clone()),
                None => bp,
            }
        }),
        tap: options.tap,
        clock: options.clock.unwrap_or_default(),
        sampler: Arc::new(crate::sampling::Sampler::new(
            user_spec.components.keys().cloned(),
            options.events,
        )),
    });
    let mut running = RunningTopology {
        shared: shared.clone(),
        threads: Vec::new(),
        local: local.clone(),
    };
    // Each executor reports once built (its tasks prepared or opened), so
    // `launch` returns a running topology: timers start before any caller
    // moves simulated time.
    let (built_tx, built_rx) = crossbeam_channel::unbounded::<()>();
    let mut spawned = 0usize;
    for (i, (exec, inbound)) in layout.executors().iter().zip(receivers).enumerate() {
        let Some(inbound) = inbound else { continue };
        let built = built_tx.clone();
        let shared = shared.clone();
        let local = local.clone();
        let component = exec.component.clone();
        let kind = shared.spec.components[&component].kind;
        if component.as_str() != ACKER_COMPONENT {
            let known = match kind {
                ComponentKind::Spout => topology.spout_factory(component.as_str()).is_some(),
                ComponentKind::Bolt => topology.bolt_factory(component.as_str()).is_some(),
            };
            if !known {
                running.shutdown_threads();
                return Err(LaunchError::MissingFactory(component.0));
            }
        }
        let tasks = exec.tasks.clone();
        let acker = hosted_by[i].clone();
        let thread_name = format!("{name}-{component}-{}", tasks.start);
        let seed = i as u64 ^ 0x5eed;
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    run_executor(
                        shared.clone(),
                        component.clone(),
                        ThreadTasks {
                            own: tasks.clone(),
                            acker,
                        },
                        inbound,
                        seed,
                        local.clone(),
                        built,
                    )
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    report_panic(&shared, &component, tasks, panic);
                }
            })
            .map_err(|error| LaunchError::Spawn {
                component: exec.component.0.clone(),
                error,
            });
        match handle {
            Ok(h) => {
                running.threads.push(h);
                spawned += 1;
            }
            Err(e) => {
                running.shutdown_threads();
                return Err(e);
            }
        }
    }
    drop(built_tx);
    // A thread that panics while building drops its sender without a
    // report; a component stuck in `prepare` is waited for at most
    // BUILD_WAIT.
    let deadline = std::time::Instant::now() + BUILD_WAIT;
    for _ in 0..spawned {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if built_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    Ok(running)
}

/// How long `launch` waits for its executors to be built.
const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The acker executors to run in spout executors' threads, as (acker
/// executor, spout executor) pairs: this worker's acker executors and its
/// spout executors, paired in order (an acker left over runs in its own
/// thread).
fn acker_hosts(layout: &TaskLayout, spec: &TopologySpec, local: &[bool]) -> Vec<(usize, usize)> {
    let here = |is: &dyn Fn(&ComponentId) -> bool| -> Vec<usize> {
        let executors = layout.executors().iter().enumerate();
        executors
            .filter(|(i, e)| local[*i] && is(&e.component))
            .map(|(i, _)| i)
            .collect()
    };
    let ackers = here(&|c| c.as_str() == ACKER_COMPONENT);
    let spouts = here(&|c| {
        spec.components
            .get(c)
            .is_some_and(|s| s.kind == ComponentKind::Spout)
    });
    ackers.into_iter().zip(spouts).collect()
}

/// The router of an executor of `component`.
fn router_for(shared: &Shared, component: &str, local: Arc<Vec<bool>>, seed: u64) -> Router {
    let config = &shared.config;
    let locality = Locality {
        local,
        wiring: shared.wiring.clone(),
        bounds: (!config.disable_loadaware_messaging).then_some((
            config.localityaware_lower_bound,
            config.localityaware_higher_bound,
        )),
    };
    Router::new(
        component,
        &shared.spec,
        &shared.topology,
        &shared.layout,
        &shared.streams,
        &locality,
        seed,
    )
}

/// The tasks an executor's thread runs: the executor's own and, for a
/// spout executor, the acker tasks it hosts (`topology.acker.spout.thread`).
struct ThreadTasks {
    own: std::ops::Range<u32>,
    acker: Option<std::ops::Range<u32>>,
}

/// Builds one executor's router and tasks (and those of the acker tasks it
/// hosts), then runs its loop until the topology stops.
fn run_executor(
    shared: Arc<Shared>,
    component: ComponentId,
    ThreadTasks { own: tasks, acker }: ThreadTasks,
    inbound: crossbeam_channel::Receiver<Envelope>,
    seed: u64,
    local: Arc<Vec<bool>>,
    built: crossbeam_channel::Sender<()>,
) {
    let router = router_for(&shared, component.as_str(), local.clone(), seed);
    match shared.spec.components[&component].kind {
        ComponentKind::Spout => {
            if let Some(f) = shared.topology.spout_factory(component.as_str()).cloned() {
                let acker = acker.map(|acker_tasks| {
                    let router = router_for(&shared, ACKER_COMPONENT, local, seed ^ 0xac4e);
                    let out = Output::new(&shared, ComponentId::from(ACKER_COMPONENT), router);
                    InlineAcker::new(&shared, acker_tasks, tasks.clone(), out)
                });
                let executor = SpoutExecutor::new(
                    shared.clone(),
                    component,
                    tasks,
                    &*f,
                    inbound,
                    router,
                    acker,
                );
                let _ = built.send(());
                executor.run()
            }
        }
        ComponentKind::Bolt => {
            // The acker is the engine's own: no factory.
            let factory: Option<BoltFactory> = if component.as_str() == ACKER_COMPONENT {
                None
            } else {
                match shared.topology.bolt_factory(component.as_str()) {
                    Some(f) => Some(f.clone()),
                    None => return,
                }
            };
            let executor = BoltExecutor::new(
                shared.clone(),
                component,
                tasks,
                factory.as_deref(),
                inbound,
                router,
            );
            let _ = built.send(());
            executor.run()
        }
    }
}

/// Records a user panic that ended an executor in its tasks' metrics. The
/// executor's queue closes, so tuples sent to it are dropped and their
/// trees fail by timeout (in a cluster, the worker would be restarted).
fn report_panic(
    shared: &Shared,
    component: &ComponentId,
    tasks: std::ops::Range<u32>,
    panic: Box<dyn std::any::Any + Send>,
) {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    let error = format!("executor of {component} (tasks {tasks:?}) died: panicked: {msg}");
    tracing::error!(topology = %shared.name, "{error}");
    let mut board = shared.board.lock().unwrap_or_else(|p| p.into_inner());
    for t in tasks {
        let m = board.tasks.entry(TaskId(t)).or_default();
        m.component = component.clone();
        m.errors.push(error.clone());
    }
}

impl RunningTopology {
    /// The topology's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Lets spouts call `next_tuple` (calls `Spout::activate`).
    pub fn activate(&self) {
        self.shared.active.store(true, Ordering::Release);
    }

    /// Samples emitted tuples as `debug` says (Storm's event logger).
    pub fn set_debug(&self, debug: &squall_cluster::debug::TopologyDebug) {
        self.shared.sampler.apply(debug);
    }

    /// Stops `next_tuple` calls (calls `Spout::deactivate`); acks, fails and
    /// bolts go on.
    pub fn deactivate(&self) {
        self.shared.active.store(false, Ordering::Release);
    }

    /// Whether spouts are active.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    /// The latest published metrics (executors publish every 100 ms).
    pub fn metrics(&self) -> TopologyMetrics {
        self.shared
            .board
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tuples emitted (or acking messages sent) and not yet processed by
    /// their receiver. Zero when the topology is quiet.
    pub fn in_flight(&self) -> i64 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// A handle reading this topology's metrics and in-flight count from
    /// another thread, which keeps working after shutdown.
    pub fn probe(&self) -> Probe {
        Probe {
            board: self.shared.board.clone(),
            in_flight: self.shared.in_flight.clone(),
        }
    }

    /// The task layout.
    pub fn layout(&self) -> &TaskLayout {
        &self.shared.layout
    }

    /// What a transport needs to deliver batches here.
    pub fn inbound(&self) -> Inbound {
        Inbound {
            wiring: self.shared.wiring.clone(),
            in_flight: self.shared.in_flight.clone(),
            stop: self.shared.stop.clone(),
            local: self.local.clone(),
            layout: self.shared.layout.clone(),
            backpressure: self.shared.backpressure.clone(),
        }
    }

    /// The acker task ids.
    pub fn acker_tasks(&self) -> &[TaskId] {
        &self.shared.ackers
    }

    /// Whether any executor thread has ended (a user panic).
    pub fn has_dead_executor(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished()) && !self.shared.stopping()
    }

    fn shutdown_threads(&mut self) {
        self.shared.active.store(false, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        for q in &self.shared.wiring.queues {
            let _ = q.try_send(Envelope::Wake);
        }
        for t in self.threads.drain(..) {
            if let Err(panic) = t.join() {
                tracing::error!(topology = %self.shared.name, "executor panicked: {panic:?}");
            }
        }
    }

    /// Stops every executor: spouts are deactivated and closed, bolts
    /// cleaned up; tuples still queued are dropped (their trees fail by
    /// timeout if the topology is restarted elsewhere). Returns the final
    /// metrics.
    pub fn shutdown(mut self) -> TopologyMetrics {
        self.shutdown_threads();
        self.metrics()
    }
}

/// Reads a running topology's metrics and in-flight count (see
/// [`RunningTopology::probe`]).
#[derive(Clone)]
pub struct Probe {
    board: MetricsBoard,
    in_flight: Arc<AtomicI64>,
}

impl Probe {
    /// As [`RunningTopology::metrics`].
    pub fn metrics(&self) -> TopologyMetrics {
        self.board.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// As [`RunningTopology::in_flight`].
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Acquire)
    }
}

impl Drop for RunningTopology {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}
