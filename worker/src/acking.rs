//! Storm's XOR acking: the acker bolt, and a bolt task's bookkeeping of the
//! edge ids anchored to each input tuple.
//!
//! Every tuple in a tree has a random 64-bit edge id. The acker keeps, per
//! root id, the XOR of every edge id it has been told about: the spout adds
//! the edges of the tuples it emitted (`ack_init`); a bolt acking an input
//! adds the input's edge and the edges of the tuples anchored to it
//! (`ack`). Each edge is added exactly twice, once when created and once
//! when acked, so the value returns to zero exactly when the whole tree is
//! processed (with probability 1 - 2^-64). See Apache Storm `Acker.java`.
//!
//! Squall adds idempotent acks (`__ack_once`): the acker remembers the
//! values a tree got that way and applies each once, so a stateful bolt
//! restarted after a checkpoint committed can re-send that checkpoint's
//! acks without knowing whether its first send arrived.

use crate::message::{StreamTable, TupleMsg};
use crate::rotating::RotatingMap;
use smallvec::SmallVec;
use squall_topology_api::{
    Bolt, MessageId, OutputCollector, OutputFieldsDeclarer, TaskId, Tuple, Value, Values,
};

/// Stream on which a spout task tells an acker about a new tuple tree:
/// `[root, xor of edge ids]`; the spout task is the tuple's source (two
/// values fit a tuple's inline storage, three would allocate per tree).
pub const ACK_INIT_STREAM: &str = "__ack_init";
/// Stream on which a bolt acks (`[root, xor]`), and on which an acker tells
/// a spout that a tree completed (`[root]`).
pub const ACK_ACK_STREAM: &str = "__ack_ack";
/// Stream on which a bolt acks idempotently (`[root, xor]`): the acker
/// applies each value once per tree, so an ack re-sent after a restart
/// (a stateful bolt's, which cannot know whether its first send arrived)
/// does not undo the first.
pub const ACK_ONCE_STREAM: &str = "__ack_once";
/// Stream on which a bolt fails a tree (`[root]`), and on which an acker
/// tells the spout (`[root]`).
pub const ACK_FAIL_STREAM: &str = "__ack_fail";
/// Stream on which a bolt restarts a tree's timeout (`[root]`), forwarded by
/// the acker to the spout.
pub const ACK_RESET_TIMEOUT_STREAM: &str = "__ack_reset_timeout";

/// One message of the ack protocol. Its stream and values are encoded and
/// decoded here only; the acking streams are ordinary system streams, so
/// acks travel in the same batches and over the same wire as tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMsg {
    /// Spout → acker: a new tree `root` whose first edges XOR to `val`.
    Init {
        /// The tree.
        root: u64,
        /// XOR of the edge ids of the tuples the spout emitted.
        val: u64,
        /// The spout task to tell when the tree completes or fails.
        spout_task: TaskId,
    },
    /// Bolt → acker: XOR `val` into the tree (an input acked, with the
    /// edges of the tuples anchored to it).
    Ack {
        /// The tree.
        root: u64,
        /// The value to XOR in.
        val: u64,
    },
    /// Bolt → acker: as [`AckMsg::Ack`], applied once per tree and value.
    Once {
        /// The tree.
        root: u64,
        /// The value to XOR in, once.
        val: u64,
    },
    /// Bolt → acker → spout: the tree failed.
    Fail {
        /// The tree.
        root: u64,
    },
    /// Bolt → acker → spout: the tree's timeout starts again.
    ResetTimeout {
        /// The tree.
        root: u64,
    },
    /// Acker → spout: the tree completed.
    Complete {
        /// The tree.
        root: u64,
    },
}

