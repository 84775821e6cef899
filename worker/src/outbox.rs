//! An executor's output side: one buffer per receiving executor, flushed as
//! a batch when full or when the executor goes idle. A send never blocks on
//! a full queue: the buffer holds on and the executor decides (see
//! [`crate::backpressure`]): a spout, or a bolt off any cycle of bolts,
//! takes no new work and waits for room ([`Outbox::wait_for_room`]); a
//! bolt on a cycle keeps going, and its held receivers are marked
//! backpressured so that the spouts upstream wait instead.

use crate::acking::{AckMsg, AckTo};
use crate::backpressure::Backpressure;
use crate::message::{Batched, Encoded, Envelope, TupleMsg};
use crossbeam_channel::{Receiver, Select, Sender, TrySendError};
use squall_topology_api::{MessageId, TaskId, Values};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the tasks of a topology are: each task's executor and each
/// executor's inbound queue. Shared by every executor of a worker.
#[derive(Debug)]
pub struct Wiring {
    /// Inbound queue of each executor, by executor index.
    pub queues: Vec<Sender<Envelope>>,
    /// Executor index of each task, by task id (index 0 unused).
    pub executor_of_task: Vec<u32>,
    /// Whether each executor, by index, runs in another worker: its queue
    /// is the transfer queue, and batches for it leave encoded
    /// ([`Envelope::Encoded`]).
    pub remote: Vec<bool>,
    /// Each executor's capacity over its last metrics window (the share
    /// of the window it spent executing), in thousandths; written by the
    /// executor, read by locality-aware shuffles.
    pub capacity: Vec<AtomicU32>,
}

impl Wiring {
    /// The wiring of executors with inbound queues `queues` (by executor
    /// index), tasks placed by `executor_of_task`, and `remote` telling
    /// which executors run in another worker; every capacity starts at 0.
    pub fn new(
        queues: Vec<Sender<Envelope>>,
        executor_of_task: Vec<u32>,
        remote: Vec<bool>,
    ) -> Self {
        let capacity = queues.iter().map(|_| AtomicU32::new(0)).collect();
        Self {
            queues,
            executor_of_task,
            remote,
            capacity,
        }
    }

    /// Executor `e`'s capacity over its last metrics window (0 to 1).
    pub fn capacity(&self, e: usize) -> f64 {
        self.capacity
            .get(e)
            .map_or(0.0, |c| f64::from(c.load(Ordering::Relaxed)) / 1000.0)
    }

