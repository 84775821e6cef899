//! The JSON of Storm's UI REST API (`docs/STORM-UI-REST-API.md` in Apache
//! Storm), built from Nimbus's answers. Field names, windows (`600`,
//! `10800`, `86400`, `:all-time`), status words and number formats
//! (latencies and capacity as strings with three decimals) are Storm's, so
//! clients written for Storm read Squall.

use crate::nimbus::ApiError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};
use squall_cluster::rpc::{ClusterSummary, SupervisorSummary, TopologyInfo, TopologySummary};
use squall_cluster::schema::{TopologyStatus, WorkerSlot};
use squall_cluster::window_stats::{
    pretty_duration, window_name, window_pretty, Counters, TaskWindow, WindowStats, WINDOWS,
};
use squall_topology_api::spec::{ComponentKind, TopologySpec};
use squall_topology_api::ACKER_COMPONENT;
use std::collections::BTreeMap;

/// The version the API reports as `stormVersion` and `version`.
pub const VERSION: &str = concat!("squall-", env!("CARGO_PKG_VERSION"));

/// Index into [`WINDOWS`] of the `window` parameter (absent: all time).
///
/// # Errors
/// 400 naming the accepted values.
pub fn parse_window(window: Option<&str>) -> Result<usize, ApiError> {
    let Some(w) = window else {
        return Ok(WINDOWS.len() - 1);
    };
    WINDOWS
        .iter()
        .position(|s| window_name(*s) == w)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "window {w:?} is not one of 600, 10800, 86400, :all-time"
            ))
        })
}

/// Storm's status word: `ACTIVE`, `INACTIVE`, `REBALANCING`, `KILLED`.
pub fn status_word(s: TopologyStatus) -> &'static str {
    match s {
        TopologyStatus::Active => "ACTIVE",
        TopologyStatus::Inactive => "INACTIVE",
        TopologyStatus::Rebalancing => "REBALANCING",
        TopologyStatus::Killed => "KILLED",
    }
}

pub(crate) fn fixed3(v: f64) -> String {
    format!("{v:.3}")
}

/// Whether a component is hidden unless `sys=1` (Storm's system ids).
fn hidden(component: &str, sys: bool) -> bool {
    !sys && component.starts_with("__")
}

/// `/api/v1/cluster/summary`.
pub fn cluster_summary(c: &ClusterSummary, topologies: &[TopologySummary]) -> Value {
    let total: u32 = c.supervisors.iter().map(|s| s.slots).sum();
    let used: u32 = c.supervisors.iter().map(|s| s.used_slots).sum();
    json!({
        "stormVersion": VERSION,
        "supervisors": c.supervisors.len(),
        "topologies": topologies.len(),
        "slotsTotal": total,
        "slotsUsed": used,
        "slotsFree": total.saturating_sub(used),
        "executorsTotal": topologies.iter().map(|t| t.num_executors).sum::<u32>(),
        "tasksTotal": topologies.iter().map(|t| t.num_tasks).sum::<u32>(),
        "schedulerDisplayResource": false,
        "nimbusUptime": pretty_duration(c.nimbus_uptime_secs),
        "nimbusUptimeSeconds": c.nimbus_uptime_secs,
    })
}

/// One supervisor's row, Storm's fields.
pub fn supervisor_row(s: &SupervisorSummary) -> Value {
    json!({
        "id": s.id,
        "host": s.host,
        "uptime": pretty_duration(s.uptime_secs),
        "uptimeSeconds": s.uptime_secs,
        "slotsTotal": s.slots,
        "slotsUsed": s.used_slots,
        "slotsFree": s.slots.saturating_sub(s.used_slots),
        "version": VERSION,
    })
}

/// `/api/v1/supervisor/summary`.
pub fn supervisor_summary(c: &ClusterSummary) -> Value {
    let rows: Vec<Value> = c.supervisors.iter().map(supervisor_row).collect();
    json!({ "supervisors": rows, "schedulerDisplayResource": false })
}

