//! The stateful word count's components: a line spout that replays failed
//! lines, a split bolt, and the count bolt whose counts live in a
//! `KeyValueState<String, i64>`.

use anyhow::{bail, Context, Result};
use rand::Rng;
use squall::stateful::decode_entry;
use squall::stateful::store::Namespaces;
use squall::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "../common/words.rs"]
mod words;
use words::{for_each_word, lowercase};

/// Every line of the input files, in memory, files in name order.
pub struct Lines(Vec<String>);

impl Lines {
    /// Reads `inputs` (files, or folders of files), `repeat` times over.
    ///
    /// # Errors
    /// An input that is neither, or cannot be read.
    pub fn load(inputs: &[PathBuf], repeat: usize) -> Result<Self> {
        let mut paths = Vec::new();
        for p in inputs {
            if p.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                    .with_context(|| format!("reading folder {}", p.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
                    .collect();
                inner.sort();
                paths.extend(inner);
            } else if p.is_file() {
                paths.push(p.clone());
            } else {
                bail!("input {} is neither a file nor a folder", p.display());
            }
        }
        let mut lines = Vec::new();
        for p in paths {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            lines.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_owned));
        }
        let once = lines.len();
        for _ in 1..repeat {
            lines.extend_from_within(..once);
        }
        Ok(Self(lines))
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// What the driver watches.
#[derive(Debug, Default)]
pub struct Progress {
    acked: AtomicU64,
    replayed: AtomicU64,
}

impl Progress {
    /// Lines acked.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Lines emitted again after failing.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }
}

/// Emits each line once, tracked by its index; failed lines are emitted
/// again. With a progress folder it writes `acked emitted total` to
/// `lines-<task>.progress` every 200 ms. Its position is in memory only:
/// a restarted spout starts over.
pub struct LineSpout {
    lines: Arc<Lines>,
    progress: Arc<Progress>,
    next: usize,
    replay: Vec<usize>,
    file: Option<PathBuf>,
    written: Instant,
}

impl LineSpout {
    /// A spout over `lines`.
    pub fn new(lines: Arc<Lines>, progress: Arc<Progress>, dir: Option<PathBuf>) -> Self {
        Self {
            lines,
            progress,
            next: 0,
            replay: Vec::new(),
            file: dir,
            written: Instant::now(),
        }
    }

    fn write_progress(&mut self) {
        let Some(path) = &self.file else { return };
        if self.written.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.written = Instant::now();
        let text = format!(
            "{} {} {}\n",
            self.progress.acked(),
            self.next,
            self.lines.len()
        );
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }
}

impl Spout for LineSpout {
    fn open(&mut self, context: &TopologyContext) {
        if let Some(dir) = self.file.take() {
            let _ = std::fs::create_dir_all(&dir);
            self.file = Some(dir.join(format!("lines-{}.progress", context.this_task_id())));
        }
    }

    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        self.write_progress();
        if let Some(i) = self.replay.pop() {
            self.progress.replayed.fetch_add(1, Ordering::Relaxed);
            out.emit_with_id(values![self.lines.0[i].as_str()], i as i64);
            return;
        }
        if let Some(line) = self.lines.0.get(self.next) {
            out.emit_with_id(values![line.as_str()], self.next as i64);
            self.next += 1;
        }
    }

    fn ack(&mut self, _msg_id: Value) {
        self.progress.acked.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        if let Some(i) = msg_id.as_i64() {
            self.replay.push(i as usize);
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["line"]);
    }
}

/// Splits a line into words: maximal runs of alphanumeric characters,
/// lowercased.
pub struct SplitBolt;

impl BasicBolt for SplitBolt {
    fn execute(
        &mut self,
        t: &Tuple,
        out: &mut BasicOutputCollector<'_, '_>,
    ) -> Result<(), ExecuteError> {
        for_each_word(t.get_str(0)?, |w| out.emit(values![lowercase(w)]));
        Ok(())
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["word"]);
    }
}

/// Counts words in its state (Storm's `StatefulWordCountBolt`); fails a
/// fraction of its input before counting it, up to a number of failures.
pub struct WordCountBolt {
    fail_rate: f64,
    failures_left: u64,
    rng: rand::rngs::SmallRng,
    rollbacks: Option<Counter>,
}

/// The user counter of rollbacks a count task went through.
pub const ROLLBACKS: &str = "rollbacks";

impl WordCountBolt {
    /// A bolt failing `fail_rate` of its input, at most `max_failures`
    /// tuples.
    pub fn new(fail_rate: f64, max_failures: u64) -> Self {
        Self {
            fail_rate,
            failures_left: max_failures,
            rng: rand::SeedableRng::from_os_rng(),
            rollbacks: None,
        }
    }
}

impl StatefulBolt for WordCountBolt {
    type State = KeyValueState<String, i64>;

    fn prepare(&mut self, context: &TopologyContext) {
        self.rollbacks = Some(context.register_counter(ROLLBACKS));
    }

    fn pre_rollback(&mut self, _state: &mut Self::State) {
        if let Some(c) = &self.rollbacks {
            c.inc();
        }
    }

    fn execute(&mut self, t: &Tuple, counts: &mut Self::State, out: &mut OutputCollector<'_>) {
        if self.failures_left > 0 && self.fail_rate > 0.0 && self.rng.random_bool(self.fail_rate) {
            self.failures_left -= 1;
            out.fail(t);
            return;
        }
        let Ok(word) = t.get_str(0) else {
            out.report_error(&"a tuple without a word");
            out.ack(t);
            return;
        };
        let n = counts.get(word).unwrap_or(0) + 1;
        counts.put(word, &n);
        out.ack(t);
    }

    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Merges the count states of every task (namespace) into one map.
///
/// # Errors
/// An entry that does not decode as a word and a count.
pub fn merge(state: Namespaces) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    for (namespace, entries) in state {
        if !namespace.starts_with("count-") {
            continue;
        }
        for (k, v) in entries {
            let (word, n): (String, i64) = decode_entry(&k, &v)?;
            *counts.entry(word).or_insert(0) += n;
        }
    }
    Ok(counts)
}
