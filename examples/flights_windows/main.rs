//! Flights per carrier in event-time windows: every row of the NYC 2013
//! flights CSV, with its `time_hour` (UTC) as event time, counted per
//! carrier in 1-hour tumbling windows and in 3-hour windows sliding by 1
//! hour, with the mean arrival delay over rows that have one. The spout
//! plays the file's month groups in calendar order; rows within a month
//! are up to 22 hours out of order, which a lag of one day covers.

mod windows;

use anyhow::{bail, Result};
use clap::Parser;
use squall::*;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use windows::{format_ts, Run};

#[derive(Parser)]
#[command(about = "Flights and mean arrival delay per carrier in event-time windows")]
struct Args {
    /// The flights CSV.
    #[arg(long, default_value = "data/flights/flights.csv")]
    input: PathBuf,
    /// Every window written here: kind, carrier, window start, flights,
    /// mean delay (tab-separated).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Allowed lateness, in hours.
    #[arg(long, default_value_t = 24)]
    lag_hours: u64,
    /// Tasks per windowed bolt.
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    let rows = windows::arrival_order(windows::load(&args.input).map_err(anyhow::Error::msg)?);
    let run = Run::new(rows);
    let lag = Duration::from_secs(args.lag_hours * 3600);
    let topology = windows::topology(&run, lag, args.parallelism)?;
    let mut config = Config::new();
    config.acker_executors = Some(1);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("flights-windows", &config, topology)?;
    while !run.done() {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("rows not all processed after 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    cluster.kill_topology("flights-windows")?;
    let received = run.received.lock().unwrap();
    let late: usize = received.late.values().map(Vec::len).sum();
    println!(
        "{} flights in {:.2} s ({:.0} rows/s), {} windows, {late} late rows",
        run.rows.len(),
        elapsed.as_secs_f64(),
        run.rows.len() as f64 / elapsed.as_secs_f64(),
        received.figures.len(),
    );
    let expected = windows::plain(&run.rows, &windows::KINDS);
    let mismatches = windows::differences(&expected, &received.figures);
    if late == 0 {
        println!(
            "plain computation over the CSV: {} windows, {} differ",
            expected.len(),
            mismatches.len()
        );
    }
    let mut hours: Vec<_> = received
        .figures
        .iter()
        .filter(|((kind, _, _), f)| kind == "1h" && !f.mean_delay.is_nan())
        .collect();
    hours.sort_by(|a, b| b.1.mean_delay.total_cmp(&a.1.mean_delay));
    println!("the 10 worst carrier-hours by mean arrival delay:");
    println!("carrier  hour (UTC)             flights  mean delay (min)");
    for ((_, carrier, start), f) in hours.iter().take(10) {
        println!(
            "{carrier:<7}  {}  {:>7}  {:>8.1}",
            format_ts(*start),
            f.flights,
            f.mean_delay
        );
    }
    if let Some(path) = &args.output {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for ((kind, carrier, start), f) in &received.figures {
            writeln!(
                out,
                "{kind}\t{carrier}\t{}\t{}\t{}",
                format_ts(*start),
                f.flights,
                f.mean_delay
            )?;
        }
        out.flush()?;
        println!("windows written to {}", path.display());
    }
    Ok(())
}
