//! The monitor round's decision as a pure function (Storm's
//! `mk-assignments`): from a snapshot of the cluster state, what Nimbus
//! remembers between rounds and the time, the typed writes to make.
//! [`crate::Monitor`] reads the snapshot, calls [`decide`] and applies the
//! writes; nothing here reads a clock or the store.
//!
//! A round carries out due kills and rebalances (through
//! [`crate::lifecycle::transition`]), judges each assigned slot alive when
//! its supervisor is registered and its worker's heartbeat changed within
//! `nimbus.task.timeout.secs` by Nimbus's clock (or it is still within
//! `nimbus.task.launch.secs` of being assigned), and schedules every
//! topology whose executors are not all on live slots with
//! [`schedule_even`].

use crate::lifecycle::{transition, Effect, Event, Lifecycle};
use crate::scheduler::schedule_even;
use squall_cluster::schema::{Assignment, SupervisorInfo, TopologyRecord, WorkerSlot};
use squall_cluster::Version;
use squall_topology_api::{ExecutorSpec, TaskLayout};
use std::collections::{BTreeMap, BTreeSet};

/// What the round observed in the cluster state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The live supervisors.
    pub supervisors: Vec<SupervisorInfo>,
    /// Every topology record.
    pub topologies: Vec<TopologyRecord>,
    /// Each topology's assignment and its version.
    pub assignments: BTreeMap<String, (Assignment, Version)>,
    /// Each topology's workers' latest heartbeat times (as the workers
    /// wrote them, ms since the Unix epoch).
    pub heartbeats: BTreeMap<String, BTreeMap<WorkerSlot, u64>>,
    /// Since when (Nimbus's clock, ms) this Nimbus has been hearing the
    /// workers' beats, which it keeps in memory only: since it began to
    /// lead. A slot not heard from yet is alive until this plus
    /// `nimbus.task.timeout.secs`, so a new leader does not reschedule
    /// workers it has not heard from yet (Storm 2's heartbeat recovery
    /// after failover). 0 for none.
    pub heartbeats_since_ms: u64,
}

/// What Nimbus remembers between rounds: for each worker, its last
/// heartbeat value and when (by Nimbus's clock, ms) that value was first
/// seen, so worker clocks never matter. A restarted or newly leading
/// Nimbus starts empty, which gives every worker a fresh timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    seen: BTreeMap<(String, WorkerSlot), (u64, u64)>,
}

/// The timeouts a round judges by, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `nimbus.task.timeout.secs`: a worker whose heartbeat has not
    /// changed for this long is dead.
    pub task_ms: u64,
    /// `nimbus.task.launch.secs`: a newly assigned slot has this long to
    /// send its first heartbeat.
    pub launch_ms: u64,
}

/// One change to the cluster state, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Remove everything stored for the topology (and forget which
    /// Nimbuses hold its binary).
    RemoveTopology {
        /// The topology.
        id: String,
        /// Its binary.
        binary_hash: Option<String>,
    },
    /// Store the topology record.
    PutTopology(Box<TopologyRecord>),
    /// Write an assignment only if it is still at `expected_version`
    /// (create when `None`): a stale Nimbus cannot overwrite a newer one.
    SetAssignment {
        /// The new assignment.
        assignment: Assignment,
        /// The version read.
        expected_version: Option<Version>,
    },
}

/// Something the round noticed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A due kill removes the topology.
    Killed(String),
    /// A due rebalance reschedules the topology.
    Rebalanced(String),
    /// A slot's supervisor is gone.
    SupervisorGone(String, WorkerSlot),
    /// A slot's worker stopped beating.
    WorkerSilent(String, WorkerSlot),
    /// A topology got a new assignment over this many workers.
    Assigned(String, usize),
    /// A topology could not be scheduled.
    CannotSchedule(String, String),
}

/// A round's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// What to log.
    pub notes: Vec<Note>,
    /// What to remember for the next round.
    pub memory: Memory,
}

