//! The simulated cluster: Nimbuses, supervisors and workers running their
//! real control code (`Nimbus::monitor_round`, `Supervisor::sync`, the
//! pure `decide`, lifecycle and slot steps) over a simulated ZooKeeper on
//! simulated time, with faults drawn from a seed, and the invariants
//! checked at every step.

use crate::store::{Link, Role};
use crate::worker::{lock, Life, SimLauncher, Workers};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use squall_cluster::rpc::{sha256_hex, BlobFetch, BlobSink, HeartbeatReport, CHUNK_BYTES};
use squall_cluster::rpc::{Request, Response};
use squall_cluster::schema::{TopologyStatus, WorkerHeartbeat};
use squall_cluster::{
    Clock, ClusterState, MemoryCluster, SharedClock, SimulatedClock, SkewedClock,
};
use squall_nimbus::{BlobStore, Nimbus};
use squall_supervisor::Supervisor;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{ClusterConfig, Config, TaskLayout};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The seed every random choice comes from.
    pub seed: u64,
    /// Nimbus daemons.
    pub nimbuses: usize,
    /// Supervisors (two slots each).
    pub supervisors: usize,
    /// How long faults are injected, simulated seconds.
    pub fault_secs: u64,
    /// The bound: once faults stop, everything must be in place within
    /// this many simulated seconds.
    pub settle_secs: u64,
    /// Inject faults (false: a fault-free run).
    pub faults: bool,
    /// Run with a fixed failure put back, to show the simulation finds it.
    pub regression: Option<Regression>,
    /// Faults at fixed simulated seconds, besides the drawn ones.
    pub script: Vec<(u64, Fault)>,
}

/// A fault, with its length in simulated ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` Nimbus `i`, restart it after the length.
    CrashNimbus(usize, u64),
    /// `kill -9` supervisor `i` (its workers keep running), restart it
    /// after the length.
    CrashSupervisor(usize, u64),
    /// SIGSTOP supervisor `i` for the length.
    PauseSupervisor(usize, u64),
    /// Stop ZooKeeper for the length.
    StoreOutage(u64),
    /// Cut Nimbus `i` off ZooKeeper for the length.
    CutNimbus(usize, u64),
    /// Cut supervisor `i` off ZooKeeper for the length.
    CutSupervisor(usize, u64),
    /// `kill -9` a running worker (the n-th, modulo their number).
    KillWorker(usize),
    /// Nimbus `i` and supervisor `j` cannot reach each other (downloads)
    /// for the length.
    CutDownloads(usize, usize, u64),
    /// The two Nimbuses cannot reach each other (replication) for the
    /// length.
    CutNimbuses(u64),
    /// Supervisor `j`'s downloads fail for the length (a slow or broken
    /// link).
    FailDownloads(usize, u64),
    /// Nimbus `i` loses its blob folder (when another Nimbus holds every
    /// binary, so one copy always survives).
    LoseBinaries(usize),
    /// The leading Nimbus loses its blob folder and crashes for the length.
    CrashLeaderWithoutBinaries(u64),
    /// Supervisor `j`'s host is replaced for the length: the supervisor
    /// and its workers die, its local folder (binaries included) is lost.
    ReplaceSupervisorHost(usize, u64),
    /// Nimbus `i` reads from a lagging ZooKeeper replica for the length
    /// (delayed updates: old data, its own writes included).
    LagNimbus(usize, u64),
    /// Supervisor `j` reads from a lagging replica for the length.
    LagSupervisor(usize, u64),
}

/// A fixed control-plane failure the simulation can put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    /// A daemon's store session is never re-created after it expires
    /// (every later call fails), as before `ZkStorage` reconnected: a
    /// paused supervisor never rejoins, a ZooKeeper outage leaves no
    /// leader and no supervisor.
    SessionsNeverRecreated,
    /// A restarted supervisor does not adopt the workers its earlier run
    /// left, and starts a second one on each slot.
    WorkersNotAdopted,
    /// Nimbuses do not copy binaries from each other: a new leader may
    /// have none to serve.
    BinariesNotReplicated,
}

