//! Word count read from Kafka: `kafka → split → count`, where `kafka` is
//! a `KafkaSpout` on a topic holding one record per line.
//!
//! `--produce` writes the corpus into the topic (one record per line,
//! keyed by file name; the topic is made when missing). Without it, the
//! topology runs in LocalCluster until the consumer group's commits reach
//! the topic's end offsets (every line acked), then prints the counts.
//! Under `squall jar` it submits the topology and exits; the count tasks
//! write their counts into `--counts-dir` every second, which `--read
//! DIR` merges.

#[path = "../common/words.rs"]
mod words;

use anyhow::{bail, Context, Result};
use clap::Parser;
use squall::connectors::kafka::{admin, KafkaSpout, KafkaSpoutConfig};
use squall::*;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use words::{for_each_word, lowercase};

#[derive(Parser)]
#[command(about = "Word count over a Kafka topic of lines")]
struct Args {
    /// Kafka brokers, `host:port[,…]` (default: `$SQUALL_KAFKA`).
    #[arg(long)]
    brokers: Option<String>,
    /// The topic of lines.
    #[arg(long, default_value = "shakespeare")]
    topic: String,
    /// Partitions of the topic when `--produce` makes it.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Writes `--input` into the topic and exits.
    #[arg(long)]
    produce: bool,
    /// Prints each partition's end offset, the group's commit and the lag,
    /// and exits.
    #[arg(long)]
    lag: bool,
    /// Text files, or folders of them (`--produce`).
    #[arg(long, default_value = "data/shakespeare")]
    input: Vec<PathBuf>,
    /// The consumer group (default: `<name>-kafka`).
    #[arg(long)]
    group: Option<String>,
    /// Topology name.
    #[arg(long, default_value = "kafka-word-count")]
    name: String,
    /// Spout tasks.
    #[arg(long, default_value_t = 2)]
    spout_parallelism: u32,
    /// Split tasks.
    #[arg(long, default_value_t = 2)]
    split_parallelism: u32,
    /// Count tasks.
    #[arg(long, default_value_t = 2)]
    count_parallelism: u32,
    /// Worker processes (`squall jar`).
    #[arg(long)]
    workers: Option<u32>,
    /// Offsets are committed every this many ms.
    #[arg(long, default_value_t = 1000)]
    commit_period_ms: u64,
    /// Under `squall jar`: where count tasks write `count-<task>.tsv`.
    #[arg(long)]
    counts_dir: Option<PathBuf>,
    /// Prints the counts merged from the folder DIR instead of running.
    #[arg(long, value_name = "DIR")]
    read: Option<PathBuf>,
    /// Counts written here as `word<TAB>count`, most frequent first.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Words printed.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Config overrides, `key=value`.
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
}

/// Splits a line into lowercased words, anchored to the line.
struct SplitBolt;

impl BasicBolt for SplitBolt {
    fn execute(
        &mut self,
        tuple: &Tuple,
        out: &mut BasicOutputCollector<'_, '_>,
    ) -> Result<(), ExecuteError> {
        let line = tuple.get_str_by_field("value")?;
        for_each_word(line, |w| out.emit(values![lowercase(w)]));
        Ok(())
    }

    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["word"]);
    }
}

type Counts = HashMap<String, u64>;

/// Counts words. In LocalCluster it hands its counts to the driver at
/// cleanup. Under `squall jar` it writes them to `dir` every tick and acks
/// the words counted since only then, and a restarted task starts from its
/// file: a killed worker loses no acked word.
struct CountBolt {
    counts: Counts,
    sink: Arc<Mutex<Counts>>,
    dir: Option<PathBuf>,
    task: u32,
    unwritten: Vec<Tuple>,
}

impl CountBolt {
    fn path(&self) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("count-{}.tsv", self.task)))
    }

    fn write(&self) -> bool {
        let Some(path) = self.path() else {
            return true;
        };
        let tmp = path.with_extension("tmp");
        let sorted: BTreeMap<&String, &u64> = self.counts.iter().collect();
        let lines: String = sorted.iter().map(|(w, c)| format!("{w}\t{c}\n")).collect();
        let written = std::fs::write(&tmp, lines).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = &written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
        written.is_ok()
    }
}

impl Bolt for CountBolt {
    fn prepare(&mut self, context: &TopologyContext) {
        self.task = context.this_task_id().0;
        if let Some(path) = self.path().filter(|p| p.exists()) {
            match read_counts(&path) {
                Ok(c) => self.counts = c,
                Err(e) => tracing::error!("cannot read {}: {e}", path.display()),
            }
        }
    }

    fn execute(&mut self, tuple: &Tuple, out: &mut OutputCollector<'_>) {
        if tuple.is_tick() {
            if self.write() {
                for t in self.unwritten.drain(..) {
                    out.ack(&t);
                }
            }
            out.ack(tuple);
            return;
        }
        if let Some(Value::Str(w)) = tuple.get(0) {
            *self.counts.entry(w.to_string()).or_default() += 1;
        }
        if self.dir.is_some() {
            self.unwritten.push(tuple.clone());
        } else {
            out.ack(tuple);
        }
    }

    fn cleanup(&mut self) {
        self.write();
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        for (w, c) in self.counts.drain() {
            *sink.entry(w).or_default() += c;
        }
    }

    fn declare_output_fields(&self, _d: &mut OutputFieldsDeclarer) {}
}

