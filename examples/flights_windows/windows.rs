//! Flights per carrier in event-time windows: the rows of the NYC 2013
//! flights CSV with their `time_hour` (UTC) as event time, a spout that
//! plays them as the file's months would arrive, a windowed bolt that
//! counts flights and averages arrival delays per carrier, and the same
//! figures computed plainly over the rows (shared by the example and its
//! test).

use squall::stateful::window::END_OF_STREAM;
use squall::stateful::{TupleWindow, WindowCollector, WindowedBolt};
use squall::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One hour in ms.
pub const HOUR_MS: i64 = 3_600_000;

/// The stream that ends the spout's input (a tuple whose `ts` is
/// [`END_OF_STREAM`]); windowed bolts subscribe to it with all grouping.
pub const END_STREAM: &str = "end";

/// The fields of a flight tuple.
pub const FLIGHT_FIELDS: [&str; 3] = ["carrier", "ts", "arr_delay"];

/// One flight: carrier, scheduled hour (ms since the epoch, UTC), the
/// file's month, and its arrival delay in minutes when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    /// The carrier's two-letter code.
    pub carrier: String,
    /// `time_hour` in ms since the epoch.
    pub ts: i64,
    /// The `month` column (the file is grouped by it).
    pub month: u32,
    /// `arr_delay`, if present.
    pub arr_delay: Option<f64>,
}

/// Parses `time_hour` as written in `flights.csv` (`2013-01-01T10:00:00Z`,
/// or `2013-01-01 10:00:00` in UTC).
///
/// # Errors
/// The text when it is neither.
pub fn parse_time_hour(s: &str) -> Result<i64, String> {
    let t = s.trim().trim_end_matches('Z').replace('T', " ");
    chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S")
        .map(|d| d.and_utc().timestamp_millis())
        .map_err(|e| format!("time_hour {s:?}: {e}"))
}

/// Formats ms since the epoch as `2013-01-01T10:00:00Z`.
pub fn format_ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// The rows of `path` in file order.
///
/// # Errors
/// The file cannot be read, or a row lacks a column or a valid `time_hour`
/// (named with its line).
pub fn load(path: &Path) -> Result<Vec<Flight>, String> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{}: no column {name:?}", path.display()))
    };
    let (carrier, time_hour, month, delay) = (
        col("carrier")?,
        col("time_hour")?,
        col("month")?,
        col("arr_delay")?,
    );
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let r = record.map_err(|e| format!("{}: {e}", path.display()))?;
        let at = |i: usize| r.get(i).unwrap_or("");
        rows.push(Flight {
            carrier: at(carrier).to_owned(),
            ts: parse_time_hour(at(time_hour)).map_err(|e| format!("line {}: {e}", line + 2))?,
            month: at(month)
                .parse()
                .map_err(|e| format!("line {}: month: {e}", line + 2))?,
            arr_delay: at(delay).parse().ok(),
        });
    }
    Ok(rows)
}

/// The order the spout plays rows in: the month groups in calendar order,
/// each group's rows in file order (the file is grouped by month in string
/// order, 1, 10, 11, 12, 2, …).
pub fn arrival_order(mut rows: Vec<Flight>) -> Vec<Flight> {
    rows.sort_by_key(|f| f.month);
    rows
}

/// A window's figures for one carrier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarrierWindow {
    /// Flights in the window.
    pub flights: i64,
    /// Mean arrival delay over the flights with one (NaN when none).
    pub mean_delay: f64,
}

/// Figures by (kind, carrier, window start in ms).
pub type Figures = BTreeMap<(String, String, i64), CarrierWindow>;

/// The figures computed plainly: `(kind, length, slide)` windows, each
/// `[start, start + length)` with starts on multiples of the slide.
pub fn plain(rows: &[Flight], kinds: &[(&str, i64, i64)]) -> Figures {
    let mut acc: BTreeMap<(String, String, i64), (i64, i64, f64)> = BTreeMap::new();
    for f in rows {
        for &(kind, length, slide) in kinds {
            // Windows ending in (ts, ts + length], on multiples of slide.
            let mut end = f.ts.div_euclid(slide) * slide + slide;
            while end - length <= f.ts {
                let e = acc
                    .entry((kind.to_owned(), f.carrier.clone(), end - length))
                    .or_default();
                e.0 += 1;
                if let Some(d) = f.arr_delay {
                    e.1 += 1;
                    e.2 += d;
                }
                end += slide;
            }
        }
    }
    acc.into_iter()
        .map(|(k, (flights, with, sum))| {
            let mean_delay = if with > 0 {
                sum / with as f64
            } else {
                f64::NAN
            };
            (
                k,
                CarrierWindow {
                    flights,
                    mean_delay,
                },
            )
        })
        .collect()
}

