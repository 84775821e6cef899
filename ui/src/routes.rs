//! The HTTP routes: pages, `/api/v1/...` and `/metrics`. Handlers run the
//! blocking Nimbus calls on tokio's blocking pool.

use crate::nimbus::{ApiError, NimbusLink};
use crate::{details, logconfig, prometheus, views};
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use squall_cluster::now_ms;
use squall_cluster::rpc::{Request, Response as NimbusResponse};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;
/// The link to Nimbus for this request: on behalf of the principal of its
/// bearer token when [`crate::auth`] checked one.
pub(crate) struct Link(pub(crate) Arc<NimbusLink>);

impl axum::extract::FromRequestParts<Arc<NimbusLink>> for Link {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<NimbusLink>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Link(
            match parts.extensions.get::<crate::auth::Principal>() {
                Some(p) => Arc::new(NimbusLink {
                    on_behalf_of: Some(p.0.clone()),
                    ..(**state).clone()
                }),
                None => state.clone(),
            },
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({
            "error": status.canonical_reason().unwrap_or("Error"),
            "errorMessage": self.message,
        });
        (status, Json(body)).into_response()
    }
}

/// Runs `f` on the blocking pool and answers its JSON or its error.
pub(crate) async fn blocking(
    link: Arc<NimbusLink>,
    f: impl FnOnce(&NimbusLink) -> Result<Value, ApiError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&link)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError {
            status: 500,
            message: format!("request handler failed: {e}"),
        }
        .into_response(),
    }
}

fn sys(p: &HashMap<String, String>) -> bool {
    p.get("sys").is_some_and(|v| v == "1" || v == "true")
}

