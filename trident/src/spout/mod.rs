//! Trident spouts (Storm's `ITridentSpout`): a [`BatchCoordinator`],
//! run once by the master batch coordinator, decides each batch's
//! metadata; an [`Emitter`] per task emits the batch that metadata names.
//!
//! A **transactional** spout's batch for a txid is fixed by its metadata,
//! which the master coordinator stores in the cluster's coordination store
//! before the batch is first emitted and reuses for every replay, even
//! after a restart: the same txid always yields the same tuples. An
//! **opaque** spout's metadata is decided again at each attempt (from the
//! previous txid's), so a replay may differ; pair it with opaque state.

mod feeder;
mod records;

pub use feeder::FeederSpout;
pub use records::{csv_value, Progress, RecordSpout};

use crate::tuple::{BatchId, TridentCollector};
use squall_topology_api::{ExecuteError, Fields, TopologyContext, Value};

/// Whether a replayed txid re-emits the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoutKind {
    /// Same txid, same batch (metadata stored and reused).
    Transactional,
    /// A replay may carry other tuples (metadata decided per attempt).
    Opaque,
}

/// A source of batches (Storm's `ITridentSpout`). Shared by the tasks of
/// one process; [`coordinator`](Self::coordinator) and
/// [`emitter`](Self::emitter) make the per-task parts.
pub trait TransactionalSpout: Send + Sync + 'static {
    /// The fields of the tuples it emits.
    fn output_fields(&self) -> Fields;
    /// Transactional or opaque.
    fn kind(&self) -> SpoutKind {
        SpoutKind::Transactional
    }
    /// The coordinator, made once in the master coordinator's task.
    fn coordinator(&self, context: &TopologyContext) -> Box<dyn BatchCoordinator>;
    /// An emitter, made once per emitter task.
    fn emitter(&self, context: &TopologyContext) -> Box<dyn Emitter>;
}

/// Decides batches (Storm's `ITridentSpout.BatchCoordinator`).
pub trait BatchCoordinator: Send {
    /// The metadata of batch `txid`, given the previous txid's (`None` for
    /// the first batch ever). Small: it is stored in ZooKeeper.
    fn initialize_transaction(&mut self, txid: u64, prev: Option<&Value>) -> Value;
    /// Whether a batch `txid` is worth starting now; the coordinator asks
    /// again later when not (no empty batches are made for an idle source).
    fn is_ready(&mut self, _txid: u64) -> bool {
        true
    }
    /// Batch `txid` committed.
    fn success(&mut self, _txid: u64) {}
}

/// Emits batches (Storm's `ITridentSpout.Emitter`).
pub trait Emitter: Send {
    /// Emits this task's share of the batch `meta` describes: task
    /// `task_index` of `tasks`. An `Err` fails the batch (it is replayed).
    fn emit_batch(
        &mut self,
        batch: BatchId,
        meta: &Value,
        task_index: usize,
        tasks: usize,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError>;
}

/// A batch as a range `[start, end)` of record numbers, the metadata of
/// [`RecordSpout`] and [`FeederSpout`].
pub(crate) fn range_meta(start: u64, end: u64) -> Value {
    Value::List(vec![Value::Int(start as i64), Value::Int(end as i64)])
}

/// The `[start, end)` of a [`range_meta`], or `None` if malformed.
pub(crate) fn meta_range(meta: &Value) -> Option<(u64, u64)> {
    match meta.as_list()? {
        [s, e] => Some((s.as_i64()? as u64, e.as_i64()? as u64)),
        _ => None,
    }
}
