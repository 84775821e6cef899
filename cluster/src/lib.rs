//! What Squall's daemons share: the cluster-state store behind the
//! [`StateStorage`] trait, with a ZooKeeper implementation ([`ZkStorage`])
//! and an in-memory one ([`MemoryCluster`]) for `LocalCluster` and tests,
//! the typed records over it ([`ClusterState`], [`schema`]), and the
//! framing of the RPC between clients and Nimbus ([`frame`]).
//!
//! Depends on `squall-topology-api` only.
#![forbid(missing_docs)]

pub mod blocking;
mod clock;
mod coordination;
pub mod debug;
pub mod frame;
pub mod log_config;
mod log_limit;
mod memory;
pub mod rpc;
pub mod schema;
pub mod series;
mod state;
mod storage;
pub mod tls;
pub mod window_stats;
pub mod worker_env;
mod zk;
pub mod zk_acl;

pub use clock::{system_clock, Clock, SharedClock, SimulatedClock, SkewedClock, SystemClock};
pub use coordination::{memory_store, StorageStore, TRANSACTIONAL_ROOT};
pub use log_limit::LogLimiter;
pub use memory::{MemoryCluster, MemoryStorage};
pub use state::ClusterState;
pub use storage::{check_path, parent, NodeMode, StateError, StateStorage, Version};
pub use zk::ZkStorage;
pub use zk_acl::ZkCredentials;

/// Milliseconds since the Unix epoch (0 if the clock is before it): the
/// time unit of every record in the cluster state.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
