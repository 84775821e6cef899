//! Storm's event sampling endpoints: `POST
//! /api/v1/topology/:id/debug/:action/:spct` and `POST
//! /api/v1/topology/:id/component/:component/debug/:action/:spct`, where
//! `action` is `enable` or `disable` and `spct` the percentage of emitted
//! tuples sampled. Sampled tuples are written beside each worker's log;
//! the component page's `eventLogLink` opens them in the log viewer.

use crate::nimbus::ApiError;
use crate::routes::{blocking, unexpected, Link};
use axum::extract::Path;
use axum::response::Response;
use serde_json::json;
use squall_cluster::rpc::{Request, Response as NimbusResponse};

/// `action` and `spct` of a debug path: (enable, percentage).
///
/// # Errors
/// 400 naming the action or percentage that is not one.
pub fn parse(action: &str, spct: &str) -> Result<(bool, f64), ApiError> {
    let enable = match action {
        "enable" => true,
        "disable" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "debug action {other:?} is not enable or disable"
            )))
        }
    };
    let pct: f64 = spct.parse().map_err(|_| {
        ApiError::bad_request(format!("sampling percentage {spct:?} is not a number"))
    })?;
    Ok((enable, pct))
}

fn debug(
    link: Link,
    id: String,
    component: Option<String>,
    action: String,
    spct: String,
) -> impl std::future::Future<Output = Response> {
    blocking(link.0, move |l| {
        let (enable, sampling_pct) = parse(&action, &spct)?;
        let name = l.by_id(&id)?.name;
        match l.call(Request::Debug {
            name,
            component: component.clone(),
            enable,
            sampling_pct,
        })? {
            NimbusResponse::Debug(d) => {
                let now = match &component {
                    Some(c) => d.of(c),
                    None => d.topology,
                };
                Ok(json!({
                    "topologyOperation": "debug",
                    "topologyId": id,
                    "component": component,
                    "status": "success",
                    "debug": now.is_some_and(|o| o.enable),
                    "samplingPct": now.map_or(0.0, |o| o.sampling_pct),
                }))
            }
            other => Err(unexpected(&other)),
        }
    })
}

/// `POST /api/v1/topology/:id/debug/:action/:spct`.
pub(crate) async fn topology(
    link: Link,
    Path((id, action, spct)): Path<(String, String, String)>,
) -> Response {
    debug(link, id, None, action, spct).await
}

/// `POST /api/v1/topology/:id/component/:component/debug/:action/:spct`.
pub(crate) async fn component(
    link: Link,
    Path((id, component, action, spct)): Path<(String, String, String, String)>,
) -> Response {
    debug(link, id, Some(component), action, spct).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_percentages_are_parsed_or_named() {
        assert_eq!(parse("enable", "10").unwrap(), (true, 10.0));
        assert_eq!(parse("disable", "0").unwrap(), (false, 0.0));
        let e = parse("on", "10").unwrap_err();
        assert!(e.message.contains("\"on\""), "{}", e.message);
        let e = parse("enable", "ten").unwrap_err();
        assert!(e.message.contains("\"ten\""), "{}", e.message);
    }
}
