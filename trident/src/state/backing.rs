//! Where map states keep their entries (Storm's `IBackingMap`): in memory
//! ([`MemoryBackingMap`]) or durably on disk in an embedded `redb`
//! database ([`RedbBackingMap`]).

use super::value::Stored;
use super::StateError;
use crate::tuple::Key;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A store of entries by key (Storm's `IBackingMap`).
pub trait BackingMap: Send {
    /// The entries of `keys`, in order (`None`: absent).
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Stored>>, StateError>;
    /// Writes `entries`; all of them or none when the store is durable.
    fn multi_put(&mut self, entries: &[(Key, Stored)]) -> Result<(), StateError>;
    /// Makes earlier writes durable (called at the end of each commit).
    fn flush(&mut self) -> Result<(), StateError> {
        Ok(())
    }
}

type Shared = Arc<Mutex<FxHashMap<Key, Stored>>>;

fn registry() -> MutexGuard<'static, HashMap<String, Vec<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Vec<Shared>>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn lock(m: &Shared) -> MutexGuard<'_, FxHashMap<Key, Stored>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entries in this process's memory, under a name shared by every
/// partition (Storm's `MemoryMapState`): what LocalCluster tests and
/// examples use, and readable after the topology stops with
/// [`MemoryBackingMap::read_all`]. Lost when the process exits.
pub struct MemoryBackingMap {
    map: Shared,
}

impl MemoryBackingMap {
    /// Partition `partition` of the memory state `name`.
    pub fn open(name: &str, partition: usize) -> Self {
        let mut r = registry();
        let parts = r.entry(name.to_owned()).or_default();
        while parts.len() <= partition {
            parts.push(Shared::default());
        }
        Self {
            map: parts[partition].clone(),
        }
    }

    /// Every entry of every partition of state `name`.
    pub fn read_all(name: &str) -> Vec<(Key, Stored)> {
        let parts = registry().get(name).cloned().unwrap_or_default();
        let mut out = Vec::new();
        for p in &parts {
            out.extend(lock(p).iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// Forgets state `name` (every partition).
    pub fn clear(name: &str) {
        registry().remove(name);
    }
}

impl BackingMap for MemoryBackingMap {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Stored>>, StateError> {
        let m = lock(&self.map);
        Ok(keys.iter().map(|k| m.get(k).cloned()).collect())
    }

    fn multi_put(&mut self, entries: &[(Key, Stored)]) -> Result<(), StateError> {
        let mut m = lock(&self.map);
        for (k, v) in entries {
            m.insert(k.clone(), v.clone());
        }
        Ok(())
    }
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("trident_state");

fn backend(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!("{}: {e}", path.display()))
}

/// Entries in an embedded `redb` database file, one per partition
/// (`<dir>/<name>-<partition>.redb`): each `multi_put` is one durable
/// transaction, so a worker killed at any point leaves every commit whole
/// or absent. Keys and entries are MessagePack (rmp-serde).
pub struct RedbBackingMap {
    db: redb::Database,
    path: PathBuf,
}

impl RedbBackingMap {
    /// The file of partition `partition` of state `name` under `dir`.
    pub fn file(dir: &Path, name: &str, partition: usize) -> PathBuf {
        dir.join(format!("{name}-{partition}.redb"))
    }

    /// Opens (creating) partition `partition` of state `name` under `dir`.
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the file when it cannot be created
    /// or opened (another process holds it, corrupt file).
    pub fn open(dir: &Path, name: &str, partition: usize) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(|e| backend(dir, e))?;
        let path = Self::file(dir, name, partition);
        let db = redb::Database::create(&path).map_err(|e| backend(&path, e))?;
        let w = db.begin_write().map_err(|e| backend(&path, e))?;
        w.open_table(TABLE).map_err(|e| backend(&path, e))?;
        w.commit().map_err(|e| backend(&path, e))?;
        Ok(Self { db, path })
    }

    /// Every entry of every partition file of state `name` under `dir`
    /// (the files must not be open in a running topology).
    ///
    /// # Errors
    /// [`StateError::Backend`] naming a file that cannot be read.
    pub fn read_all(dir: &Path, name: &str) -> Result<Vec<(Key, Stored)>, StateError> {
        let mut out = Vec::new();
        for partition in 0.. {
            let path = Self::file(dir, name, partition);
            if !path.exists() {
                break;
            }
            let db = Self::open(dir, name, partition)?;
            out.extend(db.entries()?);
        }
        Ok(out)
    }

    /// Every entry of this partition.
    ///
    /// # Errors
    /// [`StateError::Backend`] on a read error or an entry that does not decode.
    pub fn entries(&self) -> Result<Vec<(Key, Stored)>, StateError> {
        use redb::ReadableTable;
        let r = self.db.begin_read().map_err(|e| backend(&self.path, e))?;
        let t = r.open_table(TABLE).map_err(|e| backend(&self.path, e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| backend(&self.path, e))? {
            let (k, v) = item.map_err(|e| backend(&self.path, e))?;
            out.push((self.decode(k.value())?, self.decode(v.value())?));
        }
        Ok(out)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, StateError> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| backend(&self.path, format!("entry does not decode: {e}")))
    }

    fn encode<T: serde::Serialize>(&self, v: &T) -> Result<Vec<u8>, StateError> {
        rmp_serde::to_vec(v).map_err(|e| backend(&self.path, e))
    }
}

impl BackingMap for RedbBackingMap {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Stored>>, StateError> {
        let r = self.db.begin_read().map_err(|e| backend(&self.path, e))?;
        let t = r.open_table(TABLE).map_err(|e| backend(&self.path, e))?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let kb = self.encode(k)?;
            match t.get(kb.as_slice()).map_err(|e| backend(&self.path, e))? {
                Some(v) => out.push(Some(self.decode(v.value())?)),
                None => out.push(None),
            }
        }
        Ok(out)
    }

    fn multi_put(&mut self, entries: &[(Key, Stored)]) -> Result<(), StateError> {
        let w = self.db.begin_write().map_err(|e| backend(&self.path, e))?;
        {
            let mut t = w.open_table(TABLE).map_err(|e| backend(&self.path, e))?;
            for (k, v) in entries {
                let (kb, vb) = (self.encode(k)?, self.encode(v)?);
                t.insert(kb.as_slice(), vb.as_slice())
                    .map_err(|e| backend(&self.path, e))?;
            }
        }
        w.commit().map_err(|e| backend(&self.path, e))
    }
}
