//! An executor's output side: one buffer per receiving executor, flushed as
//! a batch when full or when the executor goes idle. An executor never
//! waits for a full queue: the buffer holds on, the receiver is marked
//! backpressured (see [`crate::backpressure`]) and the spouts upstream of
//! it wait instead, so executors that feed each other cannot deadlock.

use crate::acking::AckMsg;
use crate::backpressure::Backpressure;
use crate::message::{Envelope, TupleMsg};
use crossbeam_channel::{Sender, TrySendError};
use squall_topology_api::{MessageId, TaskId};
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

/// Per-receiver output buffers of one executor.
pub struct Outbox {
    wiring: Arc<Wiring>,
    bufs: Vec<Vec<TupleMsg>>,
    dirty: Vec<usize>,
    batch_size: usize,
    congested: bool,
    /// Per executor index: whether its buffer is held (its queue was full).
    held: Vec<bool>,
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
            wiring,
            bufs: (0..n).map(|_| Vec::new()).collect(),
            dirty: Vec::new(),
            batch_size: batch_size.max(1),
            congested: false,
            held: vec![false; n],
            backpressure,
            in_flight,
        }
    }

    /// Records whether executor `e`'s buffer is held.
    fn hold(&mut self, e: usize, held: bool) {
        if self.held[e] != held {
            self.held[e] = held;
            self.backpressure.set_holding(e, held);
        }
    }

    fn buffer_for(&mut self, dest: TaskId) -> usize {
        let e = self.wiring.executor_of_task[dest.0 as usize] as usize;
        if self.bufs[e].is_empty() {
            self.dirty.push(e);
            if self.bufs[e].capacity() == 0 {
                self.bufs[e].reserve_exact(self.batch_size);
            }
        }
        e
    }

    /// Queues a tuple for its task; sends the batch once it is full (unless
    /// the receiver's queue was full: then at the next [`Outbox::flush`]).
    pub fn push(&mut self, msg: TupleMsg) {
        let e = self.buffer_for(msg.dest);
        self.push_to(e, msg);
    }

    /// Appends `msg` to executor `e`'s buffer (already marked dirty).
    fn push_to(&mut self, e: usize, msg: TupleMsg) {
        self.bufs[e].push(msg);
        // A held buffer is tried again at the next flush.
        if self.bufs[e].len() >= self.batch_size && !self.held[e] {
            self.flush_one(e);
        }
    }

    /// Queues ack-protocol message `msg` on stream index `stream` for
    /// `dest`. An [`AckMsg::Ack`] is XOR-merged into the previous message
    /// of the same batch when that is an ack for the same root on the same
    /// stream (see [`AckMsg::merge_ack`]).
    pub fn push_ack(&mut self, dest: TaskId, source: TaskId, stream: u32, msg: AckMsg) {
        let e = self.buffer_for(dest);
        if let AckMsg::Ack { root, val } = msg {
            if let Some(last) = self.bufs[e].last_mut() {
                if last.stream == stream
                    && last.dest == dest
                    && AckMsg::merge_ack(&mut last.values, root, val)
                {
                    return;
                }
            }
        }
        self.push_to(
            e,
            TupleMsg {
                dest,
                source,
                stream,
                values: msg.values(),
                message_id: MessageId::untracked(),
            },
        );
    }

    fn flush_one(&mut self, e: usize) {
        if self.bufs[e].is_empty() {
            return;
        }
        // A full buffer travels as it is; a partial one (an idle flush)
        // travels as an exact-size copy and the buffer is kept, so a queue
        // holds memory for the tuples it carries, not for whole batches.
        let batch = if self.bufs[e].len() * 2 >= self.batch_size {
            std::mem::replace(&mut self.bufs[e], Vec::with_capacity(self.batch_size))
        } else {
            self.bufs[e].drain(..).collect()
        };
        let queue = &self.wiring.queues[e];
        let n = batch.len() as i64;
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        match queue.try_send(Envelope::Tuples(batch)) {
            Ok(()) => self.hold(e, false),
            Err(TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(n, Ordering::AcqRel);
                self.hold(e, false);
            }
            Err(TrySendError::Full(Envelope::Tuples(mut batch))) => {
                self.in_flight.fetch_sub(n, Ordering::AcqRel);
                batch.append(&mut self.bufs[e]);
                self.bufs[e] = batch;
                self.congested = true;
                self.hold(e, true);
            }
            Err(TrySendError::Full(Envelope::Wake)) => {}
        }
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
        let bufs = &self.bufs;
        self.dirty.retain(|&e| !bufs[e].is_empty());
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

impl Drop for Outbox {
    /// Releases what it held, so spouts of a topology still running (a
    /// rebalance) do not wait on a buffer that is gone.
    fn drop(&mut self) {
        for e in 0..self.held.len() {
            self.hold(e, false);
        }
    }
}
