//! Kafka in LocalCluster against a real broker (tansu, one per test): the
//! spout's at-least-once commits, resuming from the group's offsets,
//! partitions added while running, retries with backoff, bad input, and
//! the bolt's acks with the broker frozen mid-run.

mod corpus;
mod kafka_support;

use kafka_support::Broker;
use squall::connectors::kafka::admin::TopicReader;
use squall::connectors::kafka::{
    admin, BadRecord, KafkaBolt, KafkaBoltConfig, KafkaSpout, KafkaSpoutConfig, RetryBackoff,
};
use squall::testing::wait_for;
use squall::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// (partition, offset) of every tuple a recorder saw, in order.
type Seen = Arc<Mutex<Vec<(i64, i64)>>>;

/// Records each tuple's partition and offset; fails the tuples `fail`
/// picks (by offset and how often that record was seen before), acks the
/// others.
struct Recorder {
    seen: Seen,
    fail: fn(i64, usize) -> bool,
}

impl Bolt for Recorder {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        // Partitions of topic growing-b count from 10.
        let topic = t.value_by_field("topic").unwrap().as_str().unwrap();
        let p = t.value_by_field("partition").unwrap().as_i64().unwrap()
            + if topic == "growing-b" { 10 } else { 0 };
        let o = t.value_by_field("offset").unwrap().as_i64().unwrap();
        let before = {
            let mut seen = self.seen.lock().unwrap();
            let before = seen.iter().filter(|s| **s == (p, o)).count();
            seen.push((p, o));
            before
        };
        if (self.fail)(o, before) {
            out.fail(t);
        } else {
            out.ack(t);
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn distinct(seen: &Seen) -> BTreeSet<(i64, i64)> {
    seen.lock().unwrap().iter().copied().collect()
}

fn spout_config(broker: &Broker, topic: &str, group: &str) -> KafkaSpoutConfig {
    KafkaSpoutConfig::new(&broker.address, [topic])
        .with_group_id(group)
        .with_offset_commit_period_ms(200)
        .with_partition_refresh_period_ms(300)
}

fn run(
    name: &str,
    spout: KafkaSpoutConfig,
    spouts: u32,
    seen: &Seen,
    fail: fn(i64, usize) -> bool,
) -> LocalCluster {
    let mut b = TopologyBuilder::new();
    b.set_spout("kafka", move || KafkaSpout::new(spout.clone()), spouts);
    let seen = seen.clone();
    b.set_bolt(
        "record",
        move || Recorder {
            seen: seen.clone(),
            fail,
        },
        2,
    )
    .shuffle_grouping("kafka");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, &Config::new(), b.create_topology().unwrap())
        .unwrap();
    cluster
}

fn every_record(partitions: std::ops::Range<i64>, n: i64) -> BTreeSet<(i64, i64)> {
    partitions
        .flat_map(|p| (0..n).map(move |o| (p, o)))
        .collect()
}

fn spout_metric(cluster: &LocalCluster, name: &str, metric: &str) -> f64 {
    let Ok(m) = cluster.metrics(name) else {
        return 0.0;
    };
    m.tasks
        .values()
        .filter(|t| t.component.0 == "kafka")
        .filter_map(|t| t.user.get(metric))
        .sum()
}

fn spout_errors(cluster: &LocalCluster, name: &str) -> Vec<String> {
    let Ok(m) = cluster.metrics(name) else {
        return Vec::new();
    };
    m.tasks
        .values()
        .filter(|t| t.component.0 == "kafka")
        .flat_map(|t| t.errors.clone())
        .collect()
}

#[test]
fn every_record_is_processed_and_the_group_commits_to_the_end() {
    let broker = Broker::start();
    broker.create_topic("events", 4);
    broker.produce_numbered("events", 0..4, 250);
    let seen = Seen::default();
    // 5 % of the records fail once.
    let cluster = run(
        "kafka-alo",
        spout_config(&broker, "events", "alo"),
        2,
        &seen,
        |o, before| o % 20 == 3 && before == 0,
    );
    let ends = BTreeMap::from([(0, 250), (1, 250), (2, 250), (3, 250)]);
    let done = wait_for(WAIT, || {
        distinct(&seen).len() == 1000 && broker.committed("alo", "events") == ends
    });
    assert!(
        done,
        "saw {} records, committed {:?}; errors {:?}",
        distinct(&seen).len(),
        broker.committed("alo", "events"),
        spout_errors(&cluster, "kafka-alo")
    );
    assert_eq!(distinct(&seen), every_record(0..4, 250));
    assert_eq!(broker.end_offsets("events"), ends);
    // Every failed record came back.
    let seen = seen.lock().unwrap().clone();
    for p in 0..4 {
        for o in (3..250).step_by(20) {
            let n = seen.iter().filter(|s| **s == (p, o)).count();
            assert!(n >= 2, "{p}@{o} seen {n} times");
        }
    }
    // The lag gauges read from the broker and the commits.
    let lag = |m: &str| spout_metric(&cluster, "kafka-alo", m);
    assert!(wait_for(WAIT, || lag(
        "kafkaPartition/events/partition_0/latestTimeOffset"
    ) == 250.0
        && lag(
            "kafkaPartition/events/partition_3/latestCompletedOffset"
        ) == 250.0));
    assert_eq!(lag("kafkaPartition/events/partition_1/spoutLag"), 0.0);
    cluster.shutdown();
}

/// Acks offsets below 100 and from 150, holds 100..150 (never acked): the
/// group's commit stops at 100.
fn hold_100_to_150(o: i64, _: usize) -> bool {
    (100..150).contains(&o)
}

#[test]
fn a_topology_submitted_again_resumes_from_the_committed_offsets() {
    let broker = Broker::start();
    broker.create_topic("orders", 2);
    broker.produce_numbered("orders", 0..2, 200);
    let first = Seen::default();
    let cluster = run(
        "kafka-first",
        spout_config(&broker, "orders", "resume"),
        1,
        &first,
        hold_100_to_150,
    );
    let at_100 = BTreeMap::from([(0, 100), (1, 100)]);
    assert!(
        wait_for(WAIT, || distinct(&first).len() >= 400
            && broker.committed("resume", "orders") == at_100),
        "committed {:?}",
        broker.committed("resume", "orders")
    );
    cluster.kill_topology("kafka-first").unwrap();
    assert_eq!(broker.committed("resume", "orders"), at_100);
    let second = Seen::default();
    let cluster2 = run(
        "kafka-second",
        spout_config(&broker, "orders", "resume"),
        2,
        &second,
        |_, _| false,
    );
    let ends = BTreeMap::from([(0, 200), (1, 200)]);
    assert!(wait_for(WAIT, || broker.committed("resume", "orders") == ends));
    // From the commit on, everything again (held or acked); nothing before.
    let again: BTreeSet<(i64, i64)> = (0..2)
        .flat_map(|p| (100..200).map(move |o| (p, o)))
        .collect();
    assert_eq!(distinct(&second), again);
    cluster.shutdown();
    cluster2.shutdown();
}

/// Partitions added to the subscription while running are dealt and read.
/// The broker refuses CreatePartitions (tansu 0.6: UnsupportedFeature), so
/// the partitions come as a new topic the subscription's pattern matches:
/// the spout finds both the same way, listing partitions every refresh.
#[test]
fn partitions_added_while_running_are_read() {
    let broker = Broker::start();
    broker.create_topic("growing-a", 2);
    broker.produce_numbered("growing-a", 0..2, 50);
    let seen = Seen::default();
    let pattern = squall::connectors::kafka::Regex::new("growing-.*").unwrap();
    let config = KafkaSpoutConfig::with_pattern(&broker.address, pattern)
        .with_group_id("growing")
        .with_offset_commit_period_ms(200)
        .with_partition_refresh_period_ms(300);
    let cluster = run("kafka-growing", config, 2, &seen, |_, _| false);
    assert!(wait_for(WAIT, || distinct(&seen).len() == 100));
    broker.create_topic("growing-b", 2);
    broker.produce_numbered("growing-b", 0..2, 50);
    assert!(
        wait_for(WAIT, || distinct(&seen).len() == 200),
        "saw {}; errors {:?}",
        distinct(&seen).len(),
        spout_errors(&cluster, "kafka-growing")
    );
    assert!(wait_for(WAIT, || broker.committed("growing", "growing-b")
        == BTreeMap::from([(0, 50), (1, 50)])));
    cluster.shutdown();
}

/// When each attempt at record 0@5 was made.
static ATTEMPTS: Mutex<Vec<Instant>> = Mutex::new(Vec::new());

#[test]
fn a_failing_record_is_retried_with_growing_delays_then_given_up() {
    let broker = Broker::start();
    broker.create_topic("flaky", 1);
    broker.produce_numbered("flaky", 0..1, 10);
    let retry = RetryBackoff {
        initial_delay_ms: 200,
        delay_period_ms: 200,
        multiplier: 2.0,
        max_delay_ms: 10_000,
        max_retries: 3,
    };
    let seen = Seen::default();
    let cluster = run(
        "kafka-flaky",
        spout_config(&broker, "flaky", "flaky").with_retry(retry),
        1,
        &seen,
        |o, _| {
            if o == 5 {
                ATTEMPTS.lock().unwrap().push(Instant::now());
            }
            o == 5
        },
    );
    let given_up = || spout_metric(&cluster, "kafka-flaky", "kafkaSpout/givenUp");
    // Given up, the record no longer holds the commit back.
    assert!(
        wait_for(WAIT, || given_up() == 1.0
            && broker.committed("flaky", "flaky")
                == BTreeMap::from([(0, 10)])),
        "given up {}, committed {:?}",
        given_up(),
        broker.committed("flaky", "flaky")
    );
    let attempts = ATTEMPTS.lock().unwrap().clone();
    assert_eq!(attempts.len(), 4, "the first try and 3 retries");
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    // Storm's delays: 200 ms, then 200 × 2, then 200 × 4.
    for (gap, at_least) in gaps.iter().zip([200, 400, 800]) {
        assert!(
            *gap >= Duration::from_millis(at_least),
            "gaps {gaps:?}: retries waited less than the backoff"
        );
    }
    cluster.shutdown();
}

#[test]
fn a_record_the_translator_rejects_is_reported_and_skipped() {
    let broker = Broker::start();
    broker.create_topic("mixed", 1);
    broker.produce_numbered("mixed", 0..1, 5);
    admin::produce(
        &broker.address,
        "mixed",
        [admin::Record {
            key: None,
            value: &[0xff, 0xfe, 0x00],
            partition: Some(0),
        }],
        true,
    )
    .unwrap();
    broker.produce_to("mixed", 0, &["after".to_owned()]);
    let seen = Seen::default();
    let config = spout_config(&broker, "mixed", "mixed").with_bad_record(BadRecord::Skip);
    let cluster = run("kafka-mixed", config, 1, &seen, |_, _| false);
    let ends = BTreeMap::from([(0, 7)]);
    assert!(wait_for(WAIT, || broker.committed("mixed", "mixed") == ends));
    let expected: BTreeSet<(i64, i64)> = [0, 1, 2, 3, 4, 6].iter().map(|&o| (0, o)).collect();
    assert_eq!(distinct(&seen), expected, "record 5 skipped");
    assert!(wait_for(WAIT, || spout_errors(&cluster, "kafka-mixed")
        .iter()
        .any(|e| e.contains("mixed-0@5") && e.contains("not UTF-8"))));
    assert_eq!(
        spout_metric(&cluster, "kafka-mixed", "kafkaSpout/badRecords"),
        1.0
    );
    cluster.shutdown();
}

#[test]
fn an_unreachable_broker_and_a_missing_topic_are_reported_by_name() {
    let nowhere = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let seen = Seen::default();
    let config = KafkaSpoutConfig::new(&nowhere, ["lost"]).with_partition_refresh_period_ms(200);
    let cluster = run("kafka-nowhere", config, 1, &seen, |_, _| false);
    assert!(
        wait_for(WAIT, || spout_errors(&cluster, "kafka-nowhere")
            .iter()
            .any(|e| e.contains(&nowhere) && e.contains("lost"))),
        "errors {:?}",
        spout_errors(&cluster, "kafka-nowhere")
    );
    // The spout's executor is not blocked: it still follows deactivation.
    cluster.deactivate("kafka-nowhere").unwrap();
    cluster.activate("kafka-nowhere").unwrap();
    cluster.shutdown();

    let broker = Broker::start();
    let config = spout_config(&broker, "absent", "absent");
    let cluster = run("kafka-absent", config, 1, &seen, |_, _| false);
    assert!(
        wait_for(WAIT, || spout_errors(&cluster, "kafka-absent").iter().any(
            |e| e.contains(&broker.address) && e.contains("topic absent")
        )),
        "errors {:?}",
        spout_errors(&cluster, "kafka-absent")
    );
    // Created later, the topic is read.
    broker.create_topic("absent", 1);
    broker.produce_numbered("absent", 0..1, 3);
    assert!(wait_for(WAIT, || distinct(&seen).len() == 3));
    cluster.shutdown();
}

/// Emits ids 0..n with message ids, as `[key, message]`, and emits a failed
/// id again.
struct Replaying {
    next: u64,
    n: u64,
    replay: Vec<u64>,
    acked: Arc<Mutex<HashSet<u64>>>,
    failed: Arc<Mutex<u64>>,
}

impl Spout for Replaying {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        let id = match self.replay.pop() {
            Some(id) => id,
            None if self.next < self.n => {
                self.next += 1;
                self.next - 1
            }
            None => return,
        };
        out.emit_with_id(values![id.to_string(), format!("m{id}")], id);
    }
    fn ack(&mut self, id: Value) {
        self.acked
            .lock()
            .unwrap()
            .insert(id.as_i64().unwrap() as u64);
    }
    fn fail(&mut self, id: Value, _: FailReason) {
        *self.failed.lock().unwrap() += 1;
        self.replay.push(id.as_i64().unwrap() as u64);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["key", "message"]);
    }
}

