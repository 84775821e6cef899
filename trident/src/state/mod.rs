//! Trident state (Storm's `trident.state`): the [`State`] a batch is
//! committed to, the [`MapState`] interface with Storm's three semantics
//! ([`Semantics`]), backing maps in memory and on disk, and
//! [`MapStateFactory`], which makes one map per partition.

mod backing;
mod map;
mod value;

pub use backing::{BackingMap, MemoryBackingMap, RedbBackingMap};
pub use map::{NonTransactionalMap, OpaqueMap, SemanticMap, TransactionalMap};
pub use value::{OpaqueValue, Stored, TransactionalValue};

use crate::tuple::Key;
use squall_topology_api::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// Why a state operation failed. A failed commit fails its batch, which is
/// replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// A batch older than the one that last wrote the key: commits came
    /// out of txid order (Storm throws the same).
    #[error("batch {batch} is behind the state's batch {state}: commits must come in txid order")]
    BehindBatch {
        /// The txid being applied.
        batch: u64,
        /// The txid stored with the value.
        state: u64,
    },
    /// The stored entries were written with other semantics.
    #[error("the state holds {stored} values but was opened as {opened}")]
    WrongKind {
        /// The kind of the stored entry.
        stored: &'static str,
        /// The semantics it was opened with.
        opened: &'static str,
    },
    /// The backing store failed (names the file and the cause).
    #[error("state backend: {0}")]
    Backend(String),
}

/// A state batches are committed to (Storm's `State`): `begin_commit` and
/// `commit` bracket the updates of one batch, in txid order.
pub trait State: Send {
    /// Updates for batch `txid` follow.
    fn begin_commit(&mut self, txid: u64) -> Result<(), StateError>;
    /// The updates for batch `txid` are done; make them durable.
    fn commit(&mut self, txid: u64) -> Result<(), StateError>;
}

/// A key-value state (Storm's `MapState`). Keys are the values of the
/// grouping fields.
pub trait MapState: State {
    /// The values of `keys` (`None`: absent), as the batch in commit sees
    /// them (outside a commit: the latest).
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Value>>, StateError>;
    /// Updates each key `i` to `update(i, current)` under the map's
    /// semantics, returning the new values. A transactional map skips keys
    /// already written by this txid in an earlier attempt.
    fn multi_update(
        &mut self,
        keys: &[Key],
        update: &mut dyn FnMut(usize, Option<Value>) -> Value,
    ) -> Result<Vec<Value>, StateError>;
    /// Sets each key to its value.
    fn multi_put(&mut self, keys: &[Key], values: Vec<Value>) -> Result<(), StateError> {
        let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
        self.multi_update(keys, &mut |i, _| values[i].take().unwrap_or_default())
            .map(|_| ())
    }
}

/// How a map state treats a replayed batch (Storm's `StateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Applies it again (at-least-once counts).
    NonTransactional,
    /// Skips a txid already applied; exact with transactional spouts.
    Transactional,
    /// Re-applies a replayed txid to the previous value; exact with
    /// opaque spouts too.
    Opaque,
}

impl Semantics {
    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Semantics::NonTransactional => "non-transactional",
            Semantics::Transactional => "transactional",
            Semantics::Opaque => "opaque",
        }
    }
}

/// Which partition of a state a task holds: its index among the tasks of
/// its component, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePartition {
    /// 0-based partition index.
    pub index: usize,
    /// Number of partitions.
    pub count: usize,
}

/// Makes the state of each partition (Storm's `StateFactory`).
pub trait StateFactory: Send + Sync {
    /// The state partition `partition` commits to.
    ///
    /// # Errors
    /// The backend's error (the task then fails every commit and reports it).
    fn make_state(&self, partition: &StatePartition) -> Result<Box<dyn MapState>, StateError>;
}

/// Where a [`MapStateFactory`] keeps entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process's memory, under a name ([`MemoryBackingMap`]).
    Memory(String),
    /// In `redb` files `<dir>/<name>-<partition>.redb` ([`RedbBackingMap`]).
    Redb {
        /// The directory.
        dir: PathBuf,
        /// The state's name.
        name: String,
    },
}

/// A map state with given [`Semantics`] over a [`Backend`], one map per
/// partition. Readable once the topology stops with
/// [`MapStateFactory::read_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapStateFactory {
    /// Replay semantics.
    pub semantics: Semantics,
    /// Where entries live.
    pub backend: Backend,
}

impl MapStateFactory {
    /// A transactional map in memory named `name` (shared by every task of
    /// the process under that name).
    pub fn memory(name: &str) -> Self {
        Self {
            semantics: Semantics::Transactional,
            backend: Backend::Memory(name.to_owned()),
        }
    }

    /// A transactional map in `redb` files under `dir`, named `name`:
    /// survives worker restarts.
    pub fn redb(dir: impl Into<PathBuf>, name: &str) -> Self {
        Self {
            semantics: Semantics::Transactional,
            backend: Backend::Redb {
                dir: dir.into(),
                name: name.to_owned(),
            },
        }
    }

    /// The same backend with `semantics`.
    pub fn with_semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// Opaque semantics.
    pub fn opaque(self) -> Self {
        self.with_semantics(Semantics::Opaque)
    }

    /// Non-transactional semantics.
    pub fn non_transactional(self) -> Self {
        self.with_semantics(Semantics::NonTransactional)
    }

    /// Every key's latest value, over all partitions.
    ///
    /// # Errors
    /// [`StateError::Backend`] when a `redb` file cannot be read (for
    /// example while a running topology holds it).
    pub fn read_all(&self) -> Result<HashMap<Key, Value>, StateError> {
        let entries = match &self.backend {
            Backend::Memory(name) => MemoryBackingMap::read_all(name),
            Backend::Redb { dir, name } => RedbBackingMap::read_all(dir, name)?,
        };
        Ok(entries
            .into_iter()
            .map(|(k, s)| (k, s.current().clone()))
            .collect())
    }
}

impl StateFactory for MapStateFactory {
    fn make_state(&self, partition: &StatePartition) -> Result<Box<dyn MapState>, StateError> {
        Ok(match &self.backend {
            Backend::Memory(name) => Box::new(SemanticMap::new(
                self.semantics,
                MemoryBackingMap::open(name, partition.index),
            )),
            Backend::Redb { dir, name } => Box::new(SemanticMap::new(
                self.semantics,
                RedbBackingMap::open(dir, name, partition.index)?,
            )),
        })
    }
}
