//! The HTTP API: `POST /api/websocket/<op>` with a `systemId` header and a JSON body, answered
//! `{"code":0,"msg":"success","data":…}` or a 4xx `{"code","msg"}` ([`ApiError`]).

mod error;
mod op;
mod ops;

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use serde_json::Value;

pub use error::ApiError;
pub use op::Op;

use crate::gateway::Gateway;
use crate::metrics::{ApiLabels, OpLabel};

/// Header naming the system (tenant) an API call acts on.
pub const SYSTEM_HEADER: &str = "systemId";

/// The body of a successful answer: `{"code":0,"msg":"success","data":…}`.
#[derive(Debug, Serialize)]
pub struct Success {
    code: u16,
    msg: &'static str,
    data: Value,
}

impl Success {
    /// A success carrying `data`.
    pub fn new(data: Value) -> Json<Self> {
        Json(Self {
            code: 0,
            msg: "success",
            data,
        })
    }
}

/// A successful answer: `{"code":0,"msg":"success","data":…}`.
pub fn success(data: Value) -> Response {
    Success::new(data).into_response()
}

/// Routes of the websocket API (`/api/websocket/<op>`); the caller adds auth. Bodies over
/// `max_body_size` are cut by axum's body limit while they are read (never buffered whole) and
/// answered 413 in JSON.
pub fn router(max_body_size: usize) -> Router<Gateway> {
    Router::new()
        .route("/api/websocket/{op}", any(call))
        .layer(DefaultBodyLimit::max(max_body_size))
}

/// `GET /metrics`: the Prometheus exposition.
pub fn metrics_router() -> Router<Gateway> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(gateway): State<Gateway>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics().render(),
    )
        .into_response()
}

/// Answer for paths that match no route.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn call(
    State(gateway): State<Gateway>,
    op: Result<Path<String>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let op = match op {
        Ok(Path(name)) => Op::parse(&name).ok_or(name),
        Err(_) => Err("(not UTF-8)".to_owned()),
    };
    let label = op.as_ref().map_or("unknown", |op| op.name());
    let response = handle(&gateway, op, &method, &headers, body)
        .await
        .into_response();
    let metrics = gateway.metrics();
    metrics
        .api_calls
        .get_or_create(&ApiLabels {
            op: label.to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .api_latency
        .get_or_create(&OpLabel {
            op: label.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(
    gateway: &Gateway,
    op: Result<Op, String>,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Success>, ApiError> {
    if method != Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "/api/websocket/<op> needs POST, not {method}"
        )));
    }
    let op = op.map_err(|name| ApiError::NotFound(format!("unknown operation: {name}")))?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(gateway.config().max_body_size)
        } else {
            ApiError::BadRequest(format!("could not read body: {}", rejection.body_text()))
        }
    })?;
    let data = ops::dispatch(gateway, op, headers, json_object(&body)?).await?;
    Ok(Success::new(data))
}

/// The body as a JSON object; an empty body counts as `{}`.
fn json_object(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::BadRequest(format!("body is not valid JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    }
    Ok(value)
}

/// `GET /healthz`.
///
/// In cluster mode `data.cluster` holds the node id, Redis state and cross-node counts, and
/// `status` is `degraded` while Redis is unreachable (local clients are still served).
pub async fn healthz(State(gateway): State<Gateway>) -> Response {
    let mut data = serde_json::json!({
        "status": "ok",
        "connections": gateway.local_connection_count(),
    });
    if let Some(cluster) = gateway.cluster_health() {
        if cluster.redis != "up" {
            data["status"] = "degraded".into();
        }
        data["cluster"] = serde_json::to_value(cluster).unwrap_or_default();
    }
    (
        StatusCode::OK,
        Json(serde_json::json!({ "code": 0, "msg": "success", "data": data })),
    )
        .into_response()
}
