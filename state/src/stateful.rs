//! [`StatefulBolt`] and the ordinary bolt that runs it,
//! [`StatefulBoltExecutor`] (Storm's `IStatefulBolt` and
//! `StatefulBoltExecutor`).

use crate::checkpoint::{Action, CheckpointBarrier, CheckpointTuple, CHECKPOINT_FIELDS};
use crate::store::{provider_for, StateError, TxStore};
use crate::State;
use squall_topology_api::{
    Anchors, Bolt, BoltOutput, MetricUpdate, OutputCollector, OutputFieldsDeclarer, TaskId,
    TopologyContext, Tuple, Values, CHECKPOINT_STREAM,
};

/// A bolt whose state is checkpointed (Storm's `IStatefulBolt`): its
/// [`State`] reflects every input tuple exactly once although delivery is
/// at-least-once, because the tuples it acks are acked only when the
/// checkpoint holding their effect commits, and a failed checkpoint rolls
/// the state back and replays them. Declared with
/// [`WindowsAndState::set_stateful_bolt`](crate::WindowsAndState::set_stateful_bolt).
///
/// Contract: every method runs on the task's thread; `execute` is called
/// only after `init_state`. Emits and acks go through the collector as in
/// a plain [`Bolt`].
pub trait StatefulBolt: Send {
    /// The state kept, e.g. [`KeyValueState<String, i64>`](crate::KeyValueState).
    type State: State;
    /// Called once when the task starts.
    fn prepare(&mut self, _context: &TopologyContext) {}
    /// Called once the committed state is loaded, before any `execute`
    /// (Storm's `initState`).
    fn init_state(&mut self, _state: &mut Self::State) {}
    /// Processes one input tuple.
    fn execute(&mut self, tuple: &Tuple, state: &mut Self::State, out: &mut OutputCollector<'_>);
    /// Called before the state is prepared for `txid` (Storm's `prePrepare`).
    fn pre_prepare(&mut self, _txid: u64, _state: &mut Self::State) {}
    /// Called before `txid` commits (Storm's `preCommit`).
    fn pre_commit(&mut self, _txid: u64, _state: &mut Self::State) {}
    /// Called before the state rolls back to the last commit (Storm's
    /// `preRollback`).
    fn pre_rollback(&mut self, _state: &mut Self::State) {}
    /// Called once when the task stops.
    fn cleanup(&mut self) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
}

/// A [`BoltOutput`] that keeps acks instead of sending them: what a
/// stateful bolt acks waits for its checkpoint.
pub(crate) struct HoldingOutput<'c, 'a> {
    pub(crate) out: &'c mut OutputCollector<'a>,
    pub(crate) held: &'c mut Vec<Tuple>,
}

impl BoltOutput for HoldingOutput<'_, '_> {
    fn emit(
        &mut self,
        stream: &str,
        anchors: &[&Tuple],
        values: Values,
        direct_task: Option<TaskId>,
    ) {
        match direct_task {
            Some(task) => self
                .out
                .emit_direct(task, stream, Anchors::Many(anchors), values),
            None => self
                .out
                .emit_anchored_stream(stream, Anchors::Many(anchors), values),
        }
    }

    fn ack(&mut self, tuple: &Tuple) {
        self.held.push(tuple.clone());
    }

    fn fail(&mut self, tuple: &Tuple) {
        self.out.fail(tuple)
    }

    fn reset_timeout(&mut self, tuple: &Tuple) {
        self.out.reset_timeout(tuple)
    }

    fn report_error(&mut self, error: &str) {
        self.out.report_error(&error)
    }

    fn update_metric(&mut self, name: &str, update: MetricUpdate) {
        match update {
            MetricUpdate::Add(by) => self.out.incr_metric(name, by),
            MetricUpdate::Set(v) => self.out.set_metric(name, v),
        }
    }

    fn last_targets(&self) -> &[TaskId] {
        self.out.last_targets()
    }
}

/// The namespace of a task's state: component and task id.
pub(crate) fn namespace(context: &TopologyContext) -> String {
    format!(
        "{}-{}",
        context.this_component_id().as_str(),
        context.this_task_id()
    )
}

/// Opens this task's store with the configured provider.
pub(crate) fn open_store(context: &TopologyContext) -> Result<TxStore, StateError> {
    let provider = provider_for(context.config())?;
    TxStore::new(provider.open(context.topology_name(), &namespace(context))?)
}

/// The checkpoint half of a stateful executor: the barrier, the tuples
/// whose acks wait, and the last txid acted on.
pub(crate) struct Checkpointing {
    pub(crate) barrier: CheckpointBarrier,
    /// Acked since the last PREPARE.
    pub(crate) held: Vec<Tuple>,
    /// Acked before the last PREPARE: acked for real at its COMMIT.
    prepared: Vec<Tuple>,
    last_txid: Option<u64>,
}

impl Checkpointing {
    pub(crate) fn new() -> Self {
        Self {
            barrier: CheckpointBarrier::new(1),
            held: Vec::new(),
            prepared: Vec::new(),
            last_txid: None,
        }
    }