/// The windows whose figures differ between `a` and `b` (means within
/// 1e-9), or that only one has.
pub fn differences(a: &Figures, b: &Figures) -> Vec<(String, String, i64)> {
    let same = |x: &CarrierWindow, y: &CarrierWindow| {
        x.flights == y.flights
            && ((x.mean_delay.is_nan() && y.mean_delay.is_nan())
                || (x.mean_delay - y.mean_delay).abs() <= 1e-9)
    };
    let mut out: Vec<_> = a
        .iter()
        .filter(|(k, x)| b.get(*k).is_none_or(|y| !same(x, y)))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    out
}

/// Plays flights in order, each tracked by its index and replayed when it
/// fails; then one [`END_OF_STREAM`] tuple on [`END_STREAM`].
pub struct FlightSpout {
    rows: Arc<Vec<Flight>>,
    next: usize,
    replay: Vec<usize>,
    ended: bool,
    acked: Arc<std::sync::atomic::AtomicUsize>,
}

impl FlightSpout {
    /// A spout over `rows`, counting acks in `acked`.
    pub fn new(rows: Arc<Vec<Flight>>, acked: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        Self {
            rows,
            next: 0,
            replay: Vec::new(),
            ended: false,
            acked,
        }
    }

    fn values(f: &Flight) -> Values {
        let delay = f.arr_delay.map_or(Value::Null, Value::Float);
        values![f.carrier.as_str(), f.ts, delay]
    }
}

impl Spout for FlightSpout {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        if let Some(i) = self.replay.pop() {
            out.emit_with_id(Self::values(&self.rows[i]), i as i64);
            return;
        }
        for _ in 0..100 {
            let Some(f) = self.rows.get(self.next) else {
                if !self.ended {
                    self.ended = true;
                    out.emit_stream(END_STREAM, values!["", END_OF_STREAM, Value::Null], None);
                }
                return;
            };
            out.emit_with_id(Self::values(f), self.next as i64);
            self.next += 1;
        }
    }

    fn ack(&mut self, _msg_id: Value) {
        self.acked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        if let Some(i) = msg_id.as_i64() {
            self.replay.push(i as usize);
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(FLIGHT_FIELDS);
        d.declare_stream(END_STREAM, FLIGHT_FIELDS);
    }
}

/// Per carrier, flights and mean arrival delay of each window, emitted as
/// `kind, carrier, start, flights, mean_delay`.
pub struct CarrierWindows {
    /// The window's name in the output (`1h`, `3h/1h`).
    pub kind: &'static str,
}

impl WindowedBolt for CarrierWindows {
    fn execute(&mut self, window: &TupleWindow<'_>, out: &mut WindowCollector<'_, '_>) {
        let mut per: BTreeMap<&str, (i64, i64, f64)> = BTreeMap::new();
        for t in window.get() {
            let (Ok(carrier), delay) = (t.get_str(0), t.get_f64(2).ok()) else {
                continue;
            };
            let e = per.entry(carrier).or_default();
            e.0 += 1;
            if let Some(d) = delay {
                e.1 += 1;
                e.2 += d;
            }
        }
        let start = window.start_ts().unwrap_or(window.end_ts());
        for (carrier, (flights, with, sum)) in per {
            let mean = if with > 0 {
                sum / with as f64
            } else {
                f64::NAN
            };
            out.emit(values![self.kind, carrier, start, flights, mean]);
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["kind", "carrier", "start", "flights", "mean_delay"]);
    }
}

/// What the sink received: every window's figures, and late rows.
#[derive(Debug, Default)]
pub struct Received {
    /// Window figures by (kind, carrier, start); a repeat is an error.
    pub figures: Figures,
    /// Windows received twice.
    pub repeats: Vec<(String, String, i64)>,
    /// Late rows by the component that saw them late: (carrier, ts).
    pub late: BTreeMap<String, Vec<(String, i64)>>,
}