impl Settings {
    /// Two Nimbus, three supervisors, 90 s of faults, 60 s to settle.
    pub fn seed(seed: u64) -> Self {
        Self {
            seed,
            nimbuses: 2,
            supervisors: 3,
            fault_secs: 90,
            settle_secs: 60,
            faults: true,
            regression: None,
            script: Vec::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Broken invariants, first first.
    pub violations: Vec<String>,
    /// What happened, with simulated times.
    pub log: Vec<String>,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// A step of simulated time, ms.
const STEP_MS: u64 = 100;
/// The simulated epoch (2026-01-01), ms.
const EPOCH_MS: u64 = 1_767_225_600_000;

fn daemon_config(dir: &std::path::Path) -> ClusterConfig {
    ClusterConfig {
        zookeeper_session_timeout_ms: 4_000,
        local_dir: dir.display().to_string(),
        nimbus_monitor_freq_secs: 1,
        nimbus_task_timeout_secs: 8,
        nimbus_task_launch_secs: 20,
        supervisor_worker_timeout_secs: 5,
        supervisor_worker_start_timeout_secs: 20,
        supervisor_worker_shutdown_sleep_secs: 3,
        supervisor_slots_ports: vec![1, 2],
        ..ClusterConfig::default()
    }
}

/// Who can reach whom for blob downloads and heartbeat reports (besides
/// ZooKeeper).
#[derive(Debug, Default)]
struct Net {
    /// Heartbeat reports sent by supervisors, delivered after each round.
    reports: Vec<(String, Vec<WorkerHeartbeat>)>,
    /// Running Nimbuses: id → blob folder.
    nimbus_blobs: BTreeMap<String, PathBuf>,
    /// Pairs that cannot reach each other (sorted).
    cut: BTreeSet<(String, String)>,
    /// Daemons whose downloads fail.
    failing: BTreeSet<String>,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// Downloads for daemon `me`: from the blob folder of any running Nimbus
/// it can reach (what `SeedFetch` does over RPC).
struct SimFetch {
    me: String,
    net: Arc<Mutex<Net>>,
    /// Never delivers (the old behaviour, for a regression).
    disabled: bool,
}

impl BlobFetch for SimFetch {
    fn fetch(&self, sha256: &str, sink: &mut dyn BlobSink) -> Result<u64, String> {
        if self.disabled {
            return Err("replication is off".into());
        }
        let net = self.net.lock().unwrap_or_else(|p| p.into_inner());
        if net.failing.contains(&self.me) {
            return Err(format!("{}: downloads fail", self.me));
        }
        let data = net
            .nimbus_blobs
            .iter()
            .filter(|(id, _)| **id != self.me && !net.cut.contains(&pair(&self.me, id)))
            .find_map(|(_, dir)| std::fs::read(dir.join(sha256)).ok())
            .ok_or_else(|| format!("no reachable Nimbus has binary {sha256}"))?;
        let got = sha256_hex(&data);
        if got != sha256 {
            return Err(format!("content hashes to {got}"));
        }
        sink.begin(data.len() as u64)?;
        for chunk in data.chunks(CHUNK_BYTES) {
            sink.write(chunk)?;
        }
        Ok(data.len() as u64)
    }
}

/// A supervisor's heartbeat report: onto the network, delivered to the
/// leader by [`World::deliver_reports`] (what `NimbusReport` does over RPC).
struct SimReport {
    net: Arc<Mutex<Net>>,
}

impl HeartbeatReport for SimReport {
    fn report(&self, supervisor_id: &str, beats: Vec<WorkerHeartbeat>) -> Result<(), String> {
        self.net
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reports
            .push((supervisor_id.to_owned(), beats));
        Ok(())
    }
}

struct SimNimbus {
    id: String,
    dir: PathBuf,
    clock: SharedClock,
    nimbus: Option<Nimbus<Link>>,
    link: Link,
    down_until: Option<u64>,
    next_round: u64,
}

struct SimSupervisor {
    id: String,
    dir: PathBuf,
    clock: SharedClock,
    sup: Option<Supervisor<Link, SimLauncher>>,
    link: Link,
    down_until: Option<u64>,
    paused_until: Option<u64>,
    next_round: u64,
}

/// The world of one run.
pub struct World {
    s: Settings,
    rng: SmallRng,
    clock: SimulatedClock,
    cluster: MemoryCluster,
    _dir: tempfile::TempDir,
    nimbuses: Vec<SimNimbus>,
    supervisors: Vec<SimSupervisor>,
    workers: Workers,
    next_pid: Arc<Mutex<u32>>,
    /// Links of crashed daemons, left to expire.
    orphans: Vec<Link>,
    violations: Arc<Mutex<Vec<String>>>,
    log: Vec<String>,
    net: Arc<Mutex<Net>>,
    /// Pair partitions for downloads, with when they heal.
    cut_pairs: BTreeMap<(String, String), u64>,
    /// Daemons whose downloads fail, until when.
    failing_until: BTreeMap<String, u64>,
    /// Daemons whose reads lag, until when.
    lag_until: BTreeMap<String, u64>,
    outage_until: Option<u64>,
    cut: BTreeMap<String, u64>,
    versions: BTreeMap<String, i32>,
    submitted: BTreeSet<String>,
    next_worker_round: u64,
}

impl World {
    /// A world for `s`, nothing started yet.
    pub fn new(s: Settings) -> Self {
        // Memory-backed when the host has it: the daemons' files are many
        // and small.
        let shm = std::path::Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("squall-sim-");
        let dir = if shm.is_dir() {
            builder.tempdir_in(shm).or_else(|_| builder.tempdir())
        } else {
            builder.tempdir()
        }
        .expect("a temporary directory");
        let clock = SimulatedClock::at(EPOCH_MS);
        let mut rng = SmallRng::seed_from_u64(s.seed);
        let cluster = MemoryCluster::new();
        let violations = Arc::new(Mutex::new(Vec::new()));
        // Each host's clock is skewed by up to ±2 s.
        let skewed = |rng: &mut SmallRng| -> SharedClock {
            Arc::new(SkewedClock {
                base: Arc::new(clock.clone()),
                offset_ms: if s.faults {
                    rng.random_range(-2_000..=2_000)
                } else {
                    0
                },
            })
        };
        let nimbuses = (0..s.nimbuses)
            .map(|i| {
                let id = format!("nimbus-{i}:6627");
                SimNimbus {
                    link: Link::new(Role::Nimbus(id.clone()), &cluster, violations.clone()),
                    id,
                    dir: dir.path().join(format!("nimbus-{i}")),
                    clock: skewed(&mut rng),
                    nimbus: None,
                    down_until: None,
                    next_round: 0,
                }
            })
            .collect();
        let supervisors = (0..s.supervisors)
            .map(|i| {
                let id = format!("sup-{i}");
                SimSupervisor {
                    link: Link::new(Role::Other(id.clone()), &cluster, violations.clone()),
                    id,
                    dir: dir.path().join(format!("sup-{i}")),
                    clock: skewed(&mut rng),
                    sup: None,
                    down_until: None,
                    paused_until: None,
                    next_round: 0,
                }
            })
            .collect();
        let mut w = Self {
            s,
            rng,
            clock,
            cluster,
            _dir: dir,
            nimbuses,
            supervisors,
            workers: Arc::new(Mutex::new(Vec::new())),
            next_pid: Arc::new(Mutex::new(100)),
            orphans: Vec::new(),
            violations,
            log: Vec::new(),
            net: Arc::default(),
            cut_pairs: BTreeMap::new(),
            failing_until: BTreeMap::new(),
            lag_until: BTreeMap::new(),
            outage_until: None,
            cut: BTreeMap::new(),
            versions: BTreeMap::new(),
            submitted: BTreeSet::new(),
            next_worker_round: 0,
        };
        for i in 0..w.nimbuses.len() {
            w.start_nimbus(i);
        }
        for i in 0..w.supervisors.len() {
            w.start_supervisor(i);
        }
        w
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn note(&mut self, what: String) {
        let t = (self.now() - EPOCH_MS) as f64 / 1000.0;
        tracing::info!(target: "sim", "{t:>7.1}s {what}");
        self.log.push(format!("{t:>7.1}s {what}"));
    }

    fn violation(&self, what: String) {
        let t = (self.now() - EPOCH_MS) as f64 / 1000.0;
        self.violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{t:.1}s {what}"));
    }

    fn start_nimbus(&mut self, i: usize) {
        let regression = self.s.regression;
        let net = self.net.clone();
        let n = &mut self.nimbuses[i];
        let config = daemon_config(&n.dir);
        let blobs = BlobStore::open(&n.dir.join("blobs"), Duration::from_secs(600), 64)
            .expect("a blob directory");
        let nimbus = Nimbus::new(
            n.id.clone(),
            ClusterState::new(n.link.clone()),
            blobs,
            config,
        )
        .in_process()
        .with_clock(n.clock.clone())
        .with_peers(Box::new(SimFetch {
            me: n.id.clone(),
            net: net.clone(),
            disabled: regression == Some(Regression::BinariesNotReplicated),
        }));
        if regression == Some(Regression::SessionsNeverRecreated) {
            n.link.never_recreate_sessions();
        }
        n.nimbus = Some(nimbus);
        net.lock()
            .unwrap_or_else(|p| p.into_inner())
            .nimbus_blobs
            .insert(n.id.clone(), n.dir.join("blobs"));
        n.down_until = None;
        n.link.set_running(true);
        n.next_round = self.clock.now_ms();
    }

    fn start_supervisor(&mut self, i: usize) {
        let now = self.clock.now_ms();
        let launcher = SimLauncher {
            adopt: self.s.regression != Some(Regression::WorkersNotAdopted),
            workers: self.workers.clone(),
            cluster: self.cluster.clone(),
            clock: self.supervisors[i].clock.clone(),
            violations: self.violations.clone(),
            next_pid: self.next_pid.clone(),
        };
        let regression = self.s.regression;
        let net = self.net.clone();
        let s = &mut self.supervisors[i];
        // One host per supervisor: workers' heartbeats are keyed by host and port.
        let config = ClusterConfig {
            local_hostname: format!("{}.host", s.id),
            ..daemon_config(&s.dir)
        };
        // A fixed id keeps the run deterministic.
        let id_dir = s.dir.join("supervisor");
        std::fs::create_dir_all(&id_dir).expect("a supervisor directory");
        std::fs::write(id_dir.join("id"), &s.id).expect("the supervisor id");
        let report = Arc::new(SimReport { net: net.clone() });
        let sup = Supervisor::new(ClusterState::new(s.link.clone()), launcher, config, report)
            .expect("a supervisor")
            .with_clock(s.clock.clone())
            .with_inline_downloads(Arc::new(SimFetch {
                me: s.id.clone(),
                net,
                disabled: false,
            }));
        if regression == Some(Regression::SessionsNeverRecreated) {
            s.link.never_recreate_sessions();
        }
        s.sup = Some(sup);
        s.down_until = None;
        s.link.set_running(true);
        s.next_round = now;
    }

    /// The current leader's index, if a running Nimbus leads.
    fn leader(&self) -> Option<usize> {
        let leader = ClusterState::new(self.cluster.connect()).leader().ok()??;
        self.nimbuses
            .iter()
            .position(|n| n.id == leader && n.nimbus.is_some())
    }

    fn request(&mut self, req: Request) -> Option<Response> {
        let i = self.leader()?;
        let nimbus = self.nimbuses[i].nimbus.as_ref()?;
        Some(nimbus.handle(req))
    }

    fn submit(&mut self, name: &str, workers: u32, ackers: u32) {
        let mut config = Config::new();
        config.workers = workers;
        config.acker_executors = Some(ackers);
        // `squall jar` uploads the binary to the leader first.
        let Some(leader) = self.leader() else {
            return self.note(format!("submit {name}: no leader"));
        };
        let data = format!("the binary of topology {name}").into_bytes();
        let sha = sha256_hex(&data);
        let dir = self.nimbuses[leader].dir.join("blobs");
        let uploaded = BlobStore::open(&dir, Duration::from_secs(600), 64)
            .map_err(|e| e.to_string())
            .and_then(|b| b.put(&sha, &data).map_err(|e| e.to_string()));
        if let Err(e) = uploaded {
            return self.note(format!("upload {name}: {e}"));
        }
        let req = Request::Submit {
            name: name.into(),
            spec: spec(),
            config,
            binary_sha256: Some(sha),
            args: Vec::new(),
        };
        match self.request(req) {
            Some(Response::Submitted { id }) => {
                self.note(format!("submitted {name} as {id}"));
                self.submitted.insert(name.into());
            }
            other => self.note(format!("submit {name}: {other:?}")),
        }
    }

    /// Runs the whole scenario and reports.
    pub fn run(mut self) -> Outcome {
        let faults_end = EPOCH_MS + self.s.fault_secs * 1000;
        let end = faults_end + self.s.settle_secs * 1000;
        let mut healed = false;
        while self.now() < end {
            self.clock.advance(Duration::from_millis(STEP_MS));
            let now = self.now();
            let since = now - EPOCH_MS;
            // The workload: two topologies, one killed, a third, a rebalance.
            if !self.submitted.contains("a") && since >= 2_000 {
                self.submit("a", 2, 3);
            }
            if !self.submitted.contains("b") && since >= 3_000 {
                self.submit("b", 1, 2);
            }
            if since == 30_000 {
                let wait = self.rng.random_range(0..5);
                let r = self.request(Request::Kill {
                    name: "b".into(),
                    wait_secs: Some(wait),
                });
                self.note(format!("kill b -w {wait}: {r:?}"));
            }
            if !self.submitted.contains("c") && since >= 45_000 {
                self.submit("c", 2, 2);
            }
            if since == 60_000 {
                let r = self.request(Request::Rebalance {
                    name: "a".into(),
                    wait_secs: Some(1),
                    workers: Some(3),
                    executors: BTreeMap::new(),
                });
                self.note(format!("rebalance a to 3 workers: {r:?}"));
            }
            let scripted: Vec<Fault> = self
                .s
                .script
                .iter()
                .filter(|(at, _)| at * 1000 == since)
                .map(|(_, f)| *f)
                .collect();
            for f in scripted {
                self.apply(f);
            }
            if now < faults_end {
                if self.s.faults {
                    self.inject();
                }
            } else if !healed {
                self.heal_all();
                healed = true;
            }
            self.heal_due();
            self.tick_links();
            self.rounds();
            self.check_safety();
        }
        self.check_settled();
        let violations = self
            .violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Outcome {
            seed: self.s.seed,
            violations,
            log: self.log,
        }
    }

    /// Draws at most one new fault this step.
    fn inject(&mut self) {
        // About one fault every 5 s.
        if !self.rng.random_bool(STEP_MS as f64 / 5_000.0) {
            return;
        }
        let session = 4_000;
        let mut d = || self.rng.random_range(500..3 * session);
        let (ms, other) = (d(), self.rng.random_range(0..1_000usize));
        let (n, sups) = (self.nimbuses.len(), self.supervisors.len());
        let fault = match self.rng.random_range(0..14) {
            0 => Fault::CrashNimbus(other % n, ms),
            1 => Fault::CrashSupervisor(other % sups, ms),
            2 => Fault::PauseSupervisor(other % sups, ms),
            3 => Fault::StoreOutage(ms),
            4 => Fault::CutNimbus(other % n, ms),
            5 => Fault::CutSupervisor(other % sups, ms),
            6 => Fault::CutDownloads(other % n, (other / n) % sups, ms),
            7 => Fault::CutNimbuses(ms),
            8 => Fault::FailDownloads(other % sups, ms),
            9 => Fault::LoseBinaries(other % n),
            10 => Fault::ReplaceSupervisorHost(other % sups, ms),
            11 => Fault::LagNimbus(other % n, ms),
            12 => Fault::LagSupervisor(other % sups, ms),
            _ => Fault::KillWorker(other),
        };
        self.apply(fault);
    }

    /// Starts `fault` now (a no-op when its target is already down).
    fn apply(&mut self, fault: Fault) {
        let now = self.now();
        match fault {
            Fault::CrashNimbus(i, down) => {
                if self.nimbuses[i].nimbus.is_some() {
                    self.net_lock().nimbus_blobs.remove(&self.nimbuses[i].id);
                    let n = &mut self.nimbuses[i];
                    n.nimbus = None;
                    n.down_until = Some(now + down);
                    // The dead process's session lingers until it expires.
                    let id = n.id.clone();
                    let old = std::mem::replace(
                        &mut n.link,
                        Link::new(
                            Role::Nimbus(id.clone()),
                            &self.cluster,
                            self.violations.clone(),
                        ),
                    );
                    old.set_running(false);
                    self.orphans.push(old);
                    self.note(format!("crash {id} for {down} ms"));
                }
            }
            Fault::CrashSupervisor(i, down) => {
                if self.supervisors[i].sup.is_some() && self.supervisors[i].paused_until.is_none() {
                    let s = &mut self.supervisors[i];
                    s.sup = None;
                    s.down_until = Some(now + down);
                    let id = s.id.clone();
                    let old = std::mem::replace(
                        &mut s.link,
                        Link::new(
                            Role::Other(id.clone()),
                            &self.cluster,
                            self.violations.clone(),
                        ),
                    );
                    old.set_running(false);
                    self.orphans.push(old);
                    self.note(format!(
                        "crash {id} for {down} ms (its workers keep running)"
                    ));
                }
            }
            Fault::PauseSupervisor(i, pause) => {
                let s = &mut self.supervisors[i];
                if s.sup.is_some() && s.paused_until.is_none() {
                    s.paused_until = Some(now + pause);
                    s.link.set_running(false);
                    let id = s.id.clone();
                    self.note(format!("pause {id} for {pause} ms"));
                }
            }
            Fault::StoreOutage(d) => {
                if self.outage_until.is_none() {
                    self.outage_until = Some(now + d);
                    self.set_all_reachable(false);
                    self.note(format!("ZooKeeper down for {d} ms"));
                }
            }
            Fault::CutNimbus(i, d) => {
                let name = self.nimbuses[i].id.clone();
                self.cut_off(name, d);
            }
            Fault::CutSupervisor(i, d) => {
                let name = self.supervisors[i].id.clone();
                self.cut_off(name, d);
            }
            Fault::CutDownloads(i, j, d) => {
                let (a, b) = (self.nimbuses[i].id.clone(), self.supervisors[j].id.clone());
                self.cut_pair(a, b, d);
            }
            Fault::CutNimbuses(d) => {
                if self.nimbuses.len() > 1 {
                    let (a, b) = (self.nimbuses[0].id.clone(), self.nimbuses[1].id.clone());
                    self.cut_pair(a, b, d);
                }
            }
            Fault::FailDownloads(j, d) => {
                let id = self.supervisors[j].id.clone();
                if !self.failing_until.contains_key(&id) {
                    self.failing_until.insert(id.clone(), now + d);
                    self.net_lock().failing.insert(id.clone());
                    self.note(format!("downloads of {id} fail for {d} ms"));
                }
            }
            Fault::LoseBinaries(i) => {
                let dir = self.nimbuses[i].dir.join("blobs");
                let files = |d: &PathBuf| -> BTreeSet<String> {
                    std::fs::read_dir(d)
                        .map(|r| {
                            r.flatten()
                                .filter(|e| e.path().is_file())
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let mine = files(&dir);
                let elsewhere = self
                    .nimbuses
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| *k != i)
                    .any(|(_, o)| mine.is_subset(&files(&o.dir.join("blobs"))));
                if !mine.is_empty() && elsewhere {
                    for f in &mine {
                        let _ = std::fs::remove_file(dir.join(f));
                    }
                    let id = self.nimbuses[i].id.clone();
                    self.note(format!("{id} loses its {} binaries", mine.len()));
                }
            }
            Fault::CrashLeaderWithoutBinaries(down) => {
                if let Some(i) = self.leader() {
                    let dir = self.nimbuses[i].dir.join("blobs");
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        for e in entries.flatten().filter(|e| e.path().is_file()) {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                    let id = self.nimbuses[i].id.clone();
                    self.note(format!("{id} (leading) loses its binaries"));
                    self.apply(Fault::CrashNimbus(i, down));
                }
            }
            Fault::ReplaceSupervisorHost(j, down) => {
                let id = self.supervisors[j].id.clone();
                for w in lock(&self.workers)
                    .iter_mut()
                    .filter(|w| w.slot.supervisor == id)
                {
                    w.life = Life::Dead;
                }
                self.apply(Fault::CrashSupervisor(j, down));
                let _ = std::fs::remove_dir_all(self.supervisors[j].dir.join("supervisor"));
                self.note(format!(
                    "{id}'s host replaced: its workers and files are gone"
                ));
            }
            Fault::LagNimbus(i, d) => {
                let name = self.nimbuses[i].id.clone();
                self.lag(name, d);
            }
            Fault::LagSupervisor(j, d) => {
                let name = self.supervisors[j].id.clone();
                self.lag(name, d);
            }
            Fault::KillWorker(k) => {
                let mut workers = lock(&self.workers);
                let alive: Vec<usize> = workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.life != Life::Dead)
                    .map(|(i, _)| i)
                    .collect();
                if alive.is_empty() {
                    return;
                }
                let i = alive[k % alive.len()];
                workers[i].life = Life::Dead;
                let pid = workers[i].pid;
                drop(workers);
                self.note(format!("kill -9 worker {pid}"));
            }
        }
    }

    fn lag(&mut self, name: String, d: u64) {
        if !self.lag_until.contains_key(&name) {
            self.lag_until.insert(name.clone(), self.now() + d);
            self.link_of(&name).set_lagging(true);
            self.note(format!("{name} reads a lagging replica for {d} ms"));
        }
    }

    fn cut_pair(&mut self, a: String, b: String, d: u64) {
        let p = pair(&a, &b);
        if !self.cut_pairs.contains_key(&p) {
            self.cut_pairs.insert(p.clone(), self.now() + d);
            self.net_lock().cut.insert(p);
            self.note(format!("{a} and {b} cannot reach each other for {d} ms"));
        }
    }

    fn cut_off(&mut self, name: String, d: u64) {
        if !self.cut.contains_key(&name) {
            self.cut.insert(name.clone(), self.now() + d);
            self.link_of(&name).set_reachable(false);
            self.note(format!("cut {name} off ZooKeeper for {d} ms"));
        }
    }

    fn net_lock(&self) -> std::sync::MutexGuard<'_, Net> {
        self.net.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn link_of(&self, name: &str) -> Link {
        self.nimbuses
            .iter()
            .find(|n| n.id == name)
            .map(|n| n.link.clone())
            .or_else(|| {
                self.supervisors
                    .iter()
                    .find(|s| s.id == name)
                    .map(|s| s.link.clone())
            })
            .expect("a daemon")
    }

    fn set_all_reachable(&self, on: bool) {
        for n in &self.nimbuses {
            n.link.set_reachable(on && !self.cut.contains_key(&n.id));
        }
        for s in &self.supervisors {
            s.link.set_reachable(on && !self.cut.contains_key(&s.id));
        }
        for w in lock(&self.workers).iter() {
            w.link.set_reachable(on);
        }
    }

    fn heal_due(&mut self) {
        let now = self.now();
        for i in 0..self.nimbuses.len() {
            if self.nimbuses[i].down_until.is_some_and(|t| now >= t) {
                let id = self.nimbuses[i].id.clone();
                self.start_nimbus(i);
                self.note(format!("restart {id}"));
            }
        }
        for i in 0..self.supervisors.len() {
            if self.supervisors[i].down_until.is_some_and(|t| now >= t) {
                let id = self.supervisors[i].id.clone();
                self.start_supervisor(i);
                self.note(format!("restart {id}"));
            }
            if self.supervisors[i].paused_until.is_some_and(|t| now >= t) {
                let s = &mut self.supervisors[i];
                s.paused_until = None;
                s.link.set_running(true);
                let id = s.id.clone();
                self.note(format!("resume {id}"));
            }
        }
        if self.outage_until.is_some_and(|t| now >= t) {
            self.outage_until = None;
            self.set_all_reachable(true);
            self.note("ZooKeeper back".into());
        }
        let pairs: Vec<(String, String)> = self
            .cut_pairs
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(p, _)| p.clone())
            .collect();
        for p in pairs {
            self.cut_pairs.remove(&p);
            self.net_lock().cut.remove(&p);
            self.note(format!("{} and {} reach each other again", p.0, p.1));
        }
        let caught_up: Vec<String> = self
            .lag_until
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(n, _)| n.clone())
            .collect();
        for name in caught_up {
            self.lag_until.remove(&name);
            self.link_of(&name).set_lagging(false);
            self.note(format!("{name} reads are current again"));
        }
        let failing: Vec<String> = self
            .failing_until
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(n, _)| n.clone())
            .collect();
        for id in failing {
            self.failing_until.remove(&id);
            self.net_lock().failing.remove(&id);
            self.note(format!("downloads of {id} work again"));
        }
        let due: Vec<String> = self
            .cut
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.cut.remove(&name);
            self.link_of(&name)
                .set_reachable(self.outage_until.is_none());
            self.note(format!("{name} reaches ZooKeeper again"));
        }
    }

    fn heal_all(&mut self) {
        let now = self.now();
        for n in &mut self.nimbuses {
            if n.down_until.is_some() {
                n.down_until = Some(now);
            }
        }
        for s in &mut self.supervisors {
            if s.down_until.is_some() {
                s.down_until = Some(now);
            }
            if s.paused_until.is_some() {
                s.paused_until = Some(now);
            }
        }
        if self.outage_until.is_some() {
            self.outage_until = Some(now);
        }
        for t in self.cut.values_mut() {
            *t = now;
        }
        for t in self.cut_pairs.values_mut() {
            *t = now;
        }
        for t in self.failing_until.values_mut() {
            *t = now;
        }
        for t in self.lag_until.values_mut() {
            *t = now;
        }
        self.note("faults stop".into());
        self.heal_due();
    }

    fn tick_links(&mut self) {
        let now = self.now();
        let session = 4_000;
        let mut expired = Vec::new();
        for n in &self.nimbuses {
            if n.link.tick(now, session) {
                expired.push(n.id.clone());
            }
        }
        for s in &self.supervisors {
            if s.link.tick(now, session) {
                expired.push(s.id.clone());
            }
        }
        for o in &self.orphans {
            o.tick(now, session);
        }
        for w in lock(&self.workers).iter() {
            // A dead process stops pinging.
            w.link.set_running(w.life != Life::Dead);
            w.link.tick(now, session);
        }
        for id in expired {
            self.note(format!("session of {id} expired"));
        }
    }

    /// Every daemon whose round is due runs it, in a seeded order.
    fn rounds(&mut self) {
        let now = self.now();
        let mut order: Vec<usize> = (0..self.nimbuses.len() + self.supervisors.len() + 1).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=i);
            order.swap(i, j);
        }
        for k in order {
            let jitter = self.rng.random_range(0..200);
            if k < self.nimbuses.len() {
                let n = &mut self.nimbuses[k];
                if n.nimbus.is_some() && now >= n.next_round {
                    n.next_round = now + 1_000 + jitter;
                    if let Some(nimbus) = &n.nimbus {
                        nimbus.monitor_round();
                    }
                }
            } else if k < self.nimbuses.len() + self.supervisors.len() {
                let s = &mut self.supervisors[k - self.nimbuses.len()];
                if s.paused_until.is_none() && now >= s.next_round {
                    s.next_round = now + 1_000 + jitter;
                    if let Some(sup) = &mut s.sup {
                        if let Err(e) = sup.sync() {
                            tracing::debug!(target: "sim", supervisor = %s.id, "sync failed: {e}");
                        }
                    }
                    self.deliver_reports();
                }
            } else if now >= self.next_worker_round {
                self.next_worker_round = now + 1_000;
                let lines: Vec<String> = lock(&self.workers)
                    .iter_mut()
                    .filter_map(|w| w.step())
                    .collect();
                for l in lines {
                    self.note(l);
                }
            }
        }
    }

    /// Hands the supervisors' heartbeat reports to the Nimbus the sender
    /// finds leading (the leader node, read as `NimbusReport` would),
    /// unless the two cannot reach each other or it is down.
    fn deliver_reports(&mut self) {
        let reports = std::mem::take(&mut self.net_lock().reports);
        if reports.is_empty() {
            return;
        }
        let leader = self.leader();
        for (from, beats) in reports {
            let Some(i) = leader else { continue };
            let n = &self.nimbuses[i];
            if self.net_lock().cut.contains(&pair(&from, &n.id)) {
                continue;
            }
            if let Some(nimbus) = &n.nimbus {
                let req = Request::SupervisorHeartbeats {
                    supervisor_id: from,
                    beats,
                };
                if let Response::Error(e) = nimbus.handle(req) {
                    tracing::debug!(target: "sim", "heartbeats refused: {}", e.message);
                }
            }
        }
    }

    /// Invariants that hold at every step.
    fn check_safety(&mut self) {
        // No slot runs two workers.
        let mut per_slot: BTreeMap<(String, u16), Vec<u32>> = BTreeMap::new();
        for w in lock(&self.workers).iter().filter(|w| w.life != Life::Dead) {
            per_slot
                .entry((w.slot.supervisor.clone(), w.slot.port))
                .or_default()
                .push(w.pid);
        }
        for ((sup, port), pids) in per_slot {
            if pids.len() > 1 {
                self.violation(format!("slot {sup}:{port} runs workers {pids:?}"));
            }
        }
        // Assignment versions never go back.
        let state = ClusterState::new(self.cluster.connect());
        let ids: Vec<String> = state
            .topologies()
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.id)
            .collect();
        for id in ids {
            if let Ok(Some((_, v))) = state.assignment(&id) {
                let last = self.versions.entry(id.clone()).or_insert(v);
                if v < *last {
                    let was = *last;
                    self.violation(format!(
                        "assignment of {id} went back from version {was} to {v}"
                    ));
                } else {
                    *last = v;
                }
            }
        }
    }

