//! How a windowed bolt's windows are shaped: [`Length`] and
//! [`WindowConfig`] (Storm's `BaseWindowedBolt` settings).

use squall_topology_api::spec::ComponentConfig;
use squall_topology_api::{StreamId, Tuple, TupleError};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A timestamp that ends a source task's stream: a tuple whose event time
/// is this (`i64::MAX`) moves that task's watermark past every window, so
/// the last windows of a bounded input fire; it joins no window and is
/// acked at once. Each task of every input must send one (on a stream
/// the windowed bolt subscribes to with all grouping) for the watermark
/// to pass the end.
pub const END_OF_STREAM: i64 = i64::MAX;

/// The one field of a late-tuple stream: the late tuple's values as a list
/// (Storm's `late_tuple`).
pub const LATE_TUPLE_FIELD: &str = "late_tuple";

/// The user counter of tuples that came after their windows fired.
pub const LATE_TUPLES_METRIC: &str = "window_late_tuples";

/// The user gauge of tuples a windowed task holds.
pub const WINDOW_SIZE_METRIC: &str = "window_size";

/// A window's length or sliding interval: a number of tuples, or a
/// duration in ms (Storm's `BaseWindowedBolt.Count` and `Duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// This many tuples.
    Count(u32),
    /// This many milliseconds.
    Duration(i64),
}

impl Length {
    /// `n` tuples.
    pub fn count(n: u32) -> Self {
        Length::Count(n)
    }

    /// `secs` seconds.
    pub fn secs(secs: i64) -> Self {
        Length::Duration(secs.saturating_mul(1000))
    }

    /// `ms` milliseconds.
    pub fn millis(ms: i64) -> Self {
        Length::Duration(ms)
    }

    pub(crate) fn at_least_one(self) -> Self {
        match self {
            Length::Count(n) => Length::Count(n.max(1)),
            Length::Duration(ms) => Length::Duration(ms.max(1)),
        }
    }

    fn as_millis(self) -> Option<i64> {
        match self {
            Length::Duration(ms) => Some(ms),
            Length::Count(_) => None,
        }
    }
}

impl From<Duration> for Length {
    fn from(d: Duration) -> Self {
        Length::Duration(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::Count(n) => write!(f, "{n} tuples"),
            Length::Duration(ms) => write!(f, "{ms} ms"),
        }
    }
}

/// Reads a tuple's event time in ms; `Err` when the tuple has none.
pub type TimestampExtractor = Arc<dyn Fn(&Tuple) -> Result<i64, TupleError> + Send + Sync>;

/// Where event time comes from.
#[derive(Clone)]
pub(crate) enum TimestampSource {
    Field(String),
    Extractor(TimestampExtractor),
}

/// A windowed bolt's settings (Storm's `BaseWindowedBolt.with*`).
///
/// ```
/// use squall_state::window::{Length, WindowConfig};
/// use std::time::Duration;
/// let hourly = WindowConfig::tumbling(Length::secs(3600))
///     .with_timestamp_field("ts")
///     .with_lag(Duration::from_secs(86_400))
///     .with_late_tuple_stream("late");
/// assert!(hourly.is_event_time());
/// ```
#[derive(Clone)]
pub struct WindowConfig {
    pub(crate) length: Length,
    pub(crate) sliding: Length,
    pub(crate) timestamp: Option<TimestampSource>,
    pub(crate) lag_ms: i64,
    pub(crate) watermark_interval_ms: i64,
    pub(crate) late_stream: Option<StreamId>,
}

impl fmt::Debug for WindowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowConfig")
            .field("length", &self.length)
            .field("sliding", &self.sliding)
            .field("event_time", &self.is_event_time())
            .field("lag_ms", &self.lag_ms)
            .field("watermark_interval_ms", &self.watermark_interval_ms)
            .field("late_stream", &self.late_stream)
            .finish()
    }
}

