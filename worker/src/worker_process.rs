//! Worker mode: a topology binary started by a supervisor runs the
//! executors assigned to its slot, talks to peer workers over TCP, beats to
//! its supervisor (local files: the time, and the full heartbeat with
//! metrics that the supervisor forwards to Nimbus), reports task errors to
//! the cluster state, follows activate / deactivate, and exits when
//! unassigned. Nothing is written to ZooKeeper in steady state.

use crate::launch::{launch, LaunchOptions, Partial, Probe, RunningTopology};
use crate::shared::EmitTap;
use crate::transport::{
    distinct_peers, start_server, start_transfer, PeerAuth, PeerMap, TransportStats,
};
use squall_cluster::rpc::spec_hash;
use squall_cluster::schema::{
    Assignment, ErrorRecord, TopologyRecord, TopologyStatus, WorkerHeartbeat, WorkerSlot,
};
use squall_cluster::tls::Tls;
use squall_cluster::worker_env as env;
use squall_cluster::zk_acl::WorkerIdentity;
use squall_cluster::{
    now_ms, ClusterState, StateError, StateStorage, StorageStore, ZkCredentials, ZkStorage,
};
use squall_topology_api::{
    ClusterConfig, ExecutorSpec, SharedStore, TaskLayout, Topology, TopologyClock,
};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Where a worker runs, read from the environment its supervisor set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// The topology id.
    pub topology_id: String,
    /// This worker's slot.
    pub slot: WorkerSlot,
    /// Its directory (local heartbeat file).
    pub dir: PathBuf,
    /// ZooKeeper connect string.
    pub zookeeper: String,
    /// ZooKeeper root.
    pub zookeeper_root: String,
    /// ZooKeeper session timeout.
    pub session_timeout: Duration,
    /// The supervisor's daemon settings the worker runs by: heartbeat
    /// frequency, frame cap, worker timeout, local directory (the rest
    /// are defaults).
    pub cluster: ClusterConfig,
    /// With security on: the worker's own ZooKeeper identity (its
    /// topology's, never the daemons').
    pub zookeeper_identity: Option<WorkerIdentity>,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A worker-mode variable is missing or malformed.
    #[error("worker environment: {0}")]
    Env(String),
    /// The cluster state is unreachable.
    #[error(transparent)]
    State(#[from] StateError),
    /// The topology is not (or no longer) submitted.
    #[error("topology {0} is not in the cluster state (killed?)")]
    NoTopology(String),
    /// The binary builds a different topology than the one submitted.
    #[error(
        "spec hash mismatch for topology {topology}: this binary builds spec {built}, \
         but {submitted} was submitted; topology construction must be deterministic \
         (same binary, same arguments), refusing to start"
    )]
    SpecMismatch {
        /// The topology id.
        topology: String,
        /// Hash of the spec this binary built.
        built: String,
        /// Hash recorded at submission.
        submitted: String,
    },
    /// The slot's port could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// Executors could not start.
    #[error(transparent)]
    Launch(#[from] crate::launch::LaunchError),
    /// A thread could not start.
    #[error("cannot start a transport thread: {0}")]
    Thread(std::io::Error),
    /// An executor died (a user panic); the supervisor restarts the worker.
    #[error("an executor died: {0}")]
    ExecutorDied(String),
}

/// How a worker ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// Its topology was killed.
    TopologyGone,
    /// Its slot no longer holds these executors.
    Reassigned,
    /// Its caller stopped it ([`WorkerOptions::stop`]).
    Stopped,
}

impl WorkerEnv {
    /// The worker environment, if this process was started as a worker
    /// (`SQUALL_WORKER_TOPOLOGY` is set).
    pub fn from_env() -> Option<Result<Self, WorkerError>> {
        std::env::var_os(env::TOPOLOGY)?;
        Some(Self::from_vars(|name| std::env::var(name).ok()))
    }

