//! Barrier alignment of checkpoint tuples ([`CheckpointBarrier`]) and the
//! wrapper that lets a plain bolt pass them on ([`CheckpointForwarder`],
//! Storm's `CheckpointTupleForwarder`).

use super::epoch::{Epoch, WatchingOutput};
use super::{Action, CHECKPOINT_FIELDS};
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TaskId, TopologyContext, Tuple, Values,
    CHECKPOINT_STREAM,
};
use std::collections::BTreeSet;

/// One checkpoint tuple's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointTuple {
    /// The transaction id.
    pub txid: u64,
    /// The step.
    pub action: Action,
    /// Which sending of the step this is.
    pub attempt: i64,
}

impl CheckpointTuple {
    /// Reads a tuple of the `$checkpoint` stream; `None` for any other.
    pub fn read(tuple: &Tuple) -> Option<Self> {
        if tuple.source_stream().as_str() != CHECKPOINT_STREAM {
            return None;
        }
        Some(Self {
            txid: u64::try_from(tuple.get_i64(0).ok()?).ok()?,
            action: Action::parse(tuple.get_str(1).ok()?)?,
            attempt: tuple.get_i64(2).ok()?,
        })
    }

    /// The tuple's values, to pass it on.
    pub fn values(&self) -> Values {
        squall_topology_api::values![self.txid as i64, self.action.as_str(), self.attempt]
    }
}

/// Waits for a checkpoint step from every input task before acting on it
/// (Storm's `shouldProcessTransaction`), and tells which input tasks
/// already sent it: their later tuples belong after the step and wait
/// (barrier alignment, as Flink's aligned checkpoints; Storm lets them
/// through, which splits a tuple tree across checkpoints). Counts only the
/// step being gathered: a different step or attempt starts again, so
/// stragglers of a timed-out attempt never complete a new one early.
#[derive(Debug, Clone)]
pub struct CheckpointBarrier {
    inputs: usize,
    gathering: Option<CheckpointTuple>,
    arrived: BTreeSet<TaskId>,
}

impl CheckpointBarrier {
    /// A barrier over `inputs` checkpoint-sending tasks.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: inputs.max(1),
            gathering: None,
            arrived: BTreeSet::new(),
        }
    }

    /// The barrier of this task: one arrival per task of each component it
    /// gets `$checkpoint` from.
    pub fn of(context: &TopologyContext) -> Self {
        let inputs = context
            .spec()
            .components
            .get(context.this_component_id())
            .map_or(0, |c| {
                c.inputs
                    .iter()
                    .filter(|i| i.stream.as_str() == CHECKPOINT_STREAM)
                    .map(|i| context.component_tasks(i.component.as_str()).len())
                    .sum()
            });
        Self::new(inputs)
    }

    /// Whether a step other than `c` is being gathered (it is then
    /// abandoned by [`arrive`](Self::arrive)).
    pub fn gathering_other(&self, c: CheckpointTuple) -> bool {
        self.gathering.is_some_and(|g| g != c)
    }

    /// Notes `c` from input task `from`; `true` when it came from every one
    /// (the step is then done gathering).
    pub fn arrive(&mut self, c: CheckpointTuple, from: TaskId) -> bool {
        if self.gathering != Some(c) {
            self.gathering = Some(c);
            self.arrived.clear();
        }
        self.arrived.insert(from);
        if self.arrived.len() >= self.inputs {
            self.gathering = None;
            self.arrived.clear();
            return true;
        }
        false
    }

    /// Whether tuples from `task` must wait: it sent the step being
    /// gathered.
    pub fn holds_back(&self, task: TaskId) -> bool {
        !self.arrived.is_empty() && self.arrived.contains(&task)
    }
}

/// Runs a bolt that keeps no state in a topology with stateful bolts:
/// passes each checkpoint step on to its subscribers once every input task
/// sent it, behind the data tuples that came before it. A tuple the bolt
/// failed since the last PREPARE fails the next one instead (its tree's
/// other branches may be in stateful bolts' uncommitted state), so the
/// checkpoint rolls back.
pub struct CheckpointForwarder {
    inner: Box<dyn Bolt>,
    epoch: Epoch,
}

impl CheckpointForwarder {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Bolt>) -> Self {
        Self {
            inner,
            epoch: Epoch::forwarding(),
        }
    }

    fn data(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let mut watching = WatchingOutput {
            out,
            failed: &mut self.epoch.failed,
        };
        self.inner
            .execute(tuple, &mut OutputCollector::new(&mut watching));
    }
}

impl Bolt for CheckpointForwarder {
    fn prepare(&mut self, context: &TopologyContext) {
        self.epoch.prepare(context);
        self.inner.prepare(context)
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let Some(c) = CheckpointTuple::read(tuple) else {
            if tuple.source_stream().as_str() == CHECKPOINT_STREAM {
                out.ack(tuple);
            } else if self.epoch.admit(tuple) {
                self.data(tuple, out);
            }
            return;
        };
        for t in self.epoch.take_stale(c) {
            self.data(&t, out);
        }
        for t in self.epoch.on_checkpoint(c, tuple, out, |_, _| Ok(())) {
            self.data(&t, out);
        }
    }

    fn wake(&mut self, out: &mut OutputCollector<'_>) {
        let mut watching = WatchingOutput {
            out,
            failed: &mut self.epoch.failed,
        };
        self.inner.wake(&mut OutputCollector::new(&mut watching))
    }

    fn cleanup(&mut self) {
        self.inner.cleanup()
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.inner.declare_output_fields(declarer);
        declarer.declare_stream(CHECKPOINT_STREAM, CHECKPOINT_FIELDS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(txid: u64, action: Action, attempt: i64) -> CheckpointTuple {
        CheckpointTuple {
            txid,
            action,
            attempt,
        }
    }

    const A: TaskId = TaskId(1);
    const B: TaskId = TaskId(2);
    const C: TaskId = TaskId(3);

    #[test]
    fn a_step_passes_once_every_input_sent_it() {
        let mut b = CheckpointBarrier::new(3);
        assert!(!b.arrive(c(1, Action::Prepare, 1), A));
        assert!(!b.arrive(c(1, Action::Prepare, 1), B));
        assert!(b.arrive(c(1, Action::Prepare, 1), C));
        assert!(!b.arrive(c(1, Action::Commit, 2), A));
    }

    #[test]
    fn inputs_that_sent_the_step_are_held_back_until_it_passes() {
        let mut b = CheckpointBarrier::new(2);
        assert!(!b.holds_back(A));
        assert!(!b.arrive(c(1, Action::Prepare, 1), A));
        assert!(b.holds_back(A));
        assert!(!b.holds_back(B));
        assert!(b.arrive(c(1, Action::Prepare, 1), B));
        assert!(!b.holds_back(A) && !b.holds_back(B));
    }

    #[test]
    fn stragglers_of_an_old_attempt_do_not_complete_a_new_one() {
        let mut b = CheckpointBarrier::new(2);
        assert!(!b.arrive(c(4, Action::Commit, 10), A));
        // The attempt timed out; the step is sent again.
        assert!(b.gathering_other(c(4, Action::Commit, 11)));
        assert!(!b.arrive(c(4, Action::Commit, 11), B));
        assert!(!b.holds_back(A), "the old attempt no longer holds A back");
        assert!(b.arrive(c(4, Action::Commit, 11), A));
    }

    #[test]
    fn one_input_passes_at_once() {
        let mut b = CheckpointBarrier::new(1);
        assert!(b.arrive(c(1, Action::InitState, 1), A));
    }
}