    /// Whether step `c` is one to act on: complete across inputs and not
    /// older than the last one (Storm's `lastTxid` check). Acks the
    /// checkpoint tuple when it is not.
    pub(crate) fn admit(&mut self, c: CheckpointTuple, tuple: &Tuple, out: &mut OutputCollector<'_>) -> bool {
        if !self.barrier.arrive(c) || self.last_txid.is_some_and(|t| c.txid < t) {
            out.ack(tuple);
            return false;
        }
        true
    }

    /// The state's step for `c` done: moves held tuples along, passes the
    /// step on and acks the checkpoint tuple.
    pub(crate) fn finish(&mut self, c: CheckpointTuple, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        match c.action {
            Action::Prepare => self.prepared.append(&mut self.held),
            Action::Commit => self.prepared.drain(..).for_each(|t| out.ack(&t)),
            Action::Rollback => {
                self.prepared.drain(..).for_each(|t| out.fail(&t));
                self.held.drain(..).for_each(|t| out.fail(&t));
            }
            Action::InitState => {}
        }
        self.last_txid = Some(match c.action {
            Action::Rollback => c.txid.saturating_sub(1),
            _ => c.txid,
        });
        out.emit_anchored_stream(CHECKPOINT_STREAM, tuple, c.values());
        out.ack(tuple);
    }

    /// The state's step failed: the checkpoint tuple fails (the spout rolls
    /// back) and the error is reported.
    pub(crate) fn refuse(tuple: &Tuple, out: &mut OutputCollector<'_>, why: &str) {
        out.report_error(&why);
        out.fail(tuple);
    }
}

/// Runs a [`StatefulBolt`] as an ordinary [`Bolt`]: opens its state with
/// the `topology.state.provider`, queues input until INITSTATE, holds acks
/// until their checkpoint commits and acts on each checkpoint step once
/// every input task sent it (Storm's `StatefulBoltExecutor`).
pub struct StatefulBoltExecutor<B: StatefulBolt> {
    bolt: B,
    state: Option<B::State>,
    initialized: bool,
    /// Input that came before INITSTATE.
    queued: Vec<Tuple>,
    checkpoints: Checkpointing,
    /// Why the state could not be opened, reported with each refusal.
    open_error: String,
}

impl<B: StatefulBolt> StatefulBoltExecutor<B> {
    /// Runs `bolt`.
    pub fn new(bolt: B) -> Self {
        Self {
            bolt,
            state: None,
            initialized: false,
            queued: Vec::new(),
            checkpoints: Checkpointing::new(),
            open_error: String::new(),
        }
    }

    fn run(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let Some(state) = &mut self.state else {
            out.fail(tuple);
            return;
        };
        let mut holding = HoldingOutput {
            out,
            held: &mut self.checkpoints.held,
        };
        self.bolt
            .execute(tuple, state, &mut OutputCollector::new(&mut holding));
    }

    fn step(&mut self, c: CheckpointTuple) -> Result<(), String> {
        let Some(state) = &mut self.state else {
            return Err(format!("state store is not open: {}", self.open_error));
        };
        match c.action {
            Action::Prepare if !self.initialized => {
                Err("PREPARE before INITSTATE: state not initialized".into())
            }
            Action::Prepare => {
                self.bolt.pre_prepare(c.txid, state);
                state.store().prepare(c.txid).map_err(|e| e.to_string())
            }
            Action::Commit => {
                self.bolt.pre_commit(c.txid, state);
                state.store().commit(c.txid).map_err(|e| e.to_string())
            }
            Action::Rollback => {
                self.bolt.pre_rollback(state);
                state.store().rollback().map_err(|e| e.to_string())
            }
            Action::InitState => {
                if !self.initialized {
                    self.bolt.init_state(state);
                    self.initialized = true;
                }
                Ok(())
            }
        }
    }
}

impl<B: StatefulBolt> Bolt for StatefulBoltExecutor<B> {
    fn prepare(&mut self, context: &TopologyContext) {
        self.checkpoints.barrier = CheckpointBarrier::of(context);
        match open_store(context) {
            Ok(store) => self.state = Some(B::State::from_store(store)),
            Err(e) => {
                self.open_error = e.to_string();
                tracing::error!(
                component = %context.this_component_id(),
                task = %context.this_task_id(),
                "stateful bolt cannot open its state: {e}"
                )
            }
        }
        self.bolt.prepare(context);
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let Some(c) = CheckpointTuple::read(tuple) else {
            if tuple.source_stream().as_str() == CHECKPOINT_STREAM {
                out.ack(tuple);
            } else if self.initialized {
                self.run(tuple, out);
            } else {
                self.queued.push(tuple.clone());
            }
            return;
        };
        if !self.checkpoints.admit(c, tuple, out) {
            return;
        }
        if let Err(e) = self.step(c) {
            let why = format!("checkpoint {} of txid {} failed: {e}", c.action, c.txid);
            Checkpointing::refuse(tuple, out, &why);
            return;
        }
        self.checkpoints.finish(c, tuple, out);
        if c.action == Action::InitState {
            for t in std::mem::take(&mut self.queued) {
                self.run(&t, out);
            }
        }
    }

    fn cleanup(&mut self) {
        self.bolt.cleanup()
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.bolt.declare_output_fields(declarer);
        declarer.declare_stream(CHECKPOINT_STREAM, CHECKPOINT_FIELDS);
    }
}
