//! Windowed bolts in LocalCluster: the flights windows against a plain
//! computation over the CSV (in file order, shuffled within the lag, and
//! with a lag too short, so rows go to the late stream); acking as tuples
//! leave their last window; processing-time windows; persistent windows
//! longer than the message timeout, and whose redb file is held by another
//! owner at prepare; validation.

mod common;
#[path = "../examples/flights_windows/windows.rs"]
#[allow(dead_code)]
mod windows;

use rand::{Rng, SeedableRng};
use squall::stateful::window::END_OF_STREAM;
use squall::testing::{wait_for, Feeder};
use squall::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use windows::{Flight, Run, HOUR_MS, KINDS};

const WAIT: Duration = Duration::from_secs(180);

fn flights_csv() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let csv = root.join("data/flights/flights.csv");
    if !csv.exists() {
        let status = std::process::Command::new(root.join("scripts/fetch-data"))
            .status()
            .expect("run scripts/fetch-data");
        assert!(status.success(), "scripts/fetch-data failed");
    }
    csv
}

fn flights() -> Vec<Flight> {
    windows::arrival_order(windows::load(&flights_csv()).unwrap())
}

fn config() -> Config {
    let mut c = Config::new();
    c.acker_executors = Some(1);
    c
}

/// Runs the flights topology over `rows` with `lag` until every row is
/// acked, and returns the run.
fn run_flights(name: &str, rows: Vec<Flight>, lag: Duration) -> Run {
    let run = Run::new(rows);
    let topology = windows::topology(&run, lag, 2).unwrap();
    let cluster = LocalCluster::new();
    cluster.submit_topology(name, &config(), topology).unwrap();
    assert!(
        wait_for(WAIT, || run.done()),
        "{} of {} rows acked",
        run.acked.load(std::sync::atomic::Ordering::Relaxed),
        run.rows.len()
    );
    cluster.kill_topology(name).unwrap();
    run
}

fn assert_same_as_plain(run: &Run) {
    let received = run.received.lock().unwrap();
    assert!(received.repeats.is_empty(), "{:?}", &received.repeats[..]);
    assert!(
        received.late.is_empty(),
        "no row is late within a day's lag"
    );
    let expected = windows::plain(&run.rows, &KINDS);
    let differ = windows::differences(&expected, &received.figures);
    assert!(
        differ.is_empty(),
        "{} of {} windows differ, e.g. {:?}",
        differ.len(),
        expected.len(),
        &differ[..differ.len().min(5)]
    );
    assert!(expected.len() > 100_000);
}

#[test]
fn flights_windows_equal_a_plain_computation() {
    let run = run_flights("flights-windows", flights(), Duration::from_secs(86_400));
    assert_same_as_plain(&run);
}

#[test]
fn flights_windows_do_not_depend_on_order_within_the_lag() {
    let mut rows = flights();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    // Within each month, play rows by their hour plus up to 12 hours of
    // jitter: a different order, still within the day's lag.
    let mut keyed: Vec<(u32, i64, Flight)> = rows
        .drain(..)
        .map(|f| (f.month, f.ts + rng.random_range(0..12 * HOUR_MS), f))
        .collect();
    keyed.sort_by_key(|(month, key, _)| (*month, *key));
    let shuffled: Vec<Flight> = keyed.into_iter().map(|(_, _, f)| f).collect();
    let run = run_flights("flights-shuffled", shuffled, Duration::from_secs(86_400));
    assert_same_as_plain(&run);
}

