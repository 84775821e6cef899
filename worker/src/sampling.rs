//! Event sampling (Storm's topology event logger): while `squall debug`
//! has it on for a component, each tuple its tasks emit is sampled with
//! the set probability and written, as one JSON line, to the worker's
//! events file beside its log (`<topology id>/events-<port>.log`, rotated
//! like the log), which the log viewer serves.
//!
//! Off, an emit pays one relaxed atomic load. On, a sampled event is
//! handed to a writer thread through a bounded queue and dropped (and
//! counted) when the queue is full, so sampling never blocks an executor
//! and holds at most [`QUEUE`] events in memory.

use crate::logging::LogFile;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use squall_cluster::debug::{TopologyDebug, RATE_SCALE};
use squall_topology_api::{ComponentId, StreamId, TaskId, Values};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Sampled events waiting for the writer, at most.
pub const QUEUE: usize = 10_000;

/// One sampled tuple (Storm's `EventInfo`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampledEvent {
    /// When it was emitted, ms since the Unix epoch.
    pub ts: u64,
    /// The emitting component.
    pub component: String,
    /// The stream.
    pub stream: String,
    /// The emitting task.
    pub task: u32,
    /// The tuple's values.
    pub values: serde_json::Value,
}

/// The sampling rates of a worker's components, and where sampled events
/// go.
pub struct Sampler {
    rates: BTreeMap<ComponentId, Arc<AtomicU32>>,
    sink: Option<Sender<SampledEvent>>,
    dropped: AtomicU64,
}

impl Sampler {
    /// Sampling off for each of `components`; events go to `sink`, or,
    /// without one, to the log at INFO (target `squall_worker::events`).
    pub fn new(
        components: impl IntoIterator<Item = ComponentId>,
        sink: Option<Sender<SampledEvent>>,
    ) -> Self {
        Self {
            rates: components
                .into_iter()
                .map(|c| (c, Arc::new(AtomicU32::new(0))))
                .collect(),
            sink,
            dropped: AtomicU64::new(0),
        }
    }

    /// `component`'s rate (hundredths of a percent), which an executor
    /// reads at each emit; always 0 for a component not sampled.
    pub fn rate_of(&self, component: &ComponentId) -> Arc<AtomicU32> {
        self.rates
            .get(component)
            .cloned()
            .unwrap_or_else(|| Arc::new(AtomicU32::new(0)))
    }

    /// Applies `debug` to every component; logs what changed.
    pub fn apply(&self, debug: &TopologyDebug) {
        for (component, rate) in &self.rates {
            let want = debug.rate_of(&component.0);
            if rate.swap(want, Ordering::Relaxed) != want {
                tracing::info!(
                    component = %component,
                    pct = f64::from(want) / 100.0,
                    "event sampling {}",
                    if want == 0 { "off" } else { "on" }
                );
            }
        }
    }

    /// Records one sampled emit.
    pub fn offer(&self, component: &ComponentId, task: TaskId, stream: &StreamId, values: &Values) {
        let event = SampledEvent {
            ts: squall_cluster::now_ms(),
            component: component.0.to_string(),
            stream: stream.0.to_string(),
            task: task.0,
            values: serde_json::to_value(values.0.as_slice()).unwrap_or_default(),
        };
        match &self.sink {
            None => {
                tracing::info!(target: "squall_worker::events", component = %component, task = task.0, stream = %stream, "sampled {}", event.values)
            }
            Some(s) => match s.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(
                            dropped = n,
                            "sampled events dropped: the events file is behind"
                        );
                    }
                }
            },
        }
    }
}

/// Whether to sample one emit at `rate` (hundredths of a percent), given
/// a uniform draw in `0..RATE_SCALE`.
pub fn sampled(rate: u32, draw: u32) -> bool {
    draw < rate.min(RATE_SCALE)
}

/// Starts the thread writing sampled events to `file` (JSON lines,
/// rotated by its limits); returns the queue to send them on.
///
/// # Errors
/// A message naming the file when it cannot be opened, or the thread
/// cannot start.
pub fn start_writer(file: &LogFile) -> Result<Sender<SampledEvent>, String> {
    let out = file.open()?;
    let (tx, rx): (Sender<SampledEvent>, Receiver<SampledEvent>) =
        crossbeam_channel::bounded(QUEUE);
    let path = file.path.clone();
    std::thread::Builder::new()
        .name("event-writer".into())
        .spawn(move || {
            let mut failed = false;
            for event in rx {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                let written = out.write_all(&line).and_then(|()| out.flush());
                if let Err(e) = written {
                    if !failed {
                        tracing::warn!("cannot write sampled events to {}: {e}", path.display());
                    }
                    failed = true;
                }
            }
        })
        .map_err(|e| format!("cannot start the event writer: {e}"))?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_topology_api::values;

    #[test]
    fn rates_follow_the_topologys_debug_options() {
        let s = Sampler::new(
            [ComponentId::from("split"), ComponentId::from("count")],
            None,
        );
        let split = s.rate_of(&ComponentId::from("split"));
        let unknown = s.rate_of(&ComponentId::from("__acker"));
        let debug = TopologyDebug::default()
            .with(Some("split"), true, 25.0)
            .unwrap();
        s.apply(&debug);
        assert_eq!(split.load(Ordering::Relaxed), 2_500);
        assert_eq!(
            s.rate_of(&ComponentId::from("count"))
                .load(Ordering::Relaxed),
            0
        );
        assert_eq!(unknown.load(Ordering::Relaxed), 0);
        s.apply(&TopologyDebug::default());
        assert_eq!(split.load(Ordering::Relaxed), 0);
        assert!(sampled(1, 0) && !sampled(1, 1) && !sampled(0, 0));
        assert!(sampled(RATE_SCALE, RATE_SCALE - 1));
    }

    #[test]
    fn events_are_written_as_json_lines_and_dropped_when_the_queue_is_full() {
        let dir = tempfile_dir();
        let file = LogFile {
            path: dir.join("t/events-1.log"),
            max_file_bytes: 1 << 20,
            max_files: 1,
        };
        let tx = start_writer(&file).unwrap();
        let s = Sampler::new([ComponentId::from("split")], Some(tx));
        s.offer(
            &ComponentId::from("split"),
            TaskId(3),
            &StreamId::from("default"),
            &values!["the", 2],
        );
        let text = (0..200)
            .find_map(|_| {
                let t = std::fs::read_to_string(&file.path).unwrap_or_default();
                if t.ends_with('\n') {
                    Some(t)
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                }
            })
            .expect("the event written");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["component"], "split");
        assert_eq!(v["stream"], "default");
        assert_eq!(v["task"], 3);
        assert_eq!(v["values"], serde_json::json!(["the", 2]));
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let full = Sampler::new([ComponentId::from("split")], Some(tx));
        for _ in 0..3 {
            full.offer(
                &ComponentId::from("split"),
                TaskId(3),
                &StreamId::from("default"),
                &values!["x"],
            );
        }
        assert_eq!(full.dropped.load(Ordering::Relaxed), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "squall-events-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
