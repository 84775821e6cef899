//! The UI's pages in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by `scripts/install-chromium`), driven over
//! WebDriver: the topology page of a running word count renders its
//! spouts and bolts tables and the DAG, and its Deactivate button
//! deactivates the topology. A screenshot is saved to
//! `target/test-artifacts/topology-page.png`. On a secured cluster the
//! page (over HTTPS) asks for a bearer token and lists the topology once
//! given one. A bolt's error links to its worker's log on the log viewer.

mod cluster_support;
mod corpus;

use cluster_support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver() -> (Driver, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed: run scripts/install-chromium (Debian's chromium and chromium-driver)");
    let driver = Driver(child);
    wait_until("chromedriver to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (driver, port)
}

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    browser_with(port, profile, &[]).await
}

/// [`browser`] with more Chromium arguments.
async fn browser_with(port: u16, profile: &std::path::Path, extra: &[&str]) -> Client {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1200",
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session in Chromium")
}

/// Polls `f` until it returns `Some`, for at most `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> Option<String> {
    c.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

#[test]
fn topology_page_renders_tables_and_dag_and_deactivates() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    let state = c.submit_word_count("wc-page", &["--workers", "2"]);
    Cluster::wait_acked(&state, 1000, Duration::from_secs(120));
    let id = c.info("wc-page").unwrap().summary.id;
    let (_driver, port) = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("topology-page.png");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = browser(port, profile.path()).await;
        b.goto(&format!("{ui}/topology.html?id={id}"))
            .await
            .unwrap();
        let limit = Duration::from_secs(30);
        let spouts = eventually("the spouts table", limit, || async {
            text_of(&b, "#spouts-table")
                .await
                .filter(|t| t.contains("lines"))
        })
        .await;
        assert!(spouts.contains("Complete latency"), "{spouts}");
        let bolts = eventually("the bolts table", limit, || async {
            text_of(&b, "#bolts-table")
                .await
                .filter(|t| t.contains("split") && t.contains("count"))
        })
        .await;
        for heading in [
            "Capacity",
            "Execute latency",
            "Process latency",
            "Last error",
        ] {
            assert!(bolts.contains(heading), "{heading} in {bolts}");
        }
        eventually("the DAG's nodes and edges", limit, || async {
            (count(&b, "svg#topology-dag g.node").await == 3
                && count(&b, "svg#topology-dag path.edge").await == 2)
                .then_some(())
        })
        .await;
        let edge_labels = text_of(&b, "svg#topology-dag").await.unwrap();
        assert!(
            edge_labels.contains("/s"),
            "edges carry rates: {edge_labels}"
        );
        assert_eq!(
            text_of(&b, "#topology-status").await.as_deref(),
            Some("ACTIVE")
        );
        // The charts draw the last 10 minutes with non-zero series.
        let max_of = |css: &'static str| {
            let b = &b;
            async move {
                let e = b.find(Locator::Css(css)).await.ok()?;
                let v: f64 = e.attr("data-max").await.ok()??.parse().ok()?;
                (v > 0.0).then_some(v)
            }
        };
        for series in [
            "#chart-throughput path.series[data-name='emitted']",
            "#chart-throughput path.series[data-name='acked']",
            "#chart-latency path.series[data-name='p99']",
            "#chart-capacity path.series[data-name='count']",
        ] {
            eventually(series, Duration::from_secs(60), || max_of(series)).await;
        }
        assert_eq!(count(&b, "svg.chart").await, 3);
        let png = b.screenshot().await.unwrap();
        std::fs::write(&shot, png).unwrap();

        // Deactivate asks for confirmation, then the topology is inactive.
        b.find(Locator::Css("#btn-deactivate"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let question = b.get_alert_text().await.unwrap();
        assert!(
            question.contains("deactivate") && question.contains("wc-page"),
            "{question}"
        );
        b.accept_alert().await.unwrap();
        eventually("the page to show INACTIVE", limit, || async {
            text_of(&b, "#topology-status")
                .await
                .filter(|s| s == "INACTIVE")
        })
        .await;
        b.close().await.unwrap();
    });
    let info = c.info("wc-page").unwrap();
    assert_eq!(info.summary.status, squall::TopologyStatus::Inactive);
    eprintln!("screenshot saved to {}", shot.display());
}

