//! Acker tasks run in a spout executor's thread (`topology.acker.spout.thread`).
//!
//! The tasks are the same `__acker` tasks, with the same queue address,
//! metrics and decisions ([`Acker::apply`]): bolts, and spouts of other
//! executors, still send them ack messages, which arrive on the spout
//! executor's queue (the acker executor's queue is that queue). What
//! changes is the two messages of each tree between the spout and its
//! acker: the spout applies its init by a function call, and a
//! completion, failure or timeout reset for one of the executor's own
//! spout tasks is handed back to it without a message. This takes two of a
//! tree's messages between threads off the ack path, as Heron tracks trees
//! in the process that runs the spout.

use crate::acking::{AckMsg, Acker};
use crate::bolt_executor::count_executed;
use crate::shared::{task_context, Output, Shared};
use crate::stats::{Sampler, TaskStats};
use rand::Rng;
use squall_topology_api::{
    ComponentId, StreamMeta, TaskId, ACKER_COMPONENT, SYSTEM_COMPONENT, TICK_STREAM,
};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct AckerTask {
    id: TaskId,
    acker: Acker,
    stats: TaskStats,
}

/// The acker tasks of one acker executor, run by a spout executor.
pub struct InlineAcker {
    tasks: Vec<AckerTask>,
    first_task: u32,
    /// Positions of the tasks in [`Shared::ackers`].
    positions: Vec<u64>,
    /// The acker's output side: what it tells spouts of other executors.
    pub out: Output,
    metas: Vec<Arc<StreamMeta>>,
    sampler: Sampler,
    /// The spout tasks of the hosting executor.
    spout_tasks: Range<u32>,
    /// What the acker told the hosting executor's own spout tasks, for it
    /// to apply (see [`InlineAcker::take_told`]).
    told: Vec<(TaskId, AckMsg)>,
    /// Rotation period (`topology.message.timeout.secs`, the acker's tick
    /// in Storm), the next rotation, and the tick stream it is counted on.
    every: Duration,
    next_tick: Instant,
    tick: Option<(u32, Arc<StreamMeta>)>,
}

impl InlineAcker {
    /// The acker tasks `tasks`, run by the executor of spout tasks
    /// `spout_tasks`, sending through `out` (an output of `__acker`).
    pub fn new(shared: &Shared, tasks: Range<u32>, spout_tasks: Range<u32>, out: Output) -> Self {
        let stream_names = out.stream_names();
        let component = ComponentId::from(ACKER_COMPONENT);
        let positions = tasks
            .clone()
            .filter_map(|t| shared.ackers.iter().position(|a| a.0 == t))
            .map(|p| p as u64)
            .collect();
        let every = Duration::from_secs(shared.config.message_timeout_secs);
        let tick = shared
            .streams
            .index(SYSTEM_COMPONENT, TICK_STREAM)
            .and_then(|i| Some((i, shared.streams.meta(i)?.clone())));
        Self {
            first_task: tasks.start,
            tasks: tasks
                .map(|t| AckerTask {
                    id: TaskId(t),
                    acker: Acker::default(),
                    stats: TaskStats::new(component.clone(), stream_names.clone())
                        .with_registry(task_context(shared, t).metric_registry().clone()),
                })
                .collect(),
            positions,
            out,
            metas: shared.streams.private_metas(),
            sampler: Sampler::new(shared.config.stats_sample_rate),
            spout_tasks,
            told: Vec::new(),
            every,
            next_tick: shared.clock.now() + every,
            tick,
        }
    }

    /// Whether `task` is one of these acker tasks.
    pub fn hosts(&self, task: TaskId) -> bool {
        (task.0.wrapping_sub(self.first_task) as usize) < self.tasks.len()
    }

    /// A new tree root (random, never 0) that one of these tasks acks, so
    /// its init and completion stay in this thread (see
    /// [`Shared::new_root`]).
    pub fn new_root(&self, shared: &Shared, rng: &mut impl Rng) -> u64 {
        if self.positions.is_empty() {
            return shared.new_root(rng);
        }
        shared.new_root_among(&self.positions, rng)
    }

    /// Applies `msg`, received on input stream `input`, in acker task
    /// `dest`, counted as the acker executor counts it. What it tells one
    /// of the hosting executor's spout tasks waits in [`Self::take_told`];
    /// what it tells another spout leaves through [`Self::out`]. Both go
    /// through the acker's routing first (metrics, tap, sampling).
    pub fn apply(&mut self, shared: &Shared, dest: TaskId, input: u32, msg: AckMsg) {
        let index = dest.0.wrapping_sub(self.first_task) as usize;
        let (Some(task), Some(meta)) = (self.tasks.get_mut(index), self.metas.get(input as usize))
        else {
            return;
        };
        let started = self.sampler.hit().then(Instant::now);
        if let Some((spout, told)) = task.acker.apply(msg) {
            let out = &mut self.out;
            if let Some(stream) = out.route_told(shared, task.id, &mut task.stats, spout, told) {
                for &to in &out.targets {
                    if self.spout_tasks.contains(&to.0) {
                        self.told.push((to, told));
                    } else {
                        out.outbox.push_ack(to, task.id, stream, told);
                    }
                }
            }
        }
        count_executed(&mut task.stats, input, meta, started);
    }

    /// What the acker told the hosting executor's spout tasks since the
    /// last call, in order; hand the vector back with
    /// [`Self::return_told`] to reuse its storage.
    pub fn take_told(&mut self) -> Vec<(TaskId, AckMsg)> {
        std::mem::take(&mut self.told)
    }

    /// Gives back a vector [`Self::take_told`] returned, once applied.
    pub fn return_told(&mut self, mut told: Vec<(TaskId, AckMsg)>) {
        if self.told.is_empty() {
            told.clear();
            self.told = told;
        }
    }

    /// Rotates the pending trees once per message timeout (topology
    /// clock), counting the tick as the acker executor does.
    pub fn on_timers(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + self.every;
        for task in &mut self.tasks {
            task.acker.rotate();
            if let Some((index, meta)) = &self.tick {
                count_executed(&mut task.stats, *index, meta, None);
            }
        }
    }

    /// Each task's id and metrics, to publish with the spout's.
    pub fn stats(&mut self) -> impl Iterator<Item = (TaskId, &mut TaskStats)> {
        self.tasks.iter_mut().map(|t| (t.id, &mut t.stats))
    }
}
