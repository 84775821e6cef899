//! [`ShellBolt`]: a bolt run by a subprocess (Storm's `ShellBolt`).

use crate::managed::Managed;
use crate::metrics::Registered;
use crate::process::{Event, ToChild, Watch};
use crate::protocol::{id_key, ShellMsg};
use crate::Declaration;
use crossbeam_channel::Select;
use rustc_hash::FxHashMap;
use squall_topology_api::{
    Bolt, MetricUpdate, OutputCollector, OutputFieldsDeclarer, TaskId, TopologyContext, Tuple,
    Values, DEFAULT_STREAM, SYSTEM_COMPONENT,
};

/// A bolt whose logic runs in a subprocess speaking Storm's multilang
/// protocol (asynchronous: tuples go to the child as they arrive; its
/// emits, acks and fails come back whenever it sends them).
///
/// - Each input tuple is sent as `{id, comp, stream, task, tuple}` and
///   kept until the child acks or fails its id; `execute` waits while
///   `topology.shellbolt.max.pending` (default 100) tuples are queued
///   for the child.
/// - A heartbeat tuple (stream `__heartbeat`, task -1) goes every second;
///   a child silent for `topology.subprocess.timeout.secs` is killed.
/// - A child that exits, hangs or breaks the protocol is reported (task
///   errors and log, with its stderr tail), every tuple it held is failed
///   so its spout tuples replay, and a new child is started.
pub struct ShellBolt {
    decl: Declaration,
    run: Option<Box<Run>>,
}

crate::shell_builder!(ShellBolt, "bolt");

struct Run {
    managed: Managed,
    metrics: Registered,
    /// Input tuples the child holds, by the id it was given.
    inputs: FxHashMap<u64, Tuple>,
    next_id: u64,
}

impl Run {
    /// Handles every event already waiting.
    fn pump(&mut self, collector: &mut OutputCollector<'_>) {
        while let Some(event) = self.managed.try_event() {
            self.handle(event, collector);
        }
    }

    /// Starts a child if none runs (after waiting out a restart delay when
    /// `wait`); `false` if none could be started.
    fn ensure_running(&mut self, collector: &mut OutputCollector<'_>, wait: bool) -> bool {
        if let Some(e) = self.managed.unreported.take() {
            collector.report_error(&e);
        }
        let running = if wait {
            self.managed.running_after_delay()
        } else {
            self.managed.running()
        };
        match running {
            Ok(p) => p.is_some(),
            Err(e) => {
                tracing::error!("{e}");
                collector.report_error(&e);
                false
            }
        }
    }

    fn handle(&mut self, event: Event, collector: &mut OutputCollector<'_>) {
        let outcome = match event {
            Event::Msg(msg) => self.command(*msg, collector),
            Event::Ended(cause) => Err(cause),
        };
        if let Err(cause) = outcome {
            let e = self.managed.fail(cause);
            collector.report_error(&e);
            for (_, tuple) in self.inputs.drain() {
                collector.fail(&tuple);
            }
            self.ensure_running(collector, false);
        }
    }

    fn input_id(id: Option<&serde_json::Value>) -> Option<u64> {
        id.and_then(id_key).and_then(|k| k.parse().ok())
    }

