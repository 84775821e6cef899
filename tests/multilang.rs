//! Multilang: Python components through PyPI's `pystorm` 3.1.4 (installed by
//! `scripts/python-env`) speaking Storm's protocol with `ShellBolt` and
//! `ShellSpout`, in LocalCluster.

mod common;
mod python;

use common::*;
use python::python;
use squall::testing::wait_for;
use squall::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

fn script(name: &str) -> String {
    format!("{}/tests/multilang/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A Python test bolt (`tests/multilang/test_bolt.py`) in `mode`.
fn py_bolt(mode: &str) -> ShellBolt {
    ShellBolt::new([python(), &script("test_bolt.py")]).env("MODE", mode)
}

/// Everything logged through `tracing` by this test binary, at info and up.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records what it gets (values) and acks, failing the first tuple whose
/// value 0 equals `fail_once`.
#[derive(Clone, Default)]
struct Sink {
    got: Arc<Mutex<Vec<Values>>>,
    fail_once: Option<Value>,
    failed: Arc<Mutex<bool>>,
}
impl Bolt for Sink {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        if self.fail_once.as_ref() == t.get(0)
            && !std::mem::replace(&mut *self.failed.lock().unwrap(), true)
        {
            out.fail(t);
            return;
        }
        self.got.lock().unwrap().push(t.values().clone());
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn errors(cluster: &LocalCluster, topology: &str, component: &str) -> String {
    cluster
        .metrics(topology)
        .unwrap()
        .component(component)
        .errors
        .join("\n")
}

/// Waits until the component's errors contain every needle; returns them.
fn errors_with(
    cluster: &LocalCluster,
    topology: &str,
    component: &str,
    needles: &[&str],
) -> String {
    let found = wait_for(DEADLINE, || {
        let e = errors(cluster, topology, component);
        needles.iter().all(|n| e.contains(n))
    });
    let e = errors(cluster, topology, component);
    assert!(found, "errors lack one of {needles:?}: {e}");
    e
}

fn pids(dir: &std::path::Path) -> BTreeSet<u32> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect()
}

#[test]
fn python_bolt_anchored_emits_are_acked_end_to_end() {
    let sink = Sink {
        fail_once: Some(Value::from("moon")),
        ..Sink::default()
    };
    let s = sink.clone();
    let (feeder, cluster) = run_fed("py-split", &config(30), |b| {
        b.set_bolt(
            "py",
            || {
                py_bolt("split")
                    .output_fields(["word"])
                    .count_metric("words")
            },
            2,
        )
        .shuffle_grouping("spout");
        b.set_bolt("sink", move || s.clone(), 1)
            .shuffle_grouping("py");
    });
    let sentences = [
        "hello the man said",
        "the",
        "the man on the moon",
        "where are you",
    ];
    let ids: Vec<Value> = sentences.iter().map(|l| feeder.feed(values![*l])).collect();
    assert!(
        wait_for(DEADLINE, || feeder.acked().len() + feeder.failed().len()
            == 4),
        "acked {:?} failed {:?}; errors: {}",
        feeder.acked(),
        feeder.failed(),
        errors(&cluster, "py-split", "py")
    );
    // The sink failed "moon": only the tree of the sentence holding it fails,
    // which shows the Python emits were anchored to their input.
    let failed: Vec<Value> = feeder.failed().into_iter().map(|(id, _)| id).collect();
    assert_eq!(failed, vec![ids[2].clone()]);
    let acked: BTreeSet<String> = feeder.acked().iter().map(|v| v.to_string()).collect();
    let expected: BTreeSet<String> = [0, 1, 3].iter().map(|&i| ids[i].to_string()).collect();
    assert_eq!(acked, expected);
    let mut words: Vec<String> = sink
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.0[0].as_str().unwrap().to_owned())
        .collect();
    words.sort();
    let mut want: Vec<&str> = "hello the man said the the man on the where are you"
        .split(' ')
        .collect();
    want.sort();
    assert_eq!(words, want);
    // The child's `metrics` commands reach the task's user metrics.
    let words_metric = || -> f64 {
        let m = cluster.metrics("py-split").unwrap();
        m.tasks
            .values()
            .filter(|t| t.component.as_str() == "py")
            .filter_map(|t| t.user.get("words"))
            .sum()
    };
    assert!(
        wait_for(DEADLINE, || words_metric() == 13.0),
        "words metric {}",
        words_metric()
    );
    assert!(wait_for(DEADLINE, || cluster
        .in_flight("py-split")
        .unwrap()
        == 0));
    cluster.shutdown();
}

#[test]
fn a_python_fail_replays_the_spout_tuple() {
    let stats = Arc::new(SpoutStats::default());
    let mut b = TopologyBuilder::new();
    b.set_spout("ids", CountingSpout::factory(50, stats.clone()), 1);
    b.set_bolt("py", || py_bolt("fail-first").output_fields(["v"]), 1)
        .shuffle_grouping("ids");
    b.set_bolt("sink", || AckAll, 1).shuffle_grouping("py");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("py-fail", &config(30), b.create_topology().unwrap())
        .unwrap();
    assert!(
        wait_for(DEADLINE, || stats.acked() == 50),
        "acked {} failed {}; errors: {}",
        stats.acked(),
        stats.failed(),
        errors(&cluster, "py-fail", "py")
    );
    assert_eq!(
        stats.failed(),
        50,
        "each id failed once by Python, then acked"
    );
    let acked: BTreeSet<u64> = stats.acked_ids.lock().unwrap().iter().copied().collect();
    assert_eq!(acked, (0..50).collect());
    cluster.shutdown();
}

#[test]
fn a_python_spouts_ack_and_fail_callbacks_get_the_right_ids() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events");
    let ev = events.clone();
    let mut b = TopologyBuilder::new();
    b.set_spout(
        "py",
        move || {
            ShellSpout::new([python(), &script("test_spout.py")])
                .env("COUNT", "60")
                .env("EVENTS", ev.to_str().unwrap())
                .output_fields(["id", "i"])
        },
        1,
    );
    let sink = Sink {
        fail_once: Some(Value::from("s7")),
        ..Sink::default()
    };
    let s = sink.clone();
    b.set_bolt("sink", move || s.clone(), 2)
        .shuffle_grouping("py");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("py-spout", &config(30), b.create_topology().unwrap())
        .unwrap();
    let read = || -> Vec<String> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let acks = || read().iter().filter(|l| l.starts_with("ack ")).count();
    assert!(
        wait_for(DEADLINE, || acks() == 60),
        "events {:?}; errors: {}",
        read(),
        errors(&cluster, "py-spout", "py")
    );
    let lines = read();
    let mut acked: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .collect();
    acked.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("s{i}")).collect();
    want.sort();
    assert_eq!(acked, want.iter().map(String::as_str).collect::<Vec<_>>());
    let failed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("fail "))
        .collect();
    assert_eq!(failed, vec!["s7"]);
    let counts = || {
        let m = cluster.metrics("py-spout").unwrap().component("py");
        (m.acked, m.failed)
    };
    assert!(wait_for(DEADLINE, || counts() == (60, 1)), "{:?}", counts());
    cluster.shutdown();
}

