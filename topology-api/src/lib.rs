//! What Squall users code against: [`Spout`], [`Bolt`], [`Tuple`],
//! [`Values`], [`Fields`], groupings, [`TopologyBuilder`], [`Config`] and
//! [`TopologyContext`].
//!
//! This crate has no runtime: no threads, no I/O, no tokio. The execution
//! engine (`squall-worker`) implements the collector seams
//! ([`BoltOutput`], [`SpoutOutput`]); users reach everything through the
//! `squall` facade crate. Dependencies point one way: nothing in Squall is
//! below this crate.
#![forbid(missing_docs)]

mod builder;
mod cluster_config;
mod collector;
mod component;
mod config;
mod context;
mod coordination;
mod declarer;
mod fields;
mod grouping;
mod ids;
pub mod metrics;
pub mod spec;
mod time;
mod tuple;
pub mod user_metrics;
mod value;
mod value_serde;

pub use builder::{
    BoltDeclarer, BoltFactory, Finisher, SpoutDeclarer, SpoutFactory, StreamSource, Topology,
    TopologyBuilder,
};
pub use cluster_config::{ClusterConfig, Secret};
pub use collector::{
    Anchors, BasicOutputCollector, BoltOutput, MetricUpdate, OutputCollector, SpoutOutput,
    SpoutOutputCollector,
};
/// The string type of [`Value::Str`]: inline up to 24 bytes.
pub use compact_str::CompactString;
pub use component::{BasicBolt, BasicBoltAdapter, Bolt, ExecuteError, FailReason, Spout};
pub use config::{Config, ConfigError};
pub use context::{ExecutorSpec, TaskLayout, TaskWaker, TopologyContext, ACKER_COMPONENT};
pub use coordination::{CoordinationStore, SharedStore, StoreError};
pub use declarer::{OutputFieldsDeclarer, StreamDef};
pub use fields::Fields;
pub use grouping::{CustomGroupingFactory, CustomStreamGrouping, GroupingSpec};
pub use ids::{
    ComponentId, StreamId, TaskId, CHECKPOINT_COMPONENT, CHECKPOINT_STREAM, DEFAULT_STREAM,
    SYSTEM_PREFIX,
};
pub use spec::{TopologyError, TopologySpec};
pub use time::TopologyClock;
pub use tuple::{
    MessageId, StreamMeta, Tuple, TupleError, NO_INPUT, SYSTEM_COMPONENT, TICK_STREAM,
};
pub use user_metrics::{Counter, Histogram, MetricRegistry};
pub use value::{Value, Values};
