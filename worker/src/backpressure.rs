//! Backpressure across workers (Storm 2's `BackPressureStatus`): a worker
//! whose executor's receive queue stays full (for longer than the
//! transport's [`crate::transport::HOLD_GRACE`]) holds the batches that
//! keep arriving for it in its transport and tells every peer worker
//! which of its tasks are backpressured; spouts whose tuples can reach a
//! backpressured task stop calling `next_tuple` until it drains.
//!
//! The policy, as in Storm 2: spouts wait, and so does a bolt whose
//! output is held, by taking no input until its held batches leave (Storm
//! 2's `BoltExecutor` stops consuming while it has pending emits), unless
//! the bolt is on a cycle of bolts (see [`on_bolt_cycle`]) or is the
//! acker: those keep taking input and hold what they emit, so a topology
//! with a cycle cannot deadlock. A spout waiting for room keeps taking
//! acks. The transport never blocks on a remote peer for long (a receiver
//! waits at most the grace, then keeps reading and holds the overflow),
//! so workers that send to each other
//! cannot deadlock; what a receiver holds is bounded by what was in flight
//! when the spouts paused, not by `topology.max.spout.pending`.

use crate::message::Envelope;
use crossbeam_channel::Sender;
use squall_topology_api::spec::{ComponentKind, TopologySpec};
use squall_topology_api::{TaskLayout, ACKER_COMPONENT};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

/// A worker's view of backpressure: its own executors' (held batches in
/// its transport) and the tasks peer workers reported.
#[derive(Debug)]
pub struct Backpressure {
    /// Per executor index: how many inbound connections hold batches for
    /// it because its queue is full.
    holding: Vec<AtomicUsize>,
    /// How many executors are held for (`holding` above zero).
    held: AtomicUsize,
    /// Set when an executor started or stopped being held for: the
    /// transfer thread reports the new status to the peers.
    changed: AtomicBool,
    /// The worker's transfer queue (in a worker with peers): a change of
    /// status wakes the transfer thread, which tells the peers at once.
    transfer: Option<Sender<Envelope>>,
    /// Tasks each inbound connection's peer reported backpressured.
    reported: Mutex<HashMap<u64, Vec<u32>>>,
    /// The union of `reported`, by task id; read only when `any_remote`.
    remote: RwLock<Vec<bool>>,
    any_remote: AtomicBool,
    next_connection: AtomicU64,
}

impl Backpressure {
    /// No backpressure, for `executors` executors and task ids up to
    /// `max_task`.
    pub fn new(executors: usize, max_task: usize) -> Self {
        Self {
            holding: (0..executors).map(|_| AtomicUsize::new(0)).collect(),
            held: AtomicUsize::new(0),
            changed: AtomicBool::new(false),
            reported: Mutex::new(HashMap::new()),
            remote: RwLock::new(vec![false; max_task + 1]),
            any_remote: AtomicBool::new(false),
            next_connection: AtomicU64::new(1),
            transfer: None,
        }
    }

    /// Wakes the transfer thread behind `transfer` at each change of this
    /// worker's status (see [`Backpressure::set_holding`]).
    pub fn with_transfer(mut self, transfer: Sender<Envelope>) -> Self {
        self.transfer = Some(transfer);
        self
    }

    /// Whether executor `e`'s queue is full now (some holder holds batches
    /// for it).
    pub fn is_held(&self, e: usize) -> bool {
        self.holding[e].load(Ordering::Acquire) > 0
    }

    /// A holder (an inbound connection, or an executor's outbox) started
    /// or stopped holding batches for executor `e` because its queue is
    /// full. Returns whether that changed the executor's status.
    pub fn set_holding(&self, e: usize, holding: bool) -> bool {
        let before = if holding {
            self.holding[e].fetch_add(1, Ordering::AcqRel)
        } else {
            self.holding[e].fetch_sub(1, Ordering::AcqRel)
        };
        let flipped = (holding && before == 0) || (!holding && before == 1);
        if flipped {
            if holding {
                self.held.fetch_add(1, Ordering::AcqRel);
            } else {
                self.held.fetch_sub(1, Ordering::AcqRel);
            }
            self.changed.store(true, Ordering::Release);
            // A full transfer queue needs no wake: its thread is busy and
            // looks at the status between rounds.
            if let Some(t) = &self.transfer {
                let _ = t.try_send(Envelope::Wake);
            }
        }
        flipped
    }

