//! The spout's helper thread: lists the subscription's partitions, finds
//! where each new partition of the task starts (its group commit and the
//! first-poll strategy), and reads every partition's watermarks for the
//! offset metrics. Everything here may block on the network, so none of it
//! runs on the executor thread.

use super::client::{client_config, describe};
use super::config::{KafkaSpoutConfig, Subscription};
use super::metrics::PartitionGauges;
use super::{partitions_for_task, Commit, FetchStart, TopicPartition};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long one broker request of the helper may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What one round of the helper found.
#[derive(Debug, Default)]
pub(crate) struct Discovered {
    /// This task's new partitions and the offset each starts at.
    pub assign: Vec<(TopicPartition, i64)>,
    /// What went wrong, each naming the brokers and topic.
    pub errors: Vec<String>,
}

/// What the helper needs to know of its task.
pub(crate) struct Task {
    pub config: KafkaSpoutConfig,
    pub group: String,
    /// The metadata this topology's commits carry.
    pub commit_metadata: String,
    pub task_index: usize,
    pub tasks: usize,
    pub gauges: Arc<PartitionGauges>,
}

/// Runs rounds every partition refresh period until `stop` closes.
pub(crate) fn run(task: Task, out: Sender<Discovered>, stop: Receiver<()>) {
    let consumer: BaseConsumer =
        match client_config(&task.config.client_properties(&task.group)).create() {
            Ok(c) => c,
            Err(e) => {
                let errors = vec![format!(
                    "cannot create a Kafka client for {}: {e}",
                    task.config.bootstrap_servers
                )];
                let _ = out.send(Discovered {
                    errors,
                    ..Discovered::default()
                });
                return;
            }
        };
    let mut started: HashSet<TopicPartition> = HashSet::new();
    let period = Duration::from_millis(task.config.partition_refresh_period_ms.max(10));
    loop {
        let found = round(&task, &consumer, &mut started);
        if (!found.assign.is_empty() || !found.errors.is_empty()) && out.send(found).is_err() {
            return;
        }
        match stop.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

fn round(
    task: &Task,
    consumer: &BaseConsumer,
    started: &mut HashSet<TopicPartition>,
) -> Discovered {
    let mut found = Discovered::default();
    let all = list_partitions(&task.config, consumer, &mut found.errors);
    let mine = partitions_for_task(&all, task.task_index, task.tasks);
    let watermarks = read_watermarks(task, consumer, &mine, &mut found.errors);
    let new: Vec<&TopicPartition> = mine.iter().filter(|tp| !started.contains(*tp)).collect();
    if new.is_empty() {
        return found;
    }
    let commits = match read_commits(consumer, &new) {
        Ok(c) => c,
        Err(e) => {
            found.errors.push(format!(
                "cannot read consumer group {}'s offsets from Kafka at {}: {}",
                task.group,
                task.config.bootstrap_servers,
                describe(&e)
            ));
            return found;
        }
    };
    for tp in new {
        let commit = commits.get(tp).map(|(offset, metadata)| Commit {
            offset: *offset,
            by_this_topology: *metadata == task.commit_metadata,
        });
        let start = match task.config.first_poll.fetch_start(commit) {
            FetchStart::Offset(o) => Some(o),
            FetchStart::Beginning => watermarks.get(tp).map(|w| w.0),
            FetchStart::End => watermarks.get(tp).map(|w| w.1),
        };
        // Without its watermarks a partition waits for the next round.
        if let Some(offset) = start {
            started.insert(tp.clone());
            found.assign.push((tp.clone(), offset));
        }
    }
    found
}

/// The subscription's partitions, with an error for each topic that could
/// not be listed.
pub(crate) fn list_partitions(
    config: &KafkaSpoutConfig,
    consumer: &BaseConsumer,
    errors: &mut Vec<String>,
) -> Vec<TopicPartition> {
    let brokers = &config.bootstrap_servers;
    let topics: Vec<Option<&str>> = match &config.subscription {
        Subscription::Topics(t) => t.iter().map(|t| Some(t.as_str())).collect(),
        Subscription::Pattern(_) => vec![None],
    };
    let mut all = Vec::new();
    for topic in topics {
        let what = topic.map_or_else(|| config.subscription.to_string(), str::to_owned);
        let metadata = match consumer.fetch_metadata(topic, REQUEST_TIMEOUT) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!(
                    "cannot reach Kafka at {brokers} for topic {what}: {}",
                    describe(&e)
                ));
                continue;
            }
        };
        for t in metadata.topics() {
            let wanted = match &config.subscription {
                Subscription::Topics(_) => true,
                Subscription::Pattern(p) => {
                    !t.name().starts_with("__")
                        && p.find(t.name())
                            .is_some_and(|m| m.start() == 0 && m.end() == t.name().len())
                }
            };
            if !wanted {
                continue;
            }
            if let Some(err) = t.error() {
                errors.push(format!(
                    "topic {} is not available on Kafka at {brokers}: {}",
                    t.name(),
                    rdkafka::error::RDKafkaErrorCode::from(err)
                ));
                continue;
            }
            all.extend(
                t.partitions()
                    .iter()
                    .map(|p| TopicPartition::new(t.name(), p.id())),
            );
        }
    }
    all
}

/// Each partition's (low, high) watermarks, also stored in the gauges.
fn read_watermarks(
    task: &Task,
    consumer: &BaseConsumer,
    mine: &[TopicPartition],
    errors: &mut Vec<String>,
) -> HashMap<TopicPartition, (i64, i64)> {
    let marks = watermarks(&task.config.bootstrap_servers, consumer, mine, errors);
    for (tp, (low, high)) in &marks {
        task.gauges.set_watermarks(tp, *low, *high);
    }
    marks
}

/// Each partition's (low, high) watermarks, with an error for each that
/// could not be read from `brokers`.
pub(crate) fn watermarks(
    brokers: &str,
    consumer: &BaseConsumer,
    partitions: &[TopicPartition],
    errors: &mut Vec<String>,
) -> HashMap<TopicPartition, (i64, i64)> {
    let mut marks = HashMap::new();
    for tp in partitions {
        match consumer.fetch_watermarks(&tp.topic, tp.partition, REQUEST_TIMEOUT) {
            Ok(w) => {
                marks.insert(tp.clone(), w);
            }
            Err(e) => errors.push(format!(
                "cannot read the offsets of {tp} from Kafka at {brokers}: {}",
                describe(&e)
            )),
        }
    }
    marks
}

/// The group's commits (offset, metadata) of `partitions` that have one.
fn read_commits(
    consumer: &BaseConsumer,
    partitions: &[&TopicPartition],
) -> rdkafka::error::KafkaResult<HashMap<TopicPartition, (i64, String)>> {
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let committed = consumer.committed_offsets(tpl, REQUEST_TIMEOUT)?;
    let mut commits = HashMap::new();
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            commits.insert(
                TopicPartition::new(e.topic(), e.partition()),
                (o, e.metadata().to_owned()),
            );
        }
    }
    Ok(commits)
}
