//! A map whose entries expire in bulk: Storm's `RotatingMap`.

use rustc_hash::FxHashMap;
use std::hash::Hash;

/// Entries live in the newest of `n` buckets; each [`rotate`](Self::rotate)
/// drops the oldest bucket and returns its entries. Rotating every `t / (n -
/// 1)` expires an entry between `t` and `t * n / (n - 1)` after it was last
/// put or touched, with no timer per entry (Storm's `RotatingMap`, used by
/// its acker and spout executors): with two buckets, an entry survives
/// one rotation and comes back from the second.
///
/// The buckets are generations in one hash map rather than `n` maps (as
/// Storm has them), so a lookup hashes once whatever bucket holds the
/// entry; a rotation scans the map once (once per message timeout).
#[derive(Debug)]
pub struct RotatingMap<K, V> {
    /// Each entry with the generation of the bucket it is in.
    map: FxHashMap<K, (u64, V)>,
    /// The newest bucket's generation.
    generation: u64,
    buckets: u64,
}

impl<K: Hash + Eq, V> RotatingMap<K, V> {
    /// A map with `n` buckets (at least 2).
    pub fn new(n: usize) -> Self {
        Self {
            map: FxHashMap::default(),
            generation: 0,
            buckets: n.max(2) as u64,
        }
    }

    /// Inserts into the newest bucket, replacing any older entry.
    pub fn insert(&mut self, k: K, v: V) {
        self.map.insert(k, (self.generation, v));
    }

    /// The entry for `k`, if present.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    /// The entry for `k`, created with `make` in the newest bucket if absent.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let generation = self.generation;
        &mut self.map.entry(k).or_insert_with(|| (generation, make())).1
    }

    /// Removes and returns the entry for `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        if self.map.is_empty() {
            return None;
        }
        self.map.remove(k).map(|(_, v)| v)
    }

    /// Moves the entry for `k` to the newest bucket (restarting its
    /// expiry). Returns whether it was present.
    pub fn touch(&mut self, k: K) -> bool {
        match self.map.get_mut(&k) {
            Some((generation, _)) => {
                *generation = self.generation;
                true
            }
            None => false,
        }
    }

    /// Drops the oldest bucket, returning its entries, and opens a new one.
    pub fn rotate(&mut self) -> FxHashMap<K, V> {
        self.generation += 1;
        // The oldest bucket kept after this rotation.
        let Some(oldest) = (self.generation + 1).checked_sub(self.buckets) else {
            return FxHashMap::default();
        };
        self.map
            .extract_if(|_, (generation, _)| *generation < oldest)
            .map(|(k, (_, v))| (k, v))
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_expires_at_the_second_rotation_of_two_buckets() {
        let mut pending = RotatingMap::new(2);
        pending.insert(7u64, "tuple");
        assert!(pending.rotate().is_empty(), "one rotation: still young");
        assert_eq!(pending.rotate().get(&7), Some(&"tuple"), "two: expired");
    }

    #[test]
    fn entries_expire_after_n_rotations_unless_touched() {
        let mut m = RotatingMap::new(3);
        m.insert(1, "a");
        m.insert(2, "b");
        assert!(m.rotate().is_empty());
        assert!(m.touch(2));
        assert!(m.rotate().is_empty());
        let dead = m.rotate();
        assert_eq!(dead.get(&1), Some(&"a"));
        assert_eq!(m.len(), 1);
        assert_eq!(m.remove(&2), Some("b"));
        assert!(m.is_empty());
    }

    #[test]
    fn get_or_insert_keeps_the_bucket_of_an_existing_entry() {
        let mut m = RotatingMap::new(2);
        *m.get_or_insert_with(7, || 0) ^= 5;
        m.rotate();
        *m.get_or_insert_with(7, || 0) ^= 5;
        assert_eq!(m.get_mut(&7), Some(&mut 0));
        assert_eq!(m.rotate().len(), 1);
    }
}
