//! The environment a supervisor sets to start a topology binary in worker
//! mode, and the worker's local heartbeat files: the contract between
//! `squall-supervisor` and `squall-worker`.

/// The topology id; its presence means worker mode.
pub const TOPOLOGY: &str = "SQUALL_WORKER_TOPOLOGY";
/// The slot's port.
pub const PORT: &str = "SQUALL_WORKER_PORT";
/// The supervisor's id.
pub const SUPERVISOR: &str = "SQUALL_WORKER_SUPERVISOR";
/// The host name peers reach the worker at.
pub const HOST: &str = "SQUALL_WORKER_HOST";
/// The worker's directory (local heartbeat file).
pub const DIR: &str = "SQUALL_WORKER_DIR";
/// The ZooKeeper connect string.
pub const ZOOKEEPER: &str = "SQUALL_WORKER_ZOOKEEPER";
/// With security on: the worker's own ZooKeeper identity, derived from the
/// supervisor's `storm.zookeeper.auth.payload` for its topology
/// ([`crate::zk_acl::WorkerIdentity::to_env`]); never the daemons' payload.
pub const ZOOKEEPER_AUTH: &str = "SQUALL_WORKER_ZOOKEEPER_AUTH";
/// The ZooKeeper root.
pub const ZOOKEEPER_ROOT: &str = "SQUALL_WORKER_ZOOKEEPER_ROOT";
/// The ZooKeeper session timeout, ms.
pub const ZOOKEEPER_SESSION_MS: &str = "SQUALL_WORKER_ZOOKEEPER_SESSION_MS";
/// `worker.heartbeat.frequency.secs` of the supervisor.
pub const HEARTBEAT_SECS: &str = "SQUALL_WORKER_HEARTBEAT_SECS";
/// `nimbus.thrift.max_buffer_size` of the supervisor (frame cap, bytes).
pub const MAX_FRAME_BYTES: &str = "SQUALL_WORKER_MAX_FRAME_BYTES";
/// `supervisor.worker.timeout.secs` of the supervisor.
pub const WORKER_TIMEOUT_SECS: &str = "SQUALL_WORKER_TIMEOUT_SECS";
/// `storm.local.dir` of the supervisor.
pub const LOCAL_DIR: &str = "SQUALL_WORKER_LOCAL_DIR";
/// The worker's log file: its `tracing` lines go there, rotated by size
/// (`worker.log.max.file.bytes`, `worker.log.max.files`).
pub const LOG_FILE: &str = "SQUALL_WORKER_LOG_FILE";
/// `worker.log.max.file.bytes` of the supervisor.
pub const LOG_MAX_FILE_BYTES: &str = "SQUALL_WORKER_LOG_MAX_FILE_BYTES";
/// `worker.log.max.files` of the supervisor.
pub const LOG_MAX_FILES: &str = "SQUALL_WORKER_LOG_MAX_FILES";
/// With security on: the CA, certificate and key PEM paths of the
/// supervisor's identity, one per line, for the worker's TLS.
pub const TLS: &str = "SQUALL_WORKER_TLS";
/// File name of the local heartbeat inside the worker directory: the time
/// of the latest beat, ms since the Unix epoch, as text.
pub const HEARTBEAT_FILE: &str = "heartbeat";
/// File name of the worker's full heartbeat inside the worker directory:
/// a [`crate::schema::WorkerHeartbeat`] (its executors and metrics),
/// rmp-serde encoded, written every `worker.heartbeat.frequency.secs`;
/// the supervisor forwards it to the leading Nimbus (Storm 2's
/// `sendSupervisorWorkerHeartbeat`).
pub const WORKER_BEAT_FILE: &str = "heartbeat.rmp";

/// Writes `beat` to `<dir>/`[`WORKER_BEAT_FILE`] atomically (a temporary
/// file renamed over it), so a reader never sees half a beat.
///
/// # Errors
/// The I/O error, or an encoding error as [`std::io::ErrorKind::InvalidData`].
pub fn write_worker_beat(
    dir: &std::path::Path,
    beat: &crate::schema::WorkerHeartbeat,
) -> std::io::Result<()> {
    let bytes = rmp_serde::to_vec_named(beat)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let tmp = dir.join(format!("{WORKER_BEAT_FILE}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, dir.join(WORKER_BEAT_FILE))
}

/// The beat in `<dir>/`[`WORKER_BEAT_FILE`]; `None` when there is none or
/// it does not decode (a worker of another version).
pub fn read_worker_beat(dir: &std::path::Path) -> Option<crate::schema::WorkerHeartbeat> {
    let bytes = std::fs::read(dir.join(WORKER_BEAT_FILE)).ok()?;
    rmp_serde::from_slice(&bytes).ok()
}

/// A worker's log file, relative to the supervisor's log directory
/// (`<storm.local.dir>/logs`): `<topology id>/worker-<port>.log`. Rotated
/// files add `.1` (newest) to `.<worker.log.max.files>`; the process's
/// own stdout and stderr go to `<topology id>/worker-<port>.out`.
pub fn log_file_name(topology_id: &str, port: u16) -> String {
    format!("{topology_id}/worker-{port}.log")
}

/// A worker's sampled events file (`squall debug`), relative to the
/// supervisor's log directory: `<topology id>/events-<port>.log`, beside
/// its log and rotated the same way.
pub fn events_file_name(topology_id: &str, port: u16) -> String {
    format!("{topology_id}/{}", events_file(port))
}

/// The events file's own name, `events-<port>.log` (see
/// [`events_file_name`]).
pub fn events_file(port: u16) -> String {
    format!("events-{port}.log")
}
