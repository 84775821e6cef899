//! Store sinks' throughput: rows of the flights CSV (id, carrier, origin,
//! departure delay) from a spout with message ids into `PostgresBolt`
//! (multi-row inserts of `--batch` rows, or one row per statement) or
//! `RedisBolt` (pipelines), every row acked once its write committed.
//! Prints `bench: sink=… rows=… secs=… rows/s=…`.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use squall::connectors::postgres::{PostgresBolt, PostgresBoltConfig, PostgresConfig};
use squall::connectors::redis::{RedisBolt, RedisCommand, RedisConfig};
use squall::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
enum Sink {
    Postgres,
    Redis,
}

#[derive(Parser)]
#[command(about = "Rows/s into PostgreSQL or Redis through the store bolts")]
struct Args {
    /// Which sink.
    #[arg(long, value_enum)]
    sink: Sink,
    /// Rows written.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Rows per statement or pipeline (1: one row per statement).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// The Redis URL or PostgreSQL connection string.
    #[arg(long)]
    target: String,
    /// The flights CSV.
    #[arg(long, default_value = "data/flights/flights.csv")]
    input: PathBuf,
}

/// Emits rows `0..n` (cycling over the CSV), each with its id as message id.
struct Rows {
    lines: Arc<Vec<(String, String, Value)>>,
    next: u64,
    n: u64,
    acked: Arc<AtomicU64>,
}

impl Spout for Rows {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        for _ in 0..100 {
            if self.next >= self.n {
                return;
            }
            let (carrier, origin, delay) = &self.lines[(self.next as usize) % self.lines.len()];
            out.emit_with_id(
                values![
                    self.next as i64,
                    carrier.as_str(),
                    origin.as_str(),
                    delay.clone()
                ],
                self.next as i64,
            );
            self.next += 1;
        }
    }
    fn ack(&mut self, _id: Value) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }
    fn fail(&mut self, id: Value, _reason: FailReason) {
        eprintln!("row {id:?} failed");
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["id", "carrier", "origin", "dep_delay"]);
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let lines: Vec<(String, String, Value)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[9].to_owned(),
                f[12].to_owned(),
                squall::trident::spout::csv_value(f[5]),
            )
        })
        .collect();
    let lines = Arc::new(lines);
    let acked = Arc::new(AtomicU64::new(0));
    let mut b = TopologyBuilder::new();
    let (l, a, n) = (lines.clone(), acked.clone(), args.rows);
    b.set_spout(
        "rows",
        move || Rows {
            lines: l.clone(),
            next: 0,
            n,
            acked: a.clone(),
        },
        1,
    );
    match args.sink {
        Sink::Postgres => {
            let config = PostgresConfig::new(&args.target);
            let mut c = config.connect().map_err(anyhow::Error::msg)?;
            c.batch_execute(
                "DROP TABLE IF EXISTS sink_bench; CREATE TABLE sink_bench \
                 (id bigint PRIMARY KEY, carrier text, origin text, dep_delay integer)",
            )?;
            let bolt = PostgresBoltConfig::new(config, "sink_bench").with_max_batch(args.batch);
            b.set_bolt("write", move || PostgresBolt::new(bolt.clone()), 1)
                .shuffle_grouping("rows");
        }
        Sink::Redis => {
            let url = args.target.clone();
            let batch = args.batch;
            b.set_bolt(
                "write",
                move || {
                    RedisBolt::new(RedisConfig::new(&url), |t: &Tuple| {
                        Ok(vec![RedisCommand::HSet {
                            key: format!("sink_bench:{}", t.get_str(2).map_err(|e| e.to_string())?),
                            field: t.get_i64(0).map_err(|e| e.to_string())?.to_string(),
                            value: t.get_str(1).map_err(|e| e.to_string())?.to_owned(),
                        }])
                    })
                    .with_max_batch(batch)
                },
                1,
            )
            .shuffle_grouping("rows");
        }
    }
    let mut config = Config::new();
    config.acker_executors = Some(1);
    config.max_spout_pending = Some(20_000);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("sink-bench", &config, b.create_topology()?)?;
    while acked.load(Ordering::Relaxed) < args.rows {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!(
                "{} of {} rows acked after 30 minutes",
                acked.load(Ordering::Relaxed),
                args.rows
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    cluster.kill_topology("sink-bench")?;
    let name = match args.sink {
        Sink::Postgres => "postgres",
        Sink::Redis => "redis",
    };
    println!(
        "bench: sink={name} batch={} rows={} secs={secs:.2} rows/s={:.0}",
        args.batch,
        args.rows,
        args.rows as f64 / secs
    );
    Ok(())
}
