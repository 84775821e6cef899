//! [`CheckpointSpout`] and its pure state machine [`CheckpointState`]
//! (Storm's `CheckpointSpout` and `CheckPointState`).

use super::{Action, CHECKPOINT_FIELDS};
use serde::{Deserialize, Serialize};
use squall_topology_api::{
    values, FailReason, OutputFieldsDeclarer, SharedStore, Spout, SpoutOutputCollector,
    TopologyContext, Value, CHECKPOINT_STREAM,
};
use std::time::{Duration, Instant};

/// Where the last checkpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// `txid` is committed everywhere.
    Committed,
    /// `txid` is being prepared.
    Preparing,
    /// `txid` was prepared everywhere and is being committed.
    Committing,
}

/// The checkpoint spout's durable state: a txid and its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// The transaction id.
    pub txid: u64,
    /// Its phase.
    pub phase: Phase,
}

impl Default for CheckpointState {
    fn default() -> Self {
        Self {
            txid: 0,
            phase: Phase::Committed,
        }
    }
}

impl CheckpointState {
    /// The step to send next (Storm's `nextAction`): recovering, a prepared
    /// txid rolls back and a committed one re-initializes the bolts;
    /// otherwise steps go PREPARE → COMMIT. A txid being committed is
    /// committed again either way (some bolts may have committed it).
    pub fn next_action(self, recovering: bool) -> Action {
        match (self.phase, recovering) {
            (Phase::Preparing, true) => Action::Rollback,
            (Phase::Preparing, false) => Action::Prepare,
            (Phase::Committing, _) => Action::Commit,
            (Phase::Committed, true) => Action::InitState,
            (Phase::Committed, false) => Action::Prepare,
        }
    }

    /// The step recovery sends next, as `(txid, action)`: a prepared txid
    /// rolls back, a txid being committed is committed again, then the
    /// txid after the committed one rolls back (whatever bolts did since
    /// the last commit, a restarted task's lost tuples among it, is
    /// undone and replayed), then INITSTATE. Storm's recovery has no
    /// second rollback, so a tuple tree lost with a worker after a commit
    /// could be counted twice.
    pub fn recovery_step(self, rolled_back: bool) -> (u64, Action) {
        match self.phase {
            Phase::Preparing => (self.txid, Action::Rollback),
            Phase::Committing => (self.txid, Action::Commit),
            Phase::Committed if !rolled_back => (self.txid + 1, Action::Rollback),
            Phase::Committed => (self.txid, Action::InitState),
        }
    }

    /// After the recovery step was acked by every bolt: the new state,
    /// whether the uncommitted txid was rolled back, and whether recovery
    /// is over.
    pub fn after_recovery_step(self, rolled_back: bool) -> (Self, bool, bool) {
        match self.phase {
            Phase::Preparing => (self.next_state(true), true, false),
            Phase::Committing => (self.next_state(true), false, false),
            Phase::Committed => (self, true, rolled_back),
        }
    }

    /// The state once the step sent from this one was acked by every bolt
    /// (Storm's `nextState`); recovering from a committed state it stays
    /// (recovery is then complete).
    pub fn next_state(self, recovering: bool) -> Self {
        let (txid, phase) = match (self.phase, recovering) {
            (Phase::Preparing, true) => (self.txid.saturating_sub(1), Phase::Committed),
            (Phase::Preparing, false) => (self.txid, Phase::Committing),
            (Phase::Committing, _) => (self.txid, Phase::Committed),
            (Phase::Committed, true) => (self.txid, Phase::Committed),
            (Phase::Committed, false) => (self.txid + 1, Phase::Preparing),
        };
        Self { txid, phase }
    }
}

