//! The operation graph a [`TridentTopology`](crate::TridentTopology) records
//! before it is compiled to spouts and bolts.

use crate::operation::{CombinerAggregator, DynAggregator, ReducerAggregator};
use crate::pipeline::OpKind;
use crate::spout::TransactionalSpout;
use crate::state::{MapState, StateFactory};
use crate::tuple::TridentTuple;
use squall_topology_api::{ExecuteError, Fields};
use std::sync::Arc;

/// An aggregator of one of the three kinds: a [`CombinerAggregator`]
/// (pre-aggregated before repartitioning), a [`ReducerAggregator`] or a
/// general [`Aggregator`](crate::operation::Aggregator).
#[derive(Clone)]
pub struct Aggregation(pub(crate) AggKind);

#[derive(Clone)]
pub(crate) enum AggKind {
    Combiner(Arc<dyn CombinerAggregator>),
    Reducer(Arc<dyn ReducerAggregator>),
    General(Arc<dyn DynAggregator>),
}

impl Aggregation {
    /// A combiner aggregation.
    pub fn combiner(c: impl CombinerAggregator + 'static) -> Self {
        Self(AggKind::Combiner(Arc::new(c)))
    }

    /// A reducer aggregation.
    pub fn reducer(r: impl ReducerAggregator + 'static) -> Self {
        Self(AggKind::Reducer(Arc::new(r)))
    }

    /// A general aggregation.
    pub fn general(a: impl crate::operation::Aggregator + 'static) -> Self {
        Self(AggKind::General(Arc::new(a)))
    }
}

impl From<crate::operation::Count> for Aggregation {
    fn from(c: crate::operation::Count) -> Self {
        Self::combiner(c)
    }
}

impl From<crate::operation::Sum> for Aggregation {
    fn from(s: crate::operation::Sum) -> Self {
        Self::combiner(s)
    }
}

/// Updates a state with a batch's tuples (Storm's `StateUpdater`), at the
/// batch's commit, in txid order.
pub trait StateUpdater: Send + Sync {
    /// Applies `tuples` (the selected fields) to `state`; an `Err` fails
    /// the commit and the batch is replayed.
    fn update_state(
        &self,
        state: &mut dyn MapState,
        tuples: &[TridentTuple],
    ) -> Result<(), ExecuteError>;
}

impl<F> StateUpdater for F
where
    F: Fn(&mut dyn MapState, &[TridentTuple]) -> Result<(), ExecuteError> + Send + Sync,
{
    fn update_state(
        &self,
        state: &mut dyn MapState,
        tuples: &[TridentTuple],
    ) -> Result<(), ExecuteError> {
        self(state, tuples)
    }
}

/// How tuples move to the next stage.
#[derive(Debug, Clone)]
pub(crate) enum Partitioning {
    Shuffle,
    Fields(Fields),
    Global,
}

/// What a persist node does at commit.
#[derive(Clone)]
pub(crate) enum PersistKind {
    /// Input: (group fields, partial value); combined into the stored value.
    Combiner(Arc<dyn CombinerAggregator>),
    /// Input: (group fields, selected fields); reduced into the stored value.
    Reducer(Arc<dyn ReducerAggregator>),
    /// Input: selected fields, handed to the updater.
    Updater(Arc<dyn StateUpdater>),
}

/// One node of the graph: a source, an identity node that changes how
/// tuples move to the next stage, or an operation.
#[derive(Clone)]
pub(crate) enum NodeKind {
    Spout(usize),
    Repartition(Partitioning),
    Merge,
    /// `Persist` and `Query` name the topology's state index.
    Op(OpKind),
}

/// An aggregation as run in one stage.
#[derive(Clone)]
pub(crate) enum AggOp {
    /// `init` per tuple then `combine`.
    Combine(Arc<dyn CombinerAggregator>),
    /// `combine` of partial values (the first selected field).
    CombinePartials(Arc<dyn CombinerAggregator>),
    Reduce(Arc<dyn ReducerAggregator>),
    General(Arc<dyn DynAggregator>),
}

pub(crate) struct Node {
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    /// The node's output fields.
    pub fields: Fields,
    /// Names of the selected input fields (for `TridentTuple`).
    pub select_fields: Fields,
    pub parallelism: Option<u32>,
}

pub(crate) struct SpoutDef {
    pub txid_name: String,
    pub spout: Arc<dyn TransactionalSpout>,
}

pub(crate) struct StateDef {
    pub factory: Arc<dyn StateFactory>,
    /// The persist node.
    pub node: usize,
    /// Whether its partitions are by key (else one partition, global).
    pub keyed: bool,
}

#[derive(Default)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    pub spouts: Vec<SpoutDef>,
    pub states: Vec<StateDef>,
    pub errors: Vec<String>,
}

impl Graph {
    /// Positions of `names` in node `node`'s output, recording an error
    /// (naming `op`) for each missing one.
    pub fn select(&mut self, node: usize, names: &Fields, op: &str) -> Vec<usize> {
        let have = &self.nodes[node].fields;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for n in names.names() {
            match have.index_of(n) {
                Some(i) => out.push(i),
                None => missing.push(n.clone()),
            }
        }
        for n in missing {
            let e = format!(
                "{op}: no field {n:?} in the stream (fields: {:?})",
                self.nodes[node].fields.names()
            );
            self.errors.push(e);
        }
        out
    }

    pub fn add(
        &mut self,
        kind: NodeKind,
        parents: Vec<usize>,
        fields: Fields,
        select_fields: Fields,
    ) -> usize {
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = fields.names().iter().find(|n| !seen.insert(n.as_str())) {
            self.errors
                .push(format!("duplicate field {d:?} in {:?}", fields.names()));
        }
        self.nodes.push(Node {
            kind,
            parents,
            fields,
            select_fields,
            parallelism: None,
        });
        self.nodes.len() - 1
    }
}
