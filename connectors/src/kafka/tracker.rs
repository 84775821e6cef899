//! [`RecordTracker`]: what an at-least-once Kafka spout does with each
//! record it polls, acks and fails, across its partitions (Storm's
//! `KafkaSpout.emitOrRetryTuple`, its `emitted` set, its retry service
//! and its pausing of partitions at `max.uncommitted.offsets`), free of
//! I/O: the spout carries out the seeks, pauses and commits it returns.

use super::{OffsetManager, RetryBackoff, TopicPartition};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// What to do with a polled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Emit it (tracked).
    Emit,
    /// Drop it: already acked, committed or in flight, or waiting for its
    /// retry time.
    Skip,
    /// The partition is at its uncommitted limit: seek the partition back
    /// to this record and pause it until a commit makes room.
    SeekBackAndPause,
}

/// What became of a failed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Emitted again once its partition is sought back, at or after this
    /// time (ms).
    RetryAt(u64),
    /// Out of retries: given up, counted, and treated as acked.
    GivenUp,
    /// Not a record this tracker knows (its partition was revoked).
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    due_ms: u64,
    fails: u32,
    sought: bool,
}

#[derive(Debug)]
struct Partition {
    offsets: OffsetManager,
    retries: BTreeMap<i64, Retry>,
    /// Fails of records emitted again and not yet acked or failed.
    retried: HashMap<i64, u32>,
    paused: bool,
}

impl Partition {
    /// Whether `offset` is in flight: emitted, neither acked nor waiting
    /// for a retry (what is not committed is all emitted, and acked and
    /// waiting offsets are emitted ones).
    fn in_flight(&self, offset: i64) -> bool {
        self.offsets.is_emitted(offset)
            && !self.offsets.is_acked(offset)
            && !self.retries.contains_key(&offset)
    }
}

/// The at-least-once bookkeeping of a spout's partitions: for each, its
/// [`OffsetManager`], the offsets in flight (emitted, neither acked nor
/// failed), the failed offsets waiting for their retry, and whether it is
/// paused at `max_uncommitted` emitted-but-uncommitted offsets (Storm's
/// `max.uncommitted.offsets`; a soft bound, as Storm's: retries below it
/// are still emitted).
#[derive(Debug)]
pub struct RecordTracker {
    partitions: HashMap<TopicPartition, Partition>,
    backoff: RetryBackoff,
    max_uncommitted: usize,
    given_up: u64,
}

impl RecordTracker {
    /// A tracker with no partitions.
    pub fn new(backoff: RetryBackoff, max_uncommitted: usize) -> Self {
        Self {
            partitions: HashMap::default(),
            backoff,
            max_uncommitted: max_uncommitted.max(1),
            given_up: 0,
        }
    }

    /// Starts tracking `tp`, whose reading starts at `fetch_offset`.
    /// A partition already tracked is left as it is.
    pub fn assign(&mut self, tp: TopicPartition, fetch_offset: i64) {
        self.partitions.entry(tp).or_insert_with(|| Partition {
            offsets: OffsetManager::new(fetch_offset),
            retries: BTreeMap::new(),
            retried: HashMap::default(),
            paused: false,
        });
    }

    /// Stops tracking `tp` (its records' acks and fails are then ignored).
    pub fn revoke(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }

