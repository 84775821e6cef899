//! Collectors: how spouts and bolts emit, ack and fail.
//!
//! The collectors are thin wrappers over the runtime's [`BoltOutput`] and
//! [`SpoutOutput`] seams, which the execution engine implements.

use crate::{TaskId, Tuple, Value, Values, DEFAULT_STREAM};
use std::fmt::Display;

/// What the runtime does for a bolt's collector. Implemented by the engine;
/// users call [`OutputCollector`] instead.
pub trait BoltOutput {
    /// Emits `values` on `stream`, anchored to `anchors` (untracked when
    /// empty), to the task `direct_task` on a direct stream or else to the
    /// tasks the stream's groupings choose.
    fn emit(
        &mut self,
        stream: &str,
        anchors: &[&Tuple],
        values: Values,
        direct_task: Option<TaskId>,
    );
    /// Acks an input tuple.
    fn ack(&mut self, tuple: &Tuple);
    /// Acks an input tuple idempotently: the acker applies the ack once
    /// per tree however often it is sent. By default a plain
    /// [`ack`](Self::ack).
    fn ack_once(&mut self, tuple: &Tuple) {
        self.ack(tuple)
    }
    /// Fails an input tuple's trees.
    fn fail(&mut self, tuple: &Tuple);
    /// Restarts the message timeout of the input tuple's trees.
    fn reset_timeout(&mut self, tuple: &Tuple);
    /// Records an error in the task's metrics (last errors).
    fn report_error(&mut self, error: &str);
    /// Updates the task's user metric `name`.
    fn update_metric(&mut self, name: &str, update: MetricUpdate);
    /// The tasks the most recent emit was sent to (empty when it was
    /// dropped or had no subscriber).
    fn last_targets(&self) -> &[TaskId];
    /// Stops tracking the tuples anchored to `tuple` so far and returns
    /// the ids its ack would send: acking or failing any tuple carrying
    /// this id later (even in another process) acks or fails `tuple`.
    /// By default the tuple's own id.
    fn take_ack_id(&mut self, tuple: &Tuple) -> crate::MessageId {
        tuple.message_id().clone()
    }
}

/// What the runtime does for a spout's collector.
pub trait SpoutOutput {
    /// Emits `values` on `stream`, tracked when `msg_id` is set, to
    /// `direct_task` on a direct stream or else as the groupings choose.
    fn emit(
        &mut self,
        stream: &str,
        values: Values,
        msg_id: Option<Value>,
        direct_task: Option<TaskId>,
    );
    /// Records an error in the task's metrics.
    fn report_error(&mut self, error: &str);
    /// Updates the task's user metric `name`.
    fn update_metric(&mut self, name: &str, update: MetricUpdate);
    /// The tasks the most recent emit was sent to (empty when it was
    /// dropped or had no subscriber).
    fn last_targets(&self) -> &[TaskId];
}

/// A change to a user metric (shown in the task's metrics under `user`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricUpdate {
    /// Adds to a counter (created at 0).
    Add(f64),
    /// Sets a gauge.
    Set(f64),
}

/// One or several tuples to anchor an emit to.
#[derive(Debug, Clone, Copy)]
pub enum Anchors<'t> {
    /// A single anchor.
    One(&'t Tuple),
    /// Several anchors.
    Many(&'t [&'t Tuple]),
}

impl<'t> Anchors<'t> {
    fn run<R>(self, f: impl FnOnce(&[&Tuple]) -> R) -> R {
        match self {
            Anchors::One(t) => f(&[t]),
            Anchors::Many(ts) => f(ts),
        }
    }
}

impl<'t> From<&'t Tuple> for Anchors<'t> {
    fn from(t: &'t Tuple) -> Self {
        Anchors::One(t)
    }
}
impl<'t> From<&'t [&'t Tuple]> for Anchors<'t> {
    fn from(ts: &'t [&'t Tuple]) -> Self {
        Anchors::Many(ts)
    }
}
impl<'t, const N: usize> From<&'t [&'t Tuple; N]> for Anchors<'t> {
    fn from(ts: &'t [&'t Tuple; N]) -> Self {
        Anchors::Many(ts)
    }
}
impl<'t> From<&'t Vec<&'t Tuple>> for Anchors<'t> {
    fn from(ts: &'t Vec<&'t Tuple>) -> Self {
        Anchors::Many(ts)
    }
}