#[test]
fn a_secured_ui_asks_for_a_token_and_works_with_it() {
    let mut c = Cluster::new(1);
    let sec = c.secure(&["admin", "alice"], &["admin", "alice"]);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let ui = c.start_ui().replace("http://", "https://");
    let state = c.submit_word_count("wc-secure", &[]);
    Cluster::wait_acked(&state, 100, Duration::from_secs(120));
    let token = std::fs::read_to_string(sec.join("alice.token")).unwrap();
    let (_driver, port) = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The CA is the test's own: Chromium is told to accept it.
        let b = browser_with(port, profile.path(), &["--ignore-certificate-errors"]).await;
        b.goto(&format!("{ui}/index.html")).await.unwrap();
        let limit = Duration::from_secs(30);
        let question = eventually("the token prompt", limit, || async {
            b.get_alert_text().await.ok()
        })
        .await;
        assert!(question.contains("needs a token"), "{question}");
        b.send_alert_text(&token).await.unwrap();
        b.accept_alert().await.unwrap();
        eventually("the topology in the page", limit, || async {
            text_of(&b, "body")
                .await
                .filter(|t| t.contains("wc-secure"))
        })
        .await;
        b.close().await.unwrap();
    });
}

/// From a bolt's last error on the topology page, the log link opens the
/// worker's log on its supervisor's log viewer: the page tails the log,
/// keeps following it, and lists the error's lines found by its search.
/// The component page's Debug toggle turns on event sampling, and its link
/// shows the sampled tuples.
#[test]
fn an_errors_log_link_opens_the_worker_log_and_debug_shows_sampled_tuples() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(1);
    c.wait_supervisors(1);
    let ui = c.start_ui();
    let state = c.submit_word_count(
        "wc-errors",
        &["--workers", "1", "--fail-rate", "0.01", "--repeat", "5"],
    );
    Cluster::wait_acked(&state, 1000, Duration::from_secs(120));
    let id = c.info("wc-errors").unwrap().summary.id;
    let (_driver, port) = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = browser(port, profile.path()).await;
        b.goto(&format!("{ui}/topology.html?id={id}"))
            .await
            .unwrap();
        let limit = Duration::from_secs(60);
        let link = eventually("the split bolt's error log link", limit, || async {
            b.find(Locator::Css("#bolts-table a.error-log-link"))
                .await
                .ok()
        })
        .await;
        link.click().await.unwrap();
        let url = b.current_url().await.unwrap();
        assert_eq!(url.path(), "/log", "{url}");
        assert!(
            !url.as_str().starts_with(&ui),
            "the supervisor's log viewer: {url}"
        );
        let matches = eventually("the error's lines", limit, || async {
            text_of(&b, "#matches-table")
                .await
                .filter(|t| t.contains("injected failure (--fail-rate)"))
        })
        .await;
        assert!(matches.contains("WARN"), "{matches}");
        let first = eventually("the log's tail", limit, || async {
            text_of(&b, "#log-text").await.filter(|t| !t.is_empty())
        })
        .await;
        assert!(first.contains("injected failure"), "{first}");
        eventually("the page to follow the log", limit, || async {
            text_of(&b, "#log-text").await.filter(|t| *t != first)
        })
        .await;

        // The component page's Debug button samples the bolt's tuples,
        // which its link shows on the log viewer.
        b.goto(&format!("{ui}/component.html?id=split&topology_id={id}"))
            .await
            .unwrap();
        let button = eventually("the Debug button", limit, || async {
            b.find(Locator::Css("#btn-debug")).await.ok()
        })
        .await;
        eventually("the page's first answer", limit, || async {
            text_of(&b, "#summary")
                .await
                .filter(|t| t.contains("split"))
        })
        .await;
        button.click().await.unwrap();
        let question = b.get_alert_text().await.unwrap();
        assert!(question.contains("Percentage"), "{question}");
        b.send_alert_text("100").await.unwrap();
        b.accept_alert().await.unwrap();
        eventually("the sampling state", limit, || async {
            text_of(&b, "#debug-state")
                .await
                .filter(|t| t.contains("sampling 100%"))
        })
        .await;
        let events = eventually("the sampled tuples link", limit, || async {
            let a = b.find(Locator::Css("a#event-log-link")).await.ok()?;
            a.is_displayed().await.ok()?.then_some(a)
        })
        .await;
        events.click().await.unwrap();
        let sampled = eventually("sampled tuples on the log viewer", limit, || async {
            text_of(&b, "#log-text")
                .await
                .filter(|t| t.contains("\"component\":\"split\""))
        })
        .await;
        assert!(sampled.contains("\"values\":["), "{sampled}");
        b.close().await.unwrap();
    });
    c.kill_and_wait_workers("wc-errors");
}
