//! The master batch coordinator (Storm's `MasterBatchCoordinator`): a
//! spout that starts batches with increasing txids, several in flight,
//! and commits them strictly in txid order.
//!
//! Each batch is one tracked tuple on `$batch`, sent to every emitter
//! task; its tree completes when every stage task has received all of the
//! batch's tuples. Then, once the previous txid committed, a tracked
//! `$commit` tuple goes to every task holding state; its tree completing
//! is the commit. A failed (or timed-out) batch or commit re-emits that
//! txid and every later one in flight with attempt + 1.
//!
//! Per txid, each spout's metadata is written to the coordination store
//! (`<txid name>/meta/<txid>`) before the batch is first emitted, and the
//! last committed txid to `<txid name>/committed`, so a coordinator that
//! restarts resumes after the last commit and replays open txids with the
//! same metadata.

use crate::protocol::{
    pack_batch, unpack_batch, BatchMsg, BATCH_FIELD, BATCH_STREAM, COMMIT_STREAM,
};
use crate::spout::{BatchCoordinator, SpoutKind, TransactionalSpout};
use crate::tuple::BatchId;
use squall_topology_api::{
    FailReason, OutputFieldsDeclarer, SharedStore, Spout, SpoutOutputCollector, TopologyContext,
    Value,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batches in flight when `topology.max.spout.pending` is unset (Storm: 1).
pub const DEFAULT_MAX_BATCHES: usize = 8;
/// Config key of the least time between batch starts (ms); Storm's key,
/// whose default there is 500 ms. Here the default is 0: a batch starts
/// as soon as a slot is free and a spout is ready.
pub const EMIT_INTERVAL_KEY: &str = "topology.trident.batch.emit.interval.millis";
/// How long a coordinator whose store failed waits before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// To be emitted (first time or again).
    Emit,
    Processing,
    Processed,
    Committing,
}

struct Tx {
    attempt: u32,
    phase: Phase,
}

struct Source {
    name: String,
    kind: SpoutKind,
    coordinator: Box<dyn BatchCoordinator>,
}

/// The master batch coordinator spout (component `$mbc`).
pub struct MasterCoordinator {
    spouts: Arc<Vec<(String, Arc<dyn TransactionalSpout>)>>,
    sources: Vec<Source>,
    store: Option<SharedStore>,
    /// Metadata per txid (for open txids and the last committed one).
    metas: BTreeMap<u64, Vec<Value>>,
    active: BTreeMap<u64, Tx>,
    committed: u64,
    next_txid: u64,
    max_batches: usize,
    interval: Duration,
    last_start: Option<Instant>,
    /// Set when the store failed: no batches until it answers again.
    broken: bool,
    /// When to try the store again while broken.
    retry_at: Instant,
    /// No ackers: batches cannot be tracked, so none is started.
    no_ackers: bool,
    /// The highest txid whose metadata was stored when the coordinator
    /// (re)started.
    stored_upto: u64,
    /// The attempt number of a txid's first emission: grows by 4096 at
    /// every start of a coordinator (a stored epoch) and every reset, so
    /// tasks never mistake a batch of an earlier incarnation for a current one.
    attempt_base: u32,
}

impl MasterCoordinator {
    /// A coordinator of `spouts` (txid name, spout).
    pub fn new(spouts: Arc<Vec<(String, Arc<dyn TransactionalSpout>)>>) -> Self {
        Self {
            spouts,
            sources: Vec::new(),
            store: None,
            metas: BTreeMap::new(),
            active: BTreeMap::new(),
            committed: 0,
            next_txid: 1,
            max_batches: DEFAULT_MAX_BATCHES,
            interval: Duration::ZERO,
            last_start: None,
            broken: false,
            retry_at: Instant::now(),
            no_ackers: false,
            stored_upto: 0,
            attempt_base: 0,
        }
    }

    /// Bumps the stored epoch and sets the attempt base from it.
    fn next_epoch(&mut self) -> Result<(), String> {
        let Some(first) = self.sources.first() else {
            return Ok(());
        };
        let key = format!("{}/epoch", first.name);
        let store = self.store()?;
        let epoch = match store.get(&key).map_err(|e| e.to_string())? {
            Some(b) => decode::<u32>(&b)?.wrapping_add(1),
            None => 0,
        };
        store
            .put(&key, &encode(&epoch)?)
            .map_err(|e| e.to_string())?;
        self.attempt_base = (epoch & 0xfff) << 12;
        Ok(())
    }

    fn reset(&mut self, why: String) {
        tracing::warn!("trident coordinator: {why}; every open txid will be replayed");
        self.broken = true;
        self.retry_at = Instant::now() + STORE_RETRY;
        self.active.clear();
        self.metas.clear();
        self.attempt_base = self.attempt_base.wrapping_add(1 << 12) & 0xff_ffff;
    }

