//! The same checks against the in-memory store and a real ZooKeeper
//! (address in `SQUALL_TEST_ZK`, which `scripts/test` starts).

mod common;

use common::{memory_sessions, wait_for, zookeeper_sessions, Sessions as Connect};
use squall_cluster::{NodeMode, StateError, ZkStorage};
use std::time::Duration;

fn memory() -> Connect {
    memory_sessions()
}

fn zookeeper() -> Connect {
    zookeeper_sessions()
}

fn create_get_set_children_delete(connect: Connect) {
    let s = connect();
    assert_eq!(s.get("/a/b").unwrap(), None);
    s.create("/a/b/c", b"one", NodeMode::Persistent).unwrap();
    assert_eq!(s.get("/a/b/c").unwrap(), Some((b"one".to_vec(), 0)));
    assert_eq!(
        s.get("/a/b").unwrap().map(|(d, _)| d),
        Some(Vec::new()),
        "parents are created"
    );
    assert_eq!(
        s.create("/a/b/c", b"again", NodeMode::Persistent),
        Err(StateError::NodeExists("/a/b/c".into()))
    );
    s.create("/a/b/d", b"", NodeMode::Persistent).unwrap();
    assert_eq!(s.children("/a/b").unwrap(), vec!["c", "d"]);
    assert_eq!(s.children("/nothing/here").unwrap(), Vec::<String>::new());
    assert_eq!(s.set("/a/b/c", b"two", Some(0)).unwrap(), 1);
    assert_eq!(s.put("/a/b/c", b"three").unwrap(), 2);
    assert_eq!(s.put("/a/e", b"new").unwrap(), 0);
    assert_eq!(
        s.set("/a/x", b"", None),
        Err(StateError::NoNode("/a/x".into()))
    );
    s.delete_all("/a/b").unwrap();
    assert_eq!(s.get("/a/b/c").unwrap(), None);
    assert_eq!(s.children("/a").unwrap(), vec!["e"]);
    s.delete_all("/a/b").unwrap();
    assert!(matches!(s.get("a/b"), Err(StateError::BadPath(_))));
}

fn versioned_write_refuses_a_stale_writer(connect: Connect) {
    let (fresh, stale) = (connect(), connect());
    fresh
        .create("/assignments/t1", b"v0", NodeMode::Persistent)
        .unwrap();
    let (_, seen) = stale.get("/assignments/t1").unwrap().unwrap();
    fresh.set("/assignments/t1", b"v1", Some(seen)).unwrap();
    assert_eq!(
        stale.set("/assignments/t1", b"stale", Some(seen)),
        Err(StateError::BadVersion {
            path: "/assignments/t1".into(),
            expected: seen
        })
    );
    assert_eq!(fresh.get("/assignments/t1").unwrap().unwrap().0, b"v1");
}

fn ephemeral_nodes_vanish_with_their_session(connect: Connect) {
    let (owner, watcher) = (connect(), connect());
    owner
        .create("/supervisors/s1", b"slots", NodeMode::Ephemeral)
        .unwrap();
    assert_eq!(watcher.children("/supervisors").unwrap(), vec!["s1"]);
    assert!(matches!(
        watcher.create("/supervisors/s1", b"", NodeMode::Ephemeral),
        Err(StateError::NodeExists(_))
    ));
    drop(owner);
    assert!(wait_for(|| watcher
        .children("/supervisors")
        .unwrap()
        .is_empty()));
    // Leader election: the first ephemeral create wins; the next one may
    // take over once the leader's session is gone.
    watcher
        .create("/nimbus/leader", b"n2", NodeMode::Ephemeral)
        .unwrap();
    let third = connect();
    assert!(matches!(
        third.create("/nimbus/leader", b"n3", NodeMode::Ephemeral),
        Err(StateError::NodeExists(_))
    ));
}

both!(
    create_get_set_children_delete,
    versioned_write_refuses_a_stale_writer,
    ephemeral_nodes_vanish_with_their_session
);

#[test]
fn an_unreachable_zookeeper_is_a_clear_error() {
    let e = ZkStorage::connect("127.0.0.1:1", "/squall", Duration::from_secs(4))
        .err()
        .expect("nothing listens on port 1");
    let msg = e.to_string();
    assert!(
        msg.starts_with("cluster state store unavailable: ZooKeeper at 127.0.0.1:1"),
        "{msg}"
    );
}
