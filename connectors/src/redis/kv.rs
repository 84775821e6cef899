//! [`RedisStateProvider`]: stateful bolts' checkpointed `KeyValueState`
//! in Redis (Storm's `RedisKeyValueStateProvider`).

use super::RedisConfig;
use squall_state::store::{
    register_provider_factory, Entry, Namespaces, Prepared, StateError, StateProvider, Store,
};
use squall_topology_api::Config;
use std::sync::{Arc, Mutex};

/// The `topology.state.provider` name of [`RedisStateProvider`].
pub const REDIS_PROVIDER: &str = "redis";

/// State in Redis, three keys per task (namespace): the committed
/// entries in the hash `<prefix><topology>:<namespace>`, the prepared set
/// in `…$prepared` (MessagePack) and the committed txid and its acks in
/// the hash `…$commit`. COMMIT is one `MULTI`/`EXEC`: the prepared
/// changes, the txid and the acks land together or not at all, so a task
/// killed or a server restarted at any point leaves each checkpoint whole
/// or absent (Storm's `RedisKeyValueState` keeps the same three parts).
#[derive(Debug, Clone)]
pub struct RedisStateProvider {
    config: RedisConfig,
    prefix: String,
}

impl RedisStateProvider {
    /// State on `config`'s server, keys under `prefix`.
    pub fn new(config: RedisConfig, prefix: &str) -> Self {
        Self {
            config,
            prefix: prefix.to_owned(),
        }
    }

    /// State on the server at `url` with keys under `squall:state:` (what
    /// `topology.state.provider: redis` uses).
    pub fn from_url(url: &str) -> Self {
        Self::new(RedisConfig::new(url), "squall:state:")
    }

    /// Every committed entry of every task of `topology`, by namespace
    /// (what a finished topology left; Storm's state is read the same way).
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause.
    pub fn read(&self, topology: &str) -> Result<Namespaces, StateError> {
        let base = format!("{}{topology}:", self.prefix);
        let mut con = self.config.connect().map_err(StateError::Backend)?;
        let err = |e: redis::RedisError| StateError::Backend(self.config.error(&e));
        let keys: Vec<String> = {
            let iter: redis::Iter<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(format!("{}*", super::state::glob_escape(&base)))
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(&mut con)
                .map_err(err)?;
            iter.collect::<Result<_, _>>().map_err(err)?
        };
        let mut out = Namespaces::new();
        for key in keys {
            if key.ends_with("$prepared") || key.ends_with("$commit") {
                continue;
            }
            let mut entries: Vec<Entry> = redis::cmd("HGETALL")
                .arg(&key)
                .query(&mut con)
                .map_err(err)?;
            entries.sort();
            out.insert(key[base.len()..].to_owned(), entries);
        }
        Ok(out)
    }

    /// Makes `topology.state.provider: redis` available in this process:
    /// `topology.state.provider.config` is the server's URL
    /// (`redis://host:port/db`, default `redis://127.0.0.1:6379/`). Call it
    /// in the topology's `main` before submitting, so workers (which run
    /// the same `main`) have it too.
    pub fn register() {
        register_provider_factory(
            REDIS_PROVIDER,
            Arc::new(|config: &Config| {
                let url = config
                    .state_provider_config
                    .as_deref()
                    .unwrap_or("redis://127.0.0.1:6379/");
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(StateError::Backend(format!(
                        "topology.state.provider.config {url:?} is not a redis:// URL"
                    )));
                }
                Ok(Arc::new(RedisStateProvider::from_url(url)) as Arc<dyn StateProvider>)
            }),
        );
    }
}

impl StateProvider for RedisStateProvider {
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError> {
        let base = format!("{}{topology}:{namespace}", self.prefix);
        let store = RedisStore {
            config: self.config.clone(),
            prepared_key: format!("{base}$prepared"),
            commit_key: format!("{base}$commit"),
            entries_key: base,
            con: Mutex::new(None),
        };
        store.call(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(Box::new(store))
    }
}

struct RedisStore {
    config: RedisConfig,
    entries_key: String,
    prepared_key: String,
    commit_key: String,
    con: Mutex<Option<redis::Connection>>,
}

impl RedisStore {
    /// Runs `f` on the connection (made if needed; dropped on error).
    fn call<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        let mut guard = self.con.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.config.connect().map_err(StateError::Backend)?);
        }
        let result = f(guard.as_mut().expect("just connected"));
        result.map_err(|e| {
            *guard = None;
            StateError::Backend(self.config.error(&e))
        })
    }

    fn decode_prepared(&self, bytes: &[u8]) -> Result<Prepared, StateError> {
        rmp_serde::from_slice(bytes).map_err(|e| {
            StateError::Backend(format!(
                "{}: {} does not hold a prepared set: {e}",
                self.config.server(),
                self.prepared_key
            ))
        })
    }
}

impl Store for RedisStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.call(|c| redis::cmd("HGET").arg(&self.entries_key).arg(key).query(c))
    }

    fn entries(&self) -> Result<Vec<Entry>, StateError> {
        let mut all: Vec<Entry> =
            self.call(|c| redis::cmd("HGETALL").arg(&self.entries_key).query(c))?;
        all.sort();
        Ok(all)
    }

    fn committed_txid(&self) -> Result<Option<u64>, StateError> {
        self.call(|c| {
            redis::cmd("HGET")
                .arg(&self.commit_key)
                .arg("txid")
                .query(c)
        })
    }

    fn prepared(&self) -> Result<Option<Prepared>, StateError> {
        let bytes: Option<Vec<u8>> =
            self.call(|c| redis::cmd("GET").arg(&self.prepared_key).query(c))?;
        bytes.map(|b| self.decode_prepared(&b)).transpose()
    }

    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError> {
        let bytes = rmp_serde::to_vec(prepared)
            .map_err(|e| StateError::Backend(format!("prepared set does not encode: {e}")))?;
        self.call(|c| {
            redis::cmd("SET")
                .arg(&self.prepared_key)
                .arg(bytes)
                .query::<()>(c)
        })
    }

    fn committed_acks(&self) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        let (txid, acks): (Option<u64>, Option<Vec<u8>>) = self.call(|c| {
            redis::cmd("HMGET")
                .arg(&self.commit_key)
                .arg("txid")
                .arg("acks")
                .query(c)
        })?;
        Ok(txid.map(|t| (t, acks.unwrap_or_default())))
    }

    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        if self.committed_txid()? == Some(txid) {
            return Ok(());
        }
        let Some(prepared) = self.prepared()?.filter(|p| p.txid == txid) else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        let (mut puts, mut dels) = (Vec::new(), Vec::new());
        for (k, v) in &prepared.changes {
            match v {
                Some(v) => puts.push((k.as_slice(), v.as_slice())),
                None => dels.push(k.as_slice()),
            }
        }
        if !puts.is_empty() {
            pipe.cmd("HSET").arg(&self.entries_key).arg(puts).ignore();
        }
        if !dels.is_empty() {
            pipe.cmd("HDEL").arg(&self.entries_key).arg(dels).ignore();
        }
        pipe.cmd("HSET")
            .arg(&self.commit_key)
            .arg("txid")
            .arg(txid)
            .arg("acks")
            .arg(prepared.acks.as_slice())
            .ignore();
        pipe.cmd("DEL").arg(&self.prepared_key).ignore();
        self.call(|c| pipe.query::<()>(c))
    }

    fn rollback(&mut self) -> Result<(), StateError> {
        self.call(|c| redis::cmd("DEL").arg(&self.prepared_key).query::<()>(c))
    }
}
