//! The ACLs of a secured cluster on a real ZooKeeper (`SQUALL_TEST_ZK`):
//! daemons may do everything; a topology's workers read their record and
//! assignment and write their errors and Trident's
//! coordination keys; another topology's workers and anonymous clients may
//! not touch any of it.

use squall_cluster::zk_acl::WorkerIdentity;
use squall_cluster::{
    ClusterState, NodeMode, StateError, StateStorage, StorageStore, ZkCredentials, ZkStorage,
};
use std::time::Duration;

const DAEMON: &str = "squall:daemon-secret";

fn root() -> String {
    format!("/squall-acl-test-{}", std::process::id())
}

fn connect(credentials: Option<ZkCredentials>) -> ZkStorage {
    let servers = std::env::var("SQUALL_TEST_ZK").expect(
        "SQUALL_TEST_ZK is not set: the cluster tests need a real ZooKeeper; run scripts/test",
    );
    ZkStorage::connect_with(&servers, &root(), Duration::from_secs(4), credentials)
        .expect("connect to the test ZooKeeper")
}

fn worker_of(topology: &str) -> ZkStorage {
    connect(Some(ZkCredentials::Worker(WorkerIdentity::derive(
        DAEMON, topology,
    ))))
}

fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, StateError>) {
    let err = result.expect_err(what).to_string();
    assert!(err.contains("not authorized"), "{what}: {err}");
}

#[test]
fn each_topology_s_workers_reach_only_their_own_nodes() {
    let daemon = ClusterState::new(connect(Some(ZkCredentials::daemon(DAEMON))));
    daemon.prepare_topology("wc-1-1").unwrap();
    daemon.prepare_topology("other-2-2").unwrap();
    daemon
        .storage()
        .put("/topologies/wc-1-1", b"record")
        .unwrap();
    daemon
        .storage()
        .put("/assignments/wc-1-1", b"assignment")
        .unwrap();
    daemon
        .storage()
        .create("/supervisors/s1", b"supervisor", NodeMode::Ephemeral)
        .unwrap();

    let wc = worker_of("wc-1-1");
    assert_eq!(wc.get("/topologies/wc-1-1").unwrap().unwrap().0, b"record");
    assert!(wc.get("/assignments/wc-1-1").unwrap().is_some());
    wc.create("/errors/wc-1-1/count", b"e", NodeMode::Persistent)
        .unwrap();
    wc.set("/errors/wc-1-1/count", b"e again", None).unwrap();
    let store = StorageStore::shared(std::sync::Arc::new(worker_of("wc-1-1")));
    store.put("tw/epoch", b"1").unwrap();
    store.put("tw/meta/1", b"m").unwrap();
    assert_eq!(store.get("tw/epoch").unwrap().unwrap(), b"1");
    // The daemons read and remove what the workers wrote.
    assert_eq!(
        daemon
            .storage()
            .get("/errors/wc-1-1/count")
            .unwrap()
            .unwrap()
            .0,
        b"e again"
    );
    assert_eq!(
        daemon.storage().children("/transactional/tw").unwrap(),
        ["epoch", "meta"]
    );

    refused(
        "set its assignment",
        wc.set("/assignments/wc-1-1", b"x", None),
    );
    refused("set its record", wc.set("/topologies/wc-1-1", b"x", None));
    refused("list the supervisors", wc.children("/supervisors"));
    refused(
        "make an errors folder",
        wc.create("/errors/new-3-3/count", b"x", NodeMode::Persistent),
    );
    refused(
        "write a heartbeat node",
        wc.create("/workerbeats/wc-1-1", b"x", NodeMode::Persistent),
    );
    refused(
        "create at the root",
        wc.create("/intruder", b"x", NodeMode::Persistent),
    );

    let other = worker_of("other-2-2");
    other.put("/errors/other-2-2/count", b"own").unwrap();
    refused("read wc's record", other.get("/topologies/wc-1-1"));
    refused("read wc's assignment", other.get("/assignments/wc-1-1"));
    refused(
        "forge wc's errors",
        other.set("/errors/wc-1-1/count", b"forged", None),
    );
    refused(
        "delete wc's errors",
        other.delete_all("/errors/wc-1-1/count"),
    );
    refused(
        "report an error for wc",
        other.create("/errors/wc-1-1/split", b"x", NodeMode::Persistent),
    );
    // Coordination keys are the cluster's workers', whichever topology.
    let shared = StorageStore::shared(std::sync::Arc::new(other));
    assert_eq!(shared.get("tw/epoch").unwrap().unwrap(), b"1");

    let anonymous = connect(None);
    refused(
        "anonymous reads a record",
        anonymous.get("/topologies/wc-1-1"),
    );
    refused(
        "anonymous writes a key",
        anonymous.create("/transactional/x", b"x", NodeMode::Persistent),
    );
    refused(
        "anonymous reads a key",
        anonymous.get("/transactional/tw/epoch"),
    );

    daemon.remove_topology("wc-1-1").unwrap();
    daemon.storage().delete_all("/").unwrap();
}
