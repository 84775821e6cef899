//! Store sessions and helpers shared by the cluster-state tests.
#![allow(dead_code)]

use squall_cluster::{MemoryCluster, StateStorage, ZkStorage};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Opens sessions on one store.
pub type Sessions = Box<dyn Fn() -> Box<dyn StateStorage>>;

/// Sessions on a fresh in-memory store.
pub fn memory_sessions() -> Sessions {
    let cluster = MemoryCluster::new();
    Box::new(move || Box::new(cluster.connect()))
}

/// Sessions on the test ZooKeeper (`SQUALL_TEST_ZK`, started by
/// `scripts/test`), under a fresh chroot per call so tests do not see each
/// other's nodes.
pub fn zookeeper_sessions() -> Sessions {
    static N: AtomicU32 = AtomicU32::new(0);
    let servers = std::env::var("SQUALL_TEST_ZK").expect(
        "SQUALL_TEST_ZK is not set: the cluster tests need a real ZooKeeper; run scripts/test, \
         which installs and starts one",
    );
    let root = format!(
        "/squall-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Box::new(move || {
        Box::new(
            ZkStorage::connect(&servers, &root, Duration::from_secs(4))
                .expect("connect to the test ZooKeeper"),
        )
    })
}

/// Polls `cond` every 20 ms for up to 20 s (ephemeral nodes of a dropped
/// ZooKeeper session go when the 4 s session times out).
pub fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Declares each check as a test on the in-memory store and on ZooKeeper;
/// the file defines `memory()` and `zookeeper()` giving its `Connect`.
#[macro_export]
macro_rules! both {
    ($($name:ident),*) => {
        mod in_memory {
            $( #[test] fn $name() { super::$name(super::memory()) } )*
        }
        mod on_zookeeper {
            $( #[test] fn $name() { super::$name(super::zookeeper()) } )*
        }
    };
}
