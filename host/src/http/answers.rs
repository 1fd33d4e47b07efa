//! Error answers of the HTTP layer: every one is JSON `{"code":<status>,"msg":"…"}`, like the
//! API's own errors, so a caller never has to parse an empty or text body.
//!
//! Handlers answer their own errors in JSON. What is left are answers the framework writes by
//! itself: axum's 405 for a route that exists with another method (empty body) and extractor
//! rejections (text bodies). [`json_errors`] rewrites those, on every route, so routes added
//! later (merged into `server::app`) get it too.
//!
//! What cannot be rewritten: answers hyper writes itself while parsing, before there is a
//! request to hand to the router (400 for a malformed request line or header, 431 for a header
//! section over its hard limit, see `http::request`). hyper builds those from a bare status
//! (`proto::h1::role::Server::on_error` returns only a `MessageHead`, and the connection writes
//! it with an empty body); hyper offers no hook to give them one.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Largest framework-written error body turned into a `msg` (axum's rejection texts are a few
/// dozen bytes); a larger one gets the status's reason phrase instead.
const MAX_REWRITTEN_BODY: usize = 1024;

/// A JSON error answer `{"code":<status>,"msg":msg}`.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let body = serde_json::json!({ "code": status.as_u16(), "msg": msg.into() });
    (status, axum::Json(body)).into_response()
}

/// Handler for a route that exists but not with the request's method (axum keeps the `Allow`
/// header it computed).
pub async fn method_not_allowed(req: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

fn is_json(res: &Response) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Response mapper: a 4xx or 5xx answer that is not JSON becomes `{"code","msg"}` with its text
/// (or the status's reason phrase) as `msg`. Headers such as `Allow` are kept.
pub async fn json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&res) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REWRITTEN_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let msg = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = serde_json::json!({ "code": status.as_u16(), "msg": msg }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}
