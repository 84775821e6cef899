//! Simulated workers: the control loop of `run_worker_on` without the
//! executors (read the topology and assignment, exit when unassigned,
//! beat to the local heartbeat files, which the supervisor forwards to
//! Nimbus), started by a supervisor through the [`SimLauncher`].

use crate::store::{Link, Role};
use squall_cluster::schema::{WorkerHeartbeat, WorkerSlot};
use squall_cluster::worker_env as env;
use squall_cluster::{ClusterState, MemoryCluster, SharedClock};
use squall_supervisor::{Launcher, WorkerHandle, WorkerLaunch};
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::ExecutorSpec;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// How a simulated worker process stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Running its loop.
    Running,
    /// Asked to stop (SIGTERM): exits at its next step.
    Stopping,
    /// Exited or killed.
    Dead,
}

/// One simulated worker process.
#[derive(Debug)]
pub struct SimWorker {
    /// Process id (unique in the world).
    pub pid: u32,
    /// Its topology.
    pub topology_id: String,
    /// Its slot.
    pub slot: WorkerSlot,
    /// The executors it was started with (read at its first step).
    pub executors: Option<Vec<ExecutorSpec>>,
    /// Where its local heartbeat goes.
    pub dir: PathBuf,
    /// Its state.
    pub life: Life,
    /// Its store link.
    pub link: Link,
    /// Its host's clock.
    pub clock: SharedClock,
    /// Stopped with SIGSTOP along with its host.
    pub paused: bool,
}

/// Every worker of the world, by pid.
pub type Workers = Arc<Mutex<Vec<SimWorker>>>;

/// Locks the worker table.
pub fn lock(w: &Workers) -> MutexGuard<'_, Vec<SimWorker>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimWorker {
    /// One round of the worker loop; returns a log line when it exits.
    pub fn step(&mut self) -> Option<String> {
        match self.life {
            Life::Dead => return None,
            Life::Stopping => {
                self.life = Life::Dead;
                return Some(format!("worker {} stopped gracefully", self.pid));
            }
            Life::Running if self.paused => return None,
            Life::Running => {}
        }
        let state = ClusterState::new(self.link.clone());
        if let Ok(None) = state.topology(&self.topology_id) {
            self.life = Life::Dead;
            return Some(format!("worker {}: topology gone, exiting", self.pid));
        }
        match state.assignment(&self.topology_id) {
            Ok(None) => {
                self.life = Life::Dead;
                return Some(format!("worker {}: unassigned, exiting", self.pid));
            }
            Ok(Some((a, _))) => {
                let mine = a.executors_on(&self.slot);
                match &self.executors {
                    None if mine.is_empty() => {
                        self.life = Life::Dead;
                        return Some(format!("worker {}: nothing to run, exiting", self.pid));
                    }
                    None => self.executors = Some(mine),
                    Some(e) if *e != mine => {
                        self.life = Life::Dead;
                        return Some(format!("worker {}: reassigned, exiting", self.pid));
                    }
                    Some(_) => {}
                }
            }
            // Keeps running through an outage, as real workers do.
            Err(_) => {}
        }
        let now = self.clock.now_ms();
        // The local beat does not depend on the store.
        let _ = std::fs::create_dir_all(&self.dir);
        let _ = std::fs::write(self.dir.join(env::HEARTBEAT_FILE), now.to_string());
        if let Some(executors) = &self.executors {
            let beat = WorkerHeartbeat {
                topology_id: self.topology_id.clone(),
                slot: self.slot.clone(),
                time_ms: now,
                executors: executors.clone(),
                metrics: TopologyMetrics::default(),
                started_at_ms: now,
            };
            let _ = env::write_worker_beat(&self.dir, &beat);
        }
        None
    }
}

/// Starts simulated workers for one supervisor.
pub struct SimLauncher {
    /// Whether a restarted supervisor gets its running workers back.
    pub adopt: bool,
    /// The world's workers.
    pub workers: Workers,
    /// The store the workers connect to.
    pub cluster: MemoryCluster,
    /// The host's clock.
    pub clock: SharedClock,
    /// Where single-writer breaches go.
    pub violations: Arc<Mutex<Vec<String>>>,
    /// The next pid.
    pub next_pid: Arc<Mutex<u32>>,
}

struct Handle {
    pid: u32,
    workers: Workers,
}

impl Handle {
    fn with<T>(&self, f: impl FnOnce(&mut SimWorker) -> T) -> Option<T> {
        lock(&self.workers)
            .iter_mut()
            .find(|w| w.pid == self.pid)
            .map(f)
    }
}

impl WorkerHandle for Handle {
    fn is_alive(&mut self) -> bool {
        self.with(|w| w.life != Life::Dead).unwrap_or(false)
    }

    fn terminate(&mut self) {
        self.with(|w| {
            if w.life == Life::Running {
                w.life = Life::Stopping;
            }
        });
    }

    fn kill(&mut self) {
        self.with(|w| w.life = Life::Dead);
    }

    fn id(&self) -> u32 {
        self.pid
    }
}

impl Launcher for SimLauncher {
    fn recover(&mut self, pid: u32, worker_dir: &std::path::Path) -> Option<Box<dyn WorkerHandle>> {
        let runs = self.adopt
            && lock(&self.workers)
                .iter()
                .any(|w| w.pid == pid && w.dir == worker_dir && w.life != Life::Dead);
        runs.then(|| {
            Box::new(Handle {
                pid,
                workers: self.workers.clone(),
            }) as Box<dyn WorkerHandle>
        })
    }

    fn launch(&mut self, l: &WorkerLaunch) -> std::io::Result<Box<dyn WorkerHandle>> {
        let pid = {
            let mut next = self.next_pid.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let var = |k: &str| l.env_var(k).unwrap_or_default().to_owned();
        let slot = WorkerSlot {
            supervisor: var(env::SUPERVISOR),
            host: var(env::HOST),
            port: l.port,
        };
        let link = Link::new(
            Role::Other(format!("worker {pid}")),
            &self.cluster,
            self.violations.clone(),
        );
        lock(&self.workers).push(SimWorker {
            pid,
            topology_id: l.topology_id.clone(),
            slot,
            executors: None,
            dir: l.worker_dir.clone(),
            life: Life::Running,
            link,
            clock: self.clock.clone(),
            paused: false,
        });
        Ok(Box::new(Handle {
            pid,
            workers: self.workers.clone(),
        }))
    }
}
