//! [`KafkaBolt`]: writes tuples to Kafka (Storm's `KafkaBolt`).

use super::client::{client_config, describe};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use squall_topology_api::{
    Bolt, OutputCollector, OutputFieldsDeclarer, TaskWaker, TopologyContext, Tuple, Value,
};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long `cleanup` waits for writes in flight.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A tuple's record: its key (`None`: a null key) and value.
pub type KeyValue = (Option<Vec<u8>>, Vec<u8>);

type MapFn = dyn Fn(&Tuple) -> Result<KeyValue, String> + Send + Sync;
type TopicFn = dyn Fn(&Tuple) -> Option<String> + Send + Sync;

/// A [`KafkaBolt`]'s settings. Build with [`KafkaBoltConfig::new`] and the
/// `with_` methods.
#[derive(Clone)]
pub struct KafkaBoltConfig {
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    topic: Arc<TopicFn>,
    mapper: Arc<MapFn>,
    /// Ack each tuple as soon as its write is handed to the client,
    /// without waiting for the broker (Storm's `fireAndForget`).
    pub fire_and_forget: bool,
    /// Writes awaiting the broker's acknowledgement before `execute` waits
    /// (default 10,000).
    pub max_in_flight: usize,
    /// More librdkafka producer properties (`acks`, `compression.type`,
    /// `message.timeout.ms`, …); they win over the bolt's own.
    pub properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaBoltConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBoltConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("fire_and_forget", &self.fire_and_forget)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// A value's bytes in a record: text as UTF-8, bytes as they are, numbers
/// and booleans as their text; `None` for null, lists and maps.
fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Str(s) => Some(s.as_bytes().to_vec()),
        Value::Bytes(b) => Some(b.clone()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Float(f) => Some(f.to_string().into_bytes()),
        Value::Bool(b) => Some(b.to_string().into_bytes()),
        Value::Null | Value::List(_) | Value::Map(_) => None,
    }
}

impl KafkaBoltConfig {
    /// Writes every tuple to `topic`, its field `key` (if it has one) as
    /// the key and its field `message` as the value (Storm's
    /// `DefaultTopicSelector` and `FieldNameBasedTupleToKafkaMapper`).
    pub fn new(bootstrap_servers: &str, topic: &str) -> Self {
        let topic = topic.to_owned();
        Self {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topic: Arc::new(move |_| Some(topic.clone())),
            mapper: Arc::new(|t| Self::by_field_names(t, "key", "message")),
            fire_and_forget: false,
            max_in_flight: 10_000,
            properties: BTreeMap::new(),
        }
    }

    /// The record of `tuple` from its fields `key` (optional) and `value`.
    ///
    /// # Errors
    /// A message naming the field when `value` is missing or has no bytes.
    pub fn by_field_names(tuple: &Tuple, key: &str, value: &str) -> Result<KeyValue, String> {
        let k = tuple.value_by_field(key).ok().and_then(value_bytes);
        let v = tuple.value_by_field(value).map_err(|e| e.to_string())?;
        let v = value_bytes(v).ok_or_else(|| {
            format!(
                "field {value} is a {}, not text, bytes or a number",
                v.type_name()
            )
        })?;
        Ok((k, v))
    }

    /// Takes key and value from fields `key` and `value` (Storm's
    /// `FieldNameBasedTupleToKafkaMapper(key, value)`).
    pub fn with_field_names(mut self, key: &str, value: &str) -> Self {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.mapper = Arc::new(move |t| Self::by_field_names(t, &key, &value));
        self
    }

    /// Maps each tuple to its record with `mapper` (an error fails the
    /// tuple and is reported).
    pub fn with_mapper(
        mut self,
        mapper: impl Fn(&Tuple) -> Result<KeyValue, String> + Send + Sync + 'static,
    ) -> Self {
        self.mapper = Arc::new(mapper);
        self
    }

    /// Picks each tuple's topic with `selector`; `None` skips the tuple
    /// (acked, logged), as Storm's `KafkaTopicSelector` returning null.
    pub fn with_topic_selector(
        mut self,
        selector: impl Fn(&Tuple) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.topic = Arc::new(selector);
        self
    }

    /// Acks without waiting for the broker.
    pub fn with_fire_and_forget(mut self, yes: bool) -> Self {
        self.fire_and_forget = yes;
        self
    }

    /// At most `n` writes awaiting the broker.
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Sets the librdkafka producer property `key`.
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        self.properties.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// A write's outcome: its id and the error, if it failed.
type Delivery = (usize, Result<(), String>);

/// The producer's callbacks: each delivery report goes to the bolt and
/// wakes its task.
struct BoltClient {
    deliveries: Sender<Delivery>,
    waker: Option<TaskWaker>,
}

impl ClientContext for BoltClient {}

impl ProducerContext for BoltClient {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(describe(e)),
        };
        let _ = self.deliveries.send((id, outcome));
        if let Some(w) = &self.waker {
            w.wake();
        }
    }
}

struct Running {
    producer: ThreadedProducer<BoltClient>,
    deliveries: Receiver<Delivery>,
    in_flight: HashMap<usize, Tuple>,
    next_id: usize,
}