#[test]
fn with_a_short_lag_late_rows_go_to_the_late_stream_and_every_row_counts_once() {
    let rows = flights();
    let run = run_flights("flights-late", rows, Duration::from_secs(3600));
    let received = run.received.lock().unwrap();
    let late = received.late.get("hourly").cloned().unwrap_or_default();
    assert!(!late.is_empty(), "a one-hour lag leaves rows late");
    // Each row is in exactly one hourly window or on the late stream.
    let mut per_carrier: BTreeMap<String, i64> = BTreeMap::new();
    for ((kind, carrier, _), f) in &received.figures {
        if kind == "1h" {
            *per_carrier.entry(carrier.clone()).or_default() += f.flights;
        }
    }
    for (carrier, _) in &late {
        *per_carrier.entry(carrier.clone()).or_default() += 1;
    }
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for f in run.rows.iter() {
        *expected.entry(f.carrier.clone()).or_default() += 1;
    }
    assert_eq!(per_carrier, expected, "rows per carrier, windows + late");
    // A late row is more than the lag behind the largest timestamp played
    // before it: no row within an hour of it is late.
    let mut could_be_late: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let mut largest = i64::MIN;
    for f in run.rows.iter() {
        if f.ts < largest.saturating_sub(HOUR_MS) {
            *could_be_late.entry((f.carrier.clone(), f.ts)).or_default() += 1;
        }
        largest = largest.max(f.ts);
    }
    let mut seen_late: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for row in &late {
        *seen_late.entry(row.clone()).or_default() += 1;
    }
    for (row, n) in &seen_late {
        let allowed = could_be_late.get(row).copied().unwrap_or(0);
        assert!(
            *n <= allowed,
            "row {row:?} late {n} times, but only {allowed} such rows trail by over an hour"
        );
    }
    // Windows of rows that were on time hold exactly those rows.
    let on_time: Vec<Flight> = {
        let mut late_left = seen_late.clone();
        run.rows
            .iter()
            .filter(|f| match late_left.get_mut(&(f.carrier.clone(), f.ts)) {
                Some(n) if *n > 0 && f.ts < i64::MAX => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .cloned()
            .collect()
    };
    let hourly: windows::Figures = windows::plain(&on_time, &KINDS[..1]);
    let got_hourly: windows::Figures = received
        .figures
        .iter()
        .filter(|((k, _, _), _)| k == "1h")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let flights = |f: &windows::Figures| -> BTreeMap<_, i64> {
        f.iter().map(|(k, v)| (k.clone(), v.flights)).collect()
    };
    assert_eq!(flights(&got_hourly), flights(&hourly));
}

/// Collects every tuple a bolt emits.
struct Collect(Arc<Mutex<Vec<Values>>>);

impl Bolt for Collect {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        self.0.lock().unwrap().push(t.values().clone());
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Emits the window's values (field 0 of each tuple) as one list.
struct Contents;

impl WindowedBolt for Contents {
    fn execute(&mut self, w: &TupleWindow<'_>, out: &mut WindowCollector<'_, '_>) {
        let all: Vec<Value> = w.get().map(|t| t.values()[0].clone()).collect();
        let new: Vec<Value> = w.new_tuples().map(|t| t.values()[0].clone()).collect();
        let expired: Vec<Value> = w.expired().map(|t| t.values()[0].clone()).collect();
        out.emit(values![
            Value::List(all),
            Value::List(new),
            Value::List(expired)
        ]);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["window", "new", "expired"]);
    }
}

fn windowed(
    feeder: &Feeder,
    window: WindowConfig,
    persistent: bool,
) -> (Topology, Arc<Mutex<Vec<Values>>>) {
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut b = TopologyBuilder::new();
    b.set_spout("feed", feeder.spout(), 1);
    if persistent {
        b.set_stateful_windowed_bolt("w", || Contents, window, 1)
            .shuffle_grouping("feed");
    } else {
        b.set_windowed_bolt("w", || Contents, window, 1)
            .shuffle_grouping("feed");
    }
    let o = out.clone();
    b.set_bolt("out", move || Collect(o.clone()), 1)
        .shuffle_grouping("w");
    (b.create_topology().unwrap(), out)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_list()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

/// Every value any window held, sorted.
fn all_windowed(out: &Mutex<Vec<Values>>) -> Vec<i64> {
    let mut seen: Vec<i64> = out
        .lock()
        .unwrap()
        .iter()
        .flat_map(|v| ints(&v[0]))
        .collect();
    seen.sort_unstable();
    seen
}

#[test]
fn count_windows_ack_tuples_as_they_leave_their_last_window() {
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::window(Length::Count(4), Length::Count(2));
    let (topology, out) = windowed(&feeder, window, false);
    let cluster = LocalCluster::new();
    let mut c = config();
    c.message_timeout_secs = 2;
    cluster.submit_topology("count-acks", &c, topology).unwrap();
    for n in 0..10i64 {
        feeder.feed(values![n]);
    }
    assert!(wait_for(WAIT, || out.lock().unwrap().len() == 5));
    let windows: Vec<Vec<i64>> = out.lock().unwrap().iter().map(|v| ints(&v[0])).collect();
    assert_eq!(
        windows,
        [
            vec![0, 1],
            vec![0, 1, 2, 3],
            vec![2, 3, 4, 5],
            vec![4, 5, 6, 7],
            vec![6, 7, 8, 9]
        ]
    );
    let third = &out.lock().unwrap()[2];
    assert_eq!(ints(&third[1]), [4, 5], "new tuples");
    assert_eq!(ints(&third[2]), [0, 1], "expired tuples");
    // The window holds its last 4 tuples, not the stream.
    let window_size = || -> Option<f64> {
        let metrics = cluster.metrics("count-acks").ok()?;
        let sizes = metrics.tasks.values();
        sizes
            .filter_map(|t| t.user.get(squall::stateful::window::WINDOW_SIZE_METRIC))
            .copied()
            .reduce(f64::max)
    };
    assert!(
        wait_for(WAIT, || window_size() == Some(4.0)),
        "{:?}",
        window_size()
    );
    // Tuples 0..6 left every window and are acked; 6..10 are still held
    // and time out.
    assert!(wait_for(WAIT, || feeder.acked().len() == 6
        && feeder.failed().len() == 4));
    let mut acked: Vec<i64> = feeder.acked().iter().map(|v| v.as_i64().unwrap()).collect();
    acked.sort_unstable();
    assert_eq!(acked, [0, 1, 2, 3, 4, 5]);
    let mut failed: Vec<i64> = feeder
        .failed()
        .iter()
        .map(|(v, reason)| {
            assert_eq!(*reason, FailReason::Timeout);
            v.as_i64().unwrap()
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, [6, 7, 8, 9]);
    cluster.kill_topology("count-acks").unwrap();
}

#[test]
fn processing_time_windows_fire_on_the_clock_and_ack_everything() {
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::tumbling(Length::millis(200));
    let (topology, out) = windowed(&feeder, window, false);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("clock", &config(), topology)
        .unwrap();
    for n in 0..20i64 {
        feeder.feed(values![n]);
    }
    // Every tuple leaves its one window as the clock passes its end.
    assert!(wait_for(WAIT, || feeder.acked().len() == 20));
    let seen = all_windowed(&out);
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "each tuple in one window"
    );
    assert!(feeder.failed().is_empty());
    cluster.kill_topology("clock").unwrap();
}

#[test]
fn late_tuples_without_a_late_stream_are_acked_and_dropped() {
    let feeder = Feeder::new(["n", "ts"]);
    let window = WindowConfig::tumbling(Length::millis(1000))
        .with_timestamp_field("ts")
        .with_watermark_interval(Duration::from_millis(20));
    let (topology, out) = windowed(&feeder, window, false);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("late", &config(), topology)
        .unwrap();
    feeder.feed(values![1, 100]);
    feeder.feed(values![2, 5_000]);
    assert!(wait_for(WAIT, || !out.lock().unwrap().is_empty()));
    let late = feeder.feed(values![3, 50]);
    assert!(wait_for(WAIT, || feeder.acked().contains(&late)));
    feeder.feed(values![4, END_OF_STREAM]);
    assert!(wait_for(WAIT, || out.lock().unwrap().len() == 2));
    let windows: Vec<Vec<i64>> = out.lock().unwrap().iter().map(|v| ints(&v[0])).collect();
    assert_eq!(
        windows,
        [vec![1], vec![2]],
        "the late tuple is in no window"
    );
    assert!(wait_for(WAIT, || feeder.acked().len() == 4));
    let late_count = || -> f64 {
        let metrics = cluster.metrics("late").unwrap();
        metrics
            .tasks
            .values()
            .filter_map(|t| t.user.get(windows_late_metric()))
            .sum()
    };
    assert!(wait_for(WAIT, || late_count() == 1.0), "{}", late_count());
    cluster.kill_topology("late").unwrap();
}

fn windows_late_metric() -> &'static str {
    squall::stateful::window::LATE_TUPLES_METRIC
}

#[test]
fn a_persistent_window_outlasts_the_message_timeout() {
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::tumbling(Length::secs(3));
    let (topology, out) = windowed(&feeder, window, true);
    let cluster = LocalCluster::new();
    let mut c = config();
    c.message_timeout_secs = 1;
    c.state_checkpoint_interval_ms = 100;
    cluster
        .submit_topology("persistent-window", &c, topology)
        .unwrap();
    for n in 0..20i64 {
        feeder.feed(values![n]);
    }
    // Acked at checkpoints, long before the window ends.
    assert!(wait_for(WAIT, || feeder.acked().len() == 20));
    assert!(wait_for(WAIT, || {
        out.lock()
            .unwrap()
            .iter()
            .map(|v| ints(&v[0]).len())
            .sum::<usize>()
            == 20
    }));
    let seen = all_windowed(&out);
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert!(feeder.failed().is_empty(), "{:?}", feeder.failed());
    cluster.kill_topology("persistent-window").unwrap();
}

/// The window task's redb file is still held when it prepares (as by a
/// worker of the previous assignment that has not exited yet): its
/// checkpoints are refused, naming why, and nothing is acked. Once the
/// file is released the task opens it at a later checkpoint, and every
/// tuple is windowed and acked once.
#[test]
fn a_persistent_window_held_at_prepare_opens_at_a_later_checkpoint() {
    use squall::stateful::{RedbProvider, StateProvider};
    let dir = tempfile::tempdir().unwrap();
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::tumbling(Length::Count(5));
    let (topology, out) = windowed(&feeder, window, true);
    let mut c = config();
    c.state_checkpoint_interval_ms = 50;
    c.state_provider = "redb".into();
    c.state_provider_config = Some(dir.path().display().to_string());
    let provider = RedbProvider::new(dir.path());
    let layout = TaskLayout::new(topology.spec(), c.effective_ackers());
    let task = layout.component_tasks("w")[0];
    let held = provider.open("held-window", &format!("w-{task}")).unwrap();
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("held-window", &c, topology)
        .unwrap();
    for n in 0..20i64 {
        feeder.feed(values![n]);
    }
    assert!(
        wait_for(WAIT, || {
            common::reported(&cluster, "held-window", "w", "state store is not open")
        }),
        "the window task did not report its held state"
    );
    assert!(feeder.acked().is_empty(), "acked without the state");
    drop(held);
    assert!(wait_for(WAIT, || feeder.acked().len() == 20));
    assert!(wait_for(WAIT, || all_windowed(&out).len() == 20));
    cluster.kill_topology("held-window").unwrap();
    assert_eq!(all_windowed(&out), (0..20).collect::<Vec<_>>());
    assert!(feeder.failed().is_empty(), "{:?}", feeder.failed());
}

#[test]
fn a_message_timeout_shorter_than_the_window_is_refused_with_both_numbers() {
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::window(Length::secs(20), Length::secs(10));
    let (topology, _) = windowed(&feeder, window.clone(), false);
    let cluster = LocalCluster::new();
    let mut c = config();
    c.message_timeout_secs = 25;
    let e = cluster
        .submit_topology("too-long", &c, topology)
        .unwrap_err()
        .to_string();
    assert!(e.contains("30000 ms"), "{e}");
    assert!(e.contains("25 s"), "{e}");
    assert!(e.contains("\"w\""), "{e}");
    // Persistent windows ack at checkpoints: the same window is fine.
    let (topology, _) = windowed(&feeder, window, true);
    cluster.submit_topology("persistent", &c, topology).unwrap();
    cluster.kill_topology("persistent").unwrap();
}

#[test]
fn a_timestamp_field_missing_from_an_input_is_refused_naming_it() {
    let feeder = Feeder::new(["n"]);
    let window = WindowConfig::tumbling(Length::secs(1)).with_timestamp_field("event_time");
    let mut b = TopologyBuilder::new();
    b.set_spout("feed", feeder.spout(), 1);
    b.set_windowed_bolt("w", || Contents, window, 1)
        .shuffle_grouping("feed");
    let e = b.create_topology().unwrap_err().to_string();
    assert!(e.contains("\"event_time\""), "{e}");
    assert!(e.contains("\"feed\""), "{e}");
}
