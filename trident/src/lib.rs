//! Trident for Squall: micro-batches with exactly-once state, compiled to
//! ordinary spouts and bolts of the core runtime (Storm's Trident, see
//! `Trident-tutorial.md` and `Trident-state.md`).
//!
//! ```text
//! let topology = TridentTopology::new();
//! let counts = topology
//!     .new_stream("lines", RecordSpout::lines(&files, 10_000)?)
//!     .each(["line"], split, ["word"])
//!     .group_by(["word"])
//!     .persistent_aggregate(MapStateFactory::memory("counts"), [], Count, ["count"]);
//! let topology = topology.build()?;
//! ```
//!
//! Differences from Storm, by design: several batches are in flight
//! (`topology.max.spout.pending`, default [`DEFAULT_MAX_BATCHES`], not 1)
//! and a batch starts as soon as a slot is free and a spout has data
//! ([`EMIT_INTERVAL_KEY`] defaults to 0 ms, not 500 ms). Commits stay
//! strictly in txid order.
#![forbid(missing_docs)]

mod coordinator;
mod graph;
pub mod operation;
mod pipeline;
mod plan;
mod protocol;
mod query;
pub mod spout;
mod stage;
pub mod state;
mod topology;
mod tuple;

pub use coordinator::{committed, MasterCoordinator, DEFAULT_MAX_BATCHES, EMIT_INTERVAL_KEY};
pub use graph::{Aggregation, StateUpdater};
pub use operation::{
    Aggregator, CombinerAggregator, Count, Filter, FlatMapFunction, Function, MapFunction,
    ReducerAggregator, Sum,
};
pub use protocol::{
    pack_batch, unpack_batch, BatchMsg, BATCH_FIELD, BATCH_STREAM, COMMIT_STREAM, COORDINATOR,
    COORD_STREAM,
};
pub use query::{MapGet, QueryFunction};
pub use spout::{
    BatchCoordinator, Emitter, FeederSpout, RecordSpout, SpoutKind, TransactionalSpout,
};
pub use state::{MapState, MapStateFactory, Semantics, State, StateError, StateFactory};
pub use topology::{BuildError, GroupedStream, Stream, TridentState, TridentTopology};
pub use tuple::{BatchId, Key, TridentCollector, TridentTuple, TupleError};
