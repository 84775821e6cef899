//! Stream groupings: which task(s) of a subscribing bolt get each tuple.

use crate::{Fields, StreamId, TaskId, Values};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a subscriber's tasks share a stream (Storm's `Grouping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupingSpec {
    /// Round-robin over a shuffled order: even load.
    Shuffle,
    /// Tuples with equal values in these fields go to the same task.
    Fields(Fields),
    /// Every task gets every tuple.
    All,
    /// Every tuple goes to the task with the lowest id.
    Global,
    /// Don't care; behaves as shuffle (as in Storm).
    None,
    /// The emitter names the task (`emit_direct`); the stream must be direct.
    Direct,
    /// Shuffle among the subscriber's tasks in the same worker, if any.
    LocalOrShuffle,
    /// Key grouping with two choices per key, sending to the less loaded
    /// (Storm's `PartialKeyGrouping`, "power of both choices").
    PartialKey(Fields),
    /// A user [`CustomStreamGrouping`], named for display.
    Custom(String),
}

impl GroupingSpec {
    /// The grouping's name as Storm's UI shows it.
    pub fn name(&self) -> &str {
        match self {
            GroupingSpec::Shuffle => "shuffle",
            GroupingSpec::Fields(_) => "fields",
            GroupingSpec::All => "all",
            GroupingSpec::Global => "global",
            GroupingSpec::None => "none",
            GroupingSpec::Direct => "direct",
            GroupingSpec::LocalOrShuffle => "local_or_shuffle",
            GroupingSpec::PartialKey(_) => "partial_key",
            GroupingSpec::Custom(name) => name,
        }
    }
}

/// A user grouping (Storm's `CustomStreamGrouping`). One instance exists per
/// emitting task and subscription; it runs on the emitter's thread.
pub trait CustomStreamGrouping: Send {
    /// Called once with the stream and the subscriber's task ids (sorted).
    fn prepare(&mut self, stream: &StreamId, target_tasks: &[TaskId]);
    /// The task(s) that get `values`, emitted by `source_task`. Tasks not in
    /// `target_tasks` are ignored (and reported as errors).
    fn choose_tasks(&mut self, source_task: TaskId, values: &Values) -> Vec<TaskId>;
}

/// Makes one [`CustomStreamGrouping`] per emitting task.
pub type CustomGroupingFactory = Arc<dyn Fn() -> Box<dyn CustomStreamGrouping> + Send + Sync>;
