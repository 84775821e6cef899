//! Word count on real text: a spout reading lines from files (message id =
//! (pass, file, line), failed lines are replayed), a split bolt (shuffle)
//! and a count bolt (fields grouping on `word`).
//!
//! ```text
//! cargo run --release --example word_count -- --input data/shakespeare --output counts.tsv
//! ```
//!
//! Run by `squall jar` it submits itself to a cluster instead, keeping its
//! state in `--state-dir` (see `durable.rs`); `--merge DIR --output FILE`
//! then sums the per-task count files:
//!
//! ```text
//! squall jar target/release/examples/word_count --input $PWD/data/shakespeare \
//!     --state-dir /tmp/wc --workers 3
//! word_count --merge /tmp/wc --output counts.tsv
//! ```
//!
//! The output has `word<TAB>count` lines sorted by count descending, then
//! word ascending. A word is a maximal run of alphanumeric characters
//! (`char::is_alphanumeric`), lowercased. Exits 0 once every line is acked.

mod durable;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::Rng;
use rustc_hash::FxHashMap;
use squall::*;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
#[path = "../common/rss.rs"]
mod rss;
#[path = "../common/words.rs"]
mod words;
use rss::peak_rss_mb;
use std::time::{Duration, Instant};
use words::{for_each_word, lowercase};

#[derive(Parser, Debug)]
#[command(about = "Count words of text files with a Squall topology in LocalCluster")]
struct Args {
    /// Text files or folders of them (all regular files inside, sorted).
    #[arg(long, required_unless_present = "merge", num_args = 1..)]
    input: Vec<PathBuf>,
    /// Cluster mode: folder (absolute, shared by the workers) for the
    /// spout's checkpoints and the count tasks' files.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Cluster mode: topology.workers.
    #[arg(long)]
    workers: Option<u32>,
    /// Cluster mode: the topology's name.
    #[arg(long, default_value = "word-count")]
    name: String,
    /// Cluster mode: the count bolt acks at once and writes its counts once
    /// a second (for benchmarks: a killed worker loses counts).
    #[arg(long)]
    fast_ack: bool,
    /// Sum the count files of a cluster run's state folder into --output.
    #[arg(long)]
    merge: Option<PathBuf>,
    /// Where to write `word<TAB>count` lines.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Read the corpus this many times.
    #[arg(long, default_value_t = 1)]
    repeat: u64,
    /// Stop starting new passes over the corpus after this many seconds.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Run without ackers (lines are acked as soon as they are emitted).
    #[arg(long)]
    no_ack: bool,
    /// topology.max.spout.pending (lines in flight).
    #[arg(long)]
    max_spout_pending: Option<usize>,
    /// Split bolt executors (splitting is the heaviest stage: two keep both
    /// cores of a 2-core machine busy).
    #[arg(long, default_value_t = 2)]
    split_parallelism: u32,
    /// Count bolt executors.
    #[arg(long, default_value_t = 1)]
    count_parallelism: u32,
    /// Microseconds the count bolt spends on each word (a slow sink, to
    /// exercise backpressure).
    #[arg(long, default_value_t = 0)]
    count_delay_us: u64,
    /// Fraction of lines the split bolt fails on purpose (before emitting),
    /// to exercise replay.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// A YAML config file (Storm key names), applied before `-c`.
    #[arg(long)]
    conf: Option<PathBuf>,
    /// Config overrides, `key=value` (Storm key names).
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
    /// Print benchmark figures at the end.
    #[arg(long)]
    bench: bool,
    /// Run the split bolt in Python (`multilang/split.py`, pystorm over
    /// Storm's multilang protocol) with this interpreter;
    /// `scripts/python-env` prints one with pystorm installed.
    #[arg(long)]
    python: Option<PathBuf>,
    /// With --python: the line spout in Python too (`multilang/lines.py`).
    #[arg(long, requires = "python")]
    python_spout: bool,
}

