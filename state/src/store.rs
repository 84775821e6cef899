//! Where stateful bolts' state lives: the [`Store`] trait (a durable map
//! of bytes with a prepared change set, Storm's checkpointed
//! `KeyValueState` backends), its providers ([`MemoryProvider`],
//! [`RedbProvider`]) and [`TxStore`], the two-phase layer over a store.

use squall_topology_api::Config;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// Why a state operation failed: the backend's message, naming the file
/// or provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backend failed (file, decode, lock).
    #[error("state backend: {0}")]
    Backend(String),
    /// `topology.state.provider` names no provider.
    #[error("topology.state.provider {0:?} is not a state provider (memory, redb, or one registered with register_provider)")]
    UnknownProvider(String),
}

/// Changes to keys: `Some(value)` writes, `None` deletes.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A prepared transaction: its id, its changes, and the acks its COMMIT
/// sends (opaque bytes: the stateful bolt's held tuple ids).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// The transaction id.
    pub txid: u64,
    /// The changes since the last commit.
    pub changes: Changes,
    /// What to ack once it commits.
    pub acks: Vec<u8>,
}

/// A durable byte map with one prepared change set (the backend of
/// [`TxStore`]). Implementations make [`commit`](Store::commit) atomic:
/// after a crash, a transaction's changes are all applied or none.
pub trait Store: Send {
    /// The committed value of `key`.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Every committed entry, in key order.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read.
    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError>;
    /// The last committed transaction id, if any.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read.
    fn committed_txid(&self) -> Result<Option<u64>, StateError>;
    /// The prepared transaction, if any.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read.
    fn prepared(&self) -> Result<Option<Prepared>, StateError>;
    /// Keeps `prepared` durably (replacing any earlier one).
    ///
    /// # Errors
    /// [`StateError::Backend`] when the write fails.
    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError>;
    /// Applies the prepared set of `txid` and records `txid` committed, in
    /// one atomic write; a commit of a txid already committed does nothing.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the write fails.
    fn commit(&mut self, txid: u64) -> Result<(), StateError>;
    /// Drops the prepared set.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the write fails.
    fn rollback(&mut self) -> Result<(), StateError>;
}

/// Opens the store of one task's state (Storm's `StateProvider`).
pub trait StateProvider: Send + Sync {
    /// The store named `namespace` (a component and task) of `topology`.
    ///
    /// # Errors
    /// [`StateError::Backend`] when it cannot be opened.
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError>;
}

fn registered() -> MutexGuard<'static, BTreeMap<String, Arc<dyn StateProvider>>> {
    static PROVIDERS: OnceLock<Mutex<BTreeMap<String, Arc<dyn StateProvider>>>> = OnceLock::new();
    PROVIDERS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Makes `provider` available under `name` for `topology.state.provider`
/// in this process (Storm names a provider class; Squall a registered
/// provider). Register before submitting, in the topology's `main`, so
/// that workers, which run the same `main`, register it too.
pub fn register_provider(name: &str, provider: Arc<dyn StateProvider>) {
    registered().insert(name.to_owned(), provider);
}

struct Shared(Arc<dyn StateProvider>);

impl StateProvider for Shared {
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError> {
        self.0.open(topology, namespace)
    }
}

/// The provider `topology.state.provider` names: `memory`, `redb` (its
/// files under `topology.state.provider.config`, else
/// `<storm.local.dir>/state`), or one registered with
/// [`register_provider`].
///
/// # Errors
/// [`StateError::UnknownProvider`] for any other name.
pub fn provider_for(config: &Config) -> Result<Box<dyn StateProvider>, StateError> {
    match config.state_provider.as_str() {
        "memory" => Ok(Box::new(MemoryProvider)),
        "redb" => {
            let dir = config.state_provider_config.as_ref().map_or_else(
                || PathBuf::from(&config.cluster.local_dir).join("state"),
                PathBuf::from,
            );
            Ok(Box::new(RedbProvider::new(dir)))
        }
        other => match registered().get(other) {
            Some(p) => Ok(Box::new(Shared(p.clone()))),
            None => Err(StateError::UnknownProvider(other.to_owned())),
        },
    }
}

