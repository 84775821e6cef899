//! A stage's bolt (Storm's `TridentBoltExecutor` with `SubtopologyBolt`):
//! runs the stage's pipelines on each batch, knows when a batch is
//! complete from per-task tuple counts, and commits state on the
//! coordinator's `$commit`.
//!
//! Completion (Storm's `CoordinatedBolt`): tuples between stages are not
//! tracked one by one. When an upstream task has finished a batch it sends
//! every task of each downstream stage a `$coord` tuple with how many
//! batch tuples it sent that task; those are tracked, anchored to the
//! batch's tree. A task has the whole batch when it heard from every
//! upstream task and received as many tuples as they announced; it then
//! completes its aggregations, sends its own counts on, and acks. A lost
//! tuple leaves the count short, so the batch times out and is replayed.

use crate::pipeline::OpBatch;
use crate::plan::StagePlan;
use crate::protocol::{batch_of, data_values, BatchMsg, BATCH_FIELD, COORDINATOR, COORD_STREAM};
use crate::spout::Emitter;
use crate::state::{MapState, StatePartition};
use crate::tuple::{BatchId, TridentCollector};
use rustc_hash::FxHashMap;
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TaskId, TopologyContext, Tuple, Value, Values,
};
use std::sync::Arc;

/// One batch in one task.
struct BatchRun {
    attempt: u32,
    /// Data tuples received.
    received: u64,
    /// Data tuples announced by upstream tasks.
    expected: u64,
    /// Coordination tuples received (the `$batch` tuple for emitters).
    coords: usize,
    held: Vec<Tuple>,
    failed: bool,
    /// Complete and acked; waiting for `$commit` (committers only).
    done: bool,
    ops: Vec<Vec<OpBatch>>,
    /// Tuples sent to each task (indexed by task id).
    sent: Vec<u64>,
}

/// The bolt of one stage.
pub(crate) struct StageBolt {
    plan: Arc<StagePlan>,
    batches: FxHashMap<u64, BatchRun>,
    expected_coords: usize,
    downstream: Vec<TaskId>,
    emitter: Option<Box<dyn Emitter>>,
    states: Vec<Option<Box<dyn MapState>>>,
    task_index: usize,
    tasks: usize,
    num_tasks: usize,
    component: String,
}

impl StageBolt {
    pub fn new(plan: Arc<StagePlan>) -> Self {
        Self {
            plan,
            batches: FxHashMap::default(),
            expected_coords: 0,
            downstream: Vec::new(),
            emitter: None,
            states: Vec::new(),
            task_index: 0,
            tasks: 1,
            num_tasks: 0,
            component: String::new(),
        }
    }

    /// Opens the states not open yet (at prepare, and again before each
    /// commit while one fails to open, e.g. a file still held by a dying
    /// worker). Reports what failed.
    fn open_states(&mut self, report: &mut dyn FnMut(String)) {
        let partition = StatePartition {
            index: self.task_index,
            count: self.tasks,
        };
        if self.states.len() != self.plan.states.len() {
            self.states = self.plan.states.iter().map(|_| None).collect();
        }
        for (slot, factory) in self.states.iter_mut().zip(&self.plan.states) {
            if slot.is_none() {
                match factory.make_state(&partition) {
                    Ok(s) => *slot = Some(s),
                    Err(e) => report(format!("{}: opening state: {e}", self.component)),
                }
            }
        }
    }

    /// Retries the states that failed to open, reporting each failure as
    /// the task's error (the commit or query that needs one then fails
    /// and its batch is replayed).
    fn reopen_states(&mut self, out: &mut OutputCollector<'_>) {
        if self.states.iter().any(Option::is_none) {
            self.open_states(&mut |e| out.report_error(&e));
        }
    }

    /// The run of `id`, made if new; `None` if `id` is an older attempt.
    fn run(&mut self, id: BatchId) -> Option<&mut BatchRun> {
        let fresh = |plan: &StagePlan, n: usize| BatchRun {
            attempt: id.attempt,
            received: 0,
            expected: 0,
            coords: 0,
            held: Vec::new(),
            failed: false,
            done: false,
            ops: plan.pipelines.iter().map(|p| p.new_batch()).collect(),
            sent: vec![0; n + 1],
        };
        let n = self.num_tasks;
        let plan = &self.plan;
        let run = self
            .batches
            .entry(id.txid)
            .or_insert_with(|| fresh(plan, n));
        if run.attempt < id.attempt {
            // A replay: whatever the older attempt left is dropped.
            *run = fresh(plan, n);
        }
        (run.attempt == id.attempt).then_some(run)
    }

