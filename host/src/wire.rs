//! The wire format of what the gateway itself writes to clients: the welcome frame, pushed
//! messages (the [`Envelope`]) and the group notices (1001 online / 1002 offline). Plugins send
//! their frames as they are; only these shapes are the gateway's.

use serde::Serialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Bytes, Message};

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

/// The bytes of one final, unmasked (server-to-client) WebSocket frame carrying `payload`, as
/// RFC 6455 §5.2 lays them out: what tungstenite would write for the same message, built once
/// for every recipient of a broadcast.
pub fn server_frame(binary: bool, payload: &[u8]) -> Bytes {
    // Exactly the frame's size: a `Vec` with spare capacity becomes a `Bytes` through a second
    // allocation (its shared header), one the size of its contents does not.
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    encode_server_frame(&mut out, binary, payload);
    Bytes::from(out)
}

/// Bytes of a server frame's header (unmasked) for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        n if n <= usize::from(u16::MAX) => 4,
        _ => 10,
    }
}

/// Append the frame of [`server_frame`] to `out`.
pub(crate) fn encode_server_frame(out: &mut Vec<u8>, binary: bool, payload: &[u8]) {
    // Exactly: the outbound queue's per-thread buffer stays the size of the largest frame.
    out.reserve_exact(header_len(payload.len()) + payload.len());
    out.push(0x80 | if binary { 0x2 } else { 0x1 });
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
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

    /// The frame built once per broadcast is byte for byte what tungstenite writes.
    #[test]
    fn server_frame_matches_tungstenite() {
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        for (binary, len) in [
            (false, 0),
            (false, 100),
            (true, 125),
            (true, 126),
            (false, 70_000),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let op = if binary { Data::Binary } else { Data::Text };
            let frame = Frame::message(Bytes::from(payload.clone()), OpCode::Data(op), true);
            let mut expected = Vec::new();
            frame.format(&mut expected).expect("formats");
            assert_eq!(
                &server_frame(binary, &payload)[..],
                &expected[..],
                "len {len}"
            );
            let mut appended = b"before".to_vec();
            encode_server_frame(&mut appended, binary, &payload);
            assert_eq!(&appended[6..], &expected[..], "appended, len {len}");
            assert_eq!(header_len(len) + len, expected.len(), "header of len {len}");
        }
    }
}
