//! Trident in LocalCluster: Storm's Trident word count case, empty
//! batches, a state file held at prepare, exactly-once counts under batch failures (commits in txid
//! order), and the flights aggregates against a plain computation.

#[path = "../examples/trident_flights/carrier_stats.rs"]
mod carrier_stats;

use carrier_stats::CarrierStats;
use squall::testing::wait_for;
use squall::trident::state::MemoryBackingMap;
use squall::trident::*;
use squall::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn config() -> Config {
    let mut c = Config::new();
    c.acker_executors = Some(1);
    c.message_timeout_secs = 30;
    c
}

fn split_spaces(t: &TridentTuple, out: &mut TridentCollector) -> Result<(), ExecuteError> {
    for w in t.str(0)?.split(' ').filter(|w| !w.is_empty()) {
        out.emit(values![w]);
    }
    Ok(())
}

/// Lower-cased runs of alphanumeric characters.
fn words(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn split_words(t: &TridentTuple, out: &mut TridentCollector) -> Result<(), ExecuteError> {
    for w in words(t.str(0)?) {
        out.emit(values![w]);
    }
    Ok(())
}

fn counts_of(state: &MapStateFactory) -> HashMap<String, i64> {
    state
        .read_all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            (
                k.0[0].as_str().unwrap().to_owned(),
                v.as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Storm's `TridentTopologyTest` word count: a state of word counts and a
/// query stream summing the counts of the words of a request.
#[test]
fn storm_word_count_case() {
    let state = MapStateFactory::memory("trident-storm-wc");
    MemoryBackingMap::clear("trident-storm-wc");
    let sentences = FeederSpout::new(["sentence"]);
    let requests = FeederSpout::new(["id", "args"]);
    let results: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();

    let t = TridentTopology::new();
    let counts = t
        .new_stream("sentences", sentences.clone())
        .each(["sentence"], split_spaces, ["word"])
        .group_by(["word"])
        .persistent_aggregate(state.clone(), Fields::default(), Count, ["count"])
        .parallelism_hint(3);
    let sink = results.clone();
    t.new_stream("requests", requests.clone())
        .each(["args"], split_spaces, ["word"])
        .state_query(&counts, ["word"], MapGet, ["count"])
        .filter(["count"], |t: &TridentTuple| {
            !matches!(t.value(0), Ok(Value::Null))
        })
        .group_by(["id"])
        .aggregate(["count"], Sum, ["sum"])
        .each(
            ["id", "sum"],
            move |t: &TridentTuple, _: &mut TridentCollector| -> Result<(), ExecuteError> {
                let id = t.str(0)?.to_owned();
                sink.lock().unwrap().insert(id, t.value(1)?.clone());
                Ok(())
            },
            Fields::default(),
        );
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("storm-wc", &config(), t.build().unwrap())
        .unwrap();

    let ask = |id: &str, args: &str| -> Option<Value> {
        requests.feed(vec![values![id, args]]);
        assert!(requests.wait_committed(WAIT), "request {id} not processed");
        results.lock().unwrap().get(id).cloned()
    };
    sentences.feed(vec![values!["hello the man said"], values!["the"]]);
    assert!(sentences.wait_committed(WAIT));
    assert_eq!(ask("q1", "the"), Some(Value::Int(2)));
    assert_eq!(ask("q2", "hello"), Some(Value::Int(1)));
    sentences.feed(vec![
        values!["the man on the moon"],
        values!["where are you"],
    ]);
    assert!(sentences.wait_committed(WAIT));
    assert_eq!(ask("q3", "the"), Some(Value::Int(4)));
    assert_eq!(ask("q4", "man where you the"), Some(Value::Int(8)));
    // Words never seen are absent (null, filtered): no group, no result.
    assert_eq!(ask("q5", "zebra"), None);
    cluster.kill_topology("storm-wc").unwrap();
    let c = counts_of(&state);
    assert_eq!(c["the"], 4);
    assert_eq!(c["man"], 2);
    assert_eq!(c.values().sum::<i64>(), 13);
}

/// Submits `name`: the space-separated words of `feeder`'s sentences
/// counted into `state`.
fn submit_feeder_count(
    cluster: &LocalCluster,
    name: &str,
    feeder: &FeederSpout,
    state: MapStateFactory,
) {
    let t = TridentTopology::new();
    t.new_stream(name, feeder.clone())
        .each(["sentence"], split_spaces, ["word"])
        .group_by(["word"])
        .persistent_aggregate(state, Fields::default(), Count, ["count"]);
    cluster
        .submit_topology(name, &config(), t.build().unwrap())
        .unwrap();
}

/// Many empty batches, then data: every batch commits and the data counts.
#[test]
fn empty_batches_do_not_stall() {
    let state = MapStateFactory::memory("trident-empty");
    MemoryBackingMap::clear("trident-empty");
    let feeder = FeederSpout::new(["sentence"]);
    let cluster = LocalCluster::new();
    submit_feeder_count(&cluster, "empty", &feeder, state.clone());
    for _ in 0..300 {
        feeder.feed(Vec::new());
    }
    assert!(feeder.wait_committed(WAIT), "empty batches stalled");
    feeder.feed(vec![values!["a b a"]]);
    for _ in 0..50 {
        feeder.feed(Vec::new());
    }
    feeder.feed(vec![values!["b"]]);
    assert!(feeder.wait_committed(WAIT));
    cluster.kill_topology("empty").unwrap();
    let c = counts_of(&state);
    assert_eq!((c["a"], c["b"], c.len()), (2, 2, 2));
}

/// A state file still held at prepare (as by a worker of the previous
/// assignment that has not exited yet): the batch's commit fails, names
/// why, and is replayed until the file is released; then every batch
/// commits exactly once.
#[test]
fn a_state_held_at_prepare_opens_at_a_later_commit() {
    let dir = tempfile::tempdir().unwrap();
    let state = MapStateFactory::redb(dir.path(), "held");
    let partition = state::StatePartition { index: 0, count: 1 };
    let held = state.make_state(&partition).unwrap();
    let feeder = FeederSpout::new(["sentence"]);
    let cluster = LocalCluster::new();
    submit_feeder_count(&cluster, "held", &feeder, state.clone());
    feeder.feed(vec![values!["a b a"]]);
    let refused = wait_for(WAIT, || {
        let m = cluster.metrics("held").unwrap();
        m.tasks
            .values()
            .flat_map(|t| &t.errors)
            .any(|e| e.contains("opening state"))
    });
    assert!(refused, "no task reported the held state");
    drop(held);
    feeder.feed(vec![values!["b"]]);
    assert!(feeder.wait_committed(WAIT), "batches stalled after release");
    cluster.kill_topology("held").unwrap();
    let c = counts_of(&state);
    assert_eq!((c["a"], c["b"], c.len()), (2, 2, 2));
}

/// A map state that logs each commit's txid.
struct Logged {
    inner: MapStateFactory,
    log: Arc<Mutex<Vec<(usize, u64)>>>,
}

struct LoggedState {
    inner: Box<dyn MapState>,
    partition: usize,
    log: Arc<Mutex<Vec<(usize, u64)>>>,
}

impl StateFactory for Logged {
    fn make_state(&self, p: &state::StatePartition) -> Result<Box<dyn MapState>, StateError> {
        Ok(Box::new(LoggedState {
            inner: self.inner.make_state(p)?,
            partition: p.index,
            log: self.log.clone(),
        }))
    }
}

impl State for LoggedState {
    fn begin_commit(&mut self, txid: u64) -> Result<(), StateError> {
        self.inner.begin_commit(txid)
    }
    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        self.log.lock().unwrap().push((self.partition, txid));
        self.inner.commit(txid)
    }
}

impl MapState for LoggedState {
    fn multi_get(&mut self, keys: &[Key]) -> Result<Vec<Option<Value>>, StateError> {
        self.inner.multi_get(keys)
    }
    fn multi_update(
        &mut self,
        keys: &[Key],
        update: &mut dyn FnMut(usize, Option<Value>) -> Value,
    ) -> Result<Vec<Value>, StateError> {
        self.inner.multi_update(keys, update)
    }
}

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare");
    ["hamlet_gut.txt", "macbeth_gut.txt"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

fn reference_counts(files: &[PathBuf]) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            for w in words(line) {
                *counts.entry(w).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Runs word count over the corpus with `failing` in front of the split,
/// and checks the final counts are exact and commits came in txid order.
fn exactly_once(name: &str, semantics: Semantics, failing: impl Function + 'static) {
    let files = corpus();
    let state = MapStateFactory::memory(name).with_semantics(semantics);
    MemoryBackingMap::clear(name);
    let log: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let spout = RecordSpout::lines(&files, 500).unwrap();
    let t = TridentTopology::new();
    t.new_stream(name, spout)
        .parallelism_hint(2)
        .each(["line"], failing, Fields::default())
        .each(["line"], split_words, ["word"])
        .group_by(["word"])
        .persistent_aggregate(
            Logged {
                inner: state.clone(),
                log: log.clone(),
            },
            Fields::default(),
            Count,
            ["count"],
        )
        .parallelism_hint(2);
    let cluster = LocalCluster::new();
    let mut config = config();
    config.max_spout_pending = Some(4);
    cluster
        .submit_topology(name, &config, t.build().unwrap())
        .unwrap();
    let expected = reference_counts(&files);
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    let batches = lines.div_ceil(500) as u64;
    // Every batch committed on both partitions.
    let done = wait_for(WAIT, || {
        let log = log.lock().unwrap();
        (0..2).all(|p| log.iter().any(|&(q, t)| q == p && t == batches))
    });
    cluster.kill_topology(name).unwrap();
    assert!(
        done,
        "not every batch committed: {:?}",
        log.lock().unwrap().len()
    );
    assert_eq!(counts_of(&state), expected);
    let log = log.lock().unwrap();
    for p in 0..2 {
        let txids: Vec<u64> = log.iter().filter(|e| e.0 == p).map(|e| e.1).collect();
        assert!(
            txids.windows(2).all(|w| w[0] <= w[1]),
            "partition {p} committed out of txid order: {txids:?}"
        );
        let distinct: HashSet<u64> = txids.iter().copied().collect();
        assert_eq!(distinct, (1..=batches).collect::<HashSet<u64>>());
    }
}

#[test]
fn exactly_once_when_each_batch_fails_the_first_time() {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u64));
    let f = failures.clone();
    exactly_once(
        "trident-fail-first",
        Semantics::Transactional,
        move |t: &TridentTuple, out: &mut TridentCollector| -> Result<(), ExecuteError> {
            // The first sight of a batch's first line fails the batch.
            let line = t.str(0)?.to_owned();
            if seen.lock().unwrap().insert(line) && t.str(0)?.len() > 20 {
                *f.lock().unwrap() += 1;
                return Err("injected failure".into());
            }
            out.emit(Values::new());
            Ok(())
        },
    );
    assert!(*failures.lock().unwrap() > 0);
}

#[test]
fn exactly_once_with_random_failures_opaque() {
    let failures = Arc::new(Mutex::new(0u64));
    let f = failures.clone();
    let rng = Mutex::new(0x2545_f491_4f6c_dd1du64);
    exactly_once(
        "trident-random",
        Semantics::Opaque,
        move |_: &TridentTuple, out: &mut TridentCollector| -> Result<(), ExecuteError> {
            let mut x = rng.lock().unwrap();
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            if (*x).is_multiple_of(2000) {
                *f.lock().unwrap() += 1;
                return Err("injected random failure".into());
            }
            out.emit(Values::new());
            Ok(())
        },
    );
    assert!(*failures.lock().unwrap() > 0);
}

#[test]
fn flights_aggregates_equal_a_plain_computation() {
    let csv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/flights/flights.csv");
    let state = MapStateFactory::memory("trident-flights");
    MemoryBackingMap::clear("trident-flights");
    let spout: RecordSpout = RecordSpout::csv(&csv, &["carrier", "arr_delay"], 20_000).unwrap();
    let t = TridentTopology::new();
    t.new_stream("flights", spout)
        .group_by(["carrier"])
        .persistent_aggregate(
            state.clone(),
            ["arr_delay"],
            Aggregation::combiner(CarrierStats),
            ["stats"],
        );
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("flights", &config(), t.build().unwrap())
        .unwrap();

    // The plain computation.
    let mut expected: HashMap<String, (i64, i64, i64)> = HashMap::new();
    let mut reader = csv_reader(&csv);
    let header: Vec<String> = reader
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let (ci, di) = (
        header.iter().position(|h| h == "carrier").unwrap(),
        header.iter().position(|h| h == "arr_delay").unwrap(),
    );
    for line in reader {
        let cols: Vec<&str> = line.split(',').collect();
        let e = expected.entry(cols[ci].to_owned()).or_default();
        e.0 += 1;
        if let Ok(d) = cols[di].parse::<i64>() {
            e.1 += 1;
            e.2 += d;
        }
    }
    let flights: i64 = expected.values().map(|e| e.0).sum();
    let done = wait_for(WAIT, || {
        let got: i64 = state
            .read_all()
            .unwrap()
            .values()
            .map(|v| v.as_list().unwrap()[0].as_i64().unwrap())
            .sum();
        got == flights
    });
    cluster.kill_topology("flights").unwrap();
    assert!(done, "not every flight was counted");
    let got: HashMap<String, (i64, i64, i64)> = state
        .read_all()
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let l = v.as_list().unwrap();
            let n = |i: usize| l[i].as_i64().unwrap();
            (k.0[0].as_str().unwrap().to_owned(), (n(0), n(1), n(2)))
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(flights, 336_776);
}

fn csv_reader(path: &std::path::Path) -> impl Iterator<Item = String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter()
}

/// Build errors name the operation and the missing field.
#[test]
fn unknown_fields_are_reported_at_build() {
    let t = TridentTopology::new();
    t.new_stream("bad", FeederSpout::new(["sentence"]))
        .each(["sentense"], split_spaces, ["word"])
        .group_by(["wurd"])
        .persistent_aggregate(
            MapStateFactory::memory("bad"),
            Fields::default(),
            Count,
            ["count"],
        );
    let e = t.build().unwrap_err().to_string();
    assert!(e.contains("each: no field \"sentense\""), "{e}");
    assert!(e.contains("group_by: no field \"wurd\""), "{e}");
}