/// The UI's routes over `link`.
pub fn router(link: NimbusLink) -> Router {
    Router::new()
        .route("/", get(|| page(INDEX_HTML)))
        .route("/index.html", get(|| page(INDEX_HTML)))
        .route("/topology.html", get(|| page(TOPOLOGY_HTML)))
        .route("/component.html", get(|| page(COMPONENT_HTML)))
        .route(
            "/squall.js",
            get(|| asset(SQUALL_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/squall.css",
            get(|| asset(SQUALL_CSS, "text/css; charset=utf-8")),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/cluster/summary", get(cluster_summary))
        .route("/api/v1/cluster/configuration", get(cluster_configuration))
        .route("/api/v1/nimbus/summary", get(nimbus_summary))
        .route("/api/v1/supervisor/summary", get(supervisor_summary))
        .route("/api/v1/topology/summary", get(topology_summary))
        .route("/api/v1/topology/{id}", get(topology))
        .route(
            "/api/v1/topology/{id}/component/{component}",
            get(component),
        )
        .route("/api/v1/topology/{id}/visualization", get(visualization))
        .route("/api/v1/topology/{id}/lag", get(lag))
        .route("/api/v1/topology/{id}/metrics", get(topology_metrics))
        .route("/api/v1/topology/{id}/timeseries", get(timeseries))
        .route("/api/v1/supervisor", get(supervisor))
        .route("/api/v1/history/summary", get(history_summary))
        .route("/api/v1/topology-workers/{id}", get(topology_workers))
        .route("/api/v1/topology/{id}/activate", post(activate))
        .route("/api/v1/topology/{id}/deactivate", post(deactivate))
        .route("/api/v1/topology/{id}/rebalance/{wait}", post(rebalance))
        .route("/api/v1/topology/{id}/kill/{wait}", post(kill))
        .route(
            "/api/v1/topology/{id}/debug/{action}/{spct}",
            post(crate::debug::topology),
        )
        .route(
            "/api/v1/topology/{id}/component/{component}/debug/{action}/{spct}",
            post(crate::debug::component),
        )
        .route(
            "/api/v1/topology/{id}/logconfig",
            get(log_config).post(set_log_config),
        )
        .fallback(|| async { ApiError::not_found("no such page or API endpoint") })
        .with_state(Arc::new(link))
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const TOPOLOGY_HTML: &str = include_str!("../assets/topology.html");
const COMPONENT_HTML: &str = include_str!("../assets/component.html");
pub(crate) const SQUALL_JS: &str = include_str!("../assets/squall.js");
pub(crate) const SQUALL_CSS: &str = include_str!("../assets/squall.css");

async fn page(html: &'static str) -> Response {
    asset(html, "text/html; charset=utf-8").await
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn metrics(Link(link): Link) -> Response {
    let text = tokio::task::spawn_blocking(move || prometheus::scrape(&link)).await;
    match text {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)], body).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError {
            status: 500,
            message: format!("scrape failed: {e}"),
        }
        .into_response(),
    }
}

async fn cluster_summary(Link(link): Link) -> Response {
    blocking(link, |l| {
        Ok(views::cluster_summary(&l.cluster()?, &l.topologies()?))
    })
    .await
}

/// Nimbus's settings, Storm's key names (`/api/v1/cluster/configuration`).
async fn cluster_configuration(Link(link): Link) -> Response {
    blocking(link, |l| match l.call(Request::Configuration)? {
        NimbusResponse::Configuration(conf) => serde_json::to_value(conf).map_err(|e| ApiError {
            status: 500,
            message: format!("cannot encode the configuration: {e}"),
        }),
        other => Err(unexpected(&other)),
    })
    .await
}

async fn nimbus_summary(Link(link): Link) -> Response {
    blocking(link, |l| {
        let rows: Vec<Value> = l
            .addresses
            .iter()
            .map(|a| {
                let (host, port) = a.rsplit_once(':').unwrap_or((a.as_str(), ""));
                let (status, uptime) = match l.cluster_at(a) {
                    Ok(c) if c.leader.as_deref() == Some(a.as_str()) => {
                        ("Leader", c.nimbus_uptime_secs)
                    }
                    Ok(c) => ("Not a Leader", c.nimbus_uptime_secs),
                    Err(_) => ("Offline", 0),
                };
                json!({
                    "host": host,
                    "port": port.parse::<u16>().ok(),
                    "status": status,
                    "nimbusUpTime": squall_cluster::window_stats::pretty_duration(uptime),
                    "nimbusUpTimeSeconds": uptime.to_string(),
                    "nimbusLogLink": "",
                    "version": views::VERSION,
                })
            })
            .collect();
        Ok(json!({ "nimbuses": rows }))
    })
    .await
}

async fn supervisor_summary(Link(link): Link) -> Response {
    blocking(link, |l| Ok(views::supervisor_summary(&l.cluster()?))).await
}

async fn topology_summary(Link(link): Link) -> Response {
    blocking(link, |l| {
        let rows: Vec<Value> = l.topologies()?.iter().map(views::topology_row).collect();
        Ok(json!({ "topologies": rows, "schedulerDisplayResource": false }))
    })
    .await
}

async fn topology(Link(link): Link, Path(id): Path<String>, Query(p): Params) -> Response {
    blocking(link, move |l| {
        let window = views::parse_window(p.get("window").map(String::as_str))?;
        let info = l.info_by_id(&id)?;
        Ok(views::topology_page(&info, window, sys(&p), now_ms()))
    })
    .await
}

async fn component(
    Link(link): Link,
    Path((id, component)): Path<(String, String)>,
    Query(p): Params,
) -> Response {
    blocking(link, move |l| {
        let window = views::parse_window(p.get("window").map(String::as_str))?;
        let info = l.info_by_id(&id)?;
        views::component_page(&info, &component, window, sys(&p), now_ms())
    })
    .await
}

async fn visualization(Link(link): Link, Path(id): Path<String>, Query(p): Params) -> Response {
    blocking(link, move |l| {
        let window = views::parse_window(p.get("window").map(String::as_str))?;
        let info = l.info_by_id(&id)?;
        Ok(views::visualization(&info, window, sys(&p), now_ms()))
    })
    .await
}

async fn timeseries(Link(link): Link, Path(id): Path<String>, Query(p): Params) -> Response {
    blocking(link, move |l| {
        let info = l.info_by_id(&id)?;
        Ok(crate::charts::timeseries(&info, sys(&p)))
    })
    .await
}

async fn topology_metrics(Link(link): Link, Path(id): Path<String>, Query(p): Params) -> Response {
    blocking(link, move |l| {
        let window = views::parse_window(p.get("window").map(String::as_str))?;
        let info = l.info_by_id(&id)?;
        Ok(details::topology_metrics(&info, window, sys(&p)))
    })
    .await
}

/// Storm's `/api/v1/history/summary`: the ids of the live topologies the
/// caller submitted (with security off, every live topology).
async fn history_summary(Link(link): Link) -> Response {
    blocking(link, |l| {
        let user = l.on_behalf_of.clone();
        let ids: Vec<String> = l
            .topologies()?
            .into_iter()
            .filter(|t| user.is_none() || t.owner == user)
            .map(|t| t.id)
            .collect();
        Ok(json!({ "topo-history": ids }))
    })
    .await
}

async fn supervisor(Link(link): Link, Query(p): Params) -> Response {
    blocking(link, move |l| {
        let cluster = l.cluster()?;
        let mut infos = Vec::new();
        for t in l.topologies()? {
            // A topology killed meanwhile is skipped.
            if let Ok(i) = l.info(&t.name) {
                infos.push(i);
            }
        }
        details::supervisor(
            &cluster,
            &infos,
            p.get("id").map(String::as_str),
            p.get("host").map(String::as_str),
            now_ms(),
        )
    })
    .await
}

async fn lag(Link(link): Link, Path(id): Path<String>) -> Response {
    blocking(link, move |l| {
        Ok(crate::lag::topology_lag(&l.info_by_id(&id)?))
    })
    .await
}

async fn topology_workers(Link(link): Link, Path(id): Path<String>) -> Response {
    blocking(link, move |l| {
        Ok(views::topology_workers(&l.info_by_id(&id)?))
    })
    .await
}

/// Sends Nimbus `request(name)` for topology `id`; Storm's answer.
fn act(
    l: &NimbusLink,
    id: &str,
    op: &str,
    request: impl FnOnce(String) -> Request,
) -> Result<Value, ApiError> {
    let name = l.by_id(id)?.name;
    l.call(request(name))?;
    Ok(json!({ "topologyOperation": op, "topologyId": id, "status": "success" }))
}

async fn activate(Link(link): Link, Path(id): Path<String>) -> Response {
    blocking(link, move |l| {
        act(l, &id, "activate", |name| Request::Activate { name })
    })
    .await
}

async fn deactivate(Link(link): Link, Path(id): Path<String>) -> Response {
    blocking(link, move |l| {
        act(l, &id, "deactivate", |name| Request::Deactivate { name })
    })
    .await
}

fn parse_wait(wait: &str) -> Result<u64, ApiError> {
    wait.parse().map_err(|_| {
        ApiError::bad_request(format!("wait time {wait:?} is not a number of seconds"))
    })
}

/// Storm's `rebalanceOptions` body: `numWorkers` and `executors` (counts as
/// numbers or strings).
fn rebalance_options(body: &[u8]) -> Result<(Option<u32>, BTreeMap<String, u32>), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, BTreeMap::new()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("rebalance body is not JSON: {e}")))?;
    let opts = &v["rebalanceOptions"];
    let count = |x: &Value| -> Option<u32> {
        x.as_u64()
            .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|n| u32::try_from(n).ok())
    };
    let workers = match &opts["numWorkers"] {
        Value::Null => None,
        x => Some(count(x).ok_or_else(|| {
            ApiError::bad_request(format!("numWorkers {x} is not a positive count"))
        })?),
    };
    let mut executors = BTreeMap::new();
    if let Some(m) = opts["executors"].as_object() {
        for (c, x) in m {
            let n = count(x).ok_or_else(|| {
                ApiError::bad_request(format!("executors for {c:?}: {x} is not a count"))
            })?;
            executors.insert(c.clone(), n);
        }
    }
    Ok((workers, executors))
}

