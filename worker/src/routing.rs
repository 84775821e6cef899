//! Grouping dispatch: which tasks get each emitted tuple.

use crate::message::StreamTable;
use crate::outbox::Wiring;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use smallvec::SmallVec;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{
    CustomStreamGrouping, GroupingSpec, StreamId, TaskId, TaskLayout, Topology, Value, Values,
};
use std::hash::Hasher;
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, Xxh3};

/// Target tasks of one emit; inline for up to 8.
pub type Targets = SmallVec<[TaskId; 8]>;

/// Why an emit could not be routed. The tuple is dropped and the error
/// reported in the task's metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// The component did not declare the stream.
    #[error("emit on stream {0:?}, which this component does not declare")]
    UnknownStream(String),
    /// `emit_direct` on a stream not declared direct.
    #[error("emit_direct on stream {0:?}, which is not a direct stream")]
    NotDirectStream(String),
    /// A plain emit on a direct stream.
    #[error("emit on direct stream {0:?} needs emit_direct with a task id")]
    DirectStreamNeedsTask(String),
    /// `emit_direct` to a task that does not subscribe with direct grouping.
    #[error(
        "emit_direct to task {task} on stream {stream:?}, which no direct-grouping subscriber has"
    )]
    NotASubscriber {
        /// The stream.
        stream: String,
        /// The task named.
        task: TaskId,
    },
    /// A custom grouping chose a task outside its targets.
    #[error("custom grouping on stream {stream:?} chose task {task}, not a subscriber task")]
    BadCustomChoice {
        /// The stream.
        stream: String,
        /// The task chosen.
        task: TaskId,
    },
}

/// Round-robin over an order reshuffled every lap: even load, random order.
struct Shuffler {
    order: Vec<TaskId>,
    pos: usize,
}

impl Shuffler {
    fn new(tasks: &[TaskId], rng: &mut SmallRng) -> Self {
        let mut order = tasks.to_vec();
        order.shuffle(rng);
        Self { order, pos: 0 }
    }

    fn next(&mut self, rng: &mut SmallRng) -> TaskId {
        if self.pos == self.order.len() {
            self.order.shuffle(rng);
            self.pos = 0;
        }
        self.pos += 1;
        self.order[self.pos - 1]
    }
}

/// How often (in picks) a locality-aware shuffle re-reads its local load.
const LOAD_CHECK_PICKS: u32 = 64;

/// Shuffle that prefers the subscriber tasks in this worker, as Storm 2's
/// `LoadAwareShuffleGrouping` with locality awareness: it sends only to
/// local tasks until their average load reaches the higher bound, then to
/// every task until the local load falls under the lower bound. A task's
/// load is the fill of its executor's inbound queue (0 to 1), as in Storm,
/// or, when larger, the executor's capacity over its last metrics window:
/// under `max.spout.pending` a queue may never fill while its executor is
/// busy all the time, and the worker's other executors of the component
/// idle. Squall has two scopes, the worker and everything (Storm also has
/// host and rack).
struct LocalityShuffle {
    local: Shuffler,
    all: Shuffler,
    local_executors: Vec<usize>,
    wiring: Arc<Wiring>,
    lower: f64,
    higher: f64,
    wide: bool,
    countdown: u32,
}

impl LocalityShuffle {
    /// The local executors' average load: each one's inbound queue fill
    /// (Storm's measure) or its capacity, whichever is larger.
    fn local_load(&self) -> f64 {
        let loads = self.local_executors.iter().map(|&e| {
            let q = &self.wiring.queues[e];
            let fill = q.len() as f64 / q.capacity().unwrap_or(usize::MAX).max(1) as f64;
            fill.max(self.wiring.capacity(e))
        });
        loads.sum::<f64>() / self.local_executors.len().max(1) as f64
    }

    fn next(&mut self, rng: &mut SmallRng) -> TaskId {
        if self.countdown == 0 {
            self.countdown = LOAD_CHECK_PICKS;
            let load = self.local_load();
            if !self.wide && load >= self.higher {
                self.wide = true;
            } else if self.wide && load < self.lower {
                self.wide = false;
            }
        }
        self.countdown -= 1;
        if self.wide {
            self.all.next(rng)
        } else {
            self.local.next(rng)
        }
    }
}

/// Where this worker's executors are, for locality-aware shuffle.
pub struct Locality {
    /// Whether each executor index runs in this worker.
    pub local: Arc<Vec<bool>>,
    /// Queues and task placement.
    pub wiring: Arc<Wiring>,
    /// `topology.localityaware.lower.bound` and `.higher.bound`; `None`
    /// when `topology.disable.loadaware.messaging` is set.
    pub bounds: Option<(f64, f64)>,
}

impl Locality {
    fn executor(&self, t: TaskId) -> usize {
        self.wiring.executor_of_task[t.0 as usize] as usize
    }

