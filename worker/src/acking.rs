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

use crate::message::{
    ACK_ACK_STREAM, ACK_FAIL_STREAM, ACK_INIT_STREAM, ACK_ONCE_STREAM, ACK_RESET_TIMEOUT_STREAM,
};
use crate::rotating::RotatingMap;
use smallvec::SmallVec;
use squall_topology_api::{values, Bolt, OutputCollector, OutputFieldsDeclarer, TaskId, Tuple};

#[derive(Debug, Default)]
struct AckEntry {
    val: u64,
    spout_task: Option<TaskId>,
    failed: bool,
    /// Values applied from `__ack_once` (each applied once); a stateful
    /// task sends one per tree and checkpoint, so a few inline.
    once: SmallVec<[u64; 2]>,
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
    /// Tree entries held now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

fn root_of(t: &Tuple) -> Option<u64> {
    t.get_i64(0).ok().map(|r| r as u64)
}

impl Bolt for Acker {
    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            self.pending.rotate();
            return;
        }
        let Some(root) = root_of(tuple) else {
            out.report_error(&format!("acker got a malformed tuple {}", tuple.values()));
            return;
        };
        let stream = tuple.source_stream().as_str();
        if stream == ACK_RESET_TIMEOUT_STREAM {
            if self.pending.touch(root) {
                if let Some(task) = self.pending.get_mut(&root).and_then(|e| e.spout_task) {
                    out.emit_direct(task, ACK_RESET_TIMEOUT_STREAM, &[], values![root]);
                }
            }
            return;
        }
        let entry = self.pending.get_or_insert_with(root, AckEntry::default);
        match stream {
            ACK_INIT_STREAM => {
                entry.val ^= tuple.get_i64(1).unwrap_or(0) as u64;
                entry.spout_task = tuple.get_i64(2).ok().map(|t| TaskId(t as u32));
            }
            ACK_ACK_STREAM => entry.val ^= tuple.get_i64(1).unwrap_or(0) as u64,
            ACK_ONCE_STREAM => {
                let val = tuple.get_i64(1).unwrap_or(0) as u64;
                if !entry.once.contains(&val) {
                    entry.once.push(val);
                    entry.val ^= val;
                }
            }
            ACK_FAIL_STREAM => entry.failed = true,
            other => {
                out.report_error(&format!("acker got a tuple on unexpected stream {other:?}"));
                return;
            }
        }
        if let Some(task) = entry.spout_task {
            if entry.failed {
                self.pending.remove(&root);
                out.emit_direct(task, ACK_FAIL_STREAM, &[], values![root]);
            } else if entry.val == 0 {
                self.pending.remove(&root);
                out.emit_direct(task, ACK_ACK_STREAM, &[], values![root]);
            }
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare_direct_stream(ACK_ACK_STREAM, ["id"]);
        d.declare_direct_stream(ACK_FAIL_STREAM, ["id"]);
        d.declare_direct_stream(ACK_RESET_TIMEOUT_STREAM, ["id"]);
    }
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
