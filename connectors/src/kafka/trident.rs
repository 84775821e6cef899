//! [`KafkaTridentSpout`]: Kafka as a Trident source (Storm's
//! `KafkaTridentSpoutOpaque`), each batch a per-partition offset range.

use super::client::{client_config, describe};
use super::config::{BadRecord, KafkaSpoutConfig};
use super::discovery::{list_partitions, watermarks};
use super::translator::KafkaRecord;
use super::{partitions_for_task, FirstPollOffsetStrategy, TopicPartition};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use squall_topology_api::{ExecuteError, Fields, TopologyContext, Value};
use squall_trident::spout::{BatchCoordinator, Emitter, SpoutKind, TransactionalSpout};
use squall_trident::{BatchId, TridentCollector};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the coordinator's helper lists partitions and watermarks.
const WATCH_PERIOD: Duration = Duration::from_millis(200);

/// How long an emitter may take to read one batch's range of a partition
/// before it fails the batch (it is replayed).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A batch's range of one partition: records `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    /// The partition.
    pub tp: TopicPartition,
    /// The first offset.
    pub start: i64,
    /// One past the last offset.
    pub end: i64,
}

/// A batch's metadata: `[[topic, partition, start, end], …]`.
pub fn ranges_meta(ranges: &[PartitionRange]) -> Value {
    Value::List(
        ranges
            .iter()
            .map(|r| {
                Value::List(vec![
                    r.tp.topic.as_str().into(),
                    i64::from(r.tp.partition).into(),
                    r.start.into(),
                    r.end.into(),
                ])
            })
            .collect(),
    )
}

/// The ranges of a batch's metadata; malformed entries are left out.
pub fn meta_ranges(meta: &Value) -> Vec<PartitionRange> {
    let Some(list) = meta.as_list() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| match r.as_list()? {
            [t, p, s, e] => Some(PartitionRange {
                tp: TopicPartition::new(t.as_str()?, i32::try_from(p.as_i64()?).ok()?),
                start: s.as_i64()?,
                end: e.as_i64()?,
            }),
            _ => None,
        })
        .collect()
}

/// The ranges of the batch after `prev` (Storm's opaque Kafka coordinator
/// and emitter, decided in one place): each partition continues where the
/// previous batch ended, a partition new to the metadata starts at its
/// earliest offset (or its latest, under `Latest` strategies), and takes
/// at most `max_records` records up to its high watermark. `watermarks`
/// are the (low, high) offsets of every partition now.
pub fn next_ranges(
    prev: Option<&Value>,
    watermarks: &BTreeMap<TopicPartition, (i64, i64)>,
    first_poll: FirstPollOffsetStrategy,
    max_records: i64,
) -> Vec<PartitionRange> {
    let prev: BTreeMap<TopicPartition, i64> = prev
        .map(meta_ranges)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.tp, r.end))
        .collect();
    let mut ranges: Vec<PartitionRange> = Vec::new();
    // Partitions of the previous batch the watermarks miss stay, empty.
    for (tp, end) in &prev {
        if !watermarks.contains_key(tp) {
            ranges.push(PartitionRange {
                tp: tp.clone(),
                start: *end,
                end: *end,
            });
        }
    }
    for (tp, &(low, high)) in watermarks {
        let start = match prev.get(tp) {
            Some(&end) => end.max(low),
            None => match first_poll {
                FirstPollOffsetStrategy::Latest | FirstPollOffsetStrategy::UncommittedLatest => {
                    high
                }
                _ => low,
            },
        };
        let end = high.clamp(start, start.saturating_add(max_records.max(1)));
        ranges.push(PartitionRange {
            tp: tp.clone(),
            start,
            end,
        });
    }
    ranges.sort_by(|a, b| a.tp.cmp(&b.tp));
    ranges
}

