//! A real Squall cluster for black-box tests: the private ZooKeeper that
//! `scripts/with-zookeeper` started (`SQUALL_TEST_ZK`), and Nimbus and
//! supervisors run as processes of the `squall` binary on loopback ports,
//! each test under its own ZooKeeper root and temporary directory.
//! Daemons and workers log at `SQUALL_TEST_LOG` (a `RUST_LOG` filter,
//! default `info`); a failing test prints the last `SQUALL_TEST_LOG_LINES`
//! (default 40) lines of each log.
#![allow(dead_code)]

use squall_cluster::rpc::{ClusterSummary, NimbusClient, Request, Response, TopologyInfo};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The ZooKeeper of this test run. Panics (the test fails) when there is
/// none: cluster tests are never skipped silently.
pub fn zookeeper() -> String {
    std::env::var("SQUALL_TEST_ZK")
        .expect("SQUALL_TEST_ZK is not set: run the tests with scripts/test (it starts ZooKeeper)")
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A number from `/proc/<pid>/status`: `field` is `VmRSS:` (kB),
/// `Threads:`…; 0 when unreadable.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// How many file descriptors process `pid` holds.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `n` free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `cond` every 100 ms until it holds; panics with `what` after
/// `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A daemon process, killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Kills it at once (`kill -9`).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One cluster at a time per test binary: a 2-core machine running several
/// clusters at once would starve heartbeats.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A cluster under a temporary directory.
pub struct Cluster {
    _serial: std::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    pub root: String,
    pub nimbus_ports: Vec<u16>,
    pub nimbus: Vec<Option<Daemon>>,
    pub supervisors: Vec<Option<Daemon>>,
    pub extra_conf: Vec<String>,
    /// Settings for the daemons only (Nimbus, supervisors, UI), after
    /// `extra_conf`: their TLS identity when security is on.
    pub daemon_conf: Vec<String>,
    /// The identity the test's own RPC clients use when security is on.
    pub tls: Option<std::sync::Arc<squall_cluster::tls::Tls>>,
    /// The daemons' ZooKeeper credentials when security is on.
    pub zk_payload: Option<String>,
    pub others: Vec<Daemon>,
    /// The ZooKeeper connect string.
    pub zk: String,
    /// The address daemons on this side listen on (`storm.local.hostname`).
    pub host: String,
}

impl Cluster {
    /// A cluster with no daemon yet. `nimbuses` Nimbus ports are reserved
    /// (all listed in `nimbus.seeds`).
    pub fn new(nimbuses: usize) -> Self {
        Self::on_zookeeper(nimbuses, zookeeper())
    }

    /// A cluster on ZooKeeper `zk` (`host:port`), such as a
    /// [`PrivateZooKeeper`] a test stops and restarts.
    pub fn on_zookeeper(nimbuses: usize, zk: String) -> Self {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("squall-cluster-")
            .tempdir()
            .unwrap();
        let root = format!(
            "/test-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace('.', "")
        );
        Self {
            _serial: serial,
            dir,
            root,
            nimbus_ports: free_ports(nimbuses),
            nimbus: Vec::new(),
            supervisors: Vec::new(),
            extra_conf: Vec::new(),
            daemon_conf: Vec::new(),
            tls: None,
            zk_payload: None,
            others: Vec::new(),
            zk,
            host: "127.0.0.1".into(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Turns security on for every process this cluster starts from now
    /// on: `squall secure-init sec --user …` in its folder (the first user
    /// an admin, `nimbus.users` = `submitters`), daemons with the daemon
    /// identity, ZooKeeper password and token key, the test's commands as
    /// `users[1]` (or the admin) and its own RPC clients as the admin.
    /// Returns the folder of the identities.
    pub fn secure(&mut self, users: &[&str], submitters: &[&str]) -> PathBuf {
        let mut args = vec!["secure-init", "sec"];
        for u in users {
            args.extend(["--user", u]);
        }
        self.squall_ok(&args);
        let sec = self.path().join("sec");
        let p = |f: &str| sec.join(f).display().to_string();
        let acting = users.get(1).unwrap_or(&users[0]);
        self.extra_conf.extend([
            "squall.security.enable=true".to_owned(),
            format!("squall.tls.ca.path={}", p("ca.pem")),
            format!("nimbus.admins=[{}]", users[0]),
            "nimbus.supervisor.users=[squall-daemon]".into(),
            format!("nimbus.users=[{}]", submitters.join(",")),
            format!("squall.tls.cert.path={}", p(&format!("{acting}.pem"))),
            format!("squall.tls.key.path={}", p(&format!("{acting}.key"))),
        ]);
        let yaml = std::fs::read_to_string(sec.join("daemon.yaml")).unwrap();
        let payload = yaml
            .lines()
            .find_map(|l| l.strip_prefix("storm.zookeeper.auth.payload:"))
            .expect("daemon.yaml holds the ZooKeeper credentials")
            .trim()
            .trim_matches('"')
            .to_owned();
        self.daemon_conf = vec![
            format!("squall.tls.cert.path={}", p("daemon.pem")),
            format!("squall.tls.key.path={}", p("daemon.key")),
            format!("storm.zookeeper.auth.payload={payload}"),
            format!("squall.token.key.path={}", p("token.key")),
        ];
        self.zk_payload = Some(payload);
        self.tls = Some(std::sync::Arc::new(
            squall_cluster::tls::Tls::from_files(
                &sec.join("ca.pem"),
                &sec.join(format!("{}.pem", users[0])),
                &sec.join(format!("{}.key", users[0])),
            )
            .unwrap(),
        ));
        sec
    }

    /// A ZooKeeper session on the cluster's root, as the daemons (with
    /// their credentials when security is on).
    pub fn zookeeper(&self) -> Result<squall_cluster::ZkStorage, squall_cluster::StateError> {
        squall_cluster::ZkStorage::connect_with(
            &self.zk,
            &self.root,
            Duration::from_secs(10),
            self.zk_payload
                .as_deref()
                .map(squall_cluster::ZkCredentials::daemon),
        )
    }

    pub fn nimbus_addresses(&self) -> Vec<String> {
        self.nimbus_ports
            .iter()
            .map(|p| format!("{}:{p}", self.host))
            .collect()
    }

    /// The `-c` settings every command of this cluster gets: short
    /// timeouts so faults are noticed within seconds.
    pub fn conf(&self) -> Vec<String> {
        let seeds = self.nimbus_addresses().join(",");
        let mut c = vec![
            format!("storm.zookeeper.servers=[{}]", self.zk),
            format!("storm.zookeeper.root={}", self.root),
            "storm.zookeeper.session.timeout=4000".into(),
            format!("nimbus.seeds=[{seeds}]"),
            "nimbus.monitor.freq.secs=1".into(),
            "nimbus.task.timeout.secs=8".into(),
            "nimbus.task.launch.secs=60".into(),
            "supervisor.worker.timeout.secs=5".into(),
            "topology.message.timeout.secs=10".into(),
        ];
        c.extend(self.extra_conf.iter().cloned());
        c
    }

    fn conf_args(&self) -> Vec<String> {
        self.conf()
            .into_iter()
            .flat_map(|c| ["-c".to_owned(), c])
            .collect()
    }

    /// Starts `squall <command>` with this cluster's settings plus `conf`
    /// (all `-c` before the subcommand).
    fn spawn(&self, name: &str, command: &str, conf: &[String]) -> Daemon {
        self.spawn_in(None, name, command, conf)
    }

    /// [`Cluster::spawn`] inside network namespace `netns` when given.
    fn spawn_in(&self, netns: Option<&str>, name: &str, command: &str, conf: &[String]) -> Daemon {
        let log = self.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_squall")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_squall")),
        };
        let child = cmd
            .args(self.conf_args())
            .args(self.daemon_conf.iter().flat_map(|c| ["-c", c.as_str()]))
            .args(conf.iter().flat_map(|c| ["-c", c.as_str()]))
            .arg(command)
            .env(
                "RUST_LOG",
                std::env::var("SQUALL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .current_dir(self.path())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start squall");
        Daemon { child, log }
    }

    /// Nimbus `i`'s `storm.local.dir` (each Nimbus has its own, as on
    /// separate hosts).
    pub fn nimbus_dir(&self, i: usize) -> PathBuf {
        self.path().join(format!("nimbus-{i}"))
    }

    /// Starts Nimbus number `i` (its port is `nimbus_ports[i]`, its files
    /// under [`Cluster::nimbus_dir`]).
    pub fn start_nimbus(&mut self, i: usize) {
        let conf = vec![
            format!("nimbus.thrift.port={}", self.nimbus_ports[i]),
            format!("storm.local.dir={}", self.nimbus_dir(i).display()),
            format!("storm.local.hostname={}", self.host),
        ];
        let d = self.spawn(&format!("nimbus-{i}"), "nimbus", &conf);
        while self.nimbus.len() <= i {
            self.nimbus.push(None);
        }
        self.nimbus[i] = Some(d);
        let addr = self.nimbus_addresses()[i].clone();
        wait_until(
            &format!("nimbus {i} to listen"),
            Duration::from_secs(30),
            || std::net::TcpStream::connect(&addr).is_ok(),
        );
    }

    /// Starts `squall ui` on a free port; returns its base URL once it
    /// answers.
    pub fn start_ui(&mut self) -> String {
        let port = free_port();
        let d = self.spawn("ui", "ui", &[format!("ui.port={port}")]);
        self.others.push(d);
        let addr = format!("127.0.0.1:{port}");
        wait_until("the ui to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        format!("http://{addr}")
    }

    /// Starts a supervisor with `slots` ports; returns its index.
    pub fn start_supervisor(&mut self, slots: usize) -> usize {
        let host = self.host.clone();
        self.start_supervisor_on(slots, None, &host)
    }

    /// Starts a supervisor inside network namespace `ns` (its own host,
    /// `ns.ns_ip`); returns its index.
    pub fn start_supervisor_in(&mut self, slots: usize, ns: &NetNs) -> usize {
        self.start_supervisor_on(slots, Some(&ns.name), &ns.ns_ip)
    }

    fn start_supervisor_on(&mut self, slots: usize, netns: Option<&str>, host: &str) -> usize {
        let i = self.supervisors.len();
        let ports = free_ports(slots)
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let conf = vec![
            format!("supervisor.slots.ports=[{ports}]"),
            format!(
                "storm.local.dir={}",
                self.path().join(format!("supervisor-{i}")).display()
            ),
            format!("storm.local.hostname={host}"),
            "logviewer.port=0".to_owned(),
        ];
        let d = self.spawn_in(netns, &format!("supervisor-{i}"), "supervisor", &conf);
        self.supervisors.push(Some(d));
        i
    }

    /// Runs a `squall` client command with this cluster's settings.
    pub fn squall(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_squall"))
            .args(self.conf_args())
            .args(args)
            .current_dir(self.path())
            .stdin(Stdio::null())
            .output()
            .expect("run squall")
    }

    /// Runs a `squall` command that must succeed; returns its stdout.
    pub fn squall_ok(&self, args: &[&str]) -> String {
        let out = self.squall(args);
        assert!(
            out.status.success(),
            "squall {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A client of Nimbus `i`.
    pub fn client(&self, i: usize) -> NimbusClient {
        NimbusClient::connect_with(
            &self.nimbus_addresses()[i..=i],
            4 << 20,
            self.tls.as_deref(),
        )
        .unwrap()
    }

    /// The cluster as the first reachable Nimbus sees it.
    pub fn cluster_info(&self) -> Option<ClusterSummary> {
        let mut c =
            NimbusClient::connect_with(&self.nimbus_addresses(), 4 << 20, self.tls.as_deref())
                .ok()?;
        match c.call(Request::ClusterInfo).ok()? {
            Response::Cluster(s) => Some(s),
            _ => None,
        }
    }

    /// Waits until `n` supervisors are registered.
    pub fn wait_supervisors(&self, n: usize) {
        wait_until(&format!("{n} supervisors"), Duration::from_secs(30), || {
            self.cluster_info()
                .is_some_and(|c| c.supervisors.len() == n)
        });
    }

    /// A topology's details, if it is live.
    pub fn info(&self, name: &str) -> Option<TopologyInfo> {
        let mut c =
            NimbusClient::connect_with(&self.nimbus_addresses(), 4 << 20, self.tls.as_deref())
                .ok()?;
        match c.call(Request::Info { name: name.into() }).ok()? {
            Response::Info(i) => Some(*i),
            _ => None,
        }
    }

    /// Submits the word count example with `squall jar`, state in
    /// `<dir>/<name>`; returns the state folder.
    pub fn submit_word_count(&self, name: &str, extra: &[&str]) -> PathBuf {
        let state = self.path().join(name);
        std::fs::create_dir_all(&state).unwrap();
        let example = crate::corpus::example();
        let corpus = crate::corpus::corpus();
        let mut args = vec![
            "jar".to_owned(),
            example.display().to_string(),
            "--name".into(),
            name.into(),
            "--input".into(),
            corpus.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.squall_ok(&args);
        assert!(out.contains("submitted topology"), "{out}");
        state
    }

    /// The spout's progress in a word count state folder.
    pub fn spout_progress(state: &Path) -> Option<(u64, bool)> {
        let entries = std::fs::read_dir(state).ok()?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("lines-") && name.ends_with(".progress") {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let f: Vec<&str> = text.split_whitespace().collect();
                if f.len() == 5 {
                    return Some((f[3].parse().ok()?, f[4] == "done"));
                }
            }
        }
        None
    }

    /// Waits until the word count spout has acked more than `lines` lines.
    pub fn wait_acked(state: &Path, lines: u64, limit: Duration) {
        wait_until(&format!("{lines} lines acked"), limit, || {
            Self::spout_progress(state).is_some_and(|(acked, _)| acked > lines)
        });
    }

    /// Waits until the word count spout has every line acked.
    pub fn wait_word_count_done(&self, state: &Path, limit: Duration) {
        wait_until("every line acked", limit, || {
            Self::spout_progress(state).is_some_and(|(_, done)| done)
        });
    }

    /// The merged counts of a word count state folder.
    pub fn merged_counts(state: &Path) -> std::collections::HashMap<String, u64> {
        let out = tempfile::NamedTempFile::new().unwrap();
        let status = Command::new(crate::corpus::example())
            .arg("--merge")
            .arg(state)
            .arg("--output")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(status.status.success(), "merge failed");
        crate::corpus::read_counts(out.path())
    }

    /// Pids of this cluster's processes whose command line names its
    /// directory (workers get it in `--state-dir`), read from `/proc`.
    fn pids_naming_dir(&self) -> Vec<u32> {
        let needle = self.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
            })
            .collect()
    }

    /// Pids of this cluster's worker processes.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pids_naming_dir()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|e| String::from_utf8_lossy(&e).contains("SQUALL_WORKER_PORT="))
            })
            .collect()
    }

    /// The pid of the worker running on slot port `port`.
    pub fn worker_pid_on(&self, port: u16) -> Option<u32> {
        let var = format!("SQUALL_WORKER_PORT={port}\0");
        self.worker_pids().into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&var))
        })
    }

    /// Kills the worker on `port` with `kill -9` and waits until its
    /// supervisor has started another.
    pub fn kill9_worker_and_wait_restart(&self, port: u16) {
        let victim = self
            .worker_pid_on(port)
            .unwrap_or_else(|| panic!("no worker process on port {port}"));
        kill9(victim);
        wait_until(
            "the worker to be restarted",
            Duration::from_secs(60),
            || self.worker_pid_on(port).is_some_and(|pid| pid != victim),
        );
    }

    /// Kills topology `name` at once (`kill -w 0`) and waits until its
    /// workers have exited.
    pub fn kill_and_wait_workers(&self, name: &str) {
        self.squall_ok(&["kill", name, "-w", "0"]);
        wait_until("workers to exit", Duration::from_secs(30), || {
            self.worker_pids().is_empty()
        });
    }

    /// Prints the last lines of the daemons' and workers' logs (on test
    /// failure): 40 of each, or `SQUALL_TEST_LOG_LINES`.
    pub fn dump_logs(&self) {
        let keep = std::env::var("SQUALL_TEST_LOG_LINES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(40);
        let mut files = Vec::new();
        collect_logs(self.path(), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(keep)..];
            eprintln!("===== {} =====\n{}", f.display(), tail.join("\n"));
        }
    }
}

