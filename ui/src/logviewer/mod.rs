//! The log viewer each supervisor serves for its host's worker logs
//! (Storm's logviewer daemon, run inside `squall supervisor`): Storm's
//! paths where they fit.
//!
//! - `GET /log?file=<topology id>/worker-<port>.log`: the page that tails
//!   and searches one log (what the UI's `workerLogLink` opens).
//! - `GET /api/v1/log?file=&start=&length=`: a byte range as JSON
//!   ([`files::Chunk`]); without `start`, the file's last `length` bytes
//!   (default 51,200).
//! - `GET /api/v1/search?file=&search-string=&num-matches=&start-byte-offset=`:
//!   Storm's search answer (`matches` with `byteOffset`, `beforeString`,
//!   `matchString`, `afterString`; `nextByteOffset` when there are more).
//! - `GET /api/v1/daemonlog?file=supervisor.log&start=&length=`: the
//!   same for a daemon's log in the same directory (`nimbus.log`,
//!   `supervisor.log`, `ui.log`; `/api/v1/log` takes these names too).
//! - `GET /api/v1/download?file=`: the whole file, as an attachment.
//! - `GET /api/v1/listLogs?topoId=&port=`: the worker log files.
//!
//! It listens on `storm.local.hostname`:`logviewer.port` with the UI's
//! limits. With security on it serves HTTPS with the supervisor's identity,
//! takes the UI's bearer tokens, and lets a principal read a topology's
//! logs when Nimbus lets it read the topology (asked on its behalf), or
//! when it is in `nimbus.admins`; daemon logs only to `nimbus.admins`.

pub mod files;

use crate::nimbus::{ApiError, NimbusLink};
use crate::{Limits, Security, UiError};
use axum::extract::Query;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use files::{FileError, LogName};
use serde_json::json;
use squall_topology_api::ClusterConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;

/// What the handlers share.
struct Viewer {
    /// `<storm.local.dir>/logs`.
    root: PathBuf,
    /// Nimbus, asked whether a principal may read a topology (security
    /// on only).
    link: Option<NimbusLink>,
    /// `nimbus.admins`, who may read every log.
    admins: Vec<String>,
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        let status = match e {
            FileError::Invalid(_) => 400,
            FileError::NotFound(_) => 404,
            FileError::Io { .. } => 500,
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

/// Binds the log viewer of `config` (`storm.local.hostname`:
/// `logviewer.port`; port 0 takes any free port) and serves it on its own
/// thread; returns the port it listens on.
///
/// # Errors
/// [`UiError::Bind`] when the address cannot be bound; [`UiError::Security`]
/// when security is on and the identity or token key is missing or bad.
pub fn start(config: &ClusterConfig) -> Result<u16, UiError> {
    let security = Security::from_config(config)?;
    let address = format!("{}:{}", config.local_hostname, config.logviewer_port);
    let listener = std::net::TcpListener::bind(&address).map_err(|error| UiError::Bind {
        address: address.clone(),
        error,
    })?;
    let port = listener.local_addr().map_err(UiError::Serve)?.port();
    let link = security.as_ref().map(|s| {
        let mut link = crate::link(config);
        link.tls = Some(s.tls.clone());
        link
    });
    let viewer = Viewer {
        root: PathBuf::from(&config.local_dir).join("logs"),
        link,
        admins: config.nimbus_admins.clone(),
    };
    let limits = Limits {
        max_connections: config.ui_max_connections,
        header_timeout: std::time::Duration::from_secs(config.ui_header_timeout_secs),
    };
    tracing::info!(
        address = %format!("{}:{port}", config.local_hostname),
        https = security.is_some(),
        "log viewer serving"
    );
    std::thread::Builder::new()
        .name("logviewer".into())
        .spawn(move || {
            if let Err(e) = crate::serve_app(listener, router(viewer), limits, security) {
                tracing::error!("log viewer stopped: {e}");
            }
        })
        .map_err(UiError::Serve)?;
    Ok(port)
}

fn router(viewer: Viewer) -> Router {
    Router::new()
        .route("/log", get(|| async { Html(LOG_HTML) }))
        .route(
            "/squall.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    crate::routes::SQUALL_JS,
                )
            }),
        )
        .route(
            "/squall.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    crate::routes::SQUALL_CSS,
                )
            }),
        )
        .route("/api/v1/log", get(log))
        .route("/api/v1/daemonlog", get(log))
        .route("/api/v1/search", get(search))
        .route("/api/v1/download", get(download))
        .route("/api/v1/listLogs", get(list_logs))
        .fallback(|| async { ApiError::not_found("no such page or API endpoint") })
        .with_state(Arc::new(viewer))
}

const LOG_HTML: &str = include_str!("../../assets/log.html");

type State = axum::extract::State<Arc<Viewer>>;
type Principal = Option<axum::Extension<crate::auth::Principal>>;