impl AckMsg {
    /// The stream it travels on.
    pub fn stream(&self) -> &'static str {
        match self {
            Self::Init { .. } => ACK_INIT_STREAM,
            Self::Ack { .. } | Self::Complete { .. } => ACK_ACK_STREAM,
            Self::Once { .. } => ACK_ONCE_STREAM,
            Self::Fail { .. } => ACK_FAIL_STREAM,
            Self::ResetTimeout { .. } => ACK_RESET_TIMEOUT_STREAM,
        }
    }

    /// Its values: `[root, val]` or `[root]`, as [`Value::Int`]s holding
    /// the ids' bits, built directly in the inline storage of [`Values`]
    /// (no push, no capacity check: this runs for every ack message).
    pub fn values(&self) -> Values {
        let int = |v: u64| Value::Int(v as i64);
        match *self {
            Self::Init { root, val, .. } | Self::Ack { root, val } | Self::Once { root, val } => {
                Values(SmallVec::from_buf([int(root), int(val)]))
            }
            Self::Fail { root } | Self::ResetTimeout { root } | Self::Complete { root } => {
                Values(SmallVec::from_buf_and_len([int(root), Value::Null], 1))
            }
        }
    }

    /// A message an acker received from task `source` on `stream`; `None`
    /// when the stream is not an acking stream or the values are
    /// malformed.
    pub fn at_acker(stream: &str, values: &Values, source: TaskId) -> Option<Self> {
        let int = |i: usize| values.get(i).and_then(Value::as_i64).map(|v| v as u64);
        let root = int(0)?;
        Some(match stream {
            ACK_INIT_STREAM => Self::Init {
                root,
                val: int(1)?,
                spout_task: source,
            },
            ACK_ACK_STREAM => Self::Ack { root, val: int(1)? },
            ACK_ONCE_STREAM => Self::Once { root, val: int(1)? },
            ACK_FAIL_STREAM => Self::Fail { root },
            ACK_RESET_TIMEOUT_STREAM => Self::ResetTimeout { root },
            _ => return None,
        })
    }

    /// The message as `(kind, root, val)`, the parts it crosses between
    /// workers as ([`crate::wire::encode_acks`]): kind 0 init, 1 ack, 2
    /// once, 3 fail, 4 reset timeout, 5 complete; `val` for the first
    /// three only. An init's spout task is the message's source.
    pub fn to_parts(self) -> (u8, u64, Option<u64>) {
        match self {
            Self::Init { root, val, .. } => (0, root, Some(val)),
            Self::Ack { root, val } => (1, root, Some(val)),
            Self::Once { root, val } => (2, root, Some(val)),
            Self::Fail { root } => (3, root, None),
            Self::ResetTimeout { root } => (4, root, None),
            Self::Complete { root } => (5, root, None),
        }
    }

    /// The message [`Self::to_parts`] gave these parts, sent by task
    /// `source`; `None` for an unknown kind, or a `val` missing or extra
    /// for the kind.
    pub fn from_parts(kind: u8, root: u64, val: Option<u64>, source: TaskId) -> Option<Self> {
        Some(match (kind, val) {
            (0, Some(val)) => Self::Init {
                root,
                val,
                spout_task: source,
            },
            (1, Some(val)) => Self::Ack { root, val },
            (2, Some(val)) => Self::Once { root, val },
            (3, None) => Self::Fail { root },
            (4, None) => Self::ResetTimeout { root },
            (5, None) => Self::Complete { root },
            _ => return None,
        })
    }

    /// XORs an [`AckMsg::Ack`] of `root` into this message when it is an
    /// ack of the same root (the XOR algorithm allows merging; an
    /// idempotent ack's value must stay as sent, so only plain acks merge).
    /// Returns whether it merged.
    pub fn merge_ack(&mut self, root: u64, val: u64) -> bool {
        match self {
            Self::Ack { root: r, val: v } if *r == root => {
                *v ^= val;
                true
            }
            _ => false,
        }
    }
}

/// One ack-protocol message addressed to one task: how acks travel between
/// the executors of a worker (40 bytes, where a [`TupleMsg`] takes 112 and
/// its values must be built and parsed), and between workers, in ack
/// frames of their own ([`crate::wire::encode_acks`]). A user bolt
/// subscribed to an acking stream receives one as a tuple
/// ([`AckTo::into_tuple`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTo {
    /// The receiving task (an acker, or a spout told by one).
    pub dest: TaskId,
    /// The sending task.
    pub source: TaskId,
    /// The index of the acking stream of `source`'s component it travels
    /// on (the receiver's input metrics count it there).
    pub stream: u32,
    /// The message.
    pub msg: AckMsg,
}

