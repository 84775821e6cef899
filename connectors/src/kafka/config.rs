//! [`KafkaSpoutConfig`]: what a Kafka spout reads and how (Storm's
//! `KafkaSpoutConfig`).

use super::translator::{DefaultRecordTranslator, RecordTranslator};
use super::{FirstPollOffsetStrategy, ProcessingGuarantee, RetryBackoff};
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The topics a spout reads.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches the pattern, found again every
    /// partition refresh (Storm's `PatternTopicFilter`); Kafka's internal
    /// topics (`__…`) never match.
    Pattern(Regex),
}

impl fmt::Display for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subscription::Topics(t) => f.write_str(&t.join(",")),
            Subscription::Pattern(p) => write!(f, "/{}/", p.as_str()),
        }
    }
}

/// What the spout does with a record its translator rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRecord {
    /// Report it (task errors and log), count it, and let its offset
    /// commit.
    #[default]
    Skip,
    /// Report it and treat it as a failed tuple: retried with the retry
    /// backoff, given up after the retries.
    Fail,
}

/// A Kafka spout's settings (Storm's `KafkaSpoutConfig`, with its
/// defaults). Build with [`KafkaSpoutConfig::new`] and the `with_`
/// methods.
#[derive(Clone)]
pub struct KafkaSpoutConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// The topics read.
    pub subscription: Subscription,
    /// The consumer group offsets are committed to (`group.id`); `None`:
    /// `<topology name>-<spout id>`.
    pub group_id: Option<String>,
    /// Where a partition's first read starts (default
    /// `UncommittedEarliest`).
    pub first_poll: FirstPollOffsetStrategy,
    /// What is promised about each record (default `AtLeastOnce`).
    pub guarantee: ProcessingGuarantee,
    /// How often offsets are committed, in ms (Storm:
    /// `offset.commit.period.ms`, 30,000).
    pub offset_commit_period_ms: u64,
    /// Emitted-but-uncommitted records per partition before the partition
    /// pauses (Storm: `max.uncommitted.offsets`, 10,000,000).
    pub max_uncommitted_offsets: usize,
    /// How often partitions (and the pattern's topics) are listed again,
    /// in ms (Storm: `partition.refresh.period.ms`, 2,000); the
    /// per-partition offset metrics are read as often.
    pub partition_refresh_period_ms: u64,
    /// Records polled per `next_tuple` at most (Storm's consumer:
    /// `max.poll.records`, 500).
    pub max_poll_records: usize,
    /// When failed records are emitted again.
    pub retry: RetryBackoff,
    /// What happens to a record the translator rejects.
    pub bad_record: BadRecord,
    /// How records become tuples.
    pub translator: Arc<dyn RecordTranslator>,
    /// More librdkafka consumer properties (`security.protocol`,
    /// `fetch.max.bytes`, …); they win over the spout's own.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaSpoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSpoutConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("subscription", &self.subscription)
            .field("group_id", &self.group_id)
            .field("first_poll", &self.first_poll)
            .field("guarantee", &self.guarantee)
            .field("offset_commit_period_ms", &self.offset_commit_period_ms)
            .field("max_uncommitted_offsets", &self.max_uncommitted_offsets)
            .finish_non_exhaustive()
    }
}

impl KafkaSpoutConfig {
    /// Reads `topics` from the brokers `bootstrap_servers`, with Storm's
    /// defaults and the [`DefaultRecordTranslator`].
    pub fn new<S: Into<String>>(
        bootstrap_servers: &str,
        topics: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            subscription: Subscription::Topics(topics.into_iter().map(Into::into).collect()),
            group_id: None,
            first_poll: FirstPollOffsetStrategy::default(),
            guarantee: ProcessingGuarantee::default(),
            offset_commit_period_ms: 30_000,
            max_uncommitted_offsets: 10_000_000,
            partition_refresh_period_ms: 2_000,
            max_poll_records: 500,
            retry: RetryBackoff::default(),
            bad_record: BadRecord::default(),
            translator: Arc::new(DefaultRecordTranslator::default()),
            properties: BTreeMap::new(),
        }
    }

    /// Reads every topic matching `pattern` (whole names).
    pub fn with_pattern(bootstrap_servers: &str, pattern: Regex) -> Self {
        Self {
            subscription: Subscription::Pattern(pattern),
            ..Self::new(bootstrap_servers, Vec::<String>::new())
        }
    }

    /// Commits to consumer group `group_id`.
    pub fn with_group_id(mut self, group_id: &str) -> Self {
        self.group_id = Some(group_id.to_owned());
        self
    }

    /// Starts partitions as `strategy` says.
    pub fn with_first_poll(mut self, strategy: FirstPollOffsetStrategy) -> Self {
        self.first_poll = strategy;
        self
    }

    /// Promises `guarantee`.
    pub fn with_guarantee(mut self, guarantee: ProcessingGuarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Commits every `ms` milliseconds.
    pub fn with_offset_commit_period_ms(mut self, ms: u64) -> Self {
        self.offset_commit_period_ms = ms;
        self
    }

    /// Pauses a partition at `n` uncommitted records.
    pub fn with_max_uncommitted_offsets(mut self, n: usize) -> Self {
        self.max_uncommitted_offsets = n;
        self
    }

    /// Lists partitions again every `ms` milliseconds.
    pub fn with_partition_refresh_period_ms(mut self, ms: u64) -> Self {
        self.partition_refresh_period_ms = ms;
        self
    }

    /// Retries failed records with `retry`.
    pub fn with_retry(mut self, retry: RetryBackoff) -> Self {
        self.retry = retry;
        self
    }

    /// Handles rejected records with `policy`.
    pub fn with_bad_record(mut self, policy: BadRecord) -> Self {
        self.bad_record = policy;
        self
    }

    /// Translates records with `translator`.
    pub fn with_translator(mut self, translator: impl RecordTranslator + 'static) -> Self {
        self.translator = Arc::new(translator);
        self
    }

    /// Sets the librdkafka consumer property `key`.
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The consumer group for the spout `component` of `topology`.
    pub fn group_for(&self, topology: &str, component: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("{topology}-{component}"))
    }

    /// The librdkafka properties of the spout's consumers in `group`:
    /// manual assignment and commits, reads from the earliest offset when
    /// a position is out of range, then [`Self::properties`].
    pub fn client_properties(&self, group: &str) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        let mut set = |k: &str, v: &str| p.insert(k.to_owned(), v.to_owned());
        set("bootstrap.servers", &self.bootstrap_servers);
        set("group.id", group);
        set("enable.auto.commit", "false");
        set("enable.auto.offset.store", "false");
        set("auto.offset.reset", "earliest");
        set("enable.partition.eof", "false");
        p.extend(self.properties.clone());
        p
    }
}
