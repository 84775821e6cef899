//! Blocking helpers around a Kafka cluster, for operators, examples and
//! tests: create topics, add partitions, write records, and read a
//! topic's end offsets and a consumer group's commits.

use super::client::{client_config, describe};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A failed request, naming the brokers and the topic or group.
#[derive(Debug, thiserror::Error)]
#[error("Kafka at {brokers}, {what}: {reason}")]
pub struct AdminError {
    /// The brokers asked.
    pub brokers: String,
    /// What was asked (`topic lines`, `group g`).
    pub what: String,
    /// What went wrong.
    pub reason: String,
}

fn error(brokers: &str, what: String, reason: impl Into<String>) -> AdminError {
    AdminError {
        brokers: brokers.to_owned(),
        what,
        reason: reason.into(),
    }
}

fn properties(brokers: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("bootstrap.servers".to_owned(), brokers.to_owned())])
}

fn admin(brokers: &str, what: &str) -> Result<AdminClient<DefaultClientContext>, AdminError> {
    client_config(&properties(brokers))
        .create()
        .map_err(|e| error(brokers, what.to_owned(), describe(&e)))
}

/// Creates `topic` with `partitions` partitions (replication 1).
///
/// # Errors
/// [`AdminError`] when the brokers cannot be reached or refuse (the topic
/// exists, say).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), AdminError> {
    let what = format!("creating topic {topic}");
    let client = admin(brokers, &what)?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures_executor::block_on(client.create_topics(&[new], &options))
        .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
    for r in results {
        r.map_err(|(_, code)| error(brokers, what.clone(), code.to_string()))?;
    }
    Ok(())
}

/// Grows `topic` to `total` partitions.
///
/// # Errors
/// [`AdminError`] when the brokers cannot be reached or refuse.
pub fn add_partitions(brokers: &str, topic: &str, total: usize) -> Result<(), AdminError> {
    let what = format!("growing topic {topic} to {total} partitions");
    let client = admin(brokers, &what)?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let new = NewPartitions::new(topic, total);
    let results = futures_executor::block_on(client.create_partitions(&[new], &options))
        .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
    for r in results {
        r.map_err(|(_, code)| error(brokers, what.clone(), code.to_string()))?;
    }
    Ok(())
}

/// A record to write: an optional key, the value, and an optional
/// partition (`None`: librdkafka's partitioner, by key).
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The key.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// The partition.
    pub partition: Option<i32>,
}

/// Writes `records` to `topic` and waits until the brokers acknowledged
/// every one (`acks=all`). With `one_per_request`, each record is its own
/// batch (slower; for brokers that report offsets per batch).
///
/// # Errors
/// [`AdminError`] when a record cannot be written.
pub fn produce<'a>(
    brokers: &str,
    topic: &str,
    records: impl IntoIterator<Item = Record<'a>>,
    one_per_request: bool,
) -> Result<u64, AdminError> {
    let what = format!("writing to topic {topic}");
    let mut props = properties(brokers);
    props.insert("acks".to_owned(), "all".to_owned());
    props.insert("linger.ms".to_owned(), "5".to_owned());
    if one_per_request {
        props.insert("batch.num.messages".to_owned(), "1".to_owned());
    }
    let producer: BaseProducer = client_config(&props)
        .create()
        .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
    let mut written = 0;
    for r in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(r.value);
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        let mut record = Some(record);
        while let Some(rec) = record.take() {
            match producer.send(rec) {
                Ok(()) => written += 1,
                Err((e, rec))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(10));
                    record = Some(rec);
                }
                Err((e, _)) => return Err(error(brokers, what, describe(&e))),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| error(brokers, what, describe(&e)))?;
    Ok(written)
}

fn consumer(brokers: &str, group: Option<&str>, what: &str) -> Result<BaseConsumer, AdminError> {
    let mut props = properties(brokers);
    if let Some(g) = group {
        props.insert("group.id".to_owned(), g.to_owned());
    }
    client_config(&props)
        .create()
        .map_err(|e| error(brokers, what.to_owned(), describe(&e)))
}

/// The partitions of `topic`, in order.
///
/// # Errors
/// [`AdminError`] when the brokers cannot be reached or the topic does
/// not exist.
pub fn partitions(brokers: &str, topic: &str) -> Result<Vec<i32>, AdminError> {
    let what = format!("topic {topic}");
    let c = consumer(brokers, None, &what)?;
    let md = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
    let t = md
        .topics()
        .first()
        .ok_or_else(|| error(brokers, what.clone(), "no metadata"))?;
    if let Some(e) = t.error() {
        return Err(error(
            brokers,
            what,
            rdkafka::types::RDKafkaErrorCode::from(e).to_string(),
        ));
    }
    let mut p: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    p.sort_unstable();
    Ok(p)
}

/// Each partition's end offset (the offset the next record will get):
/// partition → offset.
///
/// # Errors
/// [`AdminError`] when the brokers cannot be reached or the topic does
/// not exist.
pub fn end_offsets(brokers: &str, topic: &str) -> Result<BTreeMap<i32, i64>, AdminError> {
    let what = format!("end offsets of topic {topic}");
    let c = consumer(brokers, None, &what)?;
    let mut ends = BTreeMap::new();
    for p in partitions(brokers, topic)? {
        let (_, high) = c
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// Consumer group `group`'s committed offsets of `topic`: partition →
/// offset, for the partitions it committed.
///
/// # Errors
/// [`AdminError`] when the brokers cannot be reached or the topic does
/// not exist.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, AdminError> {
    let what = format!("group {group}'s offsets of topic {topic}");
    let c = consumer(brokers, Some(group), &what)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(brokers, topic)? {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| error(brokers, what, describe(&e)))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// A record read back by [`TopicReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
}

/// Reads every partition of a topic from its beginning, outside any
/// consumer group (to check what a topic holds).
pub struct TopicReader {
    consumer: BaseConsumer,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicReader")
    }
}

impl TopicReader {
    /// A reader of `topic`'s partitions as they are now.
    ///
    /// # Errors
    /// [`AdminError`] when the brokers cannot be reached or the topic does
    /// not exist.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, AdminError> {
        let what = format!("reading topic {topic}");
        let mut props = properties(brokers);
        props.insert("group.id".to_owned(), "squall-topic-reader".to_owned());
        props.insert("enable.auto.commit".to_owned(), "false".to_owned());
        let consumer: BaseConsumer = client_config(&props)
            .create()
            .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions(brokers, topic)? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| error(brokers, what.clone(), describe(&e)))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| error(brokers, what, describe(&e)))?;
        Ok(Self { consumer })
    }

    /// The records that arrive within `wait` (returns early once a poll
    /// comes back empty after some arrived).
    pub fn read(&self, wait: Duration) -> Vec<ReadRecord> {
        use rdkafka::message::Message;
        let deadline = std::time::Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) => out.push(ReadRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                }),
                Some(Err(_)) => {}
                None if !out.is_empty() => break,
                None => {}
            }
        }
        out
    }
}
