//! Reading state from a stream (Storm's `QueryFunction` and `MapGet`).

use crate::state::{MapState, StateError};
use crate::tuple::{Key, TridentCollector, TridentTuple};
use squall_topology_api::Value;

/// Looks up state for a batch's tuples (Storm's `QueryFunction`): one
/// `batch_retrieve` for all the batch's keys on a partition, then
/// `execute` per tuple with its result, emitting fields that are appended
/// to the tuple.
pub trait QueryFunction: Send + Sync {
    /// The results for `keys` (the selected fields of each tuple).
    fn batch_retrieve(
        &self,
        state: &mut dyn MapState,
        keys: &[Key],
    ) -> Result<Vec<Value>, StateError>;
    /// Emits the fields appended to `tuple` given its `result`.
    fn execute(&self, tuple: &TridentTuple, result: &Value, out: &mut TridentCollector);
}

/// The value stored under each key, null if absent (Storm's `MapGet`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MapGet;

impl QueryFunction for MapGet {
    fn batch_retrieve(
        &self,
        state: &mut dyn MapState,
        keys: &[Key],
    ) -> Result<Vec<Value>, StateError> {
        Ok(state
            .multi_get(keys)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn execute(&self, _tuple: &TridentTuple, result: &Value, out: &mut TridentCollector) {
        out.emit(std::iter::once(result.clone()).collect());
    }
}
