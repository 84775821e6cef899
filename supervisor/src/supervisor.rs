//! The supervisor loop: register, sync assignments, step every slot.

use crate::binaries::Binaries;
use crate::launcher::{Launcher, WorkerHandle, WorkerLaunch};
use crate::slot::{step, Action, LocalAssignment, Observation, SlotState, SlotTimeouts};
use squall_cluster::rpc::{BlobFetch, HeartbeatReport, SeedFetch};
use squall_cluster::schema::{SupervisorInfo, TopologyRecord, WorkerHeartbeat};
use squall_cluster::worker_env as env;
use squall_cluster::zk_acl::WorkerIdentity;
use squall_cluster::{
    system_clock, ClusterState, SharedClock, StateError, StateStorage, ZkStorage,
};
use squall_topology_api::ClusterConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// ZooKeeper is unreachable.
    #[error(transparent)]
    State(#[from] StateError),
    /// Security is on and the TLS identity is missing or bad.
    #[error(transparent)]
    Security(#[from] squall_cluster::tls::SecurityError),
    /// A thread could not start.
    #[error("cannot start the heartbeat report thread: {0}")]
    Thread(std::io::Error),
    /// The local directory is unusable.
    #[error("local directory {dir}: {error}")]
    LocalDir {
        /// The directory.
        dir: String,
        /// The OS error.
        error: std::io::Error,
    },
}

struct Slot {
    state: SlotState,
    worker: Option<Box<dyn WorkerHandle>>,
    /// When the worker's full heartbeat was last read (this supervisor's
    /// clock, ms) and the time of the last one forwarded.
    beat_read_ms: u64,
    beat_sent_ms: u64,
}

/// One supervisor: its identity, slots and workers.
pub struct Supervisor<S, L> {
    info: SupervisorInfo,
    state: ClusterState<S>,
    launcher: L,
    config: ClusterConfig,
    dir: PathBuf,
    slots: BTreeMap<u16, Slot>,
    binaries: Binaries,
    /// The assignments last read, kept while the cluster state is out of
    /// reach so workers are still watched and restarted.
    desired: BTreeMap<u16, (LocalAssignment, TopologyRecord)>,
    clock: SharedClock,
    /// Where the workers' heartbeats go (the leading Nimbus).
    report: Arc<dyn HeartbeatReport>,
}

impl<S: StateStorage, L: Launcher> Supervisor<S, L> {
    /// A supervisor keeping its files under `<storm.local.dir>/supervisor`
    /// (its id persists there across restarts), sending its workers'
    /// heartbeats to `report` every round.
    ///
    /// # Errors
    /// A bad TLS identity or an unusable local directory.
    pub fn new(
        state: ClusterState<S>,
        launcher: L,
        config: ClusterConfig,
        report: Arc<dyn HeartbeatReport>,
    ) -> Result<Self, SupervisorError> {
        let tls = squall_cluster::tls::Tls::from_config(&config)?;
        let dir = Path::new(&config.local_dir).join("supervisor");
        let local = |error| SupervisorError::LocalDir {
            dir: dir.display().to_string(),
            error,
        };
        std::fs::create_dir_all(dir.join("binaries")).map_err(local)?;
        let id_file = dir.join("id");
        let id = match std::fs::read_to_string(&id_file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => {
                let id = format!(
                    "{}-{}",
                    config.local_hostname,
                    squall_cluster::rpc::hex(&rand::random::<[u8; 6]>())
                );
                std::fs::write(&id_file, &id).map_err(local)?;
                id
            }
        };
        let info = SupervisorInfo {
            id,
            host: config.local_hostname.clone(),
            ports: config.supervisor_slots_ports.clone(),
            started_at_ms: squall_cluster::now_ms(),
            logviewer_port: None,
        };
        let slots = info
            .ports
            .iter()
            .map(|p| {
                (
                    *p,
                    Slot {
                        state: SlotState::Empty,
                        worker: None,
                        beat_read_ms: 0,
                        beat_sent_ms: 0,
                    },
                )
            })
            .collect();
        let binaries = Binaries::new(
            dir.join("binaries"),
            Arc::new(SeedFetch {
                addresses: config.nimbus_addresses(),
                max_frame_bytes: config.nimbus_max_frame_bytes,
                tls,
            }),
        );
        let mut sup = Self {
            info,
            state,
            launcher,
            config,
            dir,
            slots,
            binaries,
            desired: BTreeMap::new(),
            clock: system_clock(),
            report,
        };
        sup.adopt_workers();
        Ok(sup)
    }

    fn slot_record(&self, port: u16) -> PathBuf {
        self.dir.join("slots").join(port.to_string())
    }

    /// Records which worker runs on `port` (`<pid>`, the topology, then
    /// one `component first end` line per executor), so a restarted
    /// supervisor adopts it instead of starting a second one on the slot.
    fn write_slot_record(&self, port: u16, pid: u32, a: &LocalAssignment) {
        let mut text = format!("{pid}\n{}\n", a.topology_id);
        for e in &a.executors {
            text.push_str(&format!(
                "{} {} {}\n",
                e.component.0, e.tasks.start, e.tasks.end
            ));
        }
        let path = self.slot_record(port);
        let tmp = path.with_extension("tmp");
        let written = std::fs::create_dir_all(self.dir.join("slots"))
            .and_then(|()| std::fs::write(&tmp, text))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(
                port,
                "cannot record the slot's worker in {}: {e}",
                path.display()
            );
        }
    }

    fn read_slot_record(&self, port: u16) -> Option<(u32, LocalAssignment)> {
        read_slot_record_at(&self.slot_record(port))
    }

    /// Takes over the workers an earlier run of this supervisor left
    /// running: each slot whose recorded worker still runs starts as
    /// running that worker (judged by its heartbeat from the next round).
    fn adopt_workers(&mut self) {
        let ports: Vec<u16> = self.slots.keys().copied().collect();
        for port in ports {
            let Some((pid, assignment)) = self.read_slot_record(port) else {
                continue;
            };
            let dir = self.worker_dir(&assignment.topology_id, port);
            match self.launcher.recover(pid, &dir) {
                Some(handle) => {
                    tracing::info!(port, pid, topology = %assignment.topology_id, "adopted a running worker");
                    let slot = self.slots.get_mut(&port).expect("known port");
                    slot.worker = Some(handle);
                    slot.state = SlotState::Running { assignment };
                }
                None => {
                    let _ = std::fs::remove_file(self.slot_record(port));
                }
            }
        }
    }

    /// This supervisor reading the time from `clock` (a simulation's; the
    /// workers' local heartbeats must use the same clock).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.info.started_at_ms = clock.now_ms();
        self.clock = clock;
        self
    }

    /// This supervisor downloading binaries through `fetch` on its own
    /// thread (a simulation's, which must stay deterministic).
    pub fn with_inline_downloads(mut self, fetch: Arc<dyn BlobFetch>) -> Self {
        self.binaries.inline(fetch);
        self
    }

    /// This supervisor's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Publishes `port` as this host's log viewer with the supervisor's
    /// record, from the next round.
    pub fn set_logviewer_port(&mut self, port: Option<u16>) {
        self.info.logviewer_port = port;
    }

    /// One round: (re-)register, read assignments, step every slot. Slots
    /// are stepped (workers watched, reaped and restarted) even when the
    /// cluster state cannot be read, on the assignments last read.
    ///
    /// # Errors
    /// The first cluster-state error of the round (registering or reading
    /// assignments); the round still stepped the slots.
    pub fn sync(&mut self) -> Result<(), StateError> {
        let registered = self.state.register_supervisor(&self.info);
        let read = self.read_assignments();
        let outcome = match read {
            Ok(desired) => {
                self.desired = desired;
                registered
            }
            Err(e) => Err(e),
        };
        let timeouts = SlotTimeouts {
            worker_ms: self.config.supervisor_worker_timeout_secs * 1000,
            start_ms: self.config.supervisor_worker_start_timeout_secs * 1000,
            shutdown_ms: self.config.supervisor_worker_shutdown_sleep_secs * 1000,
        };
        let ports: Vec<u16> = self.slots.keys().copied().collect();
        let mut beats = Vec::new();
        for port in ports {
            self.step_slot(port, &timeouts);
            beats.extend(self.read_beat(port));
        }
        if !beats.is_empty() {
            if let Err(e) = self.report.report(&self.info.id, beats) {
                tracing::warn!("cannot report workers' heartbeats: {e}");
            }
        }
        self.clean_up();
        outcome
    }

    /// Collects the full heartbeat of the worker running on `port`, read
    /// at most twice per `worker.heartbeat.frequency.secs` (how often the
    /// worker writes it; twice so a round's jitter never skips a beat),
    /// when it is newer than the last one forwarded.
    fn read_beat(&mut self, port: u16) -> Option<WorkerHeartbeat> {
        let now = self.clock.now_ms();
        let period = self.config.worker_heartbeat_frequency_secs * 1000 / 2;
        let slot = &self.slots[&port];
        let SlotState::Running { assignment } = &slot.state else {
            return None;
        };
        if now.saturating_sub(slot.beat_read_ms) < period {
            return None;
        }
        let beat =
            env::read_worker_beat(&self.worker_dir(&assignment.topology_id, port)).filter(|b| {
                b.topology_id == assignment.topology_id
                    && b.slot.port == port
                    && b.slot.supervisor == self.info.id
                    && b.time_ms != slot.beat_sent_ms
            });
        let slot = self.slots.get_mut(&port).expect("known port");
        slot.beat_read_ms = now;
        if let Some(b) = &beat {
            slot.beat_sent_ms = b.time_ms;
        }
        beat
    }

    /// What each of this supervisor's slots should run.
    fn read_assignments(
        &self,
    ) -> Result<BTreeMap<u16, (LocalAssignment, TopologyRecord)>, StateError> {
        let mut desired = BTreeMap::new();
        for t in self.state.topologies()? {
            let Some((a, _)) = self.state.assignment(&t.id)? else {
                continue;
            };
            for slot in a.slots() {
                if slot.supervisor == self.info.id && self.slots.contains_key(&slot.port) {
                    let la = LocalAssignment {
                        topology_id: t.id.clone(),
                        executors: a.executors_on(&slot),
                    };
                    desired.insert(slot.port, (la, t.clone()));
                }
            }
        }
        Ok(desired)
    }

    /// Stops every worker (SIGTERM, then SIGKILL after
    /// `supervisor.worker.shutdown.sleep.secs`) and reaps them.
    pub fn shutdown(&mut self) {
        let grace = Duration::from_secs(self.config.supervisor_worker_shutdown_sleep_secs);
        for slot in self.slots.values_mut() {
            if let Some(w) = slot.worker.as_mut() {
                w.terminate();
            }
        }
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline
            && self
                .slots
                .values_mut()
                .any(|s| s.worker.as_mut().is_some_and(|w| w.is_alive()))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for slot in self.slots.values_mut() {
            if let Some(mut w) = slot.worker.take() {
                w.kill();
            }
            slot.state = SlotState::Empty;
        }
    }

    fn worker_dir(&self, topology_id: &str, port: u16) -> PathBuf {
        self.dir
            .join("workers")
            .join(format!("{topology_id}-{port}"))
    }

    fn step_slot(&mut self, port: u16, timeouts: &SlotTimeouts) {
        let now = self.clock.now_ms();
        let want = self.desired.get(&port).cloned();
        let current_topology = match &self.slots[&port].state {
            SlotState::Starting { assignment, .. } | SlotState::Running { assignment } => {
                Some(assignment.topology_id.clone())
            }
            _ => None,
        };
        let heartbeat_ms = current_topology.as_deref().and_then(|t| {
            std::fs::read_to_string(self.worker_dir(t, port).join(env::HEARTBEAT_FILE))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
        let binary_ready = match want.as_ref().and_then(|(_, t)| t.binary_hash.as_deref()) {
            Some(hash) => self.binaries.ensure(hash, now),
            None => true,
        };
        let slot = self.slots.get_mut(&port).expect("known port");
        let obs = Observation {
            now_ms: now,
            // Reaps the process if it exited.
            process_alive: slot.worker.as_mut().is_some_and(|w| w.is_alive()),
            heartbeat_ms,
            binary_ready,
        };
        let (next, actions) = step(&slot.state, want.as_ref().map(|(a, _)| a), &obs, timeouts);
        if let SlotState::WaitingForBinary { assignment } = &next {
            if slot.state != next {
                tracing::info!(port, topology = %assignment.topology_id, "waiting for the topology binary");
            }
        }
        slot.state = next;
        for action in actions {
            let slot = self.slots.get_mut(&port).expect("known port");
            match action {
                Action::Terminate(reason) => {
                    if let Some(w) = slot.worker.as_mut() {
                        tracing::warn!(port, pid = w.id(), topology = ?current_topology, "stopping worker: {reason}");
                        w.terminate();
                    }
                }
                Action::ForceKill(reason) => {
                    let _ = std::fs::remove_file(self.slot_record(port));
                    let slot = self.slots.get_mut(&port).expect("known port");
                    if let Some(mut w) = slot.worker.take() {
                        if w.is_alive() {
                            tracing::warn!(port, pid = w.id(), "killing worker: {reason}");
                        } else {
                            tracing::warn!(port, pid = w.id(), topology = ?current_topology, "worker gone: {reason}");
                        }
                        w.kill();
                    }
                }
                Action::Launch(a) => {
                    let Some((_, record)) = want.as_ref() else {
                        continue;
                    };
                    match self.launch(port, &a, record) {
                        Ok(w) => {
                            tracing::info!(port, pid = w.id(), topology = %a.topology_id, "launched worker");
                            self.write_slot_record(port, w.id(), &a);
                            let slot = self.slots.get_mut(&port).expect("known port");
                            if let Some(mut old) = slot.worker.replace(w) {
                                old.kill();
                            }
                        }
                        Err(e) => {
                            tracing::error!(port, topology = %a.topology_id, "cannot launch worker: {e}");
                            // Retry next round.
                            self.slots.get_mut(&port).expect("known port").state = SlotState::Empty;
                        }
                    }
                }
            }
        }
    }

    fn launch(
        &mut self,
        port: u16,
        a: &LocalAssignment,
        record: &TopologyRecord,
    ) -> Result<Box<dyn WorkerHandle>, String> {
        let binary = record.binary_hash.as_deref().map(|h| self.binaries.path(h));
        let worker_dir = self.worker_dir(&a.topology_id, port);
        let _ = std::fs::remove_file(worker_dir.join(env::HEARTBEAT_FILE));
        let _ = std::fs::remove_file(worker_dir.join(env::WORKER_BEAT_FILE));
        let c = &self.config;
        let log_file = Path::new(&c.local_dir)
            .join("logs")
            .join(env::log_file_name(&a.topology_id, port));
        let launch = WorkerLaunch {
            topology_id: a.topology_id.clone(),
            port,
            binary,
            args: record.args.clone(),
            worker_dir: worker_dir.clone(),
            output_file: log_file.with_extension("out"),
            env: vec![
                (
                    "RUST_LOG".into(),
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                ),
                (env::TOPOLOGY.into(), a.topology_id.clone()),
                (env::PORT.into(), port.to_string()),
                (env::SUPERVISOR.into(), self.info.id.clone()),
                (env::HOST.into(), self.info.host.clone()),
                (env::DIR.into(), worker_dir.display().to_string()),
                (env::ZOOKEEPER.into(), c.zookeeper_connect()),
                (env::ZOOKEEPER_ROOT.into(), c.zookeeper_root.clone()),
                (
                    env::ZOOKEEPER_SESSION_MS.into(),
                    c.zookeeper_session_timeout_ms.to_string(),
                ),
                // The worker judges and beats by its supervisor's numbers.
                (
                    env::HEARTBEAT_SECS.into(),
                    c.worker_heartbeat_frequency_secs.to_string(),
                ),
                (
                    env::MAX_FRAME_BYTES.into(),
                    c.nimbus_max_frame_bytes.to_string(),
                ),
                (
                    env::WORKER_TIMEOUT_SECS.into(),
                    c.supervisor_worker_timeout_secs.to_string(),
                ),
                (env::LOCAL_DIR.into(), c.local_dir.clone()),
                (env::LOG_FILE.into(), log_file.display().to_string()),
                (
                    env::LOG_MAX_FILE_BYTES.into(),
                    c.worker_log_max_file_bytes.to_string(),
                ),
                (
                    env::LOG_MAX_FILES.into(),
                    c.worker_log_max_files.to_string(),
                ),
            ],
        };
        let mut launch = launch;
        if let Some(paths) = squall_cluster::tls::paths_env(c) {
            launch.env.push((env::TLS.into(), paths));
        }
        if let Some(auth) = &c.zookeeper_auth_payload {
            let worker = WorkerIdentity::derive(auth.expose(), &a.topology_id);
            launch
                .env
                .push((env::ZOOKEEPER_AUTH.into(), worker.to_env()));
        }
        self.launcher.launch(&launch).map_err(|e| e.to_string())
    }

    /// Removes binaries and worker directories of topologies no longer
    /// assigned here.
    fn clean_up(&mut self) {
        let keep: BTreeSet<&str> = self
            .desired
            .values()
            .filter_map(|(_, t)| t.binary_hash.as_deref())
            .collect();
        self.binaries.retain(&keep);
        let mut running: BTreeSet<String> = self
            .desired
            .iter()
            .map(|(p, (a, _))| format!("{}-{p}", a.topology_id))
            .collect();
        for (port, slot) in &self.slots {
            if let SlotState::Starting { assignment, .. } | SlotState::Running { assignment } =
                &slot.state
            {
                running.insert(format!("{}-{port}", assignment.topology_id));
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.dir.join("workers")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !running.contains(&name) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Runs a supervisor on `config` with worker processes, syncing every
/// `supervisor.monitor.frequency.secs`, until the process ends; it
/// publishes `logviewer_port` as its host's log viewer.
///
/// # Errors
/// A [`SupervisorError`] when its identity, ZooKeeper or local directory
/// cannot be had at start.
pub fn run(config: &ClusterConfig, logviewer_port: Option<u16>) -> Result<(), SupervisorError> {
    // Fail closed before touching ZooKeeper.
    let tls = squall_cluster::tls::Tls::from_config(config)?;
    let report = crate::report::NimbusReport::start(
        config.nimbus_addresses(),
        config.nimbus_max_frame_bytes,
        tls,
    )
    .map_err(SupervisorError::Thread)?;
    let storage = ZkStorage::connect_with(
        &config.zookeeper_connect(),
        &config.zookeeper_root,
        Duration::from_millis(config.zookeeper_session_timeout_ms),
        squall_cluster::tls::zookeeper_auth(config)?,
    )?;
    let mut sup = Supervisor::new(
        ClusterState::new(storage),
        crate::launcher::ProcessLauncher,
        config.clone(),
        Arc::new(report),
    )?;
    sup.set_logviewer_port(logviewer_port);
    tracing::info!(id = %sup.id(), ports = ?config.supervisor_slots_ports, "supervisor started");
    loop {
        if let Err(e) = sup.sync() {
            tracing::warn!("supervisor sync failed: {e}");
        }
        std::thread::sleep(Duration::from_secs(
            config.supervisor_monitor_frequency_secs,
        ));
    }
}

/// The worker a slot record names: its pid and assignment (see
/// [`Supervisor::write_slot_record`]).
pub(crate) fn read_slot_record_at(path: &Path) -> Option<(u32, LocalAssignment)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.parse().ok()?;
    let topology_id = lines.next()?.to_owned();
    let executors = lines
        .map(|l| {
            let mut f = l.split(' ');
            let component = f.next()?.into();
            let start = f.next()?.parse().ok()?;
            let end = f.next()?.parse().ok()?;
            Some(squall_topology_api::ExecutorSpec {
                component,
                tasks: start..end,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((
        pid,
        LocalAssignment {
            topology_id,
            executors,
        },
    ))
}
