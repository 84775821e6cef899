//! A bolt executor: one thread running one or more tasks of a bolt.

use crate::acking::{AckMsg, AckStreams, AckTo, AckVals, Acker};
use crate::backpressure::on_bolt_cycle;
use crate::message::{Envelope, TupleMsg};
use crate::routing::Router;
use crate::shared::{task_context, Output, Shared};
use crate::stats::{Publisher, Sampler, TaskStats};
use crate::wire::Deliver;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rand::Rng;
use squall_topology_api::{
    values, Bolt, BoltOutput, ComponentId, MessageId, MetricUpdate, OutputCollector, StreamMeta,
    TaskId, TaskWaker, Tuple, Values, SYSTEM_COMPONENT, TICK_STREAM,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buckets of a task's `AckVals` (a rotation per message timeout).
const ACK_VAL_BUCKETS: usize = 2;
struct TaskState {
    id: TaskId,
    stats: TaskStats,
    ack_vals: AckVals,
}

/// What a task runs: a user's bolt, or the engine's acker, which the
/// executor feeds ack messages without building a `Tuple` for each (see
/// [`BoltExecutor::execute_compact`]; ack messages never travel as tuples,
/// so a tuple for an acker, a tick, runs through its `Bolt`
/// implementation).
enum TaskBolt {
    User(Box<dyn Bolt>),
    Acker(Acker),
}

impl TaskBolt {
    fn get(&mut self) -> &mut dyn Bolt {
        match self {
            Self::User(b) => b.as_mut(),
            Self::Acker(a) => a,
        }
    }
}

struct BoltTask {
    bolt: TaskBolt,
    state: TaskState,
    /// Set by the task's [`TaskWaker`]; cleared when `Bolt::wake` runs.
    woken: Arc<AtomicBool>,
}

/// Everything a bolt's collector needs besides the bolt itself.
struct Emitter<'a> {
    shared: &'a Shared,
    out: &'a mut Output,
    task: &'a mut TaskState,
    streams: AckStreams,
}

impl BoltOutput for Emitter<'_> {
    fn emit(&mut self, stream: &str, anchors: &[&Tuple], values: Values, direct: Option<TaskId>) {
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
        let tracked =
            !self.shared.ackers.is_empty() && anchors.iter().any(|a| a.message_id().is_tracked());
        let Output {
            targets,
            outbox,
            rng,
            ..
        } = &mut *self.out;
        let (source, ack_vals) = (self.task.id, &mut self.task.ack_vals);
        if !tracked {
            outbox.push_each(targets, source, index, values, MessageId::untracked);
        } else if anchors.len() > MANY_ANCHORS {
            outbox.push_each(targets, source, index, values, || {
                many_anchors_id(anchors, ack_vals, rng)
            });
        } else {
            outbox.push_each(targets, source, index, values, || {
                anchored_id(anchors, ack_vals, rng)
            });
        }
    }

    fn ack(&mut self, tuple: &Tuple) {
        let stats = &mut self.task.stats;
        match tuple.started() {
            Some(start) => count_sampled_ack(stats, tuple, start.elapsed()),
            None => {
                if let Some(input) = stats.input(tuple.input(), tuple.meta()) {
                    input.acked += 1;
                }
            }
        }
        self.send_ack(tuple, false);
    }

    fn ack_once(&mut self, tuple: &Tuple) {
        self.send_ack(tuple, true);
    }

    fn take_ack_id(&mut self, tuple: &Tuple) -> MessageId {
        let ids = tuple.message_id().anchors();
        let Some(&(_, first)) = ids.first() else {
            return MessageId::untracked();
        };
        let val = self.task.ack_vals.take(first);
        MessageId(ids.iter().map(|&(root, edge)| (root, edge ^ val)).collect())
    }

    fn fail(&mut self, tuple: &Tuple) {
        self.task.stats.failed_explicit += 1;
        if let Some(input) = self.task.stats.input(tuple.input(), tuple.meta()) {
            input.failed += 1;
        }
        let ids = tuple.message_id().anchors();
        if self.shared.ackers.is_empty() || ids.is_empty() {
            return;
        }
        self.task.ack_vals.take(ids[0].1);
        self.send_to_ackers(ids, |root| AckMsg::Fail { root });
    }

    fn reset_timeout(&mut self, tuple: &Tuple) {
        let ids = tuple.message_id().anchors();
        if self.shared.ackers.is_empty() || ids.is_empty() {
            return;
        }
        self.task.ack_vals.touch(ids[0].1);
        self.send_to_ackers(ids, |root| AckMsg::ResetTimeout { root });
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

impl Emitter<'_> {
    /// Acks `tuple` in each of its trees (its edge XOR the edges anchored
    /// to it): plain acks merge with the previous one of the batch for the
    /// same root, idempotent ones (`once`) never do.
    fn send_ack(&mut self, tuple: &Tuple, once: bool) {
        self.task.stats.acked += 1;
        let ids = tuple.message_id().anchors();
        if self.shared.ackers.is_empty() || ids.is_empty() {
            return;
        }
        let val = self.task.ack_vals.take(ids[0].1);
        for &(root, edge) in ids {
            let val = edge ^ val;
            let msg = if once {
                AckMsg::Once { root, val }
            } else {
                AckMsg::Ack { root, val }
            };
            let acker = self.shared.acker_for(root);
            let stream = self.streams.index(&msg);
            self.out.outbox.push_ack(acker, self.task.id, stream, msg);
        }
    }

    fn send_to_ackers(&mut self, ids: &[(u64, u64)], msg: impl Fn(u64) -> AckMsg) {
        for &(root, _) in ids {
            let msg = msg(root);
            let stream = self.streams.index(&msg);
            self.out
                .outbox
                .push_ack(self.shared.acker_for(root), self.task.id, stream, msg);
        }
    }
}

