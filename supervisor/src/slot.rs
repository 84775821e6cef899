//! The per-slot worker lifecycle as a pure step function: given what the
//! slot runs, what it should run and what was observed, the next state and
//! the actions to take (Storm's `Slot` state machine, simplified).

use squall_topology_api::ExecutorSpec;

/// What a slot should run: one topology's executors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAssignment {
    /// The topology.
    pub topology_id: String,
    /// The executors, in order.
    pub executors: Vec<ExecutorSpec>,
}

/// A slot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    /// No worker.
    Empty,
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
}

/// What the supervisor saw of a slot's worker this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Now, ms since the Unix epoch.
    pub now_ms: u64,
    /// Whether the worker process is still running.
    pub process_alive: bool,
    /// Time of its latest local heartbeat, ms since the Unix epoch.
    pub heartbeat_ms: Option<u64>,
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
}

/// What the supervisor must do for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Kill the slot's worker process (and reap it).
    Kill {
        /// Why, for the log.
        reason: String,
    },
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
    let launch = |a: &LocalAssignment, mut actions: Vec<Action>| {
        actions.push(Action::Launch(a.clone()));
        (
            SlotState::Starting {
                assignment: a.clone(),
                since_ms: obs.now_ms,
            },
            actions,
        )
    };
    let replace = |reason: String| {
        let kill = vec![Action::Kill { reason }];
        match desired {
            Some(a) => launch(a, kill),
            None => (SlotState::Empty, kill),
        }
    };
    match state {
        SlotState::Empty => match desired {
            Some(a) => launch(a, Vec::new()),
            None => (SlotState::Empty, Vec::new()),
        },
        SlotState::Starting {
            assignment,
            since_ms,
        } => {
            if desired != Some(assignment) {
                replace("assignment changed".into())
            } else if !obs.process_alive {
                replace("worker exited while starting".into())
            } else if obs.heartbeat_ms.is_some_and(|h| h >= *since_ms) {
                (
                    SlotState::Running {
                        assignment: assignment.clone(),
                    },
                    Vec::new(),
                )
            } else if obs.now_ms.saturating_sub(*since_ms) > t.start_ms {
                replace(format!("no heartbeat within {} ms of launch", t.start_ms))
            } else {
                (state.clone(), Vec::new())
            }
        }
        SlotState::Running { assignment } => {
            if desired != Some(assignment) {
                replace("assignment changed".into())
            } else if !obs.process_alive {
                replace("worker exited".into())
            } else if obs
                .heartbeat_ms
                .is_none_or(|h| obs.now_ms.saturating_sub(h) > t.worker_ms)
            {
                replace(format!("heartbeat older than {} ms", t.worker_ms))
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

    fn is_kill(actions: &[Action]) -> bool {
        matches!(actions.first(), Some(Action::Kill { .. }))
    }

    #[test]
    fn empty_slot_launches_what_is_assigned() {
        let (s, acts) = step(&SlotState::Empty, Some(&a("t")), &obs(5, false, None), &T);
        assert_eq!(s, starting(5));
        assert_eq!(acts, vec![Action::Launch(a("t"))]);
        let (s, acts) = step(&SlotState::Empty, None, &obs(5, false, None), &T);
        assert_eq!((s, acts), (SlotState::Empty, vec![]));
    }

    #[test]
    fn starting_becomes_running_on_first_heartbeat() {
        let (s, acts) = step(&starting(10), Some(&a("t")), &obs(20, true, Some(15)), &T);
        assert_eq!((s, acts), (running(), vec![]));
        // A heartbeat from before the launch (a previous worker) does not count.
        let (s, acts) = step(&starting(10), Some(&a("t")), &obs(20, true, Some(5)), &T);
        assert_eq!((s, acts), (starting(10), vec![]));
    }

    #[test]
    fn starting_worker_that_never_beats_is_restarted() {
        let (s, acts) = step(&starting(0), Some(&a("t")), &obs(120_001, true, None), &T);
        assert_eq!(s, starting(120_001));
        assert!(is_kill(&acts));
        assert_eq!(acts[1], Action::Launch(a("t")));
    }

    #[test]
    fn dead_or_silent_running_worker_is_restarted() {
        let (s, acts) = step(&running(), Some(&a("t")), &obs(1000, false, Some(900)), &T);
        assert_eq!(s, starting(1000));
        assert!(is_kill(&acts) && acts.len() == 2);
        let (s, acts) = step(
            &running(),
            Some(&a("t")),
            &obs(40_000, true, Some(9_999)),
            &T,
        );
        assert_eq!(s, starting(40_000));
        assert!(is_kill(&acts));
        let (s, acts) = step(
            &running(),
            Some(&a("t")),
            &obs(40_000, true, Some(10_000)),
            &T,
        );
        assert_eq!((s, acts), (running(), vec![]));
    }

    #[test]
    fn unassigned_or_reassigned_worker_is_killed() {
        let (s, acts) = step(&running(), None, &obs(1, true, Some(1)), &T);
        assert_eq!(s, SlotState::Empty);
        assert!(is_kill(&acts) && acts.len() == 1);
        let (s, acts) = step(&starting(0), Some(&a("u")), &obs(1, true, None), &T);
        assert_eq!(
            s,
            SlotState::Starting {
                assignment: a("u"),
                since_ms: 1
            }
        );
        assert!(is_kill(&acts));
        assert_eq!(acts[1], Action::Launch(a("u")));
    }
}
