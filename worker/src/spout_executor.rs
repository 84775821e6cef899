//! A spout executor: one thread running one or more tasks of a spout.
//!
//! The loop never blocks on output: when a downstream queue is full the
//! batch stays in the outbox and `next_tuple` is not called until it
//! drains; the loop waits for room or an ack, and acks and fails keep
//! being processed (no deadlock, bounded memory).
//! `topology.max.spout.pending` bounds tracked tuples per task.

use crate::acking::{AckMsg, AckStreams, AckTo};
use crate::backpressure::{downstream_of, Downstream};
use crate::inline_acker::InlineAcker;
use crate::message::Envelope;
use crate::rotating::RotatingMap;
use crate::routing::Router;
use crate::shared::{task_context, Output, Shared};
use crate::stats::{Publisher, Sampler, TaskStats};
use crate::wire::Message;
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rand::Rng;
use squall_topology_api::{
    ComponentId, FailReason, MessageId, MetricUpdate, Spout, SpoutOutput, SpoutOutputCollector,
    TaskId, Value, Values,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buckets of the spout's pending map: rotating every timeout / 3 expires a
/// tuple between 1 and 4/3 of the message timeout after its emit.
const PENDING_BUCKETS: usize = 4;
/// Most `next_tuple` calls per task between two looks at the inbound queue.
const BURST: usize = 64;
/// How long an idle spout waits for acks before asking again, like Storm's
/// sleep spout-wait strategy.
const IDLE_WAIT: Duration = Duration::from_millis(1);

struct Pending {
    msg_id: Value,
    /// For a tuple sampled for the complete latency (one in
    /// `topology.stats.sample.rate`, as Storm's spout executor samples it):
    /// when its burst of `next_tuple` calls began (the topology clock, one
    /// read per burst, not per tuple).
    emitted: Option<Instant>,
}

struct TaskState {
    id: TaskId,
    stats: TaskStats,
    pending: RotatingMap<u64, Pending>,
    /// Picks the tuples whose complete latency is measured.
    sampler: Sampler,
    /// Tuples acked without tracking (no ackers, or no receiving task).
    acked_untracked: Vec<Value>,
    emits: u64,
}

struct SpoutTask {
    spout: Box<dyn Spout>,
    state: TaskState,
}

struct Emitter<'a> {
    shared: &'a Shared,
    out: &'a mut Output,
    task: &'a mut TaskState,
    /// This spout's acking streams.
    streams: AckStreams,
    /// When this burst of `next_tuple` calls began (the topology clock).
    now: Instant,
    /// The acker tasks this executor runs, if any.
    acker: Option<&'a mut InlineAcker>,
}

impl SpoutOutput for Emitter<'_> {
    fn emit(
        &mut self,
        stream: &str,
        values: Values,
        msg_id: Option<Value>,
        direct: Option<TaskId>,
    ) {
        self.task.emits += 1;
        let Some(index) = self.out.route(
            self.shared,
            self.task.id,
            &mut self.task.stats,
            stream,
            &values,
            direct,
        ) else {
            return;
        };
        let Output {
            targets,
            outbox,
            rng,
            ..
        } = &mut *self.out;
        let n = targets.len();
        let tracked = msg_id.is_some() && n > 0 && !self.shared.ackers.is_empty();
        let root: u64 = match (&self.acker, tracked) {
            (_, false) => 0,
            (Some(acker), true) => acker.new_root(self.shared, rng),
            (None, true) => self.shared.new_root(rng),
        };
        let mut xor = 0u64;
        outbox.push_each(targets, self.task.id, index, values, || {
            if tracked {
                let edge: u64 = rng.random();
                xor ^= edge;
                MessageId::single(root, edge)
            } else {
                MessageId::untracked()
            }
        });
        let Some(msg_id) = msg_id else { return };
        if !tracked {
            self.task.acked_untracked.push(msg_id);
            return;
        }
        self.task.pending.insert(
            root,
            Pending {
                msg_id,
                emitted: self.task.sampler.hit().then_some(self.now),
            },
        );
        let init = AckMsg::Init {
            root,
            val: xor,
            spout_task: self.task.id,
        };
        let stream = self.streams.index(&init);
        let acker = self.shared.acker_for(root);
        match &mut self.acker {
            Some(inline) if inline.hosts(acker) => inline.apply(self.shared, acker, stream, init),
            _ => self.out.outbox.push_ack(acker, self.task.id, stream, init),
        }
    }

    fn report_error(&mut self, error: &str) {
        self.task.stats.report_error(error.to_owned());
    }

    fn last_targets(&self) -> &[TaskId] {
        &self.out.targets
    }

    fn update_metric(&mut self, name: &str, update: MetricUpdate) {
        self.task.stats.update_metric(name, update);
    }
}