/// Kafka as a Trident spout (Storm's `KafkaTridentSpoutOpaque`): the
/// coordinator makes each batch's metadata a range of offsets per
/// partition of the subscription, continuing from the previous batch; each
/// emitter task reads its share of the partitions (dealt as
/// [`partitions_for_task`]) and emits exactly those records, translated by
/// the config's translator (the first stream's fields; its stream names
/// are not used). Opaque by default: a replayed txid starts where the
/// previous batch ended but may reach further (pair it with opaque state);
/// [`KafkaTridentSpout::transactional`] stores each txid's ranges and
/// replays them unchanged. Offsets are not committed to Kafka: the
/// coordinator's metadata is the spout's position.
#[derive(Clone)]
pub struct KafkaTridentSpout {
    config: KafkaSpoutConfig,
    kind: SpoutKind,
    max_batch_records: i64,
    committed: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
}

impl std::fmt::Debug for KafkaTridentSpout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTridentSpout")
            .field("config", &self.config)
            .field("kind", &self.kind)
            .field("max_batch_records", &self.max_batch_records)
            .finish()
    }
}

impl KafkaTridentSpout {
    /// An opaque spout reading as `config` says (its subscription,
    /// first-poll strategy, translator and properties; commits and retries
    /// do not apply), at most 10,000 records per partition per batch.
    pub fn opaque(config: KafkaSpoutConfig) -> Self {
        Self {
            config,
            kind: SpoutKind::Opaque,
            max_batch_records: 10_000,
            committed: Arc::default(),
        }
    }

    /// Each partition's end offset in the last committed batch, as the
    /// coordinator of this process saw it (in LocalCluster: the whole
    /// topology's progress; under `squall jar` read the coordinator's
    /// metadata with `squall::trident::committed` and [`meta_ranges`]).
    pub fn committed_offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replays each txid's stored ranges unchanged.
    pub fn transactional(mut self) -> Self {
        self.kind = SpoutKind::Transactional;
        self
    }

    /// At most `n` records per partition per batch.
    pub fn with_max_batch_records(mut self, n: i64) -> Self {
        self.max_batch_records = n.max(1);
        self
    }
}

impl TransactionalSpout for KafkaTridentSpout {
    fn output_fields(&self) -> Fields {
        self.config
            .translator
            .streams()
            .into_iter()
            .next()
            .map(|(_, f)| f)
            .unwrap_or_default()
    }

    fn kind(&self) -> SpoutKind {
        self.kind
    }

    fn coordinator(&self, _context: &TopologyContext) -> Box<dyn BatchCoordinator> {
        let watched = Arc::new(Mutex::new(None));
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let (config, w) = (self.config.clone(), watched.clone());
        let helper = std::thread::Builder::new()
            .name("kafka-trident-coordinator".to_owned())
            .spawn(move || watch(&config, &w, &stopped))
            .ok();
        Box::new(KafkaCoordinator {
            spout: self.clone(),
            watched,
            helper: helper.map(|h| (stop, h)),
            last: BTreeMap::new(),
            open: BTreeMap::new(),
        })
    }

    fn emitter(&self, _context: &TopologyContext) -> Box<dyn Emitter> {
        Box::new(KafkaEmitter {
            spout: self.clone(),
            readers: BTreeMap::new(),
        })
    }
}

type Watermarks = BTreeMap<TopicPartition, (i64, i64)>;