    /// Records executor `e`'s capacity (0 to 1) over its last window.
    pub fn set_capacity(&self, e: usize, capacity: f64) {
        if let Some(c) = self.capacity.get(e) {
            c.store(
                (capacity.clamp(0.0, 1.0) * 1000.0) as u32,
                Ordering::Relaxed,
            );
        }
    }
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
    /// Whether the executor waits for room instead of taking input while
    /// a receiver is held (then held receivers are not marked).
    waits: bool,
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
            waits: false,
            backpressure,
            in_flight,
        }
    }

    /// Sets whether the executor waits for room instead of taking input
    /// while a receiver is held (set before the first push; see
    /// [`Outbox::must_wait`]). Such an executor's held receivers are not
    /// marked backpressured: its own queue fills, and whoever feeds it is
    /// held in turn. Otherwise (the default) they are.
    pub fn set_waits(&mut self, waits: bool) {
        debug_assert!(self.slots.iter().all(|s| !s.held));
        self.waits = waits;
    }

    /// Whether an executor that waits for room must take no input now: a
    /// receiver's queue was full at the last flush.
    pub fn must_wait(&self) -> bool {
        self.waits && self.congested
    }

    /// Records whether executor `e`'s buffer is held.
    fn hold(&mut self, e: usize, held: bool) {
        if self.slots[e].held != held {
            self.slots[e].held = held;
            if !self.waits {
                self.backpressure.set_holding(e, held);
            }
        }
    }

    /// The executor of task `dest`, marked dirty.
    #[inline]
    fn buffer_for(&mut self, dest: TaskId) -> usize {
        let e = self.executor_of_task[dest.0 as usize] as usize;
        if self.slots[e].is_empty() {
            self.dirty.push(e);
        }
        e
    }

    /// Queues a tuple for its task; sends the batch once it is full (unless
    /// the receiver's queue was full: then at the next [`Outbox::flush`]).
    /// Always inlined into the emits, which build the tuple just before.
    #[inline(always)]
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

    /// Queues `values`, emitted by task `source` on stream index `stream`,
    /// for each task of `targets`, in order: moved to the last, cloned for
    /// the others; each with the id `message_id` makes for it (called once
    /// per target, in order).
    #[inline]
    pub fn push_each(
        &mut self,
        targets: &[TaskId],
        source: TaskId,
        stream: u32,
        values: Values,
        mut message_id: impl FnMut() -> MessageId,
    ) {
        let Some((&last, rest)) = targets.split_last() else {
            return;
        };
        for &dest in rest {
            self.push(TupleMsg {
                dest,
                source,
                stream,
                values: values.clone(),
                message_id: message_id(),
            });
        }
        self.push(TupleMsg {
            dest: last,
            source,
            stream,
            values,
            message_id: message_id(),
        });
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
    #[inline(never)]
    fn flush_one(&mut self, e: usize) {
        let slot = &mut self.slots[e];
        if slot.is_empty() {
            return;
        }
        let queue = &self.wiring.queues[e];
        let (size, in_flight) = (self.batch_size, &*self.in_flight);
        let full = if self.wiring.remote[e] {
            send_encoded(slot, e, size, queue, in_flight)
        } else {
            send(&mut slot.tuples, size, queue, in_flight)
                | send(&mut slot.acks, size, queue, in_flight)
        };
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

    /// Blocks until the queue of a held receiver has room, `inbound` (when
    /// given) has a message, or `timeout` passes; at once when there is
    /// nothing to wait for. The caller flushes next.
    pub fn wait_for_room(&self, inbound: Option<&Receiver<Envelope>>, timeout: Duration) {
        let mut select = Select::new();
        let mut waits = false;
        for &e in &self.dirty {
            if self.slots[e].held {
                select.send(&self.wiring.queues[e]);
                waits = true;
            }
        }
        if let Some(inbound) = inbound {
            select.recv(inbound);
            waits = true;
        }
        if waits {
            let _ = select.ready_timeout(timeout);
        }
    }
}

/// What is buffered for one receiving executor.
#[derive(Default)]
struct Slot {
    tuples: Vec<TupleMsg>,
    /// Ack-protocol messages, sent as batches of their own.
    acks: Vec<AckTo>,
    /// For an executor of another worker: batches encoded and not yet
    /// taken by the transfer queue, in order.
    encoded: VecDeque<Envelope>,
    /// Whether the buffers are held (the receiver's queue was full).
    held: bool,
}

impl Slot {
    /// Whether nothing is buffered.
    fn is_empty(&self) -> bool {
        self.tuples.is_empty() && self.acks.is_empty() && self.encoded.is_empty()
    }
}

/// Sends what `slot` holds for executor `executor` of another worker to
/// the transfer `queue`, counted in `in_flight`: its tuples, then its
/// acks, encoded here in batches of at most `batch_size` (the buffers are
/// kept for the next ones), behind the batches encoded before and not yet
/// taken. Returns whether the queue was full: what did not leave stays,
/// encoded, in order.
fn send_encoded(
    slot: &mut Slot,
    executor: usize,
    batch_size: usize,
    queue: &Sender<Envelope>,
    in_flight: &AtomicI64,
) -> bool {
    for chunk in slot.tuples.chunks(batch_size) {
        let batch = Encoded::tuples(chunk, executor);
        slot.encoded.push_back(Envelope::Encoded(batch));
    }
    slot.tuples.clear();
    for chunk in slot.acks.chunks(batch_size) {
        let batch = Encoded::acks(chunk, executor);
        slot.encoded.push_back(Envelope::Encoded(batch));
    }
    slot.acks.clear();
    while let Some(envelope) = slot.encoded.pop_front() {
        let n = envelope.len() as i64;
        in_flight.fetch_add(n, Ordering::AcqRel);
        match queue.try_send(envelope) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => {
                in_flight.fetch_sub(n, Ordering::AcqRel);
            }
            Err(TrySendError::Full(envelope)) => {
                in_flight.fetch_sub(n, Ordering::AcqRel);
                slot.encoded.push_front(envelope);
                return true;
            }
        }
    }
    false
}

/// Sends `buf` to `queue`, counted in `in_flight`: as one envelope, or as
/// envelopes of `batch_size` when it grew past that while held, so that a
/// queue holds at most its capacity times `batch_size` messages. A full
/// buffer travels as it is; a partial one (an idle flush) travels as an
/// exact-size copy and the buffer is kept, so a queue holds memory for the
/// messages it carries, not for whole batches. Returns whether the queue
/// was full: what did not leave stays in `buf`, in order.
fn send<T: Batched>(
    buf: &mut Vec<T>,
    batch_size: usize,
    queue: &Sender<Envelope>,
    in_flight: &AtomicI64,
) -> bool {
    if buf.len() > batch_size {
        let mut rest = std::mem::take(buf).into_iter();
        loop {
            let batch: Vec<T> = rest.by_ref().take(batch_size).collect();
            if batch.is_empty() {
                return false;
            }
            if let Err(batch) = try_send(batch, queue, in_flight) {
                *buf = batch;
                buf.extend(rest);
                return true;
            }
        }
    }
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
    match try_send(batch, queue, in_flight) {
        Ok(()) => false,
        Err(batch) => {
            // Nothing was added since the buffer was emptied above.
            *buf = batch;
            true
        }
    }
}

