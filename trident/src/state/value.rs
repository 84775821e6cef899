//! What a map state stores per key, by semantics (Storm's
//! `TransactionalValue` and `OpaqueValue`).

use super::StateError;
use serde::{Deserialize, Serialize};
use squall_topology_api::Value;

/// A stored value with the txid of the batch that last wrote it (Storm's
/// `TransactionalValue`): a batch whose txid equals it was already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionalValue {
    /// The txid of the last batch applied.
    pub txid: u64,
    /// The value after it.
    pub value: Value,
}

/// A stored value with the one before the last batch (Storm's
/// `OpaqueValue`): a replayed batch (same txid, possibly other tuples) is
/// applied to `prev` instead of `curr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpaqueValue {
    /// The txid of the batch that produced `curr`.
    pub curr_txid: u64,
    /// The value after that batch.
    pub curr: Value,
    /// The value before it (`None`: the key did not exist).
    pub prev: Option<Value>,
}

impl OpaqueValue {
    /// The value a batch with `txid` builds on: `curr` for a later batch (or
    /// none, outside a commit), `prev` for a replay of `curr_txid`.
    ///
    /// # Errors
    /// [`StateError::BehindBatch`] when `txid` is older than `curr_txid`.
    pub fn get(&self, txid: Option<u64>) -> Result<Option<&Value>, StateError> {
        match txid {
            None => Ok(Some(&self.curr)),
            Some(t) if t > self.curr_txid => Ok(Some(&self.curr)),
            Some(t) if t == self.curr_txid => Ok(self.prev.as_ref()),
            Some(t) => Err(StateError::BehindBatch {
                batch: t,
                state: self.curr_txid,
            }),
        }
    }

    /// The value after batch `txid` wrote `value`.
    ///
    /// # Errors
    /// [`StateError::BehindBatch`] when `txid` is older than `curr_txid`.
    pub fn update(&self, txid: u64, value: Value) -> Result<OpaqueValue, StateError> {
        let prev = if txid > self.curr_txid {
            Some(self.curr.clone())
        } else if txid == self.curr_txid {
            self.prev.clone()
        } else {
            return Err(StateError::BehindBatch {
                batch: txid,
                state: self.curr_txid,
            });
        };
        Ok(OpaqueValue {
            curr_txid: txid,
            curr: value,
            prev,
        })
    }
}

/// One stored entry of a backing map: which kind depends on the map's
/// [`Semantics`](super::Semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stored {
    /// Non-transactional: the value alone.
    Plain(Value),
    /// Transactional: value and txid.
    Transactional(TransactionalValue),
    /// Opaque: current, previous and txid.
    Opaque(OpaqueValue),
}

impl Stored {
    /// The value a reader sees (the latest).
    pub fn current(&self) -> &Value {
        match self {
            Stored::Plain(v) => v,
            Stored::Transactional(t) => &t.value,
            Stored::Opaque(o) => &o.curr,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Stored::Plain(_) => "non-transactional",
            Stored::Transactional(_) => "transactional",
            Stored::Opaque(_) => "opaque",
        }
    }
}
