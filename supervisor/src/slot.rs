//! The per-slot worker lifecycle as a pure step function: given what the
//! slot runs, what it should run and what was observed, the next state and
//! the actions to take (Storm's `Slot` state machine: waiting for the
//! binary, starting, running, killing with a [`KillReason`]).

use squall_topology_api::ExecutorSpec;

/// What a slot should run: one topology's executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAssignment {
    /// The topology.
    pub topology_id: String,
    /// The executors, in order.
    pub executors: Vec<ExecutorSpec>,
}

/// Why a worker is killed (Storm's `Slot.KillReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// The slot now holds other executors, or another topology.
    AssignmentChanged,
    /// The slot holds nothing any more (topology killed or moved).
    Unassigned,
    /// The process ended on its own.
    ProcessExited,
    /// A starting worker did not beat within the start timeout.
    StartTimeout,
    /// A running worker's heartbeat is older than the worker timeout.
    HeartbeatTimeout,
    /// The supervisor is shutting down.
    Shutdown,
}

impl std::fmt::Display for KillReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AssignmentChanged => "assignment changed",
            Self::Unassigned => "slot unassigned",
            Self::ProcessExited => "worker exited",
            Self::StartTimeout => "no heartbeat within the start timeout",
            Self::HeartbeatTimeout => "heartbeat older than the worker timeout",
            Self::Shutdown => "supervisor shutting down",
        })
    }
}

/// A slot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// No worker.
    Empty,
    /// Assigned, waiting until the topology's binary is local (a download
    /// runs beside the loop, so other slots keep going; Storm's
    /// `WAITING_FOR_BLOB_LOCALIZATION`).
    WaitingForBinary {
        /// What it will run.
        assignment: LocalAssignment,
    },
    /// A worker was launched at `since_ms` and has not beaten since.
    Starting {
        /// What it runs.
        assignment: LocalAssignment,
        /// Launch time, ms since the Unix epoch.
        since_ms: u64,
    },
    /// A worker is running and beating.
    Running {
        /// What it runs.
        assignment: LocalAssignment,
    },
    /// The worker was asked to stop (SIGTERM) at `since_ms`; it is
    /// force-killed once the shutdown grace has passed.
    Killing {
        /// Why.
        reason: KillReason,
        /// When it was asked, ms since the Unix epoch.
        since_ms: u64,
    },
}

/// What the supervisor saw of a slot this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// Whether the worker process is still running (false without one).
    pub process_alive: bool,
    /// Time of its latest local heartbeat, ms since the Unix epoch.
    pub heartbeat_ms: Option<u64>,
    /// Whether the binary of the desired assignment is local (true when
    /// none is needed).
    pub binary_ready: bool,
}

/// The timeouts a slot obeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotTimeouts {
    /// `supervisor.worker.timeout.secs` in ms: a running worker whose
    /// heartbeat is older is restarted.
    pub worker_ms: u64,
    /// `supervisor.worker.start.timeout.secs` in ms: a starting worker
    /// that has not beaten by then is restarted.
    pub start_ms: u64,
    /// `supervisor.worker.shutdown.sleep.secs` in ms: how long a worker
    /// asked to stop may take before it is force-killed.
    pub shutdown_ms: u64,
}

/// What the supervisor must do for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask the worker to stop (SIGTERM) so its components clean up.
    Terminate(KillReason),
    /// Kill the worker at once (SIGKILL), reap it and drop its handle;
    /// harmless when it already exited.
    ForceKill(KillReason),
    /// Launch a worker for this assignment.
    Launch(LocalAssignment),
}

