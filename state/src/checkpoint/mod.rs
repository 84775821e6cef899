//! Storm's checkpoint protocol for stateful bolts (Apache Storm
//! `docs/State-checkpointing.md`, `CheckpointSpout`, `CheckPointState`,
//! `BaseStatefulBoltExecutor`): a spout on `$checkpoint` drives every
//! stateful bolt through PREPARE, COMMIT, ROLLBACK and INITSTATE with the
//! same transaction ids; checkpoint tuples flow along the topology's edges
//! with all grouping, and each bolt acts once it has one from every input
//! task (barrier alignment).

mod barrier;
pub(crate) mod epoch;
mod held;
mod spout;

pub use barrier::{CheckpointBarrier, CheckpointForwarder, CheckpointTuple};
pub use spout::{CheckpointSpout, CheckpointState, Phase};

use std::fmt;

/// What a checkpoint tuple asks of stateful bolts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Keep the state's changes since the last checkpoint as transaction
    /// `txid`'s (Storm's `PREPARE`).
    Prepare,
    /// Make transaction `txid` durable and ack the tuples it covers.
    Commit,
    /// Go back to the last committed state and fail the tuples since.
    Rollback,
    /// Load the committed state and start processing (at start and after
    /// recovery).
    InitState,
}

impl Action {
    /// Storm's name of the action, as carried in the tuple's `action` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Prepare => "PREPARE",
            Action::Commit => "COMMIT",
            Action::Rollback => "ROLLBACK",
            Action::InitState => "INITSTATE",
        }
    }

    /// The action named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PREPARE" => Action::Prepare,
            "COMMIT" => Action::Commit,
            "ROLLBACK" => Action::Rollback,
            "INITSTATE" => Action::InitState,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of the `$checkpoint` stream: Storm's `txid` and `action`,
/// plus `attempt`, which tells a retried step from stragglers of an
/// earlier attempt at the same step.
pub const CHECKPOINT_FIELDS: [&str; 3] = ["txid", "action", "attempt"];
