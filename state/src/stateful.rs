//! [`StatefulBolt`] and the ordinary bolt that runs it,
//! [`StatefulBoltExecutor`] (Storm's `IStatefulBolt` and
//! `StatefulBoltExecutor`).

use crate::checkpoint::epoch::{Epoch, HoldingOutput};
use crate::checkpoint::{Action, CheckpointTuple, CHECKPOINT_FIELDS};
use crate::store::{provider_for, StateError, TxStore};
use crate::State;
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TopologyContext, Tuple, CHECKPOINT_STREAM,
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
    /// `preRollback`); not before `init_state`.
    fn pre_rollback(&mut self, _state: &mut Self::State) {}
    /// Called once when the task stops.
    fn cleanup(&mut self) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
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

/// Runs a [`StatefulBolt`] as an ordinary [`Bolt`]: opens its state with
/// the `topology.state.provider`, queues input until INITSTATE, holds acks
/// until their checkpoint commits (keeping them with the prepared state, so
/// a restarted task still sends them), and acts on each checkpoint step
/// once every input task sent it, holding back the tuples of tasks that
/// already did (Storm's `StatefulBoltExecutor`, with aligned barriers). A
/// tuple the bolt fails makes the next PREPARE fail, so the checkpoint
/// with part of its tree rolls back. Tick tuples are the executor's: it
/// restarts the timeouts of the trees whose acks it holds.
pub struct StatefulBoltExecutor<B: StatefulBolt> {
    bolt: B,
    state: Option<B::State>,
    epoch: Epoch,
    /// Why the state could not be opened, reported with each refusal.
    open_error: String,
}

impl<B: StatefulBolt> StatefulBoltExecutor<B> {
    /// Runs `bolt`.
    pub fn new(bolt: B) -> Self {
        Self {
            bolt,
            state: None,
            epoch: Epoch::new(),
            open_error: String::new(),
        }
    }

    /// Executes an admitted data tuple.
    fn run(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let Some(state) = &mut self.state else {
            out.fail(tuple);
            return;
        };
        let mut holding = HoldingOutput {
            out,
            failed: &mut self.epoch.failed,
            held: &mut self.epoch.held,
        };
        self.bolt
            .execute(tuple, state, &mut OutputCollector::new(&mut holding));
    }

    fn step(
        bolt: &mut B,
        state: &mut Option<B::State>,
        open_error: &str,
        c: CheckpointTuple,
        acks: Vec<u8>,
        initialized: bool,
    ) -> Result<(), String> {
        let Some(state) = state else {
            return Err(format!("state store is not open: {open_error}"));
        };
        match c.action {
            Action::Prepare => {
                bolt.pre_prepare(c.txid, state);
                state
                    .store()
                    .prepare(c.txid, acks)
                    .map_err(|e| e.to_string())
            }
            Action::Commit => {
                bolt.pre_commit(c.txid, state);
                state.store().commit(c.txid).map_err(|e| e.to_string())
            }
            Action::Rollback => {
                if initialized {
                    bolt.pre_rollback(state);
                }
                state.store().rollback().map_err(|e| e.to_string())
            }
            Action::InitState => {
                if !initialized {
                    bolt.init_state(state);
                }
                Ok(())
            }
        }
    }
}

impl<B: StatefulBolt> Bolt for StatefulBoltExecutor<B> {
    fn prepare(&mut self, context: &TopologyContext) {
        self.epoch.prepare(context);
        match open_store(context) {
            Ok(store) => {
                self.epoch.restore(&store);
                self.state = Some(B::State::from_store(store))
            }
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
        if tuple.is_tick() {
            self.epoch.keep_alive(out);
            return;
        }
        let Some(c) = CheckpointTuple::read(tuple) else {
            if tuple.source_stream().as_str() == CHECKPOINT_STREAM {
                out.ack(tuple);
            } else if self.epoch.admit(tuple) {
                self.run(tuple, out);
            }
            return;
        };
        for t in self.epoch.take_stale(c) {
            self.run(&t, out);
        }
        let Self {
            bolt,
            state,
            open_error,
            epoch,
            ..
        } = self;
        let run = epoch.on_checkpoint(c, tuple, out, |acks, initialized| {
            Self::step(bolt, state, open_error, c, acks, initialized)
        });
        for t in run {
            self.run(&t, out);
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
