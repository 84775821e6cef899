//! The user API: [`TridentTopology`], [`Stream`], [`GroupedStream`] and
//! [`TridentState`] (Storm's `TridentTopology` and `Stream`).

use crate::graph::{
    AggKind, AggOp, Aggregation, Graph, NodeKind, Partitioning, PersistKind, SpoutDef, StateDef,
    StateUpdater,
};
use crate::operation::{Filter, FlatMapFunction, Function, MapFunction};
use crate::pipeline::OpKind;
use crate::query::QueryFunction;
use crate::spout::TransactionalSpout;
use crate::state::StateFactory;
use squall_topology_api::{Fields, Topology};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

/// Why a Trident topology does not build: every problem found, each
/// naming the operation and field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid Trident topology: {}", .0.join("; "))]
pub struct BuildError(pub Vec<String>);

/// A Trident topology under construction (Storm's `TridentTopology`):
/// streams of batches from transactional spouts, operations on them, and
/// states they update exactly once. [`build`](Self::build) compiles it to
/// an ordinary [`Topology`] of spouts and bolts.
#[derive(Default, Clone)]
pub struct TridentTopology {
    graph: Rc<RefCell<Graph>>,
}

/// A stream of batches (Storm's `Stream`). Cheap to clone; using one
/// stream in two operations branches it.
#[derive(Clone)]
pub struct Stream {
    graph: Rc<RefCell<Graph>>,
    node: usize,
}

/// A stream grouped by fields, for per-group aggregation (Storm's
/// `GroupedStream`).
#[derive(Clone)]
pub struct GroupedStream {
    stream: Stream,
    group: Fields,
}

/// A state a stream persists to, to query with
/// [`Stream::state_query`] (Storm's `TridentState`).
#[derive(Clone)]
pub struct TridentState {
    graph: Rc<RefCell<Graph>>,
    state: usize,
}

impl TridentTopology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream of the batches of `spout`. `txid_name` names its
    /// coordinator metadata in the coordination store: keep it when
    /// redeploying a topology so that it resumes where it committed.
    pub fn new_stream(&self, txid_name: &str, spout: impl TransactionalSpout) -> Stream {
        let mut g = self.graph.borrow_mut();
        let valid = !txid_name.is_empty()
            && txid_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            g.errors.push(format!(
                "new_stream: txid name {txid_name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
            ));
        }
        if g.spouts.iter().any(|s| s.txid_name == txid_name) {
            g.errors
                .push(format!("new_stream: txid name {txid_name:?} is used twice"));
        }
        let fields = spout.output_fields();
        g.spouts.push(SpoutDef {
            txid_name: txid_name.to_owned(),
            spout: Arc::new(spout),
        });
        let index = g.spouts.len() - 1;
        let node = g.add(
            NodeKind::Spout(index),
            Vec::new(),
            fields,
            Fields::default(),
        );
        drop(g);
        Stream {
            graph: self.graph.clone(),
            node,
        }
    }

    /// One stream of the tuples of every stream in `streams`, which must
    /// have the same fields (Storm's `merge`).
    pub fn merge(&self, streams: &[Stream]) -> Stream {
        let mut g = self.graph.borrow_mut();
        let parents: Vec<usize> = streams.iter().map(|s| s.node).collect();
        let fields = parents
            .first()
            .map(|&p| g.nodes[p].fields.clone())
            .unwrap_or_default();
        if parents.is_empty() {
            g.errors.push("merge: no streams".into());
        }
        for &p in &parents {
            if g.nodes[p].fields != fields {
                let e = format!(
                    "merge: streams have different fields ({:?} and {:?})",
                    fields.names(),
                    g.nodes[p].fields.names()
                );
                g.errors.push(e);
            }
        }
        let node = g.add(NodeKind::Merge, parents, fields, Fields::default());
        drop(g);
        Stream {
            graph: self.graph.clone(),
            node,
        }
    }

    /// Compiles the topology to spouts and bolts: a master batch
    /// coordinator spout, one bolt per stage.
    ///
    /// # Errors
    /// [`BuildError`] listing every unknown field, duplicate name or
    /// invalid construction.
    pub fn build(&self) -> Result<Topology, BuildError> {
        crate::plan::compile(&self.graph.borrow())
    }
}

