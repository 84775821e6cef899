//! The multilang protocol's cost per tuple: a spout's tuples go through a
//! bolt that only acks, once as a Rust bolt and once as a Python (pystorm)
//! `ShellBolt`; prints tuples/s for each and the difference per tuple in µs.
//!
//! ```text
//! cargo run --release --example multilang_overhead -- --python "$(scripts/python-env)"
//! ```

use anyhow::Result;
use clap::Parser;
use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Measure the per-tuple cost of a Python multilang bolt")]
struct Args {
    /// A python with pystorm installed (`scripts/python-env` prints one).
    #[arg(long)]
    python: String,
    /// Tuples per run.
    #[arg(long, default_value_t = 200_000)]
    tuples: u64,
    /// topology.max.spout.pending.
    #[arg(long, default_value_t = 1000)]
    max_spout_pending: usize,
}

/// Emits `limit` tracked tuples `[i, "payload"]`, counting acks.
struct NumberSpout {
    next: u64,
    limit: u64,
    acked: Arc<AtomicU64>,
}

impl Spout for NumberSpout {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        if self.next < self.limit {
            out.emit_with_id(values![self.next, "a short payload"], self.next);
            self.next += 1;
        }
    }
    fn ack(&mut self, _id: Value) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }
    fn fail(&mut self, id: Value, reason: FailReason) {
        panic!("tuple {id} failed ({reason})");
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n", "payload"]);
    }
}

struct AckBolt;
impl Bolt for AckBolt {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Runs the topology with `bolt` and returns tuples/s.
fn run<B: Bolt + 'static>(
    args: &Args,
    bolt: impl Fn() -> B + Send + Sync + 'static,
) -> Result<f64> {
    let acked = Arc::new(AtomicU64::new(0));
    let a = acked.clone();
    let limit = args.tuples;
    let mut b = TopologyBuilder::new();
    b.set_spout(
        "numbers",
        move || NumberSpout {
            next: 0,
            limit,
            acked: a.clone(),
        },
        1,
    );
    b.set_bolt("ack", bolt, 1).shuffle_grouping("numbers");
    let mut config = Config::new();
    config.max_spout_pending = Some(args.max_spout_pending);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("overhead", &config, b.create_topology()?)?;
    while acked.load(Ordering::Relaxed) < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = started.elapsed().as_secs_f64();
    cluster.shutdown();
    Ok(limit as f64 / secs)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rust = run(&args, || AckBolt)?;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/multilang_overhead");
    let python = args.python.clone();
    let shell = run(&args, move || {
        ShellBolt::new([python.as_str(), "ack.py"]).dir(dir)
    })?;
    println!(
        "bench: tuples={} rust_bolt_tuples_per_s={rust:.0} python_bolt_tuples_per_s={shell:.0} protocol_overhead_us_per_tuple={:.2}",
        args.tuples,
        1e6 / shell - 1e6 / rust
    );
    Ok(())
}
