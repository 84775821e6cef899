//! Trident word count: lines of text files in batches, split into words,
//! counted per word in a state updated exactly once per batch.
//!
//! In LocalCluster (the default) it runs until every line is committed,
//! then prints throughput, batch commit latency and the top words, and
//! with `--output` writes every count (`word<TAB>count`, sorted by word).
//! Under `squall jar` (with `--state-dir`) it submits the topology to the
//! cluster, counts kept in `redb` files under the state folder; `--read
//! DIR` prints the counts of such a folder once the topology is killed.

use anyhow::{bail, Context, Result};
use clap::Parser;
use squall::connectors::kafka::{self, KafkaSpoutConfig, KafkaTridentSpout};
use squall::connectors::postgres::{PostgresConfig, PostgresMapState, SqlType};
use squall::connectors::redis::{RedisConfig, RedisMapState};
use squall::trident::*;
use squall::*;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Count words of text files with a Trident topology")]
struct Args {
    /// Text files or folders of them.
    #[arg(long, default_value = "data/shakespeare")]
    input: Vec<PathBuf>,
    /// Lines per batch.
    #[arg(long, default_value_t = 10_000)]
    batch_lines: u64,
    /// Batches in flight (topology.max.spout.pending).
    #[arg(long, default_value_t = DEFAULT_MAX_BATCHES)]
    max_batches: usize,
    /// Emitter tasks (split runs in them).
    #[arg(long, default_value_t = 1)]
    spout_parallelism: u32,
    /// State partitions (count tasks).
    #[arg(long, default_value_t = 1)]
    count_parallelism: u32,
    /// Keep counts in redb files under this folder (durable); in memory
    /// without it.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Keep counts in this Redis server (`redis://host:port/`), keys
    /// `wc:<word>`.
    #[arg(long, value_name = "URL", conflicts_with = "state_dir")]
    redis: Option<String>,
    /// Keep counts in this PostgreSQL database (a libpq connection
    /// string), table `word_counts` (made afresh).
    #[arg(long, value_name = "CONNECTION", conflicts_with_all = ["state_dir", "redis"])]
    postgres: Option<String>,
    /// Read the lines from this Kafka cluster (`host:port`) instead of
    /// files: topic `--topic`, one record per line (`kafka_word_count
    /// --produce` writes them); each batch takes `--batch-lines` records
    /// per partition at most.
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// The Kafka topic of lines.
    #[arg(long, default_value = "shakespeare")]
    topic: String,
    /// Opaque state and spout instead of transactional.
    #[arg(long)]
    opaque: bool,
    /// Topology name (and txid name) under `squall jar`.
    #[arg(long, default_value = "trident-word-count")]
    name: String,
    /// Workers under `squall jar`.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// Print the N most frequent words.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Write every count to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print (and with --output write) the counts kept in this state folder
    /// by a cluster run, then exit.
    #[arg(long)]
    read: Option<PathBuf>,
}

/// Lower-cased runs of alphanumeric characters.
fn split(t: &TridentTuple, out: &mut TridentCollector) -> Result<(), ExecuteError> {
    for w in t.str(0)?.split(|c: char| !c.is_alphanumeric()) {
        if w.is_empty() {
            continue;
        }
        if w.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
            out.emit(values![w.to_lowercase()]);
        } else {
            out.emit(values![w]);
        }
    }
    Ok(())
}

/// Where the lines come from.
enum Source {
    Files(RecordSpout),
    Kafka(String, KafkaTridentSpout),
}

/// Where the counts live.
#[derive(Clone)]
enum Counts {
    Local(MapStateFactory),
    Redis(RedisMapState),
    Postgres(PostgresMapState),
}

impl Counts {
    fn read_all(&self) -> Result<HashMap<Key, Value>, StateError> {
        match self {
            Counts::Local(s) => s.read_all(),
            Counts::Redis(s) => s.read_all(),
            Counts::Postgres(s) => s.read_all(),
        }
    }
}

impl StateFactory for Counts {
    fn make_state(&self, p: &state::StatePartition) -> Result<Box<dyn MapState>, StateError> {
        match self {
            Counts::Local(s) => s.make_state(p),
            Counts::Redis(s) => s.make_state(p),
            Counts::Postgres(s) => s.make_state(p),
        }
    }
}

fn state_factory(args: &Args, dir: Option<&PathBuf>) -> Result<Counts> {
    let semantics = if args.opaque {
        Semantics::Opaque
    } else {
        Semantics::Transactional
    };
    if let (None, Some(url)) = (dir, &args.redis) {
        let config = RedisConfig::new(url);
        let mut con = config.connect().map_err(anyhow::Error::msg)?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("wc:*").query(&mut con)?;
        for chunk in keys.chunks(1000) {
            redis::cmd("DEL").arg(chunk).query::<()>(&mut con)?;
        }
        return Ok(Counts::Redis(
            RedisMapState::new(config, "wc:").with_semantics(semantics),
        ));
    }
    if let (None, Some(conn)) = (dir, &args.postgres) {
        let config = PostgresConfig::new(conn);
        let mut client = config.connect().map_err(anyhow::Error::msg)?;
        client.batch_execute("DROP TABLE IF EXISTS word_counts")?;
        let state = PostgresMapState::new(config, "word_counts", &["word"], &["count"])
            .with_semantics(semantics);
        state.create_table(&[SqlType::Text], &[SqlType::Int8])?;
        return Ok(Counts::Postgres(state));
    }
    let f = match dir {
        Some(d) => MapStateFactory::redb(d, "counts"),
        None => MapStateFactory::memory(&args.name),
    };
    Ok(Counts::Local(f.with_semantics(semantics)))
}