    fn on_data(
        &mut self,
        tuple: &Tuple,
        id: BatchId,
        plan: &StagePlan,
        pipes: &[usize],
        out: &mut OutputCollector<'_>,
    ) {
        let Some(run) = self.run(id) else { return };
        run.received += 1;
        if run.failed || run.done {
            run.failed = true;
            return;
        }
        let mut row: Option<Values> = Some(tuple.values()[1..].iter().cloned().collect());
        for (k, &p) in pipes.iter().enumerate() {
            let row = if k + 1 == pipes.len() {
                row.take().unwrap_or_default()
            } else {
                row.clone().unwrap_or_default()
            };
            if let Err(e) = push(plan, p, row, run, id, out) {
                out.report_error(&format!("batch {}: {e}", id.txid));
                run.failed = true;
            }
        }
        self.check(id, out);
    }

    fn on_coord(&mut self, tuple: &Tuple, id: BatchId, count: u64, out: &mut OutputCollector<'_>) {
        match self.run(id) {
            Some(run) => {
                run.coords += 1;
                run.expected += count;
                run.held.push(tuple.clone());
            }
            None => {
                out.ack(tuple);
                return;
            }
        }
        self.check(id, out);
    }

    fn on_batch(
        &mut self,
        tuple: &Tuple,
        id: BatchId,
        metas: &[Value],
        out: &mut OutputCollector<'_>,
    ) {
        let plan = self.plan.clone();
        let Some((pipe, spout, _)) = plan.spout.clone() else {
            return;
        };
        let meta = metas.get(spout).cloned().unwrap_or(Value::Null);
        let (task_index, tasks) = (self.task_index, self.tasks);
        let mut emitter = self.emitter.take();
        let Some(run) = self.run(id) else {
            self.emitter = emitter;
            out.ack(tuple);
            return;
        };
        run.coords += 1;
        run.held.push(tuple.clone());
        let mut rows = TridentCollector::new();
        let result = match emitter.as_mut() {
            Some(e) => e.emit_batch(id, &meta, task_index, tasks, &mut rows),
            None => Err("no emitter".into()),
        };
        match result {
            Ok(()) => {
                for row in rows.drain() {
                    if let Err(e) = push(&plan, pipe, row, run, id, out) {
                        out.report_error(&format!("batch {}: {e}", id.txid));
                        run.failed = true;
                        break;
                    }
                }
            }
            Err(e) => {
                out.report_error(&format!("batch {}: emitter: {e}", id.txid));
                run.failed = true;
            }
        }
        self.emitter = emitter;
        self.check(id, out);
    }

    fn on_commit(&mut self, tuple: &Tuple, id: BatchId, out: &mut OutputCollector<'_>) {
        // Every earlier txid has committed everywhere.
        self.batches.retain(|&t, _| t >= id.txid);
        let plan = self.plan.clone();
        let ready = matches!(self.batches.get(&id.txid), Some(r) if r.attempt == id.attempt && r.done && !r.failed);
        if !ready {
            tracing::warn!(
                txid = id.txid,
                attempt = id.attempt,
                "commit of a batch this task does not hold (restarted?); it will be replayed"
            );
            self.batches.remove(&id.txid);
            out.fail(tuple);
            return;
        }
        let Some(mut run) = self.batches.remove(&id.txid) else {
            return;
        };
        self.reopen_states(out);
        for (p, ops) in plan.pipelines.iter().zip(run.ops.iter_mut()) {
            if let Err(e) = p.commit(ops, id.txid, &mut self.states) {
                out.report_error(&format!("commit of batch {}: {e}", id.txid));
                out.fail(tuple);
                return;
            }
        }
        out.ack(tuple);
    }

