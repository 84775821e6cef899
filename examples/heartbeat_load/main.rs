//! Nimbus under the heartbeats of 200 workers. A topology of 2,000
//! executors (plus one acker per worker) is scheduled over 40 supervisors
//! of 5 slots in an in-memory cluster state; Nimbus serves its RPC on
//! 127.0.0.1 and runs its monitor loop. A second process (this binary with
//! `--generate`) plays the 40 supervisors: each keeps one connection and
//! sends its 5 workers' heartbeats, with a full set of task metrics, every
//! second (`supervisor.monitor.frequency.secs`), as
//! `Request::SupervisorHeartbeats`. Printed: Nimbus's CPU (this process,
//! user + system, % of one core) and resident memory over the measured
//! window, the report round trip seen by the generator, and whether any
//! worker was taken for dead.

use anyhow::{bail, Context, Result};
use clap::Parser;
use squall::TaskId;
use squall_cluster::now_ms;
use squall_cluster::rpc::{NimbusClient, Request, Response};
use squall_cluster::schema::WorkerHeartbeat;
use squall_topology_api::metrics::{LatencySummary, TaskMetrics, LATENCY_BUCKETS_MS};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "../common/nimbus_load.rs"]
mod nimbus_load;

#[derive(Parser)]
#[command(about = "Nimbus receiving many workers' heartbeats")]
struct Args {
    /// Supervisors.
    #[arg(long, default_value_t = 40)]
    supervisors: u16,
    /// Slots (workers) per supervisor.
    #[arg(long, default_value_t = 5)]
    slots: u16,
    /// Executors of the topology's own components.
    #[arg(long, default_value_t = 2000)]
    executors: u32,
    /// Seconds measured, after 5 s of warm-up.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Generator mode: send the reports in FILE to the Nimbus at ADDRESS.
    #[arg(long, num_args = 2, value_names = ["FILE", "ADDRESS"])]
    generate: Option<Vec<String>>,
}

/// One supervisor's report: its id and its workers' beats.
type Report = (String, Vec<WorkerHeartbeat>);

/// This process's CPU time (user + system), s, from `/proc/self/stat` in
/// clock ticks of 1/100 s (Linux's `USER_HZ`).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command (which may hold spaces) start at state.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Metrics of a busy task: every counter set, latencies with buckets.
fn task_metrics(component: &str, n: u64) -> TaskMetrics {
    let latency = LatencySummary {
        count: n,
        mean_ms: 0.4,
        p50_ms: 0.3,
        p99_ms: 2.5,
        max_ms: 9.0,
        buckets: (0..LATENCY_BUCKETS_MS.len() as u64)
            .map(|i| n * i / 16)
            .collect(),
    };
    TaskMetrics {
        component: component.into(),
        emitted: BTreeMap::from([("default".into(), n), ("__ack_ack".into(), n)]),
        transferred: n,
        transferred_streams: BTreeMap::from([("default".into(), n)]),
        acked: n,
        executed: n,
        execute_latency: latency.clone(),
        process_latency: latency.clone(),
        complete_latency: latency,
        capacity: 0.5,
        ..TaskMetrics::default()
    }
}