/// Above this many anchors an emit's id is built by sorting its (root,
/// edge) pairs rather than by a linear search per root (a windowed bolt
/// anchors to every tuple of its window).
const MANY_ANCHORS: usize = 16;

/// The id of a tuple anchored to `anchors`, each getting a fresh edge
/// (added to the anchor's ack value) XORed into each of its trees.
///
/// Inline, so the common case (one anchor in one tree) is not returned
/// through memory from a call: the emit read the id back 16 bytes at once
/// from the two 8-byte stores that had just written it, which the
/// processor cannot forward, and stalled on every tuple.
#[inline]
fn anchored_id(anchors: &[&Tuple], ack_vals: &mut AckVals, rng: &mut impl Rng) -> MessageId {
    if let [anchor] = anchors {
        if let [(root, key)] = *anchor.message_id().anchors() {
            let edge: u64 = rng.random();
            ack_vals.add(key, edge);
            return MessageId::single(root, edge);
        }
    }
    anchored_id_general(anchors, ack_vals, rng)
}

/// [`anchored_id`] for several anchors or an anchor in several trees.
#[inline(never)]
fn anchored_id_general(
    anchors: &[&Tuple],
    ack_vals: &mut AckVals,
    rng: &mut impl Rng,
) -> MessageId {
    let mut message_id = MessageId::untracked();
    with_fresh_edges(anchors, ack_vals, rng, |ids, edge| {
        for &(root, _) in ids {
            message_id.xor_edge(root, edge);
        }
    });
    message_id
}

/// Gives each tracked anchor of `anchors` a fresh edge id, XORed into its
/// ack value, and calls `f` with the anchor's `(root, edge)` ids and that
/// edge.
fn with_fresh_edges(
    anchors: &[&Tuple],
    ack_vals: &mut AckVals,
    rng: &mut impl Rng,
    mut f: impl FnMut(&[(u64, u64)], u64),
) {
    for a in anchors {
        let ids = a.message_id().anchors();
        let Some(&(_, key)) = ids.first() else {
            continue;
        };
        let edge: u64 = rng.random();
        ack_vals.add(key, edge);
        f(ids, edge);
    }
}

