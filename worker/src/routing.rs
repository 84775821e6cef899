//! Grouping dispatch: which tasks get each emitted tuple.

use crate::message::StreamTable;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use smallvec::SmallVec;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{
    CustomStreamGrouping, GroupingSpec, StreamId, TaskId, TaskLayout, Topology, Value, Values,
};
use std::hash::Hasher;
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

enum Chooser {
    Shuffle(Shuffler),
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
    let mut h = Xxh3::with_seed(seed);
    for &i in fields {
        values.get(i).unwrap_or(&Value::Null).stable_hash(&mut h);
    }
    h.finish()
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
    /// subscriptions), with `is_local` telling which tasks share this worker.
    pub fn new(
        component: &str,
        spec: &TopologySpec,
        topology: &Topology,
        layout: &TaskLayout,
        table: &StreamTable,
        is_local: &dyn Fn(TaskId) -> bool,
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
                            Chooser::Shuffle(Shuffler::new(&tasks, &mut rng))
                        }
                        GroupingSpec::LocalOrShuffle => {
                            let local: Vec<TaskId> =
                                tasks.iter().copied().filter(|t| is_local(*t)).collect();
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
    pub fn stream(&self, pos: usize) -> (&StreamId, u32) {
        (&self.streams[pos].name, self.streams[pos].index)
    }

    /// Appends to `out` the tasks that get `values` emitted on the stream at
    /// `pos` by `source`, directly to `direct` if given.
    pub fn targets(
        &mut self,
        pos: usize,
        source: TaskId,
        values: &Values,
        direct: Option<TaskId>,
        out: &mut Targets,
    ) -> Result<(), RouteError> {
        let route = &mut self.streams[pos];
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
                return Ok(());
            }
            (Some(_), false) => return Err(RouteError::NotDirectStream(route.name.0.clone())),
            (None, true) => return Err(RouteError::DirectStreamNeedsTask(route.name.0.clone())),
            (None, false) => {}
        }
        for sub in &mut route.subscribers {
            match &mut sub.chooser {
                Chooser::Shuffle(s) => out.push(s.next(&mut self.rng)),
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
}
