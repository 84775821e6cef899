//! A chain of operations run inside one stage task, with per-batch state
//! for aggregations, persists and queries.

use crate::graph::{AggOp, PersistKind};
use crate::operation::{Filter, FlatMapFunction, Function, MapFunction};
use crate::query::QueryFunction;
use crate::state::MapState;
use crate::tuple::{BatchId, Key, TridentCollector, TridentTuple};
use rustc_hash::FxHashMap;
use squall_topology_api::{ExecuteError, Fields, Value, Values};
use std::any::Any;
use std::sync::Arc;

/// One operation of a pipeline.
pub(crate) struct Op {
    pub kind: OpKind,
    /// Names of the selected fields.
    pub names: Fields,
    /// Row positions still needed after this op (`Each` drops the others
    /// from its output rows instead of copying them).
    pub keep: Vec<bool>,
}

#[derive(Clone)]
pub(crate) enum OpKind {
    Each(Vec<usize>, Arc<dyn Function>),
    Filter(Vec<usize>, Arc<dyn Filter>),
    Map(Vec<usize>, Arc<dyn MapFunction>),
    FlatMap(Vec<usize>, Arc<dyn FlatMapFunction>),
    Project(Vec<usize>),
    Aggregate {
        group: Vec<usize>,
        select: Vec<usize>,
        agg: AggOp,
    },
    /// `state` indexes the topology's states in the graph, the stage's
    /// states once planned.
    Persist {
        state: usize,
        group: Vec<usize>,
        select: Vec<usize>,
        kind: PersistKind,
    },
    Query {
        state: usize,
        select: Vec<usize>,
        f: Arc<dyn QueryFunction>,
    },
}

impl OpKind {
    /// Row positions this op reads.
    fn reads(&self) -> Vec<usize> {
        match self {
            OpKind::Each(s, _)
            | OpKind::Filter(s, _)
            | OpKind::Map(s, _)
            | OpKind::FlatMap(s, _)
            | OpKind::Project(s)
            | OpKind::Query { select: s, .. } => s.clone(),
            OpKind::Aggregate { group, select, .. } | OpKind::Persist { group, select, .. } => {
                group.iter().chain(select).copied().collect()
            }
        }
    }

    /// Whether the output row starts with the input row (so positions
    /// needed later are needed in the input too).
    fn extends_row(&self) -> bool {
        matches!(
            self,
            OpKind::Each(..) | OpKind::Filter(..) | OpKind::Query { .. }
        )
    }
}

/// Computes each op's `keep`: which input positions are needed after it.
/// `widths[i]` is op `i`'s input width; `out_width` the pipeline output's
/// width (`None`: no output).
pub(crate) fn liveness(ops: &mut [Op], widths: &[usize], out_width: Option<usize>) {
    let mut need: Vec<usize> = (0..out_width.unwrap_or(0)).collect();
    for i in (0..ops.len()).rev() {
        let w = widths[i];
        ops[i].keep = (0..w).map(|p| need.contains(&p)).collect();
        let mut before: Vec<usize> = ops[i].kind.reads();
        if ops[i].kind.extends_row() {
            before.extend(need.iter().copied().filter(|&p| p < w));
        }
        need = before;
    }
}

/// An aggregation's running value.
pub(crate) enum Acc {
    Value(Value),
    Any(Box<dyn Any + Send>),
}

/// What one op holds for one batch.
pub(crate) enum OpBatch {
    None,
    Groups(FxHashMap<Key, Acc>),
    Partials(FxHashMap<Key, Value>),
    Rows(FxHashMap<Key, Vec<Values>>),
    List(Vec<Values>),
}

/// Where a pipeline's output rows go.
pub(crate) type Sink<'a> = dyn FnMut(Values) + 'a;

fn project(row: &[Value], select: &[usize]) -> Values {
    select.iter().map(|&i| row[i].clone()).collect()
}

/// A pipeline of ops over the rows of batches.
pub(crate) struct Pipeline {
    pub ops: Vec<Op>,
}

impl Pipeline {
    /// Fresh per-batch state.
    pub fn new_batch(&self) -> Vec<OpBatch> {
        self.ops
            .iter()
            .map(|op| match &op.kind {
                OpKind::Aggregate { .. } => OpBatch::Groups(FxHashMap::default()),
                OpKind::Persist {
                    kind: PersistKind::Combiner(_),
                    ..
                } => OpBatch::Partials(FxHashMap::default()),
                OpKind::Persist {
                    kind: PersistKind::Reducer(_),
                    ..
                } => OpBatch::Rows(FxHashMap::default()),
                OpKind::Persist { .. } | OpKind::Query { .. } => OpBatch::List(Vec::new()),
                _ => OpBatch::None,
            })
            .collect()
    }

