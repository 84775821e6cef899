//! Worker logs on a real cluster: log levels changed at run time (Storm's
//! `set_log_level`), from the command line and the REST API, and reset
//! when their timeout ends.

mod cluster_support;
mod corpus;

use cluster_support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The split bolt's DEBUG line (examples/word_count).
const PROGRESS: &str = "split progress";
const RESET: &str = "log levels reset to the worker's own";

fn worker_logs(c: &Cluster) -> Vec<PathBuf> {
    let mut files = Vec::new();
    collect_logs(c.path(), &mut files);
    files.retain(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("worker-"))
    });
    files
}

/// How many lines of the workers' logs contain `text`.
fn lines_with(c: &Cluster, text: &str) -> usize {
    worker_logs(c)
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(text))
                .count()
        })
        .sum()
}

fn count_executed(c: &Cluster, name: &str) -> u64 {
    c.info(name)
        .map(|i| i.metrics.component("count").executed)
        .unwrap_or(0)
}

fn http_json(req: ureq::Request, body: Option<&str>) -> (u16, Value) {
    let url = req.url().to_owned();
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().expect("JSON error body")),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn set_log_level_turns_on_a_bolts_debug_lines_until_its_timeout() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(1);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    c.submit_word_count("lv", &["--repeat", "1000", "--max-spout-pending", "2000"]);
    wait_until("words counted", Duration::from_secs(60), || {
        count_executed(&c, "lv") > 50_000
    });
    assert_eq!(lines_with(&c, PROGRESS), 0, "DEBUG is off at start");

    // Bad input is refused by name and changes nothing.
    let bad = c.squall(&["set_log_level", "lv", "-l", "word_count=LOUD:5"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("LOUD"), "{err}");
    let bad = c.squall(&["set_log_level", "lv", "-l", "word_count=DEBUG:soon"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("soon"));
    let none = c.squall_ok(&["set_log_level", "lv"]);
    assert!(none.contains("No log level overrides"), "{none}");

    // DEBUG for the example's own logger, for 8 s.
    let out = c.squall_ok(&["set_log_level", "lv", "-l", "word_count=DEBUG:8"]);
    assert!(out.contains("word_count") && out.contains("DEBUG"), "{out}");
    wait_until("the bolt's DEBUG lines", Duration::from_secs(30), || {
        lines_with(&c, PROGRESS) > 0
    });
    assert!(lines_with(&c, "log levels set") > 0);

    // The REST API shows it in Storm's shape.
    let id = c.info("lv").unwrap().summary.id;
    let url = format!("{ui}/api/v1/topology/{id}/logconfig");
    let (status, v) = http_json(ureq::get(&url), None);
    assert_eq!(status, 200, "{v}");
    let level = &v["namedLoggerLevels"]["word_count"];
    assert_eq!(level["target_level"], "DEBUG", "{v}");
    assert_eq!(level["timeout"], 8, "{v}");
    assert!(level["timeout_epoch"].as_u64().unwrap() > 0, "{v}");

    // At the timeout the worker goes back to its own level: no more DEBUG
    // lines while the bolt counts on.
    wait_until("the level to reset", Duration::from_secs(40), || {
        lines_with(&c, RESET) > 0
    });
    let debug_lines = lines_with(&c, PROGRESS);
    let executed = count_executed(&c, "lv");
    wait_until("more words counted", Duration::from_secs(60), || {
        count_executed(&c, "lv") > executed + 100_000
    });
    assert_eq!(
        lines_with(&c, PROGRESS),
        debug_lines,
        "DEBUG lines after the reset"
    );

    // Through REST: ROOT to DEBUG, then cleared ("target_level" empty).
    let (status, v) = http_json(
        ureq::post(&url),
        Some(r#"{"namedLoggerLevels": {"ROOT": {"target_level": "DEBUG", "timeout": 600}}}"#),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["namedLoggerLevels"]["ROOT"]["target_level"], "DEBUG");
    let before = lines_with(&c, PROGRESS);
    wait_until(
        "DEBUG lines under ROOT=DEBUG",
        Duration::from_secs(30),
        || lines_with(&c, PROGRESS) > before,
    );
    let (status, v) = http_json(
        ureq::post(&url),
        Some(r#"{"namedLoggerLevels": {"ROOT": {"target_level": ""}}}"#),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["namedLoggerLevels"], serde_json::json!({}));
    wait_until(
        "the cleared level to reset",
        Duration::from_secs(30),
        || lines_with(&c, RESET) > 1,
    );
    let (status, v) = http_json(
        ureq::post(&url),
        Some(r#"{"namedLoggerLevels": {"ROOT": {"target_level": "LOUD"}}}"#),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["errorMessage"].as_str().unwrap().contains("LOUD"), "{v}");

    c.kill_and_wait_workers("lv");
}