type Acked = Arc<Mutex<HashSet<u64>>>;

/// Runs `Replaying` ids `0..n` into `bolt` as topology `name`; returns the
/// acked ids, the fail count and the cluster.
fn run_bolt(
    name: &str,
    n: u64,
    bolt: KafkaBoltConfig,
    config: &Config,
) -> (Acked, Arc<Mutex<u64>>, LocalCluster) {
    let acked: Acked = Arc::default();
    let failed: Arc<Mutex<u64>> = Arc::default();
    let mut b = TopologyBuilder::new();
    let (a, f) = (acked.clone(), failed.clone());
    b.set_spout(
        "ids",
        move || Replaying {
            next: 0,
            n,
            replay: Vec::new(),
            acked: a.clone(),
            failed: f.clone(),
        },
        1,
    );
    b.set_bolt("write", move || KafkaBolt::new(bolt.clone()), 1)
        .shuffle_grouping("ids");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, config, b.create_topology().unwrap())
        .unwrap();
    (acked, failed, cluster)
}

/// Reads `topic` until it holds `n` distinct keys (each value `m<key>`);
/// panics naming how many it found.
fn assert_keys_written(broker: &Broker, topic: &str, n: usize) {
    let reader = TopicReader::new(&broker.address, topic).unwrap();
    let mut written: HashSet<u64> = HashSet::new();
    let complete = wait_for(WAIT, || {
        for r in reader.read(Duration::from_millis(500)) {
            let key = String::from_utf8(r.key.unwrap()).unwrap();
            let value = String::from_utf8(r.value.unwrap()).unwrap();
            assert_eq!(value, format!("m{key}"));
            written.insert(key.parse().unwrap());
        }
        written.len() == n
    });
    assert!(complete, "{} of {n} in the topic", written.len());
}