    /// Completes the batch if every upstream task reported and every
    /// announced tuple arrived.
    fn check(&mut self, id: BatchId, out: &mut OutputCollector<'_>) {
        let expected_coords = self.expected_coords;
        let complete = self.batches.get(&id.txid).is_some_and(|run| {
            !run.done
                && run.attempt == id.attempt
                && run.coords >= expected_coords
                && run.received >= run.expected
        });
        if !complete {
            return;
        }
        self.reopen_states(out);
        let plan = self.plan.clone();
        let Some(run) = self.batches.get_mut(&id.txid) else {
            return;
        };
        if run.received > run.expected {
            out.report_error(&format!(
                "batch {}: received {} tuples, {} were announced",
                id.txid, run.received, run.expected
            ));
            run.failed = true;
        }
        if !run.failed {
            for (p, pipeline) in plan.pipelines.iter().enumerate() {
                let (ops, sent) = (&mut run.ops[p], &mut run.sent);
                let result = {
                    let mut sink = |row: Values| emit(&plan, p, row, id, sent, out);
                    pipeline.finish(ops, id, &mut self.states, &mut sink)
                };
                if let Err(e) = result {
                    out.report_error(&format!("batch {}: {e}", id.txid));
                    run.failed = true;
                    break;
                }
            }
        }
        let held = std::mem::take(&mut run.held);
        if run.failed {
            for t in &held {
                out.fail(t);
            }
            self.batches.remove(&id.txid);
            return;
        }
        let anchors: Vec<&Tuple> = held.iter().collect();
        for &task in &self.downstream {
            let count = run.sent.get(task.0 as usize).copied().unwrap_or(0);
            let msg = BatchMsg::Count { id, count };
            out.emit_direct(task, msg.stream(), &anchors, msg.into_values());
        }
        for t in &held {
            out.ack(t);
        }
        run.done = true;
        if !plan.committer {
            self.batches.remove(&id.txid);
        }
    }
}

/// Runs `row` through pipeline `p` of `run`.
fn push(
    plan: &StagePlan,
    p: usize,
    row: Values,
    run: &mut BatchRun,
    id: BatchId,
    out: &mut OutputCollector<'_>,
) -> Result<(), squall_topology_api::ExecuteError> {
    let (ops, sent) = (&mut run.ops[p], &mut run.sent);
    let mut sink = |row: Values| emit(plan, p, row, id, sent, out);
    plan.pipelines[p].push(0, row, ops, id, &mut sink)
}

/// Emits a pipeline's output row, counting it per target task.
fn emit(
    plan: &StagePlan,
    p: usize,
    row: Values,
    id: BatchId,
    sent: &mut [u64],
    out: &mut OutputCollector<'_>,
) {
    let Some((stream, _)) = &plan.outputs[p] else {
        return;
    };
    out.emit_stream(stream, data_values(id, row));
    for t in out.last_targets() {
        if let Some(c) = sent.get_mut(t.0 as usize) {
            *c += 1;
        }
    }
}

impl Bolt for StageBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        self.task_index = context.this_task_index();
        self.tasks = context.this_component_tasks().len().max(1);
        self.num_tasks = context.layout().num_tasks();
        self.expected_coords = if self.plan.spout.is_some() {
            1
        } else {
            self.plan
                .upstream
                .iter()
                .map(|u| context.component_tasks(u).len())
                .sum()
        };
        self.downstream = self
            .plan
            .downstream
            .iter()
            .flat_map(|d| context.component_tasks(d).iter().copied())
            .collect();
        if let Some((_, _, spout)) = &self.plan.spout {
            self.emitter = Some(spout.emitter(context));
        }
        self.component = context.this_component_id().to_string();
        self.open_states(&mut |e| tracing::error!("{e}"));
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let Some(id) = batch_of(tuple.values()) else {
            out.report_error(&format!(
                "tuple without a {BATCH_FIELD} field from {}",
                tuple.source_component()
            ));
            out.ack(tuple);
            return;
        };
        let (source, stream) = (
            tuple.source_component().as_str(),
            tuple.source_stream().as_str(),
        );
        if source == COORDINATOR || stream == COORD_STREAM {
            match BatchMsg::decode(source, stream, tuple.values()) {
                Some(BatchMsg::Start { metas, .. }) => self.on_batch(tuple, id, &metas, out),
                Some(BatchMsg::Commit { .. }) => self.on_commit(tuple, id, out),
                Some(BatchMsg::Count { count, .. }) => self.on_coord(tuple, id, count, out),
                None => {
                    out.report_error(&format!(
                        "malformed batch control tuple {} on {source}/{stream}",
                        tuple.values()
                    ));
                    out.ack(tuple);
                }
            }
        } else {
            let plan = self.plan.clone();
            match plan
                .inputs
                .iter()
                .find(|(c, s, _)| c == source && s == stream)
            {
                Some((_, _, pipes)) => self.on_data(tuple, id, &plan, pipes, out),
                None => out.ack(tuple),
            }
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        for (stream, fields) in self.plan.outputs.iter().flatten() {
            d.declare_stream(stream, fields.clone());
        }
        d.declare_direct_stream(COORD_STREAM, [BATCH_FIELD, "count"]);
    }
}
