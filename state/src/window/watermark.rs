//! [`WatermarkTracker`]: event-time progress over a bolt's input tasks
//! (Storm's `WaterMarkEventGenerator`, per task rather than per stream, so
//! one slow task of a component holds the watermark back as it should).

use squall_topology_api::TaskId;
use std::collections::BTreeMap;

/// The largest timestamp seen from each input task; the watermark is the
/// smallest of them minus the allowed lag, once every input task was heard.
///
/// ```
/// use squall_state::window::WatermarkTracker;
/// use squall_topology_api::TaskId;
/// let mut w = WatermarkTracker::new([TaskId(1), TaskId(2)], 10);
/// w.observe(TaskId(1), 100);
/// assert_eq!(w.watermark(), None); // task 2 not heard yet
/// w.observe(TaskId(2), 50);
/// w.observe(TaskId(1), 70);
/// assert_eq!(w.watermark(), Some(90 - 50)); // min(100, 50) - 10
/// ```
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    largest: BTreeMap<TaskId, Option<i64>>,
    lag_ms: i64,
}

impl WatermarkTracker {
    /// A tracker over `inputs` with an allowed lag of `lag_ms`.
    pub fn new(inputs: impl IntoIterator<Item = TaskId>, lag_ms: i64) -> Self {
        Self {
            largest: inputs.into_iter().map(|t| (t, None)).collect(),
            lag_ms,
        }
    }

    /// Notes a tuple at `ts` from `task` (a task not declared as input is
    /// added).
    pub fn observe(&mut self, task: TaskId, ts: i64) {
        let seen = self.largest.entry(task).or_default();
        if seen.is_none_or(|s| ts > s) {
            *seen = Some(ts);
        }
    }

    /// The current watermark in ms: no input has anything older to send,
    /// lag allowed for. `None` until every input task was heard.
    pub fn watermark(&self) -> Option<i64> {
        let mut low = i64::MAX;
        for seen in self.largest.values() {
            low = low.min((*seen)?);
        }
        (!self.largest.is_empty()).then(|| low.saturating_sub(self.lag_ms))
    }
}
