//! Squall's execution engine: runs a topology's executors as OS threads.
//!
//! An executor owns one or more tasks of one component and a bounded
//! inbound queue of tuple batches. Emits go through grouping dispatch
//! (`routing`) into per-receiver buffers (`outbox`) that are sent as a
//! batch when full, when the executor runs out of input, or every
//! `topology.flush.tuple.freq.millis`. Tuple trees are tracked by Storm's XOR
//! acker (`acking`), a bolt on the `__acker` component.
//!
//! In a cluster, [`run_worker`] runs the executors of one slot, moving
//! tuples between workers over TCP (`transport`, encoded by `wire`) and
//! beating to its supervisor. Depends on `squall-topology-api` and
//! `squall-cluster`. Only [`launch`], the worker loop and their types are
//! public; the engine's modules are its own.
#![forbid(missing_docs)]

mod acking;
mod backpressure;
mod bolt_executor;
mod inline_acker;
mod launch;
pub mod logging;
mod message;
mod outbox;
mod rotating;
mod routing;
pub mod sampling;
mod shared;
mod spout_executor;
mod stats;
mod transport;
mod wire;
mod worker_process;

pub use launch::{
    launch, system_spec, Inbound, LaunchError, LaunchOptions, Partial, Probe, RunningTopology,
};
pub use shared::EmitTap;
pub use worker_process::{
    run_worker, run_worker_on, WorkerEnv, WorkerError, WorkerExit, WorkerOptions,
};
