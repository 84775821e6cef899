//! `LocalCluster`: run topologies inside this process, on the same code as
//! a cluster. An in-process Nimbus (over the in-memory cluster state)
//! validates, records and schedules each topology; an in-process
//! supervisor syncs its assignment and starts its worker through a
//! [`Launcher`] that runs the worker loop on a thread instead of a process.

use squall_cluster::rpc::{
    ClusterSummary, ErrorKind, HeartbeatReport, Request, Response, RpcError, TopologyInfo,
};
use squall_cluster::schema::WorkerHeartbeat;
use squall_cluster::{ClusterState, MemoryCluster, MemoryStorage, StorageStore};
use squall_nimbus::{BlobStore, Nimbus};
use squall_supervisor::{Launcher, Supervisor, WorkerHandle, WorkerLaunch};
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::{ClusterConfig, Config, Topology, TopologyClock};
use squall_worker::{run_worker_on, EmitTap, LaunchOptions, Probe, WorkerEnv, WorkerOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why a `LocalCluster` call failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// A topology of that name is already running.
    #[error("a topology named {0:?} is already running")]
    AlreadyRunning(String),
    /// No topology of that name is running.
    #[error("no topology named {0:?} is running")]
    NotFound(String),
    /// The name is empty or has one of `/ . : \`.
    #[error("topology name {0:?} is invalid: it must be non-empty and contain none of / . : \\")]
    InvalidName(String),
    /// Nimbus refused the topology (the message says why).
    #[error("{0}")]
    Rejected(String),
    /// The topology's worker could not start or did not start in time.
    #[error("worker of topology {name:?} did not start: {reason}")]
    Worker {
        /// The topology.
        name: String,
        /// Why.
        reason: String,
    },
    /// The in-process daemons could not start.
    #[error("local cluster: {0}")]
    Start(String),
}

/// How long `submit_topology` and `kill_topology` wait for the worker.
const WORKER_WAIT: Duration = Duration::from_secs(60);
/// How often the in-process supervisor syncs and workers poll the state.
const SYNC_PERIOD: Duration = Duration::from_millis(10);
/// How often the in-process Nimbus runs its monitor round.
const MONITOR_PERIOD: Duration = Duration::from_millis(100);
/// Slots of the in-process supervisor: each topology takes one.
const SLOTS: u16 = 64;

/// The local supervisor's heartbeat report: straight to the in-process
/// Nimbus, as a request (the cluster's goes over RPC).
struct InProcessReport(Arc<Nimbus<MemoryStorage>>);

impl HeartbeatReport for InProcessReport {
    fn report(&self, supervisor_id: &str, beats: Vec<WorkerHeartbeat>) -> Result<(), String> {
        let req = Request::SupervisorHeartbeats {
            supervisor_id: supervisor_id.to_owned(),
            beats,
        };
        match self.0.handle(req) {
            Response::Error(e) => Err(e.message),
            _ => Ok(()),
        }
    }
}

/// What the thread launcher knows of the topologies submitted here.
#[derive(Default)]
struct Registry {
    /// Topologies by name: what their worker threads run.
    topologies: BTreeMap<String, (Topology, Option<EmitTap>)>,
    /// Topology id of each name.
    ids: BTreeMap<String, String>,
    /// Running workers, by topology id.
    probes: BTreeMap<String, Probe>,
    /// Final metrics of workers that ended, by topology id.
    finished: BTreeMap<String, TopologyMetrics>,
    /// Why a worker failed, by topology id.
    failed: BTreeMap<String, String>,
}

type Shared = Arc<Mutex<Registry>>;

fn lock(r: &Shared) -> MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts workers as threads of this process running
/// [`run_worker_on`] over the in-memory cluster state.
struct ThreadLauncher {
    cluster: MemoryCluster,
    registry: Shared,
    next_id: AtomicU32,
    clock: TopologyClock,
}

struct ThreadWorker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    id: u32,
}

