//! What the Nimbus benchmarks share: a cluster of registered supervisors
//! in an in-memory cluster state (no worker runs), an in-process Nimbus,
//! and one topology (a chain spout → a → b sharing the executors)
//! submitted and scheduled over every slot.

use anyhow::{bail, Result};
use squall::*;
use squall_cluster::rpc::{Request, Response};
use squall_cluster::schema::{Assignment, SupervisorInfo};
use squall_cluster::{now_ms, ClusterState, MemoryCluster, MemoryStorage};
use squall_nimbus::{BlobStore, Nimbus};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A scheduled topology and the Nimbus that scheduled it.
pub struct Scheduled {
    /// The Nimbus.
    pub nimbus: Arc<Nimbus<MemoryStorage>>,
    /// The cluster state it writes.
    pub state: ClusterState<MemoryStorage>,
    /// The topology's id.
    pub id: String,
    /// Its assignment.
    pub assignment: Assignment,
    /// From `Submit` to the assignment.
    pub to_assignment: Duration,
    _dir: tempfile::TempDir,
}

/// Registers `supervisors` supervisors of `slots` ports each (the records
/// a supervisor writes), starts Nimbus, and submits topology `name` of
/// `executors` executors (plus one acker per worker) over every slot.
///
/// # Errors
/// When Nimbus refuses the topology or has not assigned it within 60 s.
pub fn schedule(name: &str, supervisors: u16, slots: u16, executors: u32) -> Result<Scheduled> {
    let dir = tempfile::tempdir()?;
    let cluster = MemoryCluster::new();
    let config = ClusterConfig {
        local_dir: dir.path().display().to_string(),
        ..ClusterConfig::default()
    };
    let state = ClusterState::new(cluster.connect());
    for s in 0..supervisors {
        state.register_supervisor(&SupervisorInfo {
            id: format!("host-{s}-sup"),
            host: format!("host-{s}"),
            ports: (6700..6700 + slots).collect(),
            started_at_ms: now_ms(),
            logviewer_port: None,
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

    let third = executors / 3;
    let mut b = TopologyBuilder::new();
    b.set_spout("spout", || Source, third);
    b.set_bolt("a", || Stage, third).shuffle_grouping("spout");
    b.set_bolt("b", || Stage, executors - 2 * third)
        .fields_grouping("a", ["n"]);
    let spec = b.create_topology()?.spec().clone();
    let mut topology_config = Config::new();
    topology_config.workers = u32::from(supervisors) * u32::from(slots);
    let started = Instant::now();
    let submitted = nimbus.handle(Request::Submit {
        name: name.into(),
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
    Ok(Scheduled {
        nimbus,
        state,
        id,
        assignment,
        to_assignment,
        _dir: dir,
    })
}

/// This process's resident memory now, MB (`VmRSS`; 0 where unreadable).
pub fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