/// Records `(own task, the tuple's values)` for direct tuples, acks all.
#[derive(Clone, Default)]
struct DirectSink {
    task: TaskId,
    got: Arc<Mutex<Vec<(TaskId, Values)>>>,
}
impl Bolt for DirectSink {
    fn prepare(&mut self, ctx: &TopologyContext) {
        self.task = ctx.this_task_id();
    }
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        if t.source_stream().as_str() == "direct" {
            self.got
                .lock()
                .unwrap()
                .push((self.task, t.values().clone()));
        }
        out.ack(t);
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

#[test]
fn direct_emits_go_to_the_task_ids_the_child_was_told() {
    let sink = DirectSink::default();
    let s = sink.clone();
    let (feeder, cluster) = run_fed("py-direct", &config(30), |b| {
        b.set_bolt(
            "py",
            || {
                py_bolt("direct")
                    .output_fields(["v"])
                    .direct_stream("direct", ["v", "ids"])
            },
            1,
        )
        .shuffle_grouping("spout");
        b.set_bolt("sink", move || s.clone(), 3)
            .shuffle_grouping("py")
            .direct_grouping(("py", "direct"));
    });
    for i in 0..30 {
        feeder.feed(values![i]);
    }
    assert!(
        wait_for(DEADLINE, || feeder.acked().len() == 30),
        "acked {}; errors: {}",
        feeder.acked().len(),
        errors(&cluster, "py-direct", "py")
    );
    let got = sink.got.lock().unwrap().clone();
    assert_eq!(got.len(), 30);
    let mut tasks = BTreeSet::new();
    for (task, values) in &got {
        let ids = values.0[1].as_list().expect("ids list");
        assert_eq!(ids.len(), 1, "a shuffle emit goes to one task: {values}");
        assert_eq!(ids[0].as_i64(), Some(i64::from(task.0)), "{values}");
        tasks.insert(*task);
    }
    assert!(
        tasks.len() > 1,
        "shuffle spread over the sink's tasks: {tasks:?}"
    );
    cluster.shutdown();
}

#[test]
fn log_commands_reach_squalls_log_at_their_level() {
    let log = captured_log();
    let (feeder, cluster) = run_fed("py-log", &config(30), |b| {
        b.set_bolt("py", || py_bolt("log").output_fields(["v"]), 1)
            .shuffle_grouping("spout");
    });
    feeder.feed(values!["marker-4242"]);
    assert!(wait_for(DEADLINE, || feeder.acked().len() == 1));
    let text = || String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        wait_for(DEADLINE, || text()
            .contains("pystorm says marker-4242 at error")),
        "{}",
        text()
    );
    let lines: Vec<String> = text()
        .lines()
        .filter(|l| l.contains("marker-4242"))
        .map(str::to_owned)
        .collect();
    let line = |level: &str| lines.iter().find(|l| l.contains(&format!("at {level} ")));
    assert!(line("info").unwrap().contains(" INFO "), "{lines:?}");
    assert!(line("warn").unwrap().contains(" WARN "), "{lines:?}");
    assert!(line("error").unwrap().contains(" ERROR "), "{lines:?}");
    assert!(
        line("debug").is_none() && line("trace").is_none(),
        "{lines:?}"
    );
    assert!(
        line("info").unwrap().contains("component=\"py\""),
        "{lines:?}"
    );
    cluster.shutdown();
}