fn number(p: &HashMap<String, String>, key: &str) -> Result<Option<u64>, ApiError> {
    p.get(key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{key} must be a non-negative integer, not {v:?}"))
            })
        })
        .transpose()
}

fn file_param(p: &HashMap<String, String>) -> Result<LogName, ApiError> {
    let file = p
        .get("file")
        .ok_or_else(|| ApiError::bad_request("the file parameter is required"))?;
    Ok(LogName::parse(file)?)
}

/// Checks that `principal` may read `topology`'s logs (a daemon's with
/// `None`: admins only), on the blocking pool (it may ask Nimbus).
async fn authorize(
    v: &Arc<Viewer>,
    principal: Principal,
    topology: Option<&str>,
) -> Result<(), ApiError> {
    let (Some(link), Some(axum::Extension(principal))) = (&v.link, principal) else {
        return Ok(());
    };
    if v.admins.contains(&principal.0) {
        return Ok(());
    }
    let Some(topology) = topology else {
        return Err(ApiError {
            status: 403,
            message: format!(
                "{} may not read daemon logs: only nimbus.admins may",
                principal.0
            ),
        });
    };
    let link = NimbusLink {
        on_behalf_of: Some(principal.0.clone()),
        ..link.clone()
    };
    let id = topology.to_owned();
    let allowed = tokio::task::spawn_blocking(move || link.by_id(&id).is_ok())
        .await
        .unwrap_or(false);
    if allowed {
        Ok(())
    } else {
        Err(ApiError {
            status: 403,
            message: format!(
                "{} may not read the logs of topology {topology:?}: it may not read the topology (or it is no longer running, and only nimbus.admins may)",
                principal.0
            ),
        })
    }
}

/// Runs a file operation on the blocking pool.
async fn on_files<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ApiError {
            status: 500,
            message: format!("log handler failed: {e}"),
        }),
    }
}

async fn log(s: State, principal: Principal, Query(p): Params) -> Result<Response, ApiError> {
    let name = file_param(&p)?;
    let start = number(&p, "start")?;
    let length = number(&p, "length")?.unwrap_or(files::DEFAULT_LENGTH);
    authorize(&s.0, principal, name.topology()).await?;
    let root = s.0.root.clone();
    let chunk = on_files(move || files::read_chunk(&root, &name, start, length)).await?;
    Ok(Json(chunk).into_response())
}

async fn search(s: State, principal: Principal, Query(p): Params) -> Result<Response, ApiError> {
    let name = file_param(&p)?;
    let needle = p
        .get("search-string")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("the search-string parameter is required"))?;
    let wanted = number(&p, "num-matches")?.unwrap_or(10) as usize;
    let offset = number(&p, "start-byte-offset")?.unwrap_or(0);
    authorize(&s.0, principal, name.topology()).await?;
    let root = s.0.root.clone();
    let file = name.as_string();
    let (needle_copy, name_copy) = (needle.clone(), name.clone());
    let found =
        on_files(move || files::search(&root, &name_copy, &needle_copy, wanted, offset)).await?;
    let mut body = json!({
        "isDaemon": "no",
        "file": file,
        "searchString": needle,
        "startByteOffset": offset,
        "matches": found.matches,
    });
    if let Some(next) = found.next_byte_offset {
        body["nextByteOffset"] = json!(next);
    }
    Ok(Json(body).into_response())
}

async fn download(s: State, principal: Principal, Query(p): Params) -> Result<Response, ApiError> {
    let name = file_param(&p)?;
    authorize(&s.0, principal, name.topology()).await?;
    let path = name.path(&s.0.root);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::from(files::FileError::from_open(&name, e)))?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let attachment = format!(
        "attachment; filename=\"{}\"",
        name.as_string().replace('/', "-")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment),
        ],
        body,
    )
        .into_response())
}

async fn list_logs(s: State, principal: Principal, Query(p): Params) -> Result<Response, ApiError> {
    let topology = p.get("topoId").cloned().filter(|t| !t.is_empty());
    let port = number(&p, "port")?
        .map(|n| {
            u16::try_from(n).map_err(|_| ApiError::bad_request(format!("port {n} is not a port")))
        })
        .transpose()?;
    match &topology {
        Some(t) => authorize(&s.0, principal, Some(t)).await?,
        None if s.0.link.is_some() => {
            let admin = principal.is_some_and(|p| s.0.admins.contains(&p.0 .0));
            if !admin {
                return Err(ApiError {
                    status: 403,
                    message: "only nimbus.admins may list every topology's logs; give topoId"
                        .into(),
                });
            }
        }
        None => {}
    }
    let root = s.0.root.clone();
    let names = on_files(move || Ok(files::list(&root, topology.as_deref(), port))).await?;
    Ok(Json(names).into_response())
}