/// Emits the checkpoint steps on `$checkpoint` (component
/// `$checkpointspout`, one task), one step in flight at a time: at start
/// it recovers (ROLLBACK of a half-prepared txid, then INITSTATE), then
/// every `topology.state.checkpoint.interval.ms` it runs PREPARE and
/// COMMIT; a failed PREPARE is rolled back, a failed COMMIT retried. Its
/// state is in the coordination store (ZooKeeper in a cluster), written
/// before the step it leads to is sent.
pub struct CheckpointSpout {
    state: CheckpointState,
    recovering: bool,
    /// In this recovery, the uncommitted txid was rolled back.
    rolled_back: bool,
    in_flight: bool,
    /// The state's write failed: retried before anything is sent.
    unsaved: bool,
    last_checkpoint: Instant,
    interval: Duration,
    attempt: i64,
    store: Option<SharedStore>,
    key: String,
}

impl Default for CheckpointSpout {
    fn default() -> Self {
        Self::new()
    }
}

impl CheckpointSpout {
    /// A spout that loads its state at `open`.
    pub fn new() -> Self {
        Self {
            state: CheckpointState::default(),
            recovering: true,
            rolled_back: false,
            in_flight: false,
            unsaved: false,
            last_checkpoint: Instant::now(),
            interval: Duration::from_secs(1),
            attempt: 0,
            store: None,
            key: String::new(),
        }
    }

    /// The coordination-store key of `topology`'s checkpoint state.
    pub fn state_key(topology: &str) -> String {
        format!("stateful/{topology}/checkpoint")
    }