#[derive(Debug, Default)]
struct MemoryData {
    committed: BTreeMap<Vec<u8>, Vec<u8>>,
    txid: Option<u64>,
    prepared: Option<Prepared>,
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
    pub fn read(topology: &str) -> BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>> {
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

    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
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

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, changes: Changes) {
    for (k, v) in changes {
        match v {
            Some(v) => map.insert(k, v),
            None => map.remove(&k),
        };
    }
}

const KV: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("checkpoint");
const TXID: &str = "committed_txid";
const PREPARED: &str = "prepared";

/// State in embedded `redb` files on local disk, one per task
/// (`<dir>/<topology>/<namespace>.redb`): a commit is one durable redb
/// transaction, so a worker killed at any point leaves each checkpoint
/// whole or absent, and the prepared set survives for a COMMIT after a
/// restart.
#[derive(Debug, Clone)]
pub struct RedbProvider {
    dir: PathBuf,
}

impl RedbProvider {
    /// A provider keeping its files under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of `namespace` of `topology`.
    pub fn file(&self, topology: &str, namespace: &str) -> PathBuf {
        self.dir.join(topology).join(format!("{namespace}.redb"))
    }

    /// Every committed entry of every namespace of `topology`, by
    /// namespace (the files must not be open in a running topology).
    ///
    /// # Errors
    /// [`StateError::Backend`] naming a file that cannot be read.
    pub fn read(
        &self,
        topology: &str,
    ) -> Result<BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>>, StateError> {
        let dir = self.dir.join(topology);
        let mut out = BTreeMap::new();
        let listing = std::fs::read_dir(&dir).map_err(|e| backend(&dir, e))?;
        for entry in listing {
            let path = entry.map_err(|e| backend(&dir, e))?.path();
            let Some(ns) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".redb"))
            else {
                continue;
            };
            out.insert(ns.to_owned(), RedbStore::open(&path)?.entries()?);
        }
        Ok(out)
    }
}

impl StateProvider for RedbProvider {
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError> {
        let path = self.file(topology, namespace);
        Ok(Box::new(RedbStore::open(&path)?))
    }
}

fn backend(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("{}: {e}", path.display()))
}

struct RedbStore {
    db: redb::Database,
    path: PathBuf,
}

impl RedbStore {
    fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| backend(dir, e))?;
        }
        let db = redb::Database::create(path).map_err(|e| backend(path, e))?;
        let w = db.begin_write().map_err(|e| backend(path, e))?;
        w.open_table(KV).map_err(|e| backend(path, e))?;
        w.open_table(META).map_err(|e| backend(path, e))?;
        w.commit().map_err(|e| backend(path, e))?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        backend(&self.path, e)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(META).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn set_meta(&self, key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(META).map_err(|e| self.err(e))?;
            match value {
                Some(v) => t.insert(key, v).map(|_| ()),
                None => t.remove(key).map(|_| ()),
            }
            .map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(KV).map_err(|e| self.err(e))?;
        let v = t.get(key).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        use redb::ReadableTable;
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = r.open_table(KV).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn committed_txid(&self) -> Result<Option<u64>, StateError> {
        self.meta(TXID)?
            .map(|b| rmp_serde::from_slice(&b).map_err(|e| self.err(e)))
            .transpose()
    }

    fn prepared(&self) -> Result<Option<Prepared>, StateError> {
        self.meta(PREPARED)?
            .map(|b| rmp_serde::from_slice(&b).map_err(|e| self.err(e)))
            .transpose()
    }

    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError> {
        let bytes = rmp_serde::to_vec(prepared).map_err(|e| self.err(e))?;
        self.set_meta(PREPARED, Some(&bytes))
    }

    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        let Some(Prepared {
            txid: id, changes, ..
        }) = self.prepared()?
        else {
            return Ok(());
        };
        if id != txid {
            return Ok(());
        }
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut kv = w.open_table(KV).map_err(|e| self.err(e))?;
            for (k, v) in &changes {
                match v {
                    Some(v) => kv.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                    None => kv.remove(k.as_slice()).map(|_| ()),
                }
                .map_err(|e| self.err(e))?;
            }
            let mut meta = w.open_table(META).map_err(|e| self.err(e))?;
            let id = rmp_serde::to_vec(&txid).map_err(|e| self.err(e))?;
            meta.insert(TXID, id.as_slice()).map_err(|e| self.err(e))?;
            meta.remove(PREPARED).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    fn rollback(&mut self) -> Result<(), StateError> {
        self.set_meta(PREPARED, None)
    }
}