/// The id of a tuple anchored to `anchors`, each getting a fresh edge:
/// pairs sorted by root and edges of the same root XOR-combined, in
/// O(n log n) for n roots.
fn many_anchors_id(anchors: &[&Tuple], ack_vals: &mut AckVals, rng: &mut impl Rng) -> MessageId {
    let mut pairs: Vec<(u64, u64)> = Vec::with_capacity(anchors.len());
    with_fresh_edges(anchors, ack_vals, rng, |ids, edge| {
        pairs.extend(ids.iter().map(|&(root, _)| (root, edge)));
    });
    pairs.sort_unstable_by_key(|p| p.0);
    let mut id = MessageId::untracked();
    for (root, edge) in pairs {
        match id.0.last_mut() {
            Some((r, e)) if *r == root => *e ^= edge,
            _ => id.0.push((root, edge)),
        }
    }
    id
}

/// Runs one bolt executor until the topology stops.
pub struct BoltExecutor {
    shared: Arc<Shared>,
    first_task: u32,
    tasks: Vec<BoltTask>,
    out: Output,
    sampler: Sampler,
    inbound: Receiver<Envelope>,
    publisher: Publisher,
    streams: AckStreams,
    /// One tuple per stream of the stream table, reused for every tuple
    /// delivered on it (see [`Tuple::redeliver`]), over this executor's own
    /// copy of the table's descriptions.
    delivered: Vec<Tuple>,
    /// Tick period, next tick, the tick stream and its number.
    tick: Option<(Duration, Instant, Arc<StreamMeta>, u32)>,
    rotate_every: Duration,
    next_rotate: Instant,
    /// Set by any task's waker: some task's `woken` flag may be set.
    any_woken: Arc<AtomicBool>,
}

impl BoltExecutor {
    /// Makes the executor for tasks `tasks` of `component`, creating each
    /// task's bolt with `factory` (none: the component is the acker) and
    /// calling `prepare`.
    pub fn new(
        shared: Arc<Shared>,
        component: ComponentId,
        tasks: std::ops::Range<u32>,
        factory: Option<&(dyn Fn() -> Box<dyn Bolt> + Send + Sync)>,
        inbound: Receiver<Envelope>,
        router: Router,
    ) -> Self {
        let spec = &shared.spec.components[&component];
        let mut out = Output::new(&shared, component.clone(), router);
        // A bolt off every cycle of bolts takes no input while its output
        // is held.
        out.outbox
            .set_waits(!on_bolt_cycle(&shared.spec, component.as_str()));
        let stream_names = out.stream_names();
        let streams = AckStreams::of(&shared.streams, component.as_str());
        let now = shared.clock.now();
        let tick_every = if component.as_str() == squall_topology_api::ACKER_COMPONENT {
            Some(Duration::from_secs(shared.config.message_timeout_secs))
        } else if let Some(ms) = spec.config.tick_tuple_freq_millis {
            Some(Duration::from_millis(ms.max(1)))
        } else {
            spec.config
                .tick_tuple_freq_secs
                .or(shared.config.tick_tuple_freq_secs)
                .map(Duration::from_secs)
        };
        let tick = tick_every.map(|every| {
            let index = shared
                .streams
                .index(SYSTEM_COMPONENT, TICK_STREAM)
                .expect("stream table has the tick stream");
            let meta = shared
                .streams
                .meta(index)
                .cloned()
                .expect("stream table has the tick stream");
            (every, now + every, meta, index)
        });
        let any_woken = Arc::new(AtomicBool::new(false));
        let tasks: Vec<BoltTask> = tasks
            .map(|t| {
                let woken = Arc::new(AtomicBool::new(false));
                let waker = task_waker(&shared, t, woken.clone(), any_woken.clone());
                let mut bolt = match factory {
                    Some(f) => TaskBolt::User(f()),
                    None => TaskBolt::Acker(Acker::default()),
                };
                let context = task_context(&shared, t).with_waker(waker);
                bolt.get().prepare(&context);
                BoltTask {
                    bolt,
                    state: TaskState {
                        id: TaskId(t),
                        stats: TaskStats::new(component.clone(), stream_names.clone())
                            .with_registry(context.metric_registry().clone()),
                        ack_vals: AckVals::default(),
                    },
                    woken,
                }
            })
            .collect();
        let rotate_every = Duration::from_secs(shared.config.message_timeout_secs);
        let executor = shared.wiring.executor_of_task[tasks_start(&tasks) as usize] as usize;
        Self {
            delivered: shared
                .streams
                .private_metas()
                .into_iter()
                .zip(0..)
                .map(|(meta, input)| {
                    Tuple::with_message_id(meta, MessageId::untracked()).with_input(input)
                })
                .collect(),
            publisher: Publisher::new(shared.board.clone())
                .with_backpressure(shared.backpressure.clone(), executor)
                .with_capacity_to(shared.wiring.clone(), executor),
            sampler: Sampler::new(shared.config.stats_sample_rate),
            first_task: tasks_start(&tasks),
            shared,
            tasks,
            out,
            inbound,
            streams,
            tick,
            rotate_every,
            next_rotate: now + rotate_every,
            any_woken,
        }
    }

