//! Storm's detail endpoints beside the pages: `/api/v1/topology/:id/metrics`
//! (per-stream figures of every component in one window) and
//! `/api/v1/supervisor?id=|host=` (a supervisor and the workers on it).

use crate::nimbus::ApiError;
use crate::views::{components, fixed3, supervisor_row, window_stats, workers};
use serde_json::{json, Value};
use squall_cluster::rpc::{ClusterSummary, TopologyInfo};
use squall_cluster::window_stats::{window_name, window_pretty, WINDOWS};
use squall_topology_api::spec::ComponentKind;

fn by_stream<'a>(rows: impl Iterator<Item = (&'a String, Value)>, sys: bool) -> Vec<Value> {
    rows.filter(|(s, _)| sys || !s.starts_with("__"))
        .map(|(s, v)| json!({ "stream_id": s, "value": v }))
        .collect()
}

/// `/api/v1/topology/:id/metrics?window=&sys=`: for each spout, emitted and
/// transferred per stream, and acked, failed and complete latency under
/// its output stream when it has one (Squall counts a spout's trees per
/// task, not per stream; with several output streams these lists are
/// empty); for each bolt, emitted and transferred per stream, and acked,
/// failed, executed and the mean process and execute latencies per input
/// stream (`component_id`, `stream_id`).
pub fn topology_metrics(info: &TopologyInfo, window: usize, sys: bool) -> Value {
    let w = window_stats(info, window);
    let mut spouts = Vec::new();
    let mut bolts = Vec::new();
    for (id, kind) in components(info, sys) {
        let c = w.component(&id);
        let emitted = by_stream(c.emitted.iter().map(|(s, v)| (s, json!(v))), sys);
        let transferred = by_stream(c.transferred.iter().map(|(s, v)| (s, json!(v))), sys);
        match kind {
            ComponentKind::Spout => {
                let outputs: Vec<&String> =
                    c.emitted.keys().filter(|s| !s.starts_with("__")).collect();
                let per_tree = |v: Value| match outputs.as_slice() {
                    [only] => vec![json!({ "stream_id": only, "value": v })],
                    _ => Vec::new(),
                };
                spouts.push(json!({
                    "id": id,
                    "emitted": emitted,
                    "transferred": transferred,
                    "acked": per_tree(json!(c.acked)),
                    "failed": per_tree(json!(c.failed)),
                    "complete_ms_avg": per_tree(json!(fixed3(c.complete_latency_ms()))),
                }));
            }
            ComponentKind::Bolt => {
                let per_input =
                    |f: &dyn Fn(&squall_topology_api::metrics::InputCounts) -> Value| {
                        c.inputs
                        .iter()
                        .filter(|((_, s), _)| sys || !s.starts_with("__"))
                        .map(|((comp, stream), n)| {
                            json!({ "component_id": comp, "stream_id": stream, "value": f(n) })
                        })
                        .collect::<Vec<_>>()
                    };
                bolts.push(json!({
                    "id": id,
                    "emitted": emitted,
                    "transferred": transferred,
                    "acked": per_input(&|n| json!(n.acked)),
                    "failed": per_input(&|n| json!(n.failed)),
                    "executed": per_input(&|n| json!(n.executed)),
                    "process_ms_avg": per_input(&|n| json!(fixed3(n.process_latency_ms()))),
                    "executed_ms_avg": per_input(&|n| json!(fixed3(n.execute_latency_ms()))),
                }));
            }
        }
    }
    json!({
        "window": window_name(WINDOWS[window]),
        "window-hint": window_pretty(WINDOWS[window]),
        "spouts": spouts,
        "bolts": bolts,
    })
}

/// `/api/v1/supervisor?id=|host=`: the supervisors matching (Storm's
/// summary rows) and the workers they run over every topology in `infos`.
///
/// # Errors
/// 400 without `id` or `host`; 404 when no live supervisor matches.
pub fn supervisor(
    cluster: &ClusterSummary,
    infos: &[TopologyInfo],
    id: Option<&str>,
    host: Option<&str>,
    now_ms: u64,
) -> Result<Value, ApiError> {
    if id.is_none() && host.is_none() {
        return Err(ApiError::bad_request(
            "give the supervisor's id or host: /api/v1/supervisor?id=ID or ?host=HOST",
        ));
    }
    let matches =
        |sid: &str, shost: &str| id.is_none_or(|i| i == sid) && host.is_none_or(|h| h == shost);
    let rows: Vec<Value> = cluster
        .supervisors
        .iter()
        .filter(|s| matches(&s.id, &s.host))
        .map(supervisor_row)
        .collect();
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no live supervisor with {}",
            match (id, host) {
                (Some(i), _) => format!("id {i:?}"),
                (None, Some(h)) => format!("host {h:?}"),
                (None, None) => unreachable!("checked above"),
            }
        )));
    }
    let workers: Vec<Value> = infos
        .iter()
        .flat_map(|i| workers(i, now_ms))
        .filter(|w| {
            matches(
                w["supervisorId"].as_str().unwrap_or_default(),
                w["host"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    Ok(json!({
        "supervisors": rows,
        "workers": workers,
        "schedulerDisplayResource": false,
    }))
}