impl Stream {
    fn then(&self, kind: NodeKind, fields: Fields, select_fields: Fields) -> Stream {
        let node = self
            .graph
            .borrow_mut()
            .add(kind, vec![self.node], fields, select_fields);
        Stream {
            graph: self.graph.clone(),
            node,
        }
    }

    fn select(&self, names: &Fields, op: &str) -> Vec<usize> {
        self.graph.borrow_mut().select(self.node, names, op)
    }

    /// A per-tuple operation `name` over the `input` fields: `kind` gets
    /// their positions; the result has fields `output`.
    fn op(
        &self,
        name: &str,
        input: Fields,
        kind: impl FnOnce(Vec<usize>) -> OpKind,
        output: Fields,
    ) -> Stream {
        let select = self.select(&input, name);
        self.then(NodeKind::Op(kind(select)), output, input)
    }

    /// This stream's fields.
    pub fn fields(&self) -> Fields {
        self.graph.borrow().nodes[self.node].fields.clone()
    }

    fn appended(&self, output: &Fields) -> Fields {
        let mut names = self.fields().names().to_vec();
        names.extend(output.names().iter().cloned());
        names.into()
    }

    /// Runs `f` on the `input` fields of each tuple; each emit makes an
    /// output tuple: the input's fields then `output` (Storm's `each`).
    pub fn each(
        &self,
        input: impl Into<Fields>,
        f: impl Function + 'static,
        output: impl Into<Fields>,
    ) -> Stream {
        let fields = self.appended(&output.into());
        self.op(
            "each",
            input.into(),
            |s| OpKind::Each(s, Arc::new(f)),
            fields,
        )
    }

    /// Keeps the tuples whose `input` fields pass `f`.
    pub fn filter(&self, input: impl Into<Fields>, f: impl Filter + 'static) -> Stream {
        let fields = self.fields();
        self.op(
            "filter",
            input.into(),
            |s| OpKind::Filter(s, Arc::new(f)),
            fields,
        )
    }

    /// Replaces each tuple by `f` of its `input` fields, with fields `output`.
    pub fn map(
        &self,
        input: impl Into<Fields>,
        f: impl MapFunction + 'static,
        output: impl Into<Fields>,
    ) -> Stream {
        self.op(
            "map",
            input.into(),
            |s| OpKind::Map(s, Arc::new(f)),
            output.into(),
        )
    }

    /// Replaces each tuple by the tuples `f` makes of its `input` fields.
    pub fn flat_map(
        &self,
        input: impl Into<Fields>,
        f: impl FlatMapFunction + 'static,
        output: impl Into<Fields>,
    ) -> Stream {
        let kind = |s| OpKind::FlatMap(s, Arc::new(f));
        self.op("flat_map", input.into(), kind, output.into())
    }

    /// Keeps only `fields`, in that order.
    pub fn project(&self, fields: impl Into<Fields>) -> Stream {
        let fields = fields.into();
        self.op("project", fields.clone(), OpKind::Project, fields)
    }

    /// Aggregates each batch's tuples of each partition separately; the
    /// output tuples have fields `output` (Storm's `partitionAggregate`).
    pub fn partition_aggregate(
        &self,
        input: impl Into<Fields>,
        agg: impl Into<Aggregation>,
        output: impl Into<Fields>,
    ) -> Stream {
        let agg = match agg.into().0 {
            AggKind::Combiner(c) => AggOp::Combine(c),
            AggKind::Reducer(r) => AggOp::Reduce(r),
            AggKind::General(g) => AggOp::General(g),
        };
        let kind = |select| OpKind::Aggregate {
            group: Vec::new(),
            select,
            agg,
        };
        self.op("partition_aggregate", input.into(), kind, output.into())
    }

    /// Aggregates each whole batch into tuples with fields `output`
    /// (Storm's `aggregate`): combiners pre-aggregate per partition, then
    /// one task combines.
    pub fn aggregate(
        &self,
        input: impl Into<Fields>,
        agg: impl Into<Aggregation>,
        output: impl Into<Fields>,
    ) -> Stream {
        GroupedStream {
            stream: self.clone(),
            group: Fields::default(),
        }
        .aggregate(input, agg, output)
    }

    /// Groups by `fields` for [`GroupedStream::aggregate`] or
    /// [`GroupedStream::persistent_aggregate`].
    pub fn group_by(&self, fields: impl Into<Fields>) -> GroupedStream {
        let group = fields.into();
        self.select(&group, "group_by");
        GroupedStream {
            stream: self.clone(),
            group,
        }
    }

