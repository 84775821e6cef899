//! Where stateful bolts' state lives: the [`Store`] trait (a durable map
//! of bytes with a prepared change set, Storm's checkpointed
//! `KeyValueState` backends), its providers ([`MemoryProvider`],
//! [`RedbProvider`]) and [`TxStore`], the two-phase layer over a store.

use squall_topology_api::Config;
mod memory;
mod redb_store;

pub use memory::MemoryProvider;
pub use redb_store::RedbProvider;

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::path::PathBuf;
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

/// One stored entry: key and value bytes.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Every committed entry of a topology's states, by namespace (component
/// and task).
pub type Namespaces = BTreeMap<String, Vec<Entry>>;

/// Changes to keys: `Some(value)` writes, `None` deletes.
pub type Changes = FxHashMap<Vec<u8>, Option<Vec<u8>>>;

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
    fn entries(&self) -> Result<Vec<Entry>, StateError>;
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
    /// The last committed transaction's id and the acks its prepared set
    /// carried, kept until the next commit: a restarted task re-sends
    /// them, as it cannot know whether they left before it stopped.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read.
    fn committed_acks(&self) -> Result<Option<(u64, Vec<u8>)>, StateError>;
    /// Applies the prepared set of `txid`, records `txid` committed and
    /// keeps its acks as the [`committed_acks`](Store::committed_acks), in
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

/// Makes a provider from the topology's configuration (its
/// `topology.state.provider.config`).
pub type ProviderFactory =
    dyn Fn(&Config) -> Result<Arc<dyn StateProvider>, StateError> + Send + Sync;

/// A registered provider: made once, or from each topology's configuration.
#[derive(Clone)]
enum Registered {
    Provider(Arc<dyn StateProvider>),
    Factory(Arc<ProviderFactory>),
}

fn registered() -> MutexGuard<'static, BTreeMap<String, Registered>> {
    static PROVIDERS: OnceLock<Mutex<BTreeMap<String, Registered>>> = OnceLock::new();
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
    registered().insert(name.to_owned(), Registered::Provider(provider));
}

/// Makes providers named `name` with `factory`, from the configuration of
/// the topology that asks for one (so `topology.state.provider.config` can
/// say where the state lives, as in Storm). Register before submitting, as
/// [`register_provider`].
pub fn register_provider_factory(name: &str, factory: Arc<ProviderFactory>) {
    registered().insert(name.to_owned(), Registered::Factory(factory));
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
/// [`register_provider`] or [`register_provider_factory`].
///
/// # Errors
/// [`StateError::UnknownProvider`] for any other name; a factory's error.
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
        other => {
            let found = registered().get(other).cloned();
            match found {
                Some(Registered::Provider(p)) => Ok(Box::new(Shared(p))),
                Some(Registered::Factory(f)) => Ok(Box::new(Shared(f(config)?))),
                None => Err(StateError::UnknownProvider(other.to_owned())),
            }
        }
    }
}

pub(crate) fn apply(
    map: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    changes: impl IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
) {
    for (k, v) in changes {
        match v {
            Some(v) => map.insert(k, v),
            None => map.remove(&k),
        };
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
    cache: FxHashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Writes since the last PREPARE.
    pending: Changes,
    prepared: Option<Prepared>,
    /// The acks of the last commit when the store was opened.
    committed_acks: Option<(u64, Vec<u8>)>,
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
        let committed_acks = store.committed_acks()?;
        Ok(Self {
            store,
            cache: FxHashMap::default(),
            pending: Changes::default(),
            prepared,
            committed_acks,
            error: None,
        })
    }

    /// The current value of `key`: written since the last checkpoint,
    /// else prepared, else committed. A backend error reads as absent and
    /// fails the next [`prepare`](Self::prepare).
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// `read` of the current value of `key` (as [`get`](Self::get),
    /// without copying it).
    pub fn get_with<R>(&mut self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> R {
        if let Some(v) = self.pending.get(key) {
            return read(v.as_deref());
        }
        if let Some(v) = self.prepared.as_ref().and_then(|p| p.changes.get(key)) {
            return read(v.as_deref());
        }
        if !self.cache.contains_key(key) {
            match self.store.get(key) {
                Ok(v) => {
                    self.cache.insert(key.to_vec(), v);
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                    return read(None);
                }
            }
        }
        read(self.cache.get(key).and_then(Option::as_deref))
    }

    /// Records `e` to fail the next [`prepare`](Self::prepare).
    pub fn note_error(&mut self, e: StateError) {
        self.error.get_or_insert(e);
    }

    /// Writes `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    /// Writes `key` with the bytes `write` puts in a buffer (reusing the
    /// buffer of an earlier write of `key` since the last checkpoint).
    pub fn put_with<R>(&mut self, key: &[u8], write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        if let Some(slot) = self.pending.get_mut(key) {
            let buf = slot.get_or_insert_with(Vec::new);
            buf.clear();
            return write(buf);
        }
        let mut buf = Vec::new();
        let r = write(&mut buf);
        self.pending.insert(key.to_vec(), Some(buf));
        r
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Every current entry, in key order.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the store cannot be read.
    pub fn entries(&self) -> Result<Vec<Entry>, StateError> {
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
        changes.extend(self.pending.drain());
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

    /// The last commit's txid and acks as the store was opened (after a
    /// restart, acks that may not have been sent).
    pub fn committed_acks(&self) -> Option<(u64, &[u8])> {
        self.committed_acks
            .as_ref()
            .map(|(txid, acks)| (*txid, acks.as_slice()))
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