    /// Calls `Bolt::wake` for every task whose waker was woken.
    fn run_wakes(&mut self) {
        // A plain load first: no cache-line write per batch when nothing woke.
        if !self.any_woken.load(Ordering::Acquire) || !self.any_woken.swap(false, Ordering::AcqRel)
        {
            return;
        }
        for BoltTask { bolt, state, woken } in &mut self.tasks {
            if woken.swap(false, Ordering::AcqRel) {
                let mut emitter = Emitter {
                    shared: &self.shared,
                    out: &mut self.out,
                    task: state,
                    streams: self.streams,
                };
                bolt.get().wake(&mut OutputCollector::new(&mut emitter));
            }
        }
    }

    fn execute(&mut self, msg: TupleMsg) {
        let Some((index, started)) = self.accept(msg.dest, msg.stream) else {
            return;
        };
        let stream = msg.stream as usize;
        self.delivered[stream].redeliver(msg.source, msg.values, msg.message_id, started);
        self.run_delivered(index, stream);
    }

    /// Task `dest`'s index in this executor's tasks; out of range for a
    /// task not its own.
    #[inline]
    fn task_index(&self, dest: TaskId) -> usize {
        dest.0.wrapping_sub(self.first_task) as usize
    }

    /// Where a tuple for task `dest` on stream index `stream` runs: the
    /// task's index here and its latency-sampling start; `None` when the
    /// task is not this executor's or the stream is unknown.
    #[inline]
    fn accept(&mut self, dest: TaskId, stream: u32) -> Option<(usize, Option<Instant>)> {
        let index = self.task_index(dest);
        if index >= self.tasks.len() || stream as usize >= self.delivered.len() {
            return None;
        }
        Some((index, self.sampler.hit().then(Instant::now)))
    }

    /// Runs the tuple delivered on stream index `stream` in task `index`.
    #[inline]
    fn run_delivered(&mut self, index: usize, stream: usize) {
        execute_tuple(
            &mut self.tasks[index],
            &self.shared,
            &mut self.out,
            self.streams,
            &self.delivered[stream],
        );
    }

    /// Runs a compact ack message; one for a task that is not an acker
    /// runs as the tuple it stands for.
    fn execute_compact(&mut self, a: AckTo) {
        let index = self.task_index(a.dest);
        match self.tasks.get(index).map(|t| &t.bolt) {
            Some(TaskBolt::Acker(_)) => self.apply_ack(index, a.stream, a.msg),
            Some(TaskBolt::User(_)) => self.execute(a.into_tuple()),
            None => {}
        }
    }

