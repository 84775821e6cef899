//! The environment a supervisor sets to start a topology binary in worker
//! mode, and the worker's local heartbeat file: the contract between
//! `squall-supervisor` (writer) and `squall-worker` (reader).

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
/// With security on: the CA, certificate and key PEM paths of the
/// supervisor's identity, one per line, for the worker's TLS.
pub const TLS: &str = "SQUALL_WORKER_TLS";
/// File name of the local heartbeat inside the worker directory: the time
/// of the latest beat, ms since the Unix epoch, as text.
pub const HEARTBEAT_FILE: &str = "heartbeat";