impl AckTo {
    /// The same message as a tuple on its acking stream, as a user bolt
    /// subscribed to that stream receives it.
    pub fn into_tuple(self) -> TupleMsg {
        TupleMsg {
            dest: self.dest,
            source: self.source,
            stream: self.stream,
            values: self.msg.values(),
            message_id: MessageId::untracked(),
        }
    }
}

/// The stream indices of a component's acking streams, which its tasks
/// send ack messages on (`u32::MAX` where it has none).
#[derive(Debug, Clone, Copy)]
pub struct AckStreams {
    init: u32,
    ack: u32,
    once: u32,
    fail: u32,
    reset: u32,
}

impl AckStreams {
    /// The acking streams `component` emits on.
    pub fn of(streams: &StreamTable, component: &str) -> Self {
        let index = |s: &str| streams.index(component, s).unwrap_or(u32::MAX);
        Self {
            init: index(ACK_INIT_STREAM),
            ack: index(ACK_ACK_STREAM),
            once: index(ACK_ONCE_STREAM),
            fail: index(ACK_FAIL_STREAM),
            reset: index(ACK_RESET_TIMEOUT_STREAM),
        }
    }

    /// The index of the stream `msg` travels on from this component.
    pub fn index(&self, msg: &AckMsg) -> u32 {
        match msg {
            AckMsg::Init { .. } => self.init,
            AckMsg::Ack { .. } | AckMsg::Complete { .. } => self.ack,
            AckMsg::Once { .. } => self.once,
            AckMsg::Fail { .. } => self.fail,
            AckMsg::ResetTimeout { .. } => self.reset,
        }
    }
}

/// One tree's entry in the acker: 24 bytes, so that a table of a few
/// thousand trees stays in the core's cache.
#[derive(Debug, Default)]
struct AckEntry {
    val: u64,
    /// Values applied from `__ack_once` (each applied once): a stateful
    /// task sends one per tree and checkpoint; most trees have none.
    once: Option<Box<SmallVec<[u64; 2]>>>,
    /// The spout task to tell, once the init arrived (task ids start at
    /// 1; 0 means not yet known).
    spout_task: u32,
    failed: bool,
}

/// The acker bolt (component `__acker`). Its pending entries rotate on tick
/// tuples sent every `topology.message.timeout.secs`, so an entry lives
/// between one and two timeouts; the spout's own timeout decides failure.
pub struct Acker {
    pending: RotatingMap<u64, AckEntry>,
}

impl Default for Acker {
    fn default() -> Self {
        Self {
            pending: RotatingMap::new(2),
        }
    }
}

impl Acker {
    /// Applies `msg` to its tree. Returns whom to tell what: the spout task
    /// of a tree that completed, failed or had its timeout reset.
    pub fn apply(&mut self, msg: AckMsg) -> Option<(TaskId, AckMsg)> {
        let root = match msg {
            AckMsg::ResetTimeout { root } => {
                if !self.pending.touch(root) {
                    return None;
                }
                let task = self.pending.get_mut(&root)?.spout_task;
                return (task != 0).then_some((TaskId(task), msg));
            }
            AckMsg::Init { root, .. }
            | AckMsg::Ack { root, .. }
            | AckMsg::Once { root, .. }
            | AckMsg::Fail { root }
            | AckMsg::Complete { root } => root,
        };
        let entry = self.pending.get_or_insert_with(root, AckEntry::default);
        match msg {
            AckMsg::Init {
                val, spout_task, ..
            } => {
                entry.val ^= val;
                entry.spout_task = spout_task.0;
            }
            AckMsg::Ack { val, .. } => entry.val ^= val,
            AckMsg::Once { val, .. } => {
                let once = entry.once.get_or_insert_default();
                if !once.contains(&val) {
                    once.push(val);
                    entry.val ^= val;
                }
            }
            AckMsg::Fail { .. } => entry.failed = true,
            AckMsg::ResetTimeout { .. } | AckMsg::Complete { .. } => {}
        }
        if entry.spout_task == 0 {
            return None;
        }
        let task = TaskId(entry.spout_task);
        let told = if entry.failed {
            AckMsg::Fail { root }
        } else if entry.val == 0 {
            AckMsg::Complete { root }
        } else {
            return None;
        };
        self.pending.remove(&root);
        Some((task, told))
    }