    fn is_local(&self, t: TaskId) -> bool {
        self.local[self.executor(t)]
    }

    fn shuffle(&self, tasks: &[TaskId], rng: &mut SmallRng) -> Chooser {
        let local: Vec<TaskId> = tasks
            .iter()
            .copied()
            .filter(|&t| self.is_local(t))
            .collect();
        match self.bounds {
            Some((lower, higher)) if !local.is_empty() && local.len() < tasks.len() => {
                let mut local_executors: Vec<usize> =
                    local.iter().map(|&t| self.executor(t)).collect();
                local_executors.dedup();
                Chooser::LocalityShuffle(Box::new(LocalityShuffle {
                    local: Shuffler::new(&local, rng),
                    all: Shuffler::new(tasks, rng),
                    local_executors,
                    wiring: self.wiring.clone(),
                    lower,
                    higher,
                    wide: false,
                    countdown: 0,
                }))
            }
            _ => Chooser::Shuffle(Shuffler::new(tasks, rng)),
        }
    }
}

enum Chooser {
    Shuffle(Shuffler),
    LocalityShuffle(Box<LocalityShuffle>),
    Fields(Vec<usize>),
    All,
    Global,
    Direct,
    PartialKey { fields: Vec<usize>, load: Vec<u64> },
    Custom(Box<dyn CustomStreamGrouping>),
}

struct Subscriber {
    tasks: Vec<TaskId>,
    chooser: Chooser,
}

/// One output stream of the emitting component.
struct StreamRoute {
    name: StreamId,
    index: u32,
    direct: bool,
    subscribers: Vec<Subscriber>,
}

/// Maps a 64-bit hash onto `0..n` by multiply-shift (Lemire's "fast
/// range"): uniform for uniform hashes, and cheaper than a division.
pub fn fast_range(hash: u64, n: usize) -> usize {
    ((hash as u128 * n as u128) >> 64) as usize
}

/// Stable hash of the grouping fields of `values`: the same in every
/// process (xxh3; a single string field hashes its bytes directly).
#[inline]
fn key_hash(values: &Values, fields: &[usize], seed: u64) -> u64 {
    if let [i] = fields {
        if let Some(Value::Str(s)) = values.get(*i) {
            return if seed == 0 {
                xxh3_64(s.as_bytes())
            } else {
                xxh3_64_with_seed(s.as_bytes(), seed)
            };
        }
    }
    fields_hash(values, fields, seed)
}

/// [`key_hash`] of any fields: each value's stable hash, in order.
#[inline(never)]
fn fields_hash(values: &Values, fields: &[usize], seed: u64) -> u64 {
    let mut h = Xxh3::with_seed(seed);
    for &i in fields {
        values.get(i).unwrap_or(&Value::Null).stable_hash(&mut h);
    }
    h.finish()
}

/// The target of an emit on a direct stream (`route`), or of a direct
/// emit (`direct`): the named task, if it subscribes directly.
#[cold]
fn direct_target(
    route: &StreamRoute,
    direct: Option<TaskId>,
    out: &mut Targets,
) -> Result<(), RouteError> {
    match (direct, route.direct) {
        (Some(task), true) => {
            let ok = route.subscribers.iter().any(|s| {
                matches!(s.chooser, Chooser::Direct) && s.tasks.binary_search(&task).is_ok()
            });
            if !ok {
                return Err(RouteError::NotASubscriber {
                    stream: route.name.0.clone(),
                    task,
                });
            }
            out.push(task);
            Ok(())
        }
        (Some(_), false) => Err(RouteError::NotDirectStream(route.name.0.clone())),
        (None, _) => Err(RouteError::DirectStreamNeedsTask(route.name.0.clone())),
    }
}

/// The output routes of one executor's component: for each declared stream,
/// its subscribers and their grouping state.
pub struct Router {
    streams: Vec<StreamRoute>,
    default_stream: Option<usize>,
    rng: SmallRng,
}

