//! The gateway's own web pages and the JavaScript client, embedded in the binary: the client
//! library at `/client/wasmgate.js`, the live dashboard at `/dashboard` and the quiz demo at
//! `/demo/quiz`. Nothing here runs unless a browser asks: the dashboard is fed by
//! [`events`] (`/dashboard/events`, Server-Sent Events, one snapshot a second) only while it is
//! open, so an idle gateway does no work for it.
//!
//! `/client/check` tells a client why its WebSocket upgrade was refused: a browser's WebSocket
//! only sees a failed connection, never the 404/401 JSON the gateway answered.

pub mod events;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{self, verify_client_token};
use crate::gateway::Gateway;

/// The client library, an ES module (source: `clients/js/src/wasmgate.js`).
const CLIENT_JS: &str = include_str!("../../../clients/js/src/wasmgate.js");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const QUIZ_HTML: &str = include_str!("assets/quiz.html");
const QUIZ_JS: &str = include_str!("assets/quiz.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// An embedded asset with its content type; cached briefly (a new binary brings new assets).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The web routes. The dashboard's pages hold no data (every number comes from the guarded API
/// with the same credentials as any API caller); without an `api_token` they are answered to
/// loopback peers only, exactly like the API. With a token, a browser cannot send it on a page
/// load, so the shell is served to anyone and asks for the token, which it keeps in
/// `sessionStorage` and sends as `Authorization: Bearer` on every call.
pub fn router(gateway: &Gateway) -> Router<Gateway> {
    let mut dashboard = Router::new()
        .route("/dashboard", get(|| async { asset(HTML, DASHBOARD_HTML) }))
        .route(
            "/dashboard/dashboard.js",
            get(|| async { asset(JS, DASHBOARD_JS) }),
        );
    if gateway.config().api_token.is_none() {
        dashboard = dashboard.route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            auth::require_api_auth,
        ));
    }
    Router::new()
        .route(
            "/client/wasmgate.js",
            get(|| async { asset(JS, CLIENT_JS) }),
        )
        .route("/client/check", get(check))
        .route("/demo/quiz", get(|| async { asset(HTML, QUIZ_HTML) }))
        .route("/demo/quiz.js", get(|| async { asset(JS, QUIZ_JS) }))
        .route(
            "/web/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .merge(dashboard)
}

/// Query of `/client/check`: the same parameters as the WebSocket endpoint.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckParams {
    system_id: Option<String>,
    token: Option<String>,
}

/// `GET /client/check?systemId=&token=`: would a connect with these parameters be admitted?
/// Answers what the upgrade would (400 no systemId, 404 unknown system, 401 bad token), or 200.
/// It tells nothing the upgrade does not, so it needs no auth, and any origin may read it.
async fn check(State(gateway): State<Gateway>, params: Query<CheckParams>) -> Response {
    let (status, msg) = verdict(&gateway, &params).await;
    let code = if status == StatusCode::OK {
        0
    } else {
        status.as_u16()
    };
    let body = json!({ "code": code, "msg": msg });
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

async fn verdict(gateway: &Gateway, params: &CheckParams) -> (StatusCode, String) {
    let system = match params.system_id.as_deref() {
        Some(s) if !s.is_empty() => s,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "missing query parameter systemId".into(),
            );
        }
    };
    match gateway.registry().system_exists(system).await {
        Ok(true) => {}
        Ok(false) => return (StatusCode::NOT_FOUND, format!("unknown system: {system}")),
        Err(err) => return (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
    let secret = gateway
        .config()
        .systems
        .get(system)
        .and_then(|s| s.jwt_secret.clone());
    match (secret, params.token.as_deref()) {
        (None, _) => (StatusCode::OK, "success".into()),
        (Some(_), None) => (
            StatusCode::UNAUTHORIZED,
            "this system needs token=<jwt>".into(),
        ),
        (Some(secret), Some(token)) => {
            match verify_client_token(token, &secret, gateway.config().jwt_leeway) {
                Ok(_) => (StatusCode::OK, "success".into()),
                Err(_) => (StatusCode::UNAUTHORIZED, "invalid or expired token".into()),
            }
        }
    }
}
