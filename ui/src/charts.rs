//! `/api/v1/topology/:id/timeseries`: what the topology and component
//! pages chart, each component over the last 10 minutes in 30 s points
//! (from Nimbus's 10-minute window): emitted, acked, failed and executed
//! per second, complete and execute latency p50 and p99 (ms), capacity,
//! and whether it was under backpressure.

use crate::views::components;
use serde_json::{json, Value};
use squall_cluster::rpc::TopologyInfo;
use squall_cluster::series::{POINT_MS, SERIES_MS};
use squall_topology_api::spec::ComponentKind;

fn per_sec(n: u64, span_ms: u64) -> f64 {
    let r = n as f64 * 1000.0 / span_ms.max(1) as f64;
    (r * 1000.0).round() / 1000.0
}

fn ms(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The time series of `info`'s components (system ones with `sys`).
pub fn timeseries(info: &TopologyInfo, sys: bool) -> Value {
    let mut out = serde_json::Map::new();
    for (id, kind) in components(info, sys) {
        let points: Vec<Value> = info
            .series
            .get(&id)
            .into_iter()
            .flatten()
            .map(|p| {
                json!({
                    "time": p.start_ms,
                    "spanMs": p.span_ms,
                    "emittedPerSec": per_sec(p.emitted, p.span_ms),
                    "ackedPerSec": per_sec(p.acked, p.span_ms),
                    "failedPerSec": per_sec(p.failed, p.span_ms),
                    "executedPerSec": per_sec(p.executed, p.span_ms),
                    "completeLatencyP50": ms(p.complete_p50_ms),
                    "completeLatencyP99": ms(p.complete_p99_ms),
                    "executeLatencyP50": ms(p.execute_p50_ms),
                    "executeLatencyP99": ms(p.execute_p99_ms),
                    "capacity": ms(p.capacity),
                    "backpressuredMs": p.backpressured_ms,
                    "backpressure": p.backpressured_ms > 0,
                })
            })
            .collect();
        let kind = match kind {
            ComponentKind::Spout => "spout",
            ComponentKind::Bolt => "bolt",
        };
        out.insert(id, json!({ "type": kind, "points": points }));
    }
    json!({
        "topologyId": info.summary.id,
        "resolutionSecs": POINT_MS / 1000,
        "windowSecs": SERIES_MS / 1000,
        "components": out,
    })
}
