//! The API operations, with the seeds' field names (seed 000/001 and GatewayWorker's seed 002).

use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ApiError, SYSTEM_HEADER};
use crate::gateway::{Envelope, Gateway};
use crate::registry::{Info, Member};

/// Every operation, by route name.
const OPS: &[&str] = &[
    "register",
    "send_to_client",
    "send_to_clients",
    "send_to_group",
    "send_to_system",
    "send_to_all",
    "send_to_uid",
    "bind_to_group",
    "join_group",
    "leave_group",
    "get_online_list",
    "close_client",
    "get_all_groups",
    "bind_uid",
    "unbind_uid",
    "is_uid_online",
    "get_uid_by_client_id",
    "get_client_ids_by_uid",
    "get_client_count_by_group",
    "get_client_ids_by_group",
    "get_uids_by_group",
    "get_uid_count_by_group",
    "get_all_uid",
    "is_online",
    "get_all_client_count",
    "get_info",
    "set_info",
    "update_info",
];

/// Whether `op` names an operation.
pub fn is_known(op: &str) -> bool {
    OPS.contains(&op)
}

/// The content of a pushed message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Push {
    #[serde(default)]
    send_user_id: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    system_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientBody {
    client_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientsBody {
    client_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupBody {
    group_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OptionalGroupBody {
    #[serde(default)]
    group_name: Option<String>,
}

#[derive(Deserialize)]
struct UidBody {
    uid: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindGroupBody {
    client_id: String,
    group_name: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    extend: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaveGroupBody {
    client_id: String,
    group_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindUidBody {
    client_id: String,
    uid: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloseBody {
    client_id: String,
    #[serde(default = "normal_close")]
    code: u16,
    #[serde(default)]
    reason: String,
}

fn normal_close() -> u16 {
    1000
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfoBody {
    client_id: String,
    info: Info,
}

/// Deserialize the body into `T`, naming the problem when a field is missing or mistyped.
fn parse<T: DeserializeOwned>(body: &Value) -> Result<T, ApiError> {
    T::deserialize(body).map_err(|err| ApiError::BadRequest(format!("invalid body: {err}")))
}

/// Reject empty identifiers, which would otherwise silently match nothing.
fn non_empty<'a>(field: &str, value: &'a str) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        Err(ApiError::BadRequest(format!("{field} must not be empty")))
    } else {
        Ok(value)
    }
}

fn list(items: Vec<String>) -> Value {
    json!({ "count": items.len(), "list": items })
}

fn system_header(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(SYSTEM_HEADER)
        .ok_or_else(|| ApiError::BadRequest(format!("missing header {SYSTEM_HEADER}")))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("header {SYSTEM_HEADER} is not ASCII")))?;
    Ok(non_empty(SYSTEM_HEADER, value)?.to_owned())
}

/// Run operation `op` (known to exist) and return its `data`.
pub async fn dispatch(
    gw: &Gateway,
    op: &str,
    headers: &HeaderMap,
    body: Value,
) -> Result<Value, ApiError> {
    if op == "register" {
        let b: RegisterBody = parse(&body)?;
        let created = gw
            .register_system(non_empty("systemId", &b.system_id)?)
            .await?;
        return Ok(json!({ "created": created }));
    }
    let system = system_header(headers)?;
    let system = system.as_str();
    if !gw.registry().system_exists(system).await {
        return Err(ApiError::NotFound(format!("unknown system: {system}")));
    }
    // An empty clientId is a malformed call, not a lookup of a client that is not there.
    if body.get("clientId").and_then(Value::as_str) == Some("") {
        return Err(ApiError::BadRequest("clientId must not be empty".into()));
    }
    let reg = gw.registry();
    match op {
        "send_to_client" => {
            let target: ClientBody = parse(&body)?;
            send(gw, &body, |m| async move {
                gw.send_to_client(system, &target.client_id, m)
                    .await
                    .map(usize::from)
            })
            .await
        }
        "send_to_clients" => {
            let target: ClientsBody = parse(&body)?;
            send(gw, &body, |m| async move {
                gw.send_to_clients(system, &target.client_ids, m).await
            })
            .await
        }
        "send_to_group" => {
            let target: GroupBody = parse(&body)?;
            let group = non_empty("groupName", &target.group_name)?;
            if reg.group_clients(system, group).await?.is_empty() {
                return Err(ApiError::NotFound(format!("unknown group: {group}")));
            }
            send(gw, &body, |m| async move {
                gw.send_to_group(system, group, m, &[]).await
            })
            .await
        }
        "send_to_system" | "send_to_all" => {
            send(gw, &body, |m| async move {
                gw.send_to_system(system, m, &[]).await
            })
            .await
        }
        "send_to_uid" => {
            let target: UidBody = parse(&body)?;
            let uid = non_empty("uid", &target.uid)?;
            send(gw, &body, |m| async move {
                gw.send_to_uid(system, uid, m).await
            })
            .await
        }
        "bind_to_group" | "join_group" => {
            let b: BindGroupBody = parse(&body)?;
            let member = Member {
                user_id: b.user_id,
                extend: b.extend,
            };
            gw.join_group(
                system,
                &b.client_id,
                non_empty("groupName", &b.group_name)?,
                member,
            )
            .await?;
            Ok(json!({}))
        }
        "leave_group" => {
            let b: LeaveGroupBody = parse(&body)?;
            gw.leave_group(system, &b.client_id, &b.group_name).await?;
            Ok(json!({}))
        }
        "get_online_list" => {
            let b: OptionalGroupBody = parse(&body)?;
            match b.group_name.as_deref() {
                Some(group) if !group.is_empty() => {
                    Ok(list(reg.group_clients(system, group).await?))
                }
                _ => Ok(list(reg.clients(system).await?)),
            }
        }
        "close_client" => {
            let b: CloseBody = parse(&body)?;
            gw.close_client(system, &b.client_id, b.code, &b.reason)
                .await?;
            Ok(json!({}))
        }
        "get_all_groups" => Ok(list(reg.groups(system).await?)),
        "bind_uid" => {
            let b: BindUidBody = parse(&body)?;
            gw.bind_uid(system, &b.client_id, non_empty("uid", &b.uid)?)
                .await?;
            Ok(json!({}))
        }
        "unbind_uid" => {
            let b: ClientBody = parse(&body)?;
            gw.unbind_uid(system, &b.client_id).await?;
            Ok(json!({}))
        }
        "is_uid_online" => {
            let b: UidBody = parse(&body)?;
            let online = !reg.clients_by_uid(system, &b.uid).await?.is_empty();
            Ok(json!({ "online": online }))
        }
        "get_uid_by_client_id" => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "uid": reg.uid_of(system, &b.client_id).await? }))
        }
        "get_client_ids_by_uid" => {
            let b: UidBody = parse(&body)?;
            Ok(list(reg.clients_by_uid(system, &b.uid).await?))
        }
        "get_client_count_by_group" => {
            let b: GroupBody = parse(&body)?;
            Ok(json!({ "count": reg.group_clients(system, &b.group_name).await?.len() }))
        }
        "get_client_ids_by_group" => {
            let b: GroupBody = parse(&body)?;
            Ok(list(reg.group_clients(system, &b.group_name).await?))
        }
        "get_uids_by_group" => {
            let b: GroupBody = parse(&body)?;
            Ok(list(reg.group_uids(system, &b.group_name).await?))
        }
        "get_uid_count_by_group" => {
            let b: GroupBody = parse(&body)?;
            Ok(json!({ "count": reg.group_uids(system, &b.group_name).await?.len() }))
        }
        "get_all_uid" => Ok(list(reg.uids(system).await?)),
        "is_online" => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "online": reg.client_exists(system, &b.client_id).await }))
        }
        "get_all_client_count" => Ok(json!({ "count": reg.client_count(system).await? })),
        "get_info" => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "info": reg.info(system, &b.client_id).await? }))
        }
        "set_info" => {
            let b: InfoBody = parse(&body)?;
            gw.set_info(system, &b.client_id, b.info).await?;
            Ok(json!({}))
        }
        "update_info" => {
            let b: InfoBody = parse(&body)?;
            gw.update_info(system, &b.client_id, b.info).await?;
            Ok(json!({}))
        }
        other => Err(ApiError::NotFound(format!("unknown operation: {other}"))),
    }
}

/// Build the envelope of a push once, hand it to `deliver`, answer `{messageId, count}`.
async fn send<F, Fut>(gw: &Gateway, body: &Value, deliver: F) -> Result<Value, ApiError>
where
    F: FnOnce(tokio_tungstenite::tungstenite::Message) -> Fut,
    Fut: Future<Output = Result<usize, crate::gateway::GatewayError>>,
{
    let push: Push = parse(body)?;
    let message_id = gw.next_message_id();
    let frame = Envelope {
        message_id: &message_id,
        send_user_id: &push.send_user_id,
        code: push.code,
        msg: &push.msg,
        data: &push.data,
    }
    .to_message();
    let count = deliver(frame).await?;
    Ok(json!({ "messageId": message_id, "count": count }))
}