    /// Applies `ack`, received on input stream `input`, in acker task
    /// `index`, counting it as its `Bolt` implementation's execute would be
    /// counted. What it tells a spout goes through the output's routing
    /// (metrics, tap, sampling) and leaves in the compact form.
    fn apply_ack(&mut self, index: usize, input: u32, ack: AckMsg) {
        let Some(meta) = self.delivered.get(input as usize).map(Tuple::meta) else {
            return;
        };
        let started = self.sampler.hit().then(Instant::now);
        let BoltTask { bolt, state, .. } = &mut self.tasks[index];
        let TaskBolt::Acker(acker) = bolt else {
            return;
        };
        if let Some((task, told)) = acker.apply(ack) {
            let out = &mut self.out;
            if let Some(stream) =
                out.route_told(&self.shared, state.id, &mut state.stats, task, told)
            {
                for &dest in &out.targets {
                    out.outbox.push_ack(dest, state.id, stream, told);
                }
            }
        }
        count_executed(&mut state.stats, input, meta, started);
    }

    /// Runs due timers at `now` (the topology clock): tick tuples and the
    /// acker's rotation; and publishes metrics (at `real`, the system
    /// clock).
    fn on_timers(&mut self, now: Instant, real: Instant) {
        if let Some((every, next, meta, index)) = &mut self.tick {
            if now >= *next {
                *next = now + *every;
                let (meta, index) = (meta.clone(), *index);
                let secs = every.as_secs();
                for i in 0..self.tasks.len() {
                    let tuple = Tuple::new(
                        meta.clone(),
                        TaskId(0),
                        values![secs],
                        MessageId::untracked(),
                        None,
                    )
                    .with_input(index);
                    execute_tuple(
                        &mut self.tasks[i],
                        &self.shared,
                        &mut self.out,
                        self.streams,
                        &tuple,
                    );
                }
            }
        }
        let mut rotations = 0;
        while now >= self.next_rotate && rotations < ACK_VAL_BUCKETS {
            self.next_rotate += self.rotate_every;
            rotations += 1;
            self.tasks
                .iter_mut()
                .for_each(|t| t.state.ack_vals.rotate());
        }
        if now >= self.next_rotate {
            self.next_rotate = now + self.rotate_every;
        }
        let tasks = self
            .tasks
            .iter_mut()
            .map(|t| (t.state.id, &mut t.state.stats));
        self.publisher.maybe_publish(real, false, tasks);
    }

    /// How long the loop may block from `now` (the topology clock) and
    /// `real` (the system clock): until metrics are due (real time) or a
    /// timer is (topology time, a few ms at most when simulated).
    fn next_wait(&self, now: Instant, real: Instant) -> std::time::Duration {
        let clock = &self.shared.clock;
        let mut timer = self.next_rotate;
        if let Some((_, next, _, _)) = &self.tick {
            timer = timer.min(*next);
        }
        let publish = self.publisher.next_due().saturating_duration_since(real);
        publish.min(clock.wait(timer.saturating_duration_since(now)))
    }

