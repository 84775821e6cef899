//! Nimbus's windowed statistics: the deltas between successive worker
//! heartbeats of each task, summed into rolling buckets (Storm's
//! `RollingWindowSet`: 10 minutes in 30 s buckets, 3 hours in 10 minute
//! buckets, 1 day in 1 hour buckets) and an all-time total. A task seen for
//! the first time contributes its whole cumulative count, so a restarted
//! Nimbus still reports what running tasks have done.

use squall_cluster::schema::WorkerHeartbeat;
use squall_cluster::series::SeriesPoint;
use squall_cluster::window_stats::{Counters, TaskWindow, WindowStats, WINDOWS};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Bucket width per window, seconds: 30 s, 10 min, 1 h.
const BUCKET_SECS: [u64; 3] = [30, 600, 3600];

/// Rolling buckets covering one window.
#[derive(Debug, Default)]
struct Rolling {
    /// (bucket start ms, counts), oldest first.
    buckets: VecDeque<(u64, Counters)>,
}

impl Rolling {
    fn add(&mut self, now_ms: u64, bucket_ms: u64, window_ms: u64, delta: &Counters) {
        let start = now_ms - now_ms % bucket_ms;
        match self.buckets.back_mut() {
            Some((s, c)) if *s == start => c.add(delta),
            _ => self.buckets.push_back((start, delta.clone())),
        }
        self.expire(now_ms, window_ms);
    }

    fn expire(&mut self, now_ms: u64, window_ms: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|(s, _)| *s + window_ms <= now_ms)
        {
            self.buckets.pop_front();
        }
    }

    fn sum(&self, now_ms: u64, window_ms: u64) -> Counters {
        let mut c = Counters::default();
        for (_, b) in self.buckets.iter().filter(|(s, _)| s + window_ms > now_ms) {
            c.add(b);
        }
        c
    }
}

#[derive(Debug)]
struct TaskEntry {
    component: String,
    /// The heartbeat time and cumulative counters last observed.
    last_beat_ms: u64,
    last: Counters,
    first_seen_ms: u64,
    windows: [Rolling; 3],
    all_time: Counters,
}

impl TaskEntry {
    fn new(component: &str, now_ms: u64) -> Self {
        Self {
            component: component.to_owned(),
            last_beat_ms: 0,
            last: Counters::default(),
            first_seen_ms: now_ms,
            windows: Default::default(),
            all_time: Counters::default(),
        }
    }
}

/// Every topology's windows, by topology id.
#[derive(Debug, Default)]
pub struct StatsWindows {
    topologies: HashMap<String, HashMap<u32, TaskEntry>>,
}

impl StatsWindows {
    /// Folds `beats` (a topology's current worker heartbeats) in at
    /// `now_ms`. Each task is taken from the newest heartbeat that carries
    /// it, and only when that heartbeat is newer than the last one seen.
    pub fn observe(&mut self, topology_id: &str, beats: &[WorkerHeartbeat], now_ms: u64) {
        let mut newest: BTreeMap<u32, (u64, &squall_topology_api::metrics::TaskMetrics)> =
            BTreeMap::new();
        for hb in beats {
            for (task, m) in &hb.metrics.tasks {
                let e = newest.entry(task.0).or_insert((hb.time_ms, m));
                if hb.time_ms > e.0 {
                    *e = (hb.time_ms, m);
                }
            }
        }
        let tasks = self.topologies.entry(topology_id.to_owned()).or_default();
        for (task, (beat_ms, m)) in newest {
            let now = Counters::of(m);
            let entry = tasks
                .entry(task)
                .or_insert_with(|| TaskEntry::new(&m.component.0, now_ms));
            if beat_ms <= entry.last_beat_ms {
                continue;
            }
            let delta = if entry.component == m.component.0 {
                now.since(&entry.last).unwrap_or_else(|| now.clone())
            } else {
                // Rebalanced into another component's task: start over.
                *entry = TaskEntry::new(&m.component.0, now_ms);
                now.clone()
            };
            for (i, w) in entry.windows.iter_mut().enumerate() {
                let window_ms = WINDOWS[i].unwrap_or(0) * 1000;
                w.add(now_ms, BUCKET_SECS[i] * 1000, window_ms, &delta);
            }
            entry.all_time.add(&delta);
            entry.last = now;
            entry.last_beat_ms = beat_ms;
        }
    }

