//! [`WindowedBolt`] and the ordinary bolt that runs it,
//! [`WindowedBoltExecutor`] (Storm's `IWindowedBolt` and
//! `WindowedBoltExecutor`).

use super::config::{TimestampSource, END_OF_STREAM};
use super::{
    Event, Fired, Length, WatermarkTracker, WindowConfig, WindowManager, LATE_TUPLES_METRIC,
    LATE_TUPLE_FIELD, WINDOW_SIZE_METRIC,
};
use squall_topology_api::TopologyClock;
use squall_topology_api::{
    Bolt, Counter, OutputCollector, OutputFieldsDeclarer, TaskId, TopologyContext, Tuple, Value,
    Values, CHECKPOINT_STREAM,
};
use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A bolt that processes a window of tuples at a time (Storm's
/// `IWindowedBolt`). Declared with
/// [`WindowsAndState::set_windowed_bolt`](crate::WindowsAndState::set_windowed_bolt).
///
/// Contract: `execute` runs on the task's thread each time a window fires.
/// Tuples are acked by the runtime when they leave the last window that
/// holds them; emits through the [`WindowCollector`] are anchored to every
/// tuple of the window.
pub trait WindowedBolt: Send {
    /// Called once when the task starts.
    fn prepare(&mut self, _context: &TopologyContext) {}
    /// Processes one window.
    fn execute(&mut self, window: &TupleWindow<'_>, collector: &mut WindowCollector<'_, '_>);
    /// Called once when the task stops.
    fn cleanup(&mut self) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
}

/// A tuple a window holds, with its key in the window's state when the
/// window is persistent.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) tuple: Tuple,
    pub(crate) key: u64,
}

/// The tuples of one window (Storm's `TupleWindow`).
#[derive(Debug)]
pub struct TupleWindow<'w> {
    events: &'w [Event<Held>],
    number: u64,
    expired: &'w [Held],
    start: Option<i64>,
    end: i64,
}

impl<'w> TupleWindow<'w> {
    pub(crate) fn of(fired: &'w Fired<'w, Held>) -> Self {
        Self {
            events: fired.events,
            number: fired.number,
            expired: &fired.expired,
            start: fired.start,
            end: fired.end,
        }
    }

    /// Every tuple in the window, oldest first (by timestamp).
    pub fn get(&self) -> impl ExactSizeIterator<Item = &'w Tuple> + 'w {
        self.events.iter().map(|e| &e.item.tuple)
    }

    /// Every tuple with its timestamp (event time, or arrival time), in ms.
    pub fn with_timestamps(&self) -> impl ExactSizeIterator<Item = (i64, &'w Tuple)> + 'w {
        self.events.iter().map(|e| (e.ts, &e.item.tuple))
    }

    /// How many tuples the window holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the window is empty (never, for windows given to `execute`).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The tuples that were in no earlier window (Storm's `getNew`).
    pub fn new_tuples(&self) -> impl Iterator<Item = &'w Tuple> + 'w {
        let number = self.number;
        self.events
            .iter()
            .filter(move |e| e.is_new_in(number))
            .map(|e| &e.item.tuple)
    }

    /// The tuples that left since the previous window (Storm's
    /// `getExpired`); they are acked after this `execute`.
    pub fn expired(&self) -> impl ExactSizeIterator<Item = &'w Tuple> + 'w {
        self.expired.iter().map(|h| &h.tuple)
    }

    /// The window's first timestamp (inclusive, ms) for duration windows
    /// (Storm's `getStartTimestamp`).
    pub fn start_ts(&self) -> Option<i64> {
        self.start
    }

    /// The window's end (exclusive, ms): the watermark or clock time at
    /// which it fired, for duration windows a multiple of the sliding
    /// interval (Storm's `getEndTimestamp`).
    pub fn end_ts(&self) -> i64 {
        self.end
    }
}

/// A windowed bolt's collector (Storm's windowed `OutputCollector`): emits
/// are anchored to every tuple of the window being processed.
pub struct WindowCollector<'c, 'a> {
    out: &'c mut OutputCollector<'a>,
    anchors: &'c [&'c Tuple],
}

