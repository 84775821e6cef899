//! Windowed bolts (Storm 2's `IWindowedBolt`, see Apache Storm
//! `docs/Windowing.md`): a bolt that sees tuples a window at a time.
//!
//! Windows slide or tumble by count or by duration ([`Length`]), on
//! processing time (the executor's clock) or on event time (a timestamp
//! field, with watermarks and an allowed lag). They compile to an ordinary
//! bolt, [`WindowedBoltExecutor`], that keeps the window's tuples and acks
//! each one when it leaves the last window holding it.

mod bolt;
mod config;
mod manager;
mod persistent;
mod watermark;

pub use bolt::{TupleWindow, WindowCollector, WindowedBolt, WindowedBoltExecutor};
pub use config::{
    Length, TimestampExtractor, WindowConfig, END_OF_STREAM, LATE_TUPLES_METRIC, LATE_TUPLE_FIELD,
    WINDOW_SIZE_METRIC,
};
pub use manager::{Event, Fired, WindowManager};
pub use persistent::PersistentWindowedBoltExecutor;
pub use watermark::WatermarkTracker;
