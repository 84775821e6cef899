//! The log viewer on a real cluster (ZooKeeper, Nimbus, a supervisor
//! serving its log viewer, worker processes, the UI): a word count whose
//! split bolt fails and reports 1 % of its lines floods its worker's log,
//! which rotates by size and keeps `worker.log.max.files` old
//! files; the REST JSON links to the log viewer; the log viewer serves
//! byte ranges, search, downloads and lists with Storm's field names, and
//! refuses bad names; `squall logs -f` follows the worker's log. Event
//! sampling (`squall debug`, REST) writes sampled tuples beside the log.

mod cluster_support;
mod corpus;

use cluster_support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MAX_FILE_BYTES: u64 = 32 * 1024;
const MAX_FILES: usize = 2;
const ERROR: &str = "injected failure (--fail-rate)";

fn get(url: &str) -> (u16, Value) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().expect("JSON error body")),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The worker's log files (`worker-<port>.log*`) in `dir`, with sizes.
fn log_files(dir: &std::path::Path, port: u16) -> Vec<(String, u64)> {
    let prefix = format!("worker-{port}.log");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().ok()?.len();
            name.starts_with(&prefix).then_some((name, size))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn worker_logs_rotate_and_are_served_searched_and_followed() {
    let mut c = Cluster::new(1);
    c.extra_conf.extend([
        format!("worker.log.max.file.bytes={MAX_FILE_BYTES}"),
        format!("worker.log.max.files={MAX_FILES}"),
    ]);
    c.start_nimbus(0);
    c.start_supervisor(1);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    let state = c.submit_word_count(
        "wc-logs",
        &["--workers", "1", "--fail-rate", "0.01", "--repeat", "5"],
    );
    Cluster::wait_acked(&state, 1000, Duration::from_secs(120));
    let info = c.info("wc-logs").unwrap();
    let id = info.summary.id.clone();
    let port = slot_of(&info, "split").port;
    let file = format!("{id}/worker-{port}.log");
    let base = info
        .logviewers
        .values()
        .next()
        .cloned()
        .expect("the supervisor's log viewer");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // The REST JSON links to the worker's log, errors with a search.
    let page = format!("{ui}/api/v1/topology/{id}/component/split");
    let (status, split) = get(&page);
    assert_eq!(status, 200, "{split}");
    let link = split["executorStats"][0]["workerLogLink"].as_str().unwrap();
    assert_eq!(link, format!("{base}/log?file={}", enc(&file)));
    let mut error_link = String::new();
    wait_until("an error with a log link", Duration::from_secs(60), || {
        let (_, split) = get(&page);
        error_link = split["componentErrors"][0]["errorWorkerLogLink"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        !error_link.is_empty()
    });
    assert!(
        error_link.starts_with(link) && error_link.contains(&format!("&search={}", enc(ERROR))),
        "{error_link}"
    );
    let (_, topo) = get(&format!("{ui}/api/v1/topology/{id}"));
    assert_eq!(topo["workers"][0]["workerLogLink"], link);
    let bolt = topo["bolts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["boltId"] == "split")
        .unwrap();
    assert_eq!(bolt["errorWorkerLogLink"], error_link.as_str());
    let (status, html) = match ureq::get(link).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("{link}: {e}"),
    };
    assert_eq!(status, 200);
    assert!(html.contains("squall.logPage()"), "{html}");

    // The log rotates, and keeps MAX_FILES old files. While a rotation is
    // under way there may be one more: `file-rotate` renames every file
    // (`.2` to `.3`) before it deletes the one past the limit.
    let dir = c.path().join("supervisor-0/logs").join(&id);
    let check = |files: &[(String, u64)]| {
        assert!(files.len() <= MAX_FILES + 2, "{files:?}");
        for (name, size) in files {
            assert!(*size < MAX_FILE_BYTES + 4096, "{name}: {size} bytes");
        }
    };
    wait_until(
        "the log to rotate past its limit",
        Duration::from_secs(180),
        || {
            let files = log_files(&dir, port);
            check(&files);
            files.len() > MAX_FILES
        },
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        check(&log_files(&dir, port));
    }
    assert!(
        dir.join(format!("worker-{port}.out")).is_file(),
        "stdout and stderr beside the log"
    );

    // The rest reads a rotated file, which no longer changes once the
    // topology is quiet: the live one may have just rotated (a few bytes).
    c.squall_ok(&["deactivate", "wc-logs"]);
    let rotated = format!("{file}.1");
    let on_disk = dir.join(format!("worker-{port}.log.1"));
    // Quiet: the rotated file unchanged over 5 polls (half a second).
    let (mut last, mut same) = (None, 0);
    wait_until("the log to go quiet", Duration::from_secs(60), || {
        let size = std::fs::metadata(&on_disk).map(|m| m.len()).ok();
        same = if size.is_some() && size == last {
            same + 1
        } else {
            0
        };
        last = size;
        same >= 5
    });
    // At rest: the live file and exactly MAX_FILES rotated ones.
    let files = log_files(&dir, port);
    check(&files);
    assert_eq!(files.len(), MAX_FILES + 1, "{files:?}");

    // A byte range: the tail by default, a range when asked.
    let f = enc(&rotated);
    let (status, tail) = get(&format!("{base}/api/v1/log?file={f}&length=4096"));
    assert_eq!(status, 200, "{tail}");
    assert_eq!(tail["file"], rotated.as_str());
    assert_eq!(tail["length"], 4096);
    let size = tail["size"].as_u64().unwrap();
    assert_eq!(tail["start"].as_u64().unwrap(), size - 4096);
    assert!(tail["data"].as_str().unwrap().contains(ERROR), "{tail}");
    let (_, head) = get(&format!("{base}/api/v1/log?file={f}&start=0&length=100"));
    assert_eq!(
        (head["start"].as_u64(), head["length"].as_u64()),
        (Some(0), Some(100))
    );

    // Search, in Storm's shape, with where to continue.
    let (status, found) = get(&format!(
        "{base}/api/v1/search?file={f}&search-string={}&num-matches=3",
        enc(ERROR)
    ));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["searchString"], ERROR);
    let matches = found["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 3, "{found}");
    for m in matches {
        assert_eq!(m["matchString"], ERROR);
        assert!(m["beforeString"].as_str().unwrap().contains("WARN"), "{m}");
        assert!(m["byteOffset"].as_u64().is_some());
        assert!(m.get("afterString").is_some());
    }
    let next = found["nextByteOffset"].as_u64().expect("more matches");
    assert!(next > matches[2]["byteOffset"].as_u64().unwrap());

    // Download: the whole file as an attachment.
    let r = ureq::get(&format!("{base}/api/v1/download?file={f}"))
        .call()
        .unwrap();
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment")),
        "{:?}",
        r.header("content-disposition")
    );
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
    assert!(body.len() as u64 >= size - 4096, "{} bytes", body.len());

    // listLogs names the live file, the rotated ones and the output.
    let (status, list) = get(&format!("{base}/api/v1/listLogs?topoId={id}&port={port}"));
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        file.clone(),
        format!("{file}.1"),
        format!("{file}.{MAX_FILES}"),
        format!("{id}/worker-{port}.out"),
    ] {
        assert!(names.contains(&want.as_str()), "{want} in {names:?}");
    }

    // The supervisor's own log, beside the workers'.
    let (status, daemon) = get(&format!(
        "{base}/api/v1/daemonlog?file=supervisor.log&start=0&length=1000000"
    ));
    assert_eq!(status, 200, "{daemon}");
    assert!(
        daemon["data"]
            .as_str()
            .unwrap()
            .contains("log viewer serving"),
        "{daemon}"
    );
    let (_, all) = get(&format!("{base}/api/v1/listLogs"));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|n| n == "supervisor.log"),
        "{all}"
    );

    // Bad requests are refused with the problem named.
    for (query, status, named) in [
        (
            "file=..%2F..%2Fetc%2Fpasswd".to_owned(),
            400,
            "../../etc/passwd",
        ),
        (format!("file={id}%2Fheartbeat"), 400, "heartbeat"),
        ("length=10".to_owned(), 400, "file parameter"),
        (format!("file={f}&start=soon"), 400, "start"),
        (format!("file={id}%2Fworker-1.log"), 404, "worker-1.log"),
    ] {
        let (got, body) = get(&format!("{base}/api/v1/log?{query}"));
        assert_eq!(got, status, "{query}: {body}");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.contains(named), "{query}: {message}");
    }
    let (got, body) = get(&format!("{base}/api/v1/search?file={f}&search-string="));
    assert_eq!(got, 400, "{body}");

    c.squall_ok(&["activate", "wc-logs"]);
    // `squall logs -f` prints the tail, then lines written after it
    // started: DEBUG lines, turned on only once it runs.
    let mut logs = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(c.conf().iter().flat_map(|k| ["-c".to_owned(), k.clone()]))
        .args(["logs", "wc-logs", "-c", "split", "-f", "--bytes", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = logs.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let Ok(first) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = logs.kill();
        let out = logs.wait_with_output().unwrap();
        panic!(
            "squall logs printed nothing: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(!first.contains("split progress"), "{first}");
    c.squall_ok(&["set_log_level", "wc-logs", "-l", "word_count=DEBUG:60"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    let followed = loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains("split progress") => break true,
            Ok(_) => seen += 1,
            Err(_) if Instant::now() > deadline => break false,
            Err(_) => {}
        }
    };
    let _ = logs.kill();
    let _ = logs.wait();
    assert!(
        followed,
        "squall logs -f printed {seen} lines but no DEBUG line"
    );

    // A component no worker runs is named.
    let out = c.squall(&["logs", "wc-logs", "-c", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"nope\""), "{err}");
    c.kill_and_wait_workers("wc-logs");
}

fn post(url: &str) -> (u16, Value) {
    match ureq::post(url).call() {
        Ok(r) => (r.status(), r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().expect("JSON error body")),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The events file's size and its last sampled events (JSON lines; the
/// first, cut line left out) as the log viewer serves them.
fn events(base: &str, file: &str) -> (u64, Vec<Value>) {
    let (status, chunk) = get(&format!(
        "{base}/api/v1/log?file={}&length=262144",
        enc(file)
    ));
    if status != 200 {
        return (0, Vec::new());
    }
    let lines = chunk["data"]
        .as_str()
        .unwrap_or("")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (chunk["size"].as_u64().unwrap_or(0), lines)
}

/// Event sampling (Storm's event logger): turned on for one bolt
/// through REST, the spout through `squall debug`, the sampled tuples are
/// written beside the worker's log with their component, stream, task and
/// values, and stop when sampling is turned off; bad requests are named.
#[test]
fn sampled_tuples_are_written_beside_the_log_until_sampling_is_off() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(1);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    let state = c.submit_word_count("wc-debug", &["--workers", "1", "--repeat", "5"]);
    Cluster::wait_acked(&state, 1000, Duration::from_secs(120));
    let info = c.info("wc-debug").unwrap();
    let id = info.summary.id.clone();
    let port = slot_of(&info, "split").port;
    let base = info.logviewers.values().next().cloned().unwrap();
    let file = format!("{id}/events-{port}.log");
    let api = format!("{ui}/api/v1/topology/{id}");

    // Off by default: nothing sampled.
    let (_, split) = get(&format!("{api}/component/split"));
    assert_eq!(split["debug"], false);
    assert_eq!(split["samplingPct"], 0.0);
    assert_eq!(
        split["eventLogLink"],
        format!("{base}/log?file={}", enc(&file))
    );
    assert!(events(&base, &file).1.is_empty());

    let (status, body) = post(&format!("{api}/component/split/debug/enable/100"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["debug"].as_bool(), body["samplingPct"].as_f64()),
        (Some(true), Some(100.0))
    );
    let (_, split) = get(&format!("{api}/component/split"));
    assert_eq!(
        (split["debug"].as_bool(), split["samplingPct"].as_f64()),
        (Some(true), Some(100.0))
    );
    let (_, topo) = get(&api);
    assert_eq!(topo["debug"], false, "only split samples");
    wait_until("split's sampled tuples", Duration::from_secs(60), || {
        events(&base, &file).1.len() >= 100
    });
    for e in events(&base, &file).1 {
        assert_eq!(e["component"], "split", "{e}");
        assert_eq!(e["stream"], "default", "{e}");
        assert!(
            e["task"].as_u64().is_some() && e["ts"].as_u64().is_some(),
            "{e}"
        );
        let word = e["values"][0].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(
            !word.is_empty() && e["values"].as_array().unwrap().len() == 1,
            "{e}"
        );
    }

    // The CLI turns it on for the spout at 50 %.
    let out = c.squall_ok(&["debug", "wc-debug", "--component", "lines", "--pct", "50"]);
    assert!(
        out.contains("sampling 50% of the tuples component lines"),
        "{out}"
    );
    wait_until(
        "the spout's sampled tuples",
        Duration::from_secs(60),
        || {
            events(&base, &file)
                .1
                .iter()
                .any(|e| e["component"] == "lines" && e["values"][0].is_string())
        },
    );

    // Off for the whole topology: every component stops sampling.
    let out = c.squall_ok(&["debug", "wc-debug", "--off"]);
    assert!(out.contains("sampling off for topology wc-debug"), "{out}");
    // The worker logs each component it stops sampling; from then on
    // the events file stays as it is while thousands more lines are split.
    let log = enc(&format!("{id}/worker-{port}.log"));
    wait_until(
        "the worker to stop sampling",
        Duration::from_secs(60),
        || {
            let (_, found) = get(&format!(
                "{base}/api/v1/search?file={log}&search-string={}&num-matches=10",
                enc("event sampling off")
            ));
            found["matches"].as_array().is_some_and(|m| m.len() >= 2)
        },
    );
    let executed = || {
        c.info("wc-debug")
            .map(|i| i.metrics.component("split").executed)
            .unwrap_or(0)
    };
    let more_split = |from: u64| {
        wait_until("more lines split", Duration::from_secs(60), || {
            executed() >= from + 2_000
        })
    };
    more_split(executed());
    let size = events(&base, &file).0;
    more_split(executed());
    assert_eq!(events(&base, &file).0, size, "no more sampled tuples");
    let (_, split) = get(&format!("{api}/component/split"));
    assert_eq!(split["debug"], false);
    assert!(
        c.info("wc-debug").unwrap().summary.status == squall::TopologyStatus::Active,
        "still running"
    );

    // Bad requests are named.
    for (path, named) in [
        (format!("{api}/debug/enable/0"), "(0, 100]"),
        (format!("{api}/debug/enable/ten"), "\"ten\""),
        (format!("{api}/debug/on/10"), "\"on\""),
        (format!("{api}/component/nope/debug/enable/10"), "\"nope\""),
    ] {
        let (status, body) = post(&path);
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(message.contains(named), "{path}: {message}");
    }
    let out = c.squall(&["debug", "wc-debug", "--pct", "101"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("101") && err.contains("(0, 100]"), "{err}");
    c.kill_and_wait_workers("wc-debug");
}
