//! [`HeldAcks`]: the acks a stateful task holds for a checkpoint.

use squall_topology_api::MessageId;
use std::time::Instant;

/// Acks held until a checkpoint commits, as `(root, value)` pairs, a pair
/// XOR-combined with the one before when both are of the same tree (the
/// XOR algorithm allows it, see Apache Storm `Acker.java`): a bolt's input
/// comes in runs of one tree (a line's words), so a checkpoint sends and
/// stores about one ack per tree rather than one per tuple. A pair's value
/// is the same however often it is sent, as `ack_once` needs.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    pairs: Vec<(u64, u64)>,
    /// When the first of them was held: trees held longer than a quarter
    /// of the message timeout get their timeouts restarted.
    since: Option<Instant>,
}

impl HeldAcks {
    /// Holds the ack of a tuple whose ack id is `id`.
    pub(crate) fn add(&mut self, id: &MessageId) {
        if id.anchors().is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        for &(root, val) in id.anchors() {
            match self.pairs.last_mut() {
                Some((r, v)) if *r == root => *v ^= val,
                _ => self.pairs.push((root, val)),
            }
        }
    }

    /// Moves every ack of `other` here.
    pub(crate) fn append(&mut self, other: &mut HeldAcks) {
        if let Some(t) = other.since.take() {
            self.since = Some(self.since.map_or(t, |s| s.min(t)));
        }
        self.pairs.append(&mut other.pairs);
    }

    /// How many pairs.
    pub(crate) fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the oldest held ack is older than `age`.
    pub(crate) fn older_than(&self, age: std::time::Duration) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= age)
    }

    /// The `(root, value)` pairs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.pairs.iter().copied()
    }

    /// Empties it, returning the `(root, value)` pairs.
    pub(crate) fn take(&mut self) -> Vec<(u64, u64)> {
        self.since = None;
        std::mem::take(&mut self.pairs)
    }
}

/// The bytes kept with a prepared state: the pairs of `sets`.
pub(crate) fn encode<'a>(sets: impl IntoIterator<Item = &'a HeldAcks>) -> Vec<u8> {
    let pairs: Vec<(u64, u64)> = sets.into_iter().flat_map(HeldAcks::iter).collect();
    rmp_serde::to_vec(&pairs).unwrap_or_default()
}

/// The pairs [`encode`] wrote (none when the bytes do not decode).
pub(crate) fn decode(bytes: &[u8]) -> Vec<(u64, u64)> {
    rmp_serde::from_slice(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_tree_combine_and_survive_encoding() {
        let mut h = HeldAcks::default();
        h.add(&MessageId::single(7, 0b001));
        h.add(&MessageId::single(7, 0b010));
        h.add(&MessageId::single(9, 0b011));
        h.add(&MessageId::untracked());
        h.add(&MessageId::single(7, 0b100));
        assert_eq!(decode(&encode([&h])), [(7, 0b011), (9, 0b011), (7, 0b100)]);
        let mut later = HeldAcks::default();
        later.add(&MessageId::single(9, 0b01));
        h.append(&mut later);
        assert_eq!(later.len(), 0);
        assert_eq!(h.take(), [(7, 0b011), (9, 0b011), (7, 0b100), (9, 0b01)]);
        assert_eq!(h.len(), 0);
    }
}