/// Where the Python split bolt and line spout live.
const MULTILANG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/word_count/multilang");

/// All lines of all input files, in memory.
struct Corpus {
    names: Vec<String>,
    files: Vec<TextFile>,
}

/// One file's text in one buffer, with where each line starts and ends
/// (bytes): a line costs 8 bytes of index instead of an allocation of its
/// own. Files are at most 4 GiB (checked when loading).
struct TextFile {
    text: String,
    /// `(start, end)` of each line in `text`, without its line break.
    bounds: Vec<(u32, u32)>,
}

impl TextFile {
    fn new(text: &str) -> Self {
        let mut bounds = Vec::new();
        let mut kept = String::with_capacity(text.len());
        for line in text.lines() {
            let start = kept.len() as u32;
            kept.push_str(line);
            bounds.push((start, kept.len() as u32));
        }
        kept.shrink_to_fit();
        bounds.shrink_to_fit();
        Self { text: kept, bounds }
    }

    fn len(&self) -> usize {
        self.bounds.len()
    }

    fn line(&self, i: usize) -> &str {
        let (start, end) = self.bounds[i];
        &self.text[start as usize..end as usize]
    }
}

impl Corpus {
    fn load(inputs: &[PathBuf]) -> Result<Self> {
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
        if paths.is_empty() {
            bail!("no input files found in {inputs:?}");
        }
        let mut corpus = Corpus {
            names: Vec::new(),
            files: Vec::new(),
        };
        for p in paths {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            if bytes.len() > u32::MAX as usize {
                bail!("input {} is over 4 GiB", p.display());
            }
            let text = String::from_utf8_lossy(&bytes);
            corpus.names.push(p.display().to_string());
            corpus.files.push(TextFile::new(&text));
        }
        Ok(corpus)
    }

    fn num_lines(&self) -> u64 {
        self.files.iter().map(|f| f.len() as u64).sum()
    }
}

/// Counters the driver watches.
#[derive(Default)]
struct Progress {
    /// First emits of lines (replays not counted).
    emitted: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    done_emitting: std::sync::atomic::AtomicBool,
}

/// Emits every line of the corpus `repeat` times, tracked with message id
/// `[file index, line index]`; replays failed lines first.
struct LineSpout {
    corpus: Arc<Corpus>,
    progress: Arc<Progress>,
    repeat: u64,
    deadline: Option<Instant>,
    duration: Option<Duration>,
    pass: u64,
    file: usize,
    line: usize,
    replay: VecDeque<durable::Position>,
    checkpoint: Option<durable::Checkpoint>,
}

impl LineSpout {
    fn emit(&self, out: &mut SpoutOutputCollector<'_>, (pass, file, line): durable::Position) {
        let text = self.corpus.files[file].line(line);
        out.emit_with_id(
            values![text],
            Value::List(vec![
                Value::from(pass),
                Value::from(file),
                Value::from(line),
            ]),
        );
    }

    fn position(msg_id: &Value) -> Option<durable::Position> {
        match msg_id.as_list()? {
            [Value::Int(p), Value::Int(f), Value::Int(l)] => {
                Some((*p as u64, *f as usize, *l as usize))
            }
            _ => None,
        }
    }
}

