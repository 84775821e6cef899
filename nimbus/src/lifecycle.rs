//! A topology's lifecycle as one table of legal transitions (Storm's
//! `TopologyStateTransition`s in `Nimbus.java`): active and inactive
//! topologies may be activated, deactivated, rebalanced and killed; a
//! rebalancing one may only be killed until its rebalance is due; a killed
//! one may be killed again (with a new wait) until it is removed. Timed
//! actions are stored on the record (`pending`) and carried out by the
//! monitor round once due ([`Event::Due`]).

use squall_cluster::schema::{PendingAction, TopologyStatus};
use std::collections::BTreeMap;

/// The longest wait a kill or rebalance may ask for, in seconds (one
/// week); longer waits are refused rather than overflowing the clock.
pub const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;

/// What happens to a topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `activate`: spouts run.
    Activate,
    /// `deactivate`: spouts pause.
    Deactivate,
    /// `kill -w`: deactivate, then remove after `wait_secs`.
    Kill {
        /// Seconds before removal.
        wait_secs: u64,
    },
    /// `rebalance -w`: deactivate, then reschedule after `wait_secs` with
    /// new counts and restore the status.
    Rebalance {
        /// Seconds before rescheduling.
        wait_secs: u64,
        /// New worker count.
        workers: Option<u32>,
        /// New executor counts by component.
        executors: BTreeMap<String, u32>,
    },
    /// The monitor round at `now`: carries out a pending action that is
    /// due.
    Due,
}

/// A topology's place in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The status.
    pub status: TopologyStatus,
    /// The timed action waiting, if any.
    pub pending: Option<PendingAction>,
}

/// What a transition asks of the caller besides the new lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// Remove the topology (a due kill).
    Remove,
    /// Apply the new counts and reschedule from scratch (a due rebalance).
    Reschedule {
        /// New worker count.
        workers: Option<u32>,
        /// New executor counts by component.
        executors: BTreeMap<String, u32>,
    },
}

/// Why an event is refused in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The event is not legal in this status.
    #[error("cannot {event} a topology that is {status:?}; try again when that is done")]
    Illegal {
        /// The event, as a verb.
        event: &'static str,
        /// The current status.
        status: TopologyStatus,
    },
    /// The wait is longer than [`MAX_WAIT_SECS`].
    #[error("a wait of {0} s is longer than the {MAX_WAIT_SECS} s allowed")]
    WaitTooLong(u64),
}

fn verb(e: &Event) -> &'static str {
    match e {
        Event::Activate => "activate",
        Event::Deactivate => "deactivate",
        Event::Kill { .. } => "kill",
        Event::Rebalance { .. } => "rebalance",
        Event::Due => "advance",
    }
}

fn at(now_ms: u64, wait_secs: u64) -> Result<u64, TransitionError> {
    if wait_secs > MAX_WAIT_SECS {
        return Err(TransitionError::WaitTooLong(wait_secs));
    }
    Ok(now_ms.saturating_add(wait_secs * 1000))
}

