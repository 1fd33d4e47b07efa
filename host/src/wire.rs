//! The wire format of what the gateway itself writes to clients: the welcome frame, pushed
//! messages (the [`Envelope`]) and the group notices (1001 online / 1002 offline). Plugins send
//! their frames as they are; only these shapes are the gateway's.

use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// Code of the notice a group's members get when a client joins it.
pub const NOTICE_ONLINE: i64 = 1001;
/// Code of the notice a group's members get when a client leaves it or disconnects.
pub const NOTICE_OFFLINE: i64 = 1002;

/// A message as the seeds push it to a client: `{"messageId","sendUserId","code","msg","data"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a> {
    /// Unique id of this message, also answered to the API caller.
    pub message_id: &'a str,
    /// Who sent it, as the API caller said.
    pub send_user_id: &'a str,
    /// Application status code.
    pub code: i64,
    /// Application status message.
    pub msg: &'a str,
    /// Application payload, passed through unchanged.
    pub data: &'a Value,
}

impl Envelope<'_> {
    /// The text frame carrying this envelope, serialized once whatever the number of recipients.
    pub fn to_message(&self) -> Message {
        Message::text(serde_json::to_string(self).unwrap_or_default())
    }
}

/// The first frame a client receives: `{"code":0,"msg":"success","data":{"clientId":…}}`.
pub fn welcome(client: &str) -> Message {
    let frame = serde_json::json!({"code": 0, "msg": "success", "data": {"clientId": client}});
    Message::text(frame.to_string())
}

/// A group notice (`code` is [`NOTICE_ONLINE`] or [`NOTICE_OFFLINE`]) about `client`, with what
/// it declared when it joined: `data {clientId,userId,extend}`.
pub fn notice(message_id: &str, code: i64, client: &str, user_id: &str, extend: &str) -> Message {
    let msg = if code == NOTICE_ONLINE {
        "online"
    } else {
        "offline"
    };
    let data = serde_json::json!({ "clientId": client, "userId": user_id, "extend": extend });
    Envelope {
        message_id,
        send_user_id: "",
        code,
        msg,
        data: &data,
    }
    .to_message()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(
            welcome("c1").to_text().ok(),
            Some(r#"{"code":0,"data":{"clientId":"c1"},"msg":"success"}"#)
        );
        let n = notice("m", NOTICE_OFFLINE, "c", "u", "e");
        let v: Value = serde_json::from_str(n.to_text().unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["msg"], "offline");
        assert_eq!(v["code"], 1002);
        assert_eq!(v["data"]["userId"], "u");
    }
}
