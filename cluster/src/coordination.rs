//! The [`CoordinationStore`] tasks see, over the cluster-state store.

use crate::memory::MemoryCluster;
use crate::storage::{StateError, StateStorage};
use squall_topology_api::{CoordinationStore, SharedStore, StoreError};
use std::sync::Arc;

/// Where coordination keys live in the cluster-state store (Storm's
/// `transactional.zookeeper.root`).
pub const TRANSACTIONAL_ROOT: &str = "/transactional";

/// A [`CoordinationStore`] over a [`StateStorage`] session: key `a/b` is
/// node `/transactional/a/b`, written unversioned as persistent nodes.
pub struct StorageStore<S> {
    storage: Arc<S>,
}

impl<S> std::fmt::Debug for StorageStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StorageStore({TRANSACTIONAL_ROOT})")
    }
}

impl<S: StateStorage + 'static> StorageStore<S> {
    /// The store over `storage`, shared as a [`SharedStore`].
    pub fn shared(storage: Arc<S>) -> SharedStore {
        Arc::new(Self { storage })
    }
}

/// A store in memory only, for a topology run without a cluster (the
/// testing kit's `complete_topology`).
pub fn memory_store() -> SharedStore {
    StorageStore::shared(Arc::new(MemoryCluster::new().connect()))
}

fn path(key: &str) -> Result<String, StoreError> {
    if key.is_empty() || key.split('/').any(str::is_empty) {
        return Err(StoreError(format!(
            "invalid key {key:?}: keys are non-empty segments joined by '/'"
        )));
    }
    Ok(format!("{TRANSACTIONAL_ROOT}/{key}"))
}

fn err(e: StateError) -> StoreError {
    StoreError(e.to_string())
}

impl<S: StateStorage> CoordinationStore for StorageStore<S> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.storage.get(&path(key)?).map_err(err)?.map(|(d, _)| d))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.storage
            .put(&path(key)?, value)
            .map(|_| ())
            .map_err(err)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.storage.delete_all(&path(key)?).map_err(err)
    }

    fn children(&self, key: &str) -> Result<Vec<String>, StoreError> {
        self.storage.children(&path(key)?).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_nodes_below_the_root() {
        let cluster = MemoryCluster::new();
        let store = StorageStore::shared(Arc::new(cluster.connect()));
        store.put("wc/meta/1", b"a").unwrap();
        store.put("wc/meta/2", b"b").unwrap();
        store.put("wc/meta/2", b"c").unwrap();
        assert_eq!(store.get("wc/meta/2").unwrap(), Some(b"c".to_vec()));
        assert_eq!(store.children("wc/meta").unwrap(), ["1", "2"]);
        assert_eq!(
            cluster
                .connect()
                .get("/transactional/wc/meta/1")
                .unwrap()
                .unwrap()
                .0,
            b"a"
        );
        store.delete("wc").unwrap();
        assert_eq!(store.get("wc/meta/1").unwrap(), None);
        assert!(store.put("a//b", b"").is_err());
        assert!(store.get("").is_err());
    }
}
