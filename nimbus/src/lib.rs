//! Squall's master daemon: the RPC server ([`serve`]), request handling and
//! validation ([`Nimbus`]), the blob store for topology binaries
//! ([`BlobStore`]), the even scheduler ([`schedule_even`]), the failure
//! monitor ([`Monitor`]) and leader election ([`run`]).
//!
//! Depends on `squall-cluster` and `squall-topology-api`; never on the
//! worker engine.
#![forbid(missing_docs)]

pub mod authz;
mod blobstore;
pub mod decide;
pub mod heartbeats;
pub mod lifecycle;
mod monitor;
mod replication;
mod scheduler;
mod server;
mod service;
mod stats;

pub use blobstore::{is_sha256, BlobStore, MAX_BLOB_BYTES};
pub use monitor::Monitor;
pub use replication::{campaign, Campaign};
pub use scheduler::{interleave_slots, schedule_even, ScheduleError};
pub use server::serve;
pub use service::{valid_name, Nimbus};

use squall_cluster::tls::Tls;
use squall_cluster::{ClusterState, StateStorage, ZkStorage};
use squall_topology_api::ClusterConfig;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why Nimbus could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The RPC port is taken or not bindable.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// ZooKeeper is unreachable.
    #[error(transparent)]
    State(#[from] squall_cluster::StateError),
    /// Security is on and the TLS identity is missing or bad.
    #[error(transparent)]
    Security(#[from] squall_cluster::tls::SecurityError),
    /// The blob store directory is unusable.
    #[error("blob store at {dir}: {error}")]
    BlobStore {
        /// The directory.
        dir: String,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Starts Nimbus on `config`: connects to ZooKeeper, opens the blob store
/// under `<storm.local.dir>/nimbus/blobs`, binds `nimbus.thrift.port` on
/// `storm.local.hostname`, then serves forever. The monitor runs every
/// `nimbus.monitor.freq.secs` while this Nimbus leads; a standby keeps
/// trying to take the ephemeral leader node.
pub fn run(config: &ClusterConfig) -> Result<(), StartError> {
    let tls = Tls::from_config(config)?;
    let address = format!("{}:{}", config.local_hostname, config.nimbus_port);
    let listener = TcpListener::bind(&address).map_err(|error| StartError::Bind {
        address: address.clone(),
        error,
    })?;
    let storage = ZkStorage::connect_with(
        &config.zookeeper_connect(),
        &config.zookeeper_root,
        Duration::from_millis(config.zookeeper_session_timeout_ms),
        squall_cluster::tls::zookeeper_auth(config)?,
    )?;
    let dir = Path::new(&config.local_dir).join("nimbus").join("blobs");
    let blobs = BlobStore::open(
        &dir,
        Duration::from_secs(config.nimbus_file_copy_expiration_secs),
        config.nimbus_upload_max_sessions,
    )
    .map_err(|error| StartError::BlobStore {
        dir: dir.display().to_string(),
        error,
    })?;
    let mut nimbus = Nimbus::new(
        address.clone(),
        ClusterState::new(storage),
        blobs,
        config.clone(),
    );
    if let Some(tls) = &tls {
        nimbus = nimbus.with_tls(tls.clone());
    }
    let nimbus = Arc::new(nimbus);
    start_monitor(nimbus.clone());
    match &tls {
        Some(t) => tracing::info!(%address, principal = t.principal(), "nimbus serving over TLS"),
        None => tracing::info!(%address, "nimbus serving (security off)"),
    }
    serve(listener, nimbus, tls);
    Ok(())
}

/// Runs the leadership campaign and monitor round in a background thread
/// (see [`Nimbus::monitor_round`]): every second while standing by, every
/// `nimbus.monitor.freq.secs` while leading.
pub fn start_monitor<S: StateStorage + Send + Sync + 'static>(nimbus: Arc<Nimbus<S>>) {
    let spawned = std::thread::Builder::new()
        .name("nimbus-monitor".into())
        .spawn(move || {
            let mut leading = false;
            loop {
                nimbus.monitor_round();
                let leader = nimbus.is_leader();
                if leader != leading {
                    tracing::info!(id = %nimbus.id(), "{}", if leader { "became the leader" } else { "standing by" });
                    leading = leader;
                }
                let pause = if leader {
                    nimbus.config.nimbus_monitor_freq_secs
                } else {
                    1
                };
                std::thread::sleep(Duration::from_secs(pause));
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the monitor thread: {e}");
    }
}
