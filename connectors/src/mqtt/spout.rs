//! [`MqttSpout`]: MQTT messages into a topology, at least once.

use super::MqttBroker;
use crossbeam_channel::{Receiver, Sender};
use rumqttc::{Client, Event, Packet, Publish, QoS};
use squall_topology_api::{
    FailReason, OutputFieldsDeclarer, Spout, SpoutOutputCollector, TopologyContext, Value, Values,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// An [`MqttSpout`]'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSpoutConfig {
    /// The broker.
    pub broker: MqttBroker,
    /// Topic filters subscribed to with QoS 1 (`devices/+/telemetry`).
    pub topics: Vec<String>,
    /// Client ids are `<client_id>-<task index>`: the same for a task
    /// across restarts, so its persistent session (and what it did not
    /// acknowledge) is found again.
    pub client_id: String,
    /// Messages received and not yet emitted, at most (default 1000).
    pub buffer: usize,
}

impl MqttSpoutConfig {
    /// Subscribes to `topics` on `broker` as `client_id`.
    pub fn new(broker: MqttBroker, client_id: &str, topics: &[&str]) -> Self {
        Self {
            broker,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            client_id: client_id.to_owned(),
            buffer: 1000,
        }
    }
}

/// What the connection thread hands the task.
enum FromBroker {
    Message(Publish),
    Error(String),
}

struct Running {
    client: Client,
    messages: Receiver<FromBroker>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Messages emitted and not yet acked, by message id.
    pending: HashMap<u64, Publish>,
    retry: VecDeque<u64>,
    next_id: u64,
}

/// A spout subscribing to MQTT topics (Storm's `MqttSpout`).
///
/// Each task connects as `<client_id>-<task index>` with a persistent
/// session (clean session off) and subscribes with QoS 1. Each message is
/// emitted as `[topic, payload]` (payload as text when it is UTF-8, else
/// bytes) with a message id; its PUBACK is sent only when its tuple tree
/// completed, so a message whose tree failed or timed out is emitted
/// again, and messages not acknowledged when the worker died are sent
/// again by the broker to the task's next connection (at least once).
/// The broker must allow enough unacknowledged messages in flight per
/// client (Mosquitto's `max_inflight_messages`, 20 by default) to keep the
/// topology busy.
///
/// The connection runs on a helper thread per task, which reconnects on
/// its own; `next_tuple` never waits. Errors are reported naming the
/// broker.
pub struct MqttSpout {
    config: MqttSpoutConfig,
    run: Option<Running>,
}

impl std::fmt::Debug for MqttSpout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSpout")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MqttSpout {
    /// A spout reading as `config` says.
    pub fn new(config: MqttSpoutConfig) -> Self {
        Self { config, run: None }
    }
}

fn payload(p: &Publish) -> Value {
    match std::str::from_utf8(&p.payload) {
        Ok(s) => Value::from(s),
        Err(_) => Value::Bytes(p.payload.to_vec()),
    }
}

/// Drives the connection: forwards messages, subscribes on each connect.
fn drive(
    mut connection: rumqttc::Connection,
    client: Client,
    topics: Vec<String>,
    broker: String,
    out: Sender<FromBroker>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Err(_) => {}
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                backoff = Duration::from_millis(100);
                for t in &topics {
                    if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                        let _ = out.send(FromBroker::Error(format!(
                            "{broker}: subscribe to {t}: {e}"
                        )));
                    }
                }
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                if out.send(FromBroker::Message(p)).is_err() {
                    return;
                }
            }
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let _ = out.try_send(FromBroker::Error(format!("{broker}: {e}")));
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Spout for MqttSpout {
    fn open(&mut self, context: &TopologyContext) {
        let id = format!("{}-{}", self.config.client_id, context.this_task_index());
        let mut options = self.config.broker.options(&id, false);
        options.set_manual_acks(true);
        let (client, connection) = Client::new(options, 1000);
        let (tx, messages) = crossbeam_channel::bounded(self.config.buffer.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, topics, broker, flag) = (
            client.clone(),
            self.config.topics.clone(),
            self.config.broker.name(),
            stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("mqtt-spout-{}", context.this_task_id()))
            .spawn(move || drive(connection, c, topics, broker, tx, flag))
            .expect("spawn the MQTT connection thread");
        self.run = Some(Running {
            client,
            messages,
            stop,
            thread: Some(thread),
            pending: HashMap::new(),
            retry: VecDeque::new(),
            next_id: 0,
        });
    }

    fn next_tuple(&mut self, collector: &mut SpoutOutputCollector<'_>) {
        let Some(run) = &mut self.run else { return };
        while let Some(id) = run.retry.pop_front() {
            if let Some(p) = run.pending.get(&id) {
                collector.emit_with_id(
                    Values::from_iter([Value::from(p.topic.as_str()), payload(p)]),
                    Value::Int(id as i64),
                );
            }
        }
        for _ in 0..self.config.buffer {
            match run.messages.try_recv() {
                Ok(FromBroker::Message(p)) => {
                    let id = run.next_id;
                    run.next_id += 1;
                    collector.emit_with_id(
                        Values::from_iter([Value::from(p.topic.as_str()), payload(&p)]),
                        Value::Int(id as i64),
                    );
                    run.pending.insert(id, p);
                }
                Ok(FromBroker::Error(e)) => collector.report_error(&e),
                Err(_) => break,
            }
        }
    }

    fn ack(&mut self, msg_id: Value) {
        let Some(run) = &mut self.run else { return };
        let Some(id) = msg_id.as_i64() else { return };
        if let Some(p) = run.pending.remove(&(id as u64)) {
            // Dropped if the request queue is full: the broker then sends
            // the message again on the next connection (at least once).
            let _ = run.client.try_ack(&p);
        }
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        let Some(run) = &mut self.run else { return };
        if let Some(id) = msg_id.as_i64() {
            if run.pending.contains_key(&(id as u64)) {
                run.retry.push_back(id as u64);
            }
        }
    }

    fn close(&mut self) {
        if let Some(mut run) = self.run.take() {
            // The acks queued go out before the DISCONNECT; a connection
            // that cannot send it within a second is dropped.
            let _ = run.client.try_disconnect();
            if let Some(t) = run.thread.take() {
                for _ in 0..100 {
                    if t.is_finished() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                run.stop.store(true, Ordering::Relaxed);
                let _ = t.join();
            }
        }
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        declarer.declare(["topic", "payload"]);
    }
}
