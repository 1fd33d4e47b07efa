//! Conveniences on the WIT types a plugin handles: [`Message`], [`Reject`], [`CloseReason`],
//! [`ConnectContext`], [`Timer`].

use serde::Serialize;

use crate::Error;
pub use crate::bindings::wasmgate::plugin::types::{
    CloseReason, ConnectContext, Level, Member, Message, Reject, Timer,
};

impl ConnectContext {
    /// The first value of query parameter `name` (`?room=lobby` → `Some("lobby")`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of request header `name` (case-insensitive), if the gateway passes it
    /// on (`plugin.connect_headers`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The verified token's claims decoded into `T` (`None` when the system requires no token).
    pub fn claims_as<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        self.claims
            .as_deref()
            .map(|c| serde_json::from_str(c).map_err(Error::from))
    }
}

impl Message {
    /// A text frame.
    pub fn text(text: impl Into<String>) -> Self {
        Message::Text(text.into())
    }

    /// A binary frame.
    pub fn binary(bytes: impl Into<Vec<u8>>) -> Self {
        Message::Binary(bytes.into())
    }

    /// A text frame holding `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Ok(Message::Text(serde_json::to_string(value)?))
    }

    /// The text of a text frame, `None` for a binary frame.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
        }
    }

    /// The payload as bytes, whatever the frame type (a text frame gives its UTF-8 bytes).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Whether this is a text frame.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Whether this is a binary frame.
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Message::Text(text.clone())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(bytes)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Message::Binary(bytes.to_vec())
    }
}

impl From<&Message> for Message {
    fn from(msg: &Message) -> Self {
        msg.clone()
    }
}

impl From<serde_json::Value> for Message {
    /// A text frame holding the JSON text of the value.
    fn from(value: serde_json::Value) -> Self {
        Message::Text(value.to_string())
    }
}

impl From<&serde_json::Value> for Message {
    /// A text frame holding the JSON text of the value.
    fn from(value: &serde_json::Value) -> Self {
        Message::Text(value.to_string())
    }
}

impl Reject {
    /// A refusal with a close code (use 4000–4999 for application reasons) and a reason
    /// (at most 123 bytes, the WebSocket limit).
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Reject {
            code,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_pick_the_frame_type() {
        assert_eq!(Message::from("hi"), Message::Text("hi".into()));
        assert_eq!(Message::from(String::from("hi")), Message::text("hi"));
        assert_eq!(Message::from(vec![1u8, 2]), Message::Binary(vec![1, 2]));
        assert_eq!(Message::from(&[3u8][..]), Message::binary([3u8]));
        assert_eq!(
            Message::from(serde_json::json!({"a": 1})),
            Message::text(r#"{"a":1}"#)
        );
    }

    #[test]
    fn accessors_see_both_frame_types() {
        let t = Message::text("héllo");
        assert_eq!(t.as_text(), Some("héllo"));
        assert_eq!(t.len(), 6);
        assert!(t.is_text() && !t.is_binary());
        let b = Message::binary(vec![0xff]);
        assert_eq!(b.as_text(), None);
        assert_eq!(b.as_bytes(), &[0xff]);
        assert!(b.is_binary() && !b.is_empty());
    }

    #[test]
    fn json_serializes_to_text() -> Result<(), Error> {
        let m = Message::json(&serde_json::json!(["x", 2]))?;
        assert_eq!(m.as_text(), Some(r#"["x",2]"#));
        Ok(())
    }

    #[test]
    fn connect_context_lookups() {
        let ctx = ConnectContext {
            query: vec![("room".into(), "lobby".into()), ("room".into(), "b".into())],
            headers: vec![("origin".into(), "http://x".into())],
            peer: "127.0.0.1:5".into(),
            uid: None,
            claims: Some(r#"{"sub":"u1","level":3}"#.into()),
        };
        assert_eq!(ctx.query_param("room"), Some("lobby"));
        assert_eq!(ctx.query_param("nick"), None);
        assert_eq!(ctx.header("Origin"), Some("http://x"));
        let claims: serde_json::Value = ctx.claims_as().and_then(Result::ok).unwrap_or_default();
        assert_eq!(claims["level"], 3);
        let none = ConnectContext {
            claims: None,
            ..ctx
        };
        assert!(none.claims_as::<serde_json::Value>().is_none());
    }

    #[test]
    fn reject_new_keeps_code_and_reason() {
        let r = Reject::new(4001, "no");
        assert_eq!((r.code, r.reason.as_str()), (4001, "no"));
    }
}
