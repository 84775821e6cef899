//! A seeded, deterministic simulation of Squall's control plane (after
//! FoundationDB's simulation and TigerBeetle's VOPR): two Nimbus, several
//! supervisors and their workers run their real control code
//! (`Nimbus::monitor_round` with the pure `decide` and lifecycle,
//! `Supervisor::sync` with the pure slot step) over an in-memory
//! ZooKeeper ([`store::Link`]) on simulated time, while faults drawn from
//! the seed hit them: daemon crashes and restarts (a crashed supervisor's
//! workers keep running), supervisors paused past their session,
//! ZooKeeper outages, daemons cut off ZooKeeper, reads from a lagging
//! replica (delayed updates), session expiry, worker kills, clock skew
//! between hosts, and for binaries: download partitions between any
//! Nimbus and supervisor or between the Nimbuses, failing downloads, a
//! Nimbus losing its blob folder, a supervisor's host replaced. Workers run the control loop of a
//! real worker (assignment sync, heartbeats), not executors.
//!
//! Checked at every step: a Nimbus writes topologies and assignments only
//! while it holds the leader node; no slot runs two workers; assignment
//! versions never go back. Checked once faults have stopped for
//! [`Settings::settle_secs`]: one leader, every supervisor registered,
//! every executor of an active topology on a registered slot whose one
//! worker runs exactly its executors, no worker of a killed topology.
//!
//! The same seed gives the same run: every choice comes from it, time is
//! simulated and every map is ordered.
#![forbid(missing_docs)]

pub mod store;
pub mod worker;
mod world;

pub use world::{report, run, Fault, Outcome, Regression, Settings, World};