/// One monitor round. Pure.
pub fn decide(snap: &Snapshot, memory: &Memory, now_ms: u64, t: &Timeouts) -> Decision {
    let mut writes = Vec::new();
    let mut notes = Vec::new();
    let all_slots: Vec<WorkerSlot> = snap
        .supervisors
        .iter()
        .flat_map(|s| {
            s.ports.iter().map(|p| WorkerSlot {
                supervisor: s.id.clone(),
                host: s.host.clone(),
                port: *p,
            })
        })
        .collect();
    let registered: BTreeSet<&WorkerSlot> = all_slots.iter().collect();
    let mut topologies: Vec<&TopologyRecord> = snap.topologies.iter().collect();
    topologies.sort_by(|a, b| (a.submitted_at_ms, &a.id).cmp(&(b.submitted_at_ms, &b.id)));

    // Due kills and rebalances first.
    let mut kept: Vec<(TopologyRecord, bool)> = Vec::new();
    for t in topologies {
        let now = Lifecycle {
            status: t.status,
            pending: t.pending.clone(),
        };
        match transition(&now, Event::Due, now_ms) {
            Ok((_, Effect::Remove)) => {
                notes.push(Note::Killed(t.id.clone()));
                writes.push(Write::RemoveTopology {
                    id: t.id.clone(),
                    binary_hash: t.binary_hash.clone(),
                });
            }
            Ok((next, Effect::Reschedule { workers, executors })) => {
                let mut r = t.clone();
                if let Some(w) = workers {
                    r.config.workers = w;
                }
                for (c, n) in executors {
                    if let Some(spec) = r.spec.components.get_mut(c.as_str()) {
                        spec.parallelism = n;
                    }
                }
                r.status = next.status;
                r.pending = next.pending;
                notes.push(Note::Rebalanced(r.id.clone()));
                writes.push(Write::PutTopology(Box::new(r.clone())));
                kept.push((r, true));
            }
            Ok((_, Effect::None)) | Err(_) => kept.push((t.clone(), false)),
        }
    }

    // Liveness of each assigned slot.
    let mut next_memory = Memory::default();
    // Live slots per topology: a slot is alive for the topology whose
    // worker beats there, not for another one assigned to it.
    let mut alive: BTreeMap<&str, BTreeSet<WorkerSlot>> = BTreeMap::new();
    for (topo, rescheduled) in &kept {
        // A due rebalance gives up its slots.
        let Some((a, _)) = snap.assignments.get(&topo.id).filter(|_| !rescheduled) else {
            continue;
        };
        let no_beats = BTreeMap::new();
        let beats = snap.heartbeats.get(&topo.id).unwrap_or(&no_beats);
        let assigned: BTreeMap<&WorkerSlot, u64> =
            a.slot_assigned_ms.iter().map(|(s, ms)| (s, *ms)).collect();
        for slot in a.slots() {
            let key = (topo.id.clone(), slot.clone());
            let beat = beats.get(&slot).copied();
            let fresh = match beat {
                Some(b) => {
                    let seen_at = match memory.seen.get(&key) {
                        Some(&(old, at)) if old == b => at,
                        _ => now_ms,
                    };
                    next_memory.seen.insert(key, (b, seen_at));
                    now_ms.saturating_sub(seen_at) < t.task_ms
                }
                None => now_ms.saturating_sub(snap.heartbeats_since_ms) < t.task_ms,
            };
            if !registered.contains(&slot) {
                notes.push(Note::SupervisorGone(topo.id.clone(), slot));
                continue;
            }
            let since = assigned.get(&slot).copied().unwrap_or(a.assigned_at_ms);
            let launching =
                now_ms.saturating_sub(since) < t.launch_ms && beat.is_none_or(|b| b < since);
            if fresh || launching {
                alive.entry(topo.id.as_str()).or_default().insert(slot);
            } else {
                notes.push(Note::WorkerSilent(topo.id.clone(), slot));
            }
        }
    }

    // Schedule each topology over its live slots and the free ones.
    let mut used: BTreeSet<WorkerSlot> = BTreeSet::new();
    for (topo, _) in &kept {
        if let Some((a, _)) = snap.assignments.get(&topo.id) {
            let live = alive.get(topo.id.as_str());
            used.extend(
                a.slots()
                    .into_iter()
                    .filter(|s| live.is_some_and(|l| l.contains(s))),
            );
        }
    }
    for (topo, rescheduled) in &kept {
        let current = snap.assignments.get(&topo.id);
        let (current, version) = match current {
            // A due rebalance places everything afresh.
            Some((_, v)) if *rescheduled => (None, Some(*v)),
            Some((a, v)) => (Some(a), Some(*v)),
            None => (None, None),
        };
        let none = BTreeSet::new();
        let live = alive.get(topo.id.as_str()).unwrap_or(&none);
        let placed = place(topo, current, live, &mut used, &all_slots, now_ms);
        match placed {
            Placement::Keep => {}
            Placement::Failed(e) => {
                notes.push(Note::CannotSchedule(topo.id.clone(), e));
                // None of its slots is alive for it: give them up rather
                // than leave them named in two assignments. It is placed
                // again once slots are free.
                if let (Some(a), Some(v)) = (current, version) {
                    if !a.executors.is_empty() {
                        writes.push(Write::SetAssignment {
                            assignment: Assignment {
                                executors: Vec::new(),
                                slot_assigned_ms: Vec::new(),
                                assigned_at_ms: now_ms,
                                topology_id: a.topology_id.clone(),
                            },
                            expected_version: Some(v),
                        });
                    }
                }
            }
            Placement::New(next) => {
                notes.push(Note::Assigned(topo.id.clone(), next.slots().len()));
                writes.push(Write::SetAssignment {
                    assignment: next,
                    expected_version: version,
                });
            }
        }
    }
    Decision {
        writes,
        notes,
        memory: next_memory,
    }
}

