//! Submitting a topology from its own binary (Storm's `StormSubmitter`).
//!
//! A topology binary's `main` builds its topology and calls
//! [`submit_topology`]. What that does depends on who started the binary:
//! - `squall jar` (which uploaded the binary first): submits the topology
//!   to Nimbus and returns its id;
//! - a supervisor (worker mode): runs the executors of one slot and ends
//!   the process when the worker ends;
//! - `squall local --ttl N`: runs it in a [`LocalCluster`](crate::LocalCluster)
//!   for N seconds, then ends the process;
//! - anything else: returns [`SubmitError::NotUnderSquall`].

use squall_cluster::rpc::{ClientError, NimbusClient, Request, Response};
use squall_topology_api::{Config, Topology};
use squall_worker::{run_worker, WorkerEnv, WorkerError};
use std::time::Duration;

/// Environment variables `squall jar` and `squall local` set for the binary.
pub mod env {
    /// Nimbus addresses, `host:port` separated by commas.
    pub const JAR_NIMBUS: &str = "SQUALL_JAR_NIMBUS";
    /// sha256 of the uploaded binary.
    pub const JAR_BINARY: &str = "SQUALL_JAR_BINARY_SHA256";
    /// Topology config overrides, one `key=value` per line (`-c`).
    pub const JAR_CONF: &str = "SQUALL_JAR_CONF";
    /// Largest RPC frame, bytes.
    pub const JAR_MAX_FRAME: &str = "SQUALL_JAR_MAX_FRAME";
    /// With security on: the CA, certificate and key PEM paths of the
    /// user running `squall jar`, one per line.
    pub const JAR_TLS: &str = "SQUALL_JAR_TLS";
    /// Seconds to run in a LocalCluster (`squall local --ttl`).
    pub const LOCAL_TTL: &str = "SQUALL_LOCAL_TTL";
}

/// Exit code of a worker that refused to start because its spec hash did
/// not match the submitted one.
pub const EXIT_SPEC_MISMATCH: i32 = 3;

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The binary was started directly, not by `squall jar`, `squall local`
    /// or a supervisor.
    #[error("not started by `squall jar` or `squall local`: run `squall jar <this binary> [args]` to submit to a cluster")]
    NotUnderSquall,
    /// An environment variable set by `squall jar` is malformed.
    #[error("{0}")]
    Env(String),
    /// A `-c` override is invalid.
    #[error("config override: {0}")]
    Config(#[from] squall_topology_api::ConfigError),
    /// Nimbus refused the topology or could not be reached.
    #[error(transparent)]
    Nimbus(#[from] ClientError),
    /// The local run failed.
    #[error(transparent)]
    Local(#[from] crate::LocalClusterError),
}

/// Whether this process was started by `squall jar`, `squall local` or a
/// supervisor, so `main` should call [`submit_topology`] rather than run the
/// topology itself.
pub fn is_cluster_run() -> bool {
    [
        env::JAR_NIMBUS,
        env::LOCAL_TTL,
        squall_cluster::worker_env::TOPOLOGY,
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// Installs the process's logger (`tracing`, lines on stderr filtered by
/// `RUST_LOG`): a topology binary calls it first thing in `main`, instead
/// of installing its own. Started by a supervisor, the binary gets the
/// worker's logger (`RUST_LOG`, default `info`), whose levels `squall
/// set_log_level` changes while it runs; otherwise a plain one
/// (`RUST_LOG`, default `error`). Calling it twice does nothing.
pub fn init_logging() {
    if std::env::var_os(squall_cluster::worker_env::TOPOLOGY).is_some() {
        squall_worker::logging::init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Submits `topology` as `name` with `config` (see the module docs for
/// what that means for each caller). In worker mode and under `squall
/// local` it does not return: the process exits when the worker or the
/// local run ends (exit code 0, 1 on error, [`EXIT_SPEC_MISMATCH`] when
/// the binary builds another topology than the submitted one).
///
/// Returns the topology id assigned by Nimbus.
///
/// # Errors
/// [`SubmitError`] naming what failed; Nimbus's refusals (invalid topology,
/// duplicate name, too many workers) come as [`SubmitError::Nimbus`].
pub fn submit_topology(
    name: &str,
    config: &Config,
    topology: &Topology,
) -> Result<String, SubmitError> {
    if let Some(worker) = WorkerEnv::from_env() {
        run_as_worker(topology, worker);
    }
    if let Ok(ttl) = std::env::var(env::LOCAL_TTL) {
        let ttl: u64 = ttl.parse().map_err(|_| {
            SubmitError::Env(format!(
                "{} = {ttl:?} is not a number of seconds",
                env::LOCAL_TTL
            ))
        })?;
        let config = with_overrides(config)?;
        let cluster = crate::LocalCluster::new();
        cluster.submit_topology(name, &config, topology.clone())?;
        std::thread::sleep(Duration::from_secs(ttl));
        cluster.shutdown();
        std::process::exit(0);
    }
    let Ok(nimbus) = std::env::var(env::JAR_NIMBUS) else {
        return Err(SubmitError::NotUnderSquall);
    };
    let binary = std::env::var(env::JAR_BINARY)
        .map_err(|_| SubmitError::Env(format!("{} is not set", env::JAR_BINARY)))?;
    let max_frame = std::env::var(env::JAR_MAX_FRAME)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(config.cluster.nimbus_max_frame_bytes);
    let config = with_overrides(config)?;
    let addresses: Vec<String> = nimbus.split(',').map(str::to_owned).collect();
    let tls = match std::env::var(env::JAR_TLS) {
        Err(_) => None,
        Ok(paths) => {
            let mut c = config.cluster.clone();
            squall_cluster::tls::apply_paths_env(&mut c, &paths)
                .map_err(|e| SubmitError::Env(format!("{}: {e}", env::JAR_TLS)))?;
            squall_cluster::tls::Tls::from_config(&c)
                .map_err(|e| SubmitError::Env(e.to_string()))?
        }
    };
    let mut client = NimbusClient::connect_leader_with(&addresses, max_frame, tls.as_deref())?;
    let args = std::env::args().skip(1).collect();
    match client.call(Request::Submit {
        name: name.to_owned(),
        spec: topology.spec().clone(),
        config,
        binary_sha256: Some(binary),
        args,
    })? {
        Response::Submitted { id } => Ok(id),
        other => Err(ClientError::Unexpected(format!("{other:?}")).into()),
    }
}

fn with_overrides(config: &Config) -> Result<Config, SubmitError> {
    let mut config = config.clone();
    if let Ok(lines) = std::env::var(env::JAR_CONF) {
        for kv in lines.lines().filter(|l| !l.trim().is_empty()) {
            config.apply_override(kv)?;
        }
    }
    Ok(config)
}

fn run_as_worker(topology: &Topology, worker: Result<WorkerEnv, WorkerError>) -> ! {
    squall_worker::logging::init();
    let log_control = squall_worker::logging::take_control();
    let result = worker.and_then(|w| run_worker(topology, &w, log_control));
    match result {
        Ok(_) => std::process::exit(0),
        Err(e @ WorkerError::SpecMismatch { .. }) => {
            eprintln!("squall worker: {e}");
            tracing::error!("{e}");
            std::process::exit(EXIT_SPEC_MISMATCH)
        }
        Err(e) => {
            eprintln!("squall worker: {e}");
            tracing::error!("{e}");
            std::process::exit(1)
        }
    }
}