    /// The executor loop: execute batches, flush when idle, run timers.
    pub fn run(mut self) {
        let flush_every = Duration::from_millis(self.shared.config.flush_tuple_freq_millis);
        // The flush period runs on the topology clock, as timers do.
        let mut last_flush = self.shared.clock.now();
        let mut processed = 0i64;
        // The clocks, read once per loop (after the batch, before timers).
        let mut real = Instant::now();
        let mut now = self.shared.clock.now_at(real);
        while !self.shared.stopping() {
            if self.out.outbox.must_wait() {
                // Held output: no input until it leaves (Storm 2's bolt
                // executor consumes nothing while it has pending emits).
                let wait = self.next_wait(now, real);
                self.out.outbox.wait_for_room(None, wait);
                self.out.outbox.flush();
                real = Instant::now();
                now = self.shared.clock.now_at(real);
                self.on_timers(now, real);
                continue;
            }
            // Held output (a full receiver) is tried again soon.
            let wait = if self.out.outbox.is_empty() {
                self.next_wait(now, real)
            } else {
                self.next_wait(now, real).min(HELD_RETRY)
            };
            match self.inbound.recv_timeout(wait) {
                Ok(env @ (Envelope::Tuples(_) | Envelope::Acks(_) | Envelope::Encoded(_))) => {
                    let start = Instant::now();
                    match env {
                        Envelope::Tuples(batch) => {
                            processed += batch.len() as i64;
                            batch.into_iter().for_each(|msg| self.execute(msg));
                        }
                        Envelope::Acks(batch) => {
                            processed += batch.len() as i64;
                            batch.into_iter().for_each(|a| self.execute_compact(a));
                        }
                        Envelope::Encoded(batch) => {
                            processed += batch.len as i64;
                            batch.deliver_to(&mut self);
                        }
                        Envelope::Wake => {}
                    }
                    real = Instant::now();
                    self.publisher.add_busy(real - start);
                    now = self.shared.clock.now_at(real);
                    if self.inbound.is_empty() || now - last_flush >= flush_every {
                        self.out.outbox.flush();
                        last_flush = now;
                    }
                }
                Ok(Envelope::Wake) | Err(RecvTimeoutError::Timeout) => {
                    self.out.outbox.flush();
                    real = Instant::now();
                    now = self.shared.clock.now_at(real);
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.run_wakes();
            self.on_timers(now, real);
            if self.out.outbox.is_empty() {
                self.shared.done_in_flight(std::mem::take(&mut processed));
            }
        }
        for t in &mut self.tasks {
            t.bolt.get().cleanup();
        }
        let tasks = self
            .tasks
            .iter_mut()
            .map(|t| (t.state.id, &mut t.state.stats));
        self.publisher.maybe_publish(Instant::now(), true, tasks);
    }
}

/// A frame from a peer worker is decoded straight into the delivered
/// tuple of each message's stream, which then runs as
/// [`BoltExecutor::execute`] would run it.
impl Deliver for BoltExecutor {
    fn slot(
        &mut self,
        dest: TaskId,
        source: TaskId,
        stream: u32,
    ) -> Option<(&mut Values, &mut MessageId)> {
        let (_, started) = self.accept(dest, stream)?;
        Some(self.delivered[stream as usize].refill(source, started))
    }

    fn run(&mut self, dest: TaskId, stream: u32) {
        self.run_delivered(self.task_index(dest), stream as usize);
    }

    fn ack(&mut self, ack: AckTo) {
        self.execute_compact(ack);
    }
}

/// Runs `tuple` in `task`, with the executor's `shared` state, output and
/// ack streams.
fn execute_tuple(
    task: &mut BoltTask,
    shared: &Shared,
    out: &mut Output,
    streams: AckStreams,
    tuple: &Tuple,
) {
    let BoltTask { bolt, state, .. } = task;
    let mut emitter = Emitter {
        shared,
        out,
        task: state,
        streams,
    };
    bolt.get()
        .execute(tuple, &mut OutputCollector::new(&mut emitter));
    count_executed(
        &mut state.stats,
        tuple.input(),
        tuple.meta(),
        tuple.started(),
    );
}

/// Counts one execution of a tuple that arrived on input stream `input`
/// (`meta`), with its execute latency when it was sampled (`started`).
#[inline]
pub(crate) fn count_executed(
    stats: &mut TaskStats,
    input: u32,
    meta: &StreamMeta,
    started: Option<Instant>,
) {
    stats.executed += 1;
    match started {
        Some(start) => count_sampled_execute(stats, input, meta, start.elapsed()),
        None => {
            if let Some(input) = stats.input(input, meta) {
                input.executed += 1;
            }
        }
    }
}

/// [`count_executed`] of a tuple sampled for latency, which took `execute`.
#[cold]
fn count_sampled_execute(stats: &mut TaskStats, input: u32, meta: &StreamMeta, execute: Duration) {
    stats.execute.record(execute);
    if let Some(input) = stats.input(input, meta) {
        input.executed += 1;
        input.execute_ms += execute.as_secs_f64() * 1000.0;
        input.execute_count += 1;
    }
}

/// Counts the ack of `tuple`, sampled for latency, `process` after its
/// execution started (Storm's process latency).
#[cold]
fn count_sampled_ack(stats: &mut TaskStats, tuple: &Tuple, process: Duration) {
    stats.process.record(process);
    if let Some(input) = stats.input(tuple.input(), tuple.meta()) {
        input.acked += 1;
        input.process_ms += process.as_secs_f64() * 1000.0;
        input.process_count += 1;
    }
}

/// How soon a bolt with held output tries to send it again.
const HELD_RETRY: Duration = Duration::from_millis(1);

/// The waker of task `task`: sets its flags and nudges the executor's queue
/// (a full queue needs no nudge: the executor is about to look).
fn task_waker(
    shared: &Shared,
    task: u32,
    woken: Arc<AtomicBool>,
    any_woken: Arc<AtomicBool>,
) -> TaskWaker {
    let wiring = &shared.wiring;
    let queue = wiring
        .executor_of_task
        .get(task as usize)
        .and_then(|&e| wiring.queues.get(e as usize))
        .cloned();
    TaskWaker::new(move || {
        woken.store(true, Ordering::Release);
        if !any_woken.swap(true, Ordering::AcqRel) {
            if let Some(q) = &queue {
                let _ = q.try_send(Envelope::Wake);
            }
        }
    })
}

fn tasks_start(tasks: &[BoltTask]) -> u32 {
    tasks.first().map_or(0, |t| t.state.id.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;
    use squall_topology_api::Fields;

    /// The stream of component `c`'s tuples in these tests.
    fn stream_meta() -> Arc<StreamMeta> {
        Arc::new(StreamMeta {
            component: "c".into(),
            stream: "default".into(),
            fields: Fields::from(["n"]),
        })
    }

    #[test]
    fn an_anchored_id_gets_one_fresh_edge_per_anchor_in_each_of_its_trees() {
        let meta = stream_meta();
        let one = Tuple::new(
            meta.clone(),
            TaskId(1),
            values![1],
            MessageId::single(5, 100),
            None,
        );
        let mut two_trees = MessageId::single(5, 200);
        two_trees.xor_edge(6, 7);
        let two = Tuple::new(meta, TaskId(1), values![2], two_trees, None);
        let mut vals = AckVals::default();
        let mut rng = SmallRng::seed_from_u64(9);
        let a = anchored_id(&[&one], &mut vals, &mut rng);
        let b = anchored_id(&[&two], &mut vals, &mut rng);
        let mut expected = SmallRng::seed_from_u64(9);
        let (ea, eb): (u64, u64) = (expected.random(), expected.random());
        assert_eq!(a.anchors(), &[(5, ea)]);
        assert_eq!(b.anchors(), &[(5, eb), (6, eb)]);
        assert_eq!((vals.take(100), vals.take(200)), (ea, eb));
    }

    #[test]
    fn many_anchors_give_the_same_id_as_one_at_a_time() {
        let meta = stream_meta();
        // 40 tuples over 7 roots, some in two trees.
        let tuples: Vec<Tuple> = (0..40u64)
            .map(|i| {
                let mut id = MessageId::single(i % 7, 100 + i);
                if i % 5 == 0 {
                    id.xor_edge(1000 + i % 3, 7);
                }
                Tuple::new(meta.clone(), TaskId(1), values![i as i64], id, None)
            })
            .collect();
        let anchors: Vec<&Tuple> = tuples.iter().collect();
        let mut vals = AckVals::default();
        let sorted = many_anchors_id(&anchors, &mut vals, &mut SmallRng::seed_from_u64(3));
        let mut rng = SmallRng::seed_from_u64(3);
        let mut linear = MessageId::untracked();
        for a in &anchors {
            let edge: u64 = rng.random();
            for &(root, _) in a.message_id().anchors() {
                linear.xor_edge(root, edge);
            }
        }
        let mut expected = linear.anchors().to_vec();
        expected.sort_unstable();
        assert_eq!(sorted.anchors(), expected.as_slice());
        assert_eq!(sorted.anchors().len(), 10, "7 roots and 3 more trees");
    }
}
