//! Routing JSON event frames `{"event":"name","data":…}` to handlers (hotgo's model).

use serde_json::Value;

use crate::reply::{
    CODE_BAD_REQUEST, CODE_ERROR, CODE_HOST_ERROR, CODE_UNKNOWN_EVENT, reply_error_code,
};
use crate::{Error, Message, log_debug, log_warn};

/// Why a handler failed: sent back to the client as `{"event","code","msg","data":null}`.
///
/// Handlers return `Result<(), EventError>` and use `?` freely: host errors ([`Error`]) become
/// code [`CODE_HOST_ERROR`] (500) with the error's text, and JSON decoding errors (`serde_json::from_value`
/// on the event data) become [`CODE_BAD_REQUEST`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg} (code {code})")]
pub struct EventError {
    /// The non-zero `code` of the reply.
    pub code: i32,
    /// The `msg` of the reply, for humans.
    pub msg: String,
}

impl EventError {
    /// A failure with the default code [`CODE_ERROR`].
    pub fn new(msg: impl Into<String>) -> Self {
        Self::with_code(CODE_ERROR, msg)
    }

    /// A failure with a specific code.
    pub fn with_code(code: i32, msg: impl Into<String>) -> Self {
        EventError {
            code,
            msg: msg.into(),
        }
    }
}

impl From<Error> for EventError {
    fn from(e: Error) -> Self {
        EventError::with_code(CODE_HOST_ERROR, e.to_string())
    }
}

impl From<serde_json::Error> for EventError {
    fn from(e: serde_json::Error) -> Self {
        EventError::with_code(CODE_BAD_REQUEST, format!("invalid data: {e}"))
    }
}

/// What a handler returns.
pub type HandlerResult = Result<(), EventError>;

/// A handler: `(state, client, data)`, where `data` is the event's `data` (`null` if absent).
pub type Handler<S> = fn(&mut S, &str, Value) -> HandlerResult;

/// What happens to frames no handler takes: `(state, client, what)`.
pub type Fallback<S> = fn(&mut S, &str, Unrouted<'_>);

/// What happens when a handler fails: `(state, client, event, error)`.
pub type ErrorHook<S> = fn(&mut S, &str, &str, EventError);

/// A frame the router could not hand to a handler.
#[derive(Debug, Clone, PartialEq)]
pub enum Unrouted<'a> {
    /// A binary frame.
    Binary(&'a [u8]),
    /// A text frame that is not a JSON object with a string `event` field.
    Malformed {
        /// The frame as received.
        text: &'a str,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed event that no handler is registered for.
    UnknownEvent {
        /// The event name.
        event: &'a str,
        /// Its data (`null` if absent).
        data: Value,
    },
}

/// What [`Router::dispatch`] did with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A handler ran and succeeded.
    Handled,
    /// A handler ran and failed; the error hook got the error.
    Failed,
    /// No handler took the frame; the fallback got it.
    Unrouted,
}

/// Parse a text frame as an event: `(name, data)`, with `data` `null` when absent.
pub fn parse_event(text: &str) -> Result<(String, Value), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".to_owned());
    };
    let event = match obj.remove("event") {
        Some(Value::String(name)) => name,
        Some(_) => return Err("`event` is not a string".to_owned()),
        None => return Err("no `event` field".to_owned()),
    };
    let data = obj.remove("data").unwrap_or(Value::Null);
    Ok((event, data))
}

