//! The monitor round at the edge: observe the cluster state into a
//! [`Snapshot`], [`decide`] (pure), apply the [`Write`]s in order.

use crate::decide::{decide, Memory, Note, Snapshot, Timeouts, Write};
use crate::service::Nimbus;
use squall_cluster::{ClusterState, StateError, StateStorage};

/// What Nimbus keeps between rounds (see [`Memory`]).
#[derive(Default)]
pub struct Monitor {
    memory: Memory,
    /// Since when this Nimbus leads (its clock, ms): its heartbeat cache
    /// holds beats from then on.
    leading_since: Option<u64>,
}

/// Reads everything a round decides on.
///
/// # Errors
/// When the cluster state cannot be read.
pub fn observe<S: StateStorage>(state: &ClusterState<S>) -> Result<Snapshot, StateError> {
    let mut snap = Snapshot {
        supervisors: state.supervisors()?,
        topologies: state.topologies()?,
        ..Snapshot::default()
    };
    for t in &snap.topologies {
        if let Some(a) = state.assignment(&t.id)? {
            snap.assignments.insert(t.id.clone(), a);
        }
    }
    Ok(snap)
}

/// Applies `writes` in order; stops at the first failure (a versioned
/// write that lost a race leaves the rest to the next round).
///
/// # Errors
/// The first failed write's error.
pub fn apply<S: StateStorage>(state: &ClusterState<S>, writes: &[Write]) -> Result<(), StateError> {
    for w in writes {
        match w {
            Write::RemoveTopology { id, binary_hash } => {
                state.remove_topology(id)?;
                // Holders of a binary another topology shares announce it
                // again next round.
                if let Some(h) = binary_hash {
                    state.remove_blob(h)?;
                }
            }
            Write::PutTopology(t) => state.put_topology(t)?,
            Write::SetAssignment {
                assignment,
                expected_version,
            } => {
                state.set_assignment(assignment, *expected_version)?;
            }
        }
    }
    Ok(())
}

fn log(note: &Note) {
    match note {
        Note::Killed(t) => tracing::info!(topology = %t, "killed"),
        Note::Rebalanced(t) => tracing::info!(topology = %t, "rebalanced"),
        Note::SupervisorGone(t, slot) => {
            tracing::warn!(topology = %t, %slot, "supervisor gone; rescheduling its executors")
        }
        Note::WorkerSilent(t, slot) => {
            tracing::warn!(topology = %t, %slot, "worker stopped heartbeating; rescheduling its executors")
        }
        Note::Assigned(t, workers) => tracing::info!(topology = %t, workers, "assigned"),
        Note::CannotSchedule(t, e) => tracing::warn!(topology = %t, "cannot schedule: {e}"),
    }
}

impl Monitor {
    /// One round over every topology at `now_ms`; errors are logged, not
    /// fatal. The caller holds the Nimbus lock and has confirmed it leads.
    pub fn schedule_all<S: StateStorage>(&mut self, nimbus: &Nimbus<S>, now_ms: u64) {
        if self.leading_since.is_none() {
            // What a standby heard is stale: start afresh, with a grace
            // period for every worker (see `Snapshot::heartbeats_since_ms`).
            self.leading_since = Some(now_ms);
            self.memory = Memory::default();
            nimbus.heartbeats().clear();
        }
        if let Err(e) = self.round(nimbus, now_ms) {
            tracing::warn!("monitor round failed: {e}");
        }
        nimbus.blobs.expire();
    }

    /// This Nimbus does not lead (or cannot confirm it does): the next
    /// round that leads starts afresh.
    pub fn stand_by(&mut self) {
        self.leading_since = None;
    }

    fn round<S: StateStorage>(
        &mut self,
        nimbus: &Nimbus<S>,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let state = &nimbus.state;
        let mut snap = observe(state)?;
        snap.heartbeats_since_ms = self.leading_since.unwrap_or(now_ms);
        let ids: Vec<&str> = snap.topologies.iter().map(|t| t.id.as_str()).collect();
        nimbus.stats().retain(&ids);
        let assigned = snap
            .assignments
            .iter()
            .map(|(id, (a, _))| (id.as_str(), a.slots().into_iter().collect()))
            .collect();
        nimbus.heartbeats().retain(&assigned);
        for t in &snap.topologies {
            let beats = nimbus.heartbeats().of(&t.id);
            nimbus.observe(&t.id, &beats, now_ms);
            snap.heartbeats.insert(
                t.id.clone(),
                beats.into_iter().map(|hb| (hb.slot, hb.time_ms)).collect(),
            );
        }
        let cfg = &nimbus.config;
        let timeouts = Timeouts {
            task_ms: cfg.nimbus_task_timeout_secs * 1000,
            launch_ms: cfg.nimbus_task_launch_secs * 1000,
        };
        let decision = decide(&snap, &self.memory, now_ms, &timeouts);
        self.memory = decision.memory;
        decision.notes.iter().for_each(log);
        apply(state, &decision.writes)
    }
}