fn files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            for e in
                std::fs::read_dir(input).with_context(|| format!("reading {}", input.display()))?
            {
                files.push(e?.path());
            }
        } else {
            files.push(input.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// Writes every line of `inputs` into the topic, keyed by file name.
fn produce(args: &Args, brokers: &str) -> Result<()> {
    match admin::partitions(brokers, &args.topic) {
        Ok(p) => println!("topic {} has {} partitions", args.topic, p.len()),
        Err(_) => {
            admin::create_topic(brokers, &args.topic, args.partitions)?;
            println!(
                "created topic {} with {} partitions",
                args.topic, args.partitions
            );
        }
    }
    let started = Instant::now();
    let mut written = 0;
    for file in files(&args.input)? {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let key = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let records = text.lines().map(|line| admin::Record {
            key: Some(key.as_bytes()),
            value: line.as_bytes(),
            partition: None,
        });
        // One record per request: tansu 0.6 reports a partition's end
        // offset as its last batch's first offset + 1.
        written += admin::produce(brokers, &args.topic, records, true)?;
    }
    println!(
        "wrote {written} lines to {} in {:.1} s",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The counts in a `word<TAB>count` file.
fn read_counts(path: &Path) -> Result<Counts> {
    let mut counts = Counts::new();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for line in text.lines() {
        let (w, c) = line
            .split_once('\t')
            .with_context(|| format!("bad line in {}: {line}", path.display()))?;
        *counts.entry(w.to_owned()).or_default() += c.parse::<u64>()?;
    }
    Ok(counts)
}

/// The counts of every `*.tsv` file in `dir`, summed.
fn merge(dir: &Path) -> Result<Counts> {
    let mut counts = Counts::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "tsv") {
            for (w, c) in read_counts(&path)? {
                *counts.entry(w).or_default() += c;
            }
        }
    }
    Ok(counts)
}

fn report(args: &Args, counts: Counts) -> Result<()> {
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (w, c) in sorted.iter().take(args.top) {
        println!("{c:>8} {w}");
    }
    println!(
        "{} distinct words, {} in all",
        sorted.len(),
        sorted.iter().map(|s| s.1).sum::<u64>()
    );
    if let Some(path) = &args.output {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for (w, c) in &sorted {
            writeln!(out, "{w}\t{c}")?;
        }
        out.flush()?;
    }
    Ok(())
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    if let Some(dir) = &args.read {
        return report(&args, merge(dir)?);
    }
    let brokers = match args
        .brokers
        .clone()
        .or_else(|| std::env::var("SQUALL_KAFKA").ok())
    {
        Some(b) => b,
        None => bail!("no brokers: pass --brokers host:port or set SQUALL_KAFKA"),
    };
    if args.produce {
        return produce(&args, &brokers);
    }
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("{}-kafka", args.name));
    if args.lag {
        let ends = admin::end_offsets(&brokers, &args.topic)?;
        let committed = admin::committed_offsets(&brokers, &group, &args.topic)?;
        println!("partition  end  committed  lag");
        for (p, end) in ends {
            let c = committed.get(&p).copied();
            let lag = c.map_or(end, |c| end - c);
            println!(
                "{p} {end} {} {lag}",
                c.map_or("-".to_owned(), |c| c.to_string())
            );
        }
        return Ok(());
    }
    let cluster_run = is_cluster_run();
    if cluster_run && args.counts_dir.is_none() {
        bail!("--counts-dir is required under `squall jar`");
    }
    let mut overrides = Vec::new();
    if let Some(w) = args.workers {
        overrides.push(format!("topology.workers={w}"));
    }
    overrides.extend(args.config.iter().cloned());
    let config = load_config(None, &overrides)?;
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| format!("{}-kafka", args.name));
    let spout = KafkaSpoutConfig::new(&brokers, [args.topic.as_str()])
        .with_group_id(&group)
        .with_offset_commit_period_ms(args.commit_period_ms);
    let sink = Arc::new(Mutex::new(Counts::new()));
    let mut b = TopologyBuilder::new();
    b.set_spout(
        "kafka",
        move || KafkaSpout::new(spout.clone()),
        args.spout_parallelism,
    );
    b.set_basic_bolt("split", || SplitBolt, args.split_parallelism)
        .shuffle_grouping("kafka");
    let (s, dir) = (sink.clone(), args.counts_dir.clone());
    b.set_bolt(
        "count",
        move || CountBolt {
            counts: Counts::new(),
            sink: s.clone(),
            dir: dir.clone(),
            task: 0,
            unwritten: Vec::new(),
        },
        args.count_parallelism,
    )
    .fields_grouping("split", ["word"])
    .set_tick_tuple_freq_secs(1);
    let topology = b.create_topology()?;
    if cluster_run {
        let id = submit_topology(&args.name, &config, &topology)?;
        println!("submitted topology {} as {id}", args.name);
        return Ok(());
    }
    let ends = admin::end_offsets(&brokers, &args.topic)?;
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology(&args.name, &config, topology)?;
    loop {
        let committed = admin::committed_offsets(&brokers, &group, &args.topic).unwrap_or_default();
        if ends
            .iter()
            .all(|(p, end)| committed.get(p).is_some_and(|c| c >= end))
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("group {group} committed {committed:?} of {ends:?} after 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = started.elapsed();
    let metrics = cluster.kill_topology(&args.name)?;
    cluster.shutdown();
    let lines: u64 = metrics.component("kafka").emitted;
    eprintln!(
        "read {lines} lines from {} in {:.1} s",
        args.topic,
        elapsed.as_secs_f64()
    );
    let counts = std::mem::take(&mut *sink.lock().unwrap_or_else(|p| p.into_inner()));
    report(&args, counts)
}
