//! An executor's output side: one buffer per receiving executor, flushed as
//! a batch when full or when the executor goes idle. An executor never
//! waits for a full queue: the buffer holds on, the receiver is marked
//! backpressured (see [`crate::backpressure`]) and the spouts upstream of
//! it wait instead, so executors that feed each other cannot deadlock.

use crate::acking::{AckMsg, AckTo};
use crate::backpressure::Backpressure;
use crate::message::{Batched, Envelope, TupleMsg};
use crossbeam_channel::{Sender, TrySendError};
use squall_topology_api::TaskId;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where the tasks of a topology are: each task's executor and each
/// executor's inbound queue. Shared by every executor of a worker.
#[derive(Debug)]
pub struct Wiring {
    /// Inbound queue of each executor, by executor index.
    pub queues: Vec<Sender<Envelope>>,
    /// Executor index of each task, by task id (index 0 unused).
    pub executor_of_task: Vec<u32>,
}

/// Per-receiver output buffers of one executor: tuples, and ack-protocol
/// messages in their compact form, each sent as its own batch.
pub struct Outbox {
    wiring: Arc<Wiring>,
    /// This outbox's own copy of [`Wiring::executor_of_task`], read on
    /// every push.
    executor_of_task: Box<[u32]>,
    /// Per executor index, its buffers: one cache line reached per push.
    slots: Vec<Slot>,
    /// Executors with something buffered.
    dirty: Vec<usize>,
    batch_size: usize,
    congested: bool,
    backpressure: Arc<Backpressure>,
    in_flight: Arc<AtomicI64>,
}

impl Outbox {
    /// An outbox sending over `wiring` in batches of `batch_size` tuples.
    /// Every batch is added to `in_flight` before it is sent; receivers
    /// subtract what they processed once their own outputs are sent, so
    /// `in_flight` is zero only when the topology is quiet.
    pub fn new(
        wiring: Arc<Wiring>,
        batch_size: usize,
        backpressure: Arc<Backpressure>,
        in_flight: Arc<AtomicI64>,
    ) -> Self {
        let n = wiring.queues.len();
        Self {
            executor_of_task: wiring.executor_of_task.clone().into_boxed_slice(),
            wiring,
            slots: (0..n).map(|_| Slot::default()).collect(),
            dirty: Vec::new(),
            batch_size: batch_size.max(1),
            congested: false,
            backpressure,
            in_flight,
        }
    }

    /// Records whether executor `e`'s buffer is held.
    fn hold(&mut self, e: usize, held: bool) {
        if self.slots[e].held != held {
            self.slots[e].held = held;
            self.backpressure.set_holding(e, held);
        }
    }

    /// The executor of task `dest`, marked dirty.
    fn buffer_for(&mut self, dest: TaskId) -> usize {
        let e = self.executor_of_task[dest.0 as usize] as usize;
        if self.slots[e].is_empty() {
            self.dirty.push(e);
        }
        e
    }

    /// Queues a tuple for its task; sends the batch once it is full (unless
    /// the receiver's queue was full: then at the next [`Outbox::flush`]).
    pub fn push(&mut self, msg: TupleMsg) {
        let e = self.buffer_for(msg.dest);
        let slot = &mut self.slots[e];
        let buf = &mut slot.tuples;
        if buf.capacity() == 0 {
            buf.reserve_exact(self.batch_size);
        }
        buf.push(msg);
        // A held buffer is tried again at the next flush.
        if buf.len() >= self.batch_size && !slot.held {
            self.flush_one(e);
        }
    }

    /// Queues ack-protocol message `msg` from `source` on its stream index
    /// `stream` for `dest`. An [`AckMsg::Ack`] is XOR-merged into the
    /// previous ack of the batch when that is an ack for the same root and
    /// task on the same stream (see [`AckMsg::merge_ack`]).
    pub fn push_ack(&mut self, dest: TaskId, source: TaskId, stream: u32, msg: AckMsg) {
        let e = self.buffer_for(dest);
        let slot = &mut self.slots[e];
        let buf = &mut slot.acks;
        if let (AckMsg::Ack { root, val }, Some(last)) = (msg, buf.last_mut()) {
            if last.stream == stream && last.dest == dest && last.msg.merge_ack(root, val) {
                return;
            }
        }
        if buf.capacity() == 0 {
            buf.reserve_exact(self.batch_size);
        }
        buf.push(AckTo {
            dest,
            source,
            stream,
            msg,
        });
        if buf.len() >= self.batch_size && !slot.held {
            self.flush_one(e);
        }
    }

    /// Sends executor `e`'s buffers; a buffer whose queue is full stays,
    /// and `e` is held.
    fn flush_one(&mut self, e: usize) {
        let slot = &mut self.slots[e];
        if slot.is_empty() {
            return;
        }
        let queue = &self.wiring.queues[e];
        let (size, in_flight) = (self.batch_size, &*self.in_flight);
        let full = send(&mut slot.tuples, size, queue, in_flight)
            | send(&mut slot.acks, size, queue, in_flight);
        if full {
            self.congested = true;
        }
        self.hold(e, full);
    }

    /// Sends every non-empty buffer; buffers whose queue is full stay (see
    /// [`Outbox::is_congested`]).
    pub fn flush(&mut self) {
        self.congested = false;
        let dirty = std::mem::take(&mut self.dirty);
        for &e in &dirty {
            self.flush_one(e);
        }
        self.dirty = dirty;
        let slots = &self.slots;
        self.dirty.retain(|&e| !slots[e].is_empty());
    }

    /// Whether a receiving queue was full at the last flush, so the holder
    /// should stop producing (a spout stops calling `next_tuple`) and
    /// flush again soon.
    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// Whether every buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }
}