    /// Invariants that hold once faults have stopped for the settle time.
    fn check_settled(&mut self) {
        let state = ClusterState::new(self.cluster.connect());
        if self.leader().is_none() {
            self.violation("no leading Nimbus".into());
        }
        let registered: BTreeSet<String> = state
            .supervisors()
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.id)
            .collect();
        for s in &self.supervisors {
            if !registered.contains(&s.id) {
                let id = s.id.clone();
                self.violation(format!("supervisor {id} is not registered"));
            }
        }
        let topologies = state.topologies().unwrap_or_default();
        for t in &topologies {
            if let Ok(Some((a, v))) = state.assignment(&t.id) {
                let slots: Vec<String> = a
                    .slots()
                    .iter()
                    .map(|s| format!("{}:{}", s.supervisor, s.port))
                    .collect();
                tracing::debug!(target: "sim", "final: {} {:?} v{v} on {slots:?}", t.id, t.status);
            }
        }
        let live: BTreeSet<String> = topologies.iter().map(|t| t.id.clone()).collect();
        let workers: Vec<(
            String,
            squall_cluster::schema::WorkerSlot,
            Option<Vec<_>>,
            u32,
        )> = lock(&self.workers)
            .iter()
            .filter(|w| w.life != Life::Dead)
            .map(|w| {
                (
                    w.topology_id.clone(),
                    w.slot.clone(),
                    w.executors.clone(),
                    w.pid,
                )
            })
            .collect();
        for (t, _, _, pid) in &workers {
            if !live.contains(t) {
                self.violation(format!("worker {pid} still runs killed topology {t}"));
            }
        }
        for t in topologies {
            if !matches!(t.status, TopologyStatus::Active | TopologyStatus::Inactive) {
                continue;
            }
            let Ok(Some((a, _))) = state.assignment(&t.id) else {
                self.violation(format!("topology {} has no assignment", t.id));
                continue;
            };
            let layout = TaskLayout::new(&t.spec, t.config.effective_ackers());
            let placed: Vec<_> = a.executors.iter().map(|(e, _)| e.clone()).collect();
            if placed != layout.executors() {
                self.violation(format!("topology {} is not fully assigned", t.id));
            }
            for slot in a.slots() {
                if !registered.contains(&slot.supervisor) {
                    self.violation(format!("{} runs on unregistered {slot}", t.id));
                }
                let want = a.executors_on(&slot);
                let running = workers
                    .iter()
                    .filter(|(wt, ws, e, _)| {
                        *wt == t.id && *ws == slot && e.as_ref() == Some(&want)
                    })
                    .count();
                if running != 1 {
                    self.violation(format!(
                        "{}'s executors on {}:{} run in {running} workers",
                        t.id, slot.supervisor, slot.port
                    ));
                }
            }
        }
    }
}

