//! The even scheduler: a pure function from a topology's executors, its
//! current assignment and the free slots to a new assignment (Storm's
//! `EvenScheduler.scheduleTopology`).

use squall_cluster::schema::WorkerSlot;
use squall_topology_api::ExecutorSpec;
use std::collections::{BTreeMap, BTreeSet};

/// Why a topology could not be scheduled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Nothing to run on: no live slot holds the topology and none is free.
    #[error("no free worker slots for topology {topology:?} ({executors} executors to place)")]
    NoSlots {
        /// The topology.
        topology: String,
        /// Executors waiting.
        executors: usize,
    },
}

/// Orders free slots so that consecutive picks land on different
/// supervisors: the first slot of every supervisor, then the second of
/// every supervisor, and so on (Storm's `sortSlots`). Supervisors and ports
/// are taken in sorted order, so the result is deterministic.
pub fn interleave_slots(free: &[WorkerSlot]) -> Vec<WorkerSlot> {
    let mut by_supervisor: BTreeMap<&str, Vec<&WorkerSlot>> = BTreeMap::new();
    for s in free {
        by_supervisor.entry(&s.supervisor).or_default().push(s);
    }
    for slots in by_supervisor.values_mut() {
        slots.sort();
    }
    let longest = by_supervisor.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| {
            by_supervisor
                .values()
                .filter_map(move |v| v.get(i).copied().cloned())
        })
        .collect()
}

/// Assigns `executors` of topology `topology` to at most `num_workers`
/// slots. Executors whose slot in `current` is still alive (listed in
/// `alive`) stay where they are; the others are dealt round-robin over the
/// kept slots' complement: free slots picked in [`interleave_slots`] order,
/// so a topology's workers spread over supervisors. More executors than
/// slots share slots; fewer free slots than wanted workers uses what there
/// is. Returns `(executor, slot)` pairs in executor order.
pub fn schedule_even(
    topology: &str,
    executors: &[ExecutorSpec],
    num_workers: usize,
    current: &[(ExecutorSpec, WorkerSlot)],
    alive: &BTreeSet<WorkerSlot>,
    free: &[WorkerSlot],
) -> Result<Vec<(ExecutorSpec, WorkerSlot)>, ScheduleError> {
    let kept: BTreeMap<(u32, u32), &WorkerSlot> = current
        .iter()
        .filter(|(_, slot)| alive.contains(slot))
        .map(|(e, slot)| ((e.tasks.start, e.tasks.end), slot))
        .collect();
    let kept_slots: BTreeSet<&WorkerSlot> = kept.values().copied().collect();
    let wanted = num_workers.max(1);
    let new_slots: Vec<WorkerSlot> = interleave_slots(free)
        .into_iter()
        .filter(|s| !kept_slots.contains(s))
        .take(wanted.saturating_sub(kept_slots.len()))
        .collect();
    let targets: Vec<&WorkerSlot> = if new_slots.is_empty() {
        kept_slots.iter().copied().collect()
    } else {
        new_slots.iter().collect()
    };
    let mut next = 0;
    let mut out = Vec::with_capacity(executors.len());
    for e in executors {
        let slot = match kept.get(&(e.tasks.start, e.tasks.end)) {
            Some(slot) => (*slot).clone(),
            None => {
                let Some(slot) = targets.get(next % targets.len().max(1)) else {
                    return Err(ScheduleError::NoSlots {
                        topology: topology.to_owned(),
                        executors: executors.len(),
                    });
                };
                next += 1;
                (*slot).clone()
            }
        };
        out.push((e.clone(), slot));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(sup: &str, port: u16) -> WorkerSlot {
        WorkerSlot {
            supervisor: sup.into(),
            host: format!("host-{sup}"),
            port,
        }
    }

    fn executors(n: u32) -> Vec<ExecutorSpec> {
        (0..n)
            .map(|i| ExecutorSpec {
                component: "c".into(),
                tasks: i + 1..i + 2,
            })
            .collect()
    }

    fn free() -> Vec<WorkerSlot> {
        vec![
            slot("a", 6700),
            slot("a", 6701),
            slot("b", 6700),
            slot("b", 6701),
        ]
    }

    fn per_slot(a: &[(ExecutorSpec, WorkerSlot)]) -> BTreeMap<WorkerSlot, usize> {
        let mut m = BTreeMap::new();
        for (_, s) in a {
            *m.entry(s.clone()).or_default() += 1;
        }
        m
    }

    #[test]
    fn slots_interleave_across_supervisors() {
        let order = interleave_slots(&free());
        assert_eq!(
            order,
            vec![
                slot("a", 6700),
                slot("b", 6700),
                slot("a", 6701),
                slot("b", 6701)
            ]
        );
    }

    #[test]
    fn even_spread_over_workers_and_supervisors() {
        let a = schedule_even("t", &executors(6), 2, &[], &BTreeSet::new(), &free()).unwrap();
        let counts = per_slot(&a);
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[&slot("a", 6700)], 3);
        assert_eq!(
            counts[&slot("b", 6700)],
            3,
            "the second worker goes to the other supervisor"
        );
    }

    #[test]
    fn more_executors_than_slots_share_slots_evenly() {
        let a = schedule_even("t", &executors(10), 8, &[], &BTreeSet::new(), &free()).unwrap();
        let counts = per_slot(&a);
        assert_eq!(counts.len(), 4, "only 4 slots exist");
        assert!(counts.values().all(|c| (2..=3).contains(c)), "{counts:?}");
    }

    #[test]
    fn zero_free_slots_is_an_error() {
        let e = schedule_even("t", &executors(3), 2, &[], &BTreeSet::new(), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"no free worker slots for topology "t" (3 executors to place)"#
        );
    }

    #[test]
    fn executors_on_live_slots_stay_and_dead_ones_move() {
        let execs = executors(4);
        let first = schedule_even("t", &execs, 2, &[], &BTreeSet::new(), &free()).unwrap();
        // Supervisor b dies: its slots are neither alive nor free.
        let alive: BTreeSet<WorkerSlot> = [slot("a", 6700)].into();
        let free_now = vec![slot("a", 6701)];
        let second = schedule_even("t", &execs, 2, &first, &alive, &free_now).unwrap();
        for ((e1, s1), (e2, s2)) in first.iter().zip(&second) {
            assert_eq!(e1, e2);
            if *s1 == slot("a", 6700) {
                assert_eq!(s2, s1, "executors on a live slot stay");
            } else {
                assert_eq!(
                    *s2,
                    slot("a", 6701),
                    "executors of the dead supervisor move"
                );
            }
        }
    }

    #[test]
    fn no_free_slots_but_live_ones_keeps_the_topology_running() {
        let execs = executors(2);
        let first = schedule_even("t", &execs, 1, &[], &BTreeSet::new(), &free()).unwrap();
        let alive: BTreeSet<WorkerSlot> = first.iter().map(|(_, s)| s.clone()).collect();
        let again = schedule_even("t", &execs, 1, &first, &alive, &[]).unwrap();
        assert_eq!(again, first);
    }
}