/// One step of a slot's lifecycle. Pure: the caller observes, calls this,
/// then carries out the actions in order.
pub fn step(
    state: &SlotState,
    desired: Option<&LocalAssignment>,
    obs: &Observation,
    t: &SlotTimeouts,
) -> (SlotState, Vec<Action>) {
    // What a slot with no worker does next.
    let from_empty = |mut actions: Vec<Action>| match desired {
        None => (SlotState::Empty, actions),
        Some(a) if obs.binary_ready => {
            actions.push(Action::Launch(a.clone()));
            (
                SlotState::Starting {
                    assignment: a.clone(),
                    since_ms: obs.now_ms,
                },
                actions,
            )
        }
        Some(a) => (
            SlotState::WaitingForBinary {
                assignment: a.clone(),
            },
            actions,
        ),
    };
    // Stops a worker: at once when it already exited, else gracefully.
    let stop = |reason: KillReason| {
        if obs.process_alive {
            (
                SlotState::Killing {
                    reason,
                    since_ms: obs.now_ms,
                },
                vec![Action::Terminate(reason)],
            )
        } else {
            from_empty(vec![Action::ForceKill(reason)])
        }
    };
    let changed = |assignment: &LocalAssignment| match desired {
        None => Some(KillReason::Unassigned),
        Some(d) if d != assignment => Some(KillReason::AssignmentChanged),
        Some(_) => None,
    };
    match state {
        SlotState::Empty | SlotState::WaitingForBinary { .. } => from_empty(Vec::new()),
        SlotState::Starting {
            assignment,
            since_ms,
        } => {
            if let Some(reason) = changed(assignment) {
                stop(reason)
            } else if !obs.process_alive {
                stop(KillReason::ProcessExited)
            } else if obs.heartbeat_ms.is_some_and(|h| h >= *since_ms) {
                (
                    SlotState::Running {
                        assignment: assignment.clone(),
                    },
                    Vec::new(),
                )
            } else if obs.now_ms.saturating_sub(*since_ms) > t.start_ms {
                stop(KillReason::StartTimeout)
            } else {
                (state.clone(), Vec::new())
            }
        }
        SlotState::Running { assignment } => {
            if let Some(reason) = changed(assignment) {
                stop(reason)
            } else if !obs.process_alive {
                stop(KillReason::ProcessExited)
            } else if obs
                .heartbeat_ms
                .is_none_or(|h| obs.now_ms.saturating_sub(h) > t.worker_ms)
            {
                stop(KillReason::HeartbeatTimeout)
            } else {
                (state.clone(), Vec::new())
            }
        }
        SlotState::Killing { reason, since_ms } => {
            // Exited within the grace, or still alive after it: SIGKILL
            // (a no-op for the exited one) and reap.
            if !obs.process_alive || obs.now_ms.saturating_sub(*since_ms) >= t.shutdown_ms {
                from_empty(vec![Action::ForceKill(*reason)])
            } else {
                (state.clone(), Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SlotTimeouts = SlotTimeouts {
        worker_ms: 30_000,
        start_ms: 120_000,
        shutdown_ms: 3_000,
    };

    fn a(topology: &str) -> LocalAssignment {
        LocalAssignment {
            topology_id: topology.into(),
            executors: vec![ExecutorSpec {
                component: "c".into(),
                tasks: 1..2,
            }],
        }
    }

    fn obs(now_ms: u64, alive: bool, hb: Option<u64>) -> Observation {
        Observation {
            now_ms,
            process_alive: alive,
            heartbeat_ms: hb,
            binary_ready: true,
        }
    }

    fn starting(since_ms: u64) -> SlotState {
        SlotState::Starting {
            assignment: a("t"),
            since_ms,
        }
    }

    fn running() -> SlotState {
        SlotState::Running { assignment: a("t") }
    }

    fn killing(reason: KillReason, since_ms: u64) -> SlotState {
        SlotState::Killing { reason, since_ms }
    }

    /// Each case: state, desired topology, observation → state, actions.
    type Case = (
        SlotState,
        Option<&'static str>,
        Observation,
        SlotState,
        Vec<Action>,
    );

    fn check(cases: Vec<Case>) {
        for (i, (state, want, o, next, actions)) in cases.into_iter().enumerate() {
            let desired = want.map(a);
            let got = step(&state, desired.as_ref(), &o, &T);
            assert_eq!(got, (next, actions), "case {i}: {state:?} wanting {want:?}");
        }
    }

    #[test]
    fn empty_slot_launches_what_is_assigned_once_its_binary_is_local() {
        let waiting = SlotState::WaitingForBinary { assignment: a("t") };
        let no_binary = Observation {
            binary_ready: false,
            ..obs(5, false, None)
        };
        check(vec![
            (
                SlotState::Empty,
                Some("t"),
                obs(5, false, None),
                starting(5),
                vec![Action::Launch(a("t"))],
            ),
            (
                SlotState::Empty,
                None,
                obs(5, false, None),
                SlotState::Empty,
                vec![],
            ),
            (
                SlotState::Empty,
                Some("t"),
                no_binary,
                waiting.clone(),
                vec![],
            ),
            (
                waiting.clone(),
                Some("t"),
                no_binary,
                waiting.clone(),
                vec![],
            ),
            (
                waiting.clone(),
                Some("t"),
                obs(9, false, None),
                starting(9),
                vec![Action::Launch(a("t"))],
            ),
            // Unassigned while waiting: nothing to kill.
            (waiting, None, no_binary, SlotState::Empty, vec![]),
        ]);
    }

    #[test]
    fn starting_becomes_running_on_first_heartbeat_after_launch() {
        check(vec![
            (
                starting(10),
                Some("t"),
                obs(20, true, Some(15)),
                running(),
                vec![],
            ),
            // A heartbeat from before the launch (a previous worker) does not count.
            (
                starting(10),
                Some("t"),
                obs(20, true, Some(5)),
                starting(10),
                vec![],
            ),
        ]);
    }

    #[test]
    fn silent_workers_are_stopped_gracefully_and_exited_ones_relaunched() {
        use KillReason::*;
        check(vec![
            (
                starting(0),
                Some("t"),
                obs(120_001, true, None),
                killing(StartTimeout, 120_001),
                vec![Action::Terminate(StartTimeout)],
            ),
            (
                running(),
                Some("t"),
                obs(40_000, true, Some(9_999)),
                killing(HeartbeatTimeout, 40_000),
                vec![Action::Terminate(HeartbeatTimeout)],
            ),
            (
                running(),
                Some("t"),
                obs(40_000, true, Some(10_000)),
                running(),
                vec![],
            ),
            // An exited worker is reaped and relaunched in the same step.
            (
                running(),
                Some("t"),
                obs(1000, false, Some(900)),
                starting(1000),
                vec![Action::ForceKill(ProcessExited), Action::Launch(a("t"))],
            ),
            (
                starting(0),
                Some("t"),
                obs(10, false, None),
                starting(10),
                vec![Action::ForceKill(ProcessExited), Action::Launch(a("t"))],
            ),
        ]);
    }

    #[test]
    fn unassigned_or_reassigned_worker_is_stopped_then_replaced() {
        use KillReason::*;
        check(vec![
            (
                running(),
                None,
                obs(1, true, Some(1)),
                killing(Unassigned, 1),
                vec![Action::Terminate(Unassigned)],
            ),
            (
                starting(0),
                Some("u"),
                obs(1, true, None),
                killing(AssignmentChanged, 1),
                vec![Action::Terminate(AssignmentChanged)],
            ),
        ]);
    }

    #[test]
    fn killing_waits_for_the_worker_then_forces_it_after_the_grace() {
        use KillReason::*;
        let k = killing(AssignmentChanged, 100);
        check(vec![
            (
                k.clone(),
                Some("u"),
                obs(3_099, true, None),
                k.clone(),
                vec![],
            ),
            // Exited within the grace: reaped, the new assignment launched.
            (
                k.clone(),
                Some("u"),
                obs(2_000, false, None),
                SlotState::Starting {
                    assignment: a("u"),
                    since_ms: 2_000,
                },
                vec![Action::ForceKill(AssignmentChanged), Action::Launch(a("u"))],
            ),
            // Still alive at the end of the grace: SIGKILL.
            (
                k.clone(),
                None,
                obs(3_100, true, None),
                SlotState::Empty,
                vec![Action::ForceKill(AssignmentChanged)],
            ),
            // The binary of the next assignment is not local yet.
            (
                k,
                Some("u"),
                Observation {
                    binary_ready: false,
                    ..obs(3_100, true, None)
                },
                SlotState::WaitingForBinary { assignment: a("u") },
                vec![Action::ForceKill(AssignmentChanged)],
            ),
        ]);
    }
}
