//! Squall's host agent: registers its slots in the cluster state, syncs
//! assignments, downloads and verifies topology binaries, and launches,
//! watches, restarts and kills workers through the [`Launcher`] seam, and
//! forwards their heartbeats to the leading Nimbus ([`NimbusReport`]). Each
//! slot's lifecycle is the pure [`slot::step`] function.
//!
//! Depends on `squall-cluster` and `squall-topology-api`; never on the
//! worker engine.
#![forbid(missing_docs)]

mod binaries;
mod kill_workers;
mod launcher;
mod report;
pub mod slot;
mod supervisor;

pub use kill_workers::{kill_workers, KilledWorker};
pub use launcher::{Launcher, ProcessLauncher, WorkerHandle, WorkerLaunch};
pub use report::NimbusReport;
pub use supervisor::{run, Supervisor, SupervisorError};
