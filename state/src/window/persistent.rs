//! [`PersistentWindowedBoltExecutor`]: a windowed bolt whose window lives
//! in checkpointed state (Storm's `PersistentWindowedBoltExecutor`, from
//! `BaseStatefulWindowedBolt.withPersistence`).

use super::bolt::{Held, Timekeeper, TupleWindow, WindowCollector, WindowedBolt};
use super::{WindowConfig, WindowManager};
use crate::checkpoint::epoch::{Epoch, WatchingOutput};
use crate::checkpoint::{Action, CheckpointTuple, CHECKPOINT_FIELDS};
use crate::stateful::StoreOpener;
use crate::store::TxStore;
use squall_topology_api::{
    Bolt, ComponentId, MessageId, OutputCollector, OutputFieldsDeclarer, StreamId, StreamMeta,
    TaskId, TopologyContext, Tuple, Values, CHECKPOINT_STREAM,
};
use std::collections::HashMap;
use std::sync::Arc;

/// One window tuple as stored: timestamp, source component, stream and
/// task, values.
type Record = (i64, String, String, u32, Values);

/// Runs a [`WindowedBolt`] whose window is kept in the task's state: input
/// tuples are acked when the checkpoint that stored them commits, not when
/// they leave the window, so a window may be far longer than
/// `topology.message.timeout.secs`. After a restart or a rollback the
/// window is the last committed one and replayed tuples fill in the rest.
/// Emits are not anchored (their inputs may be acked already), so windows
/// fired between the last commit and a failure may fire again.
pub struct PersistentWindowedBoltExecutor<B> {
    bolt: B,
    time: Timekeeper,
    manager: WindowManager<Held>,
    store: Option<TxStore>,
    epoch: Epoch,
    opener: StoreOpener,
    next_key: u64,
    metas: HashMap<(String, String), Arc<StreamMeta>>,
}

fn key_bytes(key: u64) -> Vec<u8> {
    key.to_be_bytes().to_vec()
}

impl<B: WindowedBolt> PersistentWindowedBoltExecutor<B> {
    /// Runs `bolt` over persistent windows shaped by `config`.
    pub fn new(bolt: B, config: WindowConfig) -> Self {
        let manager = WindowManager::new(config.length, config.sliding);
        Self {
            bolt,
            time: Timekeeper::new(config),
            manager,
            store: None,
            epoch: Epoch::new(),
            opener: StoreOpener::new(),
            next_key: 0,
            metas: HashMap::new(),
        }
    }

    /// Rebuilds the window from the committed (or prepared) state.
    fn restore(&mut self) -> Result<(), String> {
        let config = self.time.config.clone();
        self.manager = WindowManager::new(config.length, config.sliding);
        let Some(store) = &self.store else {
            return Err(format!("state store is not open: {}", self.opener.error));
        };
        for (k, v) in store.entries().map_err(|e| e.to_string())? {
            let key = u64::from_be_bytes(k.as_slice().try_into().map_err(|_| "bad window key")?);
            let (ts, component, stream, task, values): Record = rmp_serde::from_slice(&v)
                .map_err(|e| format!("window tuple does not decode: {e}"))?;
            let Some(meta) = self.metas.get(&(component.clone(), stream.clone())) else {
                continue;
            };
            let tuple = Tuple::new(
                meta.clone(),
                TaskId(task),
                values,
                MessageId::untracked(),
                None,
            );
            self.manager.add(ts, Held { tuple, key });
            self.next_key = self.next_key.max(key + 1);
        }
        self.time.set_size(self.manager.len());
        Ok(())
    }

    fn advance(&mut self, to: i64, out: &mut OutputCollector<'_>) {
        let Self {
            bolt,
            manager,
            store,
            epoch,
            ..
        } = self;
        manager.advance(to, |fired| {
            if !fired.events.is_empty() {
                let window = TupleWindow::of(&fired);
                let mut watching = WatchingOutput {
                    out,
                    failed: &mut epoch.failed,
                };
                let mut out = OutputCollector::new(&mut watching);
                bolt.execute(&window, &mut WindowCollector::new(&mut out, &[]));
            }
            if let Some(store) = store.as_mut() {
                for h in &fired.expired {
                    store.delete(key_bytes(h.key));
                }
            }
        });
        self.time.set_size(self.manager.len());
    }

