//! The monitor round (Storm's `mk-assignments`): carries out timed kills
//! and rebalances, finds executors whose worker stopped heartbeating or
//! whose supervisor vanished, and schedules what is unplaced.

use crate::scheduler::schedule_even;
use crate::service::Nimbus;
use squall_cluster::schema::{Assignment, PendingAction, TopologyRecord, WorkerSlot};
use squall_cluster::{StateError, StateStorage};
use squall_topology_api::TaskLayout;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

/// What Nimbus remembers between rounds: when each worker's heartbeat last
/// changed, by Nimbus's own clock (so worker clocks do not matter). A
/// restarted Nimbus starts empty, which gives every worker a fresh timeout.
#[derive(Default)]
pub struct Monitor {
    seen: HashMap<(String, WorkerSlot), (u64, Instant)>,
}

impl Monitor {
    /// One round over every topology; errors are logged, not fatal.
    pub fn schedule_all<S: StateStorage>(&mut self, nimbus: &Nimbus<S>, now_ms: u64) {
        if let Err(e) = self.round(nimbus, now_ms) {
            tracing::warn!("monitor round failed: {e}");
        }
        nimbus.blobs.expire();
    }

    fn round<S: StateStorage>(
        &mut self,
        nimbus: &Nimbus<S>,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let state = &nimbus.state;
        let cfg = &nimbus.config;
        let supervisors = state.supervisors()?;
        let all_slots: Vec<WorkerSlot> = supervisors
            .iter()
            .flat_map(|s| {
                s.ports.iter().map(|p| WorkerSlot {
                    supervisor: s.id.clone(),
                    host: s.host.clone(),
                    port: *p,
                })
            })
            .collect();
        let live: BTreeSet<&WorkerSlot> = all_slots.iter().collect();
        let mut topologies = state.topologies()?;
        topologies.sort_by_key(|t| t.submitted_at_ms);

        // Carry out due kills and rebalances first.
        let mut kept = Vec::new();
        for mut t in topologies {
            match t.pending.clone() {
                Some(PendingAction::Kill { at_ms }) if at_ms <= now_ms => {
                    state.remove_topology(&t.id)?;
                    // Holders of a binary another topology shares announce
                    // it again next round.
                    if let Some(h) = &t.binary_hash {
                        state.remove_blob(h)?;
                    }
                    self.seen.retain(|(id, _), _| *id != t.id);
                    tracing::info!(topology = %t.id, "killed");
                    continue;
                }
                Some(PendingAction::Rebalance {
                    at_ms,
                    restore,
                    workers,
                    executors,
                }) if at_ms <= now_ms => {
                    if let Some(w) = workers {
                        t.config.workers = w;
                    }
                    for (c, n) in executors {
                        if let Some(spec) = t.spec.components.get_mut(c.as_str()) {
                            spec.parallelism = n;
                        }
                    }
                    t.status = restore;
                    t.pending = None;
                    // Rescheduled from scratch below.
                    if let Some((mut a, v)) = state.assignment(&t.id)? {
                        a.executors.clear();
                        state.set_assignment(&a, Some(v))?;
                    }
                    state.put_topology(&t)?;
                    tracing::info!(topology = %t.id, "rebalanced");
                }
                _ => {}
            }
            kept.push(t);
        }

        let ids: Vec<&str> = kept.iter().map(|t| t.id.as_str()).collect();
        nimbus.stats().retain(&ids);

        // Liveness of each assigned slot.
        let mut assignments = BTreeMap::new();
        let mut alive: BTreeSet<WorkerSlot> = BTreeSet::new();
        for t in &kept {
            let Some((a, v)) = state.assignment(&t.id)? else {
                continue;
            };
            let heartbeats = state.worker_heartbeats(&t.id)?;
            nimbus.observe(&t.id, &heartbeats, now_ms);
            let beats: HashMap<WorkerSlot, u64> = heartbeats
                .into_iter()
                .map(|hb| (hb.slot, hb.time_ms))
                .collect();
            let assigned: HashMap<&WorkerSlot, u64> =
                a.slot_assigned_ms.iter().map(|(s, ms)| (s, *ms)).collect();
            for slot in a.slots() {
                if !live.contains(&slot) {
                    tracing::warn!(topology = %t.id, %slot, "supervisor gone; rescheduling its executors");
                    continue;
                }
                let key = (t.id.clone(), slot.clone());
                let fresh = match beats.get(&slot) {
                    Some(&beat) => {
                        let entry = self.seen.entry(key).or_insert((beat, Instant::now()));
                        if entry.0 != beat {
                            *entry = (beat, Instant::now());
                        }
                        entry.1.elapsed().as_secs() < cfg.nimbus_task_timeout_secs
                    }
                    None => false,
                };
                let since = assigned.get(&slot).copied().unwrap_or(a.assigned_at_ms);
                let launching = now_ms.saturating_sub(since) < cfg.nimbus_task_launch_secs * 1000
                    && beats.get(&slot).is_none_or(|b| *b < since);
                if fresh || launching {
                    alive.insert(slot);
                } else {
                    tracing::warn!(topology = %t.id, %slot, "worker stopped heartbeating; rescheduling its executors");
                }
            }
            assignments.insert(t.id.clone(), (a, v));
        }

        // Schedule each topology over its live slots and the free ones.
        let mut used: BTreeSet<WorkerSlot> = BTreeSet::new();
        for (a, _) in assignments.values() {
            used.extend(a.slots().into_iter().filter(|s| alive.contains(s)));
        }
        for t in &kept {
            self.schedule(
                nimbus,
                t,
                assignments.get(&t.id),
                &alive,
                &mut used,
                &all_slots,
                now_ms,
            )?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule<S: StateStorage>(
        &mut self,
        nimbus: &Nimbus<S>,
        t: &TopologyRecord,
        current: Option<&(Assignment, squall_cluster::Version)>,
        alive: &BTreeSet<WorkerSlot>,
        used: &mut BTreeSet<WorkerSlot>,
        all_slots: &[WorkerSlot],
        now_ms: u64,
    ) -> Result<(), StateError> {
        let layout = TaskLayout::new(&t.spec, t.config.effective_ackers());
        let executors = layout.executors();
        let current_execs: &[(squall_topology_api::ExecutorSpec, WorkerSlot)] =
            current.map(|(a, _)| a.executors.as_slice()).unwrap_or(&[]);
        let complete = current_execs.len() == executors.len()
            && current_execs
                .iter()
                .zip(executors)
                .all(|((e, s), want)| e == want && alive.contains(s));
        if complete {
            return Ok(());
        }
        let own: BTreeSet<&WorkerSlot> = current_execs.iter().map(|(_, s)| s).collect();
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
            current_execs,
            alive,
            &free,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(topology = %t.id, "cannot schedule: {e}");
                return Ok(());
            }
        };
        let previous: BTreeMap<WorkerSlot, Vec<_>> = current
            .map(|(a, _)| {
                a.slots()
                    .into_iter()
                    .map(|s| (s.clone(), a.executors_on(&s)))
                    .collect()
            })
            .unwrap_or_default();
        let old_times: HashMap<&WorkerSlot, u64> = current
            .map(|(a, _)| a.slot_assigned_ms.iter().map(|(s, ms)| (s, *ms)).collect())
            .unwrap_or_default();
        let mut next = Assignment {
            topology_id: t.id.clone(),
            executors: placed,
            assigned_at_ms: now_ms,
            slot_assigned_ms: Vec::new(),
        };
        for s in next.slots() {
            let unchanged = previous.get(&s) == Some(&next.executors_on(&s));
            let since = match old_times.get(&s) {
                Some(ms) if unchanged => *ms,
                _ => now_ms,
            };
            next.slot_assigned_ms.push((s.clone(), since));
            used.insert(s);
        }
        nimbus
            .state
            .set_assignment(&next, current.map(|(_, v)| *v))?;
        tracing::info!(topology = %t.id, workers = next.slots().len(), "assigned");
        Ok(())
    }
}
