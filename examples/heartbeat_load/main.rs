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
use squall::*;
use squall_cluster::rpc::{NimbusClient, Request, Response};
use squall_cluster::schema::{SupervisorInfo, WorkerHeartbeat};
use squall_cluster::{now_ms, ClusterState, MemoryCluster};
use squall_nimbus::{BlobStore, Nimbus};
use squall_topology_api::metrics::{LatencySummary, TaskMetrics, LATENCY_BUCKETS_MS};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Never run: Nimbus only schedules the topology.
struct Source;
impl Spout for Source {
    fn next_tuple(&mut self, _: &mut SpoutOutputCollector<'_>) {}
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n"]);
    }
}
struct Stage;
impl Bolt for Stage {
    fn execute(&mut self, _: &Tuple, _: &mut OutputCollector<'_>) {}
    fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
        d.declare(["n"]);
    }
}

/// One supervisor's report: its id and its workers' beats.
type Report = (String, Vec<WorkerHeartbeat>);

/// This process's resident memory, MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

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
    let dir = tempfile::tempdir()?;
    let cluster = MemoryCluster::new();
    let config = ClusterConfig {
        local_dir: dir.path().display().to_string(),
        ..ClusterConfig::default()
    };
    let state = ClusterState::new(cluster.connect());
    for s in 0..args.supervisors {
        state.register_supervisor(&SupervisorInfo {
            id: format!("host-{s}-sup"),
            host: format!("host-{s}"),
            ports: (6700..6700 + args.slots).collect(),
            started_at_ms: now_ms(),
        })?;
    }
    let blobs = BlobStore::open(&dir.path().join("blobs"), Duration::from_secs(600), 8)?;
    let nimbus = Arc::new(
        Nimbus::new(
            "nimbus:6627".into(),
            ClusterState::new(cluster.connect()),
            blobs,
            config,
        )
        .in_process(),
    );
    nimbus.monitor_round();

    let third = args.executors / 3;
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || Source, third);
    b.set_bolt("a", || Stage, third).shuffle_grouping("spout");
    b.set_bolt("b", || Stage, args.executors - 2 * third)
        .fields_grouping("a", ["n"]);
    let spec = b.create_topology()?.spec().clone();
    let mut topology_config = Config::new();
    topology_config.workers = workers;
    let submitted = nimbus.handle(Request::Submit {
        name: "load".into(),
        spec,
        config: topology_config,
        binary_sha256: None,
        args: Vec::new(),
    });
    let Response::Submitted { id } = submitted else {
        bail!("submit refused: {submitted:?}");
    };
    let mut assigned = None;
    let started = Instant::now();
    while assigned.is_none() && started.elapsed() < Duration::from_secs(60) {
        assigned = state.assignment(&id)?;
        if assigned.is_none() {
            nimbus.monitor_round();
        }
    }
    let Some((assignment, _)) = assigned else {
        bail!("no assignment after 60 s");
    };

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
    let file = PathBuf::from(dir.path()).join("reports.json");
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
    let (cpu0, rss0, t0) = (cpu_secs(), rss_mb(), Instant::now());
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (cpu1, rss1, secs) = (cpu_secs(), rss_mb(), t0.elapsed().as_secs_f64());
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
    let (now, _) = state.assignment(&id)?.context("the assignment")?;
    println!(
        "heartbeats: {workers} workers on {} supervisors, {} executors, {tasks} tasks; one report per supervisor a second ({} KB each)",
        args.supervisors,
        assignment.executors.len(),
        bytes.len() / 1024 / reports.len().max(1),
    );
    println!(
        "heartbeats: Nimbus CPU {:.1} % of one core over {secs:.0} s; resident memory {rss0:.1} MB at the start, {rss1:.1} MB at the end",
        100.0 * (cpu1 - cpu0) / secs,
    );
    println!(
        "heartbeats: Info sees {} tasks' metrics; assignment {}",
        info.metrics.tasks.len(),
        if now == assignment {
            "unchanged (no worker taken for dead)"
        } else {
            "CHANGED (a worker was taken for dead)"
        }
    );
    Ok(())
}