fn generate(file: &str, address: &str, seconds: u64) -> Result<()> {
    let reports: Vec<Report> = serde_json::from_slice(&std::fs::read(file)?)?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = reports
        .into_iter()
        .map(|(supervisor_id, mut beats)| {
            let address = address.to_owned();
            std::thread::spawn(move || -> Result<Vec<Duration>> {
                let mut client = NimbusClient::connect(&[address], 64 << 20)?;
                let mut times = Vec::new();
                let mut next = Instant::now();
                while Instant::now() < until {
                    for b in &mut beats {
                        b.time_ms = now_ms();
                        for m in b.metrics.tasks.values_mut() {
                            m.acked += 1_000;
                            m.executed += 1_000;
                        }
                    }
                    let sent = Instant::now();
                    client.call_ok(Request::SupervisorHeartbeats {
                        supervisor_id: supervisor_id.clone(),
                        beats: beats.clone(),
                    })?;
                    times.push(sent.elapsed());
                    next += Duration::from_secs(1);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                Ok(times)
            })
        })
        .collect();
    let mut times = Vec::new();
    for t in threads {
        times.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))??,
        );
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "generator: {} reports; round trip p50 {:.2} ms, p99 {:.2} ms",
        times.len(),
        at(0.5),
        at(0.99)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(g) = &args.generate {
        return generate(&g[0], &g[1], args.seconds + 5);
    }
    let workers = u32::from(args.supervisors) * u32::from(args.slots);
    let scheduled = nimbus_load::schedule("load", args.supervisors, args.slots, args.executors)?;
    let (nimbus, state, id) = (&scheduled.nimbus, &scheduled.state, &scheduled.id);
    let assignment = &scheduled.assignment;
    let dir = tempfile::tempdir()?;

    // Each supervisor's report: a beat per slot with its tasks' metrics.
    let mut reports: BTreeMap<String, Vec<WorkerHeartbeat>> = BTreeMap::new();
    let mut tasks = 0;
    for slot in assignment.slots() {
        let executors = assignment.executors_on(&slot);
        let mut metrics = squall_topology_api::metrics::TopologyMetrics::default();
        for e in &executors {
            for t in e.tasks.clone() {
                metrics
                    .tasks
                    .insert(TaskId(t), task_metrics(e.component.as_str(), 1_000));
                tasks += 1;
            }
        }
        reports
            .entry(slot.supervisor.clone())
            .or_default()
            .push(WorkerHeartbeat {
                topology_id: id.clone(),
                slot,
                time_ms: 0,
                executors,
                metrics,
                started_at_ms: now_ms(),
            });
    }
    let file = dir.path().join("reports.json");
    let reports: Vec<Report> = reports.into_iter().collect();
    let bytes = serde_json::to_vec(&reports)?;
    std::fs::write(&file, &bytes)?;

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    std::thread::spawn({
        let nimbus = nimbus.clone();
        move || squall_nimbus::serve(listener, nimbus, None)
    });
    squall_nimbus::start_monitor(nimbus.clone());
    let mut generator = std::process::Command::new(std::env::current_exe()?)
        .args(["--seconds", &args.seconds.to_string(), "--generate"])
        .arg(&file)
        .arg(&address)
        .spawn()
        .context("start the generator")?;
    std::thread::sleep(Duration::from_secs(5));
    let (cpu0, rss0, t0) = (cpu_secs(), nimbus_load::rss_mb(), Instant::now());
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (cpu1, rss1, secs) = (
        cpu_secs(),
        nimbus_load::rss_mb(),
        t0.elapsed().as_secs_f64(),
    );
    let status = generator.wait()?;
    if !status.success() {
        bail!("the generator failed: {status}");
    }
    let info = nimbus.handle(Request::Info {
        name: "load".into(),
    });
    let Response::Info(info) = info else {
        bail!("info refused: {info:?}");
    };
    let (now, _) = state.assignment(id)?.context("the assignment")?;
    println!(
        "heartbeats: {workers} workers on {} supervisors, {} executors (scheduled in {:.1} ms), {tasks} tasks; one report per supervisor a second ({} KB each)",
        args.supervisors,
        assignment.executors.len(),
        scheduled.to_assignment.as_secs_f64() * 1e3,
        bytes.len() / 1024 / reports.len().max(1),
    );
    println!(
        "heartbeats: Nimbus CPU {:.1} % of one core over {secs:.0} s; resident memory {rss0:.1} MB at the start, {rss1:.1} MB at the end",
        100.0 * (cpu1 - cpu0) / secs,
    );
    println!(
        "heartbeats: Info sees {} tasks' metrics; assignment {}",
        info.metrics.tasks.len(),
        if now == *assignment {
            "unchanged (no worker taken for dead)"
        } else {
            "CHANGED (a worker was taken for dead)"
        }
    );
    Ok(())
}
