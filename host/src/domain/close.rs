//! Close codes, close reasons and why the gateway closes a client (see the module docs of
//! `domain`).
//!
//! Three rules live here and nowhere else:
//! - which close codes an API caller or a plugin may ask for ([`CloseCode::application`]: 1000
//!   or 3000–4999; the 1xxx range is the protocol's and the gateway's own);
//! - that a close reason fits the 123 bytes a close frame holds ([`CloseReason`]);
//! - why the gateway closes a client ([`CloseCause`]): a slow consumer is recognised by its
//!   cause, never by comparing reason text.

use std::fmt;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

/// Why a close code or reason was refused. The API answers 400, host calls
/// `invalid-argument`, with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// A code outside what an API caller or plugin may send.
    #[error("invalid close code {0}: use 1000 or 3000-4999")]
    Code(u16),
    /// A reason longer than a close frame holds.
    #[error("close reason is {0} bytes, over the {max} a close frame holds", max = CloseReason::MAX_BYTES)]
    ReasonTooLong(usize),
}

/// A WebSocket close code (RFC 6455 §7.4), as the gateway sends it, receives it, logs it,
/// counts it and hands it to a plugin's `on-close`.
///
/// The constants are the codes the gateway itself uses; [`CloseCode::application`] checks a
/// code asked for from outside; [`CloseCode::from_peer`] records what a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: going away (the gateway shuts down, the client was idle, its system was removed).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error (the client broke the WebSocket framing rules).
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1005: the peer's close frame carried no code. Recorded, never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: abnormal closure, the connection ended without a close frame (TCP reset, EOF, a
    /// write that failed or timed out). Recorded, never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message that is not UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: policy violation (slow consumer, a client over its inbound limits).
    pub const POLICY: Self = Self(1008);
    /// 1009: a message or frame over `max_message_size`.
    pub const TOO_BIG: Self = Self(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// A code an API caller (`close_client`) or a plugin (`close-client`, an `on-connect`
    /// reject) asks for: 1000 or 3000–4999. The other 1xxx codes mean something in the
    /// protocol (1006 must never be sent at all), and 5000+ are not close codes.
    pub fn application(code: u16) -> Result<Self, CloseError> {
        if code == 1000 || (3000..=4999).contains(&code) {
            Ok(Self(code))
        } else {
            Err(CloseError::Code(code))
        }
    }

    /// A code as a client sent it in its close frame, unchecked (tungstenite already refused
    /// codes that may not appear on the wire).
    pub const fn from_peer(code: u16) -> Self {
        Self(code)
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl From<CloseCode> for WsCloseCode {
    fn from(code: CloseCode) -> Self {
        WsCloseCode::from(code.0)
    }
}

/// Kept while callers move from tungstenite's type to this one.
impl From<WsCloseCode> for CloseCode {
    fn from(code: WsCloseCode) -> Self {
        Self(u16::from(code))
    }
}

/// A close reason: at most [`CloseReason::MAX_BYTES`] bytes of UTF-8, the room a close frame
/// has after its code (125 bytes of control-frame payload minus 2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CloseReason(String);

impl CloseReason {
    /// The longest reason a close frame holds, in bytes.
    pub const MAX_BYTES: usize = 123;

    /// `reason`, cut to [`Self::MAX_BYTES`] on a character boundary. For reasons the gateway
    /// writes or relays (a plugin's reject), where a cut is better than no close.
    pub fn truncated(reason: &str) -> Self {
        let mut end = reason.len().min(Self::MAX_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Self(reason[..end].to_owned())
    }

    /// `reason` if it fits, else [`CloseError::ReasonTooLong`]. For reasons asked for from
    /// outside (API, host calls), so the caller learns its text would not arrive whole.
    pub fn parse(reason: &str) -> Result<Self, CloseError> {
        if reason.len() > Self::MAX_BYTES {
            return Err(CloseError::ReasonTooLong(reason.len()));
        }
        Ok(Self(reason.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cutting, like [`CloseReason::truncated`]: kept for callers that pass text.
impl From<&str> for CloseReason {
    fn from(reason: &str) -> Self {
        Self::truncated(reason)
    }
}

/// Why the gateway closes a client that is still connected (asked through its outbound queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// An API caller, a plugin or the gateway asked for this code and reason; what is queued
    /// to the client is sent first.
    Requested {
        /// The code to send.
        code: CloseCode,
        /// The reason to send.
        reason: CloseReason,
    },
    /// The client's outbound queue overflowed: 1008 "slow consumer", and what is queued is
    /// dropped (the client could not take it anyway).
    SlowConsumer,
    /// The gateway shuts down: 1001 "server shutting down", after what is queued.
    Shutdown,
}

impl CloseCause {
    /// The code the close frame carries.
    pub fn code(&self) -> CloseCode {
        match self {
            Self::Requested { code, .. } => *code,
            Self::SlowConsumer => CloseCode::POLICY,
            Self::Shutdown => CloseCode::GOING_AWAY,
        }
    }

    /// The reason the close frame carries.
    pub fn reason(&self) -> &str {
        match self {
            Self::Requested { reason, .. } => reason.as_str(),
            Self::SlowConsumer => "slow consumer",
            Self::Shutdown => "server shutting down",
        }
    }

    /// Whether what is still queued to the client is worth sending before the close frame.
    pub fn flushes_queue(&self) -> bool {
        !matches!(self, Self::SlowConsumer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_codes_are_1000_and_3000_to_4999() {
        for ok in [1000, 3000, 4000, 4999] {
            assert_eq!(CloseCode::application(ok).map(CloseCode::get), Ok(ok));
        }
        for bad in [0, 999, 1001, 1006, 1015, 2999, 5000, u16::MAX] {
            assert_eq!(CloseCode::application(bad), Err(CloseError::Code(bad)));
        }
    }

    #[test]
    fn reasons_are_cut_on_char_boundaries_or_refused() {
        let long = "é".repeat(100);
        let cut = CloseReason::truncated(&long);
        assert_eq!(cut.as_str().len(), 122);
        assert!(long.starts_with(cut.as_str()));
        assert_eq!(
            CloseReason::parse(&long),
            Err(CloseError::ReasonTooLong(200))
        );
        let exact = "x".repeat(CloseReason::MAX_BYTES);
        assert_eq!(CloseReason::parse(&exact).map(|r| r.0), Ok(exact));
    }

    #[test]
    fn causes_carry_their_code_and_reason() {
        assert_eq!(CloseCause::SlowConsumer.code(), CloseCode::POLICY);
        assert!(!CloseCause::SlowConsumer.flushes_queue());
        assert_eq!(CloseCause::Shutdown.code().get(), 1001);
        let requested = CloseCause::Requested {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
        };
        assert_eq!((requested.code().get(), requested.reason()), (1000, "bye"));
        assert!(requested.flushes_queue());
    }
}
