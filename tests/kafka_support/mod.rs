//! A real Kafka-protocol broker per test: tansu (installed by
//! `scripts/install-kafka`), in memory, on a free loopback port, stopped
//! (by its pid) when the test ends. Each test has its own broker, so a test
//! may pause it without touching the others.
#![allow(dead_code)]

use squall::connectors::kafka::admin::{self, Record};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `SQUALL_TANSU`, else `~/.cargo/bin/tansu`. Panics
/// (the test fails) when it is missing: Kafka tests are never skipped.
fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("SQUALL_TANSU") {
        return p.into();
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let bin = home.join("bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with scripts/test (it runs scripts/install-kafka)",
        bin.display()
    );
    bin
}

/// A running broker, killed when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("broker.log");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("broker.err")).unwrap())
            .spawn()
            .expect("start tansu");
        let broker = Self {
            child,
            address: format!("127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(Instant::now() < deadline, "the broker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} the broker");
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is
    /// answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen broker (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        admin::create_topic(&self.address, topic, partitions).unwrap();
    }

    /// Writes values `values` to `partition` of `topic`, one record per
    /// request (this broker reports a partition's end offset per batch).
    pub fn produce_to(&self, topic: &str, partition: i32, values: &[String]) {
        let records = values.iter().map(|v| Record {
            key: None,
            value: v.as_bytes(),
            partition: Some(partition),
        });
        admin::produce(&self.address, topic, records, true).unwrap();
    }

    /// Writes `n` records `"<partition>:<i>"` to each of `partitions` of
    /// `topic`.
    pub fn produce_numbered(&self, topic: &str, partitions: std::ops::Range<i32>, n: usize) {
        for p in partitions {
            let values: Vec<String> = (0..n).map(|i| format!("{p}:{i}")).collect();
            self.produce_to(topic, p, &values);
        }
    }

    /// `topic`'s end offsets by partition.
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        admin::end_offsets(&self.address, topic).unwrap()
    }

    /// `group`'s committed offsets of `topic`, by partition (empty when
    /// the broker cannot answer).
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        admin::committed_offsets(&self.address, group, topic).unwrap_or_default()
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
