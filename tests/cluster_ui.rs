//! The UI against a real cluster running word count: Storm's REST API field
//! by field, POST actions, Prometheus `/metrics`, and `squall monitor`.

mod cluster_support;
mod corpus;

use cluster_support::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const LINES: u64 = 187_182;

/// GET `url`: (status, JSON body).
fn get(url: &str) -> (u16, Value) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().expect("JSON error body")),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn get_ok(url: &str) -> Value {
    let (status, body) = get(url);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// POST `url` with `body`: (status, JSON body).
fn post(url: &str, body: &str) -> (u16, Value) {
    let req = ureq::post(url).set("Content-Type", "application/json");
    match req.send_string(body) {
        Ok(r) => (r.status(), r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().expect("JSON error body")),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn assert_not_found(url: &str, mention: &str) {
    let (status, body) = get(url);
    assert_eq!(status, 404, "GET {url}: {body}");
    assert_eq!(body["error"], "Not Found", "{body}");
    let msg = body["errorMessage"].as_str().unwrap();
    assert!(msg.contains(mention), "{msg:?} names {mention:?}");
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{s:?} is a number")),
        v => v.as_f64().unwrap_or_else(|| panic!("{v} is a number")),
    }
}

fn row<'a>(rows: &'a Value, key: &str, id: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == id)
        .unwrap_or_else(|| panic!("no row {key}={id} in {rows}"))
}

fn words_in_corpus() -> u64 {
    corpus::plain_count(&corpus::corpus()).values().sum()
}