    /// The worker environment from the variables `get` returns (the
    /// process environment, or a launch's list for in-process workers).
    ///
    /// # Errors
    /// [`WorkerError::Env`] naming a variable that is missing or not a
    /// number.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, WorkerError> {
        let var =
            |name: &str| get(name).ok_or_else(|| WorkerError::Env(format!("{name} is not set")));
        let number = |name: &str| -> Result<u64, WorkerError> {
            var(name)?
                .parse()
                .map_err(|_| WorkerError::Env(format!("{name} is not a number")))
        };
        {
            let port = var(env::PORT)?;
            let session = number(env::ZOOKEEPER_SESSION_MS)?;
            // The supervisor's daemon settings; defaults for any it did
            // not pass (a worker started by hand).
            let defaults = ClusterConfig::default();
            let optional = |name: &str, default: u64| -> Result<u64, WorkerError> {
                match get(name) {
                    Some(_) => number(name),
                    None => Ok(default),
                }
            };
            let mut cluster = ClusterConfig {
                worker_heartbeat_frequency_secs: optional(
                    env::HEARTBEAT_SECS,
                    defaults.worker_heartbeat_frequency_secs,
                )?,
                nimbus_max_frame_bytes: optional(
                    env::MAX_FRAME_BYTES,
                    defaults.nimbus_max_frame_bytes as u64,
                )? as usize,
                supervisor_worker_timeout_secs: optional(
                    env::WORKER_TIMEOUT_SECS,
                    defaults.supervisor_worker_timeout_secs,
                )?,
                local_dir: get(env::LOCAL_DIR).unwrap_or_else(|| defaults.local_dir.clone()),
                zookeeper_root: var(env::ZOOKEEPER_ROOT)?,
                zookeeper_session_timeout_ms: session,
                ..ClusterConfig::default()
            };
            cluster.local_hostname = var(env::HOST)?;
            let topology_id = var(env::TOPOLOGY)?;
            let zookeeper_identity = get(env::ZOOKEEPER_AUTH)
                .map(|value| WorkerIdentity::from_env(&topology_id, &value))
                .transpose()
                .map_err(|e| WorkerError::Env(format!("{}: {e}", env::ZOOKEEPER_AUTH)))?;
            if let Some(paths) = get(env::TLS) {
                squall_cluster::tls::apply_paths_env(&mut cluster, &paths)
                    .map_err(|e| WorkerError::Env(format!("{}: {e}", env::TLS)))?;
            }
            if cluster.security_enable && zookeeper_identity.is_none() {
                return Err(WorkerError::Env(format!(
                    "security is on but {} is not set",
                    env::ZOOKEEPER_AUTH
                )));
            }
            Ok(Self {
                topology_id,
                slot: WorkerSlot {
                    supervisor: var(env::SUPERVISOR)?,
                    host: var(env::HOST)?,
                    port: port.parse().map_err(|_| {
                        WorkerError::Env(format!("{} = {port:?} is not a port", env::PORT))
                    })?,
                },
                dir: PathBuf::from(var(env::DIR)?),
                zookeeper: var(env::ZOOKEEPER)?,
                zookeeper_root: var(env::ZOOKEEPER_ROOT)?,
                session_timeout: Duration::from_millis(session),
                cluster,
                zookeeper_identity,
            })
        }
    }
}

/// The executor indexes (into the layout) assigned to `slot`.
fn local_executors(layout: &TaskLayout, mine: &[ExecutorSpec]) -> Vec<usize> {
    layout
        .executors()
        .iter()
        .enumerate()
        .filter(|(_, e)| mine.contains(e))
        .map(|(i, _)| i)
        .collect()
}

fn peer_addresses(layout: &TaskLayout, a: &Assignment, me: &WorkerSlot) -> Vec<Option<String>> {
    layout
        .executors()
        .iter()
        .map(|e| {
            a.executors
                .iter()
                .find(|(x, _)| x == e)
                .filter(|(_, s)| s != me)
                .map(|(_, s)| format!("{}:{}", s.host, s.port))
        })
        .collect()
}

/// Writes the local heartbeat file every `period` from its own thread
/// until dropped, so a slow or unreachable cluster state never makes the
/// supervisor judge a working worker dead.
struct LocalBeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalBeat {
    fn start(dir: PathBuf, period: Duration) -> Result<Self, WorkerError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("worker-local-beat".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    write_local_beat(&dir);
                    std::thread::park_timeout(period);
                }
            })
            .map_err(WorkerError::Thread)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LocalBeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Writes `now` to `<dir>/heartbeat` atomically.
fn write_local_beat(dir: &std::path::Path) {
    let path = dir.join(env::HEARTBEAT_FILE);
    let tmp = dir.join("heartbeat.tmp");
    if std::fs::write(&tmp, now_ms().to_string()).is_ok() {
        let _ = std::fs::rename(tmp, path);
    }
}