/// The one transition function. Pure: from the lifecycle, an event and
/// the time (ms since the Unix epoch), the next lifecycle and its effect.
///
/// # Errors
/// [`TransitionError`] when the event is not legal now.
pub fn transition(
    current: &Lifecycle,
    event: Event,
    now_ms: u64,
) -> Result<(Lifecycle, Effect), TransitionError> {
    use TopologyStatus::*;
    let same = || Ok((current.clone(), Effect::None));
    let illegal = |e: &Event| {
        Err(TransitionError::Illegal {
            event: verb(e),
            status: current.status,
        })
    };
    let set = |status, pending| Ok((Lifecycle { status, pending }, Effect::None));
    match (current.status, event) {
        (Active | Inactive, Event::Activate) => set(Active, None),
        (Active | Inactive, Event::Deactivate) => set(Inactive, None),
        (Active | Inactive | Rebalancing | Killed, Event::Kill { wait_secs }) => set(
            Killed,
            Some(PendingAction::Kill {
                at_ms: at(now_ms, wait_secs)?,
            }),
        ),
        (
            Active | Inactive,
            Event::Rebalance {
                wait_secs,
                workers,
                executors,
            },
        ) => set(
            Rebalancing,
            Some(PendingAction::Rebalance {
                at_ms: at(now_ms, wait_secs)?,
                restore: current.status,
                workers,
                executors,
            }),
        ),
        (_, Event::Due) => match &current.pending {
            Some(PendingAction::Kill { at_ms }) if *at_ms <= now_ms => {
                Ok((current.clone(), Effect::Remove))
            }
            Some(PendingAction::Rebalance {
                at_ms,
                restore,
                workers,
                executors,
            }) if *at_ms <= now_ms => Ok((
                Lifecycle {
                    status: *restore,
                    pending: None,
                },
                Effect::Reschedule {
                    workers: *workers,
                    executors: executors.clone(),
                },
            )),
            _ => same(),
        },
        (Rebalancing | Killed, e) => illegal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TopologyStatus::*;

    fn lc(status: TopologyStatus, pending: Option<PendingAction>) -> Lifecycle {
        Lifecycle { status, pending }
    }

    fn kill_at(at_ms: u64) -> Option<PendingAction> {
        Some(PendingAction::Kill { at_ms })
    }

    fn rebalance_at(at_ms: u64, restore: TopologyStatus) -> Option<PendingAction> {
        Some(PendingAction::Rebalance {
            at_ms,
            restore,
            workers: Some(2),
            executors: BTreeMap::new(),
        })
    }

    fn rebalance(wait_secs: u64) -> Event {
        Event::Rebalance {
            wait_secs,
            workers: Some(2),
            executors: BTreeMap::new(),
        }
    }

    #[test]
    fn the_table() {
        let reschedule = Effect::Reschedule {
            workers: Some(2),
            executors: BTreeMap::new(),
        };
        // (from, event, at ms) → Ok((to, effect)) or the refused verb.
        let legal = vec![
            (
                lc(Active, None),
                Event::Deactivate,
                0,
                lc(Inactive, None),
                Effect::None,
            ),
            (
                lc(Inactive, None),
                Event::Activate,
                0,
                lc(Active, None),
                Effect::None,
            ),
            (
                lc(Active, None),
                Event::Activate,
                0,
                lc(Active, None),
                Effect::None,
            ),
            (
                lc(Active, None),
                Event::Kill { wait_secs: 30 },
                1_000,
                lc(Killed, kill_at(31_000)),
                Effect::None,
            ),
            (
                lc(Inactive, None),
                rebalance(5),
                1_000,
                lc(Rebalancing, rebalance_at(6_000, Inactive)),
                Effect::None,
            ),
            // A second kill restarts the wait; a rebalancing topology may be killed.
            (
                lc(Killed, kill_at(31_000)),
                Event::Kill { wait_secs: 0 },
                2_000,
                lc(Killed, kill_at(2_000)),
                Effect::None,
            ),
            (
                lc(Rebalancing, rebalance_at(6_000, Active)),
                Event::Kill { wait_secs: 1 },
                2_000,
                lc(Killed, kill_at(3_000)),
                Effect::None,
            ),
            // Due actions.
            (
                lc(Killed, kill_at(31_000)),
                Event::Due,
                30_999,
                lc(Killed, kill_at(31_000)),
                Effect::None,
            ),
            (
                lc(Killed, kill_at(31_000)),
                Event::Due,
                31_000,
                lc(Killed, kill_at(31_000)),
                Effect::Remove,
            ),
            (
                lc(Rebalancing, rebalance_at(6_000, Inactive)),
                Event::Due,
                6_000,
                lc(Inactive, None),
                reschedule,
            ),
            (
                lc(Active, None),
                Event::Due,
                6_000,
                lc(Active, None),
                Effect::None,
            ),
        ];
        for (i, (from, event, now, to, effect)) in legal.into_iter().enumerate() {
            assert_eq!(transition(&from, event, now), Ok((to, effect)), "case {i}");
        }
        let refused = vec![
            (lc(Killed, kill_at(1)), Event::Activate),
            (lc(Killed, kill_at(1)), Event::Deactivate),
            (lc(Killed, kill_at(1)), rebalance(0)),
            (lc(Rebalancing, rebalance_at(1, Active)), Event::Activate),
            (lc(Rebalancing, rebalance_at(1, Active)), rebalance(0)),
        ];
        for (from, event) in refused {
            let status = from.status;
            assert!(matches!(
                transition(&from, event, 0),
                Err(TransitionError::Illegal { status: s, .. }) if s == status
            ));
        }
    }

    #[test]
    fn waits_that_would_overflow_the_clock_are_refused() {
        let r = transition(
            &lc(Active, None),
            Event::Kill {
                wait_secs: u64::MAX,
            },
            5,
        );
        assert_eq!(r, Err(TransitionError::WaitTooLong(u64::MAX)));
        let ok = transition(
            &lc(Active, None),
            Event::Kill {
                wait_secs: MAX_WAIT_SECS,
            },
            u64::MAX,
        );
        assert_eq!(ok.unwrap().0.pending, kill_at(u64::MAX));
    }
}
