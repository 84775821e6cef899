//! Compiles the operation graph to a topology: the master batch
//! coordinator spout and one bolt per stage (Storm's `TridentTopology.build`,
//! which also fuses the operations between repartitions into one bolt).
//!
//! A **pipeline** is a chain of operations with one input; it starts at a
//! spout, a repartition, a merge, a state query, or a branch (a stream
//! used twice), and ends where its stream is repartitioned, branched or
//! consumed. A **stage** is a bolt running one pipeline, plus the query
//! pipelines of the states it holds.

use crate::coordinator::MasterCoordinator;
use crate::graph::{Graph, NodeKind, Partitioning};
use crate::pipeline::{liveness, Op, OpKind, Pipeline};
use crate::protocol::{BATCH_FIELD, BATCH_STREAM, COMMIT_STREAM, COORDINATOR, COORD_STREAM};
use crate::spout::TransactionalSpout;
use crate::stage::StageBolt;
use crate::state::StateFactory;
use crate::topology::BuildError;
use squall_topology_api::{Fields, GroupingSpec, Topology, TopologyBuilder};
use std::sync::Arc;

/// One stage's plan, shared by its tasks.
pub(crate) struct StagePlan {
    pub pipelines: Vec<Pipeline>,
    /// The stream each pipeline emits on (`None`: its output goes nowhere).
    pub outputs: Vec<Option<(String, Fields)>>,
    /// (component, stream) → the pipelines it feeds.
    pub inputs: Vec<(String, String, Vec<usize>)>,
    /// The spout this stage emits batches of, and its pipeline.
    pub spout: Option<(usize, usize, Arc<dyn TransactionalSpout>)>,
    /// Stages whose coordination tuples this stage waits for.
    pub upstream: Vec<String>,
    /// Stages this stage sends coordination tuples to.
    pub downstream: Vec<String>,
    pub states: Vec<Arc<dyn StateFactory>>,
    pub committer: bool,
}

struct PipelineDraft {
    nodes: Vec<usize>,
    stage: usize,
}