struct Beat<'a, S> {
    env: &'a WorkerEnv,
    state: &'a ClusterState<S>,
    executors: Vec<ExecutorSpec>,
    started_at_ms: u64,
    /// Errors already written to the cluster state, per task.
    errors_seen: std::collections::HashMap<u32, u64>,
}

impl<S: StateStorage> Beat<'_, S> {
    /// Writes the full heartbeat for the supervisor to forward to Nimbus
    /// (Storm 2's worker-to-supervisor heartbeat) and reports new errors.
    fn beat(&mut self, running: &RunningTopology) {
        let hb = WorkerHeartbeat {
            topology_id: self.env.topology_id.clone(),
            slot: self.env.slot.clone(),
            time_ms: now_ms(),
            executors: self.executors.clone(),
            metrics: running.metrics(),
            started_at_ms: self.started_at_ms,
        };
        if let Err(e) = env::write_worker_beat(&self.env.dir, &hb) {
            tracing::warn!(dir = %self.env.dir.display(), "cannot write the heartbeat: {e}");
        }
        self.report_errors(&hb);
    }

    /// Writes the tasks' errors reported since the last beat to the
    /// cluster state, with this worker's slot and the time (Storm's
    /// `/errors` nodes, which the UI shows as "last error").
    fn report_errors(&mut self, hb: &WorkerHeartbeat) {
        let seen = &mut self.errors_seen;
        for (task, m) in &hb.metrics.tasks {
            let before = seen.get(&task.0).copied().unwrap_or(0);
            if m.errors_total <= before {
                continue;
            }
            let new = ((m.errors_total - before) as usize).min(m.errors.len());
            for message in &m.errors[m.errors.len() - new..] {
                let record = ErrorRecord {
                    component: m.component.clone(),
                    task: task.0,
                    slot: Some(self.env.slot.clone()),
                    time_ms: hb.time_ms,
                    message: message.clone(),
                };
                if let Err(e) = self.state.report_error(&self.env.topology_id, &record) {
                    tracing::warn!("cannot record an error: {e}");
                    return;
                }
            }
            seen.insert(task.0, m.errors_total);
        }
    }
}

/// Runs this process as the worker described by `env` for `topology` (built
/// by the binary's own code) until it is unassigned, stopped by SIGTERM
/// (returning [`WorkerExit::Stopped`] after its executors shut down) or
/// fails: the cluster state is ZooKeeper, the loop runs every
/// `worker.heartbeat.frequency.secs` and a dead executor ends the worker
/// (its supervisor starts another).
///
/// # Errors
/// [`WorkerError::SpecMismatch`] when the binary builds another topology
/// than the one submitted; the others as named.
pub fn run_worker(
    topology: &Topology,
    env: &WorkerEnv,
    log_control: Option<crate::logging::LogControl>,
) -> Result<WorkerExit, WorkerError> {
    let storage = Arc::new(ZkStorage::connect_with(
        &env.zookeeper,
        &env.zookeeper_root,
        env.session_timeout,
        env.zookeeper_identity.clone().map(ZkCredentials::Worker),
    )?);
    let state = ClusterState::new(storage.clone());
    // SIGTERM (the supervisor's graceful kill) stops the worker the way
    // an unassignment does: executors shut down, components clean up.
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone()) {
        tracing::warn!("cannot handle SIGTERM: {e}");
    }
    // Sampled events go to `events-<port>.log` beside the worker's log.
    let events = crate::logging::LogFile::from_env().and_then(|log| {
        let file = crate::logging::LogFile {
            path: log
                .path
                .with_file_name(squall_cluster::worker_env::events_file(env.slot.port)),
            ..log
        };
        crate::sampling::start_writer(&file)
            .map_err(|e| tracing::warn!("sampled events go to the log: {e}"))
            .ok()
    });
    let options = WorkerOptions {
        store: Some(StorageStore::shared(storage)),
        stop: Some(stop),
        log_control,
        events,
        ..WorkerOptions::default()
    };
    run_worker_on(topology, &state, env, options)
}

