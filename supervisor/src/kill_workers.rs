//! `squall kill_workers` (Storm's `storm kill_workers`): stops every worker
//! the supervisor of this host runs, gracefully first; the supervisor
//! starts them again at its next round, as after any worker exit.

use crate::launcher::{Launcher, ProcessLauncher};
use crate::supervisor::read_slot_record_at;
use squall_topology_api::ClusterConfig;
use std::path::Path;
use std::time::{Duration, Instant};

/// A worker [`kill_workers`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KilledWorker {
    /// Its slot's port.
    pub port: u16,
    /// Its process id.
    pub pid: u32,
    /// Its topology.
    pub topology_id: String,
    /// Whether it had to be killed (SIGKILL) after
    /// `supervisor.worker.shutdown.sleep.secs`.
    pub forced: bool,
}

/// Stops the workers recorded under `config`'s `storm.local.dir` by the
/// supervisor of this host: SIGTERM, then SIGKILL after
/// `supervisor.worker.shutdown.sleep.secs`. A recorded pid is signalled
/// only while its process carries the worker's directory in its
/// environment, so a reused pid is never hit.
///
/// # Errors
/// When the supervisor's slot records cannot be listed (no supervisor has
/// run with this `storm.local.dir`: the error names the folder).
pub fn kill_workers(config: &ClusterConfig) -> std::io::Result<Vec<KilledWorker>> {
    let dir = Path::new(&config.local_dir).join("supervisor");
    let slots = dir.join("slots");
    let entries = std::fs::read_dir(&slots).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "no supervisor records in {} ({e}); run this on a supervisor's host with its storm.local.dir",
                slots.display()
            ),
        )
    })?;
    let mut launcher = ProcessLauncher;
    let mut killed = Vec::new();
    for e in entries.flatten() {
        let Some(port) = e.file_name().to_str().and_then(|n| n.parse::<u16>().ok()) else {
            continue;
        };
        let Some((pid, a)) = read_slot_record_at(&e.path()) else {
            continue;
        };
        let worker_dir = dir
            .join("workers")
            .join(format!("{}-{port}", a.topology_id));
        let Some(mut handle) = launcher.recover(pid, &worker_dir) else {
            continue;
        };
        handle.terminate();
        let deadline =
            Instant::now() + Duration::from_secs(config.supervisor_worker_shutdown_sleep_secs);
        while handle.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let forced = handle.is_alive();
        if forced {
            handle.kill();
        }
        killed.push(KilledWorker {
            port,
            pid,
            topology_id: a.topology_id,
            forced,
        });
    }
    killed.sort_by_key(|k| k.port);
    Ok(killed)
}