    /// Expires the trees not heard of for two rotations (called once per
    /// message timeout, on the acker's tick).
    pub fn rotate(&mut self) {
        self.pending.rotate();
    }
}

/// The acker as a bolt: executors run it through [`Acker::apply`] without
/// building a `Tuple` per message; this is the same logic for tick tuples
/// and for tests.
impl Bolt for Acker {
    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            self.rotate();
            return;
        }
        let stream = tuple.source_stream().as_str();
        let Some(msg) = AckMsg::at_acker(stream, tuple.values(), tuple.source_task()) else {
            out.report_error(&malformed(stream, tuple.values()));
            return;
        };
        if let Some((task, told)) = self.apply(msg) {
            out.emit_direct(task, told.stream(), &[], told.values());
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare_direct_stream(ACK_ACK_STREAM, ["id"]);
        d.declare_direct_stream(ACK_FAIL_STREAM, ["id"]);
        d.declare_direct_stream(ACK_RESET_TIMEOUT_STREAM, ["id"]);
    }
}

/// The error an acker reports for a tuple that is not an ack message.
pub fn malformed(stream: &str, values: &Values) -> String {
    format!("acker got a malformed tuple {values} on stream {stream:?}")
}

/// A bolt task's XOR of the edge ids anchored to each input tuple not yet
/// acked, keyed by the input's first edge id (clones of a tuple share it).
/// The most recent key is cached in front of the map: a bolt typically
/// emits several tuples anchored to one input, then acks it. Entries of
/// inputs never acked expire on rotation (once per message timeout).
pub struct AckVals {
    last: Option<(u64, u64)>,
    map: RotatingMap<u64, u64>,
}

impl Default for AckVals {
    fn default() -> Self {
        Self {
            last: None,
            map: RotatingMap::new(2),
        }
    }
}

impl AckVals {
    /// XORs `edge` into the value of input `key`.
    pub fn add(&mut self, key: u64, edge: u64) {
        match &mut self.last {
            Some((k, v)) if *k == key => *v ^= edge,
            _ => {
                if let Some((k, v)) = self.last.take() {
                    *self.map.get_or_insert_with(k, || 0) ^= v;
                }
                let prev = self.map.remove(&key).unwrap_or(0);
                self.last = Some((key, prev ^ edge));
            }
        }
    }

    /// Removes and returns the value of input `key` (0 if nothing was
    /// anchored to it).
    pub fn take(&mut self, key: u64) -> u64 {
        match self.last {
            Some((k, v)) if k == key => {
                self.last = None;
                v
            }
            _ => self.map.remove(&key).unwrap_or(0),
        }
    }

    /// Restarts the expiry of input `key`'s entry (its tree's timeout was
    /// reset, so it may be acked much later).
    pub fn touch(&mut self, key: u64) {
        if self.last.is_none_or(|(k, _)| k != key) {
            self.map.touch(key);
        }
    }

