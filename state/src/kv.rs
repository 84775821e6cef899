//! [`State`] and the state stateful bolts use, [`KeyValueState`] (Storm's
//! `State` and `KeyValueState`).

use crate::store::{StateError, TxStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Borrow;
use std::marker::PhantomData;

/// A checkpointed state (Storm's `State`): made over a [`TxStore`], which
/// the stateful bolt's executor drives through PREPARE, COMMIT and
/// ROLLBACK.
pub trait State: Send + 'static {
    /// The state over `store`.
    fn from_store(store: TxStore) -> Self;
    /// Its store, for the executor's checkpoint steps.
    fn store(&mut self) -> &mut TxStore;
}

/// A map from `K` to `V`, keys and values serialized with MessagePack
/// (Storm's `KeyValueState`). Writes are kept until the next checkpoint
/// commits them; after a rollback the map is the last committed one.
///
/// Reads do not return errors: a backend that cannot be read answers
/// "absent" and fails the next checkpoint, so such a read is never
/// committed (the tuples behind it replay).
pub struct KeyValueState<K, V> {
    store: TxStore,
    /// The last key encoded (reused: no allocation per read).
    key: Vec<u8>,
    _types: PhantomData<fn(K) -> V>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> KeyValueState<K, V> {
    /// Encodes `key` into `self.key`; `false` (and the next checkpoint
    /// fails) when it does not encode.
    fn encode_key<Q: Serialize + ?Sized>(&mut self, key: &Q) -> bool {
        self.key.clear();
        match rmp_serde::encode::write(&mut self.key, key) {
            Ok(()) => true,
            Err(e) => {
                self.store
                    .note_error(StateError::Backend(format!("key does not encode: {e}")));
                false
            }
        }
    }

    /// Sets `key` to `value`. The key may be given borrowed (`&str` for
    /// `String`), as with `HashMap`: it encodes the same.
    pub fn put<Q>(&mut self, key: &Q, value: &V)
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        if !self.encode_key(key) {
            return;
        }
        let written = self
            .store
            .put_with(&self.key, |buf| rmp_serde::encode::write(buf, value));
        if let Err(e) = written {
            self.store
                .note_error(StateError::Backend(format!("value does not encode: {e}")));
        }
    }

    /// The value of `key`, if any.
    pub fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        if !self.encode_key(key) {
            return None;
        }
        let read = self
            .store
            .get_with(&self.key, |v| v.map(rmp_serde::from_slice::<V>))?;
        match read {
            Ok(v) => Some(v),
            Err(e) => {
                self.store
                    .note_error(StateError::Backend(format!("value does not decode: {e}")));
                None
            }
        }
    }

    /// The value of `key`, or `default`.
    pub fn get_or<Q>(&mut self, key: &Q, default: V) -> V
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.get(key).unwrap_or(default)
    }

    /// Removes `key`.
    pub fn delete<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        if self.encode_key(key) {
            self.store.delete(self.key.clone());
        }
    }

    /// Every entry, in the order of the keys' encoding.
    ///
    /// # Errors
    /// [`StateError::Backend`] when the backend cannot be read or an entry
    /// does not decode.
    pub fn iter(&self) -> Result<Vec<(K, V)>, StateError> {
        self.store
            .entries()?
            .into_iter()
            .map(|(k, v)| decode_entry(&k, &v))
            .collect()
    }
}

/// Decodes one stored entry of a [`KeyValueState<K, V>`].
///
/// # Errors
/// [`StateError::Backend`] when the key or the value does not decode.
pub fn decode_entry<K: DeserializeOwned, V: DeserializeOwned>(
    key: &[u8],
    value: &[u8],
) -> Result<(K, V), StateError> {
    let k = rmp_serde::from_slice(key)
        .map_err(|e| StateError::Backend(format!("key does not decode: {e}")))?;
    let v = rmp_serde::from_slice(value)
        .map_err(|e| StateError::Backend(format!("value does not decode: {e}")))?;
    Ok((k, v))
}

impl<K, V> State for KeyValueState<K, V>
where
    K: Send + 'static,
    V: Send + 'static,
{
    fn from_store(store: TxStore) -> Self {
        Self {
            store,
            key: Vec::new(),
            _types: PhantomData,
        }
    }

    fn store(&mut self) -> &mut TxStore {
        &mut self.store
    }
}
