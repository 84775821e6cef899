//! Squall's execution engine: runs a topology's executors as OS threads.
//!
//! An executor owns one or more tasks of one component and a bounded
//! inbound queue of tuple batches. Emits go through grouping dispatch
//! ([`routing`]) into per-receiver buffers ([`outbox`]) that are sent as a
//! batch when full, when the executor runs out of input, or every
//! `topology.flush.tuple.freq.millis`. Tuple trees are tracked by Storm's XOR
//! acker ([`acking`]), a bolt on the `__acker` component.
//!
//! Depends on `squall-topology-api` only; knows nothing of ZooKeeper,
//! Nimbus or processes.
#![forbid(missing_docs)]

pub mod acking;
mod bolt_executor;
mod launch;
pub mod message;
pub mod outbox;
pub mod rotating;
pub mod routing;
mod shared;
mod spout_executor;
pub mod stats;

pub use launch::{launch, system_spec, LaunchError, LaunchOptions, RunningTopology};
pub use shared::EmitTap;