impl WindowConfig {
    /// Windows of `length` that slide by `sliding` (Storm's `withWindow`);
    /// counts and durations mix as Storm allows.
    pub fn window(length: impl Into<Length>, sliding: impl Into<Length>) -> Self {
        Self {
            length: length.into().at_least_one(),
            sliding: sliding.into().at_least_one(),
            timestamp: None,
            lag_ms: 0,
            watermark_interval_ms: 1000,
            late_stream: None,
        }
    }

    /// Windows of `length` that do not overlap (Storm's
    /// `withTumblingWindow`).
    pub fn tumbling(length: impl Into<Length>) -> Self {
        let length = length.into();
        Self::window(length, length)
    }

    /// Event time from field `name` of every input stream, an int of ms
    /// since the epoch (Storm's `withTimestampField`). Checked when the
    /// topology is created: an input stream without it is refused.
    pub fn with_timestamp_field(mut self, name: &str) -> Self {
        self.timestamp = Some(TimestampSource::Field(name.to_owned()));
        self
    }

    /// Event time from `extract` (Storm's `withTimestampExtractor`).
    pub fn with_timestamp_extractor(
        mut self,
        extract: impl Fn(&Tuple) -> Result<i64, TupleError> + Send + Sync + 'static,
    ) -> Self {
        self.timestamp = Some(TimestampSource::Extractor(Arc::new(extract)));
        self
    }

    /// The allowed lateness: the watermark trails the slowest input's
    /// largest timestamp by this much (Storm's `withLag`; default 0).
    pub fn with_lag(mut self, lag: Duration) -> Self {
        self.lag_ms = Length::from(lag).as_millis().unwrap_or(0);
        self
    }

    /// How often watermarks are computed (Storm's
    /// `withWatermarkInterval`; default 1 s).
    pub fn with_watermark_interval(mut self, every: Duration) -> Self {
        self.watermark_interval_ms = Length::from(every).as_millis().unwrap_or(1000).max(1);
        self
    }

    /// Tuples whose windows already fired go to `stream`, with the one
    /// field [`LATE_TUPLE_FIELD`] (Storm's `withLateTupleStream`); without
    /// it they are acked, counted in [`LATE_TUPLES_METRIC`] and dropped.
    pub fn with_late_tuple_stream(mut self, stream: &str) -> Self {
        self.late_stream = Some(stream.into());
        self
    }

    /// Whether windows run on event time (a timestamp field or extractor).
    pub fn is_event_time(&self) -> bool {
        self.timestamp.is_some()
    }

    /// The window length.
    pub fn length(&self) -> Length {
        self.length
    }

    /// The sliding interval.
    pub fn sliding(&self) -> Length {
        self.sliding
    }

    /// How long a tuple may wait for its last window on the clock, in ms
    /// (length + sliding interval, both durations, processing time): what
    /// the message timeout must exceed (Storm's check). `None` when it is
    /// not bounded by time alone.
    pub fn holds_tuples_ms(&self) -> Option<u64> {
        let len = self.length.as_millis()?;
        let slide = self.sliding.as_millis()?;
        u64::try_from(len.saturating_add(slide)).ok()
    }

    /// Tick interval for the bolt, in ms: fine enough to fire duration
    /// windows and watermarks on time.
    pub(crate) fn tick_ms(&self) -> u64 {
        let mut finest = i64::MAX;
        if self.is_event_time() {
            finest = finest.min(self.watermark_interval_ms);
        }
        if let Some(slide) = self.sliding.as_millis() {
            finest = finest.min(slide);
        }
        if finest == i64::MAX {
            return 1000;
        }
        (finest / 10).clamp(1, 100) as u64
    }

    /// Writes what the runtime and validation need into the component's
    /// settings: tick interval, timestamp field, hold time.
    pub(crate) fn configure(&self, c: &mut ComponentConfig, persistent: bool) {
        c.tick_tuple_freq_millis = Some(self.tick_ms());
        if let Some(TimestampSource::Field(f)) = &self.timestamp {
            c.timestamp_field = Some(f.clone());
        }
        c.holds_tuples_ms = if persistent || self.is_event_time() {
            None
        } else {
            self.holds_tuples_ms()
        };
    }
}