/// Spout ids 0..n → a Python bolt in `mode` → AckAll; returns the cluster,
/// the spout's stats and the folder where children write their pids.
fn run_ids(
    name: &str,
    n: u64,
    mode: &str,
    env: &[(&str, &str)],
    config: &Config,
) -> (LocalCluster, Arc<SpoutStats>, tempfile::TempDir) {
    let stats = Arc::new(SpoutStats::default());
    let pid_dir = tempfile::tempdir().unwrap();
    let dir = pid_dir.path().to_str().unwrap().to_owned();
    let mode = mode.to_owned();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut b = TopologyBuilder::new();
    b.set_spout("ids", CountingSpout::factory(n, stats.clone()), 1);
    b.set_bolt(
        "py",
        move || {
            env.iter()
                .fold(py_bolt(&mode).env("PIDS_DIR", &dir), |b, (k, v)| {
                    b.env(k, v)
                })
                .output_fields(["v"])
                .count_metric("words")
        },
        1,
    )
    .shuffle_grouping("ids");
    b.set_bolt("sink", || AckAll, 1).shuffle_grouping("py");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, config, b.create_topology().unwrap())
        .unwrap();
    (cluster, stats, pid_dir)
}

fn all_acked(stats: &SpoutStats, n: u64) -> bool {
    let ids: BTreeSet<u64> = stats.acked_ids.lock().unwrap().iter().copied().collect();
    ids == (0..n).collect()
}