    /// The checkpoint state of `topology` in `store` (what the spout
    /// resumes from).
    ///
    /// # Errors
    /// The store's error, or one naming a value that does not decode.
    pub fn load(store: &SharedStore, topology: &str) -> Result<CheckpointState, String> {
        match store.get(&Self::state_key(topology)) {
            Ok(None) => Ok(CheckpointState::default()),
            Ok(Some(b)) => rmp_serde::from_slice(&b)
                .map_err(|e| format!("checkpoint state does not decode: {e}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn save(&mut self, out: &mut SpoutOutputCollector<'_>) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        let saved = rmp_serde::to_vec(&self.state)
            .map_err(|e| e.to_string())
            .and_then(|b| store.put(&self.key, &b).map_err(|e| e.to_string()));
        self.unsaved = saved.is_err();
        if let Err(e) = saved {
            out.report_error(&format!("checkpoint state not saved, retrying: {e}"));
        }
        !self.unsaved
    }

    fn emit(&mut self, txid: u64, action: Action, out: &mut SpoutOutputCollector<'_>) {
        self.attempt += 1;
        let txid = txid as i64;
        let msg_id = Value::List(vec![Value::Int(txid), Value::from(action.as_str())]);
        out.emit_stream(
            CHECKPOINT_STREAM,
            values![txid, action.as_str(), self.attempt],
            Some(msg_id),
        );
        self.in_flight = true;
    }
}

impl Spout for CheckpointSpout {
    fn open(&mut self, context: &TopologyContext) {
        self.interval = Duration::from_millis(context.config().state_checkpoint_interval_ms);
        self.key = Self::state_key(context.topology_name());
        // Attempts are unique across restarts of this spout.
        self.attempt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            << 8;
        self.store = context.store().cloned();
        if let Some(store) = &self.store {
            // A topology that never checkpointed has nothing to roll back:
            // its first step is INITSTATE, so no tuple that came before it
            // is failed.
            self.rolled_back = matches!(store.get(&self.key), Ok(None));
            match Self::load(store, context.topology_name()) {
                Ok(s) => self.state = s,
                Err(e) => tracing::error!(key = %self.key, "checkpoint state: {e}"),
            }
        }
        self.last_checkpoint = Instant::now();
    }

    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        if self.in_flight || (self.unsaved && !self.save(out)) {
            return;
        }
        if self.recovering {
            let (txid, action) = self.state.recovery_step(self.rolled_back);
            tracing::info!(txid, %action, "checkpoint recovery step");
            self.emit(txid, action, out);
            return;
        }
        let due = self.last_checkpoint.elapsed() >= self.interval;
        if self.state.phase == Phase::Committed {
            if !due {
                return;
            }
            self.state = self.state.next_state(false);
            self.last_checkpoint = Instant::now();
            if !self.save(out) {
                return;
            }
        }
        let action = self.state.next_action(false);
        self.emit(self.state.txid, action, out);
    }

    fn ack(&mut self, msg_id: Value) {
        self.in_flight = false;
        let txid = match &msg_id {
            Value::List(v) => v.first().and_then(Value::as_i64),
            _ => None,
        };
        let expected = if self.recovering {
            self.state.recovery_step(self.rolled_back).0
        } else {
            self.state.txid
        };
        if txid != Some(expected as i64) {
            return;
        }
        let next = if self.recovering {
            let (next, rolled_back, done) = self.state.after_recovery_step(self.rolled_back);
            self.rolled_back = rolled_back;
            self.recovering = !done;
            next
        } else {
            self.state.next_state(false)
        };
        if next != self.state {
            self.state = next;
            // Saved at the next `next_tuple` before anything else is sent.
            self.unsaved = true;
        }
    }

    fn fail(&mut self, msg_id: Value, reason: FailReason) {
        self.in_flight = false;
        tracing::warn!(step = %msg_id, %reason, "checkpoint step did not complete; recovering");
        if !self.recovering {
            self.recovering = true;
            self.rolled_back = false;
        }
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        declarer.declare_stream(CHECKPOINT_STREAM, CHECKPOINT_FIELDS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(s: CheckpointState, recovering: bool) -> (Action, CheckpointState) {
        (s.next_action(recovering), s.next_state(recovering))
    }

    #[test]
    fn a_checkpoint_prepares_then_commits() {
        let s = CheckpointState::default();
        let (_, preparing) = step(s, false);
        assert_eq!(preparing.phase, Phase::Preparing);
        assert_eq!(preparing.txid, 1);
        let (a, committing) = step(preparing, false);
        assert_eq!(a, Action::Prepare);
        let (a, committed) = step(committing, false);
        assert_eq!(a, Action::Commit);
        assert_eq!(
            committed,
            CheckpointState {
                txid: 1,
                phase: Phase::Committed
            }
        );
    }

    #[test]
    fn recovery_rolls_back_a_prepared_txid_then_initializes() {
        let s = CheckpointState {
            txid: 5,
            phase: Phase::Preparing,
        };
        let (a, s) = step(s, true);
        assert_eq!(a, Action::Rollback);
        assert_eq!(s.txid, 4);
        let (a, after) = step(s, true);
        assert_eq!(a, Action::InitState);
        assert_eq!(after, s, "recovery ends once INITSTATE is acked");
    }

    /// Runs recovery from `s` to its end: the steps sent.
    fn recover(mut s: CheckpointState) -> (Vec<(u64, Action)>, CheckpointState) {
        let (mut steps, mut rolled_back) = (Vec::new(), false);
        loop {
            steps.push(s.recovery_step(rolled_back));
            let (next, rb, done) = s.after_recovery_step(rolled_back);
            (s, rolled_back) = (next, rb);
            if done {
                return (steps, s);
            }
        }
    }

    #[test]
    fn recovery_always_rolls_back_what_is_not_committed() {
        let committed = |txid| CheckpointState {
            txid,
            phase: Phase::Committed,
        };
        let (steps, end) = recover(committed(3));
        assert_eq!(steps, [(4, Action::Rollback), (3, Action::InitState)]);
        assert_eq!(end, committed(3));
        let (steps, end) = recover(CheckpointState {
            txid: 5,
            phase: Phase::Preparing,
        });
        assert_eq!(steps, [(5, Action::Rollback), (4, Action::InitState)]);
        assert_eq!(end, committed(4));
        let (steps, end) = recover(CheckpointState {
            txid: 7,
            phase: Phase::Committing,
        });
        assert_eq!(
            steps,
            [
                (7, Action::Commit),
                (8, Action::Rollback),
                (7, Action::InitState)
            ]
        );
        assert_eq!(end, committed(7));
    }

    #[test]
    fn a_txid_being_committed_is_committed_again_in_recovery() {
        let s = CheckpointState {
            txid: 7,
            phase: Phase::Committing,
        };
        assert_eq!(s.next_action(true), Action::Commit);
        assert_eq!(s.next_state(true).phase, Phase::Committed);
        assert_eq!(s.next_state(true).next_action(true), Action::InitState);
    }
}