impl Router {
    /// Routes for `component`'s streams in `spec` (which includes the system
    /// subscriptions), with `locality` telling which tasks share this worker.
    pub fn new(
        component: &str,
        spec: &TopologySpec,
        topology: &Topology,
        layout: &TaskLayout,
        table: &StreamTable,
        locality: &Locality,
        seed: u64,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let Some(me) = spec.components.get(component) else {
            return Self {
                streams: Vec::new(),
                default_stream: None,
                rng,
            };
        };
        let mut streams = Vec::new();
        for (sid, def) in &me.streams {
            let mut subscribers = Vec::new();
            for (cid, c) in &spec.components {
                for (n, input) in c.inputs.iter().enumerate() {
                    if input.component.as_str() != component || input.stream != *sid {
                        continue;
                    }
                    let tasks = layout.component_tasks(cid.as_str()).to_vec();
                    let fields_of = |f: &squall_topology_api::Fields| {
                        f.names()
                            .iter()
                            .filter_map(|n| def.fields.index_of(n))
                            .collect::<Vec<_>>()
                    };
                    let chooser = match &input.grouping {
                        GroupingSpec::Shuffle | GroupingSpec::None => {
                            locality.shuffle(&tasks, &mut rng)
                        }
                        GroupingSpec::LocalOrShuffle => {
                            let local: Vec<TaskId> = tasks
                                .iter()
                                .copied()
                                .filter(|&t| locality.is_local(t))
                                .collect();
                            let pool = if local.is_empty() { &tasks } else { &local };
                            Chooser::Shuffle(Shuffler::new(pool, &mut rng))
                        }
                        GroupingSpec::Fields(f) => Chooser::Fields(fields_of(f)),
                        GroupingSpec::PartialKey(f) => Chooser::PartialKey {
                            fields: fields_of(f),
                            load: vec![0; tasks.len()],
                        },
                        GroupingSpec::All => Chooser::All,
                        GroupingSpec::Global => Chooser::Global,
                        GroupingSpec::Direct => Chooser::Direct,
                        GroupingSpec::Custom(_) => match topology.custom_grouping(cid, n) {
                            Some(factory) => {
                                let mut g = factory();
                                g.prepare(sid, &tasks);
                                Chooser::Custom(g)
                            }
                            None => Chooser::Shuffle(Shuffler::new(&tasks, &mut rng)),
                        },
                    };
                    subscribers.push(Subscriber { tasks, chooser });
                }
            }
            let index = table
                .index(component, sid.as_str())
                .expect("stream table covers every declared stream");
            streams.push(StreamRoute {
                name: sid.clone(),
                index,
                direct: def.direct,
                subscribers,
            });
        }
        let default_stream = streams
            .iter()
            .position(|s| s.name.as_str() == squall_topology_api::DEFAULT_STREAM);
        Self {
            streams,
            default_stream,
            rng,
        }
    }

    /// The local position of stream `name`, used by [`Router::targets`].
    #[inline]
    pub fn stream_position(&self, name: &str) -> Result<usize, RouteError> {
        if name == squall_topology_api::DEFAULT_STREAM {
            if let Some(p) = self.default_stream {
                return Ok(p);
            }
        }
        self.streams
            .iter()
            .position(|s| s.name.as_str() == name)
            .ok_or_else(|| RouteError::UnknownStream(name.to_owned()))
    }

    /// Number of declared streams.
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// The name and global index of the stream at `pos`.
    #[inline]
    pub fn stream(&self, pos: usize) -> (&StreamId, u32) {
        (&self.streams[pos].name, self.streams[pos].index)
    }