    /// Expires entries of inputs not acked for two rotations.
    pub fn rotate(&mut self) {
        if let Some((k, v)) = self.last.take() {
            *self.map.get_or_insert_with(k, || 0) ^= v;
        }
        self.map.rotate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_topology_api::values;

    #[test]
    fn ack_messages_round_trip_through_their_streams() {
        let t = TaskId(7);
        for msg in [
            AckMsg::Init {
                root: u64::MAX,
                val: 3,
                spout_task: t,
            },
            AckMsg::Ack { root: 1, val: 2 },
            AckMsg::Once { root: 1, val: 2 },
            AckMsg::Fail { root: 9 },
            AckMsg::ResetTimeout { root: 9 },
        ] {
            assert_eq!(AckMsg::at_acker(msg.stream(), &msg.values(), t), Some(msg));
        }
        // Between workers, by parts; an init's spout task is its source.
        for msg in [
            AckMsg::Init {
                root: 1,
                val: u64::MAX,
                spout_task: t,
            },
            AckMsg::Ack { root: 1, val: 2 },
            AckMsg::Once { root: 1, val: 2 },
            AckMsg::Fail { root: 9 },
            AckMsg::ResetTimeout { root: 9 },
            AckMsg::Complete { root: u64::MAX },
        ] {
            let (kind, root, val) = msg.to_parts();
            assert_eq!(AckMsg::from_parts(kind, root, val, t), Some(msg));
        }
        assert_eq!(AckMsg::from_parts(6, 1, None, t), None, "unknown kind");
        assert_eq!(AckMsg::from_parts(1, 1, None, t), None, "an ack lacks val");
        assert_eq!(AckMsg::from_parts(5, 1, Some(2), t), None, "extra val");
        assert_eq!(AckMsg::at_acker("default", &values![1u64, 2u64], t), None);
        assert_eq!(AckMsg::at_acker(ACK_ACK_STREAM, &values![1u64], t), None);

        let mut acked = AckMsg::Ack { root: 5, val: 0b01 };
        assert!(acked.merge_ack(5, 0b11));
        assert_eq!(acked, AckMsg::Ack { root: 5, val: 0b10 });
        assert!(!acked.merge_ack(6, 1), "another root");
        let mut once = AckMsg::Once { root: 5, val: 1 };
        assert!(!once.merge_ack(5, 1), "an idempotent ack stays as sent");
        let mut failed = AckMsg::Fail { root: 5 };
        assert!(!failed.merge_ack(5, 1), "not an ack");

        // To a user bolt subscribed to an acking stream, the tuple on the
        // sender's acking stream.
        let to = AckTo {
            dest: TaskId(3),
            source: t,
            stream: 7,
            msg: AckMsg::Ack { root: 5, val: 9 },
        };
        let tuple = to.into_tuple();
        assert_eq!((tuple.dest, tuple.source, tuple.stream), (TaskId(3), t, 7));
        assert_eq!(
            AckMsg::at_acker(ACK_ACK_STREAM, &tuple.values, t),
            Some(to.msg)
        );
        assert!(!tuple.message_id.is_tracked());
    }
    use squall_topology_api::{
        BoltOutput, ComponentId, Fields, MessageId, MetricUpdate, StreamMeta, TaskId, Values,
    };
    use std::sync::Arc;

    /// Records what the acker tells spouts: `(stream, root)`.
    #[derive(Default)]
    struct Told(Vec<(String, i64)>);

    impl BoltOutput for Told {
        fn emit(&mut self, stream: &str, _: &[&Tuple], values: Values, _: Option<TaskId>) {
            let root = values.first().and_then(|v| v.as_i64()).unwrap_or(-1);
            self.0.push((stream.to_owned(), root));
        }
        fn ack(&mut self, _: &Tuple) {}
        fn fail(&mut self, _: &Tuple) {}
        fn reset_timeout(&mut self, _: &Tuple) {}
        fn report_error(&mut self, e: &str) {
            panic!("acker reported {e}")
        }
        fn update_metric(&mut self, _: &str, _: MetricUpdate) {}
        fn last_targets(&self) -> &[TaskId] {
            &[]
        }
    }

    fn send(acker: &mut Acker, told: &mut Told, stream: &str, values: Values) {
        let meta = Arc::new(StreamMeta {
            component: ComponentId::from("spout"),
            stream: stream.into(),
            fields: Fields::new(["id", "val", "task"]),
        });
        let t = Tuple::new(meta, TaskId(1), values, MessageId::untracked(), None);
        acker.execute(&t, &mut OutputCollector::new(told));
    }

    #[test]
    fn an_ack_once_sent_twice_completes_its_tree_once() {
        let (mut acker, mut told) = (Acker::default(), Told::default());
        // Tree 7: two tuples with edges 0b01 and 0b10, acked by two bolts.
        send(&mut acker, &mut told, ACK_INIT_STREAM, values![7, 0b11, 1]);
        send(&mut acker, &mut told, ACK_ONCE_STREAM, values![7, 0b01]);
        send(&mut acker, &mut told, ACK_ONCE_STREAM, values![7, 0b01]);
        assert!(told.0.is_empty(), "a repeated ack did not undo the first");
        send(&mut acker, &mut told, ACK_ONCE_STREAM, values![7, 0b10]);
        assert_eq!(told.0, [(ACK_ACK_STREAM.to_owned(), 7)]);
        // Sent again after the tree completed: nothing more is told.
        send(&mut acker, &mut told, ACK_ONCE_STREAM, values![7, 0b10]);
        assert_eq!(told.0.len(), 1);
    }

    #[test]
    fn apply_says_whom_to_tell_what() {
        let mut acker = Acker::default();
        let spout = TaskId(3);
        let init = |root, val| AckMsg::Init {
            root,
            val,
            spout_task: spout,
        };
        // An ack may arrive before its tree's init.
        assert_eq!(acker.apply(AckMsg::Ack { root: 1, val: 5 }), None);
        assert_eq!(
            acker.apply(init(1, 5)),
            Some((spout, AckMsg::Complete { root: 1 }))
        );
        assert_eq!(acker.apply(init(2, 6)), None);
        assert_eq!(
            acker.apply(AckMsg::ResetTimeout { root: 2 }),
            Some((spout, AckMsg::ResetTimeout { root: 2 }))
        );
        assert_eq!(acker.apply(AckMsg::ResetTimeout { root: 9 }), None);
        assert_eq!(
            acker.apply(AckMsg::Fail { root: 2 }),
            Some((spout, AckMsg::Fail { root: 2 }))
        );
        // A failed tree is forgotten; a later ack starts an entry that
        // expires unless its init comes.
        assert_eq!(acker.apply(AckMsg::Ack { root: 2, val: 6 }), None);
        acker.rotate();
        acker.rotate();
        assert_eq!(acker.apply(init(2, 6)), None, "the ack expired");
    }

    #[test]
    fn an_acker_reports_a_malformed_tuple_by_stream_and_values() {
        assert_eq!(
            malformed(ACK_ACK_STREAM, &values!["x"]),
            r#"acker got a malformed tuple ["x"] on stream "__ack_ack""#
        );
    }

    #[test]
    fn a_plain_ack_sent_twice_undoes_itself() {
        let (mut acker, mut told) = (Acker::default(), Told::default());
        send(&mut acker, &mut told, ACK_INIT_STREAM, values![7, 0b11, 1]);
        send(&mut acker, &mut told, ACK_ACK_STREAM, values![7, 0b01]);
        send(&mut acker, &mut told, ACK_ACK_STREAM, values![7, 0b01]);
        send(&mut acker, &mut told, ACK_ACK_STREAM, values![7, 0b10]);
        assert!(told.0.is_empty(), "XOR acks are not idempotent");
    }

    #[test]
    fn ack_vals_accumulate_per_key_across_interleaving() {
        let mut a = AckVals::default();
        a.add(1, 0b001);
        a.add(2, 0b100);
        a.add(1, 0b010);
        assert_eq!(a.take(1), 0b011);
        assert_eq!(a.take(2), 0b100);
        assert_eq!(a.take(3), 0);
    }

    #[test]
    fn touched_ack_vals_survive_rotations() {
        let mut a = AckVals::default();
        a.add(1, 5);
        a.add(2, 6);
        for _ in 0..3 {
            a.rotate();
            a.touch(1);
        }
        assert_eq!(a.take(1), 5);
        assert_eq!(a.take(2), 0);
    }

    #[test]
    fn ack_vals_expire_after_two_rotations() {
        let mut a = AckVals::default();
        a.add(1, 5);
        a.rotate();
        a.rotate();
        assert_eq!(a.take(1), 0);
    }
}