#[test]
fn a_killed_child_restarts_and_no_spout_tuple_is_lost() {
    let mut c = config(30);
    c.max_spout_pending = Some(200);
    let (cluster, stats, pids_dir) = run_ids("py-kill", 3000, "split", &[], &c);
    assert!(
        wait_for(DEADLINE, || stats.acked() >= 300),
        "acked {}",
        stats.acked()
    );
    let first = pids(pids_dir.path());
    assert_eq!(first.len(), 1);
    let pid = *first.iter().next().unwrap();
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        wait_for(Duration::from_secs(60), || all_acked(&stats, 3000)),
        "acked {} failed {}; errors: {}",
        stats.acked(),
        stats.failed(),
        errors(&cluster, "py-kill", "py")
    );
    errors_with(
        &cluster,
        "py-kill",
        "py",
        &["shell component `py`", "exited", &format!("pid {pid}")],
    );
    assert_eq!(pids(pids_dir.path()).len(), 2, "one restart");
    cluster.shutdown();
}

#[test]
fn a_child_writing_garbage_gets_an_error_naming_the_component() {
    let (cluster, stats, pids_dir) =
        run_ids("py-garbage", 30, "garbage", &[("AFTER", "10")], &config(30));
    assert!(
        wait_for(Duration::from_secs(60), || all_acked(&stats, 30)),
        "acked {}; errors: {}",
        stats.acked(),
        errors(&cluster, "py-garbage", "py")
    );
    errors_with(
        &cluster,
        "py-garbage",
        "py",
        &["shell component `py`", "malformed", "this is not json"],
    );
    assert!(
        pids(pids_dir.path()).len() >= 3,
        "restarted after each garbage line"
    );
    cluster.shutdown();
}

#[test]
fn a_hung_child_is_detected_by_the_heartbeat_timeout() {
    let mut c = config(120);
    c.subprocess_timeout_secs = Some(2);
    let (cluster, stats, pids_dir) = run_ids("py-hang", 8, "hang-after", &[("AFTER", "5")], &c);
    assert!(
        wait_for(Duration::from_secs(60), || all_acked(&stats, 8)),
        "acked {}; errors: {}",
        stats.acked(),
        errors(&cluster, "py-hang", "py")
    );
    errors_with(
        &cluster,
        "py-hang",
        "py",
        &["hung", "topology.subprocess.timeout.secs is 2 s"],
    );
    assert!(pids(pids_dir.path()).len() >= 2);
    // Replays came from the shell bolt failing what the hung child held,
    // not from the 120 s message timeout.
    assert!(stats.failed() >= 1);
    cluster.shutdown();
}

#[test]
fn a_python_exception_is_reported_and_its_tuple_replays() {
    let (cluster, stats, _pids) = run_ids(
        "py-raise",
        20,
        "raise-once",
        &[("RAISE_ON", "9")],
        &config(30),
    );
    assert!(
        wait_for(DEADLINE, || all_acked(&stats, 20)),
        "acked {}; errors: {}",
        stats.acked(),
        errors(&cluster, "py-raise", "py")
    );
    errors_with(
        &cluster,
        "py-raise",
        "py",
        &["Shell Process Exception", "ValueError: raise-once on 9"],
    );
    cluster.shutdown();
}

#[test]
fn a_command_that_cannot_start_is_reported_and_tuples_fail() {
    let (feeder, cluster) = run_fed("py-missing", &config(30), |b| {
        b.set_bolt(
            "py",
            || ShellBolt::new(["/nonexistent/squall-test-program"]).output_fields(["v"]),
            1,
        )
        .shuffle_grouping("spout");
    });
    feeder.feed(values![1]);
    assert!(wait_for(DEADLINE, || feeder.failed().len() == 1));
    errors_with(
        &cluster,
        "py-missing",
        "py",
        &[
            "cannot start the subprocess",
            "/nonexistent/squall-test-program",
        ],
    );
    cluster.shutdown();
}