fn report(args: &Args, state: &Counts) -> Result<()> {
    let mut counts: Vec<(String, i64)> = state
        .read_all()?
        .into_iter()
        .filter_map(|(k, v)| Some((k.0.first()?.as_str()?.to_owned(), v.as_i64()?)))
        .collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let total: i64 = counts.iter().map(|c| c.1).sum();
    println!("{} distinct words, {total} words", counts.len());
    for (w, c) in counts.iter().take(args.top) {
        println!("{c:>8} {w}");
    }
    if let Some(path) = &args.output {
        counts.sort();
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for (w, c) in &counts {
            writeln!(f, "{w}\t{c}")?;
        }
        f.flush()?;
    }
    Ok(())
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    if let Some(dir) = &args.read {
        return report(&args, &state_factory(&args, Some(dir))?);
    }
    let cluster_run = is_cluster_run();
    if cluster_run && args.state_dir.is_none() {
        bail!("under squall jar, --state-dir is needed: memory state would not survive a worker");
    }
    let state = state_factory(&args, args.state_dir.as_ref())?;
    let t = TridentTopology::new();
    let (stream, source) = match &args.kafka {
        Some(brokers) => {
            let config = KafkaSpoutConfig::new(brokers, [args.topic.as_str()]);
            let mut spout =
                KafkaTridentSpout::opaque(config).with_max_batch_records(args.batch_lines as i64);
            if !args.opaque {
                spout = spout.transactional();
            }
            let stream = t
                .new_stream(&args.name, spout.clone())
                .each(["value"], split, ["word"]);
            (stream, Source::Kafka(brokers.clone(), spout))
        }
        None => {
            let mut spout =
                RecordSpout::lines(&args.input, args.batch_lines).map_err(anyhow::Error::msg)?;
            if args.opaque {
                spout = spout.opaque();
            }
            let stream = t
                .new_stream(&args.name, spout.clone())
                .each(["line"], split, ["word"]);
            (stream, Source::Files(spout))
        }
    };
    stream
        .parallelism_hint(args.spout_parallelism)
        .group_by(["word"])
        .persistent_aggregate(state.clone(), Fields::default(), Count, ["count"])
        .parallelism_hint(args.count_parallelism);
    let topology = t.build()?;
    let mut config = Config::new();
    config.max_spout_pending = Some(args.max_batches);
    config.acker_executors = Some(1);
    config.workers = args.workers;
    if cluster_run {
        let id = submit_topology(&args.name, &config, &topology)?;
        println!("submitted topology {} as {id}", args.name);
        return Ok(());
    }

    let progress = match &source {
        Source::Files(spout) => Some(spout.progress()),
        Source::Kafka(..) => None,
    };
    let (lines, committed): (u64, Box<dyn Fn() -> u64>) = match source {
        Source::Files(spout) => {
            let progress = spout.progress();
            let lines = spout.records().map_err(anyhow::Error::msg)?;
            (lines, Box::new(move || progress.committed()))
        }
        Source::Kafka(brokers, spout) => {
            let ends = kafka::admin::end_offsets(&brokers, &args.topic)?;
            let lines = ends.values().sum::<i64>() as u64;
            let topic = args.topic.clone();
            let read = move || {
                let c = spout.committed_offsets();
                ends.iter()
                    .map(|(p, end)| {
                        let tp = kafka::TopicPartition::new(&topic, *p);
                        c.get(&tp).copied().unwrap_or(0).min(*end) as u64
                    })
                    .sum()
            };
            (lines, Box::new(read))
        }
    };
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology(&args.name, &config, topology)?;
    let deadline = started + Duration::from_secs(3600);
    while committed() < lines {
        if Instant::now() > deadline {
            bail!(
                "not done within an hour: {} of {lines} lines committed",
                committed()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    cluster
        .kill_topology(&args.name)
        .context("killing the topology")?;
    let words: i64 = state.read_all()?.values().filter_map(|v| v.as_i64()).sum();
    // Commit latencies are kept by the file spout.
    let mut lat = progress.map(|p| p.commit_latencies()).unwrap_or_default();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{lines} lines, {words} words in {:.2} s: {:.0} words/s; {} batches of {} lines, commit latency p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        words as f64 / elapsed.as_secs_f64(),
        lat.len(),
        args.batch_lines,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    report(&args, &state)
}
