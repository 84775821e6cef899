//! [`Epoch`]: what a bolt in a checkpointed topology tracks between
//! checkpoint steps — alignment, held acks, failures — and how it acts on
//! a step (Storm's `BaseStatefulBoltExecutor` and `StatefulBoltExecutor`
//! bookkeeping).

use super::held::{self, HeldAcks};
use super::{Action, CheckpointBarrier, CheckpointTuple};
use crate::store::TxStore;
use squall_topology_api::{
    Anchors, BoltOutput, ComponentId, Fields, MessageId, MetricUpdate, OutputCollector, StreamMeta,
    TaskId, TopologyContext, Tuple, Values, CHECKPOINT_STREAM,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A [`BoltOutput`] that notes the bolt's fails: a checkpoint holding part
/// of a failed tuple's tree must not commit.
pub(crate) struct WatchingOutput<'c, 'a> {
    pub(crate) out: &'c mut OutputCollector<'a>,
    pub(crate) failed: &'c mut bool,
}

/// A [`BoltOutput`] that also keeps acks instead of sending them: what a
/// stateful bolt acks waits for its checkpoint to commit.
pub(crate) struct HoldingOutput<'c, 'a> {
    pub(crate) out: &'c mut OutputCollector<'a>,
    pub(crate) failed: &'c mut bool,
    pub(crate) held: &'c mut HeldAcks,
}

macro_rules! forward_output {
    ($t:ident, $ack:expr, $ack_once:expr) => {
        impl BoltOutput for $t<'_, '_> {
            fn emit(
                &mut self,
                stream: &str,
                anchors: &[&Tuple],
                values: Values,
                direct_task: Option<TaskId>,
            ) {
                match direct_task {
                    Some(task) => {
                        self.out
                            .emit_direct(task, stream, Anchors::Many(anchors), values)
                    }
                    None => self
                        .out
                        .emit_anchored_stream(stream, Anchors::Many(anchors), values),
                }
            }

            fn ack(&mut self, tuple: &Tuple) {
                #[allow(clippy::redundant_closure_call)]
                ($ack)(self, tuple)
            }

            fn ack_once(&mut self, tuple: &Tuple) {
                #[allow(clippy::redundant_closure_call)]
                ($ack_once)(self, tuple)
            }

            fn fail(&mut self, tuple: &Tuple) {
                *self.failed = true;
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

            fn take_ack_id(&mut self, tuple: &Tuple) -> MessageId {
                self.out.take_ack_id(tuple)
            }
        }
    };
}

forward_output!(
    WatchingOutput,
    |s: &mut WatchingOutput<'_, '_>, t: &Tuple| s.out.ack(t),
    |s: &mut WatchingOutput<'_, '_>, t: &Tuple| s.out.ack_once(t)
);
forward_output!(
    HoldingOutput,
    |s: &mut HoldingOutput<'_, '_>, t: &Tuple| {
        let id = s.out.take_ack_id(t);
        s.held.add(&id)
    },
    |s: &mut HoldingOutput<'_, '_>, t: &Tuple| {
        let id = s.out.take_ack_id(t);
        s.held.add(&id)
    }
);

/// Alignment, held acks and failures between checkpoint steps.
pub(crate) struct Epoch {
    barrier: CheckpointBarrier,
    /// Data held back by alignment, in arrival order.
    waiting: Vec<Tuple>,
    /// The acks of tuples acked since the last PREPARE.
    pub(crate) held: HeldAcks,
    /// Acked before the last PREPARE: acked for real at its COMMIT.
    prepared: HeldAcks,
    /// Acks of a prepared txid kept by an earlier run of this task, as
    /// `(root, value)`.
    restored: Option<(u64, Vec<(u64, u64)>)>,
    /// Acks of the last txid an earlier run of this task committed: it
    /// may have stopped before they left, so they are sent again (acks
    /// once, so a second send does nothing) until a message timeout after
    /// this task started, when every tree they belong to has completed or
    /// timed out.
    resend: Vec<(u64, u64)>,
    started: Instant,
    message_timeout: Duration,
    last_txid: Option<u64>,
    /// The bolt failed a tuple since the last PREPARE.
    pub(crate) failed: bool,
    /// INITSTATE came since this task started: until then a PREPARE
    /// fails, so a restarted task makes the topology roll back what its
    /// predecessor may have left half done.
    pub(crate) initialized: bool,
    ack_meta: Arc<StreamMeta>,
    /// Held tuples' trees get their timeout restarted this often.
    keep_alive_every: Duration,
    /// `None` until the first tick: a restarted task resets the trees of
    /// the acks it restored at once.
    last_keep_alive: Option<Instant>,
}

/// How often a stateful task looks at its held tuples' timeouts, in ms.
pub(crate) const KEEP_ALIVE_TICK_MS: u64 = 1000;

impl Epoch {
    pub(crate) fn new() -> Self {
        Self {
            barrier: CheckpointBarrier::new(1),
            waiting: Vec::new(),
            held: HeldAcks::default(),
            prepared: HeldAcks::default(),
            restored: None,
            resend: Vec::new(),
            started: Instant::now(),
            message_timeout: Duration::from_secs(30),
            last_txid: None,
            failed: false,
            initialized: false,
            ack_meta: Arc::new(StreamMeta {
                component: ComponentId::from(""),
                stream: CHECKPOINT_STREAM.into(),
                fields: Fields::from(Vec::<String>::new()),
            }),
            keep_alive_every: Duration::from_secs(10),
            last_keep_alive: None,
        }
    }

    /// Restarts the timeouts of held trees (Storm's `resetTimeout`):
    /// tuples wait for a commit, which a failure can delay by a whole
    /// message timeout, and a tree timing out then would replay input
    /// whose effect the commit is about to make durable. Every quarter of
    /// the message timeout (and at the first tick) it resets the trees of
    /// held and prepared acks older than that (a healthy checkpoint
    /// cadence commits them first, so nothing is sent), of acks restored
    /// from an earlier run, of tuples `queued` before INITSTATE and of
    /// tuples held back by alignment; and it sends again the acks an
    /// earlier run committed.
    pub(crate) fn keep_alive(&mut self, out: &mut OutputCollector<'_>, queued: &[Tuple]) {
        if self
            .last_keep_alive
            .is_some_and(|t| t.elapsed() < self.keep_alive_every)
        {
            return;
        }
        self.last_keep_alive = Some(Instant::now());
        let old = |h: &HeldAcks| h.older_than(self.keep_alive_every);
        let (prepared, held) = (old(&self.prepared), old(&self.held));
        tracing::debug!(
            resend = self.resend.len(),
            restored = self.restored.as_ref().map_or(0, |r| r.1.len()),
            prepared = if prepared { self.prepared.len() } else { 0 },
            held = if held { self.held.len() } else { 0 },
            queued = queued.len(),
            waiting = self.waiting.len(),
            "keeping held trees alive"
        );
        self.resend_committed(out);
        let restored = self
            .restored
            .iter()
            .flat_map(|(_, ids)| ids.iter().copied());
        let held = (held.then(|| self.held.iter()).into_iter().flatten())
            .chain(prepared.then(|| self.prepared.iter()).into_iter().flatten());
        for pair in restored.chain(held) {
            out.reset_timeout(&self.ack_tuple(pair));
        }
        for t in queued.iter().chain(&self.waiting) {
            out.reset_timeout(t);
        }
    }

    /// Sends again the acks an earlier run of this task committed, for
    /// a message timeout after this task started.
    fn resend_committed(&mut self, out: &mut OutputCollector<'_>) {
        if self.started.elapsed() > self.message_timeout {
            self.resend = Vec::new();
        }
        for &pair in &self.resend {
            out.ack_once(&self.ack_tuple(pair));
        }
    }

    pub(crate) fn prepare(&mut self, context: &TopologyContext) {
        self.barrier = CheckpointBarrier::of(context);
        self.message_timeout = Duration::from_secs(context.config().message_timeout_secs.max(1));
        self.keep_alive_every = self.message_timeout / 4;
        self.ack_meta = Arc::new(StreamMeta {
            component: context.this_component_id().clone(),
            stream: CHECKPOINT_STREAM.into(),
            fields: Fields::from(Vec::<String>::new()),
        });
    }

    /// Takes the acks an earlier run of this task kept in `store`: those
    /// of a prepared txid, to send if it commits, and those of the last
    /// commit, to send again.
    pub(crate) fn restore(&mut self, store: &TxStore) {
        if let Some((txid, acks)) = store.prepared_acks() {
            self.restored = Some((txid, held::decode(acks)));
        }
        if let Some((_, acks)) = store.committed_acks() {
            self.resend = held::decode(acks);
        }
        tracing::info!(
            prepared_txid = self.restored.as_ref().map(|r| r.0),
            prepared = self.restored.as_ref().map_or(0, |r| r.1.len()),
            committed_txid = store.committed_acks().map(|c| c.0),
            committed = self.resend.len(),
            "restored the acks of earlier runs"
        );
    }

    /// Holds `tuple` back when its task already sent the step being
    /// gathered; `true` when held.
    pub(crate) fn hold_back(&mut self, tuple: &Tuple) -> bool {
        if self.barrier.holds_back(tuple.source_task()) {
            self.waiting.push(tuple.clone());
            return true;
        }
        false
    }

    /// A tuple standing for the held tuples of tree `root` (their acks
    /// XOR-combined into `value`).
    fn ack_tuple(&self, (root, value): (u64, u64)) -> Tuple {
        Tuple::with_message_id(self.ack_meta.clone(), MessageId::single(root, value))
    }

    /// The data tuples an abandoned step held back, when checkpoint tuple
    /// `c` starts another: to execute before `c` is handled (they came
    /// before it, and belong to what `c` may roll back).
    pub(crate) fn take_stale(&mut self, c: CheckpointTuple) -> Vec<Tuple> {
        if self.barrier.gathering_other(c) {
            std::mem::take(&mut self.waiting)
        } else {
            Vec::new()
        }
    }

    /// Handles checkpoint tuple `c` (after [`take_stale`](Self::take_stale)). Once every input sent it, runs
    /// `step` (given the held acks to keep with a PREPARE), moves held
    /// acks along, passes the step on and acks `tuple`; a failed step or a
    /// PREPARE after a failed tuple fails `tuple` instead, so the
    /// checkpoint rolls back. Returns whether the step ran, and the data
    /// tuples to execute now (held back until the step passed).
    pub(crate) fn on_checkpoint(
        &mut self,
        c: CheckpointTuple,
        tuple: &Tuple,
        out: &mut OutputCollector<'_>,
        step: impl FnOnce(Vec<u8>) -> Result<(), String>,
    ) -> (bool, Vec<Tuple>) {
        let mut released = Vec::new();
        if !self.barrier.arrive(c, tuple.source_task()) {
            out.ack(tuple);
            return (false, released);
        }
        released.append(&mut self.waiting);
        if self.last_txid.is_some_and(|t| c.txid < t) {
            out.ack(tuple);
            return (false, released);
        }
        if c.action == Action::Prepare && std::mem::take(&mut self.failed) {
            refuse(tuple, out, "a tuple failed since the last checkpoint");
            return (false, released);
        }
        if c.action == Action::Prepare && !self.initialized {
            refuse(tuple, out, "PREPARE before INITSTATE: the task restarted");
            return (false, released);
        }
        let acks = match c.action {
            Action::Prepare => held::encode([&self.prepared, &self.held]),
            _ => Vec::new(),
        };
        if let Err(e) = step(acks) {
            let why = format!("checkpoint {} of txid {} failed: {e}", c.action, c.txid);
            refuse(tuple, out, &why);
            return (false, released);
        }
        self.finish(c, out);
        out.emit_anchored_stream(CHECKPOINT_STREAM, tuple, c.values());
        out.ack(tuple);
        (true, released)
    }

    fn finish(&mut self, c: CheckpointTuple, out: &mut OutputCollector<'_>) {
        match c.action {
            Action::Prepare => self.prepared.append(&mut self.held),
            Action::Commit => {
                for pair in self.prepared.take() {
                    out.ack_once(&self.ack_tuple(pair));
                }
                if let Some((txid, pairs)) = self.restored.take() {
                    if txid == c.txid {
                        for pair in pairs {
                            out.ack_once(&self.ack_tuple(pair));
                        }
                    }
                }
                self.resend_committed(out);
            }
            Action::Rollback => {
                tracing::info!(
                    txid = c.txid,
                    prepared = self.prepared.len(),
                    held = self.held.len(),
                    "rolling back: failing the tuples since the last commit"
                );
                let mut pairs = self.prepared.take();
                pairs.extend(self.held.take());
                for pair in pairs {
                    out.fail(&self.ack_tuple(pair));
                }
                self.restored = None;
                self.failed = false;
            }
            Action::InitState => {
                self.initialized = true;
                self.resend_committed(out);
            }
        }
        self.last_txid = Some(match c.action {
            Action::Rollback => c.txid.saturating_sub(1),
            _ => c.txid,
        });
    }
}

/// Fails a checkpoint tuple, reporting why.
fn refuse(tuple: &Tuple, out: &mut OutputCollector<'_>, why: &str) {
    tracing::warn!("{why}");
    out.report_error(&why);
    out.fail(tuple);
}
