//! Storm's JSONP: a GET with `callback=NAME` gets its JSON answer wrapped
//! as `NAME(...);` (`application/javascript`), for pages that load the REST
//! API with a `<script>` tag.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Largest JSON answer wrapped, in bytes.
const MAX_WRAPPED_BYTES: usize = 64 << 20;

/// Whether `name` may be called: a JavaScript identifier path (letters,
/// digits, `_`, `$`, `.`; not starting with a digit or `.`), at most 64
/// bytes, so the answer cannot carry script of the caller's choosing.
pub fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.')
}

fn callback_of(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "callback").then(|| v.to_owned())
    })
}

/// The middleware: wraps JSON answers of GETs that name a callback; a
/// callback that is not an identifier path is refused (400).
pub async fn wrap(req: Request, next: Next) -> Response {
    let callback = (req.method() == Method::GET)
        .then(|| callback_of(req.uri().query()))
        .flatten();
    let Some(callback) = callback else {
        return next.run(req).await;
    };
    if !valid_callback(&callback) {
        let body = json!({
            "error": "Bad Request",
            "errorMessage": format!("callback {callback:?} is not a JavaScript function name"),
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_WRAPPED_BYTES).await else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "answer too large to wrap",
        )
            .into_response();
    };
    let mut wrapped = Vec::with_capacity(bytes.len() + callback.len() + 3);
    wrapped.extend_from_slice(callback.as_bytes());
    wrapped.push(b'(');
    wrapped.extend_from_slice(&bytes);
    wrapped.extend_from_slice(b");");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identifier_paths_are_called() {
        assert!(valid_callback("cb"));
        assert!(valid_callback("jQuery_123.done$"));
        assert!(!valid_callback(""));
        assert!(!valid_callback("1cb"));
        assert!(!valid_callback("alert(1)"));
        assert!(!valid_callback("a b"));
        assert!(!valid_callback(&"a".repeat(65)));
        assert_eq!(
            callback_of(Some("window=600&callback=cb")).as_deref(),
            Some("cb")
        );
        assert_eq!(callback_of(Some("window=600")), None);
    }
}
