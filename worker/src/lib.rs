//! Squall's execution engine: runs a topology's executors as OS threads.
//!
//! An executor owns one or more tasks of one component and a bounded
//! inbound queue of tuple batches. Emits go through grouping dispatch
//! ([`routing`]) into per-receiver buffers ([`outbox`]) that are sent as a
//! batch when full, when the executor runs out of input, or every
//! `topology.flush.tuple.freq.millis`. Tuple trees are tracked by Storm's XOR
//! acker ([`acking`]), a bolt on the `__acker` component.
//!
//! In a cluster, [`run_worker`] runs the executors of one slot, moving
//! tuples between workers over TCP ([`transport`], encoded by [`wire`]) and beating to the
//! cluster state. Depends on `squall-topology-api` and `squall-cluster`.
#![forbid(missing_docs)]

pub mod acking;
pub mod backpressure;
mod bolt_executor;
mod launch;
pub mod message;
pub mod outbox;
pub mod rotating;
pub mod routing;
mod shared;
mod spout_executor;
pub mod stats;
pub mod transport;
pub mod wire;
mod worker_process;

pub use launch::{
    launch, system_spec, Inbound, LaunchError, LaunchOptions, Partial, Probe, RunningTopology,
};
pub use shared::EmitTap;
pub use worker_process::{
    run_worker, run_worker_on, WorkerEnv, WorkerError, WorkerExit, WorkerOptions,
};
