//! The decisions of a Kafka spout (Storm's `storm-kafka-client`), free of
//! I/O: [`OffsetManager`] (what a partition may commit), [`RetryBackoff`]
//! (when a failed record is emitted again) and [`partitions_for_task`]
//! (how partitions are spread over a spout's tasks).

mod offsets;
mod partitions;
mod retry;

pub use offsets::OffsetManager;
pub use partitions::{partitions_for_task, TopicPartition};
pub use retry::RetryBackoff;