    /// Aggregates the whole stream into one value kept in a state, updated
    /// once per batch (Storm's ungrouped `persistentAggregate`).
    pub fn persistent_aggregate(
        &self,
        factory: impl StateFactory + 'static,
        input: impl Into<Fields>,
        agg: impl Into<Aggregation>,
        output: impl Into<Fields>,
    ) -> TridentState {
        self.group_by(Fields::default())
            .persistent_aggregate(factory, input, agg, output)
    }

    /// Hands each batch's tuples (the `input` fields) of each partition to
    /// `updater` at the batch's commit (Storm's `partitionPersist`).
    pub fn partition_persist(
        &self,
        factory: impl StateFactory + 'static,
        input: impl Into<Fields>,
        updater: impl StateUpdater + 'static,
    ) -> TridentState {
        let input = input.into();
        let select = self.select(&input, "partition_persist");
        let state = self.graph.borrow().states.len();
        let s = self.then(
            NodeKind::Op(OpKind::Persist {
                state,
                group: Vec::new(),
                select,
                kind: PersistKind::Updater(Arc::new(updater)),
            }),
            Fields::default(),
            input,
        );
        self.graph.borrow_mut().states.push(StateDef {
            factory: Arc::new(factory),
            node: s.node,
            keyed: false,
        });
        TridentState {
            graph: self.graph.clone(),
            state,
        }
    }

    /// Looks up `state` with the `input` fields of each tuple (the state's
    /// key), appending the fields `output` (Storm's `stateQuery`). Runs in
    /// the tasks that hold the state, each tuple going to the partition of
    /// its key.
    pub fn state_query(
        &self,
        state: &TridentState,
        input: impl Into<Fields>,
        f: impl QueryFunction + 'static,
        output: impl Into<Fields>,
    ) -> Stream {
        let (input, output) = (input.into(), output.into());
        let select = self.select(&input, "state_query");
        let fields = self.appended(&output);
        self.then(
            NodeKind::Op(OpKind::Query {
                state: state.state,
                select,
                f: Arc::new(f),
            }),
            fields,
            input,
        )
    }

    /// Sends tuples to the next operations' tasks at random (even load).
    pub fn shuffle(&self) -> Stream {
        self.then(
            NodeKind::Repartition(Partitioning::Shuffle),
            self.fields(),
            Fields::default(),
        )
    }

    /// Sends tuples with equal `fields` to the same task.
    pub fn partition_by(&self, fields: impl Into<Fields>) -> Stream {
        let fields = fields.into();
        self.select(&fields, "partition_by");
        self.then(
            NodeKind::Repartition(Partitioning::Fields(fields.clone())),
            self.fields(),
            fields,
        )
    }

    /// Sends every tuple to one task.
    pub fn global(&self) -> Stream {
        self.then(
            NodeKind::Repartition(Partitioning::Global),
            self.fields(),
            Fields::default(),
        )
    }

    /// Runs the operations since the last repartition (or spout) on `n`
    /// tasks; for a spout's stream, its emitters.
    pub fn parallelism_hint(&self, n: u32) -> Stream {
        let mut g = self.graph.borrow_mut();
        if n == 0 {
            g.errors.push("parallelism_hint: must be at least 1".into());
        }
        g.nodes[self.node].parallelism = Some(n.max(1));
        drop(g);
        self.clone()
    }
}

impl GroupedStream {
    /// Aggregates each batch per group into tuples of the group fields then
    /// `output` (Storm's grouped `aggregate`).
    pub fn aggregate(
        &self,
        input: impl Into<Fields>,
        agg: impl Into<Aggregation>,
        output: impl Into<Fields>,
    ) -> Stream {
        let s = &self.stream;
        let (input, output) = (input.into(), output.into());
        let mut out_fields = self.group.names().to_vec();
        out_fields.extend(output.names().iter().cloned());
        let out_fields: Fields = out_fields.into();
        match agg.into().0 {
            AggKind::Combiner(c) => {
                let partial_name = partial_field(&output);
                let partial = self.pre_aggregate(&input, &c, &partial_name);
                let moved = self.repartition(&partial);
                let group = moved.select(&self.group, "aggregate");
                let select = moved.select(&Fields::new([partial_name.as_str()]), "aggregate");
                moved.then(
                    NodeKind::Op(OpKind::Aggregate {
                        group,
                        select,
                        agg: AggOp::CombinePartials(c),
                    }),
                    out_fields,
                    Fields::new([partial_name]),
                )
            }
            other => {
                let moved = self.repartition(s);
                let group = moved.select(&self.group, "aggregate");
                let select = moved.select(&input, "aggregate");
                let agg = match other {
                    AggKind::Reducer(r) => AggOp::Reduce(r),
                    AggKind::General(g) => AggOp::General(g),
                    AggKind::Combiner(_) => unreachable!("matched above"),
                };
                moved.then(
                    NodeKind::Op(OpKind::Aggregate { group, select, agg }),
                    out_fields,
                    input,
                )
            }
        }
    }

