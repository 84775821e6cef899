//! Stateful bolts in LocalCluster: word count in a checkpointed
//! `KeyValueState` equals a plain count with failures injected (rolled
//! back and replayed, nothing counted twice), with a state store that
//! fails PREPAREs, with redb files held by another owner at prepare, and
//! with the redb provider read back after the run.

mod common;
mod corpus;

use squall::stateful::store::{register_provider, Prepared, StateError, StateProvider, Store};
use squall::stateful::MemoryProvider;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn example() -> std::path::PathBuf {
    corpus::example_named("stateful_word_count")
}

/// Runs the example over `input` with `args` and returns its output and
/// the counts it wrote.
fn run(input: &Path, args: &[&str], dir: &Path) -> (String, HashMap<String, u64>) {
    let counts = dir.join("counts.tsv");
    let out = Command::new(example())
        .args(["--input", &input.display().to_string()])
        .args(["--output", &counts.display().to_string(), "--top", "0"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, corpus::read_counts(&counts))
}

/// The number after `word` in `text` (`... 12 rollbacks`).
fn figure_before(text: &str, word: &str) -> f64 {
    let at = text
        .find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {text}"));
    text[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no figure before {word:?} in {text}"))
}

#[test]
fn stateful_word_count_with_failures_equals_a_plain_count() {
    let dir = tempfile::tempdir().unwrap();
    let (out, counts) = run(
        &corpus::corpus(),
        &[
            "--fail-rate",
            "0.0005",
            "--max-failures",
            "4",
            "-c",
            "topology.state.checkpoint.interval.ms=200",
        ],
        dir.path(),
    );
    assert!(
        figure_before(&out, "rollbacks") >= 1.0,
        "a failed tuple rolls its checkpoint back: {out}"
    );
    assert!(figure_before(&out, "replayed lines") > 0.0, "{out}");
    corpus::assert_same_counts(&counts, &corpus::plain_count(&corpus::corpus()));
}

#[test]
fn stateful_word_count_in_redb_is_read_back_after_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let provider = format!("topology.state.provider.config={}", state.display());
    let input = corpus::small_corpus(dir.path());
    let (_, counts) = run(
        &input,
        &[
            "-c",
            "topology.state.provider=redb",
            "-c",
            &provider,
            "--name",
            "swc-redb",
        ],
        dir.path(),
    );
    let expected = corpus::plain_count(&input);
    corpus::assert_same_counts(&counts, &expected);
    // The files hold the same counts once the topology is gone.
    let read = dir.path().join("read.tsv");
    let status = Command::new(example())
        .args(["--read", &state.display().to_string(), "--name", "swc-redb"])
        .args(["--top", "0", "--output", &read.display().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(corpus::read_counts(&read), expected);
    let files = std::fs::read_dir(state.join("swc-redb")).unwrap().count();
    assert_eq!(files, 2, "one file per count task");
}

/// Memory stores whose PREPARE fails every `every`-th time.
struct Flaky {
    every: u64,
    prepares: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

struct FlakyStore {
    inner: Box<dyn Store>,
    every: u64,
    prepares: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl StateProvider for Flaky {
    fn open(&self, topology: &str, namespace: &str) -> Result<Box<dyn Store>, StateError> {
        Ok(Box::new(FlakyStore {
            inner: MemoryProvider.open(topology, namespace)?,
            every: self.every,
            prepares: self.prepares.clone(),
            failed: self.failed.clone(),
        }))
    }
}

impl Store for FlakyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.get(key)
    }
    fn entries(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StateError> {
        self.inner.entries()
    }
    fn committed_txid(&self) -> Result<Option<u64>, StateError> {
        self.inner.committed_txid()
    }
    fn prepared(&self) -> Result<Option<Prepared>, StateError> {
        self.inner.prepared()
    }
    fn committed_acks(&self) -> Result<Option<(u64, Vec<u8>)>, StateError> {
        self.inner.committed_acks()
    }
    fn prepare(&mut self, prepared: &Prepared) -> Result<(), StateError> {
        if self.prepares.fetch_add(1, Ordering::Relaxed) % self.every == self.every - 1 {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(StateError::Backend("injected: disk full".into()));
        }
        self.inner.prepare(prepared)
    }
    fn commit(&mut self, txid: u64) -> Result<(), StateError> {
        self.inner.commit(txid)
    }
    fn rollback(&mut self) -> Result<(), StateError> {
        self.inner.rollback()
    }
}

#[path = "../examples/stateful_word_count/count.rs"]
#[allow(dead_code)]
mod count;

/// The split → stateful count topology of the `stateful_word_count`
/// example over `lines`, its spout reporting to `progress`.
fn count_topology(lines: &Arc<count::Lines>, progress: &Arc<count::Progress>) -> squall::Topology {
    use squall::*;
    let mut b = TopologyBuilder::new();
    let (l, p) = (lines.clone(), progress.clone());
    b.set_spout(
        "lines",
        move || count::LineSpout::new(l.clone(), p.clone(), None),
        1,
    );
    b.set_basic_bolt("split", || count::SplitBolt, 2)
        .shuffle_grouping("lines");
    b.set_stateful_bolt("count", || count::WordCountBolt::new(0.0, 0), 2)
        .fields_grouping("split", ["word"]);
    b.create_topology().unwrap()
}

/// The count tasks' redb files are still held when they prepare (as by a
/// worker of the previous assignment that has not exited yet): every
/// checkpoint is refused, naming why, and no line with a word is acked. Once the files
/// are released the tasks open them at a later checkpoint and the counts
/// are exact.
#[test]
fn a_state_held_at_prepare_opens_at_a_later_checkpoint() {
    use squall::stateful::RedbProvider;
    use squall::*;
    let dir = tempfile::tempdir().unwrap();
    let input = corpus::small_corpus(dir.path());
    let lines = Arc::new(count::Lines::load(std::slice::from_ref(&input), 1).unwrap());
    let progress = Arc::new(count::Progress::default());
    let topology = count_topology(&lines, &progress);
    let state = dir.path().join("state");
    let mut config = Config::new();
    config.acker_executors = Some(1);
    config.state_provider = "redb".into();
    config.state_provider_config = Some(state.display().to_string());
    config.state_checkpoint_interval_ms = 50;
    let provider = RedbProvider::new(&state);
    let layout = TaskLayout::new(topology.spec(), config.effective_ackers());
    let held: Vec<_> = layout
        .component_tasks("count")
        .iter()
        .map(|t| provider.open("swc-held", &format!("count-{t}")).unwrap())
        .collect();
    assert_eq!(held.len(), 2);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("swc-held", &config, topology)
        .unwrap();
    let wait = std::time::Duration::from_secs(120);
    let refused = squall::testing::wait_for(wait, || {
        common::reported(&cluster, "swc-held", "count", "state store is not open")
    });
    assert!(refused, "no count task reported its held state");
    // Lines without a word complete at the split; no other line may.
    let wordless: usize = std::fs::read_dir(&input)
        .unwrap()
        .map(|f| std::fs::read(f.unwrap().path()).unwrap())
        .map(|b| {
            let text = String::from_utf8_lossy(&b);
            let blank = |l: &&str| !l.chars().any(char::is_alphanumeric);
            text.lines().filter(blank).count()
        })
        .sum();
    assert!(
        progress.acked() <= wordless as u64,
        "{} lines acked without the state, {wordless} have no word",
        progress.acked()
    );
    drop(held);
    let total = lines.len() as u64;
    let done = squall::testing::wait_for(wait, || progress.acked() >= total);
    cluster.kill_topology("swc-held").unwrap();
    assert!(done, "{} of {total} lines acked", progress.acked());
    let counts: HashMap<String, u64> = count::merge(provider.read("swc-held").unwrap())
        .unwrap()
        .into_iter()
        .map(|(w, n)| (w, n as u64))
        .collect();
    corpus::assert_same_counts(&counts, &corpus::plain_count(&input));
}

#[test]
fn prepares_that_fail_roll_back_and_the_counts_stay_exact() {
    use squall::*;
    let prepares = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    register_provider(
        "flaky",
        Arc::new(Flaky {
            every: 5,
            prepares: prepares.clone(),
            failed: failed.clone(),
        }),
    );
    let lines = Arc::new(count::Lines::load(&[corpus::corpus()], 1).unwrap());
    let progress = Arc::new(count::Progress::default());
    let mut config = Config::new();
    config.acker_executors = Some(1);
    config.state_provider = "flaky".into();
    config.state_checkpoint_interval_ms = 50;
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("swc-flaky", &config, count_topology(&lines, &progress))
        .unwrap();
    let total = lines.len() as u64;
    assert!(squall::testing::wait_for(
        std::time::Duration::from_secs(300),
        || { progress.acked() >= total }
    ));
    let metrics = cluster.kill_topology("swc-flaky").unwrap();
    assert!(failed.load(Ordering::Relaxed) >= 1, "a PREPARE failed");
    let rollbacks: f64 = metrics
        .tasks
        .values()
        .filter_map(|t| t.user.get(count::ROLLBACKS))
        .sum();
    assert!(rollbacks >= 1.0, "rolled back");
    let counts: HashMap<String, u64> = count::merge(MemoryProvider::read("swc-flaky"))
        .unwrap()
        .into_iter()
        .map(|(w, n)| (w, n as u64))
        .collect();
    corpus::assert_same_counts(&counts, &corpus::plain_count(&corpus::corpus()));
}
