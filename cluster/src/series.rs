//! Time series for the UI's charts: a topology's components over the
//! last 10 minutes in 30 s points (the buckets of Nimbus's 10-minute
//! window, Storm's `RollingWindowSet` resolution): counts, latency
//! percentiles from the bucketed latencies, capacity and time under
//! backpressure. Pure.

use crate::window_stats::Counters;
use serde::{Deserialize, Serialize};
use squall_topology_api::metrics::LATENCY_BUCKETS_MS;
use std::collections::BTreeMap;

/// Width of a point, ms (Nimbus's 10-minute window buckets).
pub const POINT_MS: u64 = 30_000;
/// Span of a series, ms.
pub const SERIES_MS: u64 = 600_000;

/// One component over one 30 s bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// The bucket's start, ms since the Unix epoch.
    pub start_ms: u64,
    /// The time it covers, ms: [`POINT_MS`], or less for the current one.
    pub span_ms: u64,
    /// Tuples emitted (every stream).
    pub emitted: u64,
    /// Acks.
    pub acked: u64,
    /// Fails.
    pub failed: u64,
    /// Tuples executed (bolts).
    pub executed: u64,
    /// Complete latency median, ms (spouts; 0 without samples).
    pub complete_p50_ms: f64,
    /// Complete latency 99th percentile, ms.
    pub complete_p99_ms: f64,
    /// Execute latency median, ms (bolts).
    pub execute_p50_ms: f64,
    /// Execute latency 99th percentile, ms.
    pub execute_p99_ms: f64,
    /// Storm's capacity of its busiest task (executed × mean execute
    /// latency ÷ span).
    pub capacity: f64,
    /// Most time any of its tasks spent under backpressure, ms.
    pub backpressured_ms: u64,
}

/// The `q` quantile (0..1), ms, of latencies counted in `buckets`
/// (samples at most each of [`LATENCY_BUCKETS_MS`], cumulative) out of
/// `count` samples, interpolated linearly within its bucket; samples over
/// the last bound count at the last bound. 0 without samples.
pub fn percentile_ms(buckets: &[u64], count: u64, q: f64) -> f64 {
    if count == 0 || buckets.is_empty() {
        return 0.0;
    }
    let target = (q * count as f64).max(1.0);
    let mut below = 0u64;
    let mut lower = 0.0;
    for (n, bound) in buckets.iter().zip(LATENCY_BUCKETS_MS) {
        if *n as f64 >= target {
            let within = (*n - below).max(1) as f64;
            return lower + (bound - lower) * ((target - below as f64) / within).clamp(0.0, 1.0);
        }
        below = *n;
        lower = bound;
    }
    lower
}

/// The series of each component in `buckets` (one task's 30 s bucket
/// each: its component, start ms and counts) at `now_ms`: one point per
/// bucket of the last 10 minutes, oldest first, zero where nothing was
/// counted.
pub fn series<'a>(
    buckets: impl IntoIterator<Item = (&'a str, u64, &'a Counters)>,
    now_ms: u64,
) -> BTreeMap<String, Vec<SeriesPoint>> {
    let current = now_ms - now_ms % POINT_MS;
    let points = (SERIES_MS / POINT_MS) as usize;
    let first = current.saturating_sub((points as u64 - 1) * POINT_MS);
    let span = |start: u64| {
        if start == current {
            (now_ms - start).max(1)
        } else {
            POINT_MS
        }
    };
    let mut sums: BTreeMap<String, Vec<(Counters, f64, u64)>> = BTreeMap::new();
    for (component, start, c) in buckets {
        let row = sums
            .entry(component.to_owned())
            .or_insert_with(|| vec![Default::default(); points]);
        if start < first || start > current {
            continue;
        }
        let i = ((start - first) / POINT_MS) as usize;
        let capacity = c.executed as f64 * c.execute_latency_ms() / span(start) as f64;
        let (sum, cap, bp) = &mut row[i];
        sum.add(c);
        *cap = cap.max(capacity);
        *bp = (*bp).max(c.backpressured_ms);
    }
    sums.into_iter()
        .map(|(component, row)| {
            let points = row
                .into_iter()
                .enumerate()
                .map(|(i, (c, capacity, backpressured_ms))| {
                    let start_ms = first + i as u64 * POINT_MS;
                    SeriesPoint {
                        start_ms,
                        span_ms: span(start_ms),
                        emitted: c.emitted_total(false),
                        acked: c.acked,
                        failed: c.failed,
                        executed: c.executed_total(false),
                        complete_p50_ms: percentile_ms(&c.complete_buckets, c.complete_count, 0.5),
                        complete_p99_ms: percentile_ms(&c.complete_buckets, c.complete_count, 0.99),
                        execute_p50_ms: percentile_ms(&c.execute_buckets, c.execute_count, 0.5),
                        execute_p99_ms: percentile_ms(&c.execute_buckets, c.execute_count, 0.99),
                        capacity,
                        backpressured_ms,
                    }
                })
                .collect();
            (component, points)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_their_bucket() {
        // Bounds start 0.1, 0.25, 0.5, 1 ms ...: 100 samples, 50 at most
        // 0.1 ms and 100 at most 0.25 ms.
        let buckets = [50, 100, 100, 100];
        assert!((percentile_ms(&buckets, 100, 0.5) - 0.1).abs() < 1e-9);
        let p99 = percentile_ms(&buckets, 100, 0.99);
        assert!(p99 > 0.1 && p99 <= 0.25, "{p99}");
        assert_eq!(percentile_ms(&[], 0, 0.5), 0.0);
        // Every sample past the last bound: the last bound.
        let last = LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.len() - 1];
        assert_eq!(percentile_ms(&[0; 16], 10, 0.5), last);
    }

    #[test]
    fn tasks_sum_into_thirty_second_points_of_the_last_ten_minutes() {
        let now = 10 * SERIES_MS + 12_000;
        let current = now - 12_000;
        let c = |acked, executed, execute_ms, bp| Counters {
            acked,
            executed,
            execute_ms,
            execute_count: executed,
            backpressured_ms: bp,
            ..Counters::default()
        };
        let a = [
            (current - POINT_MS, c(10, 100, 1500.0, 0)),
            (current, c(5, 0, 0.0, 700)),
        ];
        let b = [
            (current - POINT_MS, c(20, 100, 3000.0, 0)),
            (current - SERIES_MS, c(99, 0, 0.0, 0)),
        ];
        let s = series(
            a.iter().chain(&b).map(|(start, c)| ("count", *start, c)),
            now,
        );
        let points = &s["count"];
        assert_eq!(points.len(), 20);
        assert_eq!(points[19].start_ms, current);
        assert_eq!(points[19].span_ms, 12_000);
        assert_eq!((points[19].acked, points[19].backpressured_ms), (5, 700));
        assert_eq!((points[18].acked, points[18].executed), (30, 200));
        // The busier task: 100 executions of 30 ms in 30 s.
        assert!(
            (points[18].capacity - 0.1).abs() < 1e-9,
            "{}",
            points[18].capacity
        );
        // Older than ten minutes: left out.
        assert!(points
            .iter()
            .all(|p| p.acked != 99 && p.start_ms > current - SERIES_MS));
        assert_eq!(points[0].acked, 0);
    }
}
