//! Nimbus on a real cluster: leader election and failover, and refusal of
//! bad input (names, topologies, frames, uploads, mismatched workers).

mod cluster_support;
mod corpus;

use cluster_support::*;
use squall::spec::InputSpec;
use squall::GroupingSpec;
use squall_cluster::rpc::{sha256_hex, ClientError, ErrorKind, Request, Response};
use std::io::{Read, Write};
use std::time::Duration;

fn refusal(r: Result<Response, ClientError>) -> (ErrorKind, String) {
    match r {
        Err(ClientError::Refused(e)) => (e.kind, e.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn small_spec() -> squall::TopologySpec {
    let mut b = squall::TopologyBuilder::new();
    b.set_spout(
        "s",
        || squall::testing::FixedTupleSpout::declaring(["x"]),
        1,
    );
    b.create_topology().unwrap().spec().clone()
}

#[test]
fn nimbus_refuses_bad_input_and_keeps_serving() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let addr = c.nimbus_addresses()[0].clone();

    // A malformed frame, an oversized one and one cut short each close
    // their own connection only.
    let mut bad = std::net::TcpStream::connect(&addr).unwrap();
    bad.write_all(&[0, 0, 0, 4, 0xc1, 0xc1, 0xc1, 0xc1])
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        bad.read(&mut buf).unwrap_or(0),
        0,
        "malformed frame closes the connection"
    );
    let mut big = std::net::TcpStream::connect(&addr).unwrap();
    big.write_all(&(512u32 * 1024 * 1024).to_be_bytes())
        .unwrap();
    assert_eq!(
        big.read(&mut buf).unwrap_or(0),
        0,
        "oversized frame closes the connection"
    );
    let mut short = std::net::TcpStream::connect(&addr).unwrap();
    short.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
    short.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        short.read(&mut buf).unwrap_or(0),
        0,
        "cut-short frame closes the connection"
    );
    assert!(matches!(
        c.client(0).call(Request::List),
        Ok(Response::Topologies(_))
    ));

    // An upload whose bytes do not match the announced hash.
    let mut client = c.client(0);
    let data = b"not the binary you announced".to_vec();
    let e = client
        .upload(&data, &sha256_hex(b"something else"), |_| {})
        .unwrap_err();
    assert!(e.to_string().contains("not the announced"), "{e}");
    let binary = sha256_hex(&data);
    client.upload(&data, &binary, |_| {}).unwrap();

    // Names with / or .. and invalid topologies are refused with the reason.
    let submit = |name: &str, spec: squall::TopologySpec, workers: u32| {
        let mut config = squall::Config::new();
        config.workers = workers;
        c.client(0).call(Request::Submit {
            name: name.into(),
            spec,
            config,
            binary_sha256: Some(binary.clone()),
            args: vec![],
        })
    };
    for name in ["a/b", "..", "x.y", ""] {
        let (kind, msg) = refusal(submit(name, small_spec(), 1));
        assert_eq!(kind, ErrorKind::Invalid, "{msg}");
        assert!(msg.contains("is invalid"), "{msg}");
    }
    let mut broken = small_spec();
    broken
        .components
        .get_mut("s")
        .unwrap()
        .inputs
        .push(InputSpec {
            component: "ghost".into(),
            stream: "default".into(),
            grouping: GroupingSpec::Shuffle,
        });
    let (kind, msg) = refusal(submit("broken", broken, 1));
    assert_eq!(kind, ErrorKind::Invalid);
    assert!(
        msg.starts_with("invalid topology \"broken\": spout \"s\" has inputs"),
        "{msg}"
    );
    let (_, msg) = refusal(submit("greedy", small_spec(), 50));
    assert!(msg.contains("wants 50 workers"), "{msg}");
    let (kind, _) = refusal(c.client(0).call(Request::Kill {
        name: "nothing".into(),
        wait_secs: None,
    }));
    assert_eq!(kind, ErrorKind::NotFound);
    // The CLI says it in one line with a non-zero exit code.
    let out = c.squall(&["kill", "nothing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no topology named \"nothing\""), "{err}");
}