    fn command(
        &mut self,
        msg: ShellMsg,
        collector: &mut OutputCollector<'_>,
    ) -> Result<(), crate::protocol::ProtocolError> {
        match msg.command.as_str() {
            "ack" | "fail" => {
                let ack = msg.command == "ack";
                match Self::input_id(msg.id.as_ref()).and_then(|id| self.inputs.remove(&id)) {
                    Some(t) if ack => collector.ack(&t),
                    Some(t) => collector.fail(&t),
                    None => collector.report_error(&format!(
                        "shell bolt `{}`: {} of an unknown or already acked/failed tuple id {}",
                        self.managed.owner.component,
                        msg.command,
                        msg.id
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "(none)".into())
                    )),
                }
            }
            "emit" => self.emit(msg, collector)?,
            "log" => self.managed.log(&msg),
            "error" => {
                let text = msg.msg.unwrap_or_default();
                tracing::error!(component = %self.managed.owner.component, task = self.managed.owner.task, "shell process exception: {text}");
                collector.report_error(&format!("Shell Process Exception: {text}"));
            }
            "metrics" => match self.metrics.update(&msg) {
                Ok((name, update)) => match update {
                    MetricUpdate::Add(by) => collector.incr_metric(&name, by),
                    MetricUpdate::Set(v) => collector.set_metric(&name, v),
                },
                Err(e) => collector.report_error(&format!(
                    "shell bolt `{}`: {e}",
                    self.managed.owner.component
                )),
            },
            "sync" => {}
            other => collector.report_error(&format!(
                "shell bolt `{}`: unknown command {other:?}",
                self.managed.owner.component
            )),
        }
        Ok(())
    }

    fn emit(
        &mut self,
        msg: ShellMsg,
        collector: &mut OutputCollector<'_>,
    ) -> Result<(), crate::protocol::ProtocolError> {
        let mut anchors = Vec::new();
        for id in msg.anchors.as_ref().map(|a| a.ids()).unwrap_or_default() {
            match Self::input_id(Some(id)).and_then(|k| self.inputs.get(&k)) {
                Some(t) => anchors.push(t),
                None => {
                    return Err(crate::protocol::ProtocolError::Malformed {
                        detail: format!("an emit is anchored to {id}, which is not a tuple the subprocess holds (acked, failed or never sent)"),
                        excerpt: String::new(),
                    })
                }
            }
        }
        let stream = msg.stream.as_deref().unwrap_or(DEFAULT_STREAM);
        let values = Values::from(msg.tuple.unwrap_or_default());
        match msg.task.filter(|t| *t > 0) {
            Some(task) => {
                collector.emit_direct(TaskId(task as u32), stream, &anchors, values);
            }
            None => {
                collector.emit_anchored_stream(stream, &anchors, values);
                if msg.need_task_ids.unwrap_or(true) {
                    let ids: Vec<u32> = collector.last_targets().iter().map(|t| t.0).collect();
                    if let Some(p) = self.managed.current() {
                        p.send_control(&ids);
                    }
                }
            }
        }
        Ok(())
    }
}

impl Bolt for ShellBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let mut run = Run {
            managed: Managed::new(
                self.decl.command.clone(),
                "bolt",
                context,
                Watch::Heartbeats,
            ),
            metrics: self.decl.metrics.clone(),
            inputs: FxHashMap::default(),
            next_id: 1,
        };
        run.managed.start_early();
        self.run = Some(Box::new(run));
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let run = self.run.as_mut().expect("prepare runs before execute");
        run.pump(collector);
        if !run.ensure_running(collector, true) {
            collector.fail(tuple);
            return;
        }
        let id = run.next_id;
        run.next_id += 1;
        run.inputs.insert(id, tuple.clone());
        let system = tuple.source_component().as_str() == SYSTEM_COMPONENT;
        let mut write = Some(ToChild::Tuple {
            id,
            comp: tuple.source_component().as_str().to_owned(),
            stream: tuple.source_stream().as_str().to_owned(),
            task: if system {
                -1
            } else {
                i64::from(tuple.source_task().0)
            },
            values: tuple.values().clone(),
        });
        // Queue the tuple, handling the child's messages while the queue is
        // full; a child that dies meanwhile fails every input it held
        // (this one included).
        while let Some(w) = write.take() {
            let Some(p) = run.managed.current() else {
                return;
            };
            let (tuples, events) = (p.tuples().clone(), p.events().clone());
            let mut sel = Select::new();
            let send = sel.send(&tuples);
            sel.recv(&events);
            let op = sel.select();
            if op.index() == send {
                if let Err(e) = op.send(&tuples, w) {
                    // The writer stopped (broken stdin); the reader's end
                    // event follows. Keep the tuple until it does.
                    write = Some(e.into_inner());
                    if let Ok(event) = events.recv() {
                        run.handle(event, collector);
                    }
                    if !run.inputs.contains_key(&id) {
                        return;
                    }
                }
            } else {
                write = Some(w);
                if let Ok(event) = op.recv(&events) {
                    run.handle(event, collector);
                }
                if !run.inputs.contains_key(&id) {
                    return;
                }
            }
        }
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        let run = self.run.as_mut().expect("prepare runs before wake");
        run.pump(collector);
        if run.managed.current().is_none() {
            run.ensure_running(collector, false);
        }
    }

    fn cleanup(&mut self) {
        if let Some(run) = &mut self.run {
            run.managed.stop();
        }
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.decl.outputs.declare(declarer);
    }
}