/// Lists the subscription's partitions and their watermarks every
/// [`WATCH_PERIOD`] into `watched`, until `stop` closes.
fn watch(config: &KafkaSpoutConfig, watched: &Mutex<Option<Watermarks>>, stop: &Receiver<()>) {
    // Never joins the group: assigned by hand, never commits.
    let props = config.client_properties("squall-trident");
    let consumer: BaseConsumer = match client_config(&props).create() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "squall::kafka", "cannot create a Kafka client for {}: {}",
                config.bootstrap_servers, describe(&e));
            return;
        }
    };
    loop {
        let mut errors = Vec::new();
        let all = list_partitions(config, &consumer, &mut errors);
        let marks = watermarks(&config.bootstrap_servers, &consumer, &all, &mut errors);
        for e in errors {
            tracing::warn!(target: "squall::kafka", "{e}");
        }
        if !all.is_empty() && marks.len() == all.len() {
            *watched.lock().unwrap_or_else(|p| p.into_inner()) = Some(marks.into_iter().collect());
        }
        match stop.recv_timeout(WATCH_PERIOD) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

struct KafkaCoordinator {
    spout: KafkaTridentSpout,
    watched: Arc<Mutex<Option<Watermarks>>>,
    helper: Option<(Sender<()>, JoinHandle<()>)>,
    /// Each partition's end in the last metadata made.
    last: BTreeMap<TopicPartition, i64>,
    /// The ranges of batches not yet committed, by txid.
    open: BTreeMap<u64, Vec<PartitionRange>>,
}

impl KafkaCoordinator {
    fn watermarks(&self) -> Option<Watermarks> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for KafkaCoordinator {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.helper.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl BatchCoordinator for KafkaCoordinator {
    fn initialize_transaction(&mut self, txid: u64, prev: Option<&Value>) -> Value {
        let marks = self.watermarks().unwrap_or_default();
        let ranges = next_ranges(
            prev,
            &marks,
            self.spout.config.first_poll,
            self.spout.max_batch_records,
        );
        self.last = ranges.iter().map(|r| (r.tp.clone(), r.end)).collect();
        let meta = ranges_meta(&ranges);
        self.open.insert(txid, ranges);
        meta
    }

    fn success(&mut self, txid: u64) {
        let later = self.open.split_off(&(txid + 1));
        let done = std::mem::replace(&mut self.open, later);
        if let Some(ranges) = done.get(&txid) {
            let mut committed = self
                .spout
                .committed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for r in ranges {
                committed.insert(r.tp.clone(), r.end);
            }
        }
    }

    fn is_ready(&mut self, _txid: u64) -> bool {
        let Some(marks) = self.watermarks() else {
            return false;
        };
        marks
            .iter()
            .any(|(tp, &(low, high))| match self.last.get(tp) {
                Some(&end) => high > end,
                None => high > low,
            })
    }
}

/// One consumer per partition read, each assigned its partition alone:
/// consecutive batches continue its fetch instead of starting another.
struct KafkaEmitter {
    spout: KafkaTridentSpout,
    /// Each partition's consumer and the next offset it will deliver
    /// (`None`: it must be sought first).
    readers: BTreeMap<TopicPartition, (Option<BaseConsumer>, Option<i64>)>,
}

/// A consumer (outside any group), made on first use.
fn consumer<'c>(
    slot: &'c mut Option<BaseConsumer>,
    config: &KafkaSpoutConfig,
) -> Result<&'c BaseConsumer, ExecuteError> {
    if slot.is_none() {
        let props = config.client_properties("squall-trident");
        let c: BaseConsumer = client_config(&props).create().map_err(|e| {
            format!(
                "cannot create a Kafka consumer for {}: {}",
                config.bootstrap_servers,
                describe(&e)
            )
        })?;
        *slot = Some(c);
    }
    Ok(slot.as_ref().expect("made above"))
}

impl KafkaEmitter {
    /// Emits the records of `range`.
    fn read(
        &mut self,
        range: &PartitionRange,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        let brokers = self.spout.config.bootstrap_servers.clone();
        let PartitionRange { tp, start, end } = range;
        let (slot, cursor) = self.readers.entry(tp.clone()).or_default();
        let continues = *cursor == Some(*start);
        *cursor = None;
        let config = &self.spout.config;
        let consumer = consumer(slot, config)?;
        if !continues {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*start))
                .and_then(|()| consumer.assign(&tpl))
                .map_err(|e| {
                    format!("cannot read {tp} from Kafka at {brokers}: {}", describe(&e))
                })?;
        }
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut next = *start;
        while next < *end {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Err(format!(
                    "timed out reading {tp} [{start}, {end}) from Kafka at {brokers}: at {next}"
                )
                .into());
            };
            let message = match consumer.poll(left.min(Duration::from_millis(100))) {
                None => continue,
                Some(Err(e)) => {
                    return Err(
                        format!("reading {tp} from Kafka at {brokers}: {}", describe(&e)).into(),
                    )
                }
                Some(Ok(m)) => m,
            };
            let offset = message.offset();
            if offset < next || message.partition() != tp.partition || message.topic() != tp.topic {
                continue;
            }
            next = offset + 1;
            if offset >= *end {
                // Past the range (offsets skipped by compaction): the next
                // batch starts with it, so read it again then.
                next = offset;
                break;
            }
            let record = KafkaRecord::of(&message);
            match config.translator.translate(&record) {
                Ok(Some((_, values))) => out.emit(values),
                Ok(None) => {}
                Err(e) => match config.bad_record {
                    BadRecord::Skip => tracing::warn!(target: "squall::kafka", "skipping {e}"),
                    BadRecord::Fail => return Err(e.into()),
                },
            }
        }
        if next == *end {
            *cursor = Some(next);
        }
        Ok(())
    }
}

