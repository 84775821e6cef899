//! `/api/v1/topology/:id/lag`: each Kafka spout's lag per partition, in
//! the shape of Storm's `TopologySpoutLag` (`spoutId`, `spoutType`,
//! `spoutLagResult` by topic and partition with `consumerCommittedOffset`,
//! `logHeadOffset` and `lag`), read from the per-partition offset gauges
//! the spouts' tasks publish (`squall_connectors::kafka::metrics`).

use serde_json::{json, Map, Value};
use squall_cluster::rpc::TopologyInfo;
use squall_connectors::kafka::metrics::parse_partition_metric_name;
use std::collections::BTreeMap;

/// One partition's offsets: (committed, log head).
type Offsets = (Option<f64>, Option<f64>);

/// The lag of every Kafka spout of `info`: spout id → its lag record.
/// Spouts without partition metrics are left out.
pub fn topology_lag(info: &TopologyInfo) -> Value {
    // spout → topic → partition → offsets
    let mut spouts: BTreeMap<&str, BTreeMap<String, BTreeMap<i32, Offsets>>> = BTreeMap::new();
    for task in info.metrics.tasks.values() {
        for (name, value) in &task.user {
            let Some((tp, metric)) = parse_partition_metric_name(name) else {
                continue;
            };
            let offsets = spouts
                .entry(task.component.0.as_str())
                .or_default()
                .entry(tp.topic)
                .or_default()
                .entry(tp.partition)
                .or_default();
            match metric {
                "latestCompletedOffset" => offsets.0 = Some(*value),
                "latestTimeOffset" => offsets.1 = Some(*value),
                _ => {}
            }
        }
    }
    let mut out = Map::new();
    for (spout, topics) in spouts {
        let mut result = Map::new();
        for (topic, partitions) in topics {
            let rows: Map<String, Value> = partitions
                .into_iter()
                .map(|(p, (committed, head))| {
                    let (c, h) = (committed.unwrap_or(-1.0), head.unwrap_or(-1.0));
                    let lag = if c < 0.0 || h < 0.0 {
                        -1.0
                    } else {
                        (h - c).max(0.0)
                    };
                    let row = json!({
                        "consumerCommittedOffset": c as i64,
                        "logHeadOffset": h as i64,
                        "lag": lag as i64,
                    });
                    (p.to_string(), row)
                })
                .collect();
            result.insert(topic, Value::Object(rows));
        }
        out.insert(
            spout.to_owned(),
            json!({
                "spoutId": spout,
                "spoutType": "KAFKA",
                "spoutLagResult": result,
            }),
        );
    }
    Value::Object(out)
}
