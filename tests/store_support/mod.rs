//! Real servers per test, from Debian's packages (installed by
//! `scripts/install-stores`): Redis, a private PostgreSQL cluster made with
//! `initdb`, and Mosquitto, each on a free loopback port in a temporary
//! directory, restartable on the same port with its data, and stopped (by
//! its pid) when dropped. Tests are never skipped: a missing server fails
//! the test with the command that installs it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `what` holds, up to `limit` (`squall::testing::wait_for`);
/// panics naming `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    assert!(
        squall::testing::wait_for(limit, cond),
        "timed out waiting for {what}"
    );
}

fn wait_port(port: u16, what: &str) {
    wait_until(what, Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

fn installed(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} is missing: run the tests with scripts/test (it runs scripts/install-stores)");
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-CONT", &child.id().to_string()])
        .status();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `redis-server` with an append-only file fsynced at every
/// write, so a restart keeps every acknowledged write.
pub struct Redis {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        let mut r = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        r.spawn();
        r
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("redis.log"))
            .unwrap();
        let child = Command::new(installed("redis-server"))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // Listening is not enough: while it loads its append-only file it
        // answers LOADING.
        let url = self.url();
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(30),
            || {
                redis::Client::open(url.as_str())
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                    .is_ok_and(|p| p == "PONG")
            },
        );
    }

    /// A connection to it.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Stops it (SIGTERM, as a restart would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }

    /// Stops and starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after [`Redis::stop`].
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The password of every private PostgreSQL cluster's `postgres` user.
pub const PG_PASSWORD: &str = "squall-test";

fn pg_bin(name: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's {name} is missing: run the tests with scripts/test (it runs scripts/install-stores)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the `postgres` system user when this is root
/// (PostgreSQL refuses to run as root).
fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A private PostgreSQL cluster (`initdb` with password authentication,
/// `pg_ctl` on a free port, its socket in its own directory).
pub struct Postgres {
    /// The port it listens on.
    pub port: u16,
    data: PathBuf,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Makes the cluster and starts it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_PASSWORD).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster's directory to postgres");
        }
        let out = pg_command(&pg_bin("initdb"))
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            port: free_port(),
            data,
            dir,
        };
        pg.ctl("start");
        pg
    }

    /// `pg_ctl start` or `restart` on this cluster's port.
    fn ctl(&mut self, action: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut c = pg_command(&pg_bin("pg_ctl"));
        c.arg(action)
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast"]);
        if action != "stop" {
            c.args(["-o", &opts]);
            c.arg("-l").arg(self.dir.path().join("server.log"));
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        wait_port(self.port, "PostgreSQL to listen");
    }

    /// `pg_ctl restart -m fast`: every connection is dropped.
    pub fn restart(&mut self) {
        self.ctl("restart");
    }

    /// The libpq connection string of database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={PG_PASSWORD} dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// A client connected to it.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command(&pg_bin("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate"])
            .output();
    }
}

/// A private Mosquitto broker with persistence, so persistent sessions and
/// their queued QoS 1 messages survive a restart.
pub struct Mosquitto {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker and waits until it listens.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 1\nmax_queued_messages 0\n\
                 max_inflight_messages 0\nuser root\nlog_dest file {}/mosquitto.log\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let mut m = Self {
            child: None,
            port,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let child = Command::new(installed("mosquitto"))
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_port(self.port, "mosquitto to listen");
    }

    /// Stops (SIGTERM: it saves its persistence file) and starts it again
    /// on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops it (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }

    /// Starts it again after [`Mosquitto::stop`], with its saved sessions.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// The broker's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop(&mut c);
        }
    }
}

/// Word count through Trident into a store, with batches failing once.
pub mod words {
    use squall::trident::*;
    use squall::*;
    use std::collections::{HashMap, HashSet};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    /// Lower-cased runs of alphanumeric characters.
    pub fn words(line: &str) -> impl Iterator<Item = String> + '_ {
        line.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
    }

    /// The Trident function emitting the words of field 0.
    pub fn split_words(t: &TridentTuple, out: &mut TridentCollector) -> Result<(), ExecuteError> {
        for w in words(t.str(0)?) {
            out.emit(values![w]);
        }
        Ok(())
    }

    /// The test corpus: Macbeth.
    pub fn macbeth() -> Vec<PathBuf> {
        vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/shakespeare/macbeth_gut.txt")]
    }

    /// Every word's count in `files`, as a map state holds it.
    pub fn plain_counts(files: &[PathBuf]) -> HashMap<Key, Value> {
        let mut counts: HashMap<String, i64> = HashMap::new();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                for w in words(line) {
                    *counts.entry(w).or_insert(0) += 1;
                }
            }
        }
        counts
            .into_iter()
            .map(|(w, n)| (Key(values![w]), Value::Int(n)))
            .collect()
    }

    /// Counts the words of the `line` field of `stream` into `state`; the
    /// first sight of each line whose length is `rem` modulo `modulus`
    /// fails its batch (counted in `failures`).
    pub fn count_words(
        stream: Stream,
        state: impl StateFactory + 'static,
        (modulus, rem): (usize, usize),
        failures: Arc<AtomicU64>,
    ) -> TridentState {
        let seen: Mutex<HashSet<String>> = Mutex::default();
        stream
            .each(
                ["line"],
                move |t: &TridentTuple, out: &mut TridentCollector| -> Result<(), ExecuteError> {
                    let line = t.str(0)?.to_owned();
                    if line.len() % modulus == rem && seen.lock().unwrap().insert(line) {
                        failures.fetch_add(1, Ordering::Relaxed);
                        return Err("injected failure".into());
                    }
                    out.emit(Values::new());
                    Ok(())
                },
                Fields::default(),
            )
            .each(["line"], split_words, ["word"])
            .group_by(["word"])
            .persistent_aggregate(state, Fields::default(), Count, ["count"])
            .parallelism_hint(2)
    }
}

/// A sink bolt fed by a [`squall::testing::Feeder`] in LocalCluster.
pub mod sinks {
    use squall::testing::Feeder;
    use squall::*;

    /// Runs `feeder` into the bolt `bolt` makes (component `write`) as
    /// topology `name` (acking on, message timeout 30 s).
    pub fn run_sink<B: Bolt + 'static>(
        name: &str,
        feeder: &Feeder,
        bolt: impl Fn() -> B + Send + Sync + 'static,
    ) -> LocalCluster {
        run_sink_tasks(name, feeder, 1, bolt)
    }

    /// [`run_sink`] with `tasks` tasks of the bolt.
    pub fn run_sink_tasks<B: Bolt + 'static>(
        name: &str,
        feeder: &Feeder,
        tasks: u32,
        bolt: impl Fn() -> B + Send + Sync + 'static,
    ) -> LocalCluster {
        let mut b = TopologyBuilder::new();
        b.set_spout("in", feeder.spout(), 1);
        b.set_bolt("write", bolt, tasks).shuffle_grouping("in");
        let mut config = Config::new();
        config.acker_executors = Some(1);
        config.message_timeout_secs = 30;
        let cluster = LocalCluster::new();
        cluster
            .submit_topology(name, &config, b.create_topology().unwrap())
            .unwrap();
        cluster
    }

    /// The errors reported by `component`'s tasks in topology `name`.
    pub fn errors_of(cluster: &LocalCluster, name: &str, component: &str) -> Vec<String> {
        let Ok(m) = cluster.metrics(name) else {
            return Vec::new();
        };
        m.tasks
            .values()
            .filter(|t| t.component.0 == component)
            .flat_map(|t| t.errors.clone())
            .collect()
    }
}