/// What is buffered for one receiving executor.
#[derive(Default)]
struct Slot {
    tuples: Vec<TupleMsg>,
    /// Ack-protocol messages, sent as batches of their own.
    acks: Vec<AckTo>,
    /// Whether the buffers are held (the receiver's queue was full).
    held: bool,
}

impl Slot {
    /// Whether nothing is buffered.
    fn is_empty(&self) -> bool {
        self.tuples.is_empty() && self.acks.is_empty()
    }
}

/// Sends `buf` to `queue` as one envelope, counted in
/// `in_flight`. A full buffer travels as it is; a partial one (an idle
/// flush) travels as an exact-size copy and the buffer is kept, so a queue
/// holds memory for the messages it carries, not for whole batches.
/// Returns whether the queue was full: the messages then stay in `buf`.
fn send<T: Batched>(
    buf: &mut Vec<T>,
    batch_size: usize,
    queue: &Sender<Envelope>,
    in_flight: &AtomicI64,
) -> bool {
    if buf.is_empty() {
        return false;
    }
    let batch = if buf.len() * 2 >= batch_size {
        std::mem::replace(buf, Vec::with_capacity(batch_size))
    } else {
        let mut copy = Vec::with_capacity(buf.len());
        copy.append(buf);
        copy
    };
    let n = batch.len() as i64;
    in_flight.fetch_add(n, Ordering::AcqRel);
    match queue.try_send(T::wrap(batch)) {
        Ok(()) => false,
        Err(TrySendError::Disconnected(_)) => {
            in_flight.fetch_sub(n, Ordering::AcqRel);
            false
        }
        Err(TrySendError::Full(envelope)) => {
            in_flight.fetch_sub(n, Ordering::AcqRel);
            // Nothing was added since the buffer was emptied above.
            *buf = T::unwrap(envelope);
            true
        }
    }
}

impl Drop for Outbox {
    /// Releases what it held, so spouts of a topology still running (a
    /// rebalance) do not wait on a buffer that is gone.
    fn drop(&mut self) {
        for e in 0..self.slots.len() {
            self.hold(e, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_topology_api::{MessageId, Values};

    /// An outbox over two executors: task 1 on executor 0, tasks 2 and 3
    /// on executor 1, whose queue holds `capacity` envelopes.
    fn outbox(
        capacity: usize,
    ) -> (
        Outbox,
        crossbeam_channel::Receiver<Envelope>,
        Arc<AtomicI64>,
    ) {
        let (q0, _) = crossbeam_channel::unbounded();
        let (q1, r1) = crossbeam_channel::bounded(capacity);
        let wiring = Arc::new(Wiring {
            queues: vec![q0, q1],
            executor_of_task: vec![0, 0, 1, 1],
        });
        let in_flight = Arc::new(AtomicI64::new(0));
        let bp = Arc::new(Backpressure::new(2, 3));
        (Outbox::new(wiring, 4, bp, in_flight.clone()), r1, in_flight)
    }

    fn tuple(dest: u32) -> TupleMsg {
        TupleMsg {
            dest: TaskId(dest),
            source: TaskId(1),
            stream: 0,
            values: Values::new(),
            message_id: MessageId::untracked(),
        }
    }

    #[test]
    fn acks_travel_compact_in_their_own_batch_merged_per_root_and_task() {
        let (mut out, rx, in_flight) = outbox(8);
        let ack = |root, val| AckMsg::Ack { root, val };
        out.push(tuple(2));
        out.push_ack(TaskId(2), TaskId(1), 5, ack(7, 0b01));
        out.push_ack(TaskId(2), TaskId(1), 5, ack(7, 0b10));
        out.push_ack(TaskId(3), TaskId(1), 5, ack(7, 0b100));
        out.push_ack(TaskId(2), TaskId(1), 6, AckMsg::Once { root: 7, val: 1 });
        out.push_ack(TaskId(2), TaskId(1), 6, AckMsg::Once { root: 7, val: 1 });
        assert!(!out.is_empty());
        out.flush();
        assert!(out.is_empty());
        let Ok(Envelope::Tuples(tuples)) = rx.try_recv() else {
            panic!("the tuples first");
        };
        assert_eq!(tuples.len(), 1);
        let Ok(Envelope::Acks(acks)) = rx.try_recv() else {
            panic!("then the acks");
        };
        let msgs: Vec<(u32, AckMsg)> = acks.iter().map(|a| (a.dest.0, a.msg)).collect();
        assert_eq!(
            msgs,
            vec![
                (2, ack(7, 0b11)),
                (3, ack(7, 0b100)),
                (2, AckMsg::Once { root: 7, val: 1 }),
                (2, AckMsg::Once { root: 7, val: 1 }),
            ],
            "consecutive plain acks of one root and task merge; idempotent ones never"
        );
        assert_eq!(in_flight.load(Ordering::Acquire), 5);
    }

    #[test]
    fn acks_to_a_full_queue_stay_and_the_receiver_is_held() {
        let (mut out, rx, in_flight) = outbox(1);
        out.push(tuple(2));
        out.push_ack(TaskId(2), TaskId(1), 5, AckMsg::Fail { root: 9 });
        out.flush();
        assert!(out.is_congested(), "the acks found the queue full");
        assert!(!out.is_empty());
        assert!(matches!(rx.try_recv(), Ok(Envelope::Tuples(_))));
        assert_eq!(in_flight.load(Ordering::Acquire), 1);
        out.flush();
        assert!(!out.is_congested());
        assert!(out.is_empty());
        let Ok(Envelope::Acks(acks)) = rx.try_recv() else {
            panic!("the held acks, sent once there was room");
        };
        assert_eq!(acks[0].msg, AckMsg::Fail { root: 9 });
        assert_eq!(in_flight.load(Ordering::Acquire), 2);
    }
}