/// The two-phase layer over a [`Store`]: writes since the last PREPARE
/// stay in memory; PREPARE hands them to the store as the prepared set;
/// COMMIT applies it; ROLLBACK forgets both (Storm's checkpointed
/// `KeyValueState` contract: after ROLLBACK the state is the last
/// committed one).
pub struct TxStore {
    store: Box<dyn Store>,
    /// Committed values read so far (this task is its store's only
    /// writer, so they stay true until its own commits change them).
    cache: HashMap<Vec<u8>, Option<Vec<u8>>>,
    pending: Changes,
    prepared: Option<Prepared>,
    /// The first read error since the last checkpoint: fails the next
    /// PREPARE, so a state that could not be read is never committed.
    error: Option<StateError>,
}

impl TxStore {
    /// The layer over `store`, with its prepared set (a COMMIT may follow
    /// a restart).
    ///
    /// # Errors
    /// [`StateError::Backend`] when the prepared set cannot be read.
    pub fn new(store: Box<dyn Store>) -> Result<Self, StateError> {
        let prepared = store.prepared()?;
        Ok(Self {
            store,
            cache: HashMap::new(),
            pending: Changes::new(),
            prepared,
            error: None,
        })
    }

    /// The current value of `key`: written since the last checkpoint,
    /// else prepared, else committed. A backend error reads as absent and
    /// fails the next [`prepare`](Self::prepare).
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(v) = self.pending.get(key) {
            return v.clone();
        }
        if let Some(v) = self.prepared.as_ref().and_then(|p| p.changes.get(key)) {
            return v.clone();
        }
        if let Some(v) = self.cache.get(key) {
            return v.clone();
        }
        match self.store.get(key) {
            Ok(v) => {
                self.cache.insert(key.to_vec(), v.clone());
                v
            }
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Records `e` to fail the next [`prepare`](Self::prepare).
    pub fn note_error(&mut self, e: StateError) {
        self.error.get_or_insert(e);
    }

    /// Writes `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Every current entry, in key order.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the store cannot be read.
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        let mut map: BTreeMap<Vec<u8>, Vec<u8>> = self.store.entries()?.into_iter().collect();
        if let Some(p) = &self.prepared {
            apply(&mut map, p.changes.clone());
        }
        apply(&mut map, self.pending.clone());
        Ok(map.into_iter().collect())
    }

    /// PREPARE `txid`: the writes so far become the prepared set, kept
    /// durably with `acks`, what its COMMIT is to ack.
    ///
    /// # Errors
    /// A read error since the last checkpoint, or the store's write error;
    /// the checkpoint then fails and rolls back.
    pub fn prepare(&mut self, txid: u64, acks: Vec<u8>) -> Result<(), StateError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut changes = self.prepared.take().map(|p| p.changes).unwrap_or_default();
        changes.append(&mut self.pending);
        let prepared = Prepared {
            txid,
            changes,
            acks,
        };
        let result = self.store.prepare(&prepared);
        self.prepared = Some(prepared);
        result
    }

    /// The prepared transaction's id and acks, if any (after a restart,
    /// what a repeated COMMIT is to ack).
    pub fn prepared_acks(&self) -> Option<(u64, &[u8])> {
        self.prepared.as_ref().map(|p| (p.txid, p.acks.as_slice()))
    }

    /// COMMIT `txid`: applies its prepared set (nothing when it is not the
    /// prepared one, as on a repeated COMMIT).
    ///
    /// # Errors
    /// The store's write error.
    pub fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        self.store.commit(txid)?;
        if let Some(p) = self.prepared.take_if(|p| p.txid == txid) {
            self.cache.extend(p.changes);
        }
        Ok(())
    }

    /// ROLLBACK: forgets every write since the last commit.
    ///
    /// # Errors
    /// The store's write error.
    pub fn rollback(&mut self) -> Result<(), StateError> {
        self.pending.clear();
        self.prepared = None;
        self.error = None;
        self.store.rollback()
    }

    /// The last committed txid.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the store cannot be read.
    pub fn committed_txid(&self) -> Result<Option<u64>, StateError> {
        self.store.committed_txid()
    }
}

#[cfg(test)]
mod tests;
