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

/// Implements [`BoltOutput`] for `$t` by forwarding to its `out`, except
/// acks (its `on_ack`, told whether the ack is idempotent) and fails
/// (noted in `failed`).
macro_rules! forward_output {
    ($t:ident) => {
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
                self.on_ack(tuple, false)
            }

            fn ack_once(&mut self, tuple: &Tuple) {
                self.on_ack(tuple, true)
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

forward_output!(WatchingOutput);
forward_output!(HoldingOutput);

impl WatchingOutput<'_, '_> {
    fn on_ack(&mut self, tuple: &Tuple, once: bool) {
        if once {
            self.out.ack_once(tuple)
        } else {
            self.out.ack(tuple)
        }
    }
}

impl HoldingOutput<'_, '_> {
    /// Holds the ack (sent once, at the commit, either way).
    fn on_ack(&mut self, tuple: &Tuple, _once: bool) {
        let id = self.out.take_ack_id(tuple);
        self.held.add(&id)
    }
}

/// Alignment, input queued before INITSTATE, held acks and failures
/// between checkpoint steps.
pub(crate) struct Epoch {
    barrier: CheckpointBarrier,
    /// Data held back by alignment, in arrival order.
    waiting: Vec<Tuple>,
    /// Data that came before INITSTATE, in arrival order.
    queued: Vec<Tuple>,
    /// Data waits for INITSTATE (a stateful bolt's: it has no state
    /// before); a plain bolt's runs at once.
    queues_until_init: bool,
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
    /// INITSTATE came since this task started: until then input is
    /// queued and a PREPARE fails, so a restarted task makes the topology
    /// roll back what its predecessor may have left half done.
    initialized: bool,
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
    /// A stateful bolt's: data waits for INITSTATE.
    pub(crate) fn new() -> Self {
        Self::with_queueing(true)
    }

    /// A plain bolt's: data runs before INITSTATE too.
    pub(crate) fn forwarding() -> Self {
        Self::with_queueing(false)
    }

    fn with_queueing(queues_until_init: bool) -> Self {
        Self {
            barrier: CheckpointBarrier::new(1),
            waiting: Vec::new(),
            queued: Vec::new(),
            queues_until_init,
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
    /// from an earlier run, of tuples queued before INITSTATE and of
    /// tuples held back by alignment; and it sends again the acks an
    /// earlier run committed.
    pub(crate) fn keep_alive(&mut self, out: &mut OutputCollector<'_>) {
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
            queued = self.queued.len(),
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
        for t in self.queued.iter().chain(&self.waiting) {
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
        let committed = store.committed_acks();
        if let Some((_, acks)) = committed {
            self.resend = held::decode(acks);
        }
        tracing::info!(
            prepared_txid = self.restored.as_ref().map(|r| r.0),
            prepared = self.restored.as_ref().map_or(0, |r| r.1.len()),
            committed_txid = committed.map(|c| c.0),
            committed = self.resend.len(),
            "restored the acks of earlier runs"
        );
    }

    /// Whether INITSTATE came since this task started.
    pub(crate) fn initialized(&self) -> bool {
        self.initialized
    }

    /// Whether data is queued now.
    fn waits_for_init(&self) -> bool {
        self.queues_until_init && !self.initialized
    }

    /// Whether data tuple `tuple` is to be executed now: not when its
    /// task already sent the step being gathered (held back until the
    /// step passes) nor before INITSTATE (queued); a later step hands it
    /// back.
    pub(crate) fn admit(&mut self, tuple: &Tuple) -> bool {
        if self.barrier.holds_back(tuple.source_task()) {
            self.waiting.push(tuple.clone());
            return false;
        }
        if self.waits_for_init() {
            self.queued.push(tuple.clone());
            return false;
        }
        true
    }

    /// Of `tuples` (held back so far), those to execute now; before
    /// INITSTATE they are queued instead.
    fn runnable(&mut self, tuples: Vec<Tuple>) -> Vec<Tuple> {
        if !self.waits_for_init() {
            return tuples;
        }
        self.queued.extend(tuples);
        Vec::new()
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
        if !self.barrier.gathering_other(c) {
            return Vec::new();
        }
        let stale = std::mem::take(&mut self.waiting);
        self.runnable(stale)
    }

    /// Handles checkpoint tuple `c` (after [`take_stale`](Self::take_stale)). Once every input sent it, runs
    /// `step` (given the held acks to keep with a PREPARE, and whether
    /// INITSTATE came already), moves held acks along, passes the step on
    /// and acks `tuple`; a failed step, a PREPARE after a failed tuple or
    /// before INITSTATE fails `tuple` instead, so the checkpoint rolls
    /// back. Returns the data tuples to execute now: those held back until
    /// the step passed, after those queued until INITSTATE when this was
    /// it.
    pub(crate) fn on_checkpoint(
        &mut self,
        c: CheckpointTuple,
        tuple: &Tuple,
        out: &mut OutputCollector<'_>,
        step: impl FnOnce(Vec<u8>, bool) -> Result<(), String>,
    ) -> Vec<Tuple> {
        if !self.barrier.arrive(c, tuple.source_task()) {
            out.ack(tuple);
            return Vec::new();
        }
        let released = std::mem::take(&mut self.waiting);
        if self.last_txid.is_some_and(|t| c.txid < t) {
            out.ack(tuple);
        } else if c.action == Action::Prepare && std::mem::take(&mut self.failed) {
            refuse(tuple, out, "a tuple failed since the last checkpoint");
        } else if c.action == Action::Prepare && !self.initialized {
            refuse(tuple, out, "PREPARE before INITSTATE: the task restarted");
        } else {
            let acks = match c.action {
                Action::Prepare => held::encode([&self.prepared, &self.held]),
                _ => Vec::new(),
            };
            match step(acks, self.initialized) {
                Ok(()) => {
                    self.finish(c, out);
                    out.emit_anchored_stream(CHECKPOINT_STREAM, tuple, c.values());
                    out.ack(tuple);
                }
                Err(e) => {
                    let why = format!("checkpoint {} of txid {} failed: {e}", c.action, c.txid);
                    refuse(tuple, out, &why);
                }
            }
        }
        if self.waits_for_init() {
            self.queued.extend(released);
            return Vec::new();
        }
        // Non-empty only when this step was INITSTATE.
        let mut run = std::mem::take(&mut self.queued);
        run.extend(released);
        run
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
                if self.waits_for_init() {
                    // Queued before the rollback: part of what it undoes.
                    for t in std::mem::take(&mut self.queued) {
                        out.fail(&t);
                    }
                }
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