/// The sum of a Prometheus family's samples whose labels include `labels`.
fn prom_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn rest_api_metrics_and_monitor_report_a_word_count_run() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    let sup = c.start_supervisor(2);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    let api = format!("{ui}/api/v1");
    let state = c.submit_word_count("wc-ui", &["--workers", "2", "--max-spout-pending", "5000"]);
    c.wait_word_count_done(&state, Duration::from_secs(240));
    let words = words_in_corpus();

    // Nimbus folds heartbeats in within a second or two of the last ack.
    let list = get_ok(&format!("{api}/topology/summary"));
    let id = list["topologies"][0]["id"].as_str().unwrap().to_owned();
    let topo_url = format!("{api}/topology/{id}");
    wait_until(
        "all-time counts to cover the run",
        Duration::from_secs(30),
        || {
            let t = get_ok(&topo_url);
            t["spouts"][0]["acked"] == LINES
                && t["bolts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|b| b["acked"] == if b["boltId"] == "split" { LINES } else { words })
        },
    );
    let info = c.info("wc-ui").unwrap();

    // cluster/summary
    let cs = get_ok(&format!("{api}/cluster/summary"));
    assert!(
        cs["stormVersion"].as_str().unwrap().starts_with("squall-"),
        "{cs}"
    );
    assert_eq!(cs["supervisors"], 1);
    assert_eq!(cs["topologies"], 1);
    assert_eq!(cs["slotsTotal"], 2);
    assert_eq!(cs["slotsUsed"], 2);
    assert_eq!(cs["slotsFree"], 0);
    assert_eq!(cs["executorsTotal"], info.summary.num_executors);
    assert_eq!(cs["tasksTotal"], info.summary.num_tasks);

    // nimbus/summary
    let ns = get_ok(&format!("{api}/nimbus/summary"));
    let n = &ns["nimbuses"][0];
    assert_eq!(ns["nimbuses"].as_array().unwrap().len(), 1);
    assert_eq!(n["host"], "127.0.0.1");
    assert_eq!(n["port"], c.nimbus_ports[0]);
    assert_eq!(n["status"], "Leader");
    assert!(num(&n["nimbusUpTimeSeconds"]) >= 1.0, "{n}");

    // supervisor/summary
    let ss = get_ok(&format!("{api}/supervisor/summary"));
    let cluster = c.cluster_info().unwrap();
    let s = &ss["supervisors"][0];
    assert_eq!(s["id"], cluster.supervisors[0].id);
    assert_eq!(s["host"], "127.0.0.1");
    assert_eq!(s["slotsTotal"], 2);
    assert_eq!(s["slotsUsed"], 2);
    assert!(s["uptime"].as_str().unwrap().ends_with('s'), "{s}");

    // topology/summary
    let t = &list["topologies"][0];
    assert_eq!(t["name"], "wc-ui");
    assert_eq!(t["status"], "ACTIVE");
    assert_eq!(t["workersTotal"], 2);
    assert_eq!(t["executorsTotal"], info.summary.num_executors);
    assert_eq!(t["tasksTotal"], info.summary.num_tasks);

    // topology/:id, all time and 10 minutes (the run is shorter than that).
    for window in ["", "?window=600"] {
        let tp = get_ok(&format!("{topo_url}{window}"));
        assert_eq!(tp["id"], id.as_str());
        assert_eq!(tp["name"], "wc-ui");
        assert_eq!(tp["status"], "ACTIVE");
        assert_eq!(tp["workersTotal"], 2);
        assert_eq!(tp["msgTimeout"], 10);
        let names: Vec<&str> = tp["topologyStats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["window"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["600", "10800", "86400", ":all-time"]);
        let all = &tp["topologyStats"][3];
        assert_eq!(all["windowPretty"], "All time");
        assert_eq!(all["acked"], LINES);
        assert_eq!(all["failed"], 0);
        // Lines from the spout, words from split; count emits nothing.
        assert_eq!(all["emitted"], LINES + words);
        assert!(num(&all["completeLatency"]) > 0.0, "{all}");
        let spout = row(&tp["spouts"], "spoutId", "lines");
        assert_eq!(spout["emitted"], LINES);
        assert_eq!(spout["transferred"], LINES);
        assert_eq!(spout["acked"], LINES);
        assert_eq!(spout["failed"], 0);
        assert_eq!(spout["lastError"], "");
        assert!(num(&spout["completeLatency"]) > 0.0);
        let split = row(&tp["bolts"], "boltId", "split");
        assert_eq!(split["executed"], LINES);
        assert_eq!(split["acked"], LINES);
        assert_eq!(split["emitted"], words);
        assert_eq!(split["transferred"], words);
        let capacity = num(&split["capacity"]);
        assert!((0.0..=1.5).contains(&capacity), "{split}");
        assert!(num(&split["executeLatency"]) >= 0.0);
        let count = row(&tp["bolts"], "boltId", "count");
        // Its tick tuples (checkpoints) are executed too.
        assert!(count["executed"].as_u64().unwrap() >= words, "{count}");
        assert_eq!(count["acked"], words);
        assert_eq!(count["emitted"], 0);
        let workers = tp["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        for w in workers {
            assert_eq!(w["host"], "127.0.0.1");
            assert_eq!(w["topologyId"], id.as_str());
        }
        assert_eq!(tp["configuration"]["topology.message.timeout.secs"], 10);
        if window.is_empty() {
            assert_eq!(tp["window"], ":all-time");
        } else {
            assert_eq!(tp["window"], "600");
            assert_eq!(tp["windowHint"], "10m 0s");
        }
    }
    let (status, bad) = get(&format!("{topo_url}?window=7"));
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["errorMessage"].as_str().unwrap().contains("window"),
        "{bad}"
    );

    // topology/:id/component/:component
    let lines = get_ok(&format!("{topo_url}/component/lines"));
    assert_eq!(lines["componentType"], "spout");
    assert_eq!(lines["topologyId"], id.as_str());
    assert_eq!(lines["spoutSummary"].as_array().unwrap().len(), 4);
    assert_eq!(lines["spoutSummary"][3]["acked"], LINES);
    assert_eq!(
        row(&lines["outputStats"], "stream", "default")["emitted"],
        LINES
    );
    let execs = lines["executorStats"].as_array().unwrap();
    assert_eq!(execs.len(), lines["executors"].as_u64().unwrap() as usize);
    assert_eq!(
        execs
            .iter()
            .map(|e| e["acked"].as_u64().unwrap())
            .sum::<u64>(),
        LINES
    );
    let slots: Vec<u16> = info.workers.iter().map(|(s, _)| s.port).collect();
    for e in execs {
        assert_eq!(e["host"], "127.0.0.1");
        assert!(slots.contains(&(e["port"].as_u64().unwrap() as u16)), "{e}");
    }
    let split = get_ok(&format!("{topo_url}/component/split"));
    assert_eq!(split["componentType"], "bolt");
    assert_eq!(split["boltStats"][3]["executed"], LINES);
    let input = &split["inputStats"][0];
    assert_eq!(input["component"], "lines");
    assert_eq!(input["stream"], "default");
    assert_eq!(input["grouping"], "shuffle");
    let executed: u64 = split["executorStats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["executed"].as_u64().unwrap())
        .sum();
    assert_eq!(executed, LINES);
    assert_not_found(&format!("{topo_url}/component/nope"), "nope");

    // topology/:id/visualization
    let v = get_ok(&format!("{topo_url}/visualization"));
    assert_eq!(v["lines"][":type"], "spout");
    assert_eq!(v["split"][":type"], "bolt");
    assert_eq!(v["split"][":inputs"][0][":component"], "lines");
    assert_eq!(v["count"][":inputs"][0][":grouping"], "fields");
    assert_eq!(v["split"][":emitted"]["default"], words);
    assert!(
        v.get("__acker").is_none(),
        "system components only with sys=1"
    );
    let sys = get_ok(&format!("{topo_url}/visualization?sys=1"));
    assert_eq!(sys["__acker"][":type"], "bolt");

    // topology-workers/:id
    let tw = get_ok(&format!("{api}/topology-workers/{id}"));
    let mut ports: Vec<u64> = tw["hostPortList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["port"].as_u64().unwrap())
        .collect();
    ports.sort();
    let mut expected: Vec<u64> = slots.iter().map(|p| u64::from(*p)).collect();
    expected.sort();
    assert_eq!(ports, expected);

    // Unknown ids are 404 with a JSON error naming them.
    assert_not_found(&format!("{api}/topology/nope-1-1"), "nope-1-1");
    assert_not_found(&format!("{api}/topology-workers/nope-1-1"), "nope-1-1");
    let (status, body) = post(&format!("{api}/topology/nope-1-1/activate"), "");
    assert_eq!(status, 404, "{body}");

    // /metrics: Prometheus text with the run's counts.
    let text = ureq::get(&format!("{ui}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let lines_iter = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines_iter).expect("Prometheus text parses");
    let wc = ("topology", "wc-ui");
    assert_eq!(
        prom_sum(&scrape, "squall_acked_total", &[wc, ("component", "lines")]),
        LINES as f64
    );
    assert_eq!(
        prom_sum(
            &scrape,
            "squall_emitted_total",
            &[wc, ("component", "split"), ("stream", "default")]
        ),
        words as f64
    );
    assert_eq!(
        prom_sum(&scrape, "squall_acked_total", &[wc, ("component", "count")]),
        words as f64
    );
    assert!(
        prom_sum(
            &scrape,
            "squall_executed_total",
            &[wc, ("component", "count")]
        ) >= words as f64
    );
    assert_eq!(prom_sum(&scrape, "squall_cluster_supervisors", &[]), 1.0);
    assert_eq!(
        prom_sum(
            &scrape,
            "squall_topology_status",
            &[wc, ("status", "ACTIVE")]
        ),
        1.0
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "squall_emitted_total" && s.labels.get("task").is_some()));
    // User metrics from the split bolt's TopologyContext.
    assert_eq!(
        prom_sum(
            &scrape,
            "squall_user_metric",
            &[wc, ("metric", "split_lines")]
        ),
        LINES as f64
    );
    let histogram_count: f64 = scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "squall_user_histogram"
                && s.labels.get("metric") == Some("split_words_per_line")
        })
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            _ => 0.0,
        })
        .sum();
    assert_eq!(
        histogram_count, LINES as f64,
        "the +Inf buckets hold every line"
    );
    let complete: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "squall_complete_latency_seconds")
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(b) => b.iter().map(|b| b.count).fold(0.0, f64::max),
            _ => 0.0,
        })
        .sum();
    // The spout measures one tree in 20 (topology.stats.sample.rate 0.05,
    // as Storm samples it); a replayed line would add one emit.
    let sampled = (LINES / 20) as f64;
    assert!(
        (sampled..=sampled + 2.0).contains(&complete),
        "complete latency sampled for {complete} trees, not one in 20 of {LINES}"
    );

    // Every series the sample Grafana dashboard queries is scraped.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/grafana/squall-dashboard.json"
    ))
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = std::collections::BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("squall_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name.trim_end_matches("_bucket").to_owned());
            }
        }
    }
    assert!(queried.len() >= 8, "{queried:?}");
    for name in &queried {
        assert!(
            scrape.samples.iter().any(|s| &s.metric == name),
            "dashboard queries {name}, not scraped"
        );
    }

    // squall monitor: Storm's header, then rows.
    let out = c.squall_ok(&["monitor", "wc-ui", "-m", "split", "-i", "1", "-n", "2"]);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(
        rows[0],
        "topology\tcomponent\tparallelism\tstream\ttime-diff ms\temitted\tthroughput (Kt/s)"
    );
    let first: Vec<&str> = rows[1].split('\t').collect();
    assert_eq!(&first[..4], ["wc-ui", "split", "2", "default"], "{out}");
    assert_eq!(first[5].parse::<u64>().unwrap(), words);
    let second: Vec<&str> = rows[2].split('\t').collect();
    assert!(second[4].parse::<u64>().unwrap() >= 900, "{out}");
    assert_eq!(second[5], "0", "the run is over: {out}");
    let listed = c.squall_ok(&["monitor", "wc-ui"]);
    assert!(
        listed.contains("split") && listed.contains("-m"),
        "{listed}"
    );
    let missing = c.squall(&["monitor", "wc-ui", "-m", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("\"nope\" not found"));
    let t = c.squall_ok(&[
        "monitor",
        "wc-ui",
        "-m",
        "lines",
        "-w",
        "transferred",
        "-n",
        "1",
    ]);
    assert!(
        t.contains("\ttransferred\t") && t.contains(&format!("\t{LINES}\t")),
        "{t}"
    );

    // POST actions change the topology's status.
    let status_of = || {
        let (code, t) = get(&topo_url);
        (code == 200).then(|| t["status"].as_str().unwrap().to_owned())
    };
    let (code, body) = post(&format!("{topo_url}/deactivate"), "");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["topologyOperation"], "deactivate");
    assert_eq!(body["topologyId"], id.as_str());
    assert_eq!(body["status"], "success");
    assert_eq!(status_of().as_deref(), Some("INACTIVE"));
    let (code, _) = post(&format!("{topo_url}/activate"), "");
    assert_eq!(code, 200);
    assert_eq!(status_of().as_deref(), Some("ACTIVE"));
    let (code, bad) = post(&format!("{topo_url}/rebalance/soon"), "");
    assert_eq!(code, 400, "{bad}");
    let (code, body) = post(
        &format!("{topo_url}/rebalance/30"),
        r#"{"rebalanceOptions": {"numWorkers": 1}}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(status_of().as_deref(), Some("REBALANCING"));
    let (code, body) = post(&format!("{topo_url}/kill/0"), "");
    assert_eq!(code, 200, "{body}");
    wait_until("the topology to be gone", Duration::from_secs(30), || {
        status_of().is_none()
    });
    assert_not_found(&topo_url, &id);
    let _ = sup;
    let empty: HashMap<String, Value> =
        serde_json::from_value(get_ok(&format!("{api}/topology/summary"))).unwrap();
    assert_eq!(empty["topologies"], Value::Array(vec![]));
}
