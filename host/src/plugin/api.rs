//! `GET /api/plugins` and `POST /api/plugins/{name}/reload`.
//!
//! Answers follow the gateway's API: `{"code":0,"msg":"success","data":…}`, errors a 4xx with
//! `{"code":<status>,"msg":"<what is wrong>"}`: 400 for a name that cannot name a plugin, 404
//! for an unknown plugin, 422 when the new version fails to load. No answer shows a path on the
//! gateway's disk (only file names). The caller mounts the router behind the API's
//! authentication.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::watch::valid_name;
use super::{PluginError, PluginHost};

/// Longest plugin name: a file name (`<name>.wasm`) must fit in 255 bytes.
const MAX_NAME_BYTES: usize = 250;

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
    let mut data = host.list();
    with_code_bytes(&host, &mut data);
    success(data)
}

/// Add `codeBytes` to each entry of the list: the size of the serving version's compiled image
/// (see `engine::code_bytes`), `null` when no version serves. Memory figures of the instances
/// themselves (`memoryBytes`) come from the actors that own them.
fn with_code_bytes(host: &PluginHost, data: &mut Value) {
    let Some(list) = data.get_mut("list").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in list {
        let bytes = entry
            .get("version")
            .and_then(Value::as_str)
            .and_then(|hash| host.code_bytes(hash));
        if let Value::Object(map) = entry {
            map.insert("codeBytes".into(), json!(bytes));
        }
    }
}

async fn reload(
    State(host): State<Arc<PluginHost>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let name = match name {
        Ok(Path(name)) => name,
        Err(_) => return failure(StatusCode::BAD_REQUEST, "plugin name is not UTF-8".into()),
    };
    if let Err(msg) = check_name(&name) {
        return failure(StatusCode::BAD_REQUEST, msg);
    }
    match host.reload(&name).await {
        Ok(outcome) => {
            let mut data = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut data {
                map.insert("name".into(), json!(name));
            }
            success(data)
        }
        Err(PluginError::NotFound(_)) => {
            failure(StatusCode::NOT_FOUND, format!("unknown plugin: {name}"))
        }
        Err(e @ PluginError::Load { .. }) => failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            without_paths(&e.to_string()),
        ),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            without_paths(&e.to_string()),
        ),
    }
}

/// A plugin name is the stem of a file directly inside the plugins folder.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "plugin name of {} bytes, over the limit of {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if !valid_name(name) {
        return Err(format!(
            "invalid plugin name {name:?}: ASCII letters, digits, '-', '_' and '.', not starting \
             with '.'"
        ));
    }
    Ok(())
}

/// `msg` with every path shortened to its file name: an error reading `/srv/gw/plugins/x.wasm`
/// must not tell an API caller where the gateway keeps its files.
fn without_paths(msg: &str) -> String {
    msg.split(' ')
        .map(|word| match word.rfind('/') {
            Some(i) if word.starts_with('/') || word.starts_with("./") => &word[i + 1..],
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_to_file_names() {
        assert_eq!(
            without_paths("plugin x: reading /srv/gw/plugins/x.wasm: Is a directory (os error 21)"),
            "plugin x: reading x.wasm: Is a directory (os error 21)"
        );
        assert_eq!(without_paths("1/2 of the imports"), "1/2 of the imports");
    }

    #[test]
    fn names_are_file_stems() {
        assert!(check_name("chat-v2").is_ok());
        assert!(check_name("..").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(MAX_NAME_BYTES + 1)).is_err());
    }
}
