//! User metrics a task registers through its [`TopologyContext`]
//! (Storm 2's `registerCounter`, `registerGauge`, `registerHistogram`):
//! cheap handles the task updates from its own thread, read by the runtime
//! whenever it publishes the task's metrics. Values reach Nimbus with the
//! worker heartbeats and appear in the UI's Prometheus endpoint.
//!
//! [`TopologyContext`]: crate::TopologyContext

use crate::metrics::HistogramSnapshot;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default histogram bucket upper bounds: Prometheus client libraries'
/// defaults (`.005` to `10`), for values in seconds.
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count (Storm's `Counter`). Clones share the
/// count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1)
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of observed values in fixed buckets (Storm's
/// `Histogram`, exported with Prometheus's cumulative buckets). Clones
/// share the data.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Mutex<Buckets>>);

/// Per-bucket counts (the last counts values above every bound): an update
/// touches one bucket; [`Histogram::snapshot`] makes them cumulative.
#[derive(Debug)]
struct Buckets {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Self(Arc::new(Mutex::new(Buckets {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: 0.0,
        })))
    }

    /// Records one observation of `value`.
    pub fn update(&self, value: f64) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let i = h.bounds.partition_point(|b| *b < value);
        h.counts[i] += 1;
        h.sum += value;
    }

    /// The distribution so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0;
        let running: Vec<u64> = h
            .counts
            .iter()
            .map(|c| {
                total += c;
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: h.bounds.clone(),
            cumulative: running[..h.bounds.len()].to_vec(),
            count: total,
            sum: h.sum,
        }
    }
}

type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

#[derive(Clone)]
enum Registered {
    Counter(Counter),
    Gauge(GaugeFn),
    Histogram(Histogram),
}

/// One task's registered metrics, by name. The runtime makes one per task
/// and reads it with [`MetricRegistry::values`] and
/// [`MetricRegistry::histograms`].
#[derive(Clone, Default)]
pub struct MetricRegistry(Arc<Mutex<BTreeMap<String, Registered>>>);

impl std::fmt::Debug for MetricRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_tuple("MetricRegistry").field(&names).finish()
    }
}

impl MetricRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Registered>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counter `name`, made on first call; a later call returns the
    /// same counter. A name registered as another kind is replaced.
    pub fn counter(&self, name: &str) -> Counter {
        let mut m = self.lock();
        if let Some(Registered::Counter(c)) = m.get(name) {
            return c.clone();
        }
        let c = Counter::default();
        m.insert(name.to_owned(), Registered::Counter(c.clone()));
        c
    }

    /// Registers `read` as gauge `name`: it is called, on the task's
    /// executor thread, each time metrics are published (every 100 ms).
    pub fn gauge(&self, name: &str, read: impl Fn() -> f64 + Send + Sync + 'static) {
        self.lock()
            .insert(name.to_owned(), Registered::Gauge(Arc::new(read)));
    }

    /// The histogram `name` with bucket upper bounds `bounds` (sorted and
    /// deduplicated; `+Inf` is implied), made on first call.
    pub fn histogram(&self, name: &str, bounds: &[f64]) -> Histogram {
        let mut m = self.lock();
        if let Some(Registered::Histogram(h)) = m.get(name) {
            return h.clone();
        }
        let h = Histogram::new(bounds);
        m.insert(name.to_owned(), Registered::Histogram(h.clone()));
        h
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Counter and gauge values now, by name.
    pub fn values(&self) -> BTreeMap<String, f64> {
        let m: Vec<(String, Registered)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        m.into_iter()
            .filter_map(|(k, v)| match v {
                Registered::Counter(c) => Some((k, c.get() as f64)),
                Registered::Gauge(g) => Some((k, g())),
                Registered::Histogram(_) => None,
            })
            .collect()
    }

    /// Histogram snapshots now, by name.
    pub fn histograms(&self) -> BTreeMap<String, HistogramSnapshot> {
        self.lock()
            .iter()
            .filter_map(|(k, v)| match v {
                Registered::Histogram(h) => Some((k.clone(), h.snapshot())),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let r = MetricRegistry::default();
        let h = r.histogram("size", &[10.0, 1.0, 100.0]);
        for v in [0.5, 1.0, 5.0, 50.0, 500.0] {
            h.update(v);
        }
        let s = &r.histograms()["size"];
        assert_eq!(s.bounds, vec![1.0, 10.0, 100.0]);
        assert_eq!(s.cumulative, vec![2, 3, 4]);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 556.5);
    }

    #[test]
    fn counters_and_gauges_read_by_name() {
        let r = MetricRegistry::default();
        let c = r.counter("seen");
        c.inc();
        r.counter("seen").inc_by(2);
        r.gauge("depth", || 7.5);
        let v = r.values();
        assert_eq!(v["seen"], 3.0);
        assert_eq!(v["depth"], 7.5);
        assert!(r.histograms().is_empty());
    }
}
