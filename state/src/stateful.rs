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
fn open_store(context: &TopologyContext) -> Result<TxStore, StateError> {
    let provider = provider_for(context.config())?;
    TxStore::new(provider.open(context.topology_name(), &namespace(context))?)
}

/// Opens a task's store at prepare and, while that fails, again at each
/// checkpoint tuple: a redb file may still be held by a worker of the
/// previous assignment that has not exited yet, or a remote store may not
/// be reachable yet. Until it opens, every checkpoint step is refused
/// (naming [`error`](Self::error)), so no input is acked; the held acks of
/// earlier runs are restored when it opens, before any step can succeed.
pub(crate) struct StoreOpener {
    /// The task's context while the store is not open.
    context: Option<TopologyContext>,
    /// Why the store could not be opened, reported with each refusal.
    pub(crate) error: String,
}

impl StoreOpener {
    pub(crate) fn new() -> Self {
        Self {
            context: None,
            error: String::new(),
        }
    }

    /// Opens the store at prepare, restoring `epoch`'s held acks from it.
    /// Logs and keeps the error (and `context`, to retry) when it fails.
    pub(crate) fn open(&mut self, context: &TopologyContext, epoch: &mut Epoch) -> Option<TxStore> {
        self.context = Some(context.clone());
        let store = self.retry(epoch);
        if store.is_none() {
            tracing::error!(
                component = %context.this_component_id(),
                task = %context.this_task_id(),
                "cannot open the task's state (retried at each checkpoint): {}",
                self.error
            );
        }
        store
    }

    /// Tries again to open a store that failed to open; `None` once it
    /// is open (the caller holds it) or while it still fails.
    pub(crate) fn retry(&mut self, epoch: &mut Epoch) -> Option<TxStore> {
        let context = self.context.as_ref()?;
        match open_store(context) {
            Ok(store) => {
                epoch.restore(&store);
                self.context = None;
                self.error.clear();
                Some(store)
            }
            Err(e) => {
                self.error = e.to_string();
                None
            }
        }
    }
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
    opener: StoreOpener,
}

impl<B: StatefulBolt> StatefulBoltExecutor<B> {
    /// Runs `bolt`.
    pub fn new(bolt: B) -> Self {
        Self {
            bolt,
            state: None,
            epoch: Epoch::new(),
            opener: StoreOpener::new(),
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
        let store = self.opener.open(context, &mut self.epoch);
        self.state = store.map(B::State::from_store);
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
        if self.state.is_none() {
            self.state = self.opener.retry(&mut self.epoch).map(B::State::from_store);
        }
        for t in self.epoch.take_stale(c) {
            self.run(&t, out);
        }
        let Self {
            bolt,
            state,
            opener,
            epoch,
            ..
        } = self;
        let run = epoch.on_checkpoint(c, tuple, out, |acks, initialized| {
            Self::step(bolt, state, &opener.error, c, acks, initialized)
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