    /// If the local status changed since the last call, the tasks of this
    /// worker's backpressured executors, sorted.
    pub fn take_local_change(&self, layout: &TaskLayout) -> Option<Vec<u32>> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(self.local_tasks(layout))
    }

    /// The tasks of this worker's backpressured executors, sorted.
    pub fn local_tasks(&self, layout: &TaskLayout) -> Vec<u32> {
        let mut tasks = Vec::new();
        for (e, spec) in layout.executors().iter().enumerate() {
            if self
                .holding
                .get(e)
                .is_some_and(|h| h.load(Ordering::Acquire) > 0)
            {
                tasks.extend(spec.tasks.clone());
            }
        }
        tasks
    }

    /// A new id for an inbound connection's reports.
    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the tasks connection `connection`'s peer reports
    /// backpressured (empty: none, or the connection closed). Task ids out
    /// of range are ignored.
    pub fn report(&self, connection: u64, tasks: Vec<u32>) {
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.is_empty() {
            if reported.remove(&connection).is_none() {
                return;
            }
        } else {
            reported.insert(connection, tasks);
        }
        let mut remote = self.remote.write().unwrap_or_else(|p| p.into_inner());
        remote.iter_mut().for_each(|b| *b = false);
        let mut any = false;
        for &t in reported.values().flatten() {
            if let Some(slot) = remote.get_mut(t as usize) {
                *slot = true;
                any = true;
            }
        }
        self.any_remote.store(any, Ordering::Release);
    }

    /// Whether a task or executor downstream of a spout is backpressured:
    /// an executor of `downstream.executors` held for here, or a task of
    /// `downstream.tasks` reported by a peer worker.
    pub fn blocks(&self, downstream: &Downstream) -> bool {
        if self.held.load(Ordering::Acquire) > 0
            && downstream
                .executors
                .iter()
                .any(|&e| self.holding[e].load(Ordering::Acquire) > 0)
        {
            return true;
        }
        if !self.any_remote.load(Ordering::Acquire) {
            return false;
        }
        let remote = self.remote.read().unwrap_or_else(|p| p.into_inner());
        remote
            .iter()
            .zip(&downstream.tasks)
            .any(|(&congested, &reachable)| congested && reachable)
    }
}

/// What tuples of a spout can reach: every component downstream of it,
/// transitively (cycles included), and the ackers.
#[derive(Debug, Clone, Default)]
pub struct Downstream {
    /// Marks by task id.
    pub tasks: Vec<bool>,
    /// Executor indexes.
    pub executors: Vec<usize>,
}

/// What tuples of `spout` can reach (see [`Downstream`]).
pub fn downstream_of(spec: &TopologySpec, layout: &TaskLayout, spout: &str) -> Downstream {
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut frontier = vec![spout];
    while let Some(from) = frontier.pop() {
        for (id, c) in &spec.components {
            let fed = c.inputs.iter().any(|i| i.component.as_str() == from);
            if fed && reached.insert(id.as_str()) {
                frontier.push(id.as_str());
            }
        }
    }
    let reaches = |c: &str| reached.contains(c) || c == ACKER_COMPONENT;
    let mut tasks = vec![false; layout.num_tasks() + 1];
    for (id, ids) in layout.components() {
        if reaches(id.as_str()) {
            for t in ids {
                tasks[t.0 as usize] = true;
            }
        }
    }
    let executors = (layout.executors().iter().enumerate())
        .filter(|(_, e)| reaches(e.component.as_str()))
        .map(|(i, _)| i)
        .collect();
    Downstream { tasks, executors }
}

