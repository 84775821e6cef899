//! `LocalCluster`: run topologies inside this process.

use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::{Config, Topology};
use squall_worker::{launch, LaunchError, LaunchOptions, RunningTopology};
use std::collections::BTreeMap;
use std::sync::Mutex;
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
    /// Executors could not start.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

/// Runs topologies in-process, all executors of a topology as threads of
/// one worker (Storm's `LocalCluster`). Several topologies can run at once.
#[derive(Default)]
pub struct LocalCluster {
    topologies: Mutex<BTreeMap<String, RunningTopology>>,
}

/// Storm's rule for topology names: `^[^/.:\\]+$`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '.', ':', '\\'])
}

impl LocalCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(
        &self,
        name: &str,
        f: impl FnOnce(&RunningTopology) -> R,
    ) -> Result<R, LocalClusterError> {
        let map = self.topologies.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name)
            .map(f)
            .ok_or_else(|| LocalClusterError::NotFound(name.to_owned()))
    }

    /// Starts `topology` under `name`, active.
    pub fn submit_topology(
        &self,
        name: &str,
        config: &Config,
        topology: Topology,
    ) -> Result<(), LocalClusterError> {
        self.submit_with(name, config, topology, LaunchOptions::default())
    }

    /// Starts `topology` with launch options (testing kit).
    pub(crate) fn submit_with(
        &self,
        name: &str,
        config: &Config,
        topology: Topology,
        options: LaunchOptions,
    ) -> Result<(), LocalClusterError> {
        if !valid_name(name) {
            return Err(LocalClusterError::InvalidName(name.to_owned()));
        }
        let mut map = self.topologies.lock().unwrap_or_else(|p| p.into_inner());
        if map.contains_key(name) {
            return Err(LocalClusterError::AlreadyRunning(name.to_owned()));
        }
        let running = launch(name, &topology, config, options)?;
        map.insert(name.to_owned(), running);
        Ok(())
    }

    /// Stops topology `name` at once: spouts are deactivated and closed,
    /// bolts cleaned up. Returns its final metrics.
    pub fn kill_topology(&self, name: &str) -> Result<TopologyMetrics, LocalClusterError> {
        let running = self
            .topologies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| LocalClusterError::NotFound(name.to_owned()))?;
        Ok(running.shutdown())
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

    /// Resumes `next_tuple` calls.
    pub fn activate(&self, name: &str) -> Result<(), LocalClusterError> {
        self.with(name, |t| t.activate())
    }

    /// Stops `next_tuple` calls; in-flight tuples are still processed.
    pub fn deactivate(&self, name: &str) -> Result<(), LocalClusterError> {
        self.with(name, |t| t.deactivate())
    }

    /// The latest metrics of topology `name` (published every 100 ms).
    pub fn metrics(&self, name: &str) -> Result<TopologyMetrics, LocalClusterError> {
        self.with(name, |t| t.metrics())
    }

    /// Tuples of topology `name` sent and not yet fully processed.
    pub fn in_flight(&self, name: &str) -> Result<i64, LocalClusterError> {
        self.with(name, |t| t.in_flight())
    }

    /// Names of the running topologies.
    pub fn topology_names(&self) -> Vec<String> {
        let map = self.topologies.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    /// Kills every topology.
    pub fn shutdown(self) {
        let map = std::mem::take(&mut *self.topologies.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, t) in map {
            t.shutdown();
        }
    }
}