impl WorkerHandle for ThreadWorker {
    fn is_alive(&mut self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn terminate(&mut self) {
        self.stop.store(true, Ordering::Release);
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for ThreadWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Launcher for ThreadLauncher {
    fn launch(&mut self, l: &WorkerLaunch) -> std::io::Result<Box<dyn WorkerHandle>> {
        let not_here = |what: String| std::io::Error::new(std::io::ErrorKind::NotFound, what);
        let storage = Arc::new(self.cluster.connect());
        let state = ClusterState::new(storage.clone());
        let name = state
            .topology(&l.topology_id)
            .map_err(|e| not_here(e.to_string()))?
            .ok_or_else(|| not_here(format!("topology {} is gone", l.topology_id)))?
            .name;
        let (topology, tap) = lock(&self.registry)
            .topologies
            .get(&name)
            .cloned()
            .ok_or_else(|| not_here(format!("topology {name:?} was not submitted here")))?;
        let worker_env = WorkerEnv::from_vars(|k| l.env_var(k).map(str::to_owned))
            .map_err(|e| not_here(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let registry = self.registry.clone();
        let id = l.topology_id.clone();
        let options = WorkerOptions {
            poll: Some(SYNC_PERIOD),
            stop: Some(stop.clone()),
            // As Storm's local mode: a dead executor is reported in the
            // metrics and the others keep running.
            survive_dead_executors: true,
            tap,
            on_start: Some(Box::new({
                let (registry, id) = (registry.clone(), id.clone());
                move |probe| {
                    lock(&registry).probes.insert(id, probe);
                }
            })),
            store: Some(StorageStore::shared(storage)),
            clock: Some(self.clock.clone()),
            // The process that runs a LocalCluster owns its logging.
            log_control: None,
            // Sampled events go to the process's log.
            events: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("worker-{}", l.port))
            .spawn(move || {
                let result = run_worker_on(&topology, &state, &worker_env, options);
                let mut r = lock(&registry);
                if let Some(p) = r.probes.remove(&id) {
                    r.finished.insert(id.clone(), p.metrics());
                }
                if let Err(e) = result {
                    tracing::error!(topology = %id, "worker failed: {e}");
                    r.failed.insert(id, e.to_string());
                }
            })?;
        Ok(Box::new(ThreadWorker {
            stop,
            thread: Some(thread),
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        }))
    }
}

/// Runs topologies in-process (Storm's `LocalCluster`), on the same
/// Nimbus, scheduler, supervisor and worker loop as a cluster, over the
/// in-memory cluster state. Each topology runs in one worker whose
/// executors are threads of this process (`topology.workers` is taken as
/// 1); up to 64 topologies run at once.
pub struct LocalCluster {
    nimbus: Arc<Nimbus<MemoryStorage>>,
    registry: Shared,
    stop: Arc<AtomicBool>,
    daemons: Option<JoinHandle<()>>,
    clock: TopologyClock,
    _dir: tempfile::TempDir,
}

impl Default for LocalCluster {
    fn default() -> Self {
        Self::new()
    }
}

fn rpc_error(name: &str, e: RpcError) -> LocalClusterError {
    match e.kind {
        ErrorKind::AlreadyExists => LocalClusterError::AlreadyRunning(name.to_owned()),
        ErrorKind::NotFound => LocalClusterError::NotFound(name.to_owned()),
        ErrorKind::Invalid if !squall_nimbus::valid_name(name) => {
            LocalClusterError::InvalidName(name.to_owned())
        }
        _ => LocalClusterError::Rejected(e.message),
    }
}

impl LocalCluster {
    /// An empty cluster: an in-process Nimbus and supervisor, their files
    /// in a temporary directory removed on drop.
    ///
    /// # Panics
    /// When the temporary directory or a daemon thread cannot be created
    /// (see [`LocalCluster::try_new`]).
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`LocalCluster::new`].
    ///
    /// # Errors
    /// [`LocalClusterError::Start`] when the temporary directory, the blob
    /// store, the supervisor or its thread cannot be created.
    pub fn try_new() -> Result<Self, LocalClusterError> {
        Self::on_clock(TopologyClock::system())
    }

    /// A cluster whose topologies run on simulated time (Storm's
    /// `Time.simulating`): message timeouts, tick tuples, acker rotation
    /// and whatever components read from
    /// [`TopologyContext::clock`](crate::TopologyContext::clock) move only
    /// with [`LocalCluster::advance_time`], so such tests run at once and
    /// give the same result every run. Tuples still flow as fast as
    /// threads run them; the daemons keep the system's time.
    ///
    /// # Errors
    /// As [`LocalCluster::try_new`].
    pub fn simulated() -> Result<Self, LocalClusterError> {
        Self::on_clock(TopologyClock::simulated())
    }

    /// Moves simulated time forward by `d` (Storm's
    /// `advanceClusterTime`); a no-op on a cluster on the system's time.
    /// Executors notice within a few ms: wait on the outcome, as on any
    /// other condition.
    pub fn advance_time(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// The time the cluster's topologies run on.
    pub fn clock(&self) -> &TopologyClock {
        &self.clock
    }

    fn on_clock(clock: TopologyClock) -> Result<Self, LocalClusterError> {
        let start = |e: &dyn std::fmt::Display| LocalClusterError::Start(e.to_string());
        let dir = tempfile::Builder::new()
            .prefix("squall-local-")
            .tempdir()
            .map_err(|e| start(&e))?;
        let config = ClusterConfig {
            local_dir: dir.path().display().to_string(),
            supervisor_slots_ports: (6700..6700 + SLOTS).collect(),
            ..ClusterConfig::default()
        };
        let cluster = MemoryCluster::new();
        let blobs = BlobStore::open(
            &dir.path().join("blobs"),
            Duration::from_secs(config.nimbus_file_copy_expiration_secs),
            config.nimbus_upload_max_sessions,
        )
        .map_err(|e| start(&e))?;
        let nimbus = Arc::new(
            Nimbus::new(
                "local-nimbus".into(),
                ClusterState::new(cluster.connect()),
                blobs,
                config.clone(),
            )
            .in_process(),
        );
        // The only Nimbus: it leads from the start.
        nimbus.monitor_round();
        let registry = Shared::default();
        let launcher = ThreadLauncher {
            cluster: cluster.clone(),
            registry: registry.clone(),
            next_id: AtomicU32::new(0),
            clock: clock.clone(),
        };
        let report = Arc::new(InProcessReport(nimbus.clone()));
        let mut supervisor = Supervisor::new(
            ClusterState::new(cluster.connect()),
            launcher,
            config,
            report,
        )
        .map_err(|e| start(&e))?;
        // Registered before the first submit can count its slots.
        supervisor.sync().map_err(|e| start(&e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let daemons = std::thread::Builder::new()
            .name("local-cluster".into())
            .spawn({
                let (nimbus, stop) = (nimbus.clone(), stop.clone());
                move || {
                    let mut last_monitor = Instant::now();
                    while !stop.load(Ordering::Acquire) {
                        if let Err(e) = supervisor.sync() {
                            tracing::warn!("local supervisor: {e}");
                        }
                        if last_monitor.elapsed() >= MONITOR_PERIOD {
                            nimbus.monitor_round();
                            last_monitor = Instant::now();
                        }
                        std::thread::sleep(SYNC_PERIOD);
                    }
                    // Dropping the supervisor stops its worker threads.
                    supervisor.shutdown();
                }
            })
            .map_err(|e| start(&e))?;
        Ok(Self {
            nimbus,
            registry,
            stop,
            daemons: Some(daemons),
            clock,
            _dir: dir,
        })
    }

    fn call(&self, name: &str, req: Request) -> Result<Response, LocalClusterError> {
        match self.nimbus.handle(req) {
            Response::Error(e) => Err(rpc_error(name, e)),
            r => Ok(r),
        }
    }

    fn id_of(&self, name: &str) -> Result<String, LocalClusterError> {
        lock(&self.registry)
            .ids
            .get(name)
            .cloned()
            .ok_or_else(|| LocalClusterError::NotFound(name.to_owned()))
    }

    fn probe(&self, name: &str) -> Result<Probe, LocalClusterError> {
        let id = self.id_of(name)?;
        lock(&self.registry)
            .probes
            .get(&id)
            .cloned()
            .ok_or_else(|| LocalClusterError::NotFound(name.to_owned()))
    }

    /// Starts `topology` under `name`, active, and returns once its
    /// executors run.
    ///
    /// # Errors
    /// [`LocalClusterError::InvalidName`], [`LocalClusterError::AlreadyRunning`],
    /// [`LocalClusterError::Rejected`] for what Nimbus refuses, and
    /// [`LocalClusterError::Worker`] when the worker does not start.
    pub fn submit_topology(
        &self,
        name: &str,
        config: &Config,
        topology: Topology,
    ) -> Result<(), LocalClusterError> {
        self.submit_with(name, config, topology, LaunchOptions::default())
    }

    /// Starts `topology` with launch options (testing kit: the emit tap).
    pub(crate) fn submit_with(
        &self,
        name: &str,
        config: &Config,
        topology: Topology,
        options: LaunchOptions,
    ) -> Result<(), LocalClusterError> {
        let mut config = config.clone();
        config.workers = 1;
        let spec = topology.spec().clone();
        {
            let mut r = lock(&self.registry);
            if r.ids.contains_key(name) {
                return Err(LocalClusterError::AlreadyRunning(name.to_owned()));
            }
            r.topologies
                .insert(name.to_owned(), (topology, options.tap));
        }
        let submitted = self.call(
            name,
            Request::Submit {
                name: name.to_owned(),
                spec,
                config,
                binary_sha256: None,
                args: Vec::new(),
            },
        );
        let id = match submitted {
            Ok(Response::Submitted { id }) => id,
            Ok(other) => {
                lock(&self.registry).topologies.remove(name);
                return Err(LocalClusterError::Rejected(format!(
                    "unexpected answer {other:?}"
                )));
            }
            Err(e) => {
                lock(&self.registry).topologies.remove(name);
                return Err(e);
            }
        };
        lock(&self.registry).ids.insert(name.to_owned(), id.clone());
        let deadline = Instant::now() + WORKER_WAIT;
        loop {
            {
                let r = lock(&self.registry);
                if r.probes.contains_key(&id) {
                    return Ok(());
                }
                if let Some(reason) = r.failed.get(&id).cloned() {
                    drop(r);
                    let _ = self.kill_topology(name);
                    return Err(LocalClusterError::Worker {
                        name: name.to_owned(),
                        reason,
                    });
                }
            }
            if Instant::now() >= deadline {
                let _ = self.kill_topology(name);
                return Err(LocalClusterError::Worker {
                    name: name.to_owned(),
                    reason: format!("not running after {WORKER_WAIT:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops topology `name` at once (Nimbus's kill with no wait): spouts
    /// are deactivated and closed, bolts cleaned up. Returns its final
    /// metrics once its worker has stopped.
    ///
    /// # Errors
    /// [`LocalClusterError::NotFound`] when no such topology runs.
    pub fn kill_topology(&self, name: &str) -> Result<TopologyMetrics, LocalClusterError> {
        let id = self.id_of(name)?;
        let killed = self.call(
            name,
            Request::Kill {
                name: name.to_owned(),
                wait_secs: Some(0),
            },
        );
        if let Err(e) = killed {
            self.forget(name, &id);
            return Err(e);
        }
        let deadline = Instant::now() + WORKER_WAIT;
        let metrics = loop {
            {
                let mut r = lock(&self.registry);
                let running = r.probes.contains_key(&id);
                if !running {
                    break r.finished.remove(&id).unwrap_or_default();
                }
                if Instant::now() >= deadline {
                    break r.probes[&id].metrics();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.forget(name, &id);
        Ok(metrics)
    }

    /// Drops what the registry holds for a topology that is gone.
    fn forget(&self, name: &str, id: &str) {
        let mut r = lock(&self.registry);
        r.ids.remove(name);
        r.topologies.remove(name);
        r.failed.remove(id);
    }

    /// Deactivates topology `name`, waits until nothing is in flight (at
    /// most `wait`), then kills it (Storm's kill with a wait).
    pub fn kill_topology_with_wait(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<TopologyMetrics, LocalClusterError> {
        self.deactivate(name)?;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && self.in_flight(name)? > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill_topology(name)
    }

    /// Resumes `next_tuple` calls (within one worker poll, 10 ms).
    pub fn activate(&self, name: &str) -> Result<(), LocalClusterError> {
        let req = Request::Activate {
            name: name.to_owned(),
        };
        self.call(name, req).map(drop)
    }

    /// Stops `next_tuple` calls (within one worker poll, 10 ms); in-flight
    /// tuples are still processed.
    pub fn deactivate(&self, name: &str) -> Result<(), LocalClusterError> {
        let req = Request::Deactivate {
            name: name.to_owned(),
        };
        self.call(name, req).map(drop)
    }

    /// The latest metrics of topology `name` (published every 100 ms).
    pub fn metrics(&self, name: &str) -> Result<TopologyMetrics, LocalClusterError> {
        Ok(self.probe(name)?.metrics())
    }

    /// Tuples of topology `name` sent and not yet fully processed.
    pub fn in_flight(&self, name: &str) -> Result<i64, LocalClusterError> {
        Ok(self.probe(name)?.in_flight())
    }

    /// Nimbus's view of topology `name` (Storm's `getTopologyInfo`):
    /// status, uptime, workers, executors and their slots, and the metrics
    /// of the latest worker heartbeat (every second).
    pub fn topology_info(&self, name: &str) -> Result<TopologyInfo, LocalClusterError> {
        let req = Request::Info {
            name: name.to_owned(),
        };
        match self.call(name, req)? {
            Response::Info(info) => Ok(*info),
            other => Err(LocalClusterError::Rejected(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Nimbus's view of the cluster (Storm's `getClusterInfo`): the
    /// leader and the supervisor with its slots.
    pub fn cluster_info(&self) -> Result<ClusterSummary, LocalClusterError> {
        match self.call("", Request::ClusterInfo)? {
            Response::Cluster(c) => Ok(c),
            other => Err(LocalClusterError::Rejected(format!(
                "unexpected answer {other:?}"
            ))),
        }
    }

    /// Names of the running topologies, sorted.
    pub fn topology_names(&self) -> Vec<String> {
        lock(&self.registry).ids.keys().cloned().collect()
    }

    /// Kills every topology and stops the in-process daemons.
    pub fn shutdown(self) {
        for name in self.topology_names() {
            let _ = self.kill_topology(&name);
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.daemons.take() {
            let _ = t.join();
        }
    }
}