    /// Aggregates each batch per group into a state: at the batch's
    /// commit, each group's stored value is combined (or reduced) with the
    /// batch's, exactly once under the state's semantics (Storm's
    /// `persistentAggregate`).
    pub fn persistent_aggregate(
        &self,
        factory: impl StateFactory + 'static,
        input: impl Into<Fields>,
        agg: impl Into<Aggregation>,
        output: impl Into<Fields>,
    ) -> TridentState {
        let s = &self.stream;
        let (input, output) = (input.into(), output.into());
        let state = s.graph.borrow().states.len();
        let (moved, kind, select_names) = match agg.into().0 {
            AggKind::Combiner(c) => {
                let partial_name = partial_field(&output);
                let partial = self.pre_aggregate(&input, &c, &partial_name);
                (
                    self.repartition(&partial),
                    PersistKind::Combiner(c),
                    Fields::new([partial_name]),
                )
            }
            AggKind::Reducer(r) => (self.repartition(s), PersistKind::Reducer(r), input),
            AggKind::General(_) => {
                s.graph.borrow_mut().errors.push(
                    "persistent_aggregate: takes a combiner or reducer aggregator, not a general one".into(),
                );
                (
                    self.repartition(s),
                    PersistKind::Updater(Arc::new(
                        |_: &mut dyn crate::state::MapState, _: &[crate::tuple::TridentTuple]| {
                            Ok(())
                        },
                    )),
                    input,
                )
            }
        };
        let group = moved.select(&self.group, "persistent_aggregate");
        let select = moved.select(&select_names, "persistent_aggregate");
        let node = moved.then(
            NodeKind::Op(OpKind::Persist {
                state,
                group,
                select,
                kind,
            }),
            Fields::default(),
            select_names,
        );
        s.graph.borrow_mut().states.push(StateDef {
            factory: Arc::new(factory),
            node: node.node,
            keyed: !self.group.is_empty(),
        });
        TridentState {
            graph: s.graph.clone(),
            state,
        }
    }

    /// Per-partition pre-aggregation of a combiner: group fields then the
    /// partial value.
    fn pre_aggregate(
        &self,
        input: &Fields,
        c: &Arc<dyn crate::operation::CombinerAggregator>,
        partial: &str,
    ) -> Stream {
        let s = &self.stream;
        let group = s.select(&self.group, "aggregate");
        let select = s.select(input, "aggregate");
        let mut fields = self.group.names().to_vec();
        fields.push(partial.to_owned());
        s.then(
            NodeKind::Op(OpKind::Aggregate {
                group,
                select,
                agg: AggOp::Combine(c.clone()),
            }),
            fields.into(),
            input.clone(),
        )
    }

    fn repartition(&self, s: &Stream) -> Stream {
        if self.group.is_empty() {
            s.global()
        } else {
            s.partition_by(self.group.clone())
        }
    }
}

/// The name of a combiner's partial value: its output field.
fn partial_field(output: &Fields) -> String {
    output
        .names()
        .first()
        .cloned()
        .unwrap_or_else(|| "$partial".into())
}

impl TridentState {
    /// Holds the state on `n` tasks (partitions).
    pub fn parallelism_hint(&self, n: u32) -> TridentState {
        let mut g = self.graph.borrow_mut();
        let node = g.states[self.state].node;
        if n == 0 {
            g.errors.push("parallelism_hint: must be at least 1".into());
        }
        g.nodes[node].parallelism = Some(n.max(1));
        drop(g);
        self.clone()
    }
}