/// Whether bolt `bolt` can reach itself through bolts: a subscription
/// path from it back to it on which every component is a bolt (the acker,
/// whose inputs are implicit, counts as on a cycle). Such a bolt must keep
/// taking input while its output is held, or the cycle could deadlock with
/// every queue on it full; any other bolt may wait, since what it waits
/// for drains without it. Spouts break a path: they take acks while they
/// wait.
pub fn on_bolt_cycle(spec: &TopologySpec, bolt: &str) -> bool {
    if bolt == ACKER_COMPONENT {
        return true;
    }
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut frontier = vec![bolt];
    while let Some(from) = frontier.pop() {
        for (id, c) in &spec.components {
            // Only bolts are pushed: every `from` is a bolt.
            let fed = c.kind == ComponentKind::Bolt
                && c.inputs.iter().any(|i| i.component.as_str() == from);
            if fed && reached.insert(id.as_str()) {
                if id.as_str() == bolt {
                    return true;
                }
                frontier.push(id.as_str());
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_topology_api::spec::{ComponentSpec, InputSpec};
    use squall_topology_api::GroupingSpec;

    fn component(kind: ComponentKind, inputs: &[&str]) -> ComponentSpec {
        ComponentSpec {
            kind,
            parallelism: 1,
            num_tasks: 1,
            inputs: inputs
                .iter()
                .map(|c| InputSpec {
                    component: (*c).into(),
                    stream: "default".into(),
                    grouping: GroupingSpec::Shuffle,
                })
                .collect(),
            streams: Default::default(),
            config: Default::default(),
        }
    }

    /// `s1 -> ring <-> back`, `s2 -> other`.
    fn spec() -> TopologySpec {
        let mut spec = TopologySpec::default();
        for (id, kind, inputs) in [
            ("s1", ComponentKind::Spout, &[][..]),
            ("s2", ComponentKind::Spout, &[][..]),
            ("ring", ComponentKind::Bolt, &["s1", "back"][..]),
            ("back", ComponentKind::Bolt, &["ring"][..]),
            ("other", ComponentKind::Bolt, &["s2"][..]),
        ] {
            spec.components.insert(id.into(), component(kind, inputs));
        }
        spec
    }

    #[test]
    fn only_bolts_off_a_cycle_of_bolts_wait() {
        let mut spec = spec();
        assert!(on_bolt_cycle(&spec, "ring") && on_bolt_cycle(&spec, "back"));
        assert!(!on_bolt_cycle(&spec, "other"));
        assert!(on_bolt_cycle(&spec, ACKER_COMPONENT));
        // A bolt fed by itself is on a cycle.
        let mut own = component(ComponentKind::Bolt, &["s2", "own"]);
        own.inputs[1].stream = "again".into();
        spec.components.insert("own".into(), own);
        assert!(on_bolt_cycle(&spec, "own"));
        // A path back through a spout is no cycle: spouts take acks while
        // they wait.
        spec.components
            .insert("s3".into(), component(ComponentKind::Spout, &["tail"]));
        spec.components
            .insert("head".into(), component(ComponentKind::Bolt, &["s3"]));
        spec.components
            .insert("tail".into(), component(ComponentKind::Bolt, &["head"]));
        assert!(!on_bolt_cycle(&spec, "head") && !on_bolt_cycle(&spec, "tail"));
    }

    #[test]
    fn a_spout_waits_only_for_what_it_reaches() {
        let spec = spec();
        let layout = TaskLayout::new(&spec, 0);
        let executor = |c: &str| {
            (layout.executors().iter())
                .position(|e| e.component.as_str() == c)
                .unwrap()
        };
        let task = |c: &str| layout.component_tasks(c)[0].0;
        let s1 = downstream_of(&spec, &layout, "s1");
        let s2 = downstream_of(&spec, &layout, "s2");
        let bp = Backpressure::new(layout.executors().len(), layout.num_tasks());
        assert!(!bp.blocks(&s1) && !bp.blocks(&s2));

        // Held here: the cycle's far side blocks s1 only.
        assert!(bp.set_holding(executor("back"), true));
        assert!(!bp.set_holding(executor("back"), true), "a second holder");
        assert!(bp.blocks(&s1) && !bp.blocks(&s2));
        assert_eq!(bp.take_local_change(&layout), Some(vec![task("back")]));
        assert_eq!(bp.take_local_change(&layout), None);
        assert!(!bp.set_holding(executor("back"), false));
        assert!(bp.set_holding(executor("back"), false));
        assert!(!bp.blocks(&s1));
        assert_eq!(bp.take_local_change(&layout), Some(vec![]));

        // Reported by peers: until the connection reports none or closes.
        let (a, b) = (bp.connection_id(), bp.connection_id());
        bp.report(a, vec![task("other"), 9_999]);
        assert!(bp.blocks(&s2) && !bp.blocks(&s1));
        bp.report(b, vec![task("ring")]);
        bp.report(a, Vec::new());
        assert!(bp.blocks(&s1) && !bp.blocks(&s2));
        bp.report(b, Vec::new());
        assert!(!bp.blocks(&s1) && !bp.blocks(&s2));
    }
}