#[test]
fn the_handshake_context_describes_the_topology() {
    // storm.py-style check without pystorm: a tiny child echoes the setup
    // message's context back as a log line.
    let dir = tempfile::tempdir().unwrap();
    let child = dir.path().join("echo_context.py");
    std::fs::write(
        &child,
        r#"
import json, os, sys
def read():
    lines = []
    while True:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        if line.rstrip("\n") == "end":
            return json.loads("\n".join(lines))
        lines.append(line.rstrip("\n"))
def send(m):
    sys.stdout.write(json.dumps(m) + "\nend\n"); sys.stdout.flush()
setup = read()
open(os.path.join(setup["pidDir"], str(os.getpid())), "w").close()
send({"pid": os.getpid()})
send({"command": "log", "msg": "CONTEXT " + json.dumps({"conf": setup["conf"], "context": setup["context"]})})
while True:
    m = read()
    if isinstance(m, dict) and m.get("stream") == "__heartbeat":
        send({"command": "sync"})
    elif isinstance(m, dict):
        send({"command": "ack", "id": m["id"]})
"#,
    )
    .unwrap();
    let log = captured_log();
    let child = child.to_str().unwrap().to_owned();
    let mut c = config(30);
    c.apply_override("pystorm.log.level=debug").unwrap();
    let (_feeder, cluster) = run_fed("py-context", &c, |b| {
        b.set_bolt(
            "echo",
            move || ShellBolt::new([python(), &child]).output_fields(["w"]),
            1,
        )
        .fields_grouping("spout", ["v"]);
        b.set_bolt("sink", || AckAll, 2).shuffle_grouping("echo");
    });
    let text = || String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        wait_for(DEADLINE, || text().contains("CONTEXT ")),
        "{}",
        text()
    );
    let t = text();
    let line = t.lines().find(|l| l.contains("CONTEXT ")).unwrap();
    let json: serde_json::Value =
        serde_json::Deserializer::from_str(&line[line.find("CONTEXT ").unwrap() + 8..])
            .into_iter()
            .next()
            .unwrap()
            .unwrap();
    let ctx = &json["context"];
    assert_eq!(ctx["componentid"], "echo");
    let task = ctx["taskid"].as_u64().unwrap();
    assert_eq!(ctx["task->component"][task.to_string()], "echo");
    let components: BTreeMap<String, usize> = ctx["task->component"]
        .as_object()
        .unwrap()
        .values()
        .fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.as_str().unwrap().to_owned()).or_default() += 1;
            m
        });
    assert_eq!(components["sink"], 2);
    assert_eq!(components["spout"], 1);
    assert_eq!(
        ctx["stream->outputfields"]["default"],
        serde_json::json!(["w"])
    );
    assert_eq!(
        ctx["stream->target->grouping"]["default"]["sink"]["type"],
        "SHUFFLE"
    );
    assert_eq!(
        ctx["source->stream->grouping"]["spout"]["default"],
        serde_json::json!({"type": "FIELDS", "fields": ["v"]})
    );
    assert_eq!(
        ctx["source->stream->fields"]["spout"]["default"],
        serde_json::json!(["v"])
    );
    assert_eq!(json["conf"]["topology.name"], "py-context");
    assert_eq!(json["conf"]["topology.message.timeout.secs"], 30);
    assert_eq!(json["conf"]["pystorm.log.level"], "debug");
    cluster.shutdown();
}

#[test]
fn an_idle_healthy_child_answers_heartbeats_and_is_kept() {
    let mut c = config(30);
    c.subprocess_timeout_secs = Some(1);
    let (cluster, stats, pids_dir) = run_ids("py-idle", 3, "split", &[], &c);
    assert!(wait_for(DEADLINE, || all_acked(&stats, 3)));
    // Idle for several timeouts: only heartbeats keep the child alive.
    let trouble =
        || !errors(&cluster, "py-idle", "py").is_empty() || pids(pids_dir.path()).len() != 1;
    assert!(
        !wait_for(Duration::from_secs(5), trouble),
        "an idle child was taken as hung: {}",
        errors(&cluster, "py-idle", "py")
    );
    cluster.shutdown();
}
