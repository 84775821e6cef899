//! The supervisor loop: register, sync assignments, step every slot.

use crate::launcher::{Launcher, WorkerHandle, WorkerLaunch};
use crate::slot::{step, Action, LocalAssignment, Observation, SlotState, SlotTimeouts};
use squall_cluster::rpc::{sha256_hex, NimbusClient};
use squall_cluster::schema::{SupervisorInfo, TopologyRecord};
use squall_cluster::worker_env as env;
use squall_cluster::{now_ms, ClusterState, StateError, StateStorage, ZkStorage};
use squall_topology_api::ClusterConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// ZooKeeper is unreachable.
    #[error(transparent)]
    State(#[from] StateError),
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
}

/// One supervisor: its identity, slots and workers.
pub struct Supervisor<S, L> {
    info: SupervisorInfo,
    state: ClusterState<S>,
    launcher: L,
    config: ClusterConfig,
    dir: PathBuf,
    slots: BTreeMap<u16, Slot>,
}

impl<S: StateStorage, L: Launcher> Supervisor<S, L> {
    /// A supervisor keeping its files under `<storm.local.dir>/supervisor`
    /// (its id persists there across restarts).
    pub fn new(
        state: ClusterState<S>,
        launcher: L,
        config: ClusterConfig,
    ) -> Result<Self, SupervisorError> {
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
            started_at_ms: now_ms(),
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
                    },
                )
            })
            .collect();
        Ok(Self {
            info,
            state,
            launcher,
            config,
            dir,
            slots,
        })
    }

    /// This supervisor's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// One round: (re-)register, read assignments, step every slot.
    pub fn sync(&mut self) -> Result<(), StateError> {
        self.state.register_supervisor(&self.info)?;
        let mut desired: BTreeMap<u16, (LocalAssignment, TopologyRecord)> = BTreeMap::new();
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
        let timeouts = SlotTimeouts {
            worker_ms: self.config.supervisor_worker_timeout_secs * 1000,
            start_ms: self.config.supervisor_worker_start_timeout_secs * 1000,
        };
        let ports: Vec<u16> = self.slots.keys().copied().collect();
        for port in ports {
            let want = desired.get(&port);
            self.step_slot(port, want, &timeouts);
        }
        self.clean_binaries(&desired);
        Ok(())
    }

    fn worker_dir(&self, topology_id: &str, port: u16) -> PathBuf {
        self.dir
            .join("workers")
            .join(format!("{topology_id}-{port}"))
    }

    fn step_slot(
        &mut self,
        port: u16,
        want: Option<&(LocalAssignment, TopologyRecord)>,
        timeouts: &SlotTimeouts,
    ) {
        let current_topology = match &self.slots[&port].state {
            SlotState::Empty => None,
            SlotState::Starting { assignment, .. } | SlotState::Running { assignment } => {
                Some(assignment.topology_id.clone())
            }
        };
        let heartbeat_ms = current_topology.as_deref().and_then(|t| {
            std::fs::read_to_string(self.worker_dir(t, port).join(env::HEARTBEAT_FILE))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
        let slot = self.slots.get_mut(&port).expect("known port");
        let obs = Observation {
            now_ms: now_ms(),
            process_alive: slot.worker.as_mut().is_some_and(|w| w.is_alive()),
            heartbeat_ms,
        };
        let (next, actions) = step(&slot.state, want.map(|(a, _)| a), &obs, timeouts);
        slot.state = next;
        for action in actions {
            match action {
                Action::Kill { reason } => {
                    let slot = self.slots.get_mut(&port).expect("known port");
                    if let Some(mut w) = slot.worker.take() {
                        tracing::warn!(port, pid = w.id(), topology = ?current_topology, "killing worker: {reason}");
                        w.kill();
                    }
                }
                Action::Launch(a) => {
                    let Some((_, record)) = want else { continue };
                    match self.launch(port, &a, record) {
                        Ok(w) => {
                            tracing::info!(port, pid = w.id(), topology = %a.topology_id, "launched worker");
                            self.slots.get_mut(&port).expect("known port").worker = Some(w);
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
        let binary = match &record.binary_hash {
            Some(h) => Some(self.binary(h)?),
            None => None,
        };
        let worker_dir = self.worker_dir(&a.topology_id, port);
        let _ = std::fs::remove_file(worker_dir.join(env::HEARTBEAT_FILE));
        let c = &self.config;
        let launch = WorkerLaunch {
            topology_id: a.topology_id.clone(),
            port,
            binary,
            args: record.args.clone(),
            worker_dir: worker_dir.clone(),
            log_file: Path::new(&c.local_dir)
                .join("logs")
                .join(&a.topology_id)
                .join(format!("worker-{port}.log")),
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
            ],
        };
        self.launcher.launch(&launch).map_err(|e| e.to_string())
    }

    /// The local copy of binary `sha256`, downloaded from Nimbus and
    /// checked against its hash if missing.
    fn binary(&self, sha256: &str) -> Result<PathBuf, String> {
        let path = self.dir.join("binaries").join(sha256);
        if path.is_file() {
            return Ok(path);
        }
        let c = &self.config;
        let mut client = NimbusClient::connect(&c.nimbus_addresses(), c.nimbus_max_frame_bytes)
            .map_err(|e| e.to_string())?;
        let data = client.download(sha256).map_err(|e| e.to_string())?;
        let got = sha256_hex(&data);
        if got != sha256 {
            return Err(format!(
                "downloaded binary hashes to {got}, not {sha256}; not running it"
            ));
        }
        let tmp = path.with_extension("part");
        std::fs::write(&tmp, &data).map_err(|e| e.to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
        tracing::info!(binary = %sha256, bytes = data.len(), "downloaded topology binary");
        Ok(path)
    }

    /// Removes binaries and worker directories of topologies no longer
    /// assigned here.
    fn clean_binaries(&self, desired: &BTreeMap<u16, (LocalAssignment, TopologyRecord)>) {
        let keep: BTreeSet<&str> = desired
            .values()
            .filter_map(|(_, t)| t.binary_hash.as_deref())
            .collect();
        let running: BTreeSet<String> = desired
            .iter()
            .map(|(p, (a, _))| format!("{}-{p}", a.topology_id))
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("binaries")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(name.as_str()) {
                    let _ = std::fs::remove_file(e.path());
                }
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
/// `supervisor.monitor.frequency.secs`, until the process ends.
pub fn run(config: &ClusterConfig) -> Result<(), SupervisorError> {
    let storage = ZkStorage::connect(
        &config.zookeeper_connect(),
        &config.zookeeper_root,
        Duration::from_millis(config.zookeeper_session_timeout_ms),
    )?;
    let mut sup = Supervisor::new(
        ClusterState::new(storage),
        crate::launcher::ProcessLauncher,
        config.clone(),
    )?;
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
