//! [`ShellSpout`]: a spout run by a subprocess (Storm's `ShellSpout`).

use crate::managed::Managed;
use crate::process::{Event, Watch};
use crate::protocol::{ProtocolError, ShellMsg, SpoutCommand};
use crate::Declaration;
use crossbeam_channel::RecvTimeoutError;
use squall_topology_api::{
    FailReason, OutputFieldsDeclarer, Spout, SpoutOutputCollector, TaskId, TopologyContext, Value,
    Values, DEFAULT_STREAM,
};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long `next_tuple` waits for the child's `sync` before returning
/// (a later call picks up what arrives after).
const NEXT_WAIT: Duration = Duration::from_millis(5);

/// A spout whose logic runs in a subprocess speaking Storm's multilang
/// protocol: `next`, `ack`, `fail`, `activate` and `deactivate` commands,
/// each answered by the child with emits and logs ended by `sync`.
///
/// Unlike Storm's, the executor does not block until each `sync`:
/// commands are written in order as they come, at most one `next` is
/// outstanding, and `next_tuple` waits at most 5 ms for its answer. While
/// a command is unanswered for `topology.subprocess.timeout.secs` the child
/// is taken as hung, killed, reported and restarted (as on exit or
/// malformed output). Tuples it emitted stay tracked; their `ack` / `fail`
/// go to the new child.
pub struct ShellSpout {
    decl: Declaration,
    run: Option<Box<Run>>,
}

crate::shell_builder!(ShellSpout, "spout");

struct Run {
    managed: Managed,
    active: bool,
    /// Commands sent and not yet answered by `sync`, oldest first; `true`
    /// for `next`.
    unanswered: VecDeque<bool>,
}

impl Run {
    /// Writes `command` (with message id `id`) to the child, if one runs.
    fn send(&mut self, command: &str, id: &serde_json::Value) {
        let Some(p) = self.managed.current() else {
            return;
        };
        p.send_control(&SpoutCommand { command, id });
        p.set_busy(true);
        self.unanswered.push_back(command == "next");
    }

    fn next_outstanding(&self) -> bool {
        self.unanswered.iter().any(|next| *next)
    }

    /// Starts a child if none runs (activating a new one if the topology
    /// is active); `false` if none could be started.
    fn ensure_running(&mut self, collector: &mut SpoutOutputCollector<'_>) -> bool {
        let fresh = self.managed.current().is_none();
        let running = self.managed.ensure_running(collector, false);
        if running && fresh && self.active {
            self.send("activate", &serde_json::json!(""));
        }
        running
    }

    fn handle(&mut self, event: Event, collector: &mut SpoutOutputCollector<'_>) {
        let outcome = match event {
            Event::Msg(msg) => self.command(*msg, collector),
            Event::Ended(cause) => Err(cause),
        };
        if let Err(cause) = outcome {
            let e = self.managed.fail(cause);
            collector.report_error(&e);
            self.unanswered.clear();
            self.ensure_running(collector);
        }
    }

    fn command(
        &mut self,
        msg: ShellMsg,
        collector: &mut SpoutOutputCollector<'_>,
    ) -> Result<(), ProtocolError> {
        match msg.command.as_str() {
            "sync" => {
                self.unanswered.pop_front();
                if self.unanswered.is_empty() {
                    if let Some(p) = self.managed.current() {
                        p.set_busy(false);
                    }
                }
            }
            "emit" => {
                let msg_id = match &msg.id {
                    None | Some(serde_json::Value::Null) => None,
                    Some(id) => Some(
                        serde_json::from_value::<Value>(id.clone())
                            .map_err(|e| ProtocolError::Violation(format!("emit id {id}: {e}")))?,
                    ),
                };
                let stream = msg.stream.as_deref().unwrap_or(DEFAULT_STREAM);
                let values = Values::from(msg.tuple.unwrap_or_default());
                match msg.task.filter(|t| *t > 0) {
                    Some(task) => {
                        collector.emit_direct(TaskId(task as u32), stream, values, msg_id)
                    }
                    None => {
                        collector.emit_stream(stream, values, msg_id);
                        self.managed
                            .reply_task_ids(msg.need_task_ids, collector.last_targets());
                    }
                }
            }
            _ if self.managed.shared_command(&msg, collector) => {}
            other => {
                return Err(ProtocolError::Violation(format!(
                    "unknown spout command {other:?}"
                )))
            }
        }
        Ok(())
    }
}

impl Spout for ShellSpout {
    fn open(&mut self, context: &TopologyContext) {
        let mut run = Run {
            managed: Managed::new(
                self.decl.command.clone(),
                self.decl.metrics.clone(),
                "spout",
                context,
                Watch::WhileBusy,
            ),
            active: false,
            unanswered: VecDeque::new(),
        };
        run.managed.start_early();
        self.run = Some(Box::new(run));
    }

    fn close(&mut self) {
        if let Some(run) = &mut self.run {
            run.managed.stop();
        }
    }

    fn activate(&mut self) {
        let run = self.run.as_mut().expect("open runs first");
        run.active = true;
        run.send("activate", &serde_json::json!(""));
    }

    fn deactivate(&mut self) {
        let run = self.run.as_mut().expect("open runs first");
        run.active = false;
        run.send("deactivate", &serde_json::json!(""));
    }

    fn next_tuple(&mut self, collector: &mut SpoutOutputCollector<'_>) {
        let run = self.run.as_mut().expect("open runs first");
        if !run.ensure_running(collector) {
            return;
        }
        while let Some(event) = run.managed.try_event() {
            run.handle(event, collector);
        }
        if run.active && !run.next_outstanding() {
            run.send("next", &serde_json::json!(""));
        }
        let deadline = Instant::now() + NEXT_WAIT;
        while run.next_outstanding() {
            let Some(p) = run.managed.current() else {
                return;
            };
            let events = p.events().clone();
            match events.recv_deadline(deadline) {
                Ok(event) => run.handle(event, collector),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn ack(&mut self, msg_id: Value) {
        let run = self.run.as_mut().expect("open runs first");
        run.send("ack", &serde_json::to_value(&msg_id).unwrap_or_default());
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        let run = self.run.as_mut().expect("open runs first");
        run.send("fail", &serde_json::to_value(&msg_id).unwrap_or_default());
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        self.decl.outputs.declare(declarer);
    }
}
