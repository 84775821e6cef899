//! [`ShellBolt`]: a bolt run by a subprocess (Storm's `ShellBolt`).

use crate::managed::Managed;
use crate::process::{Event, ToChild, Watch};
use crate::protocol::{tuple_id, ProtocolError, ShellMsg};
use crate::Declaration;
use crossbeam_channel::{Select, TrySendError};
use rustc_hash::FxHashMap;
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TaskId, TopologyContext, Tuple, Values,
    DEFAULT_STREAM,
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
            self.managed.ensure_running(collector, false);
        }
    }

    fn command(
        &mut self,
        msg: ShellMsg,
        collector: &mut OutputCollector<'_>,
    ) -> Result<(), ProtocolError> {
        match msg.command.as_str() {
            "ack" | "fail" => {
                let input = msg.id.as_ref().and_then(tuple_id);
                match input.and_then(|id| self.inputs.remove(&id)) {
                    Some(t) if msg.command == "ack" => collector.ack(&t),
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
            "sync" => {}
            _ if self.managed.shared_command(&msg, collector) => {}
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
    ) -> Result<(), ProtocolError> {
        let mut anchors = Vec::new();
        for id in msg.anchors.as_ref().map(|a| a.ids()).unwrap_or_default() {
            match tuple_id(id).and_then(|k| self.inputs.get(&k)) {
                Some(t) => anchors.push(t),
                None => {
                    return Err(ProtocolError::Violation(format!(
                        "an emit is anchored to {id}, which is not a tuple the subprocess holds (acked, failed or never sent)"
                    )))
                }
            }
        }
        let stream = msg.stream.as_deref().unwrap_or(DEFAULT_STREAM);
        let values = Values::from(msg.tuple.unwrap_or_default());
        match msg.task.filter(|t| *t > 0) {
            Some(task) => collector.emit_direct(TaskId(task as u32), stream, &anchors, values),
            None => {
                collector.emit_anchored_stream(stream, &anchors, values);
                self.managed
                    .reply_task_ids(msg.need_task_ids, collector.last_targets());
            }
        }
        Ok(())
    }

    /// Queues `write` (input `id`) for the child while its queue is full,
    /// handling the child's messages meanwhile; a child that dies fails
    /// every input it held, this one included.
    fn queue_when_room(&mut self, id: u64, write: ToChild, collector: &mut OutputCollector<'_>) {
        let mut write = Some(write);
        while let Some(w) = write.take() {
            let Some(p) = self.managed.current() else {
                return;
            };
            let (tuples, events) = (p.tuples().clone(), p.events().clone());
            let mut sel = Select::new();
            let send = sel.send(&tuples);
            sel.recv(&events);
            let op = sel.select();
            let event = if op.index() == send {
                match op.send(&tuples, w) {
                    Ok(()) => return,
                    // The writer stopped (broken stdin); the reader's end
                    // event follows. Keep the tuple until it does.
                    Err(e) => {
                        write = Some(e.into_inner());
                        events.recv()
                    }
                }
            } else {
                write = Some(w);
                op.recv(&events)
            };
            if let Ok(event) = event {
                self.handle(event, collector);
            }
            if !self.inputs.contains_key(&id) {
                return;
            }
        }
    }
}

impl Bolt for ShellBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let mut run = Run {
            managed: Managed::new(
                self.decl.command.clone(),
                self.decl.metrics.clone(),
                "bolt",
                context,
                Watch::Heartbeats,
            ),
            inputs: FxHashMap::default(),
            next_id: 1,
        };
        run.managed.start_early();
        self.run = Some(Box::new(run));
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let run = self.run.as_mut().expect("prepare runs before execute");
        run.pump(collector);
        if !run.managed.ensure_running(collector, true) {
            collector.fail(tuple);
            return;
        }
        let Some(p) = run.managed.current() else {
            return;
        };
        let id = run.next_id;
        run.next_id += 1;
        run.inputs.insert(id, tuple.clone());
        let write = ToChild::Tuple {
            id,
            tuple: tuple.clone(),
        };
        match p.tuples().try_send(write) {
            Ok(()) => {}
            Err(TrySendError::Full(w) | TrySendError::Disconnected(w)) => {
                run.queue_when_room(id, w, collector)
            }
        }
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        let run = self.run.as_mut().expect("prepare runs before wake");
        run.pump(collector);
        if run.managed.current().is_none() {
            run.managed.ensure_running(collector, false);
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