impl<'c, 'a> WindowCollector<'c, 'a> {
    /// Wraps `out` for a window of `anchors`.
    pub fn new(out: &'c mut OutputCollector<'a>, anchors: &'c [&'c Tuple]) -> Self {
        Self { out, anchors }
    }

    /// Emits on the default stream, anchored to the window's tuples.
    pub fn emit(&mut self, values: Values) {
        self.out.emit_anchored(self.anchors, values)
    }

    /// Emits on `stream`, anchored to the window's tuples.
    pub fn emit_stream(&mut self, stream: &str, values: Values) {
        self.out.emit_anchored_stream(stream, self.anchors, values)
    }

    /// Emits an untracked tuple on `stream` (a replay of the window will not
    /// wait for it).
    pub fn emit_unanchored(&mut self, stream: &str, values: Values) {
        self.out.emit_stream(stream, values)
    }

    /// Records an error in the task's metrics.
    pub fn report_error(&mut self, error: &dyn Display) {
        self.out.report_error(error)
    }

    /// Adds `by` to the user counter `name`.
    pub fn incr_metric(&mut self, name: &str, by: f64) {
        self.out.incr_metric(name, by)
    }
}

/// The tasks that send data (not checkpoints, not system streams) to this
/// task's component.
pub(crate) fn input_tasks(context: &TopologyContext) -> Vec<TaskId> {
    let Some(me) = context.spec().components.get(context.this_component_id()) else {
        return Vec::new();
    };
    let mut tasks: Vec<TaskId> = me
        .inputs
        .iter()
        .filter(|i| !i.stream.is_system() && i.stream.as_str() != CHECKPOINT_STREAM)
        .flat_map(|i| context.component_tasks(i.component.as_str()).to_vec())
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    tasks
}

/// Where a tuple goes on arrival.
enum Arrival {
    /// Into the window at this timestamp.
    Window(i64),
    /// Its windows fired already; acked, counted, sent to the late stream.
    Late,
    /// The end of its task's stream; acked.
    End,
    /// No timestamp: reported, acked, dropped.
    Invalid(String),
}

/// The event-time and processing-time bookkeeping shared by windowed
/// executors: timestamps, watermarks, the late counter and size gauge.
pub(crate) struct Timekeeper {
    pub(crate) config: WindowConfig,
    watermarks: WatermarkTracker,
    next_watermark_at: i64,
    late: Option<Counter>,
    size: Arc<AtomicUsize>,
    clock: TopologyClock,
}

impl Timekeeper {
    pub(crate) fn new(config: WindowConfig) -> Self {
        let lag = config.lag_ms;
        Self {
            config,
            watermarks: WatermarkTracker::new([], lag),
            next_watermark_at: 0,
            late: None,
            size: Arc::default(),
            clock: TopologyClock::default(),
        }
    }

    /// Processing time: the topology's clock in ms since the epoch
    /// (simulated under `LocalCluster::simulated`).
    pub(crate) fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    pub(crate) fn prepare(&mut self, context: &TopologyContext) {
        self.clock = context.clock().clone();
        self.watermarks = WatermarkTracker::new(input_tasks(context), self.config.lag_ms);
        self.late = Some(context.register_counter(LATE_TUPLES_METRIC));
        let size = self.size.clone();
        context.register_gauge(WINDOW_SIZE_METRIC, move || {
            size.load(Ordering::Relaxed) as f64
        });
    }

    pub(crate) fn set_size(&self, n: usize) {
        self.size.store(n, Ordering::Relaxed);
    }

    /// Classifies `tuple`; `late_before` is the manager's test for late
    /// timestamps.
    fn arrive(&mut self, tuple: &Tuple, is_late: impl Fn(i64) -> bool) -> Arrival {
        let ts = match &self.config.timestamp {
            None => return Arrival::Window(self.now_ms()),
            Some(TimestampSource::Field(f)) => tuple.get_i64_by_field(f).map_err(|e| e.to_string()),
            Some(TimestampSource::Extractor(x)) => x(tuple).map_err(|e| e.to_string()),
        };
        let ts = match ts {
            Ok(ts) => ts,
            Err(e) => return Arrival::Invalid(format!("windowed bolt: no timestamp: {e}")),
        };
        if ts == END_OF_STREAM {
            self.watermarks.observe(tuple.source_task(), ts);
            return Arrival::End;
        }
        if is_late(ts) {
            if let Some(c) = &self.late {
                c.inc();
            }
            return Arrival::Late;
        }
        self.watermarks.observe(tuple.source_task(), ts);
        Arrival::Window(ts)
    }