/// One row of `/api/v1/topology/summary`.
pub fn topology_row(t: &TopologySummary) -> Value {
    json!({
        "id": t.id,
        "encodedId": t.id,
        "name": t.name,
        "status": status_word(t.status),
        "uptime": pretty_duration(t.uptime_secs),
        "uptimeSeconds": t.uptime_secs,
        "tasksTotal": t.num_tasks,
        "workersTotal": t.num_workers,
        "executorsTotal": t.num_executors,
        "replicationCount": t.replication_count,
        "schedulerInfo": null,
    })
}

/// A component's executors: (first task, last task, slot).
fn executors_of<'a>(
    info: &'a TopologyInfo,
    component: &'a str,
) -> impl Iterator<Item = (u32, u32, &'a WorkerSlot)> + 'a {
    info.executors
        .iter()
        .filter(move |(c, ..)| c == component)
        .map(|(_, first, last, slot)| (*first, *last, slot))
}

fn executor_counters(w: &WindowStats, first: u32, last: u32) -> (Counters, u64) {
    let mut c = Counters::default();
    let mut covered = 0;
    for t in first..=last {
        if let Some(tw) = w.tasks.get(&t) {
            c.add(&tw.counters);
            covered = covered.max(tw.covered_ms);
        }
    }
    (c, covered)
}

/// Storm's component capacity: the largest executor capacity over the
/// 10-minute window.
pub fn capacity(info: &TopologyInfo, component: &str) -> f64 {
    let Some(w) = info.windows.first() else {
        return 0.0;
    };
    executors_of(info, component)
        .map(|(first, last, _)| {
            let (counters, covered_ms) = executor_counters(w, first, last);
            TaskWindow {
                component: component.to_owned(),
                counters,
                covered_ms,
            }
            .capacity()
        })
        .fold(0.0, f64::max)
}

fn last_error(info: &TopologyInfo, component: &str, now_ms: u64) -> Map<String, Value> {
    let mut m = Map::new();
    let record = info
        .error_records
        .iter()
        .rev()
        .find(|e| e.component.as_str() == component);
    let link = record
        .and_then(|e| Some(log_link(info, e.slot.as_ref()?, Some(&e.message))))
        .unwrap_or_default();
    let (error, host, port, time) = match record {
        Some(e) => (
            e.message.clone(),
            e.slot.as_ref().map(|s| s.host.clone()).unwrap_or_default(),
            e.slot
                .as_ref()
                .map(|s| s.port.to_string())
                .unwrap_or_default(),
            Some(e.time_ms),
        ),
        None => (String::new(), String::new(), String::new(), None),
    };
    m.insert("lastError".into(), json!(error));
    m.insert("errorHost".into(), json!(host));
    m.insert("errorPort".into(), json!(port));
    m.insert("errorWorkerLogLink".into(), json!(link));
    m.insert("errorTime".into(), json!(time.map(|t| t / 1000)));
    m.insert(
        "errorLapsedSecs".into(),
        json!(time.map(|t| now_ms.saturating_sub(t) / 1000)),
    );
    m
}

fn num_tasks(info: &TopologyInfo, component: &str) -> u32 {
    executors_of(info, component)
        .map(|(first, last, _)| last + 1 - first)
        .sum()
}

fn spec_of(info: &TopologyInfo) -> TopologySpec {
    info.spec.clone().unwrap_or_default()
}

pub(crate) fn window_stats(info: &TopologyInfo, i: usize) -> WindowStats {
    info.windows.get(i).cloned().unwrap_or_else(|| WindowStats {
        window_secs: WINDOWS[i],
        tasks: BTreeMap::new(),
    })
}

fn kind_of(spec: &TopologySpec, component: &str) -> Option<ComponentKind> {
    spec.components.get(component).map(|c| c.kind)
}

/// The components shown: the spec's, plus `__acker` with `sys`.
pub(crate) fn components(info: &TopologyInfo, sys: bool) -> Vec<(String, ComponentKind)> {
    let spec = spec_of(info);
    let mut v: Vec<(String, ComponentKind)> = spec
        .components
        .iter()
        .map(|(id, c)| (id.0.clone(), c.kind))
        .filter(|(id, _)| !hidden(id, sys))
        .collect();
    if sys && info.executors.iter().any(|(c, ..)| c == ACKER_COMPONENT) {
        v.push((ACKER_COMPONENT.to_owned(), ComponentKind::Bolt));
    }
    v
}

/// Spout figures in one window: the keys of a `spouts` row or a
/// `spoutSummary` entry.
fn spout_figures(c: &Counters, sys: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("emitted".into(), json!(c.emitted_total(sys)));
    m.insert("transferred".into(), json!(c.transferred_total(sys)));
    m.insert(
        "completeLatency".into(),
        json!(fixed3(c.complete_latency_ms())),
    );
    m.insert("acked".into(), json!(c.acked));
    m.insert("failed".into(), json!(c.failed));
    m
}

/// A component's figures in one window, by its kind.
fn figures(kind: ComponentKind, c: &Counters, sys: bool) -> Map<String, Value> {
    match kind {
        ComponentKind::Spout => spout_figures(c, sys),
        ComponentKind::Bolt => bolt_figures(c, sys),
    }
}

/// Bolt figures in one window.
fn bolt_figures(c: &Counters, sys: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("emitted".into(), json!(c.emitted_total(sys)));
    m.insert("transferred".into(), json!(c.transferred_total(sys)));
    m.insert("executed".into(), json!(c.executed_total(sys)));
    m.insert(
        "executeLatency".into(),
        json!(fixed3(c.execute_latency_ms())),
    );
    m.insert(
        "processLatency".into(),
        json!(fixed3(c.process_latency_ms())),
    );
    m.insert("acked".into(), json!(c.acked));
    m.insert("failed".into(), json!(c.failed));
    m
}

fn window_entry(secs: Option<u64>, mut m: Map<String, Value>) -> Value {
    m.insert("windowPretty".into(), json!(window_pretty(secs)));
    m.insert("window".into(), json!(window_name(secs)));
    Value::Object(m)
}

/// Seconds since a worker started at `started_ms` (0: not heard from yet).
fn uptime_secs(started_ms: u64, now_ms: u64) -> u64 {
    if started_ms == 0 {
        0
    } else {
        now_ms.saturating_sub(started_ms) / 1000
    }
}

/// Seconds since the worker on `slot` started.
fn slot_uptime_secs(info: &TopologyInfo, slot: &WorkerSlot, now_ms: u64) -> u64 {
    let started = info
        .workers
        .iter()
        .find(|(s, _)| s == slot)
        .map_or(0, |(_, t)| *t);
    uptime_secs(started, now_ms)
}

/// The link to the log of `slot`'s worker on its supervisor's log viewer
/// (`""` when that supervisor serves none); with `error`, the page opens
/// searching for the error's first line (its first 100 characters).
pub fn log_link(info: &TopologyInfo, slot: &WorkerSlot, error: Option<&str>) -> String {
    let file = squall_cluster::worker_env::log_file_name(&info.summary.id, slot.port);
    let mut link = viewer_link(info, slot, &file);
    if link.is_empty() {
        return link;
    }
    if let Some(line) = error
        .and_then(|e| e.lines().next())
        .filter(|l| !l.is_empty())
    {
        let head: String = line.chars().take(100).collect();
        link.push_str("&search=");
        link.extend(utf8_percent_encode(&head, QUERY));
    }
    link
}

/// Everything but RFC 3986's unreserved characters.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The log viewer page of `file` on `slot`'s supervisor (`""` when it
/// serves none).
fn viewer_link(info: &TopologyInfo, slot: &WorkerSlot, file: &str) -> String {
    match info.logviewers.get(&slot.supervisor) {
        Some(base) => format!("{base}/log?file={}", utf8_percent_encode(file, QUERY)),
        None => String::new(),
    }
}

/// The link to the sampled events of `slot`'s worker (`squall debug`) on
/// its supervisor's log viewer (`""` when it serves none): Storm's
/// `eventLogLink`.
pub fn events_link(info: &TopologyInfo, slot: &WorkerSlot) -> String {
    let file = squall_cluster::worker_env::events_file_name(&info.summary.id, slot.port);
    viewer_link(info, slot, &file)
}

pub(crate) fn workers(info: &TopologyInfo, now_ms: u64) -> Vec<Value> {
    info.workers
        .iter()
        .map(|(slot, started)| {
            let mut tasks: BTreeMap<&str, u32> = BTreeMap::new();
            let mut executors = 0;
            for (c, first, last, s) in &info.executors {
                if s == slot {
                    *tasks.entry(c.as_str()).or_default() += last + 1 - first;
                    executors += 1;
                }
            }
            let uptime = uptime_secs(*started, now_ms);
            json!({
                "supervisorId": slot.supervisor,
                "host": slot.host,
                "port": slot.port,
                "topologyId": info.summary.id,
                "topologyName": info.summary.name,
                "executorsTotal": executors,
                "componentNumTasks": tasks,
                "uptime": pretty_duration(uptime),
                "uptimeSeconds": uptime,
                "workerLogLink": log_link(info, slot, None),
            })
        })
        .collect()
}

/// `/api/v1/topology/:id?window=&sys=`.
pub fn topology_page(info: &TopologyInfo, window: usize, sys: bool, now_ms: u64) -> Value {
    let s = &info.summary;
    let w = window_stats(info, window);
    let totals: Vec<Value> = (0..WINDOWS.len())
        .map(|i| {
            let ws = window_stats(info, i);
            let mut spouts = Counters::default();
            let mut emitted = 0;
            let mut transferred = 0;
            for (id, kind) in components(info, sys) {
                let c = ws.component(&id);
                emitted += c.emitted_total(sys);
                transferred += c.transferred_total(sys);
                if kind == ComponentKind::Spout {
                    spouts.add(&c);
                }
            }
            let mut m = spout_figures(&spouts, sys);
            m.insert("emitted".into(), json!(emitted));
            m.insert("transferred".into(), json!(transferred));
            window_entry(WINDOWS[i], m)
        })
        .collect();
    let mut spouts = Vec::new();
    let mut bolts = Vec::new();
    for (id, kind) in components(info, sys) {
        let c = w.component(&id);
        let executors = executors_of(info, &id).count();
        let mut row = figures(kind, &c, sys);
        row.insert("executors".into(), json!(executors));
        row.insert("tasks".into(), json!(num_tasks(info, &id)));
        row.insert("encodedId".into(), json!(id));
        row.extend(last_error(info, &id, now_ms));
        match kind {
            ComponentKind::Spout => {
                row.insert("spoutId".into(), json!(id));
                row.insert("encodedSpoutId".into(), json!(id));
                spouts.push(Value::Object(row));
            }
            ComponentKind::Bolt => {
                row.insert("boltId".into(), json!(id));
                row.insert("encodedBoltId".into(), json!(id));
                row.insert("capacity".into(), json!(fixed3(capacity(info, &id))));
                bolts.push(Value::Object(row));
            }
        }
    }
    let config = info.config.clone().unwrap_or_default();
    json!({
        "id": s.id,
        "encodedId": s.id,
        "name": s.name,
        "uptime": pretty_duration(s.uptime_secs),
        "uptimeSeconds": s.uptime_secs,
        "status": status_word(s.status),
        "tasksTotal": s.num_tasks,
        "workersTotal": s.num_workers,
        "executorsTotal": s.num_executors,
        "msgTimeout": config.message_timeout_secs,
        "window": window_name(WINDOWS[window]),
        "windowHint": window_pretty(WINDOWS[window]),
        "schedulerDisplayResource": false,
        "replicationCount": s.replication_count,
        // Storm's event sampling of the whole topology (`squall debug`).
        "debug": info.debug.topology.is_some_and(|o| o.enable),
        "samplingPct": info.debug.topology.map_or(0.0, |o| o.sampling_pct),
        "topologyStats": totals,
        "workers": workers(info, now_ms),
        "spouts": spouts,
        "bolts": bolts,
        "configuration": config.to_storm_map(),
        "user": null,
        "owner": "",
    })
}

/// `/api/v1/topology/:id/component/:component?window=&sys=`.
///
/// # Errors
/// 404 naming the component when the topology has no such component.
pub fn component_page(
    info: &TopologyInfo,
    component: &str,
    window: usize,
    sys: bool,
    now_ms: u64,
) -> Result<Value, ApiError> {
    let spec = spec_of(info);
    // The acker is no spec component; it is shown when it runs.
    let acker = component == ACKER_COMPONENT && executors_of(info, component).next().is_some();
    let kind = kind_of(&spec, component)
        .or_else(|| acker.then_some(ComponentKind::Bolt))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "topology {:?} has no component {component:?}",
                info.summary.id
            ))
        })?;
    let w = window_stats(info, window);
    let c = w.component(component);
    let summary: Vec<Value> = (0..WINDOWS.len())
        .map(|i| {
            let ci = window_stats(info, i).component(component);
            let m = figures(kind, &ci, sys);
            window_entry(WINDOWS[i], m)
        })
        .collect();
    let output: Vec<Value> = c
        .emitted
        .iter()
        .filter(|(stream, _)| sys || !stream.starts_with("__"))
        .map(|(stream, emitted)| {
            json!({
                "stream": stream,
                "encodedStream": stream,
                "emitted": emitted,
                "transferred": c.transferred.get(stream).copied().unwrap_or(0),
                "completeLatency": fixed3(if kind == ComponentKind::Spout { c.complete_latency_ms() } else { 0.0 }),
                "acked": if kind == ComponentKind::Spout { c.acked } else { 0 },
                "failed": if kind == ComponentKind::Spout { c.failed } else { 0 },
            })
        })
        .collect();
    let inputs: Vec<Value> = spec
        .components
        .get(component)
        .map(|cs| {
            cs.inputs
                .iter()
                .map(|i| {
                    let key = (i.component.0.to_string(), i.stream.0.to_string());
                    let n = c.inputs.get(&key).cloned().unwrap_or_default();
                    json!({
                        "component": i.component.0,
                        "encodedComponentId": i.component.0,
                        "stream": i.stream.0,
                        "grouping": i.grouping.name(),
                        "executed": n.executed,
                        "executeLatency": fixed3(n.execute_latency_ms()),
                        "processLatency": fixed3(n.process_latency_ms()),
                        "acked": n.acked,
                        "failed": n.failed,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let executors: Vec<Value> = executors_of(info, component)
        .map(|(first, last, slot)| {
            let (ec, covered_ms) = executor_counters(&w, first, last);
            let mut m = figures(kind, &ec, sys);
            let uptime = slot_uptime_secs(info, slot, now_ms);
            let id = format!("[{first}-{last}]");
            m.insert("id".into(), json!(id));
            m.insert("encodedId".into(), json!(id));
            m.insert("host".into(), json!(slot.host));
            m.insert("port".into(), json!(slot.port));
            m.insert("uptime".into(), json!(pretty_duration(uptime)));
            m.insert("uptimeSeconds".into(), json!(uptime));
            m.insert("workerLogLink".into(), json!(log_link(info, slot, None)));
            m.insert("eventLogLink".into(), json!(events_link(info, slot)));
            if kind == ComponentKind::Bolt {
                let cap = TaskWindow {
                    component: component.to_owned(),
                    counters: ec,
                    covered_ms,
                }
                .capacity();
                m.insert("capacity".into(), json!(fixed3(cap)));
            }
            Value::Object(m)
        })
        .collect();
    let errors: Vec<Value> = info
        .error_records
        .iter()
        .filter(|e| e.component.as_str() == component)
        .rev()
        .map(|e| {
            json!({
                "errorTime": e.time_ms,
                "errorHost": e.slot.as_ref().map(|s| s.host.clone()).unwrap_or_default(),
                "errorPort": e.slot.as_ref().map(|s| s.port.to_string()).unwrap_or_default(),
                "errorWorkerLogLink": e.slot.as_ref().map(|s| log_link(info, s, Some(&e.message))).unwrap_or_default(),
                "errorLapsedSecs": now_ms.saturating_sub(e.time_ms) / 1000,
                "error": e.message,
                "task": e.task,
            })
        })
        .collect();
    let sampling = info.debug.of(component);
    let mut page = json!({
        "id": component,
        "encodedId": component,
        "name": info.summary.name,
        "topologyId": info.summary.id,
        "encodedTopologyId": info.summary.id,
        "topologyStatus": status_word(info.summary.status),
        "componentType": match kind { ComponentKind::Spout => "spout", ComponentKind::Bolt => "bolt" },
        "executors": executors_of(info, component).count(),
        "tasks": num_tasks(info, component),
        "window": window_name(WINDOWS[window]),
        "windowHint": window_pretty(WINDOWS[window]),
        "schedulerDisplayResource": false,
        "profilingAndDebuggingCapable": false,
        "debug": sampling.is_some_and(|o| o.enable),
        "samplingPct": sampling.map_or(0.0, |o| o.sampling_pct),
        "eventLogLink": executors_of(info, component)
            .next()
            .map(|(_, _, slot)| events_link(info, slot))
            .unwrap_or_default(),
        "componentErrors": errors,
        "outputStats": output,
        "executorStats": executors,
        "user": null,
    });
    let obj = page.as_object_mut().expect("a JSON object");
    match kind {
        ComponentKind::Spout => {
            obj.insert("spoutSummary".into(), json!(summary));
        }
        ComponentKind::Bolt => {
            obj.insert("boltStats".into(), json!(summary));
            obj.insert("inputStats".into(), json!(inputs));
            obj.insert("capacity".into(), json!(fixed3(capacity(info, component))));
        }
    }
    Ok(page)
}

/// `/api/v1/topology/:id/visualization?window=&sys=`: Storm's map from
/// component id to `:type`, `:capacity`, `:latency`, `:transferred`,
/// `:stats` (per executor: `:host`, `:port`, `:uptime_secs`,
/// `:transferred` by stream), `:link` and `:inputs` (`:component`,
/// `:stream`, `:sani-stream`, `:grouping`). Squall adds `:emitted` (by
/// stream) and `:window-secs` (the time the window covers, for rates).
pub fn visualization(info: &TopologyInfo, window: usize, sys: bool, now_ms: u64) -> Value {
    let spec = spec_of(info);
    let w = window_stats(info, window);
    let mut out = Map::new();
    for (id, kind) in components(info, sys) {
        let c = w.component(&id);
        let covered = w
            .tasks
            .values()
            .filter(|t| t.component == id)
            .map(|t| t.covered_ms)
            .max()
            .unwrap_or(0);
        let stats: Vec<Value> = executors_of(info, &id)
            .map(|(first, last, slot)| {
                let (ec, _) = executor_counters(&w, first, last);
                json!({
                    ":host": slot.host,
                    ":port": slot.port,
                    ":uptime_secs": slot_uptime_secs(info, slot, now_ms),
                    ":transferred": ec.transferred,
                })
            })
            .collect();
        let inputs: Vec<Value> = spec
            .components
            .get(id.as_str())
            .map(|cs| {
                cs.inputs
                    .iter()
                    .filter(|i| !hidden(i.component.as_str(), sys))
                    .map(|i| {
                        json!({
                            ":component": i.component.0,
                            ":stream": i.stream.0,
                            ":sani-stream": sanitize_stream(&i.stream.0),
                            ":grouping": i.grouping.name(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (kind_word, cap, latency) = match kind {
            ComponentKind::Spout => ("spout", 0.0, c.complete_latency_ms()),
            ComponentKind::Bolt => ("bolt", capacity(info, &id), c.process_latency_ms()),
        };
        out.insert(
            id.clone(),
            json!({
                ":type": kind_word,
                ":capacity": cap,
                ":latency": latency,
                ":transferred": c.transferred,
                ":emitted": c.emitted,
                ":window-secs": covered as f64 / 1000.0,
                ":stats": stats,
                ":link": format!("/component.html?id={id}&topology_id={}", info.summary.id),
                ":inputs": inputs,
            }),
        );
    }
    Value::Object(out)
}

/// Storm's `sanitizeStreamName`: characters other than letters, digits,
/// `-` and `_` become `_`, with a leading `s` when it starts otherwise
/// than with a letter.
fn sanitize_stream(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.starts_with(|c: char| c.is_ascii_alphabetic()) {
        clean
    } else {
        format!("s{clean}")
    }
}

/// `/api/v1/topology-workers/:id`.
pub fn topology_workers(info: &TopologyInfo) -> Value {
    let list: Vec<Value> = info
        .workers
        .iter()
        .map(|(s, _)| json!({ "host": s.host, "port": s.port }))
        .collect();
    json!({ "hostPortList": list, "logviewerPort": null })
}
