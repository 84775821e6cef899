//! An executor's output side: one buffer per receiving executor, flushed as
//! a batch when full or when the executor goes idle.

use crate::message::{Envelope, TupleMsg};
use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use squall_topology_api::{MessageId, TaskId, Value, Values};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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
}

/// How an outbox behaves when a receiving queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullQueue {
    /// Keep the batch and report congestion (spouts: never block).
    Hold,
    /// Wait until there is room or the worker stops (bolts, ackers).
    Wait,
}

/// Per-receiver output buffers of one executor.
pub struct Outbox {
    wiring: Arc<Wiring>,
    bufs: Vec<Vec<TupleMsg>>,
    dirty: Vec<usize>,
    batch_size: usize,
    mode: FullQueue,
    congested: bool,
    stop: Arc<AtomicBool>,
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
        mode: FullQueue,
        stop: Arc<AtomicBool>,
        in_flight: Arc<AtomicI64>,
    ) -> Self {
        let n = wiring.queues.len();
        Self {
            wiring,
            bufs: (0..n).map(|_| Vec::new()).collect(),
            dirty: Vec::new(),
            batch_size: batch_size.max(1),
            mode,
            congested: false,
            stop,
            in_flight,
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

    /// Queues a tuple for its task; sends the batch once it is full.
    pub fn push(&mut self, msg: TupleMsg) {
        let e = self.buffer_for(msg.dest);
        self.bufs[e].push(msg);
        if self.bufs[e].len() >= self.batch_size {
            self.flush_one(e);
        }
    }

    /// Queues an ack `[root, val]` on acking stream `stream` for `dest`.
    /// With `combine`, it is XOR-combined into the previous message of the
    /// same batch when that is an ack for the same root on the same stream
    /// (the XOR algorithm allows it; an idempotent ack's value must stay
    /// as sent, so it is never combined).
    pub fn push_ack(
        &mut self,
        dest: TaskId,
        source: TaskId,
        stream: u32,
        root: u64,
        val: u64,
        combine: bool,
    ) {
        let e = self.buffer_for(dest);
        if combine {
            if let Some(last) = self.bufs[e].last_mut() {
                if last.stream == stream && last.dest == dest {
                    if let [Value::Int(r), Value::Int(v)] = &mut last.values[..] {
                        if *r as u64 == root {
                            *v = (*v as u64 ^ val) as i64;
                            return;
                        }
                    }
                }
            }
        }
        let mut values = Values::new();
        values.push(root);
        values.push(val);
        self.push(TupleMsg {
            dest,
            source,
            stream,
            values,
            message_id: MessageId::untracked(),
        });
    }

    fn flush_one(&mut self, e: usize) {
        if self.bufs[e].is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.bufs[e], Vec::with_capacity(self.batch_size));
        let queue = &self.wiring.queues[e];
        let n = batch.len() as i64;
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        match self.mode {
            FullQueue::Hold => match queue.try_send(Envelope::Tuples(batch)) {
                Ok(()) => {}
                Err(TrySendError::Disconnected(_)) => {
                    self.in_flight.fetch_sub(n, Ordering::AcqRel);
                }
                Err(TrySendError::Full(Envelope::Tuples(mut batch))) => {
                    self.in_flight.fetch_sub(n, Ordering::AcqRel);
                    batch.append(&mut self.bufs[e]);
                    self.bufs[e] = batch;
                    self.congested = true;
                }
                Err(TrySendError::Full(Envelope::Wake)) => {}
            },
            FullQueue::Wait => {
                let mut env = Envelope::Tuples(batch);
                loop {
                    match queue.send_timeout(env, Duration::from_millis(50)) {
                        Ok(()) => break,
                        Err(SendTimeoutError::Disconnected(_)) => {
                            self.in_flight.fetch_sub(n, Ordering::AcqRel);
                            break;
                        }
                        Err(SendTimeoutError::Timeout(back)) => {
                            if self.stop.load(Ordering::Relaxed) {
                                self.in_flight.fetch_sub(n, Ordering::AcqRel);
                                break;
                            }
                            env = back;
                        }
                    }
                }
            }
        }
    }

    /// Sends every non-empty buffer. In [`FullQueue::Hold`] mode, buffers
    /// whose queue is full stay (see [`Outbox::is_congested`]).
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
    /// should stop producing (a spout stops calling `next_tuple`).
    pub fn is_congested(&self) -> bool {
        self.congested
    }

    /// Whether every buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }
}
