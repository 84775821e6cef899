//! The per-partition offset metrics of a Kafka spout (Storm's
//! `KafkaOffsetPartitionMetrics`), published as task gauges named
//! `kafkaPartition/<topic>/partition_<n>/<metric>`.

use super::TopicPartition;
use squall_topology_api::MetricRegistry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// The prefix of every per-partition metric's name.
pub const PARTITION_METRIC_PREFIX: &str = "kafkaPartition/";

/// The name of metric `metric` of `tp`:
/// `kafkaPartition/<topic>/partition_<n>/<metric>`.
pub fn partition_metric_name(tp: &TopicPartition, metric: &str) -> String {
    format!(
        "{PARTITION_METRIC_PREFIX}{}/partition_{}/{metric}",
        tp.topic, tp.partition
    )
}

/// Reads one figure of a partition's offsets.
type ReadOffsets = fn(&Offsets) -> i64;

/// The partition and metric a per-partition metric's name names:
/// `kafkaPartition/<topic>/partition_<n>/<metric>` → (`<topic>`, `n`,
/// `<metric>`); `None` for any other name.
pub fn parse_partition_metric_name(name: &str) -> Option<(TopicPartition, &str)> {
    let rest = name.strip_prefix(PARTITION_METRIC_PREFIX)?;
    let (rest, metric) = rest.rsplit_once('/')?;
    let (topic, partition) = rest.rsplit_once("/partition_")?;
    Some((TopicPartition::new(topic, partition.parse().ok()?), metric))
}

/// What is known of one partition's offsets (−1: not yet known).
#[derive(Debug)]
struct Offsets {
    earliest: AtomicI64,
    latest: AtomicI64,
    emitted: AtomicI64,
    committed: AtomicI64,
}

impl Default for Offsets {
    fn default() -> Self {
        Self {
            earliest: AtomicI64::new(-1),
            latest: AtomicI64::new(-1),
            emitted: AtomicI64::new(-1),
            committed: AtomicI64::new(-1),
        }
    }
}

/// The offsets of a task's partitions, written by the spout (emitted and
/// committed offsets) and its helper thread (watermarks), read by gauges.
#[derive(Debug)]
pub(crate) struct PartitionGauges {
    registry: MetricRegistry,
    partitions: Mutex<HashMap<TopicPartition, Arc<Offsets>>>,
}

impl PartitionGauges {
    /// Gauges registered in `registry` as partitions appear.
    pub fn new(registry: MetricRegistry) -> Self {
        Self {
            registry,
            partitions: Mutex::new(HashMap::new()),
        }
    }

    fn offsets(&self, tp: &TopicPartition) -> Arc<Offsets> {
        let mut partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = partitions.get(tp) {
            return o.clone();
        }
        let o = Arc::new(Offsets::default());
        partitions.insert(tp.clone(), o.clone());
        drop(partitions);
        self.register(tp, &o);
        o
    }

    /// Registers Storm's six gauges of `tp`: `spoutLag` (latest −
    /// committed), `earliestTimeOffset`, `latestTimeOffset`,
    /// `latestEmittedOffset`, `latestCompletedOffset` (the committed
    /// offset) and `recordsInPartition` (latest − earliest).
    fn register(&self, tp: &TopicPartition, o: &Arc<Offsets>) {
        let read = |f: fn(&Offsets) -> i64| {
            let o = o.clone();
            move || f(&o) as f64
        };
        let gauges: [(&str, ReadOffsets); 6] = [
            ("spoutLag", |o| {
                let (latest, committed) = (
                    o.latest.load(Ordering::Relaxed),
                    o.committed.load(Ordering::Relaxed),
                );
                if latest < 0 || committed < 0 {
                    0
                } else {
                    (latest - committed).max(0)
                }
            }),
            ("earliestTimeOffset", |o| o.earliest.load(Ordering::Relaxed)),
            ("latestTimeOffset", |o| o.latest.load(Ordering::Relaxed)),
            ("latestEmittedOffset", |o| o.emitted.load(Ordering::Relaxed)),
            ("latestCompletedOffset", |o| {
                o.committed.load(Ordering::Relaxed)
            }),
            ("recordsInPartition", |o| {
                let (e, l) = (
                    o.earliest.load(Ordering::Relaxed),
                    o.latest.load(Ordering::Relaxed),
                );
                if e < 0 || l < 0 {
                    0
                } else {
                    l - e
                }
            }),
        ];
        for (name, f) in gauges {
            self.registry
                .gauge(&partition_metric_name(tp, name), read(f));
        }
    }

    /// Records `tp`'s low and high watermarks.
    pub fn set_watermarks(&self, tp: &TopicPartition, earliest: i64, latest: i64) {
        let o = self.offsets(tp);
        o.earliest.store(earliest, Ordering::Relaxed);
        o.latest.store(latest, Ordering::Relaxed);
    }

    /// Records `tp`'s committed offset.
    pub fn set_committed(&self, tp: &TopicPartition, offset: i64) {
        self.offsets(tp).committed.store(offset, Ordering::Relaxed);
    }

    /// Records that `offset` of `tp` was emitted.
    pub fn set_emitted(&self, tp: &TopicPartition, offset: i64) {
        self.offsets(tp)
            .emitted
            .fetch_max(offset, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_latest_minus_committed_under_storms_names() {
        let registry = MetricRegistry::default();
        let g = PartitionGauges::new(registry.clone());
        let tp = TopicPartition::new("lines", 2);
        g.set_watermarks(&tp, 5, 100);
        g.set_committed(&tp, 40);
        g.set_emitted(&tp, 60);
        let v = registry.values();
        let get = |m: &str| v[&format!("kafkaPartition/lines/partition_2/{m}")];
        assert_eq!(get("spoutLag"), 60.0);
        assert_eq!(get("recordsInPartition"), 95.0);
        assert_eq!(get("latestCompletedOffset"), 40.0);
        assert_eq!(get("latestEmittedOffset"), 60.0);
        assert_eq!(get("earliestTimeOffset"), 5.0);
        assert_eq!(get("latestTimeOffset"), 100.0);
        let name = partition_metric_name(&tp, "spoutLag");
        assert_eq!(parse_partition_metric_name(&name), Some((tp, "spoutLag")));
        assert_eq!(
            parse_partition_metric_name("kafkaPartition/x/spoutLag"),
            None
        );
    }
}
