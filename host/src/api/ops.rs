//! The API operations, with the seeds' field names (seed 000/001 and GatewayWorker's seed 002).
//!
//! Every name in a body or header is parsed into its domain type ([`SystemId`], [`GroupName`],
//! [`Uid`]) before anything runs, so one rule answers for all of them (400 naming the field and
//! `limits.max_name_bytes`).

use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::op::Op;
use super::{ApiError, SYSTEM_HEADER};
use crate::config::LimitsConfig;
use crate::domain::close::{CloseCode, CloseReason};
use crate::domain::names::{GroupName, SystemId, Uid};
use crate::gateway::{Gateway, GatewayError};
use crate::registry::{Info, Member};
use crate::wire::Envelope;

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
struct SystemBody {
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

fn list(items: Vec<String>) -> Value {
    json!({ "count": items.len(), "list": items })
}

fn system_header(headers: &HeaderMap, limits: &LimitsConfig) -> Result<SystemId, ApiError> {
    let value = headers
        .get(SYSTEM_HEADER)
        .ok_or_else(|| ApiError::BadRequest(format!("missing header {SYSTEM_HEADER}")))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("header {SYSTEM_HEADER} is not ASCII")))?;
    Ok(SystemId::parse(value, limits)?)
}

/// What a client declares when it joins a group is kept per membership and echoed in every
/// notice: `userId` follows the name rule (it may be empty), `extend` is bounded like info.
fn member(b: &BindGroupBody, limits: &LimitsConfig) -> Result<Member, ApiError> {
    if b.user_id.len() > limits.max_name_bytes {
        return Err(ApiError::BadRequest(format!(
            "userId is {} bytes, over limits.max_name_bytes ({})",
            b.user_id.len(),
            limits.max_name_bytes
        )));
    }
    if b.extend.len() > limits.max_info_bytes {
        return Err(ApiError::ContentTooLarge(format!(
            "extend is {} bytes, over limits.max_info_bytes ({})",
            b.extend.len(),
            limits.max_info_bytes
        )));
    }
    Ok(Member {
        user_id: b.user_id.clone(),
        extend: b.extend.clone(),
    })
}

