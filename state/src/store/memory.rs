//! [`MemoryProvider`]: state in this process's memory.

use super::{apply, Entry, Namespaces, Prepared, StateError, StateProvider, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

#[derive(Debug, Default)]
struct MemoryData {
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    txid: Option<u64>,
    prepared: Option<Prepared>,
    committed_acks: Option<(u64, Vec<u8>)>,
}

type MemoryCell = Arc<Mutex<MemoryData>>;

fn memory_registry() -> MutexGuard<'static, BTreeMap<(String, String), MemoryCell>> {
    static REGISTRY: OnceLock<Mutex<BTreeMap<(String, String), MemoryCell>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn lock(cell: &MemoryCell) -> MutexGuard<'_, MemoryData> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// State in this process's memory, kept across task restarts within the
/// process and lost with it (Storm's `InMemoryKeyValueStateProvider`):
/// LocalCluster's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryProvider;

impl MemoryProvider {
    /// Every committed entry of every namespace of `topology`, by namespace.
    pub fn read(topology: &str) -> Namespaces {
        memory_registry()
            .iter()
            .filter(|((t, _), _)| t == topology)
            .map(|((_, ns), cell)| {
                let data = lock(cell);
                let entries = data.committed.iter().map(|(k, v)| (k.clone(), v.clone()));
                (ns.clone(), entries.collect())
            })
            .collect()
    }

    /// Forgets every namespace of `topology`.
    pub fn clear(topology: &str) {
        memory_registry().retain(|(t, _), _| t != topology);
    }
}

impl StateProvider for MemoryProvider {
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError> {
        let cell = memory_registry()
            .entry((topology.to_owned(), namespace.to_owned()))
            .or_default()
            .clone();
        Ok(Box::new(MemoryStore(cell)))
    }
}

struct MemoryStore(MemoryCell);

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(lock(&self.0).committed.get(key).cloned())
    }

    fn entries(&self) -> Result<Vec<Entry>, StateError> {
        let data = lock(&self.0);
        Ok(data
            .committed
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn committed_txid(&self) -> Result<Option<u64>, StateError> {
        Ok(lock(&self.0).txid)
    }

    fn prepared(&self) -> Result<Option<Prepared>, StateError> {
        Ok(lock(&self.0).prepared.clone())
    }

    fn committed_acks(&self) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        Ok(lock(&self.0).committed_acks.clone())
    }

    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError> {
        lock(&self.0).prepared = Some(prepared.clone());
        Ok(())
    }

    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        let mut data = lock(&self.0);
        match data.prepared.take() {
            Some(p) if p.txid == txid => {
                apply(&mut data.committed, p.changes);
                data.txid = Some(txid);
                data.committed_acks = Some((txid, p.acks));
            }
            other => data.prepared = other,
        }
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StateError> {
        lock(&self.0).prepared = None;
        Ok(())
    }
}
