//! The records kept in the cluster-state store and where they live (under
//! the store's root, `storm.zookeeper.root`, default `/squall`).

use serde::{Deserialize, Serialize};
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{ComponentId, Config, ExecutorSpec};

/// `/topologies/<id>`: a submitted topology.
pub const TOPOLOGIES: &str = "/topologies";
/// `/assignments/<id>`: where a topology's executors run.
pub const ASSIGNMENTS: &str = "/assignments";
/// `/supervisors/<id>`: live supervisors (ephemeral).
pub const SUPERVISORS: &str = "/supervisors";
/// `/errors/<id>/<component>`: a component's last errors.
pub const ERRORS: &str = "/errors";
/// `/blobstore/<sha256>/<nimbus id>`: which Nimbuses hold a binary
/// (ephemeral, as Storm's `/blobstore/<key>/<nimbus>-<version>`).
pub const BLOBSTORE: &str = "/blobstore";
/// `/nimbus/leader`: the leading Nimbus (ephemeral).
pub const LEADER: &str = "/nimbus/leader";

/// Errors kept per component.
pub const MAX_ERRORS: usize = 10;

/// A topology's lifecycle state (Storm's `TopologyStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopologyStatus {
    /// Spouts run.
    Active,
    /// Spouts paused; bolts drain.
    Inactive,
    /// Being rebalanced after a wait.
    Rebalancing,
    /// Being killed after a wait.
    Killed,
}

/// A submitted topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyRecord {
    /// Unique id, `<name>-<counter>-<submit time>` as in Storm.
    pub id: String,
    /// The user's name for it.
    pub name: String,
    /// Lifecycle state.
    pub status: TopologyStatus,
    /// Structure.
    pub spec: TopologySpec,
    /// Configuration.
    pub config: Config,
    /// Content hash of the topology binary in the blob store (sha256 hex);
    /// `None` for a topology run by the process that submitted it
    /// (`LocalCluster`).
    pub binary_hash: Option<String>,
    /// Hash of the spec, checked by workers before they start.
    pub spec_hash: String,
    /// Submission time, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// Arguments the binary is run with in worker mode.
    #[serde(default)]
    pub args: Vec<String>,
    /// A kill or rebalance waiting for its time.
    #[serde(default)]
    pub pending: Option<PendingAction>,
    /// The principal that submitted it (security on); `None` otherwise.
    #[serde(default)]
    pub owner: Option<String>,
    /// The secret its workers prove to each other (hex, 32 random bytes,
    /// made by Nimbus at submit when security is on; Storm's worker
    /// tokens).
    #[serde(default)]
    pub secret: Option<String>,
    /// Log level overrides its workers apply (`squall set_log_level`).
    #[serde(default)]
    pub log_config: crate::log_config::LogConfig,
    /// Event sampling its workers apply (`squall debug`).
    #[serde(default)]
    pub debug: crate::debug::TopologyDebug,
}

/// A timed transition of a topology (Storm's kill and rebalance waits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingAction {
    /// Remove the topology at `at_ms`.
    Kill {
        /// When, ms since the Unix epoch.
        at_ms: u64,
    },
    /// Reschedule the topology at `at_ms` with new counts, then restore
    /// `restore`.
    Rebalance {
        /// When, ms since the Unix epoch.
        at_ms: u64,
        /// The status to return to.
        restore: TopologyStatus,
        /// New worker count.
        workers: Option<u32>,
        /// New executor counts by component.
        executors: std::collections::BTreeMap<String, u32>,
    },
}

impl PendingAction {
    /// When it is due, ms since the Unix epoch.
    pub fn at_ms(&self) -> u64 {
        match self {
            Self::Kill { at_ms } | Self::Rebalance { at_ms, .. } => *at_ms,
        }
    }
}

/// A worker slot: a port on a supervisor's host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerSlot {
    /// The supervisor's id.
    pub supervisor: String,
    /// Its host name.
    pub host: String,
    /// The worker's port.
    pub port: u16,
}

impl std::fmt::Display for WorkerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where a topology's executors run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The topology.
    pub topology_id: String,
    /// Each executor and its slot.
    pub executors: Vec<(ExecutorSpec, WorkerSlot)>,
    /// Assignment time, ms since the Unix epoch.
    pub assigned_at_ms: u64,
    /// When each slot got its current executors, ms since the Unix epoch
    /// (the launch grace period counts from there).
    #[serde(default)]
    pub slot_assigned_ms: Vec<(WorkerSlot, u64)>,
}

impl Assignment {
    /// The executors placed on `slot`, in order.
    pub fn executors_on(&self, slot: &WorkerSlot) -> Vec<ExecutorSpec> {
        self.executors
            .iter()
            .filter(|(_, s)| s == slot)
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// The distinct slots in use, sorted.
    pub fn slots(&self) -> Vec<WorkerSlot> {
        let mut v: Vec<WorkerSlot> = self.executors.iter().map(|(_, s)| s.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// A live supervisor and its slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorInfo {
    /// Unique id.
    pub id: String,
    /// Host name workers are reached at.
    pub host: String,
    /// Worker ports (`supervisor.slots.ports`).
    pub ports: Vec<u16>,
    /// Start time, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// The port its log viewer serves on at `host` (`logviewer.port`, or
    /// the one taken for 0); `None` when it serves none.
    #[serde(default)]
    pub logviewer_port: Option<u16>,
}

/// A worker's heartbeat: written by the worker to its directory
/// ([`crate::worker_env::WORKER_BEAT_FILE`]), forwarded by its supervisor
/// to the leading Nimbus ([`crate::rpc::Request::SupervisorHeartbeats`]),
/// which keeps it in memory; never stored in ZooKeeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHeartbeat {
    /// The topology.
    pub topology_id: String,
    /// The worker's slot.
    pub slot: WorkerSlot,
    /// When it beat, ms since the Unix epoch.
    pub time_ms: u64,
    /// The executors it runs.
    pub executors: Vec<ExecutorSpec>,
    /// Its tasks' metrics.
    pub metrics: TopologyMetrics,
    /// When the worker started, ms since the Unix epoch.
    #[serde(default)]
    pub started_at_ms: u64,
}

/// One error a task reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The component.
    pub component: ComponentId,
    /// The task.
    pub task: u32,
    /// The worker's slot.
    pub slot: Option<WorkerSlot>,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
    /// The message.
    pub message: String,
}