impl Spout for LineSpout {
    fn open(&mut self, ctx: &TopologyContext) {
        self.deadline = self.duration.map(|d| Instant::now() + d);
        if let Some(c) = &mut self.checkpoint {
            (self.pass, self.file, self.line) = c.open(ctx.this_task_id());
        }
    }

    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        let done = self.progress.done_emitting.load(Ordering::Relaxed);
        if let Some(c) = &mut self.checkpoint {
            c.maybe_write((self.pass, self.file, self.line), done, false);
        }
        if let Some(p) = self.replay.pop_front() {
            return self.emit(out, p);
        }
        while self.file < self.corpus.files.len() && self.line >= self.corpus.files[self.file].len()
        {
            self.file += 1;
            self.line = 0;
        }
        if self.file == self.corpus.files.len() {
            let out_of_time = self.deadline.is_some_and(|d| Instant::now() >= d);
            if self.pass + 1 >= self.repeat || out_of_time {
                self.progress.done_emitting.store(true, Ordering::Release);
                if let Some(c) = &mut self.checkpoint {
                    c.maybe_write((self.pass, self.file, self.line), true, !done);
                }
                return;
            }
            self.pass += 1;
            self.file = 0;
            self.line = 0;
            return;
        }
        let p = (self.pass, self.file, self.line);
        self.line += 1;
        self.progress.emitted.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &mut self.checkpoint {
            c.emitted(p);
        }
        self.emit(out, p);
    }

    fn ack(&mut self, msg_id: Value) {
        self.progress.acked.fetch_add(1, Ordering::Relaxed);
        if let (Some(c), Some(p)) = (&mut self.checkpoint, Self::position(&msg_id)) {
            c.acked(p);
            let done = self.progress.done_emitting.load(Ordering::Relaxed);
            // Write at once when the last line is acked.
            let last = done && c.all_acked();
            c.maybe_write((self.pass, self.file, self.line), done, last);
        }
    }

    fn fail(&mut self, msg_id: Value, _reason: FailReason) {
        self.progress.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = Self::position(&msg_id) {
            self.replay.push_back(p);
        }
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["line"]);
    }
}

/// Splits a line into lowercased words, anchored to the line.
struct SplitBolt {
    fail_rate: f64,
    rng: rand::rngs::SmallRng,
    /// User metrics: lines split, and words per line.
    lines: Option<squall::Counter>,
    words_per_line: Option<squall::Histogram>,
    /// Lines split by this task.
    split: u64,
}

/// The split bolt logs its progress at DEBUG every this many lines
/// (`squall set_log_level NAME -l word_count=DEBUG:60` shows it).
const PROGRESS_EVERY: u64 = 10_000;

impl BasicBolt for SplitBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        self.lines = Some(context.register_counter("split_lines"));
        self.words_per_line = Some(
            context
                .register_histogram_with_buckets("split_words_per_line", &[1.0, 4.0, 16.0, 64.0]),
        );
    }

    fn execute(
        &mut self,
        tuple: &Tuple,
        out: &mut BasicOutputCollector<'_, '_>,
    ) -> Result<(), ExecuteError> {
        if self.fail_rate > 0.0 && self.rng.random_bool(self.fail_rate) {
            return Err("injected failure (--fail-rate)".into());
        }
        let line = tuple.get_str(0)?;
        let mut words = 0u32;
        for_each_word(line, |w| {
            words += 1;
            out.emit(values![lowercase(w)])
        });
        if let (Some(lines), Some(h)) = (&self.lines, &self.words_per_line) {
            lines.inc();
            h.update(f64::from(words));
        }
        self.split += 1;
        if self.split.is_multiple_of(PROGRESS_EVERY) {
            tracing::debug!(lines = self.split, "split progress");
        }
        Ok(())
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["word"]);
    }
}

type Counts = FxHashMap<String, u64>;

/// Counts words; hands its counts to the driver at cleanup.
struct CountBolt {
    counts: FxHashMap<CompactString, u64>,
    sink: Arc<Mutex<Counts>>,
    delay: Duration,
}

impl Bolt for CountBolt {
    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        durable::spin(self.delay);
        if let Some(Value::Str(w)) = tuple.get(0) {
            match self.counts.get_mut(w.as_str()) {
                Some(c) => *c += 1,
                None => {
                    self.counts.insert(w.clone(), 1);
                }
            }
        }
        out.ack(tuple);
    }

    fn cleanup(&mut self) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        for (w, c) in self.counts.drain() {
            *sink.entry(w.to_string()).or_default() += c;
        }
    }

    fn declare_output_fields(&self, _d: &mut OutputFieldsDeclarer) {}
}

