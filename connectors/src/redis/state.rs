//! Trident map states in Redis (Storm's `RedisMapState`): one Redis string
//! per key, `<prefix><key>`, holding the entry as JSON with the txid (and
//! the previous value, opaque) beside the value, so a replayed batch is
//! applied once. Reads are one `MGET`, writes one `MULTI`/`EXEC` of `SET`s.

use super::RedisConfig;
use squall_topology_api::Value;
use squall_trident::state::{SemanticMap, Stored};
use squall_trident::{Key, MapState, Semantics, StateError, StateFactory};
use std::collections::HashMap;

/// The text of `key` under the prefix: a single text value as it is
/// (unless it starts with `[`), anything else as a JSON array.
pub fn encode_key(key: &Key) -> String {
    match &key.0[..] {
        [Value::Str(s)] if !s.starts_with('[') => s.to_string(),
        _ => serde_json::to_string(&key.0).unwrap_or_default(),
    }
}

/// The key [`encode_key`] made `text` from.
pub fn decode_key(text: &str) -> Key {
    if text.starts_with('[') {
        if let Ok(values) = serde_json::from_str(text) {
            return Key(values);
        }
    }
    Key(squall_topology_api::values![text])
}

/// Entries of a map state in Redis, under `prefix`. Connects on first use
/// and again after any error, so a restarted server only fails the
/// commit in progress (its batch replays).
pub struct RedisBackingMap {
    config: RedisConfig,
    prefix: String,
    con: Option<redis::Connection>,
}

impl RedisBackingMap {
    /// Entries of `config`'s server under `prefix`; connects now.
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause.
    pub fn open(config: RedisConfig, prefix: &str) -> Result<Self, StateError> {
        let mut map = Self {
            config,
            prefix: prefix.to_owned(),
            con: None,
        };
        map.connection()?;
        Ok(map)
    }

    fn connection(&mut self) -> Result<&mut redis::Connection, StateError> {
        if self.con.is_none() {
            self.con = Some(self.config.connect().map_err(StateError::Backend)?);
        }
        Ok(self.con.as_mut().expect("just connected"))
    }

    /// Runs `f` on the connection; drops it on error.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        let result = f(self.connection()?);
        result.map_err(|e| {
            self.con = None;
            StateError::Backend(self.config.error(&e))
        })
    }

    fn redis_key(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, encode_key(key))
    }

    /// Every entry under the prefix (`SCAN`), for reading results.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the server fails or an entry does not
    /// decode.
    pub fn entries(&mut self) -> Result<Vec<(Key, Stored)>, StateError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let keys: Vec<String> = self.call(|c| {
            let iter: redis::Iter<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .clone()
                .iter(c)?;
            iter.collect()
        })?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let texts: Vec<Option<String>> =
                self.call(|c| redis::cmd("MGET").arg(chunk).query(c))?;
            for (k, text) in chunk.iter().zip(texts) {
                if let Some(text) = text {
                    let key = decode_key(&k[self.prefix.len()..]);
                    out.push((key, self.decode(k, &text)?));
                }
            }
        }
        Ok(out)
    }

    fn decode(&self, key: &str, text: &str) -> Result<Stored, StateError> {
        serde_json::from_str(text).map_err(|e| {
            StateError::Backend(format!(
                "{}: key {key} does not hold a state entry: {e}",
                self.config.server()
            ))
        })
    }
}

pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl squall_trident::state::BackingMap for RedisBackingMap {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Stored>>, StateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rkeys: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let texts: Vec<Option<String>> = self.call(|c| redis::cmd("MGET").arg(&rkeys).query(c))?;
        rkeys
            .iter()
            .zip(texts)
            .map(|(k, t)| t.map(|t| self.decode(k, &t)).transpose())
            .collect()
    }

    fn multi_put(&mut self, entries: &[(Key, Stored)]) -> Result<(), StateError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in entries {
            let text = serde_json::to_string(v)
                .map_err(|e| StateError::Backend(format!("entry does not encode: {e}")))?;
            pipe.set(self.redis_key(k), text).ignore();
        }
        self.call(|c| pipe.query::<()>(c))
    }
}

/// A Trident map state in Redis with Storm's [`Semantics`] (Storm's
/// `RedisMapState` with `RedisDataType.STRING`): every partition writes
/// its keys as `<prefix><key>` on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisMapState {
    /// The server.
    pub config: RedisConfig,
    /// Prepended to every key (default `squall:`).
    pub prefix: String,
    /// Replay semantics (default transactional).
    pub semantics: Semantics,
}

impl RedisMapState {
    /// A transactional state on `config`'s server with keys under `prefix`.
    pub fn new(config: RedisConfig, prefix: &str) -> Self {
        Self {
            config,
            prefix: prefix.to_owned(),
            semantics: Semantics::Transactional,
        }
    }

    /// The same state with `semantics`.
    pub fn with_semantics(mut self, semantics: Semantics) -> Self {
        self.semantics = semantics;
        self
    }

    /// Every key's latest value.
    ///
    /// # Errors
    /// [`StateError::Backend`] naming the server and the cause.
    pub fn read_all(&self) -> Result<HashMap<Key, Value>, StateError> {
        let mut map = RedisBackingMap::open(self.config.clone(), &self.prefix)?;
        Ok(map
            .entries()?
            .into_iter()
            .map(|(k, s)| (k, s.current().clone()))
            .collect())
    }
}

impl StateFactory for RedisMapState {
    fn make_state(
        &self,
        _partition: &squall_trident::state::StatePartition,
    ) -> Result<Box<dyn MapState>, StateError> {
        let map = RedisBackingMap::open(self.config.clone(), &self.prefix)?;
        Ok(Box::new(SemanticMap::new(self.semantics, map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use squall_topology_api::values;

    #[test]
    fn keys_read_back_as_written() {
        for key in [
            Key(values!["the"]),
            Key(values!["[not json"]),
            Key(values!["[1]"]),
            Key(values!["AA", 2015]),
            Key(values![7]),
        ] {
            assert_eq!(decode_key(&encode_key(&key)), key, "{key:?}");
        }
        assert_eq!(encode_key(&Key(values!["the"])), "the");
    }

    proptest! {
        #[test]
        fn any_text_key_reads_back(s in ".*") {
            let key = Key(values![s.as_str()]);
            prop_assert_eq!(decode_key(&encode_key(&key)), key);
        }
    }
}
