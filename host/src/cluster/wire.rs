//! What one node publishes to others: a [`Packet`] (kind, origin node, system, target, a list
//! of clients, close code and reason, payload), encoded once into bytes, and the names of the
//! channels it goes to.
//!
//! The encoding is a small length-prefixed binary form, not JSON: the payload is copied in
//! once, as is, and a receiver decodes it without parsing the message it carries.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Version byte at the head of every packet: a node of another version is refused, not misread.
const VERSION: u8 = 1;

/// What a packet asks the receiving node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Deliver the payload to `list` (clients of the receiving node).
    Clients = 1,
    /// Deliver the payload to the local members of group `target`, except `list`.
    Group = 2,
    /// Deliver the payload to every local client of the system, except `list`.
    System = 3,
    /// Close client `target` with `code` and `reason`.
    Close = 4,
    /// Client `list[0]`, held by the receiver, joined group `target` (through another node's
    /// API): the receiver starts listening to the group's channel.
    Joined = 5,
    /// Client `list[0]`, held by the receiver, left group `target`.
    Left = 6,
    /// Client `list[0]`, held by the receiver, had its uid or info changed through another
    /// node: the receiver reads it again for its [`mirror`](super::mirror).
    Touch = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Clients,
            2 => Kind::Group,
            3 => Kind::System,
            4 => Kind::Close,
            5 => Kind::Joined,
            6 => Kind::Left,
            7 => Kind::Touch,
            _ => return None,
        })
    }
}

/// One published message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What to do.
    pub kind: Kind,
    /// The node that published it; a node ignores its own packets (it delivered locally).
    pub origin: u32,
    /// The system (tenant).
    pub system: String,
    /// A group or a client, per [`Kind`]; empty otherwise.
    pub target: String,
    /// Recipients ([`Kind::Clients`]), excluded clients ([`Kind::Group`], [`Kind::System`]) or
    /// the client of a membership change.
    pub list: Vec<String>,
    /// Close code ([`Kind::Close`]).
    pub code: u16,
    /// Close reason ([`Kind::Close`]).
    pub reason: String,
    /// The frame to deliver, if any.
    pub payload: Option<Message>,
}

/// A packet that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster packet: {0}")]
pub struct DecodeError(&'static str);

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Result<String, DecodeError> {
    if buf.remaining() < 4 {
        return Err(DecodeError("truncated length"));
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(DecodeError("truncated string"));
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| DecodeError("string not UTF-8"))
}

impl Packet {
    /// A packet of `kind` for `system` from `origin`, with nothing else set.
    pub fn new(kind: Kind, origin: u32, system: &str) -> Self {
        Self {
            kind,
            origin,
            system: system.to_owned(),
            target: String::new(),
            list: Vec::new(),
            code: 0,
            reason: String::new(),
            payload: None,
        }
    }

    /// The bytes to publish.
    pub fn encode(&self) -> Bytes {
        let (flag, payload): (u8, &[u8]) = match &self.payload {
            None => (0, &[]),
            Some(Message::Text(t)) => (1, t.as_str().as_bytes()),
            Some(Message::Binary(b)) => (2, &b[..]),
            // Only data frames are sent between nodes; control frames never reach here.
            Some(_) => (0, &[]),
        };
        let names: usize = self.list.iter().map(|s| s.len() + 4).sum();
        let mut buf = BytesMut::with_capacity(
            24 + self.system.len() + self.target.len() + self.reason.len() + names + payload.len(),
        );
        buf.put_u8(VERSION);
        buf.put_u8(self.kind as u8);
        buf.put_u32(self.origin);
        buf.put_u16(self.code);
        buf.put_u8(flag);
        put_str(&mut buf, &self.system);
        put_str(&mut buf, &self.target);
        put_str(&mut buf, &self.reason);
        buf.put_u32(self.list.len() as u32);
        for s in &self.list {
            put_str(&mut buf, s);
        }
        buf.put_slice(payload);
        buf.freeze()
    }

    /// Read a packet published by a node.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        if buf.remaining() < 9 {
            return Err(DecodeError("truncated header"));
        }
        if buf.get_u8() != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let kind = Kind::from_u8(buf.get_u8()).ok_or(DecodeError("unknown kind"))?;
        let origin = buf.get_u32();
        let code = buf.get_u16();
        let flag = buf.get_u8();
        let system = get_str(&mut buf)?;
        let target = get_str(&mut buf)?;
        let reason = get_str(&mut buf)?;
        if buf.remaining() < 4 {
            return Err(DecodeError("truncated list"));
        }
        let n = buf.get_u32() as usize;
        // Each entry takes at least its 4-byte length: a bogus count cannot allocate much.
        if n > buf.remaining() / 4 {
            return Err(DecodeError("list longer than the packet"));
        }
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(get_str(&mut buf)?);
        }
        let payload = match flag {
            0 => None,
            1 => Some(Message::Text(
                Utf8Bytes::try_from(buf).map_err(|_| DecodeError("text not UTF-8"))?,
            )),
            2 => Some(Message::Binary(buf)),
            _ => return Err(DecodeError("unknown payload type")),
        };
        Ok(Self {
            kind,
            origin,
            system,
            target,
            list,
            code,
            reason,
            payload,
        })
    }
}

/// Names of the cluster's channels, under the configured prefix.
#[derive(Debug, Clone)]
pub struct Channels {
    prefix: String,
}

impl Channels {
    /// Channels under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The channel of one node: packets for its clients, closes, membership changes.
    pub fn node(&self, node: u32) -> String {
        format!("{}node:{node}", self.prefix)
    }

    /// The channel of a group, listened to by the nodes with local members of it.
    pub fn group(&self, system: &str, group: &str) -> String {
        format!("{}g:{group}", system_base(&self.prefix, system))
    }

    /// The channel of a system, listened to by the nodes with clients of it.
    pub fn system(&self, system: &str) -> String {
        format!("{}sys", system_base(&self.prefix, system))
    }
}

/// The start of every key and channel name of `system`: `{prefix}{len}:{system}:`. Names may
/// hold any character, `:` included: without the length, system `a` with group `x:g:y` and
/// system `a:g:x` with group `y` would share a channel, and tenants would see each other.
pub fn system_base(prefix: &str, system: &str) -> String {
    format!("{prefix}{}:{system}:", system.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        let mut p = Packet::new(Kind::Group, 7, "chat");
        p.target = "room".into();
        p.list = vec!["a".into(), "bé".into()];
        p.payload = Some(Message::text("héllo"));
        assert_eq!(Packet::decode(p.encode()).expect("decodes"), p);

        let mut c = Packet::new(Kind::Close, u32::MAX, "s");
        c.code = 4000;
        c.reason = "bye".into();
        assert_eq!(Packet::decode(c.encode()).expect("decodes"), c);

        let mut b = Packet::new(Kind::Clients, 1, "s");
        b.payload = Some(Message::binary(vec![0u8, 255, 3]));
        assert_eq!(Packet::decode(b.encode()).expect("decodes"), b);
    }

    #[test]
    fn malformed_packets_are_refused() {
        let good = Packet::new(Kind::System, 1, "s").encode();
        for cut in 0..good.len() {
            assert!(Packet::decode(good.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[0] = 9;
        assert!(Packet::decode(Bytes::from(bad)).is_err());
        let mut huge = BytesMut::from(&good[..]);
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Packet::decode(huge.freeze()).is_err());
    }
}
