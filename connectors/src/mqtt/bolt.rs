//! [`MqttBolt`]: publishes tuples to MQTT (Storm's `MqttBolt`).

use super::MqttBroker;
use crate::sink::{Sink, Writer};
use rumqttc::{Client, Connection, Event, Outgoing, Packet, QoS};
use squall_topology_api::{Bolt, OutputCollector, OutputFieldsDeclarer, TopologyContext, Tuple};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a batch of publishes may wait for the broker's PUBACKs.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A message: topic, payload, retain flag.
pub type MqttMessage = (String, Vec<u8>, bool);

type MapFn = dyn Fn(&Tuple) -> Result<MqttMessage, String> + Send + Sync;

/// An [`MqttBolt`]'s settings.
#[derive(Clone)]
pub struct MqttBoltConfig {
    /// The broker.
    pub broker: MqttBroker,
    /// The client id is `<client_id>-<task id>`.
    pub client_id: String,
    /// Messages published per round of PUBACKs (default 100).
    pub max_batch: usize,
    mapper: Arc<MapFn>,
}

impl fmt::Debug for MqttBoltConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttBoltConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl MqttBoltConfig {
    /// Publishes each tuple's `topic` and `payload` fields (Storm's
    /// `MqttTupleMapper` over two fields).
    pub fn new(broker: MqttBroker, client_id: &str) -> Self {
        Self {
            broker,
            client_id: client_id.to_owned(),
            max_batch: 100,
            mapper: Arc::new(|t| {
                let topic = t.get_str_by_field("topic").map_err(|e| e.to_string())?;
                let v = t.value_by_field("payload").map_err(|e| e.to_string())?;
                let payload = match v {
                    squall_topology_api::Value::Bytes(b) => b.clone(),
                    squall_topology_api::Value::Str(s) => s.as_bytes().to_vec(),
                    other => serde_json::to_vec(other).map_err(|e| e.to_string())?,
                };
                Ok((topic.to_owned(), payload, false))
            }),
        }
    }

    /// Makes each tuple's message with `mapper` (an error fails the tuple).
    pub fn with_mapper(
        mut self,
        mapper: impl Fn(&Tuple) -> Result<MqttMessage, String> + Send + Sync + 'static,
    ) -> Self {
        self.mapper = Arc::new(mapper);
        self
    }
}

/// A bolt publishing each tuple to MQTT with QoS 1 (Storm's `MqttBolt`).
///
/// A tuple is acked once the broker's PUBACK for its message arrived, and
/// failed when the connection failed first (so its spout replays it) or
/// when the mapper rejected it. Publishing runs on the task's I/O thread,
/// which connects (and reconnects with backoff) on its own; a broker that
/// cannot be reached is reported by name. Tick tuples are acked and
/// ignored. Declares no output.
pub struct MqttBolt {
    config: MqttBoltConfig,
    sink: Option<Sink<MqttMessage>>,
}

impl fmt::Debug for MqttBolt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttBolt")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl MqttBolt {
    /// A bolt publishing as `config` says.
    pub fn new(config: MqttBoltConfig) -> Self {
        Self { config, sink: None }
    }
}

struct Publisher {
    broker: MqttBroker,
    client_id: String,
    conn: Option<(Client, Connection)>,
}

impl Publisher {
    fn fail(&mut self, e: impl fmt::Display) -> String {
        self.conn = None;
        format!("{}: {e}", self.broker.name())
    }
}

impl Writer for Publisher {
    type Job = MqttMessage;

    fn connect(&mut self) -> Result<(), String> {
        self.conn = None;
        let (client, mut conn) = Client::new(self.broker.options(&self.client_id, true), 1000);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{}: no CONNACK within 5 s", self.broker.name()));
            }
            match conn.recv_timeout(left) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => return Err(format!("{}: {e}", self.broker.name())),
            }
        }
        self.conn = Some((client, conn));
        Ok(())
    }

    fn write(&mut self, jobs: &[(Tuple, MqttMessage)]) -> Result<Vec<Result<(), String>>, String> {
        let Some((client, conn)) = &mut self.conn else {
            return Err("not connected".into());
        };
        let mut out = vec![Err("no PUBACK".to_owned()); jobs.len()];
        let mut valid = Vec::new();
        for (i, (_, (topic, payload, retain))) in jobs.iter().enumerate() {
            match client.try_publish(topic.clone(), QoS::AtLeastOnce, *retain, payload.clone()) {
                Ok(()) => valid.push(i),
                Err(e) => out[i] = Err(format!("topic {topic}: {e}")),
            }
        }
        // Publishes leave in order; each gets its packet id as it leaves.
        let mut waiting = valid.len();
        let mut leaving = valid.into_iter();
        let mut by_pkid: HashMap<u16, usize> = HashMap::new();
        let deadline = Instant::now() + PUBACK_TIMEOUT;
        while waiting > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.fail("no PUBACK within 10 s"));
            }
            match conn.recv_timeout(left) {
                Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => {
                    if let Some(i) = leaving.next() {
                        by_pkid.insert(pkid, i);
                    }
                }
                Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                    if let Some(i) = by_pkid.remove(&ack.pkid) {
                        out[i] = Ok(());
                        waiting -= 1;
                    }
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => return Err(self.fail(e)),
            }
        }
        Ok(out)
    }
}

impl Bolt for MqttBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let publisher = Publisher {
            broker: self.config.broker.clone(),
            client_id: format!("{}-{}", self.config.client_id, context.this_task_id()),
            conn: None,
        };
        self.sink = Some(Sink::start(
            &format!("mqtt-bolt-{}", context.this_task_id()),
            publisher,
            self.config.max_batch,
            10_000,
            context.waker().cloned(),
        ));
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let broker = &self.config.broker;
        crate::sink::execute(
            self.sink.as_mut(),
            tuple,
            collector,
            |t| (self.config.mapper)(t).map(Some),
            |e| format!("cannot publish a tuple to the {}: {e}", broker.name()),
        );
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        if let Some(sink) = &mut self.sink {
            sink.settle_ready(collector);
        }
    }

    fn cleanup(&mut self) {
        self.sink = None;
    }

    fn declare_output_fields(&self, _declarer: &mut OutputFieldsDeclarer) {}
}