/// Every `.log` file (logs) and `.out` file (workers' stdout and stderr)
/// under `dir`.
pub fn collect_logs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                collect_logs(&p, out);
            } else if p.extension().is_some_and(|x| x == "log" || x == "out") {
                out.push(p);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.supervisors.clear();
        self.nimbus.clear();
        // Workers outlive a killed supervisor; their arguments name this
        // cluster's directory.
        for pid in self.pids_naming_dir() {
            kill9(pid);
        }
    }
}

/// Lines committed so far by Trident topology `name` of cluster `c` (the
/// end of its last committed batch, from the coordination store).
pub fn committed_lines(c: &Cluster, name: &str) -> u64 {
    use squall_cluster::StorageStore;
    let Ok(zk) = c.zookeeper() else {
        return 0;
    };
    let store = StorageStore::shared(std::sync::Arc::new(zk));
    match squall::trident::committed(&*store, name) {
        Ok(Some((_, Some(meta)))) => meta
            .as_list()
            .and_then(|l| l.get(1))
            .and_then(|v| v.as_i64())
            .unwrap_or(0) as u64,
        _ => 0,
    }
}

/// Sends SIGKILL to `pid` (the shell's builtin `kill`).
pub fn kill9(pid: u32) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -9 {pid}")])
        .status();
}

