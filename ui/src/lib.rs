//! Squall's web UI (`squall ui`): Storm's REST API under `/api/v1`
//! ([`views`]), the pages (cluster, topology with a live DAG drawing,
//! component) and a Prometheus endpoint at `/metrics` ([`prometheus`]).
//! It asks the leading Nimbus for everything on each request and keeps no
//! state of its own; Nimbus keeps the windowed statistics.
//!
//! Depends on `squall-cluster` and `squall-topology-api`; never on the
//! worker engine.
#![forbid(missing_docs)]

pub mod auth;
pub mod charts;
pub mod debug;
pub mod details;
pub mod jsonp;
pub mod lag;
pub mod limits;
pub mod logconfig;
pub mod logviewer;
pub mod nimbus;
pub mod prometheus;
mod routes;
pub mod token;
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
    /// Security is on and the UI's identity or token key is missing or bad.
    #[error("{0}")]
    Security(String),
}

/// Serves the UI on `ui.host`:`ui.port` (default 127.0.0.1:8080) until the
/// process ends, asking the Nimbus seeds of `config`.
///
/// # Errors
/// [`UiError::Bind`] when the address cannot be bound.
pub fn run(config: &ClusterConfig) -> Result<(), UiError> {
    let security = Security::from_config(config)?;
    let address = format!("{}:{}", config.ui_host, config.ui_port);
    let listener = TcpListener::bind(&address).map_err(|error| UiError::Bind {
        address: address.clone(),
        error,
    })?;
    let mut link = link(config);
    match &security {
        Some(s) => {
            link.tls = Some(s.tls.clone());
            tracing::info!(%address, "ui serving HTTPS; the API takes bearer tokens");
        }
        None => tracing::info!(%address, "ui serving (security off)"),
    }
    serve(
        listener,
        link,
        Limits {
            max_connections: config.ui_max_connections,
            header_timeout: std::time::Duration::from_secs(config.ui_header_timeout_secs),
        },
        security,
    )
}

/// The UI's security with `squall.security.enable` on: HTTPS with its
/// identity, bearer tokens checked with the cluster's token key, and
/// requests to Nimbus made on behalf of each token's principal.
#[derive(Clone)]
pub struct Security {
    /// The UI's identity (its certificate serves HTTPS and authenticates
    /// it to Nimbus).
    pub tls: std::sync::Arc<squall_cluster::tls::Tls>,
    /// The key tokens are signed with.
    pub tokens: token::TokenKey,
}

impl Security {
    /// The UI's security per `config`; `None` with security off.
    ///
    /// # Errors
    /// [`UiError::Security`] naming the setting or file that is missing or
    /// bad.
    pub fn from_config(config: &ClusterConfig) -> Result<Option<Self>, UiError> {
        let bad = |e: String| UiError::Security(e);
        let Some(tls) =
            squall_cluster::tls::Tls::from_config(config).map_err(|e| bad(e.to_string()))?
        else {
            return Ok(None);
        };
        let path = config.token_key_path.as_deref().ok_or_else(|| {
            bad("squall.security.enable is true but squall.token.key.path is not set".into())
        })?;
        let tokens = token::TokenKey::load(std::path::Path::new(path)).map_err(bad)?;
        Ok(Some(Self { tls, tokens }))
    }
}

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (`ui.max.connections`); more are closed
    /// at accept.
    pub max_connections: usize,
    /// How long a client may take to send a request head, and how long a
    /// kept-alive connection may wait for the next one
    /// (`ui.header.timeout.secs`).
    pub header_timeout: std::time::Duration,
}

/// The Nimbus seeds of `config` as a [`NimbusLink`].
pub fn link(config: &ClusterConfig) -> NimbusLink {
    NimbusLink {
        addresses: config.nimbus_addresses(),
        max_frame_bytes: config.nimbus_max_frame_bytes,
        tls: None,
        on_behalf_of: None,
    }
}

/// Serves the UI on `listener` (blocking, on a private tokio runtime),
/// HTTP/1.1 within `limits`; every request passes [`limits::guard`]. With
/// `security`, HTTPS only (a plaintext client gets no answer) and every
/// API request passes [`auth::require_token`].
///
/// # Errors
/// [`UiError::Serve`] when the runtime cannot start or the listener fails.
pub fn serve(
    listener: TcpListener,
    link: NimbusLink,
    limits: Limits,
    security: Option<Security>,
) -> Result<(), UiError> {
    serve_app(listener, router(link), limits, security)
}

/// Serves `app` on `listener` as [`serve`] does: within `limits`, every
/// request through [`limits::guard`] and [`jsonp::wrap`]; with `security`,
/// HTTPS only and bearer tokens on the API ([`auth::require_token`]).
///
/// # Errors
/// [`UiError::Serve`] when the runtime cannot start or the listener fails.
pub(crate) fn serve_app(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    security: Option<Security>,
) -> Result<(), UiError> {
    let acceptor = match &security {
        Some(s) => Some(tokio_rustls::TlsAcceptor::from(
            s.tls
                .https_config()
                .map_err(|e| UiError::Security(e.to_string()))?,
        )),
        None => None,
    };
    listener.set_nonblocking(true).map_err(UiError::Serve)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(UiError::Serve)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(UiError::Serve)?;
        let mut app = app;
        if let Some(s) = &security {
            app = app.layer(axum::middleware::from_fn_with_state(
                std::sync::Arc::new(s.tokens.clone()),
                auth::require_token,
            ));
        }
        let app = app
            .layer(axum::middleware::from_fn(jsonp::wrap))
            .layer(axum::middleware::from_fn(limits::guard));
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        let mut refused = 0u64;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}; pausing");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                refused += 1;
                if refused.is_power_of_two() {
                    tracing::warn!(
                        "{} connections open (ui.max.connections): {refused} refused so far",
                        limits.max_connections
                    );
                }
                continue;
            };
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let http = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .clone();
                let ended = match acceptor {
                    None => {
                        http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                        match handshake.await {
                            Ok(Ok(tls)) => {
                                http.serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                    .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                }
            });
        }
    })
}