/// Sends `batch` to `queue` as one envelope, counted in `in_flight`; gives
/// it back when the queue is full (dropped when the receiver is gone).
fn try_send<T: Batched>(
    batch: Vec<T>,
    queue: &Sender<Envelope>,
    in_flight: &AtomicI64,
) -> Result<(), Vec<T>> {
    let n = batch.len() as i64;
    in_flight.fetch_add(n, Ordering::AcqRel);
    match queue.try_send(T::wrap(batch)) {
        Ok(()) => Ok(()),
        Err(TrySendError::Disconnected(_)) => {
            in_flight.fetch_sub(n, Ordering::AcqRel);
            Ok(())
        }
        Err(TrySendError::Full(envelope)) => {
            in_flight.fetch_sub(n, Ordering::AcqRel);
            Err(T::unwrap(envelope))
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
        outbox_to(capacity, false)
    }

    /// As [`outbox`], executor 1 in another worker when `remote` (its
    /// queue standing for the transfer queue).
    fn outbox_to(
        capacity: usize,
        remote: bool,
    ) -> (
        Outbox,
        crossbeam_channel::Receiver<Envelope>,
        Arc<AtomicI64>,
    ) {
        let (q0, _) = crossbeam_channel::unbounded();
        let (q1, r1) = crossbeam_channel::bounded(capacity);
        let wiring = Arc::new(Wiring::new(
            vec![q0, q1],
            vec![0, 0, 1, 1],
            vec![false, remote],
        ));
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
    fn a_held_buffer_leaves_in_batches_in_order_as_room_allows() {
        let (mut out, rx, in_flight) = outbox(2);
        let wanted = |n: u64| Values::from_iter([squall_topology_api::Value::from(n)]);
        let numbered = |n: u64| TupleMsg {
            values: wanted(n),
            ..tuple(2)
        };
        // 2 full batches fill the queue; the next 7 tuples are held.
        (0..15).for_each(|n| out.push(numbered(n)));
        assert!(out.is_congested());
        let room = std::time::Duration::from_millis(1);
        out.wait_for_room(None, room);
        assert_eq!(rx.len(), 2, "no room: the wait timed out");
        let mut seen = Vec::new();
        while !out.is_empty() {
            for env in rx.try_iter() {
                let Envelope::Tuples(batch) = env else {
                    panic!("tuples only");
                };
                assert!(batch.len() <= 4, "a held buffer leaves in batches");
                seen.extend(batch.into_iter().map(|t| t.values));
            }
            out.wait_for_room(None, room);
            out.flush();
        }
        seen.extend(rx.try_iter().flat_map(|env| match env {
            Envelope::Tuples(batch) => batch.into_iter().map(|t| t.values).collect(),
            _ => Vec::new(),
        }));
        assert_eq!(seen, (0..15).map(wanted).collect::<Vec<_>>());
        assert_eq!(in_flight.load(Ordering::Acquire), 15);
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

    #[test]
    fn batches_for_another_worker_leave_encoded_in_order_as_room_allows() {
        let (mut out, rx, in_flight) = outbox_to(2, true);
        let wanted = |n: u64| Values::from_iter([squall_topology_api::Value::from(n)]);
        // 2 full batches fill the queue; 5 more tuples and an ack are held.
        (0..13).for_each(|n| {
            out.push(TupleMsg {
                values: wanted(n),
                ..tuple(3)
            })
        });
        out.push_ack(TaskId(2), TaskId(1), 5, AckMsg::Fail { root: 9 });
        out.flush();
        assert!(out.is_congested());
        let (mut seen, mut acks) = (Vec::new(), Vec::new());
        let mut take = |env: Envelope| {
            let Envelope::Encoded(batch) = env else {
                panic!("encoded batches only");
            };
            assert_eq!(batch.executor, 1);
            assert!(batch.len <= 4, "encoded in batches");
            let mut n = 0;
            crate::wire::decode_each(&batch.bytes, |m| {
                n += 1;
                match m {
                    crate::wire::Message::Tuple(t) => seen.push((t.dest, t.values)),
                    crate::wire::Message::Ack(a) => acks.push((a.dest, a.msg)),
                }
            })
            .unwrap();
            assert_eq!(n, batch.len);
        };
        while !out.is_empty() {
            rx.try_iter().for_each(&mut take);
            out.flush();
        }
        rx.try_iter().for_each(&mut take);
        let sent: Vec<_> = (0..13).map(|n| (TaskId(3), wanted(n))).collect();
        assert_eq!(seen, sent);
        assert_eq!(acks, [(TaskId(2), AckMsg::Fail { root: 9 })]);
        assert_eq!(in_flight.load(Ordering::Acquire), 14);
    }
}