#[test]
fn the_bolt_acks_only_what_the_broker_took_and_replays_through_an_outage() {
    let broker = Broker::start();
    broker.create_topic("out", 2);
    let n = 3000;
    let bolt = KafkaBoltConfig::new(&broker.address, "out")
        .with_max_in_flight(100)
        .with_property("message.timeout.ms", "1500");
    let mut config = Config::new();
    config.max_spout_pending = Some(200);
    let (acked, failed, cluster) = run_bolt("kafka-bolt", n, bolt, &config);
    assert!(wait_for(WAIT, || acked.lock().unwrap().len() >= 200));
    broker.pause();
    let stalled = wait_for(WAIT, || *failed.lock().unwrap() > 0);
    broker.resume();
    assert!(stalled, "no write failed while the broker was frozen");
    assert!(
        wait_for(WAIT, || acked.lock().unwrap().len() == n as usize),
        "acked {} of {n}",
        acked.lock().unwrap().len()
    );
    cluster.shutdown();
    // Every acked tuple is in the topic.
    assert_keys_written(&broker, "out", n as usize);
}

/// Lower-cased runs of alphanumeric characters (as `corpus::plain_count`).
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

#[test]
fn trident_word_count_from_kafka_is_exact_under_batch_failures() {
    use squall::connectors::kafka::KafkaTridentSpout;
    use squall::trident::state::MemoryBackingMap;
    use squall::trident::*;
    let broker = Broker::start();
    broker.create_topic("sonnets", 4);
    let text = std::fs::read_to_string(corpus::corpus().join("sonnets_gut.txt")).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (p, chunk) in lines.chunks(lines.len().div_ceil(4)).enumerate() {
        broker.produce_to("sonnets", p as i32, chunk);
    }
    let mut expected: HashMap<String, i64> = HashMap::new();
    for w in lines.iter().flat_map(|l| words(l)) {
        *expected.entry(w).or_default() += 1;
    }
    let name = "kafka-trident";
    let state = MapStateFactory::memory(name).with_semantics(Semantics::Opaque);
    MemoryBackingMap::clear(name);
    let spout = KafkaTridentSpout::opaque(KafkaSpoutConfig::new(&broker.address, ["sonnets"]))
        .with_max_batch_records(100);
    // The first sight of each batch's first record fails the batch.
    let seen: Arc<Mutex<HashSet<(i64, i64)>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u64));
    let f = failures.clone();
    let fail_first =
        move |t: &TridentTuple, out: &mut TridentCollector| -> Result<(), ExecuteError> {
            let (p, o) = (t.value(1)?.as_i64().unwrap(), t.value(2)?.as_i64().unwrap());
            if o % 100 == 0 && seen.lock().unwrap().insert((p, o)) {
                *f.lock().unwrap() += 1;
                return Err("injected failure".into());
            }
            out.emit(Values::new());
            Ok(())
        };
    let split = |t: &TridentTuple, out: &mut TridentCollector| -> Result<(), ExecuteError> {
        for w in words(t.str(4)?) {
            out.emit(values![w]);
        }
        Ok(())
    };
    let t = TridentTopology::new();
    t.new_stream(name, spout)
        .parallelism_hint(2)
        .each(
            ["topic", "partition", "offset", "key", "value"],
            fail_first,
            Fields::default(),
        )
        .each(
            ["topic", "partition", "offset", "key", "value"],
            split,
            ["word"],
        )
        .group_by(["word"])
        .persistent_aggregate(state.clone(), Fields::default(), Count, ["count"])
        .parallelism_hint(2);
    let cluster = LocalCluster::new();
    let mut config = Config::new();
    config.max_spout_pending = Some(4);
    cluster
        .submit_topology(name, &config, t.build().unwrap())
        .unwrap();
    let counts = || -> HashMap<String, i64> {
        state
            .read_all()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.0[0].as_str().unwrap().to_owned(),
                    v.as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let done = wait_for(WAIT, || counts() == expected);
    cluster.kill_topology(name).unwrap();
    let got = counts();
    assert!(
        done,
        "{} words counted of {}",
        got.values().sum::<i64>(),
        expected.values().sum::<i64>()
    );
    assert!(*failures.lock().unwrap() > 0);
}

