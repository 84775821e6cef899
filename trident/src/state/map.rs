//! Storm's three map-state semantics over a [`BackingMap`]:
//! [`NonTransactionalMap`], [`TransactionalMap`] and [`OpaqueMap`]
//! (`trident.state.map`). Writes made during a commit are cached, so an
//! update of a key twice in one commit builds on the first (Storm's
//! `CachedBatchReadsMap`).

use super::backing::BackingMap;
use super::value::{OpaqueValue, Stored, TransactionalValue};
use super::{MapState, Semantics, State, StateError};
use crate::tuple::Key;
use rustc_hash::FxHashMap;
use squall_topology_api::Value;

/// A map state of any [`Semantics`] over a backing map.
pub struct SemanticMap<B> {
    semantics: Semantics,
    backing: B,
    /// The txid of the commit in progress.
    txid: Option<u64>,
    /// Values written during the commit in progress.
    written: FxHashMap<Key, Stored>,
}

/// Values stored as is: a replayed batch is applied again (Storm's
/// `NonTransactionalMap`; at-least-once).
pub type NonTransactionalMap<B> = SemanticMap<B>;
/// Values stored with the txid that wrote them: a replayed txid is
/// skipped (Storm's `TransactionalMap`; needs a transactional spout).
pub type TransactionalMap<B> = SemanticMap<B>;
/// Values stored with the previous value and the txid: a replayed txid is
/// re-applied to the previous value (Storm's `OpaqueMap`; exactly-once
/// with opaque spouts too).
pub type OpaqueMap<B> = SemanticMap<B>;

impl<B: BackingMap> SemanticMap<B> {
    /// A map with `semantics` over `backing`.
    pub fn new(semantics: Semantics, backing: B) -> Self {
        Self {
            semantics,
            backing,
            txid: None,
            written: FxHashMap::default(),
        }
    }

    /// The backing map.
    pub fn backing(&self) -> &B {
        &self.backing
    }

    /// For each key: the stored entry and whether this commit wrote it.
    fn read(&mut self, keys: &[Key]) -> Result<Vec<(Option<Stored>, bool)>, StateError> {
        let stored = self.backing.multi_get(keys)?;
        Ok(keys
            .iter()
            .zip(stored)
            .map(|(k, s)| match self.written.get(k) {
                Some(w) => (Some(w.clone()), true),
                None => (s, false),
            })
            .collect())
    }

    fn check_kind(&self, s: &Stored) -> Result<(), StateError> {
        let ok = matches!(
            (self.semantics, s),
            (Semantics::NonTransactional, Stored::Plain(_))
                | (Semantics::Transactional, Stored::Transactional(_))
                | (Semantics::Opaque, Stored::Opaque(_))
        );
        if ok {
            Ok(())
        } else {
            Err(StateError::WrongKind {
                stored: s.kind(),
                opened: self.semantics.name(),
            })
        }
    }

    /// The value a batch or reader sees for a stored entry.
    fn visible(&self, s: &Stored, written_now: bool) -> Result<Option<Value>, StateError> {
        self.check_kind(s)?;
        Ok(match s {
            Stored::Plain(v) => Some(v.clone()),
            Stored::Transactional(t) => {
                if let Some(txid) = self.txid {
                    if t.txid > txid {
                        return Err(StateError::BehindBatch {
                            batch: txid,
                            state: t.txid,
                        });
                    }
                }
                Some(t.value.clone())
            }
            Stored::Opaque(o) if written_now => Some(o.curr.clone()),
            Stored::Opaque(o) => o.get(self.txid)?.cloned(),
        })
    }
}

impl<B: BackingMap> State for SemanticMap<B> {
    fn begin_commit(&mut self, txid: u64) -> Result<(), StateError> {
        self.txid = Some(txid);
        self.written.clear();
        Ok(())
    }

    fn commit(&mut self, _txid: u64) -> Result<(), StateError> {
        self.txid = None;
        self.written.clear();
        self.backing.flush()
    }
}

impl<B: BackingMap> MapState for SemanticMap<B> {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Value>>, StateError> {
        let read = self.read(keys)?;
        read.iter()
            .map(|(s, w)| match s {
                None => Ok(None),
                Some(s) => self.visible(s, *w),
            })
            .collect()
    }

    fn multi_update(
        &mut self,
        keys: &[Key],
        update: &mut dyn FnMut(usize, Option<Value>) -> Value,
    ) -> Result<Vec<Value>, StateError> {
        let read = self.read(keys)?;
        let mut out = Vec::with_capacity(keys.len());
        let mut puts = Vec::with_capacity(keys.len());
        for (i, (stored, written_now)) in read.into_iter().enumerate() {
            if let Some(s) = &stored {
                self.check_kind(s)?;
            }
            let new = match (self.semantics, stored) {
                (Semantics::NonTransactional, s) => {
                    let v = update(i, s.map(|s| s.current().clone()));
                    Stored::Plain(v)
                }
                (Semantics::Transactional, Some(Stored::Transactional(t)))
                    if Some(t.txid) == self.txid && !written_now =>
                {
                    // This txid was applied before: skip.
                    out.push(t.value.clone());
                    continue;
                }
                (Semantics::Transactional, s) => {
                    let base = match &s {
                        Some(s) => self.visible(s, written_now)?,
                        None => None,
                    };
                    Stored::Transactional(TransactionalValue {
                        txid: self.txid.unwrap_or(0),
                        value: update(i, base),
                    })
                }
                (Semantics::Opaque, Some(Stored::Opaque(o))) => {
                    let base = if written_now {
                        Some(o.curr.clone())
                    } else {
                        o.get(self.txid)?.cloned()
                    };
                    let v = update(i, base);
                    Stored::Opaque(o.update(self.txid.unwrap_or(0), v)?)
                }
                (Semantics::Opaque, _) => Stored::Opaque(OpaqueValue {
                    curr_txid: self.txid.unwrap_or(0),
                    curr: update(i, None),
                    prev: None,
                }),
            };
            out.push(new.current().clone());
            puts.push((keys[i].clone(), new));
        }
        self.backing.multi_put(&puts)?;
        for (k, s) in puts {
            self.written.insert(k, s);
        }
        Ok(out)
    }
}