/// How [`run_worker_on`] runs besides its assignment.
#[derive(Default)]
pub struct WorkerOptions {
    /// How often the worker beats and reads its topology and assignment;
    /// `None`: every `worker.heartbeat.frequency.secs`.
    pub poll: Option<Duration>,
    /// Set by the caller to stop the worker (it returns
    /// [`WorkerExit::Stopped`]).
    pub stop: Option<Arc<AtomicBool>>,
    /// Keep running when an executor dies (its error is in the metrics);
    /// by default the worker ends so its supervisor starts a fresh one.
    pub survive_dead_executors: bool,
    /// Observer of every emit (testing kit).
    pub tap: Option<EmitTap>,
    /// Called once the executors run, with a handle on their metrics.
    pub on_start: Option<Box<dyn FnOnce(Probe) + Send>>,
    /// The coordination store tasks see (over the same cluster state);
    /// `None`: one in memory, private to this worker.
    pub store: Option<SharedStore>,
    /// The time executors run on; `None`: the system's.
    pub clock: Option<TopologyClock>,
    /// The process's log filter, which the topology's log level overrides
    /// change; `None`: they are not applied (the process owns its logging).
    pub log_control: Option<crate::logging::LogControl>,
    /// Where sampled events go (`squall debug`); `None`: the log.
    pub events: Option<crossbeam_channel::Sender<crate::sampling::SampledEvent>>,
}

/// With security on, the worker's identity and its topology's secret;
/// fails closed when either is missing or bad.
fn peer_auth(env: &WorkerEnv, record: &TopologyRecord) -> Result<Option<PeerAuth>, WorkerError> {
    let Some(tls) = Tls::from_config(&env.cluster).map_err(|e| WorkerError::Env(e.to_string()))?
    else {
        return Ok(None);
    };
    let secret = record.secret.as_ref().ok_or_else(|| {
        WorkerError::Env(format!(
            "security is on but topology {} has no secret (submitted with security off?)",
            record.id
        ))
    })?;
    Ok(Some(PeerAuth {
        tls,
        secret: secret.as_bytes().into(),
    }))
}

