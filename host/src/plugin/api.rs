//! `GET /api/plugins` and `POST /api/plugins/{name}/reload`.
//!
//! Answers follow the gateway's API: `{"code":0,"msg":"success","data":…}`, errors a 4xx with
//! `{"code":<status>,"msg":"<what is wrong>"}`. The caller mounts the router behind the API's
//! authentication.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{PluginError, PluginHost};

/// The plugin routes, for the server to mount behind its API authentication.
pub fn router(host: Arc<PluginHost>) -> Router {
    Router::new()
        .route("/api/plugins", get(list))
        .route("/api/plugins/{name}/reload", post(reload))
        .with_state(host)
}

fn success(data: Value) -> Response {
    Json(json!({ "code": 0, "msg": "success", "data": data })).into_response()
}

fn failure(status: StatusCode, msg: String) -> Response {
    (status, Json(json!({ "code": status.as_u16(), "msg": msg }))).into_response()
}

async fn list(State(host): State<Arc<PluginHost>>) -> Response {
    success(host.list())
}

async fn reload(State(host): State<Arc<PluginHost>>, Path(name): Path<String>) -> Response {
    match host.reload(&name).await {
        Ok(outcome) => {
            let mut data = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.insert("name".into(), json!(name));
            }
            success(data)
        }
        Err(e @ PluginError::NotFound(_)) => failure(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ PluginError::Load { .. }) => {
            failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