    /// Runs `row` through ops `from..`.
    pub fn push(
        &self,
        from: usize,
        row: Values,
        st: &mut [OpBatch],
        batch: BatchId,
        sink: &mut Sink<'_>,
    ) -> Result<(), ExecuteError> {
        let Some(op) = self.ops.get(from) else {
            sink(row);
            return Ok(());
        };
        let next = from + 1;
        match &op.kind {
            OpKind::Each(select, f) => {
                let mut out = TridentCollector::new();
                f.execute(&TridentTuple::new(&row, select, &op.names), &mut out)?;
                for emitted in out.drain() {
                    let mut r: Values = row
                        .iter()
                        .zip(&op.keep)
                        .map(|(v, &k)| if k { v.clone() } else { Value::Null })
                        .collect();
                    r.0.extend(emitted);
                    self.push(next, r, st, batch, sink)?;
                }
            }
            OpKind::Filter(select, f) => {
                if f.is_keep(&TridentTuple::new(&row, select, &op.names)) {
                    self.push(next, row, st, batch, sink)?;
                }
            }
            OpKind::Map(select, f) => {
                let r = f.execute(&TridentTuple::new(&row, select, &op.names));
                self.push(next, r, st, batch, sink)?;
            }
            OpKind::FlatMap(select, f) => {
                for r in f.execute(&TridentTuple::new(&row, select, &op.names)) {
                    self.push(next, r, st, batch, sink)?;
                }
            }
            OpKind::Project(select) => {
                let r = project(&row, select);
                self.push(next, r, st, batch, sink)?;
            }
            OpKind::Aggregate { group, select, agg } => {
                let OpBatch::Groups(groups) = &mut st[from] else {
                    return Ok(());
                };
                let t = TridentTuple::new(&row, select, &op.names);
                let key = Key(project(&row, group));
                let out = &mut TridentCollector::new();
                match groups.get_mut(&key) {
                    Some(acc) => fold(agg, acc, &t, out),
                    None => {
                        let mut acc = init(agg, batch);
                        fold(agg, &mut acc, &t, out);
                        groups.insert(key.clone(), acc);
                    }
                }
                // A general aggregator may emit while aggregating.
                for emitted in out.drain() {
                    let mut r = key.0.clone();
                    r.0.extend(emitted);
                    self.push(next, r, st, batch, sink)?;
                }
            }
            OpKind::Persist {
                group,
                select,
                kind,
                ..
            } => {
                let key = Key(project(&row, group));
                match (&mut st[from], kind) {
                    (OpBatch::Partials(p), PersistKind::Combiner(c)) => {
                        let v = row[select[0]].clone();
                        match p.get_mut(&key) {
                            Some(cur) => *cur = c.combine(std::mem::take(cur), v),
                            None => {
                                p.insert(key, v);
                            }
                        }
                    }
                    (OpBatch::Rows(rows), _) => {
                        rows.entry(key).or_default().push(project(&row, select))
                    }
                    (OpBatch::List(rows), _) => rows.push(project(&row, select)),
                    _ => {}
                }
            }
            OpKind::Query { .. } => {
                if let OpBatch::List(rows) = &mut st[from] {
                    rows.push(row);
                }
            }
        }
        Ok(())
    }