    /// Adds an admitted data tuple to the window.
    fn add(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        let manager = &self.manager;
        let Some(ts) = self.time.admit(tuple, |ts| manager.is_late(ts), out) else {
            return;
        };
        let key = self.next_key;
        self.next_key += 1;
        let record: Record = (
            ts,
            tuple.source_component().as_str().to_owned(),
            tuple.source_stream().as_str().to_owned(),
            tuple.source_task().0,
            tuple.values().clone(),
        );
        let Some(store) = self.store.as_mut() else {
            out.fail(tuple);
            return;
        };
        match rmp_serde::to_vec(&record) {
            Ok(bytes) => store.put(key_bytes(key), bytes),
            Err(e) => {
                out.report_error(&format!("window tuple does not encode: {e}"));
                out.fail(tuple);
                return;
            }
        }
        let held = Held {
            tuple: tuple.clone(),
            key,
        };
        self.manager.add(ts, held);
        let id = out.take_ack_id(tuple);
        self.epoch.held.add(&id);
        if let Some(to) = self.time.due(ts, true) {
            self.advance(to, out);
        }
    }

    fn step(&mut self, c: CheckpointTuple, acks: Vec<u8>, initialized: bool) -> Result<(), String> {
        let Some(store) = &mut self.store else {
            return Err(format!("state store is not open: {}", self.opener.error));
        };
        match c.action {
            Action::Prepare => store.prepare(c.txid, acks).map_err(|e| e.to_string()),
            Action::Commit => store.commit(c.txid).map_err(|e| e.to_string()),
            Action::Rollback => {
                store.rollback().map_err(|e| e.to_string())?;
                if initialized {
                    self.restore()?;
                }
                Ok(())
            }
            Action::InitState if !initialized => self.restore(),
            Action::InitState => Ok(()),
        }
    }
}

impl<B: WindowedBolt> Bolt for PersistentWindowedBoltExecutor<B> {
    fn prepare(&mut self, context: &TopologyContext) {
        self.time.prepare(context);
        self.epoch.prepare(context);
        let me = context.spec().components.get(context.this_component_id());
        for input in me.map(|c| c.inputs.as_slice()).unwrap_or_default() {
            let source = context.spec().components.get(&input.component);
            let Some(def) = source.and_then(|s| s.streams.get(&input.stream)) else {
                continue;
            };
            let meta = StreamMeta {
                component: ComponentId::from(input.component.as_str()),
                stream: StreamId::from(input.stream.as_str()),
                fields: def.fields.clone(),
            };
            self.metas.insert(
                (input.component.0.clone(), input.stream.0.clone()),
                Arc::new(meta),
            );
        }
        self.store = self.opener.open(context, &mut self.epoch);
        self.bolt.prepare(context);
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            self.epoch.keep_alive(out);
            if let Some(to) = self.time.due(self.time.now_ms(), false) {
                if self.epoch.initialized() {
                    self.advance(to, out);
                }
            }
            return;
        }
        let Some(c) = CheckpointTuple::read(tuple) else {
            if tuple.source_stream().as_str() == CHECKPOINT_STREAM {
                out.ack(tuple);
            } else if self.epoch.admit(tuple) {
                self.add(tuple, out);
            }
            return;
        };
        if self.store.is_none() {
            self.store = self.opener.retry(&mut self.epoch);
        }
        for t in self.epoch.take_stale(c) {
            self.add(&t, out);
        }
        // The step needs the whole executor: take the epoch out meanwhile.
        let mut epoch = std::mem::replace(&mut self.epoch, Epoch::new());
        let run = epoch.on_checkpoint(c, tuple, out, |acks, initialized| {
            self.step(c, acks, initialized)
        });
        self.epoch = epoch;
        for t in run {
            self.add(&t, out);
        }
    }

    fn cleanup(&mut self) {
        self.bolt.cleanup()
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.bolt.declare_output_fields(declarer);
        self.time.declare_late_stream(declarer);
        declarer.declare_stream(CHECKPOINT_STREAM, CHECKPOINT_FIELDS);
    }
}
