//! Kafka throughput figures (`scripts/bench-kafka` runs them against one
//! broker): a plain librdkafka consumer loop, `KafkaSpout → null bolt`
//! with acking on the same topic, and `KafkaBolt` writes.
//!
//! - `--mode produce`: writes `--records` records of `--size` bytes into
//!   `--topic` (made with `--partitions` partitions when missing).
//! - `--mode consume`: reads `--records` records with a `BaseConsumer`,
//!   no Squall: the reference.
//! - `--mode spout`: `KafkaSpout` (acking) → a bolt that acks, until
//!   `--records` tuples were acked.
//! - `--mode bolt`: a spout of `--records` tuples → `KafkaBolt` into
//!   `--topic`, until every tuple is acked (written).
//!
//! Each mode prints one line: `<mode> <records> records in <s> s:
//! <records/s>`.
//!
//! The binary allocates with mimalloc (Squall's default allocator): with glibc's malloc, tuples
//! allocated on the spout's thread and freed on the bolt's and acker's
//! threads contend on malloc's arena locks, and the spout runs at about
//! half the rate. Both sides run in this one binary, so their ratio
//! compares like with like.

use anyhow::{bail, Result};
use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use squall::connectors::kafka::{admin, KafkaBolt, KafkaBoltConfig, KafkaSpout, KafkaSpoutConfig};
use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Kafka spout and bolt throughput")]
struct Args {
    /// produce, consume, spout or bolt.
    #[arg(long)]
    mode: String,
    /// Kafka brokers (default: `$SQUALL_KAFKA`).
    #[arg(long)]
    brokers: Option<String>,
    /// The topic.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Records.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record value (`produce`, `bolt`).
    #[arg(long, default_value_t = 50)]
    size: usize,
    /// Partitions of a topic `produce` makes.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Spout tasks (`spout`).
    #[arg(long, default_value_t = 1)]
    spouts: u32,
}

fn report(mode: &str, records: u64, started: Instant) {
    let s = started.elapsed().as_secs_f64();
    println!(
        "{mode} {records} records in {s:.2} s: {:.0} records/s",
        records as f64 / s
    );
}

fn produce(args: &Args, brokers: &str) -> Result<()> {
    if admin::partitions(brokers, &args.topic).is_err() {
        admin::create_topic(brokers, &args.topic, args.partitions)?;
    }
    let value = vec![b'x'; args.size];
    let started = Instant::now();
    let records = (0..args.records).map(|i| admin::Record {
        key: None,
        value: &value,
        partition: Some((i % args.partitions as u64) as i32),
    });
    let n = admin::produce(brokers, &args.topic, records, false)?;
    report("produce", n, started);
    Ok(())
}

fn consume(args: &Args, brokers: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in admin::partitions(brokers, &args.topic)? {
        tpl.add_partition_offset(&args.topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut n = 0;
    let mut bytes = 0;
    while n < args.records {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            bytes += rdkafka::Message::payload(&m?).map_or(0, <[u8]>::len);
            n += 1;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("read {n} of {} records in 10 minutes", args.records);
        }
    }
    report("consume", n, started);
    eprintln!("{bytes} value bytes");
    Ok(())
}

/// Acks every tuple and counts it.
struct Null(Arc<AtomicU64>);

impl Bolt for Null {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn spout(args: &Args, brokers: &str) -> Result<()> {
    let acked = Arc::new(AtomicU64::new(0));
    // A new group each run: every run reads the topic from the start.
    let group = format!("bench-spout-{}", std::process::id());
    let config = KafkaSpoutConfig::new(brokers, [args.topic.as_str()]).with_group_id(&group);
    let mut b = TopologyBuilder::new();
    b.set_spout(
        "kafka",
        move || KafkaSpout::new(config.clone()),
        args.spouts,
    );
    let a = acked.clone();
    b.set_bolt("null", move || Null(a.clone()), 1)
        .shuffle_grouping("kafka");
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("bench-spout", &Config::new(), b.create_topology()?)?;
    wait(&acked, args.records, started)?;
    report("spout", args.records, started);
    cluster.shutdown();
    Ok(())
}

/// Emits `n` tuples `[message]` with message ids.
struct Source {
    left: u64,
    value: String,
}

impl Spout for Source {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        for _ in 0..100 {
            if self.left == 0 {
                return;
            }
            self.left -= 1;
            out.emit_with_id(values![self.value.clone()], self.left);
        }
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["message"]);
    }
}

/// Counts acked tuples of a [`Source`].
struct Counted(Source, Arc<AtomicU64>);

impl Spout for Counted {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        self.0.next_tuple(out)
    }
    fn ack(&mut self, _: Value) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        self.0.declare_output_fields(d)
    }
}

fn bolt(args: &Args, brokers: &str) -> Result<()> {
    if admin::partitions(brokers, &args.topic).is_err() {
        admin::create_topic(brokers, &args.topic, args.partitions)?;
    }
    let acked = Arc::new(AtomicU64::new(0));
    let (n, value, a) = (args.records, "x".repeat(args.size), acked.clone());
    let mut b = TopologyBuilder::new();
    b.set_spout(
        "source",
        move || {
            Counted(
                Source {
                    left: n,
                    value: value.clone(),
                },
                a.clone(),
            )
        },
        1,
    );
    let sink = KafkaBoltConfig::new(brokers, &args.topic);
    b.set_bolt("write", move || KafkaBolt::new(sink.clone()), 1)
        .shuffle_grouping("source");
    let mut config = Config::new();
    config.max_spout_pending = Some(20_000);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("bench-bolt", &config, b.create_topology()?)?;
    wait(&acked, args.records, started)?;
    report("bolt", args.records, started);
    cluster.shutdown();
    Ok(())
}

fn wait(count: &AtomicU64, n: u64, started: Instant) -> Result<()> {
    while count.load(Ordering::Relaxed) < n {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{} of {n} in 10 minutes", count.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    let Some(brokers) = args
        .brokers
        .clone()
        .or_else(|| std::env::var("SQUALL_KAFKA").ok())
    else {
        bail!("no brokers: pass --brokers host:port or set SQUALL_KAFKA");
    };
    match args.mode.as_str() {
        "produce" => produce(&args, &brokers),
        "consume" => consume(&args, &brokers),
        "spout" => spout(&args, &brokers),
        "bolt" => bolt(&args, &brokers),
        m => bail!("unknown mode {m:?}: produce, consume, spout or bolt"),
    }
}