/// Asserts every word of the corpus is counted exactly as often as the
/// reference count says.
pub fn check_counts(got: &std::collections::HashMap<String, u64>) {
    let expected = crate::corpus::plain_count(&crate::corpus::corpus());
    assert_eq!(got.len(), expected.len(), "distinct words");
    for (w, c) in &expected {
        assert_eq!(got.get(w).copied().unwrap_or(0), *c, "count of {w:?}");
    }
}

/// Asserts every word of the corpus is counted at least `passes` times as
/// often as the reference count says (at least once: replays may count a
/// line twice, but no line may be lost).
pub fn check_counts_at_least(got: &std::collections::HashMap<String, u64>, passes: u64) {
    let expected = crate::corpus::plain_count(&crate::corpus::corpus());
    assert_eq!(got.len(), expected.len(), "distinct words");
    for (w, c) in &expected {
        let g = got.get(w).copied().unwrap_or(0);
        assert!(
            g >= passes * c,
            "count of {w:?}: {g} < {passes} × {c} (a line was lost)"
        );
    }
}

/// The slot of `component`'s first executor.
pub fn slot_of(info: &TopologyInfo, component: &str) -> squall_cluster::schema::WorkerSlot {
    info.executors
        .iter()
        .find(|e| e.0 == component)
        .unwrap_or_else(|| panic!("no executor of {component}"))
        .3
        .clone()
}

