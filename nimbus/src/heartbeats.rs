//! The workers' heartbeats the leading Nimbus keeps in memory (Storm 2's
//! `HeartbeatCache`): supervisors forward their running workers' beats
//! every `supervisor.monitor.frequency.secs`
//! ([`squall_cluster::rpc::Request::SupervisorHeartbeats`]); the monitor
//! round judges liveness from them and `Info` reads their metrics. Nothing
//! of this is written to ZooKeeper. A Nimbus that starts to lead starts
//! empty and gives every assigned worker `nimbus.task.timeout.secs` to be
//! heard from (see [`crate::decide::Snapshot::heartbeats_since_ms`]).

use squall_cluster::rpc::{ErrorKind, RpcError};
use squall_cluster::schema::{WorkerHeartbeat, WorkerSlot};
use std::collections::{BTreeMap, BTreeSet};

/// The latest heartbeat of each worker, by topology and slot.
#[derive(Debug, Default)]
pub struct HeartbeatCache {
    beats: BTreeMap<String, BTreeMap<WorkerSlot, WorkerHeartbeat>>,
}

impl HeartbeatCache {
    /// Keeps `beats` from supervisor `supervisor_id`; a beat older than
    /// the one kept for its slot (a delayed report) is ignored.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`] naming a beat for another supervisor's slot;
    /// nothing of the report is kept then.
    pub fn record(
        &mut self,
        supervisor_id: &str,
        beats: Vec<WorkerHeartbeat>,
    ) -> Result<(), RpcError> {
        if let Some(b) = beats.iter().find(|b| b.slot.supervisor != supervisor_id) {
            return Err(RpcError::new(
                ErrorKind::Invalid,
                format!(
                    "supervisor {supervisor_id} reported a heartbeat for slot {} of another supervisor",
                    b.slot
                ),
            ));
        }
        for b in beats {
            let kept = self.beats.entry(b.topology_id.clone()).or_default();
            match kept.get(&b.slot) {
                Some(old) if old.time_ms > b.time_ms => {}
                _ => {
                    kept.insert(b.slot.clone(), b);
                }
            }
        }
        Ok(())
    }

    /// The latest heartbeats of topology `id`'s workers.
    pub fn of(&self, id: &str) -> Vec<WorkerHeartbeat> {
        self.beats
            .get(id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets every beat but those of `assigned` topologies' assigned
    /// slots, so memory follows the assignments.
    pub fn retain(&mut self, assigned: &BTreeMap<&str, BTreeSet<WorkerSlot>>) {
        self.beats
            .retain(|id, slots| match assigned.get(id.as_str()) {
                Some(live) => {
                    slots.retain(|s, _| live.contains(s));
                    !slots.is_empty()
                }
                None => false,
            });
    }

    /// Every kept beat, by topology and slot.
    pub fn all(&self) -> impl Iterator<Item = &WorkerHeartbeat> {
        self.beats.values().flat_map(|m| m.values())
    }

    /// Forgets everything (a Nimbus that starts to lead).
    pub fn clear(&mut self) {
        self.beats.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_topology_api::metrics::TopologyMetrics;

    fn slot(supervisor: &str, port: u16) -> WorkerSlot {
        WorkerSlot {
            supervisor: supervisor.into(),
            host: format!("{supervisor}.host"),
            port,
        }
    }

    fn beat(topology: &str, slot: WorkerSlot, time_ms: u64) -> WorkerHeartbeat {
        WorkerHeartbeat {
            topology_id: topology.into(),
            slot,
            time_ms,
            executors: vec![],
            metrics: TopologyMetrics::default(),
            started_at_ms: 1,
        }
    }

    #[test]
    fn keeps_the_newest_beat_per_slot_and_follows_the_assignments() {
        let mut cache = HeartbeatCache::default();
        cache
            .record(
                "s1",
                vec![beat("wc", slot("s1", 1), 5), beat("x", slot("s1", 2), 5)],
            )
            .unwrap();
        // A delayed, older report does not replace a newer beat.
        cache
            .record("s1", vec![beat("wc", slot("s1", 1), 3)])
            .unwrap();
        assert_eq!(cache.of("wc"), vec![beat("wc", slot("s1", 1), 5)]);
        cache
            .record("s1", vec![beat("wc", slot("s1", 1), 7)])
            .unwrap();
        assert_eq!(cache.of("wc")[0].time_ms, 7);

        let assigned = BTreeMap::from([("wc", BTreeSet::from([slot("s1", 1)]))]);
        cache.retain(&assigned);
        assert_eq!(cache.of("x"), vec![]);
        assert_eq!(cache.of("wc").len(), 1);
        cache.retain(&BTreeMap::from([("wc", BTreeSet::from([slot("s1", 9)]))]));
        assert_eq!(cache.of("wc"), vec![]);
    }

    #[test]
    fn a_supervisor_reports_only_its_own_slots() {
        let mut cache = HeartbeatCache::default();
        let err = cache
            .record(
                "s1",
                vec![beat("wc", slot("s1", 1), 5), beat("wc", slot("s2", 1), 5)],
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(err.message.contains("s2"), "{}", err.message);
        assert_eq!(
            cache.of("wc"),
            vec![],
            "nothing of a refused report is kept"
        );
    }
}
