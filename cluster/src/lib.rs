//! What Squall's daemons share: the cluster-state store behind the
//! [`StateStorage`] trait, with a ZooKeeper implementation ([`ZkStorage`])
//! and an in-memory one ([`MemoryCluster`]) for `LocalCluster` and tests.
//!
//! Depends on `squall-topology-api` only.
#![forbid(missing_docs)]

mod memory;
mod storage;
mod zk;

pub use memory::{MemoryCluster, MemoryStorage};
pub use storage::{check_path, parent, NodeMode, StateError, StateStorage, Version};
pub use zk::ZkStorage;
