//! `/metrics`: every live topology's per-task metrics as Prometheus text
//! (OpenMetrics, through the `prometheus-client` crate), read from Nimbus
//! at each scrape.
//!
//! Families (labels `topology`, `component`, `task`, and `stream` where
//! counts are per stream):
//! - counters `squall_emitted_total`, `squall_transferred_total` (per
//!   stream), `squall_acked_total`, `squall_failed_total`,
//!   `squall_failed_timeout_total`, `squall_executed_total`;
//! - gauges `squall_pending` (tracked spout tuples in flight) and
//!   `squall_capacity` (busy fraction of the last 100 ms);
//! - histograms `squall_complete_latency_seconds`,
//!   `squall_execute_latency_seconds`, `squall_process_latency_seconds`
//!   (sampled at `topology.stats.sample.rate`, except complete latency);
//! - user metrics: gauge `squall_user_metric` and histogram
//!   `squall_user_histogram`, labelled `metric`;
//! - cluster gauges `squall_topology_status` (1, labelled `status`),
//!   `squall_topology_uptime_seconds`, `squall_topology_workers`,
//!   `squall_cluster_supervisors`, `squall_cluster_slots_total` and
//!   `squall_cluster_slots_used`.
//!
//! Counters are cumulative since each task started, so they reset when a
//! worker restarts, as Prometheus expects of counters.

use crate::nimbus::{ApiError, NimbusLink};
use crate::views::status_word;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use squall_cluster::rpc::{ClusterSummary, TopologyInfo};
use squall_topology_api::metrics::{HistogramSnapshot, LatencySummary, LATENCY_BUCKETS_MS};
use std::collections::BTreeMap;