/// Compiles `g`.
pub(crate) fn compile(g: &Graph) -> Result<Topology, BuildError> {
    let mut errors = g.errors.clone();
    if g.spouts.is_empty() {
        errors.push("no streams: call new_stream first".into());
    }
    if !errors.is_empty() {
        return Err(BuildError(errors));
    }
    let n = g.nodes.len();
    let mut children = vec![Vec::new(); n];
    for (i, node) in g.nodes.iter().enumerate() {
        for &p in &node.parents {
            children[p].push(i);
        }
    }
    let is_head = |i: usize| {
        let node = &g.nodes[i];
        matches!(
            node.kind,
            NodeKind::Spout(_)
                | NodeKind::Repartition(_)
                | NodeKind::Merge
                | NodeKind::Op(OpKind::Query { .. })
        ) || node.parents.iter().any(|&p| children[p].len() > 1)
    };

    // Pipelines.
    let mut pipes: Vec<PipelineDraft> = Vec::new();
    let mut pipe_of = vec![usize::MAX; n];
    for head in (0..n).filter(|&i| is_head(i)) {
        let mut nodes = vec![head];
        let mut cur = head;
        while children[cur].len() == 1 && !is_head(children[cur][0]) {
            cur = children[cur][0];
            nodes.push(cur);
        }
        for &x in &nodes {
            pipe_of[x] = pipes.len();
        }
        pipes.push(PipelineDraft {
            nodes,
            stage: usize::MAX,
        });
    }

    // Stages: one per pipeline, except queries, which join their state's.
    let mut stages: Vec<Vec<usize>> = Vec::new();
    for (p, pipe) in pipes.iter_mut().enumerate() {
        if !matches!(
            g.nodes[pipe.nodes[0]].kind,
            NodeKind::Op(OpKind::Query { .. })
        ) {
            pipe.stage = stages.len();
            stages.push(vec![p]);
        }
    }
    for p in 0..pipes.len() {
        if let NodeKind::Op(OpKind::Query { state, .. }) = g.nodes[pipes[p].nodes[0]].kind {
            let s = pipes[pipe_of[g.states[state].node]].stage;
            pipes[p].stage = s;
            stages[s].push(p);
        }
    }

    let stage_id = |s: usize| -> String {
        let head = &g.nodes[pipes[stages[s][0]].nodes[0]];
        match head.kind {
            NodeKind::Spout(i) => format!("spout-{}", g.spouts[i].txid_name),
            _ => format!("b-{s}"),
        }
    };
    let output_stream = |p: usize| format!("s{p}");
    let tail = |p: usize| *pipes[p].nodes.last().unwrap_or(&0);

    let mut builder = TopologyBuilder::new();
    let spouts: Vec<(String, Arc<dyn TransactionalSpout>)> = g
        .spouts
        .iter()
        .map(|s| (s.txid_name.clone(), s.spout.clone()))
        .collect();
    let spouts = Arc::new(spouts);
    builder
        .set_spout(
            COORDINATOR,
            move || MasterCoordinator::new(spouts.clone()),
            1,
        )
        // The coordinator bounds batches itself (topology.max.spout.pending).
        .set_max_spout_pending(1 << 20);

    for (s, members) in stages.iter().enumerate() {
        let id = stage_id(s);
        // States held here, in topology order.
        let mut state_ids: Vec<usize> = Vec::new();
        for &p in members {
            for &x in &pipes[p].nodes {
                if let NodeKind::Op(OpKind::Persist { state, .. }) = g.nodes[x].kind {
                    state_ids.push(state);
                }
            }
        }
        let mut pipelines = Vec::new();
        let mut outputs = Vec::new();
        let mut spout = None;
        for (local, &p) in members.iter().enumerate() {
            let mut ops = Vec::new();
            let mut widths = Vec::new();
            let mut width = 0;
            for &x in &pipes[p].nodes {
                let node = &g.nodes[x];
                if let NodeKind::Spout(i) = node.kind {
                    spout = Some((local, i, g.spouts[i].spout.clone()));
                }
                if let NodeKind::Op(kind) = &node.kind {
                    let mut kind = kind.clone();
                    // States are numbered within the stage.
                    if let OpKind::Persist { state, .. } | OpKind::Query { state, .. } = &mut kind {
                        *state = state_ids
                            .iter()
                            .position(|y| y == state)
                            .unwrap_or(usize::MAX);
                    }
                    widths.push(width);
                    ops.push(Op {
                        kind,
                        names: node.select_fields.clone(),
                        keep: Vec::new(),
                    });
                }
                width = node.fields.len();
            }
            let t = tail(p);
            let output = (!children[t].is_empty()).then(|| {
                let mut names = vec![BATCH_FIELD.to_owned()];
                names.extend(g.nodes[t].fields.names().iter().cloned());
                (output_stream(p), Fields::from(names))
            });
            liveness(
                &mut ops,
                &widths,
                output.as_ref().map(|_| g.nodes[t].fields.len()),
            );
            outputs.push(output);
            pipelines.push(Pipeline { ops });
        }

        // Inputs and upstream stages.
        let mut inputs: Vec<(String, String, Vec<usize>)> = Vec::new();
        let mut subscriptions: Vec<(String, String, GroupingSpec)> = Vec::new();
        let mut upstream: Vec<String> = Vec::new();
        for (local, &p) in members.iter().enumerate() {
            let head = pipes[p].nodes[0];
            let node = &g.nodes[head];
            for &parent in &node.parents {
                let pp = pipe_of[parent];
                let (from, stream) = (stage_id(pipes[pp].stage), output_stream(pp));
                let grouping = match &node.kind {
                    NodeKind::Repartition(Partitioning::Shuffle) => GroupingSpec::Shuffle,
                    NodeKind::Repartition(Partitioning::Global) => GroupingSpec::Global,
                    NodeKind::Repartition(Partitioning::Fields(f)) => {
                        GroupingSpec::Fields(f.clone())
                    }
                    NodeKind::Op(OpKind::Query { state, .. }) if g.states[*state].keyed => {
                        GroupingSpec::Fields(node.select_fields.clone())
                    }
                    NodeKind::Op(OpKind::Query { .. }) => GroupingSpec::Global,
                    _ => GroupingSpec::LocalOrShuffle,
                };
                match inputs
                    .iter_mut()
                    .find(|(c, st, _)| *c == from && *st == stream)
                {
                    Some((_, _, ps)) => ps.push(local),
                    None => {
                        inputs.push((from.clone(), stream.clone(), vec![local]));
                        subscriptions.push((from.clone(), stream, grouping));
                    }
                }
                if !upstream.contains(&from) {
                    upstream.push(from);
                }
            }
        }
        // Downstream stages: those with a pipeline fed by one of ours.
        let mut downstream: Vec<String> = Vec::new();
        for &p in members {
            for &c in &children[tail(p)] {
                let d = stage_id(pipes[pipe_of[c]].stage);
                if !downstream.contains(&d) {
                    downstream.push(d);
                }
            }
        }
        let committer = pipelines.iter().any(Pipeline::persists);
        let parallelism = members
            .iter()
            .flat_map(|&p| pipes[p].nodes.iter())
            .filter_map(|&x| g.nodes[x].parallelism)
            .max()
            .unwrap_or(1);
        let plan = Arc::new(StagePlan {
            pipelines,
            outputs,
            inputs,
            spout,
            upstream: upstream.clone(),
            downstream,
            states: state_ids
                .iter()
                .map(|&t| g.states[t].factory.clone())
                .collect(),
            committer,
        });
        let is_spout = plan.spout.is_some();
        let mut d = builder.set_bolt(&id, move || StageBolt::new(plan.clone()), parallelism);
        if is_spout {
            d = d.all_grouping((COORDINATOR, BATCH_STREAM));
        }
        if committer {
            d = d.all_grouping((COORDINATOR, COMMIT_STREAM));
        }
        for (from, stream, grouping) in subscriptions {
            d = d.grouping((from.as_str(), stream.as_str()), grouping);
        }
        for u in &upstream {
            d = d.direct_grouping((u.as_str(), COORD_STREAM));
        }
    }
    builder
        .create_topology()
        .map_err(|e| BuildError(vec![e.to_string()]))
}