    /// Whether `tp` is tracked.
    pub fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.partitions.contains_key(tp)
    }

    /// The partitions tracked.
    pub fn assigned(&self) -> impl Iterator<Item = &TopicPartition> {
        self.partitions.keys()
    }

    /// Decides what to do with the record at `offset` of `tp`, polled at
    /// `now_ms`, and records an emit.
    pub fn polled(&mut self, tp: &TopicPartition, offset: i64, now_ms: u64) -> Polled {
        let max = self.max_uncommitted;
        let Some(p) = self.partitions.get_mut(tp) else {
            return Polled::Skip;
        };
        if p.paused
            || offset < p.offsets.committed_offset()
            || p.offsets.is_acked(offset)
            || p.in_flight(offset)
        {
            return Polled::Skip;
        }
        let retry = p.retries.get(&offset).copied();
        if retry.is_some_and(|r| r.due_ms > now_ms) {
            return Polled::Skip;
        }
        // Over the limit, only records below the limit's offset (retries
        // of records already counted) go out.
        if p.offsets.uncommitted() >= max
            && p.offsets.nth_uncommitted(max).is_none_or(|o| offset > o)
        {
            p.paused = true;
            return Polled::SeekBackAndPause;
        }
        if let Some(r) = retry {
            p.retries.remove(&offset);
            p.retried.insert(offset, r.fails);
        }
        p.offsets.emitted(offset);
        Polled::Emit
    }

    /// Records that the record at `offset` of `tp` was acked.
    pub fn acked(&mut self, tp: &TopicPartition, offset: i64) {
        self.acked_in(&tp.topic, tp.partition, offset);
    }

    /// [`Self::acked`] without a [`TopicPartition`] to hand (found by a
    /// scan: a task holds few partitions).
    pub fn acked_in(&mut self, topic: &str, partition: i32, offset: i64) {
        let found = self
            .partitions
            .iter_mut()
            .find(|(tp, _)| tp.partition == partition && tp.topic == topic);
        if let Some((_, p)) = found {
            if p.in_flight(offset) {
                p.retried.remove(&offset);
                p.offsets.acked(offset);
            }
        }
    }

    /// Records that the record at `offset` of `tp` failed at `now_ms`, and
    /// schedules its retry or gives it up.
    pub fn failed(&mut self, tp: &TopicPartition, offset: i64, now_ms: u64) -> Failed {
        let Some(p) = self.partitions.get_mut(tp) else {
            return Failed::Unknown;
        };
        if !p.in_flight(offset) {
            return Failed::Unknown;
        }
        let fails = p.retried.remove(&offset).unwrap_or(0) + 1;
        match self.backoff.delay_ms(fails) {
            Some(delay) => {
                let due_ms = now_ms.saturating_add(delay);
                let retry = Retry {
                    due_ms,
                    fails,
                    sought: false,
                };
                p.retries.insert(offset, retry);
                Failed::RetryAt(due_ms)
            }
            None => {
                p.offsets.acked(offset);
                self.given_up += 1;
                Failed::GivenUp
            }
        }
    }

    /// Records that a record of `tp` is given up without being emitted
    /// (a record its translator rejects or drops): its offset may commit.
    pub fn skipped(&mut self, tp: &TopicPartition, offset: i64) {
        if let Some(p) = self.partitions.get_mut(tp) {
            p.offsets.emitted(offset);
            p.offsets.acked(offset);
        }
    }

    /// The partitions to seek back at `now_ms`, each to its earliest
    /// failed record whose retry is due (Storm's
    /// `doSeekRetriableTopicPartitions`). A partition is sought once per
    /// newly due retry, so its fetch can make progress in between; a
    /// paused partition is resumed for it (the spout resumes every
    /// partition it seeks).
    pub fn due_seeks(&mut self, now_ms: u64) -> Vec<(TopicPartition, i64)> {
        let mut seeks = Vec::new();
        for (tp, p) in &mut self.partitions {
            let due = |r: &Retry| r.due_ms <= now_ms;
            let Some((&first, _)) = p.retries.iter().find(|(_, r)| due(r)) else {
                continue;
            };
            if p.retries.values().all(|r| !due(r) || r.sought) {
                continue;
            }
            p.retries
                .values_mut()
                .filter(|r| due(r))
                .for_each(|r| r.sought = true);
            p.paused = false;
            seeks.push((tp.clone(), first));
        }
        seeks
    }

    /// The earliest time (ms) a retry falls due, if any is waiting.
    pub fn next_retry_ms(&self) -> Option<u64> {
        self.partitions
            .values()
            .flat_map(|p| p.retries.values().filter(|r| !r.sought).map(|r| r.due_ms))
            .min()
    }

    /// The offsets to commit now, one per partition that moved (Storm's
    /// `commitOffsetsForAckedTuples`); the commit is recorded, and a
    /// partition with room again is returned in the second list, to
    /// resume.
    pub fn commits(&mut self) -> (Vec<(TopicPartition, i64)>, Vec<TopicPartition>) {
        let mut commits = Vec::new();
        let mut resumed = Vec::new();
        for (tp, p) in &mut self.partitions {
            if let Some(offset) = p.offsets.next_commit_offset() {
                p.offsets.commit(offset);
                p.retries = p.retries.split_off(&offset);
                commits.push((tp.clone(), offset));
            }
            if p.paused && p.offsets.uncommitted() < self.max_uncommitted {
                p.paused = false;
                resumed.push(tp.clone());
            }
        }
        commits.sort();
        resumed.sort();
        (commits, resumed)
    }

    /// The committed offset of `tp` (where a restart resumes).
    pub fn committed_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions
            .get(tp)
            .map(|p| p.offsets.committed_offset())
    }

    /// Records in flight over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.offsets.uncommitted() - p.offsets.acked_count() - p.retries.len())
            .sum()
    }

    /// Records waiting for a retry over all partitions.
    pub fn waiting_retry(&self) -> usize {
        self.partitions.values().map(|p| p.retries.len()).sum()
    }

    /// Records given up after their retries, since the start.
    pub fn given_up(&self) -> u64 {
        self.given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn tracker(max_retries: u32, max_uncommitted: usize) -> RecordTracker {
        let backoff = RetryBackoff {
            initial_delay_ms: 10,
            delay_period_ms: 10,
            multiplier: 2.0,
            max_delay_ms: 1_000,
            max_retries,
        };
        let mut t = RecordTracker::new(backoff, max_uncommitted);
        t.assign(tp(), 0);
        t
    }

    #[test]
    fn acked_records_commit_and_are_not_emitted_again() {
        let mut t = tracker(10, 100);
        for o in 0..3 {
            assert_eq!(t.polled(&tp(), o, 0), Polled::Emit);
        }
        assert_eq!(t.polled(&tp(), 1, 0), Polled::Skip, "in flight");
        t.acked(&tp(), 0);
        t.acked(&tp(), 2);
        assert_eq!(t.polled(&tp(), 2, 0), Polled::Skip, "acked");
        assert_eq!(t.commits().0, [(tp(), 1)]);
        assert_eq!(t.commits().0, [], "nothing new");
        assert_eq!(t.polled(&tp(), 0, 0), Polled::Skip, "committed");
        t.acked(&tp(), 1);
        assert_eq!(t.commits().0, [(tp(), 3)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_failed_record_is_sought_back_once_when_due_and_emitted_again() {
        let mut t = tracker(10, 100);
        t.polled(&tp(), 0, 0);
        t.polled(&tp(), 1, 0);
        assert_eq!(t.failed(&tp(), 0, 100), Failed::RetryAt(110));
        assert_eq!(t.next_retry_ms(), Some(110));
        assert_eq!(t.due_seeks(105), []);
        assert_eq!(t.polled(&tp(), 0, 105), Polled::Skip, "not due");
        assert_eq!(t.due_seeks(110), [(tp(), 0)]);
        assert_eq!(t.due_seeks(111), [], "sought once");
        assert_eq!(t.polled(&tp(), 0, 111), Polled::Emit);
        assert_eq!(t.polled(&tp(), 1, 111), Polled::Skip, "still in flight");
        // The second fail waits longer: 10 ms × 2.
        assert_eq!(t.failed(&tp(), 0, 200), Failed::RetryAt(220));
        assert_eq!(t.waiting_retry(), 1);
    }

    #[test]
    fn a_record_out_of_retries_is_given_up_and_commits() {
        let mut t = tracker(2, 100);
        let mut now = 0;
        t.polled(&tp(), 0, now);
        for _ in 0..2 {
            let Failed::RetryAt(due) = t.failed(&tp(), 0, now) else {
                panic!("retried")
            };
            now = due;
            assert_eq!(t.due_seeks(now), [(tp(), 0)]);
            assert_eq!(t.polled(&tp(), 0, now), Polled::Emit);
        }
        assert_eq!(t.failed(&tp(), 0, now), Failed::GivenUp);
        assert_eq!(t.given_up(), 1);
        assert_eq!(t.commits().0, [(tp(), 1)]);
        assert_eq!(t.failed(&tp(), 0, now), Failed::Unknown);
    }

    #[test]
    fn a_partition_at_its_limit_pauses_until_a_commit_makes_room() {
        let mut t = tracker(10, 2);
        assert_eq!(t.polled(&tp(), 0, 0), Polled::Emit);
        assert_eq!(t.polled(&tp(), 1, 0), Polled::Emit);
        assert_eq!(t.polled(&tp(), 2, 0), Polled::SeekBackAndPause);
        assert_eq!(t.polled(&tp(), 3, 0), Polled::Skip, "paused");
        // A failed record below the limit is still retried.
        t.failed(&tp(), 1, 0);
        t.acked(&tp(), 0);
        let (commits, resumed) = t.commits();
        assert_eq!(commits, [(tp(), 1)]);
        assert_eq!(resumed, [tp()]);
        assert_eq!(t.due_seeks(10), [(tp(), 1)]);
        assert_eq!(t.polled(&tp(), 1, 10), Polled::Emit);
        assert_eq!(t.polled(&tp(), 2, 10), Polled::Emit);
        assert_eq!(t.polled(&tp(), 3, 10), Polled::SeekBackAndPause);
    }

    #[test]
    fn skipped_records_do_not_hold_the_commit_back() {
        let mut t = tracker(10, 100);
        t.polled(&tp(), 0, 0);
        t.skipped(&tp(), 1);
        t.polled(&tp(), 2, 0);
        t.acked(&tp(), 0);
        t.acked(&tp(), 2);
        assert_eq!(t.commits().0, [(tp(), 3)]);
        let other = TopicPartition::new("t", 9);
        assert_eq!(t.polled(&other, 0, 0), Polled::Skip, "not assigned");
        t.revoke(&tp());
        assert!(!t.is_assigned(&tp()));
    }
}