#[test]
fn at_most_once_and_no_guarantee_emit_each_record_once_untracked() {
    use squall::connectors::kafka::ProcessingGuarantee;
    let broker = Broker::start();
    broker.create_topic("once", 2);
    broker.produce_numbered("once", 0..2, 100);
    for (i, guarantee) in [
        ProcessingGuarantee::AtMostOnce,
        ProcessingGuarantee::NoGuarantee,
    ]
    .into_iter()
    .enumerate()
    {
        let group = format!("once-{i}");
        let seen = Seen::default();
        let config = spout_config(&broker, "once", &group).with_guarantee(guarantee);
        // Every tuple fails: untracked records are never replayed.
        let name = format!("kafka-once-{i}");
        let cluster = run(&name, config, 1, &seen, |_, _| true);
        let ends = BTreeMap::from([(0, 100), (1, 100)]);
        assert!(
            wait_for(WAIT, || distinct(&seen).len() == 200
                && broker.committed(&group, "once") == ends),
            "{guarantee:?}: saw {}, committed {:?}, errors {:?}",
            distinct(&seen).len(),
            broker.committed(&group, "once"),
            spout_errors(&cluster, &name)
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            200,
            "{guarantee:?}: each record once"
        );
        let spout = cluster.metrics(&name).unwrap().component("kafka");
        assert_eq!(spout.failed, 0, "{guarantee:?}: nothing tracked");
        cluster.shutdown();
    }
}

