//! The typed cluster state, on the in-memory store and on a real ZooKeeper
//! (address in `SQUALL_TEST_ZK`, which `scripts/test` starts).

mod common;

use common::{memory_sessions, wait_for, zookeeper_sessions, Sessions};
use squall_cluster::schema::*;
use squall_cluster::{ClusterState, StateError, StateStorage};
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{Config, ExecutorSpec};

type Connect = Box<dyn Fn() -> ClusterState<Box<dyn StateStorage>>>;

fn typed(sessions: Sessions) -> Connect {
    Box::new(move || ClusterState::new(sessions()))
}

fn memory() -> Connect {
    typed(memory_sessions())
}

fn zookeeper() -> Connect {
    typed(zookeeper_sessions())
}

fn slot(port: u16) -> WorkerSlot {
    WorkerSlot {
        supervisor: "sup-1".into(),
        host: "127.0.0.1".into(),
        port,
    }
}

fn topology(id: &str) -> TopologyRecord {
    TopologyRecord {
        id: id.into(),
        name: "word-count".into(),
        status: TopologyStatus::Active,
        spec: TopologySpec::default(),
        config: Config::new(),
        binary_hash: Some("ab".repeat(32)),
        spec_hash: "cd".repeat(32),
        submitted_at_ms: 1,
        args: Vec::new(),
        pending: None,
        owner: None,
        secret: None,
        log_config: Default::default(),
        debug: Default::default(),
    }
}

fn assignment(id: &str, port: u16) -> Assignment {
    Assignment {
        topology_id: id.into(),
        executors: vec![(
            ExecutorSpec {
                component: "split".into(),
                tasks: 1..3,
            },
            slot(port),
        )],
        assigned_at_ms: 2,
        slot_assigned_ms: Vec::new(),
    }
}

fn records_round_trip(connect: Connect) {
    let s = connect();
    s.put_topology(&topology("wc-1-1")).unwrap();
    assert_eq!(s.topology("wc-1-1").unwrap(), Some(topology("wc-1-1")));
    assert_eq!(s.topology("nope").unwrap(), None);
    assert_eq!(s.topologies().unwrap().len(), 1);
    let error = ErrorRecord {
        component: "count".into(),
        task: 3,
        slot: Some(slot(6700)),
        time_ms: 3,
        message: "boom".into(),
    };
    s.report_error("wc-1-1", &error).unwrap();
    assert_eq!(s.errors("wc-1-1", "count").unwrap(), vec![error]);
    s.remove_topology("wc-1-1").unwrap();
    assert_eq!(s.topologies().unwrap(), vec![]);
    assert_eq!(s.errors("wc-1-1", "count").unwrap(), vec![]);
}

fn a_stale_nimbus_cannot_overwrite_a_newer_assignment(connect: Connect) {
    let (new, stale) = (connect(), connect());
    new.set_assignment(&assignment("t", 6700), None).unwrap();
    let (_, seen) = stale.assignment("t").unwrap().unwrap();
    let v = new
        .set_assignment(&assignment("t", 6701), Some(seen))
        .unwrap();
    assert!(matches!(
        stale.set_assignment(&assignment("t", 6799), Some(seen)),
        Err(StateError::BadVersion { .. })
    ));
    assert!(matches!(
        stale.set_assignment(&assignment("t", 6799), None),
        Err(StateError::NodeExists(_))
    ));
    assert_eq!(
        stale.assignment("t").unwrap(),
        Some((assignment("t", 6701), v))
    );
}

fn supervisors_vanish_with_their_session(connect: Connect) {
    let (sup, nimbus) = (connect(), connect());
    let info = SupervisorInfo {
        id: "sup-1".into(),
        host: "127.0.0.1".into(),
        ports: vec![6700, 6701],
        started_at_ms: 5,
        logviewer_port: None,
    };
    sup.register_supervisor(&info).unwrap();
    sup.register_supervisor(&info).unwrap();
    assert_eq!(nimbus.supervisors().unwrap(), vec![info]);
    drop(sup);
    assert!(wait_for(|| nimbus.supervisors().unwrap().is_empty()));
}

fn errors_keep_the_last_ten(connect: Connect) {
    let (a, b) = (connect(), connect());
    for i in 0..14u64 {
        let writer = if i % 2 == 0 { &a } else { &b };
        writer
            .report_error(
                "t",
                &ErrorRecord {
                    component: "split".into(),
                    task: 3,
                    slot: None,
                    time_ms: i,
                    message: format!("error {i}"),
                },
            )
            .unwrap();
    }
    let errors = a.errors("t", "split").unwrap();
    assert_eq!(
        errors.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
        (4..14).collect::<Vec<_>>()
    );
    assert_eq!(a.errors("t", "count").unwrap(), vec![]);
}

fn the_standby_nimbus_takes_over_when_the_leader_goes(connect: Connect) {
    let (leader, standby) = (connect(), connect());
    assert!(leader.try_lead("nimbus-a").unwrap());
    assert!(
        leader.try_lead("nimbus-a").unwrap(),
        "leading is idempotent"
    );
    assert!(!standby.try_lead("nimbus-b").unwrap());
    assert_eq!(standby.leader().unwrap().as_deref(), Some("nimbus-a"));
    drop(leader);
    assert!(wait_for(|| standby.try_lead("nimbus-b").unwrap()));
    assert_eq!(standby.leader().unwrap().as_deref(), Some("nimbus-b"));
}

fn corrupt_data_is_a_named_error(connect: Connect) {
    let s = connect();
    s.storage()
        .put("/topologies/bad", b"\xc1 not msgpack")
        .unwrap();
    match s.topology("bad") {
        Err(StateError::Corrupt { path, .. }) => assert_eq!(path, "/topologies/bad"),
        other => panic!("expected a corrupt-data error, got {other:?}"),
    }
}

both!(
    records_round_trip,
    a_stale_nimbus_cannot_overwrite_a_newer_assignment,
    supervisors_vanish_with_their_session,
    errors_keep_the_last_ten,
    the_standby_nimbus_takes_over_when_the_leader_goes,
    corrupt_data_is_a_named_error
);