    /// The batch's input is complete: completes aggregations and queries in
    /// op order, pushing their output on.
    pub fn finish(
        &self,
        st: &mut [OpBatch],
        batch: BatchId,
        states: &mut [Option<Box<dyn MapState>>],
        sink: &mut Sink<'_>,
    ) -> Result<(), ExecuteError> {
        for i in 0..self.ops.len() {
            let op = &self.ops[i];
            match &op.kind {
                OpKind::Aggregate { group, agg, .. } => {
                    let OpBatch::Groups(groups) = std::mem::replace(&mut st[i], OpBatch::None)
                    else {
                        continue;
                    };
                    let mut groups: Vec<(Key, Acc)> = groups.into_iter().collect();
                    if group.is_empty() && groups.is_empty() {
                        groups.push((Key::default(), init(agg, batch)));
                    }
                    for (key, acc) in groups {
                        let mut out = TridentCollector::new();
                        complete(agg, acc, &mut out);
                        for emitted in out.drain() {
                            let mut r = key.0.clone();
                            r.0.extend(emitted);
                            self.push(i + 1, r, st, batch, sink)?;
                        }
                    }
                }
                OpKind::Query { state, select, f } => {
                    let OpBatch::List(rows) = std::mem::replace(&mut st[i], OpBatch::None) else {
                        continue;
                    };
                    let Some(Some(s)) = states.get_mut(*state) else {
                        return Err(
                            "state_query: the state could not be opened (see the task's errors)"
                                .into(),
                        );
                    };
                    let keys: Vec<Key> = rows.iter().map(|r| Key(project(r, select))).collect();
                    let results = f.batch_retrieve(s.as_mut(), &keys)?;
                    for (row, result) in rows.into_iter().zip(results) {
                        let mut out = TridentCollector::new();
                        f.execute(
                            &TridentTuple::new(&row, select, &op.names),
                            &result,
                            &mut out,
                        );
                        for emitted in out.drain() {
                            let mut r = row.clone();
                            r.0.extend(emitted);
                            self.push(i + 1, r, st, batch, sink)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies the batch's persists to their states (at its commit).
    pub fn commit(
        &self,
        st: &mut [OpBatch],
        txid: u64,
        states: &mut [Option<Box<dyn MapState>>],
    ) -> Result<(), ExecuteError> {
        for (i, op) in self.ops.iter().enumerate() {
            let OpKind::Persist { state, kind, .. } = &op.kind else {
                continue;
            };
            let Some(Some(s)) = states.get_mut(*state) else {
                return Err(
                    "persist: the state could not be opened (see the task's errors)".into(),
                );
            };
            let s = s.as_mut();
            s.begin_commit(txid)?;
            match (std::mem::replace(&mut st[i], OpBatch::None), kind) {
                (OpBatch::Partials(p), PersistKind::Combiner(c)) => {
                    let (keys, mut vals): (Vec<Key>, Vec<Value>) = p.into_iter().unzip();
                    s.multi_update(&keys, &mut |k, old| {
                        let v = std::mem::take(&mut vals[k]);
                        match old {
                            Some(o) => c.combine(o, v),
                            None => v,
                        }
                    })?;
                }
                (OpBatch::Rows(rows), PersistKind::Reducer(r)) => {
                    let (keys, rows): (Vec<Key>, Vec<Vec<Values>>) = rows.into_iter().unzip();
                    let select: Vec<usize> = (0..op.names.len()).collect();
                    s.multi_update(&keys, &mut |k, old| {
                        rows[k]
                            .iter()
                            .fold(old.unwrap_or_else(|| r.init()), |acc, row| {
                                r.reduce(acc, &TridentTuple::new(row, &select, &op.names))
                            })
                    })?;
                }
                (OpBatch::List(rows), PersistKind::Updater(u)) => {
                    let select: Vec<usize> = (0..op.names.len()).collect();
                    let tuples: Vec<TridentTuple> = rows
                        .iter()
                        .map(|r| TridentTuple::new(r, &select, &op.names))
                        .collect();
                    u.update_state(s, &tuples)?;
                }
                _ => {}
            }
            s.commit(txid)?;
        }
        Ok(())
    }

    /// Whether the pipeline persists to a state.
    pub fn persists(&self) -> bool {
        self.ops
            .iter()
            .any(|o| matches!(o.kind, OpKind::Persist { .. }))
    }
}

fn init(agg: &AggOp, batch: BatchId) -> Acc {
    match agg {
        AggOp::Combine(c) | AggOp::CombinePartials(c) => Acc::Value(c.zero()),
        AggOp::Reduce(r) => Acc::Value(r.init()),
        AggOp::General(g) => Acc::Any(g.init(batch)),
    }
}

fn fold(agg: &AggOp, acc: &mut Acc, t: &TridentTuple, out: &mut TridentCollector) {
    match (agg, acc) {
        (AggOp::Combine(c), Acc::Value(v)) => *v = c.combine(std::mem::take(v), c.init(t)),
        (AggOp::CombinePartials(c), Acc::Value(v)) => {
            let p = t.value(0).cloned().unwrap_or_default();
            *v = c.combine(std::mem::take(v), p)
        }
        (AggOp::Reduce(r), Acc::Value(v)) => *v = r.reduce(std::mem::take(v), t),
        (AggOp::General(g), Acc::Any(s)) => g.aggregate(s.as_mut(), t, out),
        _ => {}
    }
}

fn complete(agg: &AggOp, acc: Acc, out: &mut TridentCollector) {
    match (agg, acc) {
        (AggOp::General(g), Acc::Any(s)) => g.complete(s, out),
        (_, Acc::Value(v)) => out.emit(std::iter::once(v).collect()),
        _ => {}
    }
}
