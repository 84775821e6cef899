//! Connectors: spouts, bolts and states for the systems pipelines live in,
//! after Apache Storm's `external/` modules. [`kafka`] holds the parts of
//! Storm's `storm-kafka-client` that decide what a Kafka spout does —
//! which offsets it may commit, when a failed record is retried, which
//! partitions each task reads — as pure functions of their inputs.

pub mod kafka;
pub mod postgres;
pub mod redis;
mod sink;