/// Collects window figures and late rows into shared memory.
pub struct Sink(pub Arc<Mutex<Received>>);

impl Bolt for Sink {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let mut r = self.0.lock().unwrap();
        if t.source_stream().as_str() == "late" {
            if let Ok([Value::Str(c), Value::Int(ts), ..]) = t.get_list(0) {
                r.late
                    .entry(t.source_component().as_str().to_owned())
                    .or_default()
                    .push((c.to_string(), *ts));
            }
        } else if let (Ok(kind), Ok(carrier), Ok(start), Ok(flights), Ok(mean)) = (
            t.get_str(0),
            t.get_str(1),
            t.get_i64(2),
            t.get_i64(3),
            t.get_f64(4),
        ) {
            let key = (kind.to_owned(), carrier.to_owned(), start);
            let figures = CarrierWindow {
                flights,
                mean_delay: mean,
            };
            if r.figures.insert(key.clone(), figures).is_some() {
                r.repeats.push(key);
            }
        }
        out.ack(t);
    }

    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// The two windowings of the example: 1-hour tumbling, and 3 hours
/// sliding by 1 hour, as `(kind, length ms, slide ms)`.
pub const KINDS: [(&str, i64, i64); 2] =
    [("1h", HOUR_MS, HOUR_MS), ("3h/1h", 3 * HOUR_MS, HOUR_MS)];

/// Everything a run needs: the rows to play, and where acks and results
/// land.
#[derive(Clone)]
pub struct Run {
    /// Rows in the order the spout plays them.
    pub rows: Arc<Vec<Flight>>,
    /// Rows acked by the spout so far.
    pub acked: Arc<std::sync::atomic::AtomicUsize>,
    /// What the sink received.
    pub received: Arc<Mutex<Received>>,
}

impl Run {
    /// A run over `rows`.
    pub fn new(rows: Vec<Flight>) -> Self {
        Self {
            rows: Arc::new(rows),
            acked: Arc::default(),
            received: Arc::default(),
        }
    }

    /// Whether every row was acked: each left its last window, whose
    /// figures reached the sink.
    pub fn done(&self) -> bool {
        self.acked.load(std::sync::atomic::Ordering::Relaxed) >= self.rows.len()
    }
}

/// The topology: `flights` → `hourly` (1 h tumbling) and `sliding` (3 h
/// sliding by 1 h), both on event time `ts` with `lag` allowed and late
/// rows on stream `late`, fields-grouped by carrier over `parallelism`
/// tasks → `sink`.
///
/// # Errors
/// What `create_topology` refuses.
pub fn topology(
    run: &Run,
    lag: std::time::Duration,
    parallelism: u32,
) -> Result<Topology, TopologyError> {
    use squall::stateful::{Length, WindowConfig, WindowsAndState};
    let mut b = TopologyBuilder::new();
    let (rows, acked) = (run.rows.clone(), run.acked.clone());
    b.set_spout(
        "flights",
        move || FlightSpout::new(rows.clone(), acked.clone()),
        1,
    );
    let windows = [
        (
            "hourly",
            "1h",
            WindowConfig::tumbling(Length::Duration(HOUR_MS)),
        ),
        (
            "sliding",
            "3h/1h",
            WindowConfig::window(Length::Duration(3 * HOUR_MS), Length::Duration(HOUR_MS)),
        ),
    ];
    for (id, kind, window) in windows {
        let window = window
            .with_timestamp_field("ts")
            .with_lag(lag)
            .with_watermark_interval(std::time::Duration::from_millis(100))
            .with_late_tuple_stream("late");
        b.set_windowed_bolt(id, move || CarrierWindows { kind }, window, parallelism)
            .fields_grouping("flights", ["carrier"])
            .all_grouping(("flights", END_STREAM));
    }
    let received = run.received.clone();
    b.set_bolt("sink", move || Sink(received.clone()), 1)
        .shuffle_grouping("hourly")
        .shuffle_grouping("sliding")
        .shuffle_grouping(("hourly", "late"))
        .shuffle_grouping(("sliding", "late"));
    b.create_topology()
}
