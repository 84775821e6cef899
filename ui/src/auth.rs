//! Bearer tokens on the REST API and `/metrics` with security on: a
//! request without a valid `Authorization: Bearer <token>` is answered 401
//! (JSON, with `WWW-Authenticate: Bearer`); with one, it runs on behalf of
//! the token's principal, and Nimbus decides what that principal may do
//! (403 when it may not). The pages and their assets need no token: the
//! page asks the user for one and sends it with each API call.

use crate::token::TokenKey;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

/// The principal a request's token names (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// Whether `path` needs a token: the API and the metrics.
pub fn protected(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

fn unauthorized(message: String) -> Response {
    let body = json!({ "error": "Unauthorized", "errorMessage": message });
    let mut r = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"squall\""),
    );
    r
}

/// The middleware: checks the bearer token of every protected request and
/// records its principal.
pub async fn require_token(
    State(key): State<Arc<TokenKey>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !protected(req.uri().path()) {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return unauthorized(
            "this cluster requires a bearer token (Authorization: Bearer <token>; `squall token USER` issues one)".into(),
        );
    };
    match key.verify(token, squall_cluster::now_ms() / 1000) {
        Ok(principal) => {
            req.extensions_mut().insert(Principal(principal));
            next.run(req).await
        }
        Err(e) => {
            tracing::info!("refused a token: {e}");
            unauthorized(format!("token refused: {e}"))
        }
    }
}