fn write_counts(path: &Path, sorted: &[(String, u64)]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for (word, count) in sorted {
        writeln!(w, "{word}\t{count}")?;
    }
    w.flush()?;
    Ok(())
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    if let Some(dir) = &args.merge {
        let counts = durable::merge_counts(dir)?;
        let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
        sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Some(path) = &args.output {
            write_counts(path, &sorted)?;
        }
        let total: u64 = sorted.iter().map(|(_, c)| c).sum();
        println!("totals: {} distinct words, {total} words", sorted.len());
        return Ok(());
    }
    let cluster_run = is_cluster_run();
    if cluster_run && args.state_dir.is_none() {
        bail!("--state-dir is required when run by `squall jar` (cluster mode)");
    }
    let corpus = Arc::new(Corpus::load(&args.input)?);
    let lines_per_pass = corpus.num_lines();
    eprintln!(
        "word_count: {} files, {} lines per pass",
        corpus.names.len(),
        lines_per_pass
    );

    let mut overrides = vec![format!(
        "topology.acker.executors={}",
        u8::from(!args.no_ack)
    )];
    if let Some(p) = args.max_spout_pending {
        overrides.push(format!("topology.max.spout.pending={p}"));
    }
    if let Some(w) = args.workers {
        overrides.push(format!("topology.workers={w}"));
    }
    overrides.extend(args.config.iter().cloned());
    let config = load_config(args.conf.as_deref(), &overrides)?;

    if args.python_spout && (args.repeat > 1 || args.duration_secs.is_some() || cluster_run) {
        bail!("--python-spout reads the corpus once, in LocalCluster: drop --repeat, --duration-secs and squall jar");
    }
    // The Python spout reads the same files, listed in a file that lives
    // until the run ends.
    let mut file_list = None;
    let progress = Arc::new(Progress::default());
    let sink = Arc::new(Mutex::new(Counts::default()));
    let mut builder = TopologyBuilder::new();
    let (c, p, repeat, duration, state) = (
        corpus.clone(),
        progress.clone(),
        args.repeat.max(1),
        args.duration_secs,
        args.state_dir.clone(),
    );
    if let Some(python) = args.python.clone().filter(|_| args.python_spout) {
        let list = file_list
            .insert(tempfile::NamedTempFile::new()?)
            .path()
            .to_path_buf();
        let absolute: Vec<String> = corpus
            .names
            .iter()
            .map(|n| std::path::absolute(n).map(|p| p.display().to_string()))
            .collect::<std::io::Result<_>>()?;
        std::fs::write(&list, absolute.join("\n"))?;
        builder.set_spout(
            "lines",
            move || {
                ShellSpout::new([python.to_string_lossy().as_ref(), "lines.py"])
                    .dir(MULTILANG_DIR)
                    .env("WORD_COUNT_FILES", list.to_string_lossy())
                    .output_fields(["line"])
            },
            1,
        );
    } else {
        builder.set_spout(
            "lines",
            move || LineSpout {
                corpus: c.clone(),
                progress: p.clone(),
                repeat,
                deadline: None,
                duration: duration.map(Duration::from_secs),
                pass: 0,
                file: 0,
                line: 0,
                replay: VecDeque::new(),
                checkpoint: state.clone().map(durable::Checkpoint::new),
            },
            1,
        );
    }
    let fail_rate = args.fail_rate;
    if let Some(python) = args.python.clone() {
        builder
            .set_bolt(
                "split",
                move || {
                    ShellBolt::new([python.to_string_lossy().as_ref(), "split.py"])
                        .dir(MULTILANG_DIR)
                        .output_fields(["word"])
                },
                args.split_parallelism,
            )
            .shuffle_grouping("lines");
    } else {
        builder
            .set_basic_bolt(
                "split",
                move || SplitBolt {
                    fail_rate,
                    rng: rand::SeedableRng::from_os_rng(),
                    lines: None,
                    words_per_line: None,
                    split: 0,
                },
                args.split_parallelism,
            )
            .shuffle_grouping("lines");
    }
    if let Some(dir) = args.state_dir.clone().filter(|_| cluster_run) {
        let fast_ack = args.fast_ack;
        let delay = Duration::from_micros(args.count_delay_us);
        builder
            .set_bolt(
                "count",
                move || durable::DurableCountBolt::new(dir.clone(), fast_ack).with_delay(delay),
                args.count_parallelism,
            )
            .set_num_tasks(args.count_parallelism.max(4))
            .set_tick_tuple_freq_secs(1)
            .fields_grouping("split", ["word"]);
        let topology = builder.create_topology()?;
        let id = submit_topology(&args.name, &config, &topology)?;
        println!("submitted topology {} as {id}", args.name);
        return Ok(());
    }
    let s = sink.clone();
    let delay = Duration::from_micros(args.count_delay_us);
    builder
        .set_bolt(
            "count",
            move || CountBolt {
                counts: FxHashMap::default(),
                sink: s.clone(),
                delay,
            },
            args.count_parallelism,
        )
        .fields_grouping("split", ["word"]);
    let topology = builder.create_topology()?;

    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("word-count", &config, topology)?;
    let mut last_report = (Instant::now(), 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if args.python_spout {
            // The Python spout's counts come from the topology's metrics:
            // every line acked once means every line emitted.
            let lines = cluster.metrics("word-count")?.component("lines");
            progress.acked.store(lines.acked, Ordering::Relaxed);
            progress.failed.store(lines.failed, Ordering::Relaxed);
            progress
                .emitted
                .store(lines.acked + lines.pending, Ordering::Relaxed);
            let done = lines.acked == lines_per_pass;
            progress.done_emitting.store(done, Ordering::Release);
        }
        let emitted = progress.emitted.load(Ordering::Relaxed);
        let acked = progress.acked.load(Ordering::Relaxed);
        let failed = progress.failed.load(Ordering::Relaxed);
        if progress.done_emitting.load(Ordering::Acquire)
            && acked == emitted
            && cluster.in_flight("word-count")? == 0
        {
            break;
        }
        let now = Instant::now();
        if now - last_report.0 >= Duration::from_secs(1) {
            let rate = (emitted - last_report.1) as f64 / (now - last_report.0).as_secs_f64();
            eprintln!(
                "word_count: {rate:.0} lines/s, acked {acked}, failed {failed}, pending {}",
                emitted.saturating_sub(acked)
            );
            last_report = (now, emitted);
        }
    }
    let elapsed = started.elapsed();
    let metrics = cluster.kill_topology("word-count")?;
    cluster.shutdown();

    let counts = std::mem::take(&mut *sink.lock().unwrap_or_else(|p| p.into_inner()));
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if let Some(path) = &args.output {
        write_counts(path, &sorted)?;
    }
    let total_words: u64 = sorted.iter().map(|(_, c)| c).sum();
    println!("top 20 words:");
    for (word, count) in sorted.iter().take(20) {
        println!("{count:>10}  {word}");
    }
    let acked = progress.acked.load(Ordering::Relaxed);
    let failed = progress.failed.load(Ordering::Relaxed);
    println!(
        "totals: {} distinct words, {total_words} words, {acked} lines acked, {failed} line failures replayed, {:.2} s",
        sorted.len(),
        elapsed.as_secs_f64()
    );
    if args.bench {
        let secs = elapsed.as_secs_f64();
        let count = metrics.component("count");
        let complete = metrics.component("lines").complete_latency;
        println!(
            "bench: acking={} words/s={:.0} lines/s={:.0} complete_latency_p50_ms={:.2} p99_ms={:.2} peak_rss_mb={:.1}",
            !args.no_ack,
            count.executed as f64 / secs,
            acked as f64 / secs,
            complete.p50_ms,
            complete.p99_ms,
            peak_rss_mb().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
