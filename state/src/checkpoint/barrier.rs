//! Barrier alignment of checkpoint tuples ([`CheckpointBarrier`]) and the
//! wrapper that lets a plain bolt pass them on ([`CheckpointForwarder`],
//! Storm's `CheckpointTupleForwarder`).

use super::{Action, CHECKPOINT_FIELDS};
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TopologyContext, Tuple, Values, CHECKPOINT_STREAM,
};

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
/// (Storm's `shouldProcessTransaction`). Counts only the step being
/// gathered: a different step or attempt starts the count again, so
/// stragglers of a timed-out attempt never complete a new one early.
#[derive(Debug, Clone)]
pub struct CheckpointBarrier {
    inputs: usize,
    gathering: Option<(CheckpointTuple, usize)>,
}

impl CheckpointBarrier {
    /// A barrier over `inputs` checkpoint-sending tasks.
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: inputs.max(1),
            gathering: None,
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

    /// Notes `c` from one input task; `true` when it came from every one.
    pub fn arrive(&mut self, c: CheckpointTuple) -> bool {
        let count = match &mut self.gathering {
            Some((g, n)) if *g == c => {
                *n += 1;
                *n
            }
            _ => {
                self.gathering = Some((c, 1));
                1
            }
        };
        if count >= self.inputs {
            self.gathering = None;
            return true;
        }
        false
    }
}

/// Runs a bolt that keeps no state in a topology with stateful bolts:
/// passes each checkpoint step on to its subscribers once every input task
/// sent it, behind the data tuples that came before it.
pub struct CheckpointForwarder {
    inner: Box<dyn Bolt>,
    barrier: CheckpointBarrier,
}

impl CheckpointForwarder {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Bolt>) -> Self {
        Self {
            inner,
            barrier: CheckpointBarrier::new(1),
        }
    }
}

impl Bolt for CheckpointForwarder {
    fn prepare(&mut self, context: &TopologyContext) {
        self.barrier = CheckpointBarrier::of(context);
        self.inner.prepare(context)
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        match CheckpointTuple::read(tuple) {
            Some(c) => {
                if self.barrier.arrive(c) {
                    out.emit_anchored_stream(CHECKPOINT_STREAM, tuple, c.values());
                }
                out.ack(tuple);
            }
            None if tuple.source_stream().as_str() == CHECKPOINT_STREAM => out.ack(tuple),
            None => self.inner.execute(tuple, out),
        }
    }

    fn wake(&mut self, out: &mut OutputCollector<'_>) {
        self.inner.wake(out)
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

    #[test]
    fn a_step_passes_once_every_input_sent_it() {
        let mut b = CheckpointBarrier::new(3);
        assert!(!b.arrive(c(1, Action::Prepare, 1)));
        assert!(!b.arrive(c(1, Action::Prepare, 1)));
        assert!(b.arrive(c(1, Action::Prepare, 1)));
        assert!(!b.arrive(c(1, Action::Commit, 2)));
    }

    #[test]
    fn stragglers_of_an_old_attempt_do_not_complete_a_new_one() {
        let mut b = CheckpointBarrier::new(2);
        assert!(!b.arrive(c(4, Action::Commit, 10)));
        // The attempt timed out; the step is sent again.
        assert!(!b.arrive(c(4, Action::Commit, 11)));
        assert!(b.arrive(c(4, Action::Commit, 11)));
    }

    #[test]
    fn one_input_passes_at_once() {
        let mut b = CheckpointBarrier::new(1);
        assert!(b.arrive(c(1, Action::InitState, 1)));
    }
}
