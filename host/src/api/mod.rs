//! The HTTP API: `POST /api/websocket/<op>` with a `systemId` header and a JSON body, answered
//! `{"code":0,"msg":"success","data":…}` or a 4xx `{"code","msg"}` ([`ApiError`]).

mod error;
mod ops;

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;

pub use error::ApiError;

use crate::gateway::Gateway;
use crate::metrics::{ApiLabels, OpLabel};

/// Header naming the system (tenant) an API call acts on.
pub const SYSTEM_HEADER: &str = "systemId";

/// A successful answer: `{"code":0,"msg":"success","data":…}`.
pub fn success(data: Value) -> Response {
    Json(serde_json::json!({ "code": 0, "msg": "success", "data": data })).into_response()
}

/// Routes of the websocket API (`/api/websocket/<op>`); the caller adds auth.
pub fn router() -> Router<Gateway> {
    Router::new().route("/api/websocket/{op}", any(call))
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
    Path(op): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let started = Instant::now();
    let known = ops::is_known(&op);
    let label = if known { op.as_str() } else { "unknown" };
    let response = if req.method() != axum::http::Method::POST {
        ApiError::MethodNotAllowed(format!("{} needs POST", req.uri().path())).into_response()
    } else if !known {
        ApiError::NotFound(format!("unknown operation: {op}")).into_response()
    } else {
        let limit = gateway.config().max_body_size;
        match read_json(req.into_body(), limit).await {
            Ok(body) => match ops::dispatch(&gateway, &op, &headers, body).await {
                Ok(data) => success(data),
                Err(err) => err.into_response(),
            },
            Err(err) => err.into_response(),
        }
    };
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

/// Read a JSON object body of at most `limit` bytes; an empty body counts as `{}`.
async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = to_bytes(body, limit).await.map_err(|err| {
        let too_large = std::error::Error::source(&err)
            .is_some_and(|e| e.is::<http_body_util::LengthLimitError>())
            || err.to_string().contains("length limit");
        if too_large {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest(format!("could not read body: {err}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|err| ApiError::BadRequest(format!("body is not valid JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest("body must be a JSON object".into()));
    }
    Ok(value)
}

/// `GET /healthz`.
pub async fn healthz(State(gateway): State<Gateway>) -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({
            "code": 0,
            "msg": "success",
            "data": { "status": "ok", "connections": gateway.local_connection_count() }
        })),
    )
        .into_response()
}
