//! Where a Kafka spout starts reading a partition, and what it promises.

/// Where a partition's first read starts (Storm's
/// `FirstPollOffsetStrategy`). "This topology" means a commit whose
/// metadata names the running topology's id: a restarted worker of the
/// same deployment always resumes from the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FirstPollOffsetStrategy {
    /// The earliest offset, unless this topology committed.
    Earliest,
    /// The latest offset, unless this topology committed.
    Latest,
    /// The consumer group's commit if any, else the earliest offset
    /// (Storm's default).
    #[default]
    UncommittedEarliest,
    /// The consumer group's commit if any, else the latest offset.
    UncommittedLatest,
}

/// Where to seek a partition before its first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStart {
    /// The earliest offset still in the partition.
    Beginning,
    /// The offset after the last record (only new records are read).
    End,
    /// This offset (a consumer-group commit).
    Offset(i64),
}

/// A consumer group's commit for a partition: the offset, and whether the
/// running topology made it (from the commit's metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// The committed offset (the next to read).
    pub offset: i64,
    /// The commit's metadata names the running topology.
    pub by_this_topology: bool,
}

impl FirstPollOffsetStrategy {
    /// Where to start reading a partition whose group commit is `commit`
    /// (Storm's `KafkaSpout.doSeek`).
    pub fn fetch_start(self, commit: Option<Commit>) -> FetchStart {
        use FirstPollOffsetStrategy::*;
        match (commit, self) {
            (Some(c), _) if c.by_this_topology => FetchStart::Offset(c.offset),
            (Some(_), Earliest) => FetchStart::Beginning,
            (Some(_), Latest) => FetchStart::End,
            (Some(c), UncommittedEarliest | UncommittedLatest) => FetchStart::Offset(c.offset),
            (None, Earliest | UncommittedEarliest) => FetchStart::Beginning,
            (None, Latest | UncommittedLatest) => FetchStart::End,
        }
    }
}

/// What a Kafka spout promises about each record (Storm's
/// `ProcessingGuarantee`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Records are tracked and replayed until acked; the group commit
    /// (every `offset.commit.period.ms`) stays below the lowest un-acked
    /// offset (Storm's default).
    #[default]
    AtLeastOnce,
    /// Polled offsets are committed before their records are emitted,
    /// untracked: a crash loses what was in flight, nothing repeats.
    AtMostOnce,
    /// Polled offsets are committed periodically, untracked: a crash may
    /// lose or repeat records.
    NoGuarantee,
}

impl ProcessingGuarantee {
    /// Whether records are emitted with message ids (tracked and
    /// replayed).
    pub fn tracks_records(self) -> bool {
        self == ProcessingGuarantee::AtLeastOnce
    }

    /// Whether polled offsets are committed before their records are
    /// emitted.
    pub fn commits_before_emit(self) -> bool {
        self == ProcessingGuarantee::AtMostOnce
    }
}

#[cfg(test)]
mod tests {
    use super::FirstPollOffsetStrategy::*;
    use super::*;

    #[test]
    fn a_commit_by_this_topology_always_wins() {
        let ours = Some(Commit {
            offset: 42,
            by_this_topology: true,
        });
        for s in [Earliest, Latest, UncommittedEarliest, UncommittedLatest] {
            assert_eq!(s.fetch_start(ours), FetchStart::Offset(42), "{s:?}");
        }
    }

    #[test]
    fn another_deployments_commit_counts_only_for_the_uncommitted_strategies() {
        let theirs = Some(Commit {
            offset: 7,
            by_this_topology: false,
        });
        assert_eq!(Earliest.fetch_start(theirs), FetchStart::Beginning);
        assert_eq!(Latest.fetch_start(theirs), FetchStart::End);
        assert_eq!(
            UncommittedEarliest.fetch_start(theirs),
            FetchStart::Offset(7)
        );
        assert_eq!(UncommittedLatest.fetch_start(theirs), FetchStart::Offset(7));
        assert_eq!(UncommittedEarliest.fetch_start(None), FetchStart::Beginning);
        assert_eq!(UncommittedLatest.fetch_start(None), FetchStart::End);
        assert_eq!(FirstPollOffsetStrategy::default(), UncommittedEarliest);
    }

    #[test]
    fn only_at_least_once_tracks_records() {
        assert!(ProcessingGuarantee::default().tracks_records());
        assert!(!ProcessingGuarantee::AtMostOnce.tracks_records());
        assert!(ProcessingGuarantee::AtMostOnce.commits_before_emit());
        assert!(!ProcessingGuarantee::NoGuarantee.tracks_records());
        assert!(!ProcessingGuarantee::NoGuarantee.commits_before_emit());
    }
}