/// Run `op` and return its `data`.
pub async fn dispatch(
    gw: &Gateway,
    op: Op,
    headers: &HeaderMap,
    body: Value,
) -> Result<Value, ApiError> {
    let limits = &gw.config().limits;
    let group = |name: String| GroupName::parse(name, limits);
    let uid = |name: String| Uid::parse(name, limits);
    match op {
        Op::Register => {
            let b: SystemBody = parse(&body)?;
            let system = SystemId::parse(b.system_id, limits)?;
            let created = gw.register_system(&system).await?;
            return Ok(json!({ "created": created }));
        }
        Op::Unregister => {
            let b: SystemBody = parse(&body)?;
            let system = SystemId::parse(b.system_id, limits)?;
            let closed = gw.unregister_system(&system).await?;
            return Ok(json!({ "closed": closed }));
        }
        _ => {}
    }
    let system = system_header(headers, limits)?;
    let system = system.as_str();
    if !gw.registry().system_exists(system).await? {
        return Err(ApiError::NotFound(format!("unknown system: {system}")));
    }
    // An empty clientId is a malformed call, not a lookup of a client that is not there.
    if body.get("clientId").and_then(Value::as_str) == Some("") {
        return Err(ApiError::BadRequest("clientId must not be empty".into()));
    }
    let reg = gw.registry();
    match op {
        Op::Register | Op::Unregister => Err(ApiError::NotFound(op.name().into())),
        Op::SendToClient => {
            let target: ClientBody = parse(&body)?;
            send(gw, &body, |m| async move {
                gw.send_to_client(system, &target.client_id, m)
                    .await
                    .map(usize::from)
            })
            .await
        }
        Op::SendToClients => {
            let target: ClientsBody = parse(&body)?;
            send(gw, &body, |m| async move {
                gw.send_to_clients(system, &target.client_ids, m).await
            })
            .await
        }
        Op::SendToGroup => {
            let target: GroupBody = parse(&body)?;
            let g = group(target.group_name)?;
            // A count, not the member list: in a cluster Redis answers it with one HLEN.
            if reg.group_count(system, &g, &[]).await? == 0 {
                return Err(ApiError::NotFound(format!("unknown group: {g}")));
            }
            let g = &g;
            send(gw, &body, |m| async move {
                gw.send_to_group(system, g, m, &[]).await
            })
            .await
        }
        Op::SendToSystem | Op::SendToAll => {
            send(gw, &body, |m| async move {
                gw.send_to_system(system, m, &[]).await
            })
            .await
        }
        Op::SendToUid => {
            let target: UidBody = parse(&body)?;
            let u = uid(target.uid)?;
            let u = &u;
            send(
                gw,
                &body,
                |m| async move { gw.send_to_uid(system, u, m).await },
            )
            .await
        }
        Op::BindToGroup | Op::JoinGroup => {
            let b: BindGroupBody = parse(&body)?;
            let member = member(&b, limits)?;
            let g = group(b.group_name)?;
            gw.join_group(system, &b.client_id, &g, member).await?;
            Ok(json!({}))
        }
        Op::LeaveGroup => {
            let b: LeaveGroupBody = parse(&body)?;
            let g = group(b.group_name)?;
            gw.leave_group(system, &b.client_id, &g).await?;
            Ok(json!({}))
        }
        Op::GetOnlineList => {
            let b: OptionalGroupBody = parse(&body)?;
            match b.group_name {
                // No group, or an empty one (seed clients send ""): the whole system.
                Some(name) if !name.is_empty() => {
                    Ok(list(reg.group_clients(system, &group(name)?).await?))
                }
                _ => Ok(list(reg.clients(system).await?)),
            }
        }
        Op::CloseClient => {
            let b: CloseBody = parse(&body)?;
            let code = CloseCode::application(b.code).map_err(GatewayError::from)?;
            // Cut to what a close frame holds, on a character boundary (documented behaviour of
            // the API; a host call refuses a long reason instead, so the plugin learns of it).
            let reason = CloseReason::truncated(&b.reason);
            gw.close_client(system, &b.client_id, code, &reason).await?;
            Ok(json!({}))
        }
        Op::GetAllGroups => Ok(list(reg.groups(system).await?)),
        Op::BindUid => {
            let b: BindUidBody = parse(&body)?;
            gw.bind_uid(system, &b.client_id, &uid(b.uid)?).await?;
            Ok(json!({}))
        }
        Op::UnbindUid => {
            let b: ClientBody = parse(&body)?;
            gw.unbind_uid(system, &b.client_id).await?;
            Ok(json!({}))
        }
        Op::IsUidOnline => {
            let b: UidBody = parse(&body)?;
            let online = !reg.clients_by_uid(system, &uid(b.uid)?).await?.is_empty();
            Ok(json!({ "online": online }))
        }
        Op::GetUidByClientId => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "uid": reg.uid_of(system, &b.client_id).await? }))
        }
        Op::GetClientIdsByUid => {
            let b: UidBody = parse(&body)?;
            Ok(list(reg.clients_by_uid(system, &uid(b.uid)?).await?))
        }
        Op::GetClientCountByGroup => {
            let b: GroupBody = parse(&body)?;
            let n = reg.group_count(system, &group(b.group_name)?, &[]).await?;
            Ok(json!({ "count": n }))
        }
        Op::GetClientIdsByGroup => {
            let b: GroupBody = parse(&body)?;
            Ok(list(
                reg.group_clients(system, &group(b.group_name)?).await?,
            ))
        }
        Op::GetUidsByGroup => {
            let b: GroupBody = parse(&body)?;
            Ok(list(reg.group_uids(system, &group(b.group_name)?).await?))
        }
        Op::GetUidCountByGroup => {
            let b: GroupBody = parse(&body)?;
            let n = reg.group_uids(system, &group(b.group_name)?).await?.len();
            Ok(json!({ "count": n }))
        }
        Op::GetAllUid => Ok(list(reg.uids(system).await?)),
        Op::IsOnline => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "online": reg.client_exists(system, &b.client_id).await? }))
        }
        Op::GetAllClientCount => Ok(json!({ "count": reg.client_count(system).await? })),
        Op::GetInfo => {
            let b: ClientBody = parse(&body)?;
            Ok(json!({ "info": reg.info(system, &b.client_id).await? }))
        }
        Op::SetInfo => {
            let b: InfoBody = parse(&body)?;
            gw.set_info(system, &b.client_id, b.info).await?;
            Ok(json!({}))
        }
        Op::UpdateInfo => {
            let b: InfoBody = parse(&body)?;
            gw.update_info(system, &b.client_id, b.info).await?;
            Ok(json!({}))
        }
    }
}

/// Build the envelope of a push once, hand it to `deliver`, answer `{messageId, count}`.
async fn send<F, Fut>(gw: &Gateway, body: &Value, deliver: F) -> Result<Value, ApiError>
where
    F: FnOnce(tokio_tungstenite::tungstenite::Message) -> Fut,
    Fut: Future<Output = Result<usize, GatewayError>>,
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