    /// Appends to `out` the tasks that get `values` emitted on the stream at
    /// `pos` by `source`, directly to `direct` if given.
    #[inline]
    pub fn targets(
        &mut self,
        pos: usize,
        source: TaskId,
        values: &Values,
        direct: Option<TaskId>,
        out: &mut Targets,
    ) -> Result<(), RouteError> {
        let route = &mut self.streams[pos];
        if direct.is_some() || route.direct {
            return direct_target(route, direct, out);
        }
        for sub in &mut route.subscribers {
            match &mut sub.chooser {
                Chooser::Shuffle(s) => out.push(s.next(&mut self.rng)),
                Chooser::LocalityShuffle(s) => out.push(s.next(&mut self.rng)),
                Chooser::Fields(f) => {
                    let h = key_hash(values, f, 0);
                    out.push(sub.tasks[fast_range(h, sub.tasks.len())]);
                }
                Chooser::PartialKey { fields, load } => {
                    let n = sub.tasks.len();
                    let a = fast_range(key_hash(values, fields, 0), n);
                    let b = fast_range(key_hash(values, fields, 0x9e37_79b9_7f4a_7c15), n);
                    let pick = if load[b] < load[a] { b } else { a };
                    load[pick] += 1;
                    out.push(sub.tasks[pick]);
                }
                Chooser::All => out.extend(sub.tasks.iter().copied()),
                Chooser::Global => out.push(sub.tasks[0]),
                Chooser::Direct => {}
                Chooser::Custom(g) => {
                    for t in g.choose_tasks(source, values) {
                        if sub.tasks.binary_search(&t).is_err() {
                            return Err(RouteError::BadCustomChoice {
                                stream: route.name.0.clone(),
                                task: t,
                            });
                        }
                        out.push(t);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Envelope;

    #[test]
    fn key_hash_is_stable_and_type_tagged() {
        let a: Values = vec![Value::from("the")].into();
        let b: Values = vec![Value::from(b"the".as_slice())].into();
        assert_eq!(key_hash(&a, &[0], 0), key_hash(&a.clone(), &[0], 0));
        assert_ne!(key_hash(&a, &[0], 0), key_hash(&b, &[0], 0));
    }

    #[test]
    fn shuffler_deals_each_task_once_per_lap() {
        let mut rng = SmallRng::seed_from_u64(1);
        let tasks = [TaskId(3), TaskId(4), TaskId(5)];
        let mut s = Shuffler::new(&tasks, &mut rng);
        let mut lap: Vec<_> = (0..3).map(|_| s.next(&mut rng)).collect();
        lap.sort();
        assert_eq!(lap, tasks);
    }

    /// Tasks 1 and 2 on executor 0 (here), task 3 on executor 1 (remote);
    /// executor 0's queue holds 10 batches.
    fn two_executors() -> (Locality, crossbeam_channel::Receiver<Envelope>) {
        let (tx, rx) = crossbeam_channel::bounded(10);
        let (remote, _) = crossbeam_channel::bounded(10);
        let locality = Locality {
            local: Arc::new(vec![true, false]),
            wiring: Arc::new(Wiring::new(
                vec![tx, remote],
                vec![0, 0, 0, 1],
                vec![false, true],
            )),
            bounds: Some((0.2, 0.8)),
        };
        (locality, rx)
    }

    fn picks(c: &mut Chooser, rng: &mut SmallRng, n: usize) -> Vec<TaskId> {
        let Chooser::LocalityShuffle(s) = c else {
            panic!("expected a locality-aware shuffle");
        };
        (0..n).map(|_| s.next(rng)).collect()
    }

    #[test]
    fn locality_shuffle_widens_over_the_higher_bound_and_narrows_under_the_lower() {
        let (locality, rx) = two_executors();
        let tasks = [TaskId(1), TaskId(2), TaskId(3)];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut c = locality.shuffle(&tasks, &mut rng);
        let idle = picks(&mut c, &mut rng, 200);
        assert!(
            idle.iter().all(|t| t.0 <= 2),
            "idle local tasks get everything"
        );
        for _ in 0..8 {
            locality.wiring.queues[0].send(Envelope::Wake).unwrap();
        }
        let busy = picks(&mut c, &mut rng, 300);
        assert!(
            busy[64..].contains(&TaskId(3)),
            "at 0.8 load the remote task gets some"
        );
        for _ in 0..4 {
            rx.recv().unwrap();
        }
        let mid = picks(&mut c, &mut rng, 300);
        assert!(
            mid[64..].contains(&TaskId(3)),
            "between the bounds the scope stays wide"
        );
        while rx.try_recv().is_ok() {}
        let calm = picks(&mut c, &mut rng, 300);
        assert!(
            calm[64..].iter().all(|t| t.0 <= 2),
            "under 0.2 load it is local again"
        );
    }

    #[test]
    fn a_local_executor_busy_past_the_higher_bound_widens_the_shuffle_though_its_queue_is_empty() {
        let (locality, _rx) = two_executors();
        let tasks = [TaskId(1), TaskId(2), TaskId(3)];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut c = locality.shuffle(&tasks, &mut rng);
        locality.wiring.set_capacity(1, 1.0);
        let remote_busy = picks(&mut c, &mut rng, 300);
        assert!(
            remote_busy.iter().all(|t| t.0 <= 2),
            "a busy remote executor does not widen it"
        );
        locality.wiring.set_capacity(0, 0.85);
        let busy = picks(&mut c, &mut rng, 300);
        assert!(
            busy[64..].contains(&TaskId(3)),
            "at capacity 0.85 the remote task gets some"
        );
        locality.wiring.set_capacity(0, 0.5);
        let mid = picks(&mut c, &mut rng, 300);
        assert!(
            mid[64..].contains(&TaskId(3)),
            "between the bounds the scope stays wide"
        );
        locality.wiring.set_capacity(0, 0.1);
        let calm = picks(&mut c, &mut rng, 300);
        assert!(
            calm[64..].iter().all(|t| t.0 <= 2),
            "under capacity 0.2 it is local again"
        );
    }

    #[test]
    fn plain_shuffle_when_disabled_or_nothing_is_local() {
        let (mut locality, _rx) = two_executors();
        let mut rng = SmallRng::seed_from_u64(7);
        assert!(matches!(
            locality.shuffle(&[TaskId(3)], &mut rng),
            Chooser::Shuffle(_)
        ));
        assert!(matches!(
            locality.shuffle(&[TaskId(1)], &mut rng),
            Chooser::Shuffle(_)
        ));
        locality.bounds = None;
        let all = [TaskId(1), TaskId(3)];
        assert!(matches!(
            locality.shuffle(&all, &mut rng),
            Chooser::Shuffle(_)
        ));
    }
}