/// A ZooKeeper of one test, which it can stop and restart (on the same
/// port and data directory, so its data survives). Started like
/// `scripts/with-zookeeper` starts the shared one (Debian's package, which
/// that script installs).
pub struct PrivateZooKeeper {
    dir: tempfile::TempDir,
    pub host: String,
    pub port: u16,
    child: Option<Child>,
}

impl PrivateZooKeeper {
    /// Starts one on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1")
    }

    /// Starts one listening on `host` (an address of this machine).
    pub fn start_on(host: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("squall-zk-")
            .tempdir()
            .unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("zoo.cfg"),
            format!(
                "tickTime=500\ndataDir={}/data\nclientPort={port}\nclientPortAddress={host}\n\
                 admin.enableServer=false\n4lw.commands.whitelist=ruok\nmaxSessionTimeout=60000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut zk = Self {
            dir,
            host: host.to_owned(),
            port,
            child: None,
        };
        zk.resume();
        zk
    }

    /// `<host>:<port>`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.address()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = String::new();
        s.write_all(b"ruok").is_ok() && s.read_to_string(&mut reply).is_ok() && reply == "imok"
    }

    /// Starts (again) the server and waits until it answers.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zookeeper.log"))
            .unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                "/usr/share/java/zookeeper.jar:/usr/share/java/*",
            ])
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start ZooKeeper (scripts/with-zookeeper installs it)");
        self.child = Some(child);
        wait_until("ZooKeeper to answer", Duration::from_secs(60), || {
            self.answers()
        });
    }

    /// Stops the server at once (`kill -9`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateZooKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` (a name such as `STOP`, `CONT`, `TERM`) to `pid`.
