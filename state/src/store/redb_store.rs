//! [`RedbProvider`]: state in embedded redb files.

use super::{Entry, Namespaces, Prepared, StateError, StateProvider, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const KV: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("checkpoint");
const TXID: &str = "committed_txid";
const PREPARED: &str = "prepared";
const COMMITTED_ACKS: &str = "committed_acks";

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
    pub fn read(&self, topology: &str) -> Result<Namespaces, StateError> {
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

    fn entries(&self) -> Result<Vec<Entry>, StateError> {
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

    fn committed_acks(&self) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        self.meta(COMMITTED_ACKS)?
            .map(|b| rmp_serde::from_slice(&b).map_err(|e| self.err(e)))
            .transpose()
    }

    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError> {
        let bytes = rmp_serde::to_vec(prepared).map_err(|e| self.err(e))?;
        self.set_meta(PREPARED, Some(&bytes))
    }

    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        let Some(Prepared {
            txid: id,
            changes,
            acks,
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
            let acks = rmp_serde::to_vec(&(txid, acks)).map_err(|e| self.err(e))?;
            meta.insert(COMMITTED_ACKS, acks.as_slice())
                .map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    fn rollback(&mut self) -> Result<(), StateError> {
        self.set_meta(PREPARED, None)
    }
}
