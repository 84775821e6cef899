//! [`CoordinationStore`]: a small durable key-value store shared by the
//! tasks of a cluster, for coordinator metadata (Storm's
//! `TransactionalState`, kept in ZooKeeper under `/transactional`).

use std::fmt;
use std::sync::Arc;

/// Why a [`CoordinationStore`] operation failed: the store's own message
/// (ZooKeeper unreachable, session expired, bad key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coordination store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// A durable tree of small byte values shared by every task of every
/// topology of a cluster: ZooKeeper in a cluster (nodes under
/// `/transactional`, Storm's `transactional.zookeeper.root`), memory in
/// `LocalCluster`. Keys are relative paths of non-empty `/`-separated
/// segments (`"wordcount/meta/12"`). Trident's batch coordinator keeps its
/// per-txid metadata here so that a restarted coordinator resumes.
///
/// Values are meant to be small (ZooKeeper caps a node at 1 MiB). Every
/// method blocks until the store answered and may be called from any
/// thread.
pub trait CoordinationStore: Send + Sync + fmt::Debug {
    /// The value at `key`, or `None` if absent.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Creates or overwrites `key`.
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Deletes `key` and every key below it; absent is fine.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// The names of the keys directly below `key`, sorted.
    fn children(&self, key: &str) -> Result<Vec<String>, StoreError>;
}

/// A shared handle on a [`CoordinationStore`].
pub type SharedStore = Arc<dyn CoordinationStore>;
