//! Trident's batch protocol on the wire (Storm's `MasterBatchCoordinator`
//! and `TridentBoltExecutor` streams): the coordinator's batch starts and
//! commits, each stage's per-task tuple counts, and the batch id every
//! Trident tuple carries first. Encoded and decoded here only.

use crate::tuple::BatchId;
use squall_topology_api::{Value, Values};

/// The master batch coordinator's component id.
pub const COORDINATOR: &str = "$mbc";
/// The coordinator's stream of batch starts: `[$batch, metas]`.
pub const BATCH_STREAM: &str = "$batch";
/// The coordinator's stream of commits: `[$batch]`.
pub const COMMIT_STREAM: &str = "$commit";
/// Each stage's direct stream of per-task tuple counts: `[$batch, count]`.
pub const COORD_STREAM: &str = "$coord";
/// The first field of every Trident tuple: the batch, packed by
/// [`pack_batch`].
pub const BATCH_FIELD: &str = "$batch";

/// A batch id as one int: txid in the high 40 bits, attempt in the low 24.
pub fn pack_batch(b: BatchId) -> i64 {
    ((b.txid << 24) | (b.attempt as u64 & 0xff_ffff)) as i64
}

/// The batch id of [`pack_batch`].
pub fn unpack_batch(v: i64) -> BatchId {
    BatchId {
        txid: (v as u64) >> 24,
        attempt: (v as u64 & 0xff_ffff) as u32,
    }
}

/// The batch a Trident tuple belongs to (its first value).
pub fn batch_of(values: &Values) -> Option<BatchId> {
    values.first().and_then(Value::as_i64).map(unpack_batch)
}

/// A data tuple of batch `id`: the batch, then `row`.
pub fn data_values(id: BatchId, row: Values) -> Values {
    let mut values = Values::new();
    values.0.reserve(row.len() + 1);
    values.push(Value::Int(pack_batch(id)));
    values.0.extend(row);
    values
}

/// A control message of the batch protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchMsg {
    /// Coordinator → every stage: batch `id` starts, with each spout's
    /// metadata for it (`$batch`).
    Start {
        /// The batch.
        id: BatchId,
        /// One metadata value per transactional spout.
        metas: Vec<Value>,
    },
    /// Coordinator → every stage: commit batch `id` (`$commit`).
    Commit {
        /// The batch.
        id: BatchId,
    },
    /// Stage task → downstream stage task: it sent that task `count`
    /// tuples of batch `id` (`$coord`, direct).
    Count {
        /// The batch.
        id: BatchId,
        /// Tuples sent.
        count: u64,
    },
}

impl BatchMsg {
    /// The stream it travels on.
    pub fn stream(&self) -> &'static str {
        match self {
            Self::Start { .. } => BATCH_STREAM,
            Self::Commit { .. } => COMMIT_STREAM,
            Self::Count { .. } => COORD_STREAM,
        }
    }

    /// Its values.
    pub fn into_values(self) -> Values {
        match self {
            Self::Start { id, metas } => [Value::Int(pack_batch(id)), Value::List(metas)]
                .into_iter()
                .collect(),
            Self::Commit { id } => std::iter::once(Value::Int(pack_batch(id))).collect(),
            Self::Count { id, count } => [Value::Int(pack_batch(id)), Value::Int(count as i64)]
                .into_iter()
                .collect(),
        }
    }

    /// The control message `values` carry from component `source` on
    /// `stream`; `None` for data tuples and malformed ones.
    pub fn decode(source: &str, stream: &str, values: &Values) -> Option<Self> {
        let id = batch_of(values)?;
        match (source, stream) {
            (COORDINATOR, BATCH_STREAM) => Some(Self::Start {
                id,
                metas: values.get(1)?.as_list()?.to_vec(),
            }),
            (COORDINATOR, COMMIT_STREAM) => Some(Self::Commit { id }),
            (_, COORD_STREAM) => Some(Self::Count {
                id,
                count: values.get(1)?.as_i64()? as u64,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_messages_round_trip() {
        let id = BatchId {
            txid: 1 << 30,
            attempt: 7,
        };
        assert_eq!(unpack_batch(pack_batch(id)), id);
        for (source, msg) in [
            (
                COORDINATOR,
                BatchMsg::Start {
                    id,
                    metas: vec![Value::Int(3), Value::Null],
                },
            ),
            (COORDINATOR, BatchMsg::Commit { id }),
            ("b-1", BatchMsg::Count { id, count: 42 }),
        ] {
            let stream = msg.stream();
            let values = msg.clone().into_values();
            assert_eq!(BatchMsg::decode(source, stream, &values), Some(msg));
        }
        let data = data_values(id, squall_topology_api::values!["w", 1]);
        assert_eq!(batch_of(&data), Some(id));
        assert_eq!(BatchMsg::decode("b-0", "s", &data), None, "a data tuple");
        assert_eq!(batch_of(&Values::new()), None);
    }
}