/// Runs one spout executor until the topology stops.
pub struct SpoutExecutor {
    shared: Arc<Shared>,
    first_task: u32,
    tasks: Vec<SpoutTask>,
    out: Output,
    inbound: Receiver<Envelope>,
    publisher: Publisher,
    /// This spout's acking streams (`__ack_init`).
    streams: AckStreams,
    max_pending: Option<usize>,
    /// What this spout's tuples can reach: it waits while some of it is
    /// backpressured.
    downstream: Downstream,
    active: bool,
    rotate_every: Duration,
    next_rotate: Instant,
    /// Acker tasks run in this thread (`topology.acker.spout.thread`).
    acker: Option<InlineAcker>,
}

impl SpoutExecutor {
    /// Makes the executor for `tasks` of `component`, creating each task's
    /// spout with `factory` and calling `open`; it also runs `acker`.
    pub fn new(
        shared: Arc<Shared>,
        component: ComponentId,
        tasks: std::ops::Range<u32>,
        factory: &(dyn Fn() -> Box<dyn Spout> + Send + Sync),
        inbound: Receiver<Envelope>,
        router: Router,
        acker: Option<InlineAcker>,
    ) -> Self {
        let spec = &shared.spec.components[&component];
        let out = Output::new(&shared, component.clone(), router);
        let stream_names = out.stream_names();
        let tasks: Vec<SpoutTask> = tasks
            .map(|t| {
                let mut spout = factory();
                let context = task_context(&shared, t);
                spout.open(&context);
                SpoutTask {
                    spout,
                    state: TaskState {
                        id: TaskId(t),
                        stats: TaskStats::new(component.clone(), stream_names.clone())
                            .with_registry(context.metric_registry().clone()),
                        pending: RotatingMap::new(PENDING_BUCKETS),
                        sampler: Sampler::new(shared.config.stats_sample_rate),
                        acked_untracked: Vec::new(),
                        emits: 0,
                    },
                }
            })
            .collect();
        let rotate_every =
            Duration::from_secs(shared.config.message_timeout_secs) / (PENDING_BUCKETS as u32 - 1);
        let executor = tasks.first().map_or(0, |t| {
            shared.wiring.executor_of_task[t.state.id.0 as usize] as usize
        });
        Self {
            streams: AckStreams::of(&shared.streams, component.as_str()),
            publisher: Publisher::new(shared.board.clone())
                .with_backpressure(shared.backpressure.clone(), executor),
            max_pending: spec
                .config
                .max_spout_pending
                .or(shared.config.max_spout_pending),
            first_task: tasks.first().map_or(0, |t| t.state.id.0),
            downstream: downstream_of(&shared.spec, &shared.layout, component.as_str()),
            active: false,
            next_rotate: shared.clock.now() + rotate_every,
            rotate_every,
            acker,
            shared,
            tasks,
            out,
            inbound,
        }
    }

    /// Handles acker messages; returns how many were processed.
    /// `now` is the topology clock's time, read after the envelope arrived.
    fn handle(&mut self, env: Envelope, now: Instant) -> i64 {
        match env {
            Envelope::Acks(batch) => {
                let n = batch.len() as i64;
                for a in batch {
                    self.take_ack(a, now);
                }
                self.apply_told(now);
                n
            }
            Envelope::Encoded(batch) => {
                batch.for_each(|m| match m {
                    Message::Ack(a) => self.take_ack(a, now),
                    Message::Tuple(_) => {}
                });
                self.apply_told(now);
                batch.len as i64
            }
            // Ack messages, from this worker or another, travel as acks:
            // nothing addressed to a spout or an acker is a tuple.
            Envelope::Tuples(batch) => batch.len() as i64,
            Envelope::Wake => 0,
        }
    }

    /// Takes one ack message: the acker run here applies those for its
    /// task, the spout task the rest.
    fn take_ack(&mut self, a: AckTo, now: Instant) {
        match &mut self.acker {
            Some(acker) if acker.hosts(a.dest) => {
                acker.apply(&self.shared, a.dest, a.stream, a.msg)
            }
            _ => self.on_ack(a.dest, a.msg, now),
        }
    }

    /// Applies what the acker run here told this executor's spout tasks.
    fn apply_told(&mut self, now: Instant) {
        let Some(acker) = &mut self.acker else {
            return;
        };
        let told = acker.take_told();
        if told.is_empty() {
            return acker.return_told(told);
        }
        for &(dest, msg) in &told {
            self.on_ack(dest, msg, now);
        }
        if let Some(acker) = &mut self.acker {
            acker.return_told(told);
        }
    }

    /// Sends what is buffered, the acker's output included.
    fn flush(&mut self) {
        self.out.outbox.flush();
        if let Some(acker) = &mut self.acker {
            acker.out.outbox.flush();
        }
    }

    /// Whether nothing is buffered.
    fn outboxes_empty(&self) -> bool {
        self.out.outbox.is_empty() && self.acker.as_ref().is_none_or(|a| a.out.outbox.is_empty())
    }

    /// Publishes the tasks' metrics (the acker's with them) if due.
    fn publish(&mut self, now: Instant, force: bool) {
        let spouts = self
            .tasks
            .iter_mut()
            .map(|t| (t.state.id, &mut t.state.stats));
        match &mut self.acker {
            Some(acker) => self
                .publisher
                .maybe_publish(now, force, spouts.chain(acker.stats())),
            None => self.publisher.maybe_publish(now, force, spouts),
        }
    }

