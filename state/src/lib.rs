//! Windows and state for Squall (Storm 2's core windowing and state
//! checkpointing, see Apache Storm `docs/Windowing.md` and
//! `docs/State-checkpointing.md`), compiled to ordinary spouts and bolts:
//!
//! - [`window`]: [`WindowedBolt`]s see count or duration windows, sliding
//!   or tumbling, on processing time or on event time with watermarks and
//!   a late-tuple stream; tuples are acked as they leave their last window.
//! - [`StatefulBolt`]s keep a [`KeyValueState`] that Storm's checkpoint
//!   protocol ([`checkpoint`]) makes exactly-once: acks wait for the
//!   checkpoint that covers them, a failed checkpoint rolls back.
//! - State lives in a [`Store`] from a [`StateProvider`]: memory or redb
//!   files, chosen by `topology.state.provider`.
//!
//! [`WindowsAndState`] adds the three kinds of bolt to a
//! [`TopologyBuilder`]. Depends on `squall-topology-api` only (and redb).
#![forbid(missing_docs)]

mod builder;
pub mod checkpoint;
mod kv;
mod stateful;
pub mod store;
pub mod window;

pub use builder::WindowsAndState;
pub use kv::{decode_entry, KeyValueState, State};
pub use stateful::{StatefulBolt, StatefulBoltExecutor};
pub use store::{MemoryProvider, RedbProvider, StateError, StateProvider, Store, TxStore};
pub use window::{Length, TupleWindow, WindowCollector, WindowConfig, WindowedBolt};