/// A bolt's collector (Storm's `OutputCollector`).
pub struct OutputCollector<'a> {
    sink: &'a mut dyn BoltOutput,
}

impl<'a> OutputCollector<'a> {
    /// Wraps the runtime's sink.
    pub fn new(sink: &'a mut dyn BoltOutput) -> Self {
        Self { sink }
    }

    /// Emits an unanchored (untracked) tuple on the default stream.
    #[inline]
    pub fn emit(&mut self, values: Values) {
        self.sink.emit(DEFAULT_STREAM, &[], values, None)
    }

    /// Emits an unanchored tuple on `stream`.
    pub fn emit_stream(&mut self, stream: &str, values: Values) {
        self.sink.emit(stream, &[], values, None)
    }

    /// Emits on the default stream anchored to one or several input tuples:
    /// the new tuple joins every tree its anchors belong to.
    #[inline]
    pub fn emit_anchored<'t>(&mut self, anchors: impl Into<Anchors<'t>>, values: Values) {
        self.emit_anchored_stream(DEFAULT_STREAM, anchors, values)
    }

    /// Emits on `stream` anchored to one or several input tuples.
    #[inline]
    pub fn emit_anchored_stream<'t>(
        &mut self,
        stream: &str,
        anchors: impl Into<Anchors<'t>>,
        values: Values,
    ) {
        anchors
            .into()
            .run(|a| self.sink.emit(stream, a, values, None))
    }

    /// Emits to task `task` on the direct stream `stream`, anchored to
    /// `anchors` (pass `&[]` for untracked). Emitting to a task that does not
    /// subscribe to the stream with direct grouping, or on a stream not
    /// declared direct, drops the tuple and reports an error.
    pub fn emit_direct<'t>(
        &mut self,
        task: TaskId,
        stream: &str,
        anchors: impl Into<Anchors<'t>>,
        values: Values,
    ) {
        anchors
            .into()
            .run(|a| self.sink.emit(stream, a, values, Some(task)))
    }

    /// Acks an input tuple: done with it, and every tuple anchored to it has
    /// been emitted.
    #[inline]
    pub fn ack(&mut self, tuple: &Tuple) {
        self.sink.ack(tuple)
    }

    /// Acks an input tuple so that sending the same ack again (even from a
    /// restarted process, with an id from
    /// [`take_ack_id`](Self::take_ack_id)) does nothing: for acks that
    /// must be re-sent when it is unknown whether the first send arrived,
    /// as a stateful bolt's after a crash. A tuple acked this way must
    /// not also be acked with [`ack`](Self::ack).
    pub fn ack_once(&mut self, tuple: &Tuple) {
        self.sink.ack_once(tuple)
    }

    /// Fails an input tuple: its spout tuples fail at once (reason
    /// [`FailReason::Failed`](crate::FailReason::Failed)).
    pub fn fail(&mut self, tuple: &Tuple) {
        self.sink.fail(tuple)
    }

    /// Restarts the message timeout of the trees `tuple` belongs to, for
    /// work that legitimately takes long.
    pub fn reset_timeout(&mut self, tuple: &Tuple) {
        self.sink.reset_timeout(tuple)
    }

    /// For acks deferred past this call (a stateful bolt's, held until a
    /// checkpoint commits, possibly by a restarted process): the id that
    /// acks `tuple` with everything emitted anchored to it so far. Ack a
    /// tuple carrying it (see [`Tuple::with_message_id`]) instead of
    /// `tuple`; emit nothing more anchored to `tuple`.
    pub fn take_ack_id(&mut self, tuple: &Tuple) -> crate::MessageId {
        self.sink.take_ack_id(tuple)
    }

    /// Records an error; it shows in the task's metrics (last errors).
    pub fn report_error(&mut self, error: &dyn Display) {
        self.sink.report_error(&error.to_string())
    }

    /// The task ids the most recent emit went to (what Storm's `emit`
    /// returns); empty after a direct emit's error or with no subscriber.
    pub fn last_targets(&self) -> &[TaskId] {
        self.sink.last_targets()
    }

    /// Adds `by` to the user counter `name` (in the task's metrics).
    pub fn incr_metric(&mut self, name: &str, by: f64) {
        self.sink.update_metric(name, MetricUpdate::Add(by))
    }

    /// Sets the user gauge `name` to `value` (in the task's metrics).
    pub fn set_metric(&mut self, name: &str, value: f64) {
        self.sink.update_metric(name, MetricUpdate::Set(value))
    }
}

