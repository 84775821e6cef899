//! Word count with a stateful bolt: `lines → split → count`, where `count`
//! keeps its counts in a checkpointed `KeyValueState` (Storm's
//! `StatefulWordCount`), so the counts reflect every line exactly once
//! although lines are replayed when they fail.
//!
//! In LocalCluster (the default) it runs until every line is acked and
//! prints the counts from the state. Under `squall jar` it submits the
//! topology and exits; with `-c topology.state.provider=redb` the counts
//! are in redb files that `--read DIR` prints once the topology is killed.

mod count;

use anyhow::{bail, Context, Result};
use clap::Parser;
use count::{LineSpout, Lines, Progress, SplitBolt, WordCountBolt};
use squall::connectors::redis::{RedisStateProvider, REDIS_PROVIDER};
use squall::stateful::{MemoryProvider, RedbProvider};
use squall::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Word count whose counts live in a checkpointed KeyValueState")]
struct Args {
    /// Text files, or folders of them.
    #[arg(long, default_value = "data/shakespeare")]
    input: Vec<PathBuf>,
    /// Counts written here as `word<TAB>count`, most frequent first.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Topology name.
    #[arg(long, default_value = "stateful-word-count")]
    name: String,
    /// Split tasks.
    #[arg(long, default_value_t = 2)]
    split_parallelism: u32,
    /// Count tasks (each with its own state).
    #[arg(long, default_value_t = 2)]
    count_parallelism: u32,
    /// Worker processes (`squall jar`).
    #[arg(long)]
    workers: Option<u32>,
    /// `topology.max.spout.pending`.
    #[arg(long)]
    max_spout_pending: Option<usize>,
    /// Fraction of words the count bolt fails (before counting them): the
    /// checkpoint rolls back and the lines replay.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Read the input this many times (benchmarks).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Most words each count task fails.
    #[arg(long, default_value_t = 10)]
    max_failures: u64,
    /// Under `squall jar`: where the spout writes its progress
    /// (`lines-<task>.progress`: acked, emitted, total).
    #[arg(long)]
    progress_dir: Option<PathBuf>,
    /// Prints the counts kept in the redb state folder DIR (of topology
    /// `--name`) instead of running.
    #[arg(long, value_name = "DIR")]
    read: Option<PathBuf>,
    /// Words printed.
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Config overrides, `key=value`.
    #[arg(short = 'c', long = "config")]
    config: Vec<String>,
    /// Config file (`squall.yaml` by default, when present).
    #[arg(long)]
    conf: Option<PathBuf>,
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    RedisStateProvider::register();
    if let Some(dir) = &args.read {
        let state = RedbProvider::new(dir).read(&args.name)?;
        return report(&args, count::merge(state)?);
    }
    let lines = Arc::new(Lines::load(&args.input, args.repeat)?);
    let mut overrides = Vec::new();
    if let Some(p) = args.max_spout_pending {
        overrides.push(format!("topology.max.spout.pending={p}"));
    }
    if let Some(w) = args.workers {
        overrides.push(format!("topology.workers={w}"));
    }
    overrides.extend(args.config.iter().cloned());
    let config = load_config(args.conf.as_deref(), &overrides)?;
    let cluster_run = is_cluster_run();
    if cluster_run && args.progress_dir.is_none() {
        bail!("--progress-dir is required under `squall jar`");
    }

    let progress = Arc::new(Progress::default());
    let mut b = TopologyBuilder::new();
    let (l, p, dir) = (lines.clone(), progress.clone(), args.progress_dir.clone());
    b.set_spout(
        "lines",
        move || LineSpout::new(l.clone(), p.clone(), dir.clone()),
        1,
    );
    b.set_basic_bolt("split", || SplitBolt, args.split_parallelism)
        .shuffle_grouping("lines");
    let (fail_rate, max_failures) = (args.fail_rate, args.max_failures);
    b.set_stateful_bolt(
        "count",
        move || WordCountBolt::new(fail_rate, max_failures),
        args.count_parallelism,
    )
    .fields_grouping("split", ["word"]);
    let topology = b.create_topology()?;

    if cluster_run {
        let id = submit_topology(&args.name, &config, &topology)?;
        println!("submitted topology {} as {id}", args.name);
        return Ok(());
    }
    MemoryProvider::clear(&args.name);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology(&args.name, &config, topology)?;
    let total = lines.len() as u64;
    while progress.acked() < total {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!(
                "{} of {total} lines acked after 30 minutes",
                progress.acked()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let metrics = cluster.kill_topology(&args.name)?;
    let rollbacks: f64 = metrics
        .tasks
        .values()
        .filter_map(|t| t.user.get(count::ROLLBACKS))
        .sum();
    let counts = if config.state_provider == "redb" {
        let dir = config
            .state_provider_config
            .clone()
            .context("-c topology.state.provider.config=DIR is needed to read redb state")?;
        count::merge(RedbProvider::new(dir).read(&args.name)?)?
    } else if config.state_provider == REDIS_PROVIDER {
        let url = config
            .state_provider_config
            .clone()
            .context("-c topology.state.provider.config=redis://HOST:PORT/ is needed")?;
        count::merge(RedisStateProvider::from_url(&url).read(&args.name)?)?
    } else {
        count::merge(MemoryProvider::read(&args.name))?
    };
    let words: i64 = counts.values().sum();
    println!(
        "{total} lines, {words} words in {:.2} s ({:.0} words/s), {} replayed lines, {rollbacks} rollbacks",
        elapsed.as_secs_f64(),
        words as f64 / elapsed.as_secs_f64(),
        progress.replayed()
    );
    report(&args, counts)
}

fn report(args: &Args, counts: BTreeMap<String, i64>) -> Result<()> {
    let mut sorted: Vec<(String, i64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (w, n) in sorted.iter().take(args.top) {
        println!("{w:<16} {n:>8}");
    }
    let total: i64 = sorted.iter().map(|(_, n)| n).sum();
    println!("totals: {} distinct words, {total} words", sorted.len());
    if let Some(path) = &args.output {
        write_counts(path, &sorted)?;
    }
    Ok(())
}

fn write_counts(path: &Path, sorted: &[(String, i64)]) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (w, n) in sorted {
        writeln!(out, "{w}\t{n}")?;
    }
    out.flush()?;
    Ok(())
}