/// A small topology: one spout, one bolt.
fn spec() -> TopologySpec {
    use squall_topology_api::{
        Bolt, OutputCollector, OutputFieldsDeclarer, Spout, SpoutOutputCollector, TopologyBuilder,
        Tuple,
    };
    struct Nothing;
    impl Spout for Nothing {
        fn next_tuple(&mut self, _c: &mut SpoutOutputCollector<'_>) {}
        fn declare_output_fields(&self, d: &mut OutputFieldsDeclarer) {
            d.declare(["x"]);
        }
    }
    impl Bolt for Nothing {
        fn execute(&mut self, _t: &Tuple, _c: &mut OutputCollector<'_>) {}
        fn declare_output_fields(&self, _d: &mut OutputFieldsDeclarer) {}
    }
    let mut b = TopologyBuilder::new();
    b.set_spout("source", || Nothing, 2);
    b.set_bolt("sink", || Nothing, 2).shuffle_grouping("source");
    b.create_topology()
        .expect("a valid topology")
        .spec()
        .clone()
}

/// Runs one seed.
pub fn run(s: Settings) -> Outcome {
    World::new(s).run()
}

/// Formats a failed outcome: the seed to replay and the log.
pub fn report(o: &Outcome) -> String {
    format!(
        "seed {} broke {} invariant(s):\n  {}\nreplay: SQUALL_SIM_SEED={} cargo test -p squall-sim --test seeds replay -- --nocapture\nlog:\n{}",
        o.seed,
        o.violations.len(),
        o.violations.join("\n  "),
        o.seed,
        o.log.join("\n")
    )
}