impl Emitter for KafkaEmitter {
    fn emit_batch(
        &mut self,
        _batch: BatchId,
        meta: &Value,
        task_index: usize,
        tasks: usize,
        out: &mut TridentCollector,
    ) -> Result<(), ExecuteError> {
        let ranges = meta_ranges(meta);
        let all: Vec<TopicPartition> = ranges.iter().map(|r| r.tp.clone()).collect();
        let mine = partitions_for_task(&all, task_index, tasks);
        for range in ranges
            .iter()
            .filter(|r| r.end > r.start && mine.contains(&r.tp))
        {
            self.read(range, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn batches_continue_where_the_previous_ended_up_to_the_watermark() {
        let marks = BTreeMap::from([(tp(0), (0, 25)), (tp(1), (5, 8))]);
        let first = next_ranges(None, &marks, FirstPollOffsetStrategy::Earliest, 10);
        assert_eq!(
            first,
            [
                PartitionRange {
                    tp: tp(0),
                    start: 0,
                    end: 10
                },
                PartitionRange {
                    tp: tp(1),
                    start: 5,
                    end: 8
                },
            ]
        );
        let meta = ranges_meta(&first);
        assert_eq!(meta_ranges(&meta), first);
        let second = next_ranges(Some(&meta), &marks, FirstPollOffsetStrategy::Earliest, 10);
        assert_eq!(
            second[0],
            PartitionRange {
                tp: tp(0),
                start: 10,
                end: 20
            }
        );
        assert_eq!(
            second[1],
            PartitionRange {
                tp: tp(1),
                start: 8,
                end: 8
            },
            "caught up"
        );
    }

    #[test]
    fn new_partitions_start_by_the_first_poll_strategy_and_lost_ones_stay_empty() {
        let prev = ranges_meta(&[PartitionRange {
            tp: tp(9),
            start: 0,
            end: 4,
        }]);
        let marks = BTreeMap::from([(tp(0), (3, 7))]);
        let latest = next_ranges(Some(&prev), &marks, FirstPollOffsetStrategy::Latest, 10);
        assert_eq!(
            latest,
            [
                PartitionRange {
                    tp: tp(0),
                    start: 7,
                    end: 7
                },
                PartitionRange {
                    tp: tp(9),
                    start: 4,
                    end: 4
                },
            ]
        );
        let earliest = next_ranges(Some(&prev), &marks, FirstPollOffsetStrategy::default(), 10);
        assert_eq!(
            earliest[0],
            PartitionRange {
                tp: tp(0),
                start: 3,
                end: 7
            }
        );
        assert!(meta_ranges(&Value::from(3i64)).is_empty());
    }
}
