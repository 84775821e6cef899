//! What every executor of a running topology shares, and the routing step
//! common to spout and bolt emits.

use crate::message::StreamTable;
use crate::outbox::{Outbox, Wiring};
use crate::routing::{Router, Targets};
use crate::stats::{MetricsBoard, TaskStats};
use rand::rngs::SmallRng;
use rand::Rng;
use rand::SeedableRng;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{
    ComponentId, Config, SharedStore, StreamId, TaskId, TaskLayout, Topology, TopologyClock,
    TopologyContext, Values,
};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;

/// Sees every emit of a topology: `(component, task, stream, values)`.
/// Used by the testing kit to capture what each component emitted.
pub type EmitTap = Arc<dyn Fn(&ComponentId, TaskId, &StreamId, &Values) + Send + Sync>;

/// State shared by the executors of one running topology.
pub struct Shared {
    /// The topology's name.
    pub name: String,
    /// Factories.
    pub topology: Topology,
    /// The spec plus the `__acker` component and its subscriptions.
    pub spec: Arc<TopologySpec>,
    /// Task and executor layout.
    pub layout: Arc<TaskLayout>,
    /// Stream numbering.
    pub streams: Arc<StreamTable>,
    /// Configuration.
    pub config: Arc<Config>,
    /// The cluster's coordination store, given to every task.
    pub store: SharedStore,
    /// Queues of every executor.
    pub wiring: Arc<Wiring>,
    /// The acker tasks (empty: no tracking).
    pub ackers: Vec<TaskId>,
    /// Positions in `ackers` of the ackers run in this worker (all of them
    /// when none is).
    pub local_ackers: Vec<u64>,
    /// Whether spouts should call `next_tuple`.
    pub active: AtomicBool,
    /// Set once to stop every executor.
    pub stop: Arc<AtomicBool>,
    /// Tuples sent and not yet fully processed (see [`Outbox::new`](crate::outbox::Outbox::new)).
    pub in_flight: Arc<AtomicI64>,
    /// Published metrics.
    pub board: MetricsBoard,
    /// Which executors are backpressured, here and in peer workers.
    pub backpressure: Arc<crate::backpressure::Backpressure>,
    /// Optional emit observer.
    pub tap: Option<EmitTap>,
    /// The time executors judge timeouts and ticks by.
    pub clock: TopologyClock,
    /// Event sampling (`squall debug`).
    pub sampler: Arc<crate::sampling::Sampler>,
}

impl Shared {
    /// The acker task responsible for tree `root` (Storm: hash mod ackers).
    pub fn acker_for(&self, root: u64) -> TaskId {
        self.ackers[(root % self.ackers.len() as u64) as usize]
    }

    /// A new tree root (random, never 0) whose acker runs in this worker
    /// when one does. Storm hashes a random root onto any acker; drawing
    /// the root so that `root mod ackers` is a local acker keeps a tree's
    /// init and completion messages in-process. Only for tracked tuples,
    /// so `ackers` is not empty.
    pub fn new_root(&self, rng: &mut impl rand::Rng) -> u64 {
        self.new_root_among(&self.local_ackers, rng)
    }

    /// A new tree root (random, never 0) whose acker is one of the
    /// ackers at `positions` in [`Shared::ackers`] (not empty).
    pub fn new_root_among(&self, positions: &[u64], rng: &mut impl rand::Rng) -> u64 {
        let n = self.ackers.len() as u64;
        let k = positions[rng.random_range(0..positions.len())];
        rng.random_range(1..u64::MAX / n) * n + k
    }

    /// Whether executors should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Marks `n` received tuples as fully processed: call only once the
    /// executor's outbox is empty, so their outputs are already counted.
    pub fn done_in_flight(&self, n: i64) {
        if n != 0 {
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// An executor's output side: grouping state, per-receiver batch buffers,
/// and the random source of root and edge ids.
pub struct Output {
    /// Grouping dispatch for the component's streams.
    pub router: Router,
    /// Batch buffers.
    pub outbox: Outbox,
    /// Root and edge ids.
    pub rng: SmallRng,
    /// Targets of the emit being routed.
    pub targets: Targets,
    component: ComponentId,
    debug: bool,
    /// The component's sampling rate (hundredths of a percent; 0: off).
    sample_rate: Arc<AtomicU32>,
}

impl Output {
    /// The output side of an executor of `component`.
    pub fn new(shared: &Shared, component: ComponentId, router: Router) -> Self {
        let debug = shared
            .spec
            .components
            .get(&component)
            .and_then(|c| c.config.debug)
            .unwrap_or(shared.config.debug);
        Self {
            router,
            outbox: Outbox::new(
                shared.wiring.clone(),
                shared.config.producer_batch_size,
                shared.backpressure.clone(),
                shared.in_flight.clone(),
            ),
            rng: SmallRng::from_os_rng(),
            targets: Targets::new(),
            sample_rate: shared.sampler.rate_of(&component),
            component,
            debug,
        }
    }

    /// The component's stream names, by local stream position.
    pub fn stream_names(&self) -> Vec<String> {
        (0..self.router.num_streams())
            .map(|p| self.router.stream(p).0 .0.clone())
            .collect()
    }

    /// Routes what acker task `acker` tells spout task `spout` (`told`),
    /// as an emit on its acking stream: counted, tapped and sampled like
    /// any emit. Returns the stream's global index; targets are in
    /// [`Output::targets`].
    pub fn route_told(
        &mut self,
        shared: &Shared,
        acker: TaskId,
        stats: &mut TaskStats,
        spout: TaskId,
        told: crate::acking::AckMsg,
    ) -> Option<u32> {
        let values = told.values();
        self.route(shared, acker, stats, told.stream(), &values, Some(spout))
    }

    /// The routing step of an emit: resolves `stream`, fills `targets`,
    /// counts the emit and calls the tap. Returns the stream's global index,
    /// or `None` (error reported, tuple dropped).
    pub fn route(
        &mut self,
        shared: &Shared,
        task: TaskId,
        stats: &mut TaskStats,
        stream: &str,
        values: &Values,
        direct: Option<TaskId>,
    ) -> Option<u32> {
        self.targets.clear();
        let router = &mut self.router;
        let routed = router.stream_position(stream).and_then(|pos| {
            router
                .targets(pos, task, values, direct, &mut self.targets)
                .map(|()| pos)
        });
        match routed {
            Ok(pos) => {
                stats.emitted[pos] += 1;
                stats.transferred[pos] += self.targets.len() as u64;
                let (sid, index) = router.stream(pos);
                if self.debug {
                    tracing::info!(topology = %shared.name, component = %self.component, %task, stream = %sid, "emitting {values}");
                }
                if let Some(tap) = &shared.tap {
                    tap(&self.component, task, sid, values);
                }
                let rate = self.sample_rate.load(Ordering::Relaxed);
                if rate != 0
                    && crate::sampling::sampled(
                        rate,
                        self.rng.random_range(0..squall_cluster::debug::RATE_SCALE),
                    )
                {
                    shared.sampler.offer(&self.component, task, sid, values);
                }
                Some(index)
            }
            Err(e) => {
                stats.report_error(e.to_string());
                None
            }
        }
    }
}

/// The context of task `task`.
pub fn task_context(shared: &Shared, task: u32) -> TopologyContext {
    TopologyContext::new(
        &shared.name,
        TaskId(task),
        shared.layout.clone(),
        shared.spec.clone(),
        shared.config.clone(),
    )
    .with_store(shared.store.clone())
    .with_clock(shared.clock.clone())
}
