//! Squall's web UI (`squall ui`): Storm's REST API under `/api/v1`
//! ([`views`]), the pages (cluster, topology with a live DAG drawing,
//! component) and a Prometheus endpoint at `/metrics` ([`prometheus`]).
//! It asks the leading Nimbus for everything on each request and keeps no
//! state of its own; Nimbus keeps the windowed statistics.
//!
//! Depends on `squall-cluster` and `squall-topology-api`; never on the
//! worker engine.
#![forbid(missing_docs)]

pub mod lag;
pub mod nimbus;
pub mod prometheus;
mod routes;
pub mod views;

pub use nimbus::{ApiError, NimbusLink};
pub use routes::router;

use squall_topology_api::ClusterConfig;
use std::net::TcpListener;

/// Why the UI could not start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The port is taken or not bindable.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The async runtime or the server failed.
    #[error("ui server: {0}")]
    Serve(std::io::Error),
}

/// Serves the UI on `ui.host`:`ui.port` (default 127.0.0.1:8080) until the
/// process ends, asking the Nimbus seeds of `config`.
///
/// # Errors
/// [`UiError::Bind`] when the address cannot be bound.
pub fn run(config: &ClusterConfig) -> Result<(), UiError> {
    let address = format!("{}:{}", config.ui_host, config.ui_port);
    let listener = TcpListener::bind(&address).map_err(|error| UiError::Bind {
        address: address.clone(),
        error,
    })?;
    tracing::info!(%address, "ui serving");
    serve(listener, link(config))
}

/// The Nimbus seeds of `config` as a [`NimbusLink`].
pub fn link(config: &ClusterConfig) -> NimbusLink {
    NimbusLink {
        addresses: config.nimbus_addresses(),
        max_frame_bytes: config.nimbus_max_frame_bytes,
    }
}

/// Serves the UI on `listener` (blocking, on a private tokio runtime).
///
/// # Errors
/// [`UiError::Serve`] when the runtime cannot start or the server fails.
pub fn serve(listener: TcpListener, link: NimbusLink) -> Result<(), UiError> {
    listener.set_nonblocking(true).map_err(UiError::Serve)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UiError::Serve)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(UiError::Serve)?;
        axum::serve(listener, router(link))
            .await
            .map_err(UiError::Serve)
    })
}