#[test]
fn a_worker_whose_spec_hash_differs_refuses_to_start() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(1);
    c.wait_supervisors(1);
    let state = c.submit_word_count("hash", &["--count-parallelism", "1"]);
    let id = c.info("hash").unwrap().summary.id;
    // The same binary with other arguments builds another topology.
    let out = std::process::Command::new(corpus::example())
        .args(["--input", &corpus::corpus().display().to_string()])
        .args([
            "--state-dir",
            &state.display().to_string(),
            "--count-parallelism",
            "5",
        ])
        .env("SQUALL_WORKER_TOPOLOGY", &id)
        .env("SQUALL_WORKER_PORT", free_port().to_string())
        .env("SQUALL_WORKER_SUPERVISOR", "nobody")
        .env("SQUALL_WORKER_HOST", "127.0.0.1")
        .env("SQUALL_WORKER_DIR", c.path().join("stray-worker"))
        .env("SQUALL_WORKER_ZOOKEEPER", zookeeper())
        .env("SQUALL_WORKER_ZOOKEEPER_ROOT", &c.root)
        .env("SQUALL_WORKER_ZOOKEEPER_SESSION_MS", "4000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec hash mismatch"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
}

#[test]
fn standby_nimbus_takes_over_and_workers_keep_running() {
    let mut c = Cluster::new(2);
    c.start_nimbus(0);
    wait_until("nimbus 0 to lead", Duration::from_secs(30), || {
        c.cluster_info().and_then(|i| i.leader) == Some(c.nimbus_addresses()[0].clone())
    });
    c.start_nimbus(1);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let state = c.submit_word_count("ha", &["--max-spout-pending", "5000", "--repeat", "2"]);

    // The standby refuses mutations with a clear error.
    let (kind, msg) = refusal(c.client(1).call(Request::Kill {
        name: "ha".into(),
        wait_secs: Some(0),
    }));
    assert_eq!(kind, ErrorKind::NotLeader);
    assert!(msg.contains("is not the leader"), "{msg}");

    Cluster::wait_acked(&state, 10_000, Duration::from_secs(60));
    let workers = c.worker_pids();
    c.nimbus[0].take().unwrap().kill9();
    let (before, _) = Cluster::spout_progress(&state).unwrap();
    wait_until(
        "workers to keep processing without Nimbus",
        Duration::from_secs(30),
        || Cluster::spout_progress(&state).is_some_and(|(a, _)| a > before + 10_000),
    );
    let standby = c.nimbus_addresses()[1].clone();
    wait_until("the standby to lead", Duration::from_secs(30), || {
        c.cluster_info().and_then(|i| i.leader) == Some(standby.clone())
    });
    let list = c.squall_ok(&["list"]);
    assert!(list.contains("ha"), "{list}");
    // The supervisor's heartbeat reports find the new leader, which
    // starts with none: the metrics come back, and no worker is taken
    // for dead.
    let acked = |c: &Cluster| {
        c.info("ha")
            .map(|i| i.metrics.components().get("lines").map_or(0, |m| m.acked))
            .unwrap_or(0)
    };
    wait_until(
        "the new leader to hear the workers",
        Duration::from_secs(30),
        || acked(&c) > 0,
    );
    // The restarted old leader stands by and refuses kill.
    c.start_nimbus(0);
    let (kind, _) = refusal(c.client(0).call(Request::Kill {
        name: "ha".into(),
        wait_secs: Some(0),
    }));
    assert_eq!(kind, ErrorKind::NotLeader);
    c.wait_word_count_done(&state, Duration::from_secs(300));
    assert_eq!(c.worker_pids(), workers, "the workers kept running");
    let log = std::fs::read_to_string(&c.nimbus[1].as_ref().unwrap().log).unwrap();
    assert!(!log.contains("stopped heartbeating"), "{log}");
    c.squall_ok(&["kill", "ha", "-w", "0"]);
    wait_until("the topology to go", Duration::from_secs(30), || {
        c.info("ha").is_none()
    });
}
