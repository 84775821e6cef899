//! Nimbus at scale: one topology of 2,000 executors (plus its ackers)
//! over 100 slots on 20 supervisors. The supervisors are registered in an
//! in-memory cluster state with the records a supervisor writes (20 hosts ×
//! 5 ports); no worker runs, so every figure is Nimbus's own: the time
//! from `Submit` to a complete assignment, a monitor round, an `Info`
//! over every executor, and this process's resident memory before and
//! after (MB, `VmRSS`).

use anyhow::{bail, Result};
use clap::Parser;
use squall::*;
use squall_cluster::rpc::{Request, Response};
use squall_cluster::schema::SupervisorInfo;
use squall_cluster::{ClusterState, MemoryCluster};
use squall_nimbus::{BlobStore, Nimbus};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Nimbus scheduling a large topology")]
struct Args {
    /// Supervisors.
    #[arg(long, default_value_t = 20)]
    supervisors: u16,
    /// Slots per supervisor.
    #[arg(long, default_value_t = 5)]
    slots: u16,
    /// Executors of the topology's own components (ackers come on top,
    /// one per worker).
    #[arg(long, default_value_t = 2000)]
    executors: u32,
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

/// This process's resident memory, MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let slots = u32::from(args.supervisors) * u32::from(args.slots);
    let dir = tempfile::tempdir()?;
    let before = rss_mb();
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
            started_at_ms: squall_cluster::now_ms(),
        })?;
    }
    let blobs = BlobStore::open(&dir.path().join("blobs"), Duration::from_secs(600), 8)?;
    let nimbus = Nimbus::new(
        "nimbus:6627".into(),
        ClusterState::new(cluster.connect()),
        blobs,
        config,
    )
    .in_process();
    nimbus.monitor_round();

    // A chain spout -> a -> b sharing the executors.
    let third = args.executors / 3;
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || Source, third);
    b.set_bolt("a", || Stage, third).shuffle_grouping("spout");
    b.set_bolt("b", || Stage, args.executors - 2 * third)
        .fields_grouping("a", ["n"]);
    let spec = b.create_topology()?.spec().clone();
    let mut topology_config = Config::new();
    topology_config.workers = slots;
    let started = Instant::now();
    let submitted = nimbus.handle(Request::Submit {
        name: "scale".into(),
        spec,
        config: topology_config,
        binary_sha256: None,
        args: Vec::new(),
    });
    let Response::Submitted { id } = submitted else {
        bail!("submit refused: {submitted:?}");
    };
    let mut assigned = None;
    while assigned.is_none() && started.elapsed() < Duration::from_secs(60) {
        assigned = state.assignment(&id)?;
        if assigned.is_none() {
            nimbus.monitor_round();
        }
    }
    let to_assignment = started.elapsed();
    let Some((assignment, _)) = assigned else {
        bail!("no assignment after 60 s");
    };
    let executors = assignment.executors.len();
    let used: std::collections::BTreeSet<_> = assignment.slots().into_iter().collect();

    let round = Instant::now();
    nimbus.monitor_round();
    let round = round.elapsed();
    let info = Instant::now();
    let answer = nimbus.handle(Request::Info {
        name: "scale".into(),
    });
    let info = info.elapsed();
    let Response::Info(details) = answer else {
        bail!("info refused: {answer:?}");
    };
    let after = rss_mb();
    println!(
        "scale: {executors} executors ({} in components, the rest ackers) over {} of {slots} slots on {} supervisors",
        args.executors,
        used.len(),
        args.supervisors
    );
    println!(
        "scale: submit to assignment {:.1} ms; a monitor round {:.1} ms; Info over {} executors {:.1} ms",
        to_assignment.as_secs_f64() * 1e3,
        round.as_secs_f64() * 1e3,
        details.executors.len(),
        info.as_secs_f64() * 1e3,
    );
    println!("scale: resident memory {before:.1} MB before Nimbus, {after:.1} MB after");
    Ok(())
}