    /// What an acker told task `dest` about one of its trees.
    fn on_ack(&mut self, dest: TaskId, ack: AckMsg, now: Instant) {
        let index = dest.0.wrapping_sub(self.first_task) as usize;
        let Some(task) = self.tasks.get_mut(index) else {
            return;
        };
        let st = &mut task.state;
        match ack {
            AckMsg::ResetTimeout { root } => {
                st.pending.touch(root);
            }
            AckMsg::Complete { root } => {
                if let Some(p) = st.pending.remove(&root) {
                    st.stats.acked += 1;
                    if let Some(emitted) = p.emitted {
                        st.stats.complete.record(now - emitted);
                    }
                    task.spout.ack(p.msg_id);
                }
            }
            AckMsg::Fail { root } => {
                if let Some(p) = st.pending.remove(&root) {
                    st.stats.failed_explicit += 1;
                    task.spout.fail(p.msg_id, FailReason::Failed);
                }
            }
            AckMsg::Init { .. } | AckMsg::Ack { .. } | AckMsg::Once { .. } => {}
        }
    }

    fn drain_inbound(&mut self, now: Instant) -> i64 {
        let mut n = 0;
        loop {
            match self.inbound.try_recv() {
                Ok(env) => n += self.handle(env, now),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return n,
            }
        }
    }

    /// Rotates the pending maps once per rotation period that passed (a
    /// jump of simulated time, or a long stall, may span several), failing
    /// the tuples that timed out.
    fn expire(&mut self, now: Instant) {
        let mut rotations = 0;
        while now >= self.next_rotate && rotations < PENDING_BUCKETS {
            self.next_rotate += self.rotate_every;
            rotations += 1;
            for task in &mut self.tasks {
                for (_, p) in task.state.pending.rotate() {
                    task.state.stats.failed_timeout += 1;
                    task.spout.fail(p.msg_id, FailReason::Timeout);
                }
            }
        }
        if now >= self.next_rotate {
            self.next_rotate = now + self.rotate_every;
        }
    }

    /// Calls `next_tuple` on each task while allowed (`now`: the topology
    /// clock's time); returns whether any task emitted.
    fn emit_round(&mut self, now: Instant) -> bool {
        let mut emitted = false;
        for SpoutTask { spout, state } in &mut self.tasks {
            for id in std::mem::take(&mut state.acked_untracked) {
                state.stats.acked += 1;
                spout.ack(id);
            }
            for _ in 0..BURST {
                if self.out.outbox.is_congested()
                    || self.max_pending.is_some_and(|m| state.pending.len() >= m)
                    || self.shared.backpressure.blocks(&self.downstream)
                {
                    break;
                }
                let before = state.emits;
                let mut emitter = Emitter {
                    shared: &self.shared,
                    out: &mut self.out,
                    task: state,
                    streams: self.streams,
                    now,
                    acker: self.acker.as_mut(),
                };
                spout.next_tuple(&mut SpoutOutputCollector::new(&mut emitter));
                if state.emits == before {
                    break;
                }
                emitted = true;
            }
            for id in std::mem::take(&mut state.acked_untracked) {
                state.stats.acked += 1;
                spout.ack(id);
            }
        }
        emitted
    }

    fn set_active(&mut self, active: bool) {
        if active == self.active {
            return;
        }
        self.active = active;
        for t in &mut self.tasks {
            if active {
                t.spout.activate()
            } else {
                t.spout.deactivate()
            }
        }
    }

    /// The executor loop.
    pub fn run(mut self) {
        let mut processed = 0i64;
        while !self.shared.stopping() {
            self.set_active(self.shared.active.load(Ordering::Acquire));
            // The clocks, read once per round.
            let real = Instant::now();
            let now = self.shared.clock.now_at(real);
            let drained = self.drain_inbound(now);
            processed += drained;
            self.expire(now);
            if let Some(acker) = &mut self.acker {
                acker.on_timers(now);
            }
            let emitted = self.active && self.emit_round(now);
            self.apply_told(now);
            self.flush();
            for t in &mut self.tasks {
                t.state.stats.pending = t.state.pending.len() as u64;
            }
            self.publish(real, false);
            if self.outboxes_empty() {
                self.shared.done_in_flight(std::mem::take(&mut processed));
            }
            if !emitted && drained == 0 && self.out.outbox.is_congested() {
                // Until a full receiver has room, or an ack arrives.
                self.out
                    .outbox
                    .wait_for_room(Some(&self.inbound), IDLE_WAIT);
            } else if !emitted && drained == 0 {
                match self.inbound.recv_timeout(IDLE_WAIT) {
                    Ok(env) => processed += self.handle(env, self.shared.clock.now()),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        self.set_active(false);
        for t in &mut self.tasks {
            t.spout.close();
        }
        self.publish(Instant::now(), true);
    }
}
