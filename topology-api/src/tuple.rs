//! Tuples as bolts see them, and their identity for acking.

use crate::{ComponentId, Fields, StreamId, TaskId, Value, Values};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;

/// Stream id of tick tuples, sent by the `__system` component.
pub const TICK_STREAM: &str = "__tick";
/// Component id that sends tick tuples.
pub const SYSTEM_COMPONENT: &str = "__system";

/// A tuple's identity in the tuple trees it belongs to: for each root id (one
/// per spout tuple the tuple descends from) the tuple's edge id. Empty for an
/// untracked tuple. Storm's `MessageId`; root and edge ids are random u64s.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageId(pub SmallVec<[(u64, u64); 1]>);

impl MessageId {
    /// The id of an untracked tuple.
    #[inline]
    pub fn untracked() -> Self {
        Self(SmallVec::new())
    }

    /// A tuple in the single tree `root` with edge id `edge`.
    #[inline]
    pub fn single(root: u64, edge: u64) -> Self {
        Self(SmallVec::from_buf([(root, edge)]))
    }

    /// Whether the tuple belongs to any tuple tree.
    #[inline]
    pub fn is_tracked(&self) -> bool {
        !self.0.is_empty()
    }

    /// The `(root id, edge id)` pairs.
    #[inline]
    pub fn anchors(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// XORs `edge` into the edge id for `root`, adding the root if absent
    /// (how a tuple anchored to several inputs gets its ids).
    pub fn xor_edge(&mut self, root: u64, edge: u64) {
        match self.0.iter_mut().find(|(r, _)| *r == root) {
            Some((_, e)) => *e ^= edge,
            None => self.0.push((root, edge)),
        }
    }
}

/// What a receiver knows about the stream a tuple arrived on: the emitting
/// component, the stream id and its fields. Shared by all tuples of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMeta {
    /// The emitting component.
    pub component: ComponentId,
    /// The stream id.
    pub stream: StreamId,
    /// The stream's declared fields.
    pub fields: Fields,
}

/// Why a typed read from a tuple failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TupleError {
    /// The index is past the tuple's last value.
    #[error("tuple from {component}:{stream} has {len} values, no index {index}")]
    NoIndex {
        /// The emitting component.
        component: ComponentId,
        /// The stream.
        stream: StreamId,
        /// How many values the tuple has.
        len: usize,
        /// The index asked for.
        index: usize,
    },
    /// The stream has no field of that name.
    #[error("stream {component}:{stream} has fields {fields}, no field {field:?}")]
    NoField {
        /// The emitting component.
        component: ComponentId,
        /// The stream.
        stream: StreamId,
        /// The stream's fields.
        fields: Fields,
        /// The field asked for.
        field: String,
    },
    /// The value is of another type.
    #[error("value {index} of tuple from {component}:{stream} is {actual}, not {expected}")]
    WrongType {
        /// The emitting component.
        component: ComponentId,
        /// The stream.
        stream: StreamId,
        /// The index read.
        index: usize,
        /// The type asked for.
        expected: &'static str,
        /// The type found.
        actual: &'static str,
    },
}

/// One tuple as a bolt receives it: values plus where they came from.
///
/// Cloning is cheap apart from the values; a clone is the same tuple for
/// acking (acking either acks both).
#[derive(Debug, Clone)]
pub struct Tuple {
    meta: Arc<StreamMeta>,
    source_task: TaskId,
    values: Values,
    message_id: MessageId,
    started: Option<Instant>,
    input: u32,
}

/// [`Tuple::input`] of a tuple the engine did not deliver.
pub const NO_INPUT: u32 = u32::MAX;

macro_rules! typed_getters {
    ($($get:ident, $by_field:ident, $as:ident, $t:ty, $name:literal;)*) => {$(
        #[doc = concat!("Value `index` as ", $name, "; errors name the tuple's stream and the type found.")]
        pub fn $get(&self, index: usize) -> Result<$t, TupleError> {
            let v = self.value(index)?;
            v.$as().ok_or_else(|| self.wrong_type(index, $name, v))
        }

        #[doc = concat!("Field `name` as ", $name, ".")]
        pub fn $by_field(&self, name: &str) -> Result<$t, TupleError> {
            self.$get(self.field_index(name)?)
        }
    )*};
}

impl Tuple {
    /// A tuple as the runtime delivers it. `started` is set on tuples sampled
    /// for latency metrics.
    pub fn new(
        meta: Arc<StreamMeta>,
        source_task: TaskId,
        values: Values,
        message_id: MessageId,
        started: Option<Instant>,
    ) -> Self {
        Self {
            meta,
            source_task,
            values,
            message_id,
            started,
            input: NO_INPUT,
        }
    }

    /// This tuple as delivered on the engine's input stream number `input`
    /// (what its per-input-stream statistics are kept under).
    pub fn with_input(mut self, input: u32) -> Self {
        self.input = input;
        self
    }

    /// Makes this tuple the next one delivered on its stream: sets its
    /// source task, values, ids and latency-sampling start (`started`), and
    /// keeps its stream description and input number. The previous values
    /// are dropped here.
    ///
    /// For runtimes: delivering a stream's tuples through one reused `Tuple`
    /// costs no reference-count update per tuple (two atomic operations,
    /// each draining the core's store buffer, when each tuple is made with
    /// [`Tuple::new`]). A bolt that keeps a tuple clones it, as it must
    /// anyway: `execute` only lends it.
    #[inline]
    pub fn redeliver(
        &mut self,
        source_task: TaskId,
        values: Values,
        message_id: MessageId,
        started: Option<Instant>,
    ) {
        self.source_task = source_task;
        self.values = values;
        self.message_id = message_id;
        self.started = started;
    }