    /// The timestamp at which `tuple` joins the window, or `None` when it
    /// does not (late: sent to the late stream; the end of a task's
    /// stream; no timestamp: reported), in which case it is acked here.
    pub(crate) fn admit(
        &mut self,
        tuple: &Tuple,
        is_late: impl Fn(i64) -> bool,
        out: &mut OutputCollector<'_>,
    ) -> Option<i64> {
        match self.arrive(tuple, is_late) {
            Arrival::Window(ts) => return Some(ts),
            Arrival::Late => self.handle_late(tuple, out),
            Arrival::End => out.ack(tuple),
            Arrival::Invalid(e) => {
                out.report_error(&e);
                out.ack(tuple);
            }
        }
        None
    }

    /// Sends a late tuple on the late stream (if any) and acks it.
    fn handle_late(&self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if let Some(stream) = &self.config.late_stream {
            let late = Value::List(tuple.values().to_vec());
            let mut v = Values::new();
            v.push(late);
            out.emit_anchored_stream(stream.as_str(), tuple, v);
        }
        out.ack(tuple);
    }

    /// The reference time windows should advance to now: the watermark
    /// when one is due (event time), the clock (processing time), or
    /// `None` when nothing is due.
    pub(crate) fn due(&mut self, now: i64, arrived: bool) -> Option<i64> {
        if !self.config.is_event_time() {
            return match self.config.sliding {
                Length::Count(_) if arrived => Some(now.saturating_add(1)),
                Length::Count(_) => None,
                Length::Duration(_) => Some(now),
            };
        }
        if arrived || now < self.next_watermark_at {
            return None;
        }
        self.next_watermark_at = now.saturating_add(self.config.watermark_interval_ms);
        self.watermarks.watermark()
    }

    pub(crate) fn declare_late_stream(&self, declarer: &mut OutputFieldsDeclarer) {
        if let Some(stream) = &self.config.late_stream {
            declarer.declare_stream(stream.as_str(), [LATE_TUPLE_FIELD]);
        }
    }
}

/// Runs a [`WindowedBolt`] as an ordinary [`Bolt`]: keeps each task's
/// window, fires it on arrivals and tick tuples, acks tuples as they
/// expire (Storm's `WindowedBoltExecutor`).
pub struct WindowedBoltExecutor<B> {
    bolt: B,
    time: Timekeeper,
    manager: WindowManager<Held>,
}

impl<B: WindowedBolt> WindowedBoltExecutor<B> {
    /// Runs `bolt` over windows shaped by `config`.
    pub fn new(bolt: B, config: WindowConfig) -> Self {
        let manager = WindowManager::new(config.length, config.sliding);
        Self {
            bolt,
            time: Timekeeper::new(config),
            manager,
        }
    }

    fn advance(&mut self, to: i64, out: &mut OutputCollector<'_>) {
        let Self { bolt, manager, .. } = self;
        manager.advance(to, |fired| {
            if !fired.events.is_empty() {
                let window = TupleWindow::of(&fired);
                let anchors: Vec<&Tuple> = window.get().collect();
                bolt.execute(&window, &mut WindowCollector::new(out, &anchors));
            }
            for h in &fired.expired {
                out.ack(&h.tuple);
            }
        });
        self.time.set_size(self.manager.len());
    }
}

impl<B: WindowedBolt> Bolt for WindowedBoltExecutor<B> {
    fn prepare(&mut self, context: &TopologyContext) {
        self.time.prepare(context);
        self.bolt.prepare(context);
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            if let Some(to) = self.time.due(self.time.now_ms(), false) {
                self.advance(to, out);
            }
            return;
        }
        let manager = &self.manager;
        let Some(ts) = self.time.admit(tuple, |ts| manager.is_late(ts), out) else {
            return;
        };
        let held = Held {
            tuple: tuple.clone(),
            key: 0,
        };
        self.manager.add(ts, held);
        self.time.set_size(self.manager.len());
        if let Some(to) = self.time.due(ts, true) {
            self.advance(to, out);
        }
    }

    fn cleanup(&mut self) {
        self.bolt.cleanup()
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.bolt.declare_output_fields(declarer);
        self.time.declare_late_stream(declarer);
    }
}