async fn rebalance(
    Link(link): Link,
    Path((id, wait)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    blocking(link, move |l| {
        let wait_secs = Some(parse_wait(&wait)?);
        let (workers, executors) = rebalance_options(&body)?;
        act(l, &id, "rebalance", |name| Request::Rebalance {
            name,
            wait_secs,
            workers,
            executors,
        })
    })
    .await
}

async fn kill(Link(link): Link, Path((id, wait)): Path<(String, String)>) -> Response {
    blocking(link, move |l| {
        let wait_secs = Some(parse_wait(&wait)?);
        act(l, &id, "kill", |name| Request::Kill { name, wait_secs })
    })
    .await
}

async fn log_config(Link(link): Link, Path(id): Path<String>) -> Response {
    blocking(link, move |l| {
        let name = l.by_id(&id)?.name;
        match l.call(Request::GetLogConfig { name })? {
            NimbusResponse::LogConfig(c) => Ok(logconfig::to_json(&c)),
            other => Err(unexpected(&other)),
        }
    })
    .await
}

async fn set_log_config(Link(link): Link, Path(id): Path<String>, body: Bytes) -> Response {
    blocking(link, move |l| {
        let changes = logconfig::changes_from_body(&body)?;
        let name = l.by_id(&id)?.name;
        match l.call(Request::SetLogConfig { name, changes })? {
            NimbusResponse::LogConfig(c) => Ok(logconfig::to_json(&c)),
            other => Err(unexpected(&other)),
        }
    })
    .await
}

pub(crate) fn unexpected(r: &NimbusResponse) -> ApiError {
    ApiError {
        status: 502,
        message: format!("unexpected answer from Nimbus: {r:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_options_accept_numbers_and_strings() {
        let (w, e) = rebalance_options(
            br#"{"rebalanceOptions": {"numWorkers": 2, "executors": {"spout": "5", "count": 3}}}"#,
        )
        .unwrap();
        assert_eq!(w, Some(2));
        assert_eq!(e["spout"], 5);
        assert_eq!(e["count"], 3);
        assert_eq!(rebalance_options(b"").unwrap(), (None, BTreeMap::new()));
        let err = rebalance_options(br#"{"rebalanceOptions": {"numWorkers": "x"}}"#).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("numWorkers"));
        assert_eq!(rebalance_options(b"{").unwrap_err().status, 400);
    }
}