    /// Makes this tuple the next one delivered on its stream, from
    /// `source_task` with latency-sampling start `started`, its values and
    /// ids decoded in place: empties them (dropping the previous ones) and
    /// lends them out to be filled. For runtimes, as
    /// [`Tuple::redeliver`], without building the values elsewhere first.
    #[inline]
    pub fn refill(
        &mut self,
        source_task: TaskId,
        started: Option<Instant>,
    ) -> (&mut Values, &mut MessageId) {
        self.source_task = source_task;
        self.started = started;
        self.values.0.clear();
        self.message_id.0.clear();
        (&mut self.values, &mut self.message_id)
    }

    /// Where the tuple comes from: emitting component, stream, fields.
    #[inline]
    pub fn meta(&self) -> &StreamMeta {
        &self.meta
    }

    /// The engine's number for the stream this tuple arrived on;
    /// [`NO_INPUT`] for a tuple the engine did not deliver (one made for
    /// acking, or by a test).
    #[inline]
    pub fn input(&self) -> u32 {
        self.input
    }

    /// A tuple that stands for another in acking: no values, identity
    /// `message_id` (from [`OutputCollector::take_ack_id`](crate::OutputCollector::take_ack_id)),
    /// stream `meta`.
    pub fn with_message_id(meta: Arc<StreamMeta>, message_id: MessageId) -> Self {
        Self::new(meta, TaskId(0), Values::new(), message_id, None)
    }

    /// All values, in field order.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// Takes the values out, leaving the tuple empty.
    pub fn into_values(self) -> Values {
        self.values
    }

    /// The value at `index`, if present.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// The value at `index`, or an error naming the stream and index.
    pub fn value(&self, index: usize) -> Result<&Value, TupleError> {
        self.values.get(index).ok_or_else(|| TupleError::NoIndex {
            component: self.meta.component.clone(),
            stream: self.meta.stream.clone(),
            len: self.values.len(),
            index,
        })
    }

    /// The value of field `name`, or an error naming the stream's fields.
    pub fn value_by_field(&self, name: &str) -> Result<&Value, TupleError> {
        self.value(self.field_index(name)?)
    }

    /// The index of field `name` in this tuple's stream.
    pub fn field_index(&self, name: &str) -> Result<usize, TupleError> {
        self.meta
            .fields
            .index_of(name)
            .ok_or_else(|| TupleError::NoField {
                component: self.meta.component.clone(),
                stream: self.meta.stream.clone(),
                fields: self.meta.fields.clone(),
                field: name.to_owned(),
            })
    }

    fn wrong_type(&self, index: usize, expected: &'static str, v: &Value) -> TupleError {
        TupleError::WrongType {
            component: self.meta.component.clone(),
            stream: self.meta.stream.clone(),
            index,
            expected,
            actual: v.type_name(),
        }
    }

    typed_getters! {
        get_str, get_str_by_field, as_str, &str, "string";
        get_i64, get_i64_by_field, as_i64, i64, "int";
        get_f64, get_f64_by_field, as_f64, f64, "float";
        get_bool, get_bool_by_field, as_bool, bool, "bool";
        get_bytes, get_bytes_by_field, as_bytes, &[u8], "bytes";
        get_list, get_list_by_field, as_list, &[Value], "list";
    }

    /// The stream's fields.
    pub fn fields(&self) -> &Fields {
        &self.meta.fields
    }

    /// The component that emitted the tuple.
    pub fn source_component(&self) -> &ComponentId {
        &self.meta.component
    }

    /// The task that emitted the tuple.
    pub fn source_task(&self) -> TaskId {
        self.source_task
    }

    /// The stream the tuple was emitted on.
    pub fn source_stream(&self) -> &StreamId {
        &self.meta.stream
    }

    /// Whether this is a tick tuple (stream `__tick` of `__system`).
    pub fn is_tick(&self) -> bool {
        self.meta.stream.as_str() == TICK_STREAM && self.meta.component.as_str() == SYSTEM_COMPONENT
    }

    /// The tuple's identity in its tuple trees.
    #[inline]
    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// When the runtime started executing this tuple, if it was sampled for
    /// latency metrics.
    #[inline]
    pub fn started(&self) -> Option<Instant> {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values;

    #[test]
    fn a_redelivered_tuple_is_the_next_one_and_a_clone_keeps_the_last() {
        let meta = Arc::new(StreamMeta {
            component: "split".into(),
            stream: "default".into(),
            fields: Fields::from(["word"]),
        });
        let mut tuple = Tuple::with_message_id(meta.clone(), MessageId::untracked()).with_input(3);
        tuple.redeliver(TaskId(7), values!["the"], MessageId::single(1, 2), None);
        let kept = tuple.clone();
        let now = Instant::now();
        tuple.redeliver(TaskId(8), values!["cat"], MessageId::untracked(), Some(now));
        assert_eq!(tuple.get_str(0).unwrap(), "cat");
        assert_eq!(tuple.source_task(), TaskId(8));
        assert!(!tuple.message_id().is_tracked());
        assert_eq!(tuple.started(), Some(now));
        assert_eq!((tuple.input(), tuple.meta()), (3, &*meta));
        assert_eq!(kept.get_str(0).unwrap(), "the");
        assert_eq!(kept.source_task(), TaskId(7));
        assert_eq!(kept.message_id().anchors(), &[(1, 2)]);
        assert_eq!(kept.started(), None);
    }
}
