//! Windowed bolt throughput: a spout of numbers (acked) into a bolt that
//! sums them, plain (`--mode plain`), over a sliding count window of
//! 10,000 tuples sliding every 1,000 (`count`), or over 10 s tumbling
//! duration windows (`duration`). Prints tuples/s acked and the peak RSS.

use anyhow::Result;
use clap::{Parser, ValueEnum};
use squall::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "../common/rss.rs"]
mod rss;
use rss::peak_rss_mb;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Plain,
    Count,
    Duration,
}

#[derive(Parser)]
#[command(about = "Windowed bolt throughput")]
struct Args {
    #[arg(long, value_enum, default_value = "count")]
    mode: Mode,
    /// Seconds to run.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// topology.max.spout.pending.
    #[arg(long, default_value_t = 50_000)]
    max_spout_pending: usize,
}

/// Emits 1, 2, 3, … tracked; counts acks.
struct Numbers {
    next: i64,
    acked: Arc<AtomicU64>,
}

impl Spout for Numbers {
    fn next_tuple(&mut self, out: &mut SpoutOutputCollector<'_>) {
        for _ in 0..64 {
            self.next += 1;
            out.emit_with_id(values![self.next], self.next);
        }
    }
    fn ack(&mut self, _: Value) {
        self.acked.fetch_add(1, Ordering::Relaxed);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n"]);
    }
}

/// Sums each tuple (no window).
struct PlainSum(i64);

impl Bolt for PlainSum {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        self.0 = self.0.wrapping_add(t.get_i64(0).unwrap_or(0));
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Sums each window and emits the sum.
struct WindowSum;

impl WindowedBolt for WindowSum {
    fn execute(&mut self, w: &TupleWindow<'_>, out: &mut WindowCollector<'_, '_>) {
        let sum: i64 = w.get().filter_map(|t| t.get_i64(0).ok()).sum();
        out.emit(values![sum]);
    }
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["sum"]);
    }
}

/// Acks window sums.
struct Sink;

impl Bolt for Sink {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn main() -> Result<()> {
    let args = Args::parse();
    let acked = Arc::new(AtomicU64::new(0));
    let mut b = TopologyBuilder::new();
    let a = acked.clone();
    b.set_spout(
        "numbers",
        move || Numbers {
            next: 0,
            acked: a.clone(),
        },
        1,
    );
    let mut config = Config::new();
    config.acker_executors = Some(1);
    config.max_spout_pending = Some(args.max_spout_pending);
    let name = match args.mode {
        Mode::Plain => {
            b.set_bolt("sum", || PlainSum(0), 1)
                .shuffle_grouping("numbers");
            "plain bolt"
        }
        Mode::Count => {
            let w = WindowConfig::window(Length::Count(10_000), Length::Count(1_000));
            b.set_windowed_bolt("sum", || WindowSum, w, 1)
                .shuffle_grouping("numbers");
            "count window 10000/1000"
        }
        Mode::Duration => {
            let w = WindowConfig::tumbling(Length::secs(10));
            b.set_windowed_bolt("sum", || WindowSum, w, 1)
                .shuffle_grouping("numbers");
            "duration window 10 s"
        }
    };
    if !matches!(args.mode, Mode::Plain) {
        b.set_bolt("sink", || Sink, 1).shuffle_grouping("sum");
    }
    let cluster = LocalCluster::new();
    cluster.submit_topology("windows-bench", &config, b.create_topology()?)?;
    // Measure after a warm-up of a fifth of the run.
    let warm = Duration::from_secs(args.secs / 5);
    std::thread::sleep(warm);
    let (start, from) = (Instant::now(), acked.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(args.secs) - warm);
    let n = acked.load(Ordering::Relaxed) - from;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    cluster.kill_topology("windows-bench")?;
    println!(
        "bench: {name}: {rate:.0} tuples/s acked, peak RSS {:.0} MB",
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    Ok(())
}
