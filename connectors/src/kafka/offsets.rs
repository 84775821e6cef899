//! [`OffsetManager`]: which offsets of one partition a spout may commit.

use std::collections::BTreeSet;

/// The offsets of one partition between a spout and Kafka (Storm's
/// `OffsetManager`): those emitted and not yet committed, those acked,
/// and the committed offset — the next offset to read after a restart,
/// as Kafka's consumer-group commit means it.
///
/// An offset becomes committable once every emitted offset below it was
/// acked; offsets never emitted (compacted or deleted from the topic, or
/// dropped by a translator) do not hold the commit back. So a restarted
/// spout re-reads at most what was not yet acked: at-least-once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetManager {
    emitted: BTreeSet<i64>,
    acked: BTreeSet<i64>,
    committed: i64,
    has_committed: bool,
    latest_emitted: Option<i64>,
}

impl OffsetManager {
    /// A partition whose reading starts at `initial_fetch_offset`.
    pub fn new(initial_fetch_offset: i64) -> Self {
        Self {
            emitted: BTreeSet::new(),
            acked: BTreeSet::new(),
            committed: initial_fetch_offset,
            has_committed: false,
            latest_emitted: None,
        }
    }

    /// Records that the record at `offset` was emitted.
    pub fn emitted(&mut self, offset: i64) {
        self.emitted.insert(offset);
        self.latest_emitted = Some(self.latest_emitted.map_or(offset, |o| o.max(offset)));
    }

    /// Records that the record at `offset` was acked (or given up on).
    pub fn acked(&mut self, offset: i64) {
        self.acked.insert(offset);
    }

    /// Whether `offset` was emitted and is not yet committed.
    pub fn is_emitted(&self, offset: i64) -> bool {
        self.emitted.contains(&offset)
    }

    /// Acked offsets not yet committed.
    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    /// Whether `offset` was acked and is not yet committed.
    pub fn is_acked(&self, offset: i64) -> bool {
        self.acked.contains(&offset)
    }

    /// Emitted offsets not yet committed (what `max.uncommitted.offsets`
    /// bounds).
    pub fn uncommitted(&self) -> usize {
        self.emitted.len()
    }

    /// The `n`th (from 1) emitted offset not yet committed, in offset
    /// order: a partition at its uncommitted limit may still re-emit
    /// failed records up to this offset.
    pub fn nth_uncommitted(&self, n: usize) -> Option<i64> {
        self.emitted.iter().nth(n.checked_sub(1)?).copied()
    }

    /// The offset to commit now, if it moved (Storm's
    /// `findNextCommitOffset`): one past the longest run of acked offsets
    /// starting at the committed offset, stepping over offsets that were
    /// never emitted. `None` when nothing new can be committed.
    pub fn next_commit_offset(&self) -> Option<i64> {
        let mut next = self.committed;
        let mut found = false;
        for &offset in &self.acked {
            if offset < next {
                continue;
            }
            if offset > next {
                // `next` was emitted and is not acked: wait for it. Never
                // emitted: skip to the next emitted offset if this is it.
                if self.emitted.contains(&next)
                    || self.emitted.range(next..).next() != Some(&offset)
                {
                    break;
                }
            }
            found = true;
            next = offset + 1;
        }
        found.then_some(next)
    }

    /// Records that `offset` was committed to Kafka: offsets below it are
    /// forgotten. Returns how many acked offsets it covered.
    pub fn commit(&mut self, offset: i64) -> usize {
        self.has_committed = true;
        self.committed = offset;
        let before = self.acked.len();
        self.acked = self.acked.split_off(&offset);
        self.emitted = self.emitted.split_off(&offset);
        before - self.acked.len()
    }

    /// The committed offset: where reading resumes after a restart.
    pub fn committed_offset(&self) -> i64 {
        self.committed
    }

    /// Whether this partition committed at least once.
    pub fn has_committed(&self) -> bool {
        self.has_committed
    }

    /// The largest offset emitted, if any.
    pub fn latest_emitted(&self) -> Option<i64> {
        self.latest_emitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn manager(start: i64, emitted: &[i64], acked: &[i64]) -> OffsetManager {
        let mut m = OffsetManager::new(start);
        emitted.iter().for_each(|&o| m.emitted(o));
        acked.iter().for_each(|&o| m.acked(o));
        m
    }

    #[test]
    fn commits_only_below_the_lowest_unacked_offset() {
        let m = manager(0, &[0, 1, 2, 3, 4], &[0, 1, 3, 4]);
        assert_eq!(m.next_commit_offset(), Some(2));
        let m = manager(0, &[0, 1, 2], &[1, 2]);
        assert_eq!(m.next_commit_offset(), None, "offset 0 is not acked");
    }

    #[test]
    fn offsets_never_emitted_do_not_hold_the_commit_back() {
        // 1, 2 and 5 were compacted away: stepped over.
        let m = manager(0, &[0, 3, 4, 6], &[0, 3, 4, 6]);
        assert_eq!(m.next_commit_offset(), Some(7));
        let m = manager(0, &[0, 3, 4, 5, 6], &[0, 3, 4, 6]);
        assert_eq!(m.next_commit_offset(), Some(5), "5 emitted and not acked");
        let m = manager(10, &[12, 13], &[12, 13]);
        assert_eq!(
            m.next_commit_offset(),
            Some(14),
            "a first offset past the start"
        );
    }

    #[test]
    fn a_commit_forgets_what_it_covers() {
        let mut m = manager(0, &[0, 1, 2, 3], &[0, 1, 3]);
        assert_eq!(m.commit(2), 2);
        assert_eq!(m.committed_offset(), 2);
        assert!(m.has_committed());
        assert_eq!(m.uncommitted(), 2);
        assert_eq!(m.nth_uncommitted(1), Some(2));
        assert_eq!(m.nth_uncommitted(3), None);
        assert_eq!(m.next_commit_offset(), None);
        m.acked(2);
        assert_eq!(m.next_commit_offset(), Some(4));
        assert_eq!(m.latest_emitted(), Some(3));
    }

    proptest! {
        /// Whatever is acked, the commit offset never passes an emitted
        /// offset that is not acked, and covers every acked run from the
        /// start.
        #[test]
        fn never_commits_past_an_unacked_offset(
            emitted in proptest::collection::btree_set(0i64..60, 0..40),
            acked_mask in proptest::collection::vec(any::<bool>(), 60),
        ) {
            let emitted: Vec<i64> = emitted.into_iter().collect();
            let acked: Vec<i64> = emitted.iter().copied().filter(|&o| acked_mask[o as usize]).collect();
            let m = manager(0, &emitted, &acked);
            let first_unacked = emitted.iter().copied().find(|o| !acked.contains(o));
            match m.next_commit_offset() {
                Some(c) => {
                    prop_assert!(first_unacked.is_none_or(|u| c <= u));
                    prop_assert!(acked.iter().any(|&a| a + 1 == c));
                    let expected = emitted.iter().copied().take_while(|o| acked.contains(o)).last();
                    prop_assert_eq!(Some(c), expected.map(|e| e + 1));
                }
                None => prop_assert!(emitted.first().is_none_or(|f| !acked.contains(f))),
            }
        }
    }
}