/// Routes JSON event frames to handlers by event name.
///
/// A text frame `{"event":"answer","data":{…}}` goes to the handler registered for `"answer"`
/// with the `data` value. Binary frames, malformed frames and unknown events go to the
/// fallback; handler errors go to the error hook. The defaults reply to the client:
/// - handler error → `{"event":<name>,"code":<err.code>,"msg":<err.msg>,"data":null}`,
/// - unknown event → code [`CODE_UNKNOWN_EVENT`] (404), `msg` `"unknown event"`,
/// - malformed frame → event `"error"`, code [`CODE_BAD_REQUEST`] (400),
/// - binary frame → ignored (logged at debug level).
///
/// A router is a small vector of function pointers: build it where convenient, for example
/// once per message (it costs a few hundred nanoseconds) or in a `thread_local!`.
///
/// ```no_run
/// use serde::Deserialize;
/// use serde_json::{Value, json};
/// use wasmgate_guest::{EventError, HandlerResult, Message, Plugin, Router, export_plugin, host};
/// use wasmgate_guest::reply::reply_ok;
///
/// #[derive(Default)]
/// struct Rooms;
///
/// #[derive(Deserialize)]
/// struct Join {
///     room: String,
/// }
///
/// impl Rooms {
///     fn join(&mut self, client: &str, data: Value) -> HandlerResult {
///         let Join { room } = serde_json::from_value(data)?; // bad data → code 400
///         if room.is_empty() {
///             return Err(EventError::new("empty room name")); // → code -1
///         }
///         host::join_group(client, &room)?; // host error → code 500
///         reply_ok(client, "join", &json!({ "room": room }))?;
///         Ok(())
///     }
/// }
///
/// impl Plugin for Rooms {
///     fn on_message(&mut self, client: &str, msg: Message) {
///         Router::new().on("join", Rooms::join).dispatch(self, client, &msg);
///     }
/// }
///
/// export_plugin!(Rooms);
/// # fn main() {}
/// ```
pub struct Router<S> {
    /// Registered handlers by event name; few enough that a linear scan beats hashing.
    routes: Vec<(&'static str, Handler<S>)>,
    /// Where unroutable frames go.
    fallback: Fallback<S>,
    /// Where handler errors go.
    on_error: ErrorHook<S>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Router<S> {
    /// A router with no routes and the default fallback and error hook (they reply to the
    /// client, see the type's docs).
    pub fn new() -> Self {
        Router {
            routes: Vec::new(),
            fallback: default_fallback::<S>,
            on_error: default_error_hook::<S>,
        }
    }

    /// Register `handler` for `event`. A later registration for the same name wins.
    pub fn on(mut self, event: &'static str, handler: Handler<S>) -> Self {
        self.routes.retain(|(name, _)| *name != event);
        self.routes.push((event, handler));
        self
    }

    /// Replace the fallback for binary frames, malformed frames and unknown events.
    pub fn fallback(mut self, fallback: Fallback<S>) -> Self {
        self.fallback = fallback;
        self
    }

    /// Replace what happens when a handler returns `Err`.
    pub fn on_error(mut self, hook: ErrorHook<S>) -> Self {
        self.on_error = hook;
        self
    }

    /// The registered event names, in registration order.
    pub fn events(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.iter().map(|(name, _)| *name)
    }

    /// Route one frame from `client`.
    pub fn dispatch(&self, state: &mut S, client: &str, msg: &Message) -> Outcome {
        let text = match msg {
            Message::Binary(bytes) => {
                (self.fallback)(state, client, Unrouted::Binary(bytes));
                return Outcome::Unrouted;
            }
            Message::Text(text) => text,
        };
        let (event, data) = match parse_event(text) {
            Ok(parsed) => parsed,
            Err(reason) => {
                (self.fallback)(state, client, Unrouted::Malformed { text, reason });
                return Outcome::Unrouted;
            }
        };
        let Some((_, handler)) = self.routes.iter().find(|(name, _)| *name == event) else {
            (self.fallback)(
                state,
                client,
                Unrouted::UnknownEvent {
                    event: &event,
                    data,
                },
            );
            return Outcome::Unrouted;
        };
        match handler(state, client, data) {
            Ok(()) => Outcome::Handled,
            Err(e) => {
                (self.on_error)(state, client, &event, e);
                Outcome::Failed
            }
        }
    }
}

/// The default fallback: error replies for malformed frames and unknown events, binary ignored.
pub fn default_fallback<S>(_state: &mut S, client: &str, what: Unrouted<'_>) {
    let sent = match what {
        Unrouted::Binary(bytes) => {
            log_debug!("ignoring a {}-byte binary frame from {client}", bytes.len());
            Ok(())
        }
        Unrouted::Malformed { reason, .. } => reply_error_code(
            client,
            "error",
            CODE_BAD_REQUEST,
            &format!("bad request: {reason}"),
        ),
        Unrouted::UnknownEvent { event, .. } => {
            reply_error_code(client, event, CODE_UNKNOWN_EVENT, "unknown event")
        }
    };
    if let Err(e) = sent {
        log_warn!("could not answer {client}: {e}");
    }
}

/// The default error hook: reply `{"event","code","msg","data":null}` to the client.
pub fn default_error_hook<S>(_state: &mut S, client: &str, event: &str, err: EventError) {
    if let Err(e) = reply_error_code(client, event, err.code, &err.msg) {
        log_warn!("could not answer {client} about {event}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Records everything the router does, so no host call is needed on the native target.
    #[derive(Default)]
    struct Rec {
        /// `kind:client:detail` lines, in order.
        log: Vec<String>,
    }

    fn answer(s: &mut Rec, client: &str, data: Value) -> HandlerResult {
        s.log.push(format!("answer:{client}:{data}"));
        Ok(())
    }

    fn fails(_: &mut Rec, _: &str, data: Value) -> HandlerResult {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Need {
            room: String,
        }
        let _: Need = serde_json::from_value(data)?;
        Err(EventError::with_code(7, "seven"))
    }

    fn fallback(s: &mut Rec, client: &str, what: Unrouted<'_>) {
        let line = match what {
            Unrouted::Binary(b) => format!("binary:{client}:{}", b.len()),
            Unrouted::Malformed { reason, .. } => format!("malformed:{client}:{reason}"),
            Unrouted::UnknownEvent { event, data } => format!("unknown:{client}:{event}:{data}"),
        };
        s.log.push(line);
    }

    fn hook(s: &mut Rec, client: &str, event: &str, e: EventError) {
        s.log
            .push(format!("error:{client}:{event}:{}:{}", e.code, e.msg));
    }

    fn router() -> Router<Rec> {
        Router::new()
            .on("answer", answer)
            .on("fails", fails)
            .fallback(fallback)
            .on_error(hook)
    }

    #[test]
    fn events_reach_their_handler_with_data() {
        let mut s = Rec::default();
        let r = router();
        let msg = Message::text(r#"{"event":"answer","data":{"choice":2}}"#);
        assert_eq!(r.dispatch(&mut s, "c1", &msg), Outcome::Handled);
        let no_data = Message::text(r#"{"event":"answer"}"#);
        assert_eq!(r.dispatch(&mut s, "c2", &no_data), Outcome::Handled);
        assert_eq!(s.log, [r#"answer:c1:{"choice":2}"#, "answer:c2:null"]);
    }

    #[test]
    fn handler_errors_go_to_the_hook_with_codes() {
        let mut s = Rec::default();
        let r = router();
        let bad = Message::text(r#"{"event":"fails","data":{}}"#);
        assert_eq!(r.dispatch(&mut s, "c", &bad), Outcome::Failed);
        let good = Message::text(r#"{"event":"fails","data":{"room":"x"}}"#);
        assert_eq!(r.dispatch(&mut s, "c", &good), Outcome::Failed);
        assert_eq!(s.log.len(), 2);
        assert!(
            s.log[0].starts_with("error:c:fails:400:invalid data: missing field `room`"),
            "{}",
            s.log[0]
        );
        assert_eq!(s.log[1], "error:c:fails:7:seven");
    }

    #[test]
    fn unroutable_frames_go_to_the_fallback() {
        let mut s = Rec::default();
        let r = router();
        let frames = [
            Message::binary(vec![1, 2, 3]),
            Message::text("plain text"),
            Message::text("[1,2]"),
            Message::text(r#"{"event":5}"#),
            Message::text(r#"{"data":1}"#),
            Message::text(r#"{"event":"nope","data":[1]}"#),
        ];
        for f in &frames {
            assert_eq!(r.dispatch(&mut s, "c", f), Outcome::Unrouted);
        }
        assert_eq!(s.log[0], "binary:c:3");
        assert!(s.log[1].starts_with("malformed:c:not JSON"), "{}", s.log[1]);
        assert_eq!(s.log[2], "malformed:c:not a JSON object");
        assert_eq!(s.log[3], "malformed:c:`event` is not a string");
        assert_eq!(s.log[4], "malformed:c:no `event` field");
        assert_eq!(s.log[5], "unknown:c:nope:[1]");
    }

    #[test]
    fn later_registration_wins_and_events_are_listed() {
        fn other(s: &mut Rec, _: &str, _: Value) -> HandlerResult {
            s.log.push("other".into());
            Ok(())
        }
        let r = router().on("answer", other);
        assert_eq!(r.events().collect::<Vec<_>>(), ["fails", "answer"]);
        let mut s = Rec::default();
        r.dispatch(&mut s, "c", &Message::text(r#"{"event":"answer"}"#));
        assert_eq!(s.log, ["other"]);
    }

    #[test]
    fn error_conversions_pick_codes() {
        let host = EventError::from(Error::UnknownClient("c9".into()));
        assert_eq!(
            host,
            EventError::with_code(CODE_HOST_ERROR, "unknown-client: c9")
        );
        let json = serde_json::from_value::<u8>(json!("x")).map_err(EventError::from);
        assert_eq!(json.map_err(|e| e.code), Err(CODE_BAD_REQUEST));
        assert_eq!(EventError::new("m").to_string(), "m (code -1)");
    }
}