    fn store(&self) -> Result<&SharedStore, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "no coordination store in this task's context".to_owned())
    }

    fn read_committed(&self) -> Result<u64, String> {
        let store = self.store()?;
        let mut committed = None::<u64>;
        for s in &self.sources {
            let c = match store
                .get(&format!("{}/committed", s.name))
                .map_err(|e| e.to_string())?
            {
                Some(b) => decode::<u64>(&b)?,
                None => 0,
            };
            committed = Some(committed.map_or(c, |m| m.min(c)));
        }
        Ok(committed.unwrap_or(0))
    }

    fn read_meta(&self, source: usize, txid: u64) -> Result<Option<Value>, String> {
        let key = format!("{}/meta/{txid}", self.sources[source].name);
        match self.store()?.get(&key).map_err(|e| e.to_string())? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    /// The metadata of `txid` for every spout, deciding and storing what
    /// is not decided (everything, for opaque spouts, at a new attempt).
    fn metas_for(&mut self, txid: u64, new_attempt: bool) -> Result<Vec<Value>, String> {
        let prev = match self.metas.get(&(txid - 1)) {
            Some(m) => Some(m.clone()),
            None if txid > 1 => {
                let mut m = Vec::new();
                for i in 0..self.sources.len() {
                    m.push(self.read_meta(i, txid - 1)?.unwrap_or(Value::Null));
                }
                Some(m)
            }
            None => None,
        };
        let known = self.metas.get(&txid).cloned();
        let mut out = Vec::with_capacity(self.sources.len());
        for i in 0..self.sources.len() {
            let stored = match &known {
                Some(k) => k.get(i).cloned(),
                None => self.read_meta(i, txid)?,
            };
            let reuse = match self.sources[i].kind {
                SpoutKind::Transactional => stored,
                SpoutKind::Opaque if !new_attempt => stored,
                SpoutKind::Opaque => None,
            };
            let meta = match reuse {
                Some(m) => m,
                None => {
                    let p = prev
                        .as_ref()
                        .and_then(|p| p.get(i))
                        .filter(|v| !matches!(v, Value::Null));
                    let m = self.sources[i].coordinator.initialize_transaction(txid, p);
                    let key = format!("{}/meta/{txid}", self.sources[i].name);
                    self.store()?
                        .put(&key, &encode(&m)?)
                        .map_err(|e| e.to_string())?;
                    m
                }
            };
            out.push(meta);
        }
        self.metas.insert(txid, out.clone());
        Ok(out)
    }

    fn emit_batch(
        &mut self,
        txid: u64,
        out: &mut SpoutOutputCollector<'_>,
        new_attempt: bool,
    ) -> Result<(), String> {
        let attempt = self.active.get(&txid).map_or(0, |t| t.attempt);
        let metas = self.metas_for(txid, new_attempt)?;
        let id = BatchId { txid, attempt };
        let start = BatchMsg::Start { id, metas };
        out.emit_stream(start.stream(), start.into_values(), Some(msg_id(0, id)));
        Ok(())
    }

    fn on_committed(&mut self, txid: u64) -> Result<(), String> {
        self.active.remove(&txid);
        self.committed = txid;
        let store = self.store()?.clone();
        for s in &mut self.sources {
            store
                .put(&format!("{}/committed", s.name), &encode(&txid)?)
                .map_err(|e| e.to_string())?;
            if txid > 1 {
                // Keep the committed txid's metadata: the next batch builds on it.
                store
                    .delete(&format!("{}/meta/{}", s.name, txid - 1))
                    .map_err(|e| e.to_string())?;
            }
            s.coordinator.success(txid);
        }
        self.metas.retain(|t, _| *t >= txid);
        Ok(())
    }

    fn step(&mut self, out: &mut SpoutOutputCollector<'_>) -> Result<(), String> {
        // Commit the oldest open txid once processed.
        if let Some((&txid, tx)) = self.active.iter_mut().next() {
            if tx.phase == Phase::Processed && txid == self.committed + 1 {
                tx.phase = Phase::Committing;
                let id = BatchId {
                    txid,
                    attempt: tx.attempt,
                };
                let commit = BatchMsg::Commit { id };
                out.emit_stream(commit.stream(), commit.into_values(), Some(msg_id(1, id)));
            }
        }
        // Re-emit failed txids, in order.
        let again: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, t)| t.phase == Phase::Emit)
            .map(|(&t, _)| t)
            .collect();
        for txid in again {
            self.emit_batch(txid, out, true)?;
            if let Some(t) = self.active.get_mut(&txid) {
                t.phase = Phase::Processing;
            }
        }
        // Start a new batch.
        let due = self.last_start.is_none_or(|t| t.elapsed() >= self.interval);
        if self.active.len() < self.max_batches && due {
            let txid = self.next_txid;
            let stored = txid <= self.stored_upto;
            let ready = stored
                || self
                    .sources
                    .iter_mut()
                    .any(|s| s.coordinator.is_ready(txid));
            if ready {
                self.active.insert(
                    txid,
                    Tx {
                        attempt: self.attempt_base,
                        phase: Phase::Processing,
                    },
                );
                self.emit_batch(txid, out, false)?;
                self.next_txid += 1;
                self.last_start = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// Reads where to resume: the last committed txid, and the highest
    /// txid whose metadata is stored (opened before a restart, to be
    /// replayed as it was).
    fn resume(&mut self) -> Result<(), String> {
        let committed = self.read_committed()?;
        let mut stored = committed;
        for s in &self.sources {
            let key = format!("{}/meta", s.name);
            for child in self.store()?.children(&key).map_err(|e| e.to_string())? {
                stored = stored.max(child.parse().unwrap_or(0));
            }
        }
        self.committed = committed;
        self.next_txid = committed + 1;
        self.stored_upto = stored;
        self.broken = false;
        Ok(())
    }
}

fn msg_id(kind: i64, id: BatchId) -> Value {
    Value::List(vec![Value::Int(kind), Value::Int(pack_batch(id))])
}

fn parse_msg_id(v: &Value) -> Option<(i64, BatchId)> {
    match v.as_list()? {
        [k, b] => Some((k.as_i64()?, unpack_batch(b.as_i64()?))),
        _ => None,
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec(v).map_err(|e| e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(b)
        .map_err(|e| format!("stored coordinator metadata does not decode: {e}"))
}

impl Spout for MasterCoordinator {
    fn open(&mut self, context: &TopologyContext) {
        self.store = context.store().cloned();
        let config = context.config();
        self.max_batches = config
            .max_spout_pending
            .unwrap_or(DEFAULT_MAX_BATCHES)
            .max(1);
        self.interval = Duration::from_millis(
            config
                .user
                .get(EMIT_INTERVAL_KEY)
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .max(0) as u64,
        );
        if config.effective_ackers() == 0 {
            tracing::error!(
                "trident needs ackers (topology.acker.executors > 0): batches cannot be tracked"
            );
            self.no_ackers = true;
        }
        self.sources = self
            .spouts
            .iter()
            .map(|(name, s)| Source {
                name: name.clone(),
                kind: s.kind(),
                coordinator: s.coordinator(context),
            })
            .collect();
        match self.resume().and_then(|()| self.next_epoch()) {
            Ok(()) => tracing::info!(committed = self.committed, "trident coordinator resumes"),
            Err(e) => self.reset(e),
        }
    }

    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        if self.no_ackers {
            return;
        }
        if self.broken {
            if Instant::now() < self.retry_at {
                return;
            }
            if let Err(e) = self.resume() {
                self.reset(e);
                return;
            }
        }
        if let Err(e) = self.step(out) {
            out.report_error(&format!("trident coordinator: {e}"));
            // Start over from the store: every open txid is replayed.
            self.reset(e);
        }
    }

    fn ack(&mut self, msg_id: Value) {
        let Some((kind, id)) = parse_msg_id(&msg_id) else {
            return;
        };
        let Some(tx) = self.active.get_mut(&id.txid) else {
            return;
        };
        if tx.attempt != id.attempt {
            return;
        }
        match (kind, tx.phase) {
            (0, Phase::Processing) => tx.phase = Phase::Processed,
            (1, Phase::Committing) => {
                if let Err(e) = self.on_committed(id.txid) {
                    self.reset(format!("recording the commit of txid {}: {e}", id.txid));
                }
            }
            _ => {}
        }
    }

    fn fail(&mut self, msg_id: Value, reason: FailReason) {
        let Some((_, id)) = parse_msg_id(&msg_id) else {
            return;
        };
        match self.active.get(&id.txid) {
            Some(tx) if tx.attempt == id.attempt => {}
            _ => return,
        }
        tracing::warn!(txid = id.txid, attempt = id.attempt, %reason, "trident batch failed; replaying it and every later open batch");
        for (_, tx) in self.active.range_mut(id.txid..) {
            tx.attempt += 1;
            tx.phase = Phase::Emit;
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare_stream(BATCH_STREAM, [BATCH_FIELD, "metas"]);
        d.declare_stream(COMMIT_STREAM, [BATCH_FIELD]);
    }
}

/// The last committed txid of spout `txid_name` and that batch's
/// metadata, as the coordinator stored them (`None`: nothing committed
/// yet). For a [`RecordSpout`](crate::RecordSpout) the metadata is the
/// `[start, end)` record range, so `end` is how many records committed.
///
/// # Errors
/// The store's error, or a message if the stored bytes do not decode.
pub fn committed(
    store: &dyn squall_topology_api::CoordinationStore,
    txid_name: &str,
) -> Result<Option<(u64, Option<Value>)>, String> {
    let Some(b) = store
        .get(&format!("{txid_name}/committed"))
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let txid: u64 = decode(&b)?;
    let meta = match store
        .get(&format!("{txid_name}/meta/{txid}"))
        .map_err(|e| e.to_string())?
    {
        Some(m) => Some(decode(&m)?),
        None => None,
    };
    Ok(Some((txid, meta)))
}
