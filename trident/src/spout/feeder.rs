//! [`FeederSpout`]: batches handed in by the test (Storm's
//! `FeederBatchSpout`).

use super::{meta_range, range_meta, BatchCoordinator, Emitter, SpoutKind, TransactionalSpout};
use crate::tuple::{BatchId, TridentCollector};
use squall_topology_api::{ExecuteError, Fields, TopologyContext, Value, Values};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Fed {
    /// Every batch fed, kept for replays.
    batches: Vec<Arc<Vec<Values>>>,
    /// How many fed batches have committed.
    committed: usize,
}

/// A transactional spout whose batches are fed by the caller, one
/// [`feed`](Self::feed) per batch (an empty feed is an empty batch):
/// the testing kit of `LocalCluster`, as Storm's `FeederBatchSpout`.
/// Clones share the batches; it works within one process only.
#[derive(Clone)]
pub struct FeederSpout {
    fields: Fields,
    fed: Arc<(Mutex<Fed>, Condvar)>,
}

impl FeederSpout {
    /// A feeder of tuples with `fields`.
    pub fn new(fields: impl Into<Fields>) -> Self {
        Self {
            fields: fields.into(),
            fed: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Fed> {
        self.fed.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one batch of tuples.
    pub fn feed(&self, rows: Vec<Values>) {
        self.lock().batches.push(Arc::new(rows));
    }

    /// Waits until every batch fed so far has committed; false if
    /// `timeout` passed first.
    pub fn wait_committed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut fed = self.lock();
        while fed.committed < fed.batches.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            fed = self
                .fed
                .1
                .wait_timeout(fed, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl TransactionalSpout for FeederSpout {
    fn output_fields(&self) -> Fields {
        self.fields.clone()
    }

    fn kind(&self) -> SpoutKind {
        SpoutKind::Transactional
    }

    fn coordinator(&self, _context: &TopologyContext) -> Box<dyn BatchCoordinator> {
        Box::new(FeederCoordinator {
            feeder: self.clone(),
            next: 0,
            ends: HashMap::new(),
        })
    }

    fn emitter(&self, _context: &TopologyContext) -> Box<dyn Emitter> {
        Box::new(self.clone())
    }
}

struct FeederCoordinator {
    feeder: FeederSpout,
    /// The first fed batch not yet given a txid.
    next: u64,
    /// The end of each open txid's range.
    ends: HashMap<u64, u64>,
}

impl BatchCoordinator for FeederCoordinator {
    fn initialize_transaction(&mut self, txid: u64, prev: Option<&Value>) -> Value {
        let start = prev.and_then(meta_range).map_or(0, |(_, e)| e);
        let available = self.feeder.lock().batches.len() as u64;
        let end = if start < available { start + 1 } else { start };
        self.next = end;
        self.ends.insert(txid, end);
        range_meta(start, end)
    }

    fn is_ready(&mut self, _txid: u64) -> bool {
        (self.feeder.lock().batches.len() as u64) > self.next
    }

    fn success(&mut self, txid: u64) {
        if let Some(end) = self.ends.remove(&txid) {
            let mut fed = self.feeder.lock();
            fed.committed = fed.committed.max(end as usize);
            self.feeder.fed.1.notify_all();
        }
        self.ends.retain(|t, _| *t > txid);
    }
}

impl Emitter for FeederSpout {
    fn emit_batch(
        &mut self,
        _batch: BatchId,
        meta: &Value,
        task_index: usize,
        tasks: usize,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        let (start, end) = meta_range(meta).ok_or("feeder: malformed batch metadata")?;
        let batches: Vec<_> = {
            let fed = self.lock();
            (start..end)
                .filter_map(|i| fed.batches.get(i as usize).cloned())
                .collect()
        };
        for b in batches {
            for (i, row) in b.iter().enumerate() {
                if i % tasks == task_index {
                    out.emit(row.clone());
                }
            }
        }
        Ok(())
    }
}