enum Placement {
    Keep,
    Failed(String),
    New(Assignment),
}

/// Places one topology's executors; `used` gains the slots it takes.
fn place(
    t: &TopologyRecord,
    assignment: Option<&Assignment>,
    alive: &BTreeSet<WorkerSlot>,
    used: &mut BTreeSet<WorkerSlot>,
    all_slots: &[WorkerSlot],
    now_ms: u64,
) -> Placement {
    let layout = TaskLayout::new(&t.spec, t.config.effective_ackers());
    let executors = layout.executors();
    let current: &[(ExecutorSpec, WorkerSlot)] =
        assignment.map(|a| a.executors.as_slice()).unwrap_or(&[]);
    let complete = current.len() == executors.len()
        && current
            .iter()
            .zip(executors)
            .all(|((e, s), want)| e == want && alive.contains(s));
    if complete {
        return Placement::Keep;
    }
    let own: BTreeSet<&WorkerSlot> = current.iter().map(|(_, s)| s).collect();
    // Its own slots while alive, and slots no other topology uses.
    let free: Vec<WorkerSlot> = all_slots
        .iter()
        .filter(|s| {
            if own.contains(s) {
                alive.contains(*s)
            } else {
                !used.contains(*s)
            }
        })
        .cloned()
        .collect();
    let placed = match schedule_even(
        &t.id,
        executors,
        t.config.workers as usize,
        current,
        alive,
        &free,
    ) {
        Ok(p) => p,
        Err(e) => return Placement::Failed(e.to_string()),
    };
    let mut next = Assignment {
        topology_id: t.id.clone(),
        executors: placed,
        assigned_at_ms: now_ms,
        slot_assigned_ms: Vec::new(),
    };
    // A slot keeps the time it got its executors when they do not change
    // (the launch grace counts from there).
    for s in next.slots() {
        let since = assignment
            .filter(|a| a.executors_on(&s) == next.executors_on(&s))
            .and_then(|a| a.slot_assigned_ms.iter().find(|(x, _)| *x == s))
            .map_or(now_ms, |(_, ms)| *ms);
        next.slot_assigned_ms.push((s.clone(), since));
        used.insert(s);
    }
    Placement::New(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::schema::{PendingAction, TopologyStatus};
    use squall_topology_api::spec::TopologySpec;
    use squall_topology_api::Config;

    const T: Timeouts = Timeouts {
        task_ms: 30_000,
        launch_ms: 120_000,
    };

    fn slot(sup: &str, port: u16) -> WorkerSlot {
        WorkerSlot {
            supervisor: sup.into(),
            host: format!("{sup}.host"),
            port,
        }
    }

    fn supervisor(id: &str) -> SupervisorInfo {
        SupervisorInfo {
            id: id.into(),
            host: format!("{id}.host"),
            ports: vec![1, 2],
            started_at_ms: 0,
            logviewer_port: None,
        }
    }

    /// A topology of four executors (its ackers) over `workers` workers.
    fn topology(id: &str, workers: u32) -> TopologyRecord {
        let mut config = Config::new();
        config.workers = workers;
        config.acker_executors = Some(4);
        TopologyRecord {
            id: id.into(),
            name: id.into(),
            status: TopologyStatus::Active,
            spec: TopologySpec::default(),
            config,
            binary_hash: Some(format!("{id}-binary")),
            spec_hash: String::new(),
            submitted_at_ms: 0,
            args: Vec::new(),
            pending: None,
            owner: None,
            secret: None,
            log_config: Default::default(),
            debug: Default::default(),
        }
    }

    /// `t`'s executors dealt over `slots` as the scheduler would.
    fn assigned(t: &TopologyRecord, slots: &[WorkerSlot], at_ms: u64) -> Assignment {
        let layout = TaskLayout::new(&t.spec, t.config.effective_ackers());
        let executors = layout
            .executors()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.clone(), slots[i % slots.len()].clone()))
            .collect();
        Assignment {
            topology_id: t.id.clone(),
            executors,
            assigned_at_ms: at_ms,
            slot_assigned_ms: slots.iter().map(|s| (s.clone(), at_ms)).collect(),
        }
    }

    fn snapshot(sups: &[&str], t: &TopologyRecord, a: Option<&Assignment>) -> Snapshot {
        let mut snap = Snapshot {
            supervisors: sups.iter().map(|s| supervisor(s)).collect(),
            topologies: vec![t.clone()],
            ..Snapshot::default()
        };
        if let Some(a) = a {
            snap.assignments.insert(t.id.clone(), (a.clone(), 7));
        }
        snap
    }

    fn beats(snap: &mut Snapshot, t: &str, slots: &[(WorkerSlot, u64)]) {
        snap.heartbeats
            .insert(t.into(), slots.iter().cloned().collect());
    }

    /// The writes in short: `remove t`, `put t Status`, `assign t@v sup:port,…`.
    fn short(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| match w {
                Write::RemoveTopology { id, .. } => format!("remove {id}"),
                Write::PutTopology(t) => format!("put {} {:?}", t.id, t.status),
                Write::SetAssignment {
                    assignment,
                    expected_version,
                } => {
                    let slots: Vec<String> = assignment
                        .slots()
                        .iter()
                        .map(|s| format!("{}:{}", s.supervisor, s.port))
                        .collect();
                    format!(
                        "assign {}@{expected_version:?} {}",
                        assignment.topology_id,
                        slots.join(",")
                    )
                }
            })
            .collect()
    }

    /// Runs `decide` from a memory that saw `seen` (beat, at) per slot.
    fn run(snap: &Snapshot, seen: &[(WorkerSlot, u64, u64)], now: u64) -> Decision {
        let mut memory = Memory::default();
        for (s, beat, at) in seen {
            memory
                .seen
                .insert((snap.topologies[0].id.clone(), s.clone()), (*beat, *at));
        }
        decide(snap, &memory, now, &T)
    }

    #[test]
    fn a_new_topology_spreads_over_supervisors() {
        let t = topology("t", 2);
        let d = run(&snapshot(&["a", "b"], &t, None), &[], 1_000);
        assert_eq!(short(&d.writes), ["assign t@None a:1,b:1"]);
        assert_eq!(d.notes, [Note::Assigned("t".into(), 2)]);
    }

    #[test]
    fn liveness_cases() {
        let t = topology("t", 2);
        let (a1, b1) = (slot("a", 1), slot("b", 1));
        let a = assigned(&t, &[a1.clone(), b1.clone()], 0);
        // (case, beats, memory seen (slot, beat, at), now) → writes.
        type Beats = Vec<(WorkerSlot, u64)>;
        type Seen = Vec<(WorkerSlot, u64, u64)>;
        let cases: Vec<(&str, Beats, Seen, u64, Vec<&str>)> = vec![
            ("launch grace: no beat yet", vec![], vec![], 100_000, vec![]),
            (
                "no beat after the launch grace",
                vec![],
                vec![],
                130_000,
                vec!["assign t@Some(7) a:2,b:2"],
            ),
            (
                "beats changing",
                vec![(a1.clone(), 200_000), (b1.clone(), 200_000)],
                vec![
                    (a1.clone(), 190_000, 190_000),
                    (b1.clone(), 190_000, 190_000),
                ],
                200_000,
                vec![],
            ),
            (
                "b's beat unchanged for the task timeout",
                vec![(a1.clone(), 200_000), (b1.clone(), 150_000)],
                vec![
                    (a1.clone(), 190_000, 190_000),
                    (b1.clone(), 150_000, 170_000),
                ],
                200_000,
                vec!["assign t@Some(7) a:1,b:2"],
            ),
            (
                "a new leader (empty memory) gives old beats a fresh timeout",
                vec![(a1.clone(), 5), (b1.clone(), 5)],
                vec![],
                900_000,
                vec![],
            ),
        ];
        for (name, hb, seen, now, want) in cases {
            let mut snap = snapshot(&["a", "b"], &t, Some(&a));
            beats(&mut snap, "t", &hb);
            let d = run(&snap, &seen, now);
            assert_eq!(short(&d.writes), want, "{name}");
        }
    }

    #[test]
    fn a_new_leader_waits_the_task_timeout_for_workers_it_has_not_heard() {
        let t = topology("t", 2);
        let (a1, b1) = (slot("a", 1), slot("b", 1));
        let a = assigned(&t, &[a1.clone(), b1.clone()], 0);
        let mut snap = snapshot(&["a", "b"], &t, Some(&a));
        // Leading since 900 s, long after the launch grace: a has been
        // heard from, b not yet.
        snap.heartbeats_since_ms = 900_000;
        beats(&mut snap, "t", &[(a1.clone(), 900_500)]);
        assert_eq!(short(&run(&snap, &[], 929_000).writes), Vec::<&str>::new());
        // Still not heard from after the task timeout: b's executors move.
        let d = run(&snap, &[(a1.clone(), 900_500, 929_000)], 930_000);
        assert_eq!(short(&d.writes), ["assign t@Some(7) a:1,b:2"]);
        assert_eq!(d.notes[0], Note::WorkerSilent("t".into(), b1));
    }

    #[test]
    fn executors_of_a_vanished_supervisor_move() {
        let t = topology("t", 2);
        let a = assigned(&t, &[slot("a", 1), slot("b", 1)], 0);
        let mut snap = snapshot(&["a"], &t, Some(&a));
        beats(&mut snap, "t", &[(slot("a", 1), 10), (slot("b", 1), 10)]);
        let d = run(&snap, &[], 20);
        assert_eq!(short(&d.writes), ["assign t@Some(7) a:1,a:2"]);
        assert!(d
            .notes
            .contains(&Note::SupervisorGone("t".into(), slot("b", 1))));
        // The kept slot keeps its assignment time; the new one starts now.
        let Write::SetAssignment { assignment, .. } = &d.writes[0] else {
            panic!()
        };
        assert_eq!(
            assignment.slot_assigned_ms,
            vec![(slot("a", 1), 0), (slot("a", 2), 20)]
        );
    }

    #[test]
    fn timed_kill_removes_when_due() {
        let mut t = topology("t", 1);
        t.status = TopologyStatus::Killed;
        t.pending = Some(PendingAction::Kill { at_ms: 5_000 });
        let a = assigned(&t, &[slot("a", 1)], 0);
        let snap = snapshot(&["a"], &t, Some(&a));
        assert_eq!(short(&run(&snap, &[], 4_999).writes), Vec::<String>::new());
        assert_eq!(short(&run(&snap, &[], 5_000).writes), ["remove t"]);
    }

    #[test]
    fn due_rebalance_restores_status_and_places_afresh() {
        let mut t = topology("t", 1);
        t.status = TopologyStatus::Rebalancing;
        t.pending = Some(PendingAction::Rebalance {
            at_ms: 5_000,
            restore: TopologyStatus::Inactive,
            workers: Some(2),
            executors: BTreeMap::new(),
        });
        let a = assigned(&t, &[slot("a", 1)], 0);
        let mut snap = snapshot(&["a", "b"], &t, Some(&a));
        beats(&mut snap, "t", &[(slot("a", 1), 4_000)]);
        assert_eq!(short(&run(&snap, &[], 4_000).writes), Vec::<String>::new());
        let d = run(&snap, &[], 5_000);
        assert_eq!(
            short(&d.writes),
            ["put t Inactive", "assign t@Some(7) a:1,b:1"]
        );
        let Write::PutTopology(r) = &d.writes[0] else {
            panic!()
        };
        assert_eq!((r.config.workers, r.pending.clone()), (2, None));
    }

    #[test]
    fn a_second_topology_takes_only_free_slots() {
        let t = topology("t", 2);
        let u = TopologyRecord {
            submitted_at_ms: 1,
            ..topology("u", 2)
        };
        let a = assigned(&t, &[slot("a", 1), slot("b", 1)], 0);
        let mut snap = snapshot(&["a", "b"], &t, Some(&a));
        snap.topologies.push(u);
        beats(&mut snap, "t", &[(slot("a", 1), 10), (slot("b", 1), 10)]);
        let d = run(&snap, &[], 20);
        assert_eq!(short(&d.writes), ["assign u@None a:2,b:2"]);
    }

    #[test]
    fn a_slot_is_never_left_in_two_assignments() {
        // t's workers on a never beat; u's supervisor b is gone. u takes
        // a's slots, so t, with nowhere to go, gives them up.
        let t = topology("t", 2);
        let u = TopologyRecord {
            submitted_at_ms: 1,
            ..topology("u", 2)
        };
        let mut snap = snapshot(
            &["a"],
            &t,
            Some(&assigned(&t, &[slot("a", 1), slot("a", 2)], 0)),
        );
        snap.topologies.push(u.clone());
        snap.assignments.insert(
            "u".into(),
            (assigned(&u, &[slot("b", 1), slot("b", 2)], 0), 3),
        );
        let d = run(&snap, &[], 200_000);
        assert_eq!(
            short(&d.writes),
            ["assign t@Some(7) ", "assign u@Some(3) a:1,a:2"]
        );
    }

    #[test]
    fn a_slot_alive_for_one_topology_is_not_alive_for_another() {
        // Both name a:1 (a stale assignment); only u's worker beats there.
        let t = topology("t", 1);
        let u = TopologyRecord {
            submitted_at_ms: 1,
            ..topology("u", 1)
        };
        let mut snap = snapshot(&["a", "b"], &t, Some(&assigned(&t, &[slot("a", 1)], 0)));
        snap.topologies.push(u.clone());
        snap.assignments
            .insert("u".into(), (assigned(&u, &[slot("a", 1)], 0), 3));
        beats(&mut snap, "u", &[(slot("a", 1), 199_000)]);
        let d = run(&snap, &[], 200_000);
        // t moves to a free slot; u keeps a:1.
        assert_eq!(short(&d.writes), ["assign t@Some(7) a:2"]);
    }
}