/// A basic bolt's collector: every emit is anchored to the input tuple.
pub struct BasicOutputCollector<'c, 'a> {
    inner: &'c mut OutputCollector<'a>,
    input: &'c Tuple,
}

impl<'c, 'a> BasicOutputCollector<'c, 'a> {
    /// Wraps a bolt collector for one input tuple.
    pub fn new(inner: &'c mut OutputCollector<'a>, input: &'c Tuple) -> Self {
        Self { inner, input }
    }

    /// Emits on the default stream, anchored to the input.
    #[inline]
    pub fn emit(&mut self, values: Values) {
        self.inner.emit_anchored(self.input, values)
    }

    /// Emits on `stream`, anchored to the input.
    pub fn emit_stream(&mut self, stream: &str, values: Values) {
        self.inner.emit_anchored_stream(stream, self.input, values)
    }

    /// Emits to `task` on direct stream `stream`, anchored to the input.
    pub fn emit_direct(&mut self, task: TaskId, stream: &str, values: Values) {
        self.inner.emit_direct(task, stream, self.input, values)
    }

    /// Restarts the message timeout of the input's trees.
    pub fn reset_timeout(&mut self) {
        self.inner.reset_timeout(self.input)
    }

    /// Records an error in the task's metrics.
    pub fn report_error(&mut self, error: &dyn Display) {
        self.inner.report_error(error)
    }
}

/// A spout's collector (Storm's `SpoutOutputCollector`).
pub struct SpoutOutputCollector<'a> {
    sink: &'a mut dyn SpoutOutput,
}

impl<'a> SpoutOutputCollector<'a> {
    /// Wraps the runtime's sink.
    pub fn new(sink: &'a mut dyn SpoutOutput) -> Self {
        Self { sink }
    }

    /// Emits an untracked tuple on the default stream (no ack or fail will
    /// follow).
    #[inline]
    pub fn emit(&mut self, values: Values) {
        self.sink.emit(DEFAULT_STREAM, values, None, None)
    }

    /// Emits a tracked tuple on the default stream: `ack(msg_id)` or
    /// `fail(msg_id, reason)` follows exactly once.
    pub fn emit_with_id(&mut self, values: Values, msg_id: impl Into<Value>) {
        self.sink
            .emit(DEFAULT_STREAM, values, Some(msg_id.into()), None)
    }

    /// Emits on `stream`, tracked when `msg_id` is `Some`.
    pub fn emit_stream(&mut self, stream: &str, values: Values, msg_id: Option<Value>) {
        self.sink.emit(stream, values, msg_id, None)
    }

    /// Emits to `task` on the direct stream `stream`, tracked when `msg_id`
    /// is `Some`.
    pub fn emit_direct(
        &mut self,
        task: TaskId,
        stream: &str,
        values: Values,
        msg_id: Option<Value>,
    ) {
        self.sink.emit(stream, values, msg_id, Some(task))
    }

    /// Records an error in the task's metrics.
    pub fn report_error(&mut self, error: &dyn Display) {
        self.sink.report_error(&error.to_string())
    }

    /// The task ids the most recent emit went to (what Storm's `emit`
    /// returns).
    pub fn last_targets(&self) -> &[TaskId] {
        self.sink.last_targets()
    }

    /// Adds `by` to the user counter `name` (in the task's metrics).
    pub fn incr_metric(&mut self, name: &str, by: f64) {
        self.sink.update_metric(name, MetricUpdate::Add(by))
    }

    /// Sets the user gauge `name` to `value` (in the task's metrics).
    pub fn set_metric(&mut self, name: &str, value: f64) {
        self.sink.update_metric(name, MetricUpdate::Set(value))
    }
}
