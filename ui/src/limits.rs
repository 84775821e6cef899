//! The UI server's limits: a connection cap, a deadline for request
//! heads, a body size cap, and cross-site POSTs refused (a browser on
//! another site must not drive the cluster through an operator's UI).

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Largest request body accepted, in bytes (the UI's POSTs carry none).
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "errorMessage": message,
    });
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The host (and port) an `Origin` header names, if any.
fn origin_host(origin: &str) -> Option<&str> {
    let rest = origin.split_once("://")?.1;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Why a request must be refused before it reaches a handler: a body
/// announced over [`MAX_BODY_BYTES`] (413), or a POST from another site —
/// an `Origin` that is not this server's `Host`, or `Sec-Fetch-Site:
/// cross-site` (403). Requests without either header (curl, scripts,
/// `squall`) pass.
pub fn check(method: &Method, headers: &HeaderMap) -> Option<(StatusCode, String)> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>().unwrap_or(u64::MAX));
    if let Some(n) = length.filter(|n| *n > MAX_BODY_BYTES) {
        return Some((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a body of {n} bytes is over the limit of {MAX_BODY_BYTES}"),
        ));
    }
    if method != Method::POST {
        return None;
    }
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site") == Some("cross-site") {
        return Some((StatusCode::FORBIDDEN, "cross-site request refused".into()));
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or("");
        if origin_host(origin) != Some(host) {
            return Some((
                StatusCode::FORBIDDEN,
                format!("cross-site request refused: origin {origin} is not this UI ({host})"),
            ));
        }
    }
    None
}

/// The middleware running [`check`] on every request, and making every
/// error answer JSON (`{"error", "errorMessage"}`, as Storm's UI): axum's
/// own refusals (a path that does not parse, a wrong method) come as text
/// or empty.
pub async fn guard(req: Request, next: Next) -> Response {
    if let Some((status, message)) = check(req.method(), req.headers()) {
        tracing::info!(%message, "request refused");
        return refuse(status, &message);
    }
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), MAX_BODY_BYTES as usize)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let body = json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "errorMessage": message,
    });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_posts_and_huge_bodies_are_refused() {
        let post = Method::POST;
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(check(&post, &same), None);
        assert_eq!(check(&post, &headers(&[("host", "127.0.0.1:8080")])), None);
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(check(&post, &evil).unwrap().0, StatusCode::FORBIDDEN);
        assert_eq!(check(&Method::GET, &evil), None);
        let fetch = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&post, &fetch).unwrap().0, StatusCode::FORBIDDEN);
        let huge = headers(&[("content-length", "99999999999")]);
        assert_eq!(
            check(&post, &huge).unwrap().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            check(&Method::GET, &huge).unwrap().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
