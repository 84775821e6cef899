//! The rest of Storm's command line on a real cluster: `version`,
//! `getconf`, `heartbeats list`, `blobstore list`, `kill_workers`, `--json`
//! on listings, and `-c` after the subcommand.

mod cluster_support;
mod corpus;

use cluster_support::*;
use serde_json::Value;
use std::time::Duration;

fn json(c: &Cluster, args: &[&str]) -> Value {
    let out = c.squall_ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("squall {args:?}: {e}: {out}"))
}

fn failure(c: &Cluster, args: &[&str]) -> String {
    let out = c.squall(args);
    assert!(!out.status.success(), "squall {args:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn count_executed(c: &Cluster, name: &str) -> u64 {
    c.info(name)
        .map(|i| i.metrics.component("count").executed)
        .unwrap_or(0)
}

#[test]
fn storms_cli_commands_answer_from_a_running_cluster() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);

    let version = c.squall_ok(&["version"]);
    assert!(
        version.starts_with(&format!("Squall {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );

    // getconf: one key, every key, an unknown key, and -c after the
    // subcommand.
    assert_eq!(
        c.squall_ok(&["getconf", "nimbus.task.timeout.secs"]).trim(),
        "8"
    );
    assert_eq!(
        json(&c, &["getconf", "nimbus.seeds", "--json"]),
        serde_json::json!(c.nimbus_addresses())
    );
    assert_eq!(
        c.squall_ok(&["getconf", "ui.port", "-c", "ui.port=9123"])
            .trim(),
        "9123"
    );
    let all = json(&c, &["getconf", "--json"]);
    assert_eq!(all["nimbus.task.timeout.secs"], 8, "{all}");
    assert!(all["topology.message.timeout.secs"].is_number(), "{all}");
    let err = failure(&c, &["getconf", "nimbus.no.such.key"]);
    assert!(err.contains("nimbus.no.such.key"), "{err}");

    // The REST API's copy of Nimbus's settings, and Storm's JSONP.
    let ui = c.start_ui();
    let conf: Value = ureq::get(&format!("{ui}/api/v1/cluster/configuration"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(conf["nimbus.task.timeout.secs"], 8, "{conf}");
    assert_eq!(conf["topology.message.timeout.secs"], 30, "{conf}");
    assert_eq!(
        conf["nimbus.seeds"],
        serde_json::json!(c.nimbus_addresses())
    );
    assert!(conf["storm.zookeeper.auth.payload"].is_null(), "{conf}");
    let r = ureq::get(&format!("{ui}/api/v1/cluster/summary?callback=jQuery_1.cb"))
        .call()
        .unwrap();
    assert!(
        r.content_type().contains("javascript"),
        "{}",
        r.content_type()
    );
    let text = r.into_string().unwrap();
    assert!(
        text.starts_with("jQuery_1.cb({") && text.ends_with("});"),
        "{text}"
    );
    let inner: Value = serde_json::from_str(&text["jQuery_1.cb(".len()..text.len() - 2]).unwrap();
    assert!(inner["supervisors"].is_number(), "{inner}");
    match ureq::get(&format!("{ui}/api/v1/cluster/summary?callback=alert(1)")).call() {
        Err(ureq::Error::Status(400, r)) => {
            let v: Value = r.into_json().unwrap();
            assert!(
                v["errorMessage"].as_str().unwrap().contains("alert(1)"),
                "{v}"
            );
        }
        other => panic!("a callback that is not a name must be refused: {other:?}"),
    }

    // Nothing running yet.
    assert_eq!(json(&c, &["list", "--json"]), serde_json::json!([]));
    assert!(c
        .squall_ok(&["heartbeats", "list"])
        .contains("No worker heartbeats"));
    assert_eq!(
        json(&c, &["blobstore", "list", "--json"]),
        serde_json::json!([])
    );

    let state = c.submit_word_count("cli", &["--workers", "2", "--repeat", "1000"]);
    let id = c.info("cli").unwrap().summary.id;
    wait_until("both workers' heartbeats", Duration::from_secs(90), || {
        let beats = json(&c, &["heartbeats", "list", "--json"]);
        beats.as_array().unwrap().len() == 2
    });
    let beats = json(&c, &["heartbeats", "list", "--json"]);
    for b in beats.as_array().unwrap() {
        assert_eq!(b["topology_id"], id.as_str(), "{beats}");
        assert!(b["executors"].as_u64().unwrap() > 0, "{beats}");
        assert!(b["time_ms"].as_u64().unwrap() > 0, "{beats}");
    }
    let text = c.squall_ok(&["heartbeats", "list"]);
    assert!(text.contains(&id), "{text}");

    let blobs = json(&c, &["blobstore", "list", "--json"]);
    let size = std::fs::metadata(corpus::example()).unwrap().len();
    assert_eq!(blobs.as_array().unwrap().len(), 1, "{blobs}");
    assert_eq!(blobs[0]["size"], size, "{blobs}");
    assert_eq!(
        blobs[0]["topologies"],
        serde_json::json!(["cli"]),
        "{blobs}"
    );
    assert_eq!(blobs[0]["key"].as_str().unwrap().len(), 64, "{blobs}");
    let listed = json(&c, &["list", "--json"]);
    assert_eq!(listed[0]["name"], "cli", "{listed}");

    // kill_workers on the supervisor's host (its storm.local.dir): both
    // workers stop and the supervisor starts new ones, which count on.
    wait_until("words counted", Duration::from_secs(60), || {
        count_executed(&c, "cli") > 10_000
    });
    // A bolt's inputStats rows carry Storm's per-input-stream fields,
    // consistent with its own totals in the same answer.
    for (bolt, input) in [("split", "lines"), ("count", "split")] {
        let url = format!("{ui}/api/v1/topology/{id}/component/{bolt}?window=:all-time");
        let page: Value = ureq::get(&url).call().unwrap().into_json().unwrap();
        let rows = page["inputStats"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{page}");
        let row = &rows[0];
        assert_eq!(row["component"], input, "{row}");
        assert_eq!(row["stream"], "default", "{row}");
        let total = page["boltStats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["window"] == ":all-time")
            .unwrap();
        for field in ["executed", "acked", "failed"] {
            assert_eq!(row[field], total[field], "{field}: {row} vs {total}");
        }
        assert!(row["executed"].as_u64().unwrap() > 0, "{row}");
        for field in ["executeLatency", "processLatency"] {
            let ms: f64 = row[field].as_str().unwrap().parse().unwrap();
            assert!(ms >= 0.0, "{field}: {row}");
        }
    }

    // Storm's per-stream metrics and supervisor detail.
    let url = format!("{ui}/api/v1/topology/{id}/metrics?window=:all-time");
    let m: Value = ureq::get(&url).call().unwrap().into_json().unwrap();
    assert_eq!(m["window"], ":all-time", "{m}");
    assert_eq!(m["spouts"][0]["id"], "lines", "{m}");
    assert_eq!(m["spouts"][0]["emitted"][0]["stream_id"], "default", "{m}");
    assert!(
        m["spouts"][0]["emitted"][0]["value"].as_u64().unwrap() > 0,
        "{m}"
    );
    assert_eq!(m["spouts"][0]["acked"][0]["stream_id"], "default", "{m}");
    let count = m["bolts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == "count")
        .unwrap_or_else(|| panic!("no count bolt: {m}"));
    let executed = &count["executed"][0];
    assert_eq!(executed["component_id"], "split", "{m}");
    assert_eq!(executed["stream_id"], "default", "{m}");
    assert!(executed["value"].as_u64().unwrap() > 0, "{m}");
    assert!(count["executed_ms_avg"][0]["value"].is_string(), "{m}");

    let history: Value = ureq::get(&format!("{ui}/api/v1/history/summary"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(history, serde_json::json!({ "topo-history": [id] }));

    let sup = c.cluster_info().unwrap().supervisors[0].clone();
    for query in [format!("id={}", sup.id), format!("host={}", sup.host)] {
        let v: Value = ureq::get(&format!("{ui}/api/v1/supervisor?{query}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        assert_eq!(v["supervisors"][0]["id"], sup.id.as_str(), "{v}");
        assert_eq!(v["supervisors"][0]["slotsUsed"], 2, "{v}");
        let workers = v["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2, "{v}");
        assert!(
            workers.iter().all(|w| w["topologyId"] == id.as_str()),
            "{v}"
        );
    }
    for (query, status) in [("", 400), ("id=nobody", 404)] {
        match ureq::get(&format!("{ui}/api/v1/supervisor?{query}")).call() {
            Err(ureq::Error::Status(code, _)) => assert_eq!(code, status, "{query}"),
            other => panic!("supervisor?{query}: {other:?}"),
        }
    }

    let old = c.worker_pids();
    assert_eq!(old.len(), 2);
    let local_dir = format!(
        "storm.local.dir={}",
        c.path().join("supervisor-0").display()
    );
    let killed = json(&c, &["kill_workers", "--json", "-c", &local_dir]);
    let mut pids: Vec<u64> = killed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["pid"].as_u64().unwrap())
        .collect();
    pids.sort();
    let mut expected: Vec<u64> = old.iter().map(|&p| u64::from(p)).collect();
    expected.sort();
    assert_eq!(pids, expected, "{killed}");
    wait_until("new workers", Duration::from_secs(90), || {
        let now = c.worker_pids();
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    });
    let acked = Cluster::spout_progress(&state).map_or(0, |p| p.0);
    wait_until(
        "lines acked after the restart",
        Duration::from_secs(90),
        || Cluster::spout_progress(&state).is_some_and(|p| p.0 > acked),
    );
    let err = failure(
        &c,
        &["kill_workers", "-c", "storm.local.dir=/nonexistent-squall"],
    );
    assert!(err.contains("/nonexistent-squall"), "{err}");

    c.kill_and_wait_workers("cli");
}