/// A bolt writing each tuple to a Kafka topic (Storm's `KafkaBolt`).
///
/// A tuple is acked once the brokers acknowledged its record and failed
/// (so its spout replays it) when the write failed, reported with the
/// brokers and topic; at most `max_in_flight` writes await the brokers,
/// beyond that `execute` waits for acknowledgements (back pressure). With
/// `fire_and_forget` a tuple is acked as soon as the client took it.
/// Unless set, librdkafka's `message.timeout.ms` is the topology's
/// message timeout, so a write is given up no later than its tuple tree.
/// Tick tuples are acked and ignored. Declares no output.
pub struct KafkaBolt {
    config: KafkaBoltConfig,
    run: Option<Running>,
}

impl fmt::Debug for KafkaBolt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBolt")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBolt {
    /// A bolt writing as `config` says; connects when its task starts.
    pub fn new(config: KafkaBoltConfig) -> Self {
        Self { config, run: None }
    }
}

impl Running {
    fn settle(&mut self, (id, outcome): Delivery, collector: &mut OutputCollector<'_>) {
        let Some(tuple) = self.in_flight.remove(&id) else {
            if let Err(e) = outcome {
                collector.report_error(&format!("write failed: {e}"));
            }
            return;
        };
        match outcome {
            Ok(()) => collector.ack(&tuple),
            Err(e) => {
                collector.report_error(&format!("write failed: {e}"));
                collector.fail(&tuple);
            }
        }
    }

    fn settle_ready(&mut self, collector: &mut OutputCollector<'_>) {
        while let Ok(d) = self.deliveries.try_recv() {
            self.settle(d, collector);
        }
    }

    /// Waits up to 100 ms for one delivery report.
    fn settle_one(&mut self, collector: &mut OutputCollector<'_>) {
        match self.deliveries.recv_timeout(Duration::from_millis(100)) {
            Ok(d) => self.settle(d, collector),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }
}

impl Bolt for KafkaBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        let mut props = BTreeMap::from([
            (
                "bootstrap.servers".to_owned(),
                self.config.bootstrap_servers.clone(),
            ),
            ("acks".to_owned(), "all".to_owned()),
            (
                "message.timeout.ms".to_owned(),
                (context.config().message_timeout_secs.max(1) * 1000).to_string(),
            ),
        ]);
        props.extend(self.config.properties.clone());
        let (tx, deliveries) = crossbeam_channel::unbounded();
        let client = BoltClient {
            deliveries: tx,
            waker: context.waker().cloned(),
        };
        match client_config(&props).create_with_context::<_, ThreadedProducer<BoltClient>>(client) {
            Ok(producer) => {
                self.run = Some(Running {
                    producer,
                    deliveries,
                    in_flight: HashMap::new(),
                    next_id: 1,
                })
            }
            Err(e) => tracing::error!(target: "squall::kafka",
                "cannot create a Kafka producer for {}: {}",
                self.config.bootstrap_servers, describe(&e)),
        }
    }

    fn execute(&mut self, tuple: &Tuple, collector: &mut OutputCollector<'_>) {
        let Some(run) = &mut self.run else {
            collector.report_error(&format!(
                "no Kafka producer for {}",
                self.config.bootstrap_servers
            ));
            collector.fail(tuple);
            return;
        };
        if tuple.is_tick() {
            collector.ack(tuple);
            return;
        }
        run.settle_ready(collector);
        while run.in_flight.len() >= self.config.max_in_flight {
            run.settle_one(collector);
        }
        let Some(topic) = (self.config.topic)(tuple) else {
            tracing::warn!(target: "squall::kafka", "no topic for a tuple: skipped");
            collector.ack(tuple);
            return;
        };
        let (key, value) = match (self.config.mapper)(tuple) {
            Ok(kv) => kv,
            Err(e) => {
                collector.report_error(&format!("cannot write a tuple to topic {topic}: {e}"));
                collector.fail(tuple);
                return;
            }
        };
        let id = if self.config.fire_and_forget {
            0
        } else {
            let id = run.next_id;
            run.next_id = run.next_id.wrapping_add(1).max(1);
            id
        };
        let mut record = BaseRecord::with_opaque_to(&topic, id).payload(&value);
        if let Some(k) = &key {
            record = record.key(k);
        }
        loop {
            match run.producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    record = r;
                    run.settle_one(collector);
                }
                Err((e, _)) => {
                    collector.report_error(&format!(
                        "cannot write to topic {topic} on Kafka at {}: {}",
                        self.config.bootstrap_servers,
                        describe(&e)
                    ));
                    collector.fail(tuple);
                    return;
                }
            }
        }
        if self.config.fire_and_forget {
            collector.ack(tuple);
        } else {
            run.in_flight.insert(id, tuple.clone());
        }
    }

    fn wake(&mut self, collector: &mut OutputCollector<'_>) {
        if let Some(run) = &mut self.run {
            run.settle_ready(collector);
        }
    }

    fn cleanup(&mut self) {
        if let Some(run) = self.run.take() {
            let _ = run.producer.flush(FLUSH_TIMEOUT);
        }
    }

    fn declare_output_fields(&self, _declarer: &mut OutputFieldsDeclarer) {}
}
