//! The traits users implement: [`Spout`], [`Bolt`] and [`BasicBolt`].

use crate::collector::{BasicOutputCollector, OutputCollector, SpoutOutputCollector};
use crate::{OutputFieldsDeclarer, TopologyContext, Tuple, Value};
use std::fmt;

/// Why a spout tuple's tree did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// A bolt called `fail` on a tuple of the tree (or a basic bolt returned
    /// an error). Reaches the spout as soon as the acker hears of it.
    Failed,
    /// The tree was not completed within `topology.message.timeout.secs`.
    Timeout,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailReason::Failed => "failed",
            FailReason::Timeout => "timeout",
        })
    }
}

/// A source of tuples (Storm's `ISpout`).
///
/// Contract: every method of one spout task runs on one thread, the task's
/// executor thread, so no method needs locking. `next_tuple` must not block:
/// it emits zero or more tuples and returns; when it has nothing to emit it
/// returns at once (the executor then waits briefly before asking again).
/// `ack` and `fail` are called on that same thread, between calls to
/// `next_tuple`, for tuples emitted with a message id.
pub trait Spout: Send {
    /// Called once when the task starts, before any other method.
    fn open(&mut self, _context: &TopologyContext) {}
    /// Called once when the task stops (not guaranteed if the process dies).
    fn close(&mut self) {}
    /// Called when the topology is activated (after `open` if it starts active).
    fn activate(&mut self) {}
    /// Called when the topology is deactivated; `next_tuple` is not called
    /// until the next `activate`.
    fn deactivate(&mut self) {}
    /// Emits the next tuple(s), if any. Must not block.
    fn next_tuple(&mut self, collector: &mut SpoutOutputCollector<'_>);
    /// The tuple tree of the tuple emitted with `msg_id` completed.
    fn ack(&mut self, _msg_id: Value) {}
    /// The tuple tree of the tuple emitted with `msg_id` failed or timed out;
    /// replaying it is the spout's decision.
    fn fail(&mut self, _msg_id: Value, _reason: FailReason) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
}

/// An operator: consumes tuples, emits tuples (Storm's `IRichBolt`).
///
/// Contract: every method of one bolt task runs on the task's executor
/// thread. Every input tuple must be acked or failed (through the
/// collector), or its tree times out. A bolt may keep tuples (cloned) and ack
/// them later.
pub trait Bolt: Send {
    /// Called once when the task starts.
    fn prepare(&mut self, _context: &TopologyContext) {}
    /// Processes one input tuple.
    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>);
    /// Called on the task's thread, between tuples, soon after the task's
    /// [`TaskWaker`](crate::TaskWaker) (from
    /// [`TopologyContext::waker`]) was woken: lets a bolt emit, ack and fail
    /// for work finished on other threads (a subprocess's replies, an
    /// asynchronous write) without waiting for its next input tuple.
    fn wake(&mut self, _collector: &mut OutputCollector<'_>) {}
    /// Called once when the task stops (not guaranteed if the process dies).
    fn cleanup(&mut self) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
}

/// The error a [`BasicBolt`] returns to fail its input tuple. Converts from
/// any error type and from strings, so `?` works in `execute`.
#[derive(Debug)]
pub struct ExecuteError(Box<dyn std::error::Error + Send + Sync>);

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for ExecuteError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl fmt::Display for ExecuteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A bolt whose emits are anchored to the input and whose input is acked
/// when `execute` returns `Ok` and failed (and the error reported) when it
/// returns `Err` (Storm's `IBasicBolt` with `FailedException`).
pub trait BasicBolt: Send {
    /// Called once when the task starts.
    fn prepare(&mut self, _context: &TopologyContext) {}
    /// Processes one input tuple; emits through `collector` are anchored to it.
    fn execute(
        &mut self,
        tuple: &Tuple,
        collector: &mut BasicOutputCollector<'_, '_>,
    ) -> Result<(), ExecuteError>;
    /// Called once when the task stops.
    fn cleanup(&mut self) {}
    /// Declares the output streams and their fields.
    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer);
}

/// Runs a [`BasicBolt`] as a [`Bolt`] (Storm's `BasicBoltExecutor`).
pub struct BasicBoltAdapter<B>(pub B);

impl<B: BasicBolt> Bolt for BasicBoltAdapter<B> {
    fn prepare(&mut self, context: &TopologyContext) {
        self.0.prepare(context)
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let result = {
            let mut basic = BasicOutputCollector::new(collector, tuple);
            self.0.execute(tuple, &mut basic)
        };
        match result {
            Ok(()) => collector.ack(tuple),
            Err(e) => {
                collector.report_error(&e);
                collector.fail(tuple);
            }
        }
    }

    fn cleanup(&mut self) {
        self.0.cleanup()
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.0.declare_output_fields(declarer)
    }
}
