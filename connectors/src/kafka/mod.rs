//! Kafka (Storm's `storm-kafka-client`): [`KafkaSpout`] reads topics with
//! offset commits to the consumer group, [`KafkaBolt`] writes tuples to a
//! topic, [`KafkaTridentSpout`] feeds Trident with per-partition offset
//! ranges, and [`admin`] creates topics and reads offsets.
//!
//! The spout's decisions are pure functions of their inputs:
//! [`OffsetManager`] (what a partition may commit), [`RetryBackoff`]
//! (when a failed record is emitted again), [`RecordTracker`] (what to do
//! with each polled, acked and failed record), [`partitions_for_task`]
//! (how partitions are spread over a spout's tasks), and
//! [`FirstPollOffsetStrategy`] with [`ProcessingGuarantee`] (where
//! reading starts, and what is promised about each record).
//!
//! The client is librdkafka (through the `rdkafka` crate, built from its
//! bundled sources), Kafka's reference C client.

pub mod admin;
mod bolt;
mod client;
mod committer;
mod config;
mod discovery;
mod first_poll;
pub mod metrics;
mod offsets;
mod partitions;
mod retry;
mod spout;
mod tracker;
mod translator;
mod trident;

pub use bolt::{KafkaBolt, KafkaBoltConfig};
pub use config::{BadRecord, KafkaSpoutConfig, Subscription};
pub use first_poll::{Commit, FetchStart, FirstPollOffsetStrategy, ProcessingGuarantee};
pub use offsets::OffsetManager;
pub use partitions::{partitions_for_task, TopicPartition};
/// The pattern type of [`Subscription::Pattern`] (the `regex` crate's).
pub use regex::Regex;
pub use retry::RetryBackoff;
pub use spout::KafkaSpout;
pub use tracker::{Failed, Polled, RecordTracker};
pub use translator::{
    default_fields, ByTopicTranslator, DefaultRecordTranslator, FnTranslator, KafkaRecord,
    RecordTranslator, TranslateError,
};
pub use trident::{meta_ranges, next_ranges, ranges_meta, KafkaTridentSpout, PartitionRange};