#[test]
fn latest_reads_only_what_arrives_after_the_start_and_earliest_everything() {
    use squall::connectors::kafka::FirstPollOffsetStrategy;
    let broker = Broker::start();
    broker.create_topic("fresh", 1);
    broker.produce_numbered("fresh", 0..1, 50);
    let latest = Seen::default();
    let config = spout_config(&broker, "fresh", "fresh-latest")
        .with_first_poll(FirstPollOffsetStrategy::Latest);
    let cluster = run("kafka-latest", config, 1, &latest, |_, _| false);
    // Assigned at the end: the committed-offset gauge starts there.
    let start = "kafkaPartition/fresh/partition_0/latestCompletedOffset";
    assert!(wait_for(WAIT, || spout_metric(
        &cluster,
        "kafka-latest",
        start
    ) == 50.0));
    let values: Vec<String> = (50..80).map(|i| format!("0:{i}")).collect();
    broker.produce_to("fresh", 0, &values);
    assert!(wait_for(WAIT, || distinct(&latest).len() == 30));
    assert_eq!(distinct(&latest), (50..80).map(|o| (0, o)).collect());
    let earliest = Seen::default();
    let config = spout_config(&broker, "fresh", "fresh-earliest")
        .with_first_poll(FirstPollOffsetStrategy::Earliest);
    let cluster2 = run("kafka-earliest", config, 1, &earliest, |_, _| false);
    assert!(wait_for(WAIT, || distinct(&earliest).len() == 80));
    cluster.shutdown();
    cluster2.shutdown();
}

#[test]
fn a_fire_and_forget_bolt_acks_at_once_and_writes_everything() {
    let broker = Broker::start();
    broker.create_topic("fast", 1);
    let n = 500;
    let bolt = KafkaBoltConfig::new(&broker.address, "fast").with_fire_and_forget(true);
    let (acked, failed, cluster) = run_bolt("kafka-fast", n, bolt, &Config::new());
    assert!(wait_for(WAIT, || acked.lock().unwrap().len() == n as usize));
    assert_eq!(*failed.lock().unwrap(), 0);
    cluster.shutdown();
    assert_keys_written(&broker, "fast", n as usize);
}