    /// Forgets topologies not in `live`.
    pub fn retain(&mut self, live: &[&str]) {
        self.topologies.retain(|id, _| live.contains(&id.as_str()));
    }

    /// The topology's components over the last 10 minutes in 30 s points
    /// at `now_ms` (see [`squall_cluster::series`]).
    pub fn series(&self, topology_id: &str, now_ms: u64) -> BTreeMap<String, Vec<SeriesPoint>> {
        let tasks = self.topologies.get(topology_id);
        squall_cluster::series::series(
            tasks.into_iter().flatten().flat_map(|(_, e)| {
                e.windows[0]
                    .buckets
                    .iter()
                    .map(|(start, c)| (e.component.as_str(), *start, c))
            }),
            now_ms,
        )
    }

    /// The topology's four windows at `now_ms`, in [`WINDOWS`] order
    /// (empty tasks when Nimbus has seen no heartbeat of it).
    pub fn windows(&self, topology_id: &str, now_ms: u64) -> Vec<WindowStats> {
        let tasks = self.topologies.get(topology_id);
        WINDOWS
            .iter()
            .enumerate()
            .map(|(i, secs)| WindowStats {
                window_secs: *secs,
                tasks: tasks
                    .into_iter()
                    .flatten()
                    .map(|(id, e)| {
                        let seen = now_ms.saturating_sub(e.first_seen_ms);
                        let (counters, covered_ms) = match secs {
                            Some(s) => (e.windows[i].sum(now_ms, s * 1000), seen.min(s * 1000)),
                            None => (e.all_time.clone(), seen),
                        };
                        let w = TaskWindow {
                            component: e.component.clone(),
                            counters,
                            covered_ms,
                        };
                        (*id, w)
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::schema::WorkerSlot;
    use squall_topology_api::metrics::{TaskMetrics, TopologyMetrics};
    use squall_topology_api::TaskId;

    fn beat(time_ms: u64, acked: u64) -> WorkerHeartbeat {
        let mut metrics = TopologyMetrics::default();
        metrics.tasks.insert(
            TaskId(1),
            TaskMetrics {
                component: "spout".into(),
                acked,
                ..TaskMetrics::default()
            },
        );
        WorkerHeartbeat {
            topology_id: "t".into(),
            slot: WorkerSlot {
                supervisor: "s".into(),
                host: "h".into(),
                port: 1,
            },
            time_ms,
            executors: vec![],
            metrics,
            started_at_ms: 0,
        }
    }

    fn acked(s: &StatsWindows, now: u64) -> Vec<u64> {
        s.windows("t", now)
            .iter()
            .map(|w| w.component("spout").acked)
            .collect()
    }

    #[test]
    fn windows_roll_and_restarts_count_from_zero() {
        let mut s = StatsWindows::default();
        let min = 60_000;
        s.observe("t", &[beat(1, 100)], 0);
        // The same heartbeat again changes nothing.
        s.observe("t", &[beat(1, 100)], 1);
        s.observe("t", &[beat(2, 150)], 5 * min);
        assert_eq!(acked(&s, 5 * min), vec![150, 150, 150, 150]);
        // 11 minutes on, the first 100 left the 10-minute window.
        s.observe("t", &[beat(3, 160)], 11 * min);
        assert_eq!(acked(&s, 11 * min), vec![60, 160, 160, 160]);
        // The worker restarted: its counters began again.
        s.observe("t", &[beat(4, 7)], 12 * min);
        assert_eq!(acked(&s, 12 * min), vec![67, 167, 167, 167]);
        // After 3 hours only the day and all time remember.
        assert_eq!(acked(&s, 4 * 60 * min), vec![0, 0, 167, 167]);
    }
}