pub fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid}");
}

/// The pids of `parent`'s children that are zombies (exited, not reaped).
pub fn zombie_children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) S ppid ...`; comm may hold spaces, so split after ')'.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let mut f = rest.split_whitespace();
                let state = f.next();
                let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
                state == Some("Z") && ppid == Some(parent)
            })
        })
        .collect()
}

/// A network namespace joined to the test's own by a veth pair: a second
/// host on one machine (`10.<a>.<b>.1` on this side, `.2` inside), which a
/// test can cut off and heal. Needs root (`ip netns`); removed on drop.
pub struct NetNs {
    pub name: String,
    /// This side's address (where ZooKeeper, Nimbus and the other
    /// supervisors listen).
    pub host_ip: String,
    /// The namespace's address.
    pub ns_ip: String,
    inner_if: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (network namespace tests run as root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    /// Creates the namespace and its link, both up.
    pub fn create() -> Self {
        let id = std::process::id();
        let name = format!("squall-test-{id}");
        let (outer, inner) = (
            format!("sqo{}", id % 100_000),
            format!("sqi{}", id % 100_000),
        );
        let net = format!("10.{}.{}", 100 + (id / 250) % 150, id % 250);
        ip(&["netns", "add", &name]);
        let ns = Self {
            host_ip: format!("{net}.1"),
            ns_ip: format!("{net}.2"),
            inner_if: inner.clone(),
            name,
        };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/24", ns.host_ip), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ip(&[
            "netns",
            "exec",
            &ns.name,
            "ip",
            "addr",
            "add",
            &format!("{}/24", ns.ns_ip),
            "dev",
            &inner,
        ]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", &inner, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts the namespace off (its end of the link goes down).
    pub fn cut(&self) {
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.inner_if,
            "down",
        ]);
    }

    /// Joins it again.
    pub fn heal(&self) {
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.inner_if,
            "up",
        ]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so
        // the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