/// Runs the worker described by `env` over `state` (ZooKeeper in a
/// cluster, in memory for `LocalCluster`, whose workers are threads):
/// checks the spec hash, runs the executors assigned to its slot, moves
/// tuples to and from peer workers over TCP (mutual TLS and the topology's secret with security on)
/// when the topology has more
/// than one, beats, follows activate / deactivate, and returns when the
/// topology is killed, the slot's executors change or `options.stop` is
/// set.
///
/// # Errors
/// As [`run_worker`].
pub fn run_worker_on<S: StateStorage>(
    topology: &Topology,
    state: &ClusterState<S>,
    env: &WorkerEnv,
    mut options: WorkerOptions,
) -> Result<WorkerExit, WorkerError> {
    std::fs::create_dir_all(&env.dir)
        .map_err(|e| WorkerError::Env(format!("worker directory {}: {e}", env.dir.display())))?;
    let mut record: TopologyRecord = state
        .topology(&env.topology_id)?
        .ok_or_else(|| WorkerError::NoTopology(env.topology_id.clone()))?;
    record.config.cluster = env.cluster.clone();
    let built = spec_hash(topology.spec());
    if built != record.spec_hash {
        return Err(WorkerError::SpecMismatch {
            topology: record.id.clone(),
            built,
            submitted: record.spec_hash.clone(),
        });
    }
    let auth = peer_auth(env, &record)?;
    let layout = TaskLayout::new(&record.spec, record.config.effective_ackers());
    let Some((assignment, _)) = state.assignment(&record.id)? else {
        return Ok(WorkerExit::TopologyGone);
    };
    let mine = assignment.executors_on(&env.slot);
    if mine.is_empty() {
        return Ok(WorkerExit::Reassigned);
    }
    let mut beat = Beat {
        env,
        state,
        executors: mine.clone(),
        started_at_ms: now_ms(),
        errors_seen: Default::default(),
    };
    let beat_period = Duration::from_secs(env.cluster.worker_heartbeat_frequency_secs.max(1));
    let _local_beat = LocalBeat::start(env.dir.clone(), beat_period)?;

    // A topology on one slot needs no transport.
    let networked = assignment.slots().len() > 1;
    let listener = if networked {
        Some(bind_with_retry(&format!(
            "{}:{}",
            env.slot.host, env.slot.port
        ))?)
    } else {
        None
    };
    let (transfer_tx, transfer_rx) = crossbeam_channel::bounded(1024);
    let running = launch(
        &record.name,
        topology,
        &record.config,
        LaunchOptions {
            // Spouts start once every peer worker accepts connections.
            start_inactive: true,
            spec: Some(record.spec.clone()),
            partial: Some(Partial {
                local: local_executors(&layout, &mine),
                transfer: transfer_tx,
            }),
            tap: options.tap.clone(),
            store: options.store.clone(),
            clock: options.clock.clone(),
            events: options.events.clone(),
        },
    )?;
    let peers: PeerMap = Arc::new(RwLock::new(peer_addresses(&layout, &assignment, &env.slot)));
    let stats = Arc::new(TransportStats::default());
    if let Some(listener) = listener {
        let max_frame = env.cluster.nimbus_max_frame_bytes.max(16 << 20);
        start_server(listener, running.inbound(), max_frame, auth.clone())
            .map_err(WorkerError::Thread)?;
        start_transfer(
            transfer_rx,
            running.inbound(),
            peers.clone(),
            stats.clone(),
            max_frame,
            auth,
        )
        .map_err(WorkerError::Thread)?;
    }
    if let Some(f) = options.on_start {
        f(running.probe());
    }
    tracing::info!(topology = %record.id, slot = %env.slot, executors = mine.len(), "worker running");

    let period = options.poll.unwrap_or(beat_period).min(beat_period);
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Acquire))
    };
    let mut last_dropped = 0;
    let mut ready = false;
    let mut last_beat: Option<Instant> = None;
    loop {
        let round = Instant::now();
        if stopped() {
            running.shutdown();
            return Ok(WorkerExit::Stopped);
        }
        if !ready {
            ready = peers_reachable(&peers, Duration::from_secs(10));
        }
        if last_beat.is_none_or(|t| t.elapsed() >= beat_period) {
            beat.beat(&running);
            last_beat = Some(round);
        }
        if running.has_dead_executor() && !options.survive_dead_executors {
            let errors: Vec<String> = running
                .metrics()
                .tasks
                .values()
                .flat_map(|m| m.errors.clone())
                .collect();
            return Err(WorkerError::ExecutorDied(errors.join("; ")));
        }
        match state.topology(&record.id) {
            Ok(None) => {
                tracing::info!(topology = %record.id, "topology killed; worker exiting");
                running.shutdown();
                return Ok(WorkerExit::TopologyGone);
            }
            Ok(Some(t)) => {
                if let Some(control) = &mut options.log_control {
                    control.apply(&t.log_config, now_ms());
                }
                running.set_debug(&t.debug);
                if t.status == TopologyStatus::Active && ready {
                    running.activate();
                } else {
                    running.deactivate();
                }
            }
            Err(e) => tracing::warn!("cannot read topology: {e}"),
        }
        match state.assignment(&record.id) {
            Ok(None) => {
                running.shutdown();
                return Ok(WorkerExit::TopologyGone);
            }
            Ok(Some((a, _))) => {
                if a.executors_on(&env.slot) != mine {
                    tracing::info!(slot = %env.slot, "executors of this slot changed; worker exiting");
                    running.shutdown();
                    return Ok(WorkerExit::Reassigned);
                }
                *peers.write().unwrap_or_else(|p| p.into_inner()) =
                    peer_addresses(&layout, &a, &env.slot);
            }
            Err(e) => tracing::warn!("cannot read assignment: {e}"),
        }
        let dropped = stats.dropped.load(Ordering::Relaxed);
        if dropped != last_dropped {
            tracing::warn!(
                dropped = dropped - last_dropped,
                "tuples dropped for unreachable peers (their trees replay)"
            );
            last_dropped = dropped;
        }
        std::thread::sleep(period.saturating_sub(round.elapsed()));
    }
}

/// Waits (at most `limit`) until every peer worker accepts a connection,
/// so spouts do not start while their tuples would be dropped.
fn peers_reachable(peers: &PeerMap, limit: Duration) -> bool {
    let addrs = distinct_peers(peers);
    let deadline = Instant::now() + limit;
    addrs.iter().all(|a| loop {
        if std::net::TcpStream::connect(a.as_str()).is_ok() {
            break true;
        }
        if Instant::now() >= deadline {
            tracing::warn!(peer = %a, "peer worker not reachable yet");
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    })
}

fn bind_with_retry(address: &str) -> Result<TcpListener, WorkerError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match TcpListener::bind(address) {
            Ok(l) => return Ok(l),
            Err(error) if Instant::now() >= deadline => {
                return Err(WorkerError::Bind {
                    address: address.to_owned(),
                    error,
                })
            }
            Err(e) => {
                tracing::warn!(%address, "port busy ({e}); retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}
