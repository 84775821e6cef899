//! The decisions of a Kafka spout (Storm's `storm-kafka-client`), free of
//! I/O: [`OffsetManager`] (what a partition may commit), [`RetryBackoff`]
//! (when a failed record is emitted again), [`partitions_for_task`] (how
//! partitions are spread over a spout's tasks), and
//! [`FirstPollOffsetStrategy`] with [`ProcessingGuarantee`] (where
//! reading starts, and what is promised about each record).

mod first_poll;
mod offsets;
mod partitions;
mod retry;

pub use first_poll::{Commit, FetchStart, FirstPollOffsetStrategy, ProcessingGuarantee};
pub use offsets::OffsetManager;
pub use partitions::{partitions_for_task, TopicPartition};
pub use retry::RetryBackoff;
