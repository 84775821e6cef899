//! [`KafkaSpout`]: reads Kafka topics into a topology (Storm's
//! `KafkaSpout`).

use super::client::{client_config, describe};
use super::committer::Committer;
use super::config::{BadRecord, KafkaSpoutConfig};
use super::discovery::{self, Discovered};
use super::metrics::PartitionGauges;
use super::tracker::{Failed, Polled, RecordTracker};
use super::translator::KafkaRecord;
use super::{ProcessingGuarantee, TopicPartition};
use crossbeam_channel::{Receiver, Sender};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use squall_topology_api::{
    Counter, FailReason, OutputFieldsDeclarer, Spout, SpoutOutputCollector, TopologyContext, Value,
    Values,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The same error is reported to the task's errors at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// How long `close` waits for its last commit.
const CLOSE_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A spout reading Kafka topics (Storm's `KafkaSpout`).
///
/// Each task reads its share of the subscription's partitions (dealt
/// round robin in task order, Storm's `RoundRobinManualPartitioner`, and
/// dealt again as partitions appear), starting where
/// [`KafkaSpoutConfig::first_poll`] says. Each record becomes a tuple
/// through the [`RecordTranslator`](super::RecordTranslator), with the
/// message id `[topic, partition, offset]` under `AtLeastOnce`. Acked
/// offsets are committed to the consumer group every
/// `offset_commit_period_ms`, only up to the lowest offset still in
/// flight, so Kafka's own tools show the group's lag and a restart
/// resumes after what was fully processed; failed records are emitted
/// again after the [`RetryBackoff`](super::RetryBackoff) delay, and given
/// up (counted in `kafkaSpout/givenUp`) after its retries.
///
/// `next_tuple` never blocks: records are polled with a zero timeout;
/// commits go to a committer thread per task (under `AtMostOnce`, records
/// are emitted once their commit succeeded); listing partitions, reading
/// group offsets and watermarks happen on a helper thread per task.
/// `deactivate` commits, `close` commits and waits up to 5 s. Errors
/// (an unreachable broker, a missing topic, a failed commit, a record the
/// translator rejects) go to the task's errors and the log, naming the
/// brokers and topic; the spout keeps retrying.
///
/// Metrics: Storm's per-partition offsets (see [`super::metrics`]), and
/// the counters `kafkaSpout/badRecords`, `kafkaSpout/givenUp` and
/// `kafkaSpout/commitFailures`.
pub struct KafkaSpout {
    config: KafkaSpoutConfig,
    run: Option<Running>,
}

impl std::fmt::Debug for KafkaSpout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSpout")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Running {
    consumer: BaseConsumer,
    committer: Option<Committer>,
    tracker: RecordTracker,
    discovered: Receiver<Discovered>,
    helper: Option<(Sender<()>, JoinHandle<()>)>,
    gauges: Arc<PartitionGauges>,
    started: Instant,
    last_commit: Instant,
    /// Untracked guarantees: the next offset to commit per partition.
    positions: BTreeMap<TopicPartition, i64>,
    /// `AtMostOnce`: records whose commit is in flight, and records polled
    /// since, waiting for the next commit.
    committing: Vec<(String, Values)>,
    polled: Vec<(String, Values)>,
    reports: Vec<String>,
    reported: HashMap<String, Instant>,
    bad_records: Counter,
    given_up: Counter,
    commit_failures: Counter,
}

impl KafkaSpout {
    /// A spout reading as `config` says; connects when its task opens.
    pub fn new(config: KafkaSpoutConfig) -> Self {
        Self { config, run: None }
    }

    fn now_ms(run: &Running) -> u64 {
        run.started.elapsed().as_millis() as u64
    }
}

/// The message id of the record at `offset` of `topic`-`partition`.
fn message_id(topic: &str, partition: i32, offset: i64) -> Value {
    Value::List(vec![
        topic.into(),
        i64::from(partition).into(),
        offset.into(),
    ])
}

/// The record a message id names.
fn parse_message_id(id: &Value) -> Option<(TopicPartition, i64)> {
    match id.as_list()? {
        [topic, partition, offset] => Some((
            TopicPartition::new(topic.as_str()?, i32::try_from(partition.as_i64()?).ok()?),
            offset.as_i64()?,
        )),
        _ => None,
    }
}

impl Running {
    fn report(&mut self, collector: &mut SpoutOutputCollector<'_>) {
        for message in std::mem::take(&mut self.reports) {
            let now = Instant::now();
            if self
                .reported
                .get(&message)
                .is_some_and(|at| now.duration_since(*at) < REPORT_EVERY)
            {
                continue;
            }
            tracing::warn!(target: "squall::kafka", "{message}");
            collector.report_error(&message);
            self.reported.insert(message, now);
        }
    }

    fn take_discoveries(&mut self) {
        while let Ok(found) = self.discovered.try_recv() {
            self.reports.extend(found.errors);
            if found.assign.is_empty() {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            for (tp, offset) in &found.assign {
                if let Err(e) =
                    tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                {
                    self.reports
                        .push(format!("cannot assign {tp}: {}", describe(&e)));
                    continue;
                }
                tracing::info!(target: "squall::kafka", "reading {tp} from offset {offset}");
                self.tracker.assign(tp.clone(), *offset);
                self.gauges.set_committed(tp, *offset);
            }
            if let Err(e) = self.consumer.incremental_assign(&tpl) {
                self.reports
                    .push(format!("cannot assign partitions: {}", describe(&e)));
            }
        }
    }

    fn take_commit_results(&mut self, guarantee: ProcessingGuarantee) -> bool {
        let mut committed = false;
        let results: Vec<Result<(), String>> = match &self.committer {
            Some(c) => c.results.try_iter().collect(),
            None => Vec::new(),
        };
        for result in results {
            match result {
                Ok(()) => committed = true,
                Err(e) => {
                    self.commit_failures.inc();
                    self.reports.push(format!("offset commit failed: {e}"));
                    if guarantee.commits_before_emit() {
                        // Commit the same records again.
                        self.polled.splice(0..0, self.committing.drain(..));
                    }
                }
            }
        }
        committed
    }

    /// What may be committed now (recorded as committed).
    fn committable(&mut self, guarantee: ProcessingGuarantee) -> Vec<(TopicPartition, i64)> {
        let offsets: Vec<(TopicPartition, i64)> = if guarantee.tracks_records() {
            let (commits, resumed) = self.tracker.commits();
            if !resumed.is_empty() {
                let _ = self.consumer.resume(&list(&resumed));
            }
            commits
        } else {
            self.positions
                .iter()
                .map(|(tp, o)| (tp.clone(), *o))
                .collect()
        };
        for (tp, offset) in &offsets {
            self.gauges.set_committed(tp, *offset);
        }
        offsets
    }

    /// Commits what may be committed, on the committer thread.
    fn commit(&mut self, guarantee: ProcessingGuarantee) {
        let offsets = self.committable(guarantee);
        if let (false, Some(c)) = (offsets.is_empty(), &self.committer) {
            c.commit(offsets);
        }
    }

    fn seek(&mut self, tp: &TopicPartition, offset: i64) {
        if let Err(e) = self.consumer.seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            Duration::ZERO,
        ) {
            self.reports
                .push(format!("cannot seek {tp} to {offset}: {}", describe(&e)));
        }
    }
}

fn list(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    tpl
}

impl Spout for KafkaSpout {
    fn open(&mut self, context: &TopologyContext) {
        let group = self
            .config
            .group_for(context.topology_name(), &context.this_component_id().0);
        let properties = self.config.client_properties(&group);
        let commit_metadata = format!("squall topology {}", context.topology_name());
        let task_id = context.this_task_id().0;
        let committer = match Committer::start(
            &properties,
            commit_metadata.clone(),
            format!("kafka-commit-{task_id}"),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(target: "squall::kafka",
                        "cannot create a Kafka client for {}: {e}", self.config.bootstrap_servers);
                None
            }
        };
        let consumer: BaseConsumer = match client_config(&properties).create() {
            Ok(c) => c,
            Err(e) => {
                // A bad property: nothing can be read; the error says why.
                tracing::error!(target: "squall::kafka",
                    "cannot create a Kafka consumer for {}: {}",
                    self.config.bootstrap_servers, describe(&e));
                return;
            }
        };
        let registry = context.metric_registry();
        let gauges = Arc::new(PartitionGauges::new(registry.clone()));
        let (discovered_tx, discovered) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let task = discovery::Task {
            config: self.config.clone(),
            group,
            commit_metadata: commit_metadata.clone(),
            task_index: context.this_task_index(),
            tasks: context.this_component_tasks().len(),
            gauges: gauges.clone(),
        };
        let helper = std::thread::Builder::new()
            .name(format!("kafka-spout-{task_id}"))
            .spawn(move || discovery::run(task, discovered_tx, stop_rx))
            .ok()
            .map(|h| (stop_tx, h));
        let now = Instant::now();
        self.run = Some(Running {
            consumer,
            committer,
            tracker: RecordTracker::new(self.config.retry, self.config.max_uncommitted_offsets),
            discovered,
            helper,
            gauges,
            started: now,
            last_commit: now,
            positions: BTreeMap::new(),
            committing: Vec::new(),
            polled: Vec::new(),
            reports: Vec::new(),
            reported: HashMap::new(),
            bad_records: registry.counter("kafkaSpout/badRecords"),
            given_up: registry.counter("kafkaSpout/givenUp"),
            commit_failures: registry.counter("kafkaSpout/commitFailures"),
        });
    }

    fn close(&mut self) {
        let guarantee = self.config.guarantee;
        if let Some(mut run) = self.run.take() {
            let last = if guarantee.commits_before_emit() {
                Vec::new()
            } else {
                run.committable(guarantee)
            };
            if let Some(c) = run.committer.take() {
                for outcome in c.finish(last, CLOSE_COMMIT_TIMEOUT) {
                    if let Err(e) = outcome {
                        tracing::warn!(target: "squall::kafka", "offset commit failed: {e}");
                    }
                }
            }
            if let Some((stop, handle)) = run.helper.take() {
                drop(stop);
                let _ = handle.join();
            }
        }
    }

    fn deactivate(&mut self) {
        let guarantee = self.config.guarantee;
        if let Some(run) = &mut self.run {
            if !guarantee.commits_before_emit() {
                run.commit(guarantee);
            }
        }
    }

    fn next_tuple(&mut self, collector: &mut SpoutOutputCollector<'_>) {
        let config = &self.config;
        let Some(run) = &mut self.run else {
            return;
        };
        let guarantee = config.guarantee;
        run.take_discoveries();
        let committed = run.take_commit_results(guarantee);
        if guarantee.commits_before_emit() {
            if committed {
                for (stream, values) in run.committing.drain(..) {
                    collector.emit_stream(&stream, values, None);
                }
            }
        } else if run.last_commit.elapsed() >= Duration::from_millis(config.offset_commit_period_ms)
        {
            run.last_commit = Instant::now();
            run.commit(guarantee);
        }
        let now = KafkaSpout::now_ms(run);
        for (tp, offset) in run.tracker.due_seeks(now) {
            run.seek(&tp, offset);
            let _ = run.consumer.resume(&list(std::slice::from_ref(&tp)));
        }
        let mut current: Option<TopicPartition> = None;
        // The last emitted offset of `current`, for its gauge.
        let mut latest_emitted: Option<i64> = None;
        for _ in 0..config.max_poll_records {
            let message = match run.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => {
                    run.reports.push(format!(
                        "Kafka at {}: {}",
                        config.bootstrap_servers,
                        describe(&e)
                    ));
                    break;
                }
                Some(Ok(m)) => m,
            };
            let offset = message.offset();
            let tp = match &mut current {
                Some(tp) if tp.partition == message.partition() && tp.topic == message.topic() => {
                    tp
                }
                slot => {
                    if let (Some(tp), Some(o)) = (slot.as_ref(), latest_emitted.take()) {
                        run.gauges.set_emitted(tp, o);
                    }
                    slot.insert(TopicPartition::new(message.topic(), message.partition()))
                }
            };
            if guarantee.tracks_records() {
                match run.tracker.polled(tp, offset, now) {
                    Polled::Skip => continue,
                    Polled::SeekBackAndPause => {
                        let tp = tp.clone();
                        run.seek(&tp, offset);
                        let _ = run.consumer.pause(&list(std::slice::from_ref(&tp)));
                        continue;
                    }
                    Polled::Emit => {}
                }
            } else {
                run.positions.insert(tp.clone(), offset + 1);
            }
            let record = KafkaRecord::of(&message);
            match config.translator.translate(&record) {
                Ok(Some((stream, values))) => match guarantee {
                    ProcessingGuarantee::AtLeastOnce => {
                        let id = message_id(&tp.topic, tp.partition, offset);
                        collector.emit_stream(stream, values, Some(id));
                        latest_emitted = Some(offset);
                    }
                    ProcessingGuarantee::AtMostOnce => {
                        run.polled.push((stream.to_owned(), values));
                    }
                    ProcessingGuarantee::NoGuarantee => {
                        collector.emit_stream(stream, values, None);
                    }
                },
                Ok(None) => {
                    if guarantee.tracks_records() {
                        run.tracker.acked(tp, offset);
                    }
                }
                Err(e) => {
                    run.bad_records.inc();
                    run.reports.push(format!("skipping {e}"));
                    if guarantee.tracks_records() {
                        match config.bad_record {
                            BadRecord::Skip => run.tracker.acked(tp, offset),
                            BadRecord::Fail => {
                                if run.tracker.failed(tp, offset, now) == Failed::GivenUp {
                                    run.given_up.inc();
                                }
                            }
                        }
                    }
                }
            }
        }
        if let (Some(tp), Some(o)) = (&current, latest_emitted) {
            run.gauges.set_emitted(tp, o);
        }
        if guarantee.commits_before_emit() && run.committing.is_empty() && !run.polled.is_empty() {
            run.committing = std::mem::take(&mut run.polled);
            run.commit(guarantee);
        }
        run.report(collector);
    }

    fn ack(&mut self, msg_id: Value) {
        let Some(run) = &mut self.run else {
            return;
        };
        if let Some([topic, partition, offset]) = msg_id.as_list() {
            if let (Some(t), Some(p), Some(o)) =
                (topic.as_str(), partition.as_i64(), offset.as_i64())
            {
                run.tracker.acked_in(t, p as i32, o);
            }
        }
    }

    fn fail(&mut self, msg_id: Value, reason: FailReason) {
        let Some(run) = &mut self.run else {
            return;
        };
        let Some((tp, offset)) = parse_message_id(&msg_id) else {
            return;
        };
        let now = KafkaSpout::now_ms(run);
        if run.tracker.failed(&tp, offset, now) == Failed::GivenUp {
            run.given_up.inc();
            run.reports.push(format!(
                "giving up {tp}@{offset} after {} retries (last: {reason})",
                self.config.retry.max_retries
            ));
        }
    }

    fn declare_output_fields(&self, declarer: &mut OutputFieldsDeclarer) {
        for (stream, fields) in self.config.translator.streams() {
            declarer.declare_stream(&stream, fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_names_its_record() {
        let id = message_id("lines", 3, 42);
        assert_eq!(
            parse_message_id(&id),
            Some((TopicPartition::new("lines", 3), 42))
        );
        assert_eq!(parse_message_id(&Value::from(7i64)), None);
    }
}