/// The `Content-Type` of the scrape body.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the cluster and every topology from Nimbus and encodes them.
///
/// # Errors
/// As [`NimbusLink::call`]; a topology killed between the list and its
/// details is left out.
pub fn scrape(link: &NimbusLink) -> Result<String, ApiError> {
    let cluster = link.cluster()?;
    let mut topologies = Vec::new();
    for t in link.topologies()? {
        match link.info(&t.name) {
            Ok(info) => topologies.push(info),
            Err(e) if e.status == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(encode(cluster, topologies))
}

/// The text of `cluster` and `topologies`.
pub fn encode(cluster: ClusterSummary, topologies: Vec<TopologyInfo>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SquallCollector {
        cluster,
        topologies,
    }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct SquallCollector {
    cluster: ClusterSummary,
    topologies: Vec<TopologyInfo>,
}

type Labels = Vec<(&'static str, String)>;

/// A family's help text and its rows.
type Family = (&'static str, Vec<(Labels, Sample)>);

enum Sample {
    Counter(u64),
    Gauge(f64),
    /// Sum, count, and per-bucket (not cumulative) counts with `+Inf` last
    /// as `f64::MAX`, the encoder's convention.
    Histogram(f64, u64, Vec<(f64, u64)>),
}

fn histogram(bounds: &[f64], cumulative: &[u64], count: u64, sum: f64, scale: f64) -> Sample {
    let mut buckets = Vec::with_capacity(bounds.len() + 1);
    let mut below = 0;
    for (b, c) in bounds.iter().zip(cumulative) {
        buckets.push((b * scale, c.saturating_sub(below)));
        below = *c;
    }
    buckets.push((f64::MAX, count.saturating_sub(below)));
    Sample::Histogram(sum * scale, count, buckets)
}

fn latency(l: &LatencySummary) -> Option<Sample> {
    (l.count > 0 && l.buckets.len() == LATENCY_BUCKETS_MS.len())
        .then(|| histogram(&LATENCY_BUCKETS_MS, &l.buckets, l.count, l.sum_ms(), 0.001))
}

fn user_histogram(h: &HistogramSnapshot) -> Sample {
    histogram(&h.bounds, &h.cumulative, h.count, h.sum, 1.0)
}

fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: Vec<(Labels, Sample)>,
) -> Result<(), std::fmt::Error> {
    let Some((_, first)) = rows.first() else {
        return Ok(());
    };
    let kind = match first {
        Sample::Counter(_) => MetricType::Counter,
        Sample::Gauge(_) => MetricType::Gauge,
        Sample::Histogram(..) => MetricType::Histogram,
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, sample) in &rows {
        if labels.is_empty() {
            // No `{}`: some parsers refuse an empty label set.
            encode_sample(&mut metric, sample)?;
        } else {
            encode_sample(&mut metric.encode_family(labels)?, sample)?;
        }
    }
    Ok(())
}

fn encode_sample(m: &mut MetricEncoder, sample: &Sample) -> Result<(), std::fmt::Error> {
    match sample {
        Sample::Counter(v) => m.encode_counter::<NoLabelSet, _, u64>(v, None),
        Sample::Gauge(v) => m.encode_gauge(v),
        Sample::Histogram(sum, count, buckets) => {
            m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
        }
    }
}

impl Collector for SquallCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut f: BTreeMap<&'static str, Family> = BTreeMap::new();
        let mut put = |name: &'static str, help: &'static str, labels: Labels, s: Sample| {
            f.entry(name)
                .or_insert((help, Vec::new()))
                .1
                .push((labels, s));
        };
        let c = &self.cluster;
        put(
            "squall_cluster_supervisors",
            "Live supervisors.",
            vec![],
            Sample::Gauge(c.supervisors.len() as f64),
        );
        put(
            "squall_cluster_slots_total",
            "Worker slots of live supervisors.",
            vec![],
            Sample::Gauge(c.supervisors.iter().map(|s| s.slots as f64).sum()),
        );
        put(
            "squall_cluster_slots_used",
            "Worker slots in use.",
            vec![],
            Sample::Gauge(c.supervisors.iter().map(|s| s.used_slots as f64).sum()),
        );
        for info in &self.topologies {
            let topology = info.summary.name.clone();
            let t = || vec![("topology", topology.clone())];
            let mut status = t();
            status.push(("status", status_word(info.summary.status).to_owned()));
            put(
                "squall_topology_status",
                "1 for the topology's status.",
                status,
                Sample::Gauge(1.0),
            );
            put(
                "squall_topology_uptime_seconds",
                "Seconds since the topology was submitted.",
                t(),
                Sample::Gauge(info.summary.uptime_secs as f64),
            );
            put(
                "squall_topology_workers",
                "Workers assigned to the topology.",
                t(),
                Sample::Gauge(info.summary.num_workers as f64),
            );
            for (task, m) in &info.metrics.tasks {
                let base = || {
                    vec![
                        ("topology", topology.clone()),
                        ("component", m.component.0.clone()),
                        ("task", task.0.to_string()),
                    ]
                };
                let with = |k: &'static str, v: &str| {
                    let mut l = base();
                    l.push((k, v.to_owned()));
                    l
                };
                for (stream, n) in &m.emitted {
                    put(
                        "squall_emitted",
                        "Tuples emitted, per stream.",
                        with("stream", stream),
                        Sample::Counter(*n),
                    );
                }
                for (stream, n) in &m.transferred_streams {
                    put(
                        "squall_transferred",
                        "Tuples sent to tasks, per stream.",
                        with("stream", stream),
                        Sample::Counter(*n),
                    );
                }
                put(
                    "squall_acked",
                    "Bolt: inputs acked. Spout: tuple trees completed.",
                    base(),
                    Sample::Counter(m.acked),
                );
                put(
                    "squall_failed",
                    "Bolt: inputs failed. Spout: tuple trees failed.",
                    base(),
                    Sample::Counter(m.failed),
                );
                put(
                    "squall_failed_timeout",
                    "Spout: tuple trees failed by the message timeout.",
                    base(),
                    Sample::Counter(m.failed_timeout),
                );
                put(
                    "squall_executed",
                    "Bolt: tuples executed.",
                    base(),
                    Sample::Counter(m.executed),
                );
                put(
                    "squall_pending",
                    "Spout: tracked tuples in flight.",
                    base(),
                    Sample::Gauge(m.pending as f64),
                );
                put(
                    "squall_capacity",
                    "Bolt: busy fraction of the last 100 ms.",
                    base(),
                    Sample::Gauge(m.capacity),
                );
                let latencies = [
                    (
                        "squall_complete_latency_seconds",
                        "Spout: emit to tree completion.",
                        &m.complete_latency,
                    ),
                    (
                        "squall_execute_latency_seconds",
                        "Bolt: time in execute (sampled).",
                        &m.execute_latency,
                    ),
                    (
                        "squall_process_latency_seconds",
                        "Bolt: execute start to ack (sampled).",
                        &m.process_latency,
                    ),
                ];
                for (name, help, l) in latencies {
                    if let Some(s) = latency(l) {
                        put(name, help, base(), s);
                    }
                }
                for (name, v) in &m.user {
                    put(
                        "squall_user_metric",
                        "User counters and gauges (TopologyContext::register_counter, register_gauge, incr_metric, set_metric).",
                        with("metric", name),
                        Sample::Gauge(*v),
                    );
                }
                for (name, h) in &m.histograms {
                    put(
                        "squall_user_histogram",
                        "User histograms (TopologyContext::register_histogram).",
                        with("metric", name),
                        user_histogram(h),
                    );
                }
            }
        }
        for (name, (help, rows)) in f {
            family(&mut encoder, name, help, rows)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::rpc::SupervisorSummary;

    #[test]
    fn cluster_gauges_have_values() {
        let c = ClusterSummary {
            leader: None,
            supervisors: vec![SupervisorSummary {
                id: "s".into(),
                host: "h".into(),
                slots: 4,
                used_slots: 1,
                uptime_secs: 3,
                logviewer_port: None,
            }],
            nimbus_uptime_secs: 1,
        };
        let text = encode(c, vec![]);
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let slots = scrape
            .samples
            .iter()
            .find(|s| s.metric == "squall_cluster_slots_total")
            .unwrap();
        assert_eq!(slots.value, prometheus_parse::Value::Gauge(4.0), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
