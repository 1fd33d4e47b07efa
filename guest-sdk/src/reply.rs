//! The JSON event envelope: replies `{"event","code","msg","data"}` and pushes `{"event","data"}`.
//!
//! A reply answers a request event: `code` 0 and `msg` `"success"` on success, a non-zero code
//! and a message on failure ([`CODE_ERROR`] by default, as hotgo's `SendError`). A push is
//! an event the plugin sends on its own initiative (a chat line, a quiz question): no code.
//!
//! ```no_run
//! use wasmgate_guest::reply::{push_to_group, reply_error, reply_ok};
//! use serde_json::json;
//!
//! # fn demo(client: &str) -> Result<(), wasmgate_guest::Error> {
//! reply_ok(client, "join", &json!({"room": "lobby"}))?;
//! reply_error(client, "say", "join the room first")?;
//! push_to_group("lobby", "said", &json!({"from": "alice", "text": "hi"}), &[])?;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

use crate::{Error, host};

/// `code` of a successful reply.
pub const CODE_OK: i32 = 0;
/// `code` of a failed reply when the handler gave no specific code.
pub const CODE_ERROR: i32 = -1;
/// `code` the [`Router`](crate::Router) uses for a frame that is not a JSON event, or event
/// data that does not decode.
pub const CODE_BAD_REQUEST: i32 = 400;
/// `code` the [`Router`](crate::Router) uses for an event nobody registered.
pub const CODE_UNKNOWN_EVENT: i32 = 404;
/// `code` of an [`EventError`](crate::EventError) made from a failed host call ([`Error`]).
pub const CODE_HOST_ERROR: i32 = 500;

/// The wire form of a reply.
#[derive(Debug, Serialize)]
struct Reply<'a, T: Serialize + ?Sized> {
    /// The event being answered, so a client can match replies to requests.
    event: &'a str,
    /// 0 on success, non-zero on failure.
    code: i32,
    /// `"success"` or what went wrong, for humans.
    msg: &'a str,
    /// The payload (`null` when there is none).
    data: &'a T,
}

/// The wire form of a push.
#[derive(Debug, Serialize)]
struct Push<'a, T: Serialize + ?Sized> {
    /// What happened.
    event: &'a str,
    /// The payload.
    data: &'a T,
}

/// Encode a reply envelope `{"event","code","msg","data"}` as JSON text.
pub fn reply_json<T: Serialize + ?Sized>(
    event: &str,
    code: i32,
    msg: &str,
    data: &T,
) -> Result<String, Error> {
    Ok(serde_json::to_string(&Reply {
        event,
        code,
        msg,
        data,
    })?)
}

/// Encode a push envelope `{"event","data"}` as JSON text.
pub fn push_json<T: Serialize + ?Sized>(event: &str, data: &T) -> Result<String, Error> {
    Ok(serde_json::to_string(&Push { event, data })?)
}

/// Reply success to `client`: `{"event":event,"code":0,"msg":"success","data":data}`.
pub fn reply_ok<T: Serialize + ?Sized>(client: &str, event: &str, data: &T) -> Result<(), Error> {
    host::send_to_client(client, reply_json(event, CODE_OK, "success", data)?)
}

/// Reply failure to `client` with [`CODE_ERROR`]: `{"event":event,"code":-1,"msg":msg,"data":null}`.
pub fn reply_error(client: &str, event: &str, msg: &str) -> Result<(), Error> {
    reply_error_code(client, event, CODE_ERROR, msg)
}

/// Reply failure to `client` with a specific non-zero `code`.
pub fn reply_error_code(client: &str, event: &str, code: i32, msg: &str) -> Result<(), Error> {
    host::send_to_client(client, reply_json(event, code, msg, &())?)
}

/// Push `{"event":event,"data":data}` to one client.
pub fn push<T: Serialize + ?Sized>(client: &str, event: &str, data: &T) -> Result<(), Error> {
    host::send_to_client(client, push_json(event, data)?)
}

/// Push `{"event":event,"data":data}` to a group, except `exclude`. Returns how many were queued.
pub fn push_to_group<T: Serialize + ?Sized>(
    group: &str,
    event: &str,
    data: &T,
    exclude: &[String],
) -> Result<u32, Error> {
    host::send_to_group(group, push_json(event, data)?, exclude)
}

/// Push `{"event":event,"data":data}` to every client bound to `uid`. Returns how many were queued.
pub fn push_to_uid<T: Serialize + ?Sized>(uid: &str, event: &str, data: &T) -> Result<u32, Error> {
    host::send_to_uid(uid, push_json(event, data)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn reply_envelope_has_all_four_fields() -> Result<(), Error> {
        let ok = reply_json("join", CODE_OK, "success", &json!({"room": "r"}))?;
        assert_eq!(
            parse(&ok),
            json!({"event": "join", "code": 0, "msg": "success", "data": {"room": "r"}})
        );
        let err = reply_json("say", CODE_ERROR, "nope", &())?;
        assert_eq!(
            parse(&err),
            json!({"event": "say", "code": -1, "msg": "nope", "data": null})
        );
        Ok(())
    }

    #[test]
    fn push_envelope_has_event_and_data_only() -> Result<(), Error> {
        let p = push_json("said", &json!({"text": "hi \"you\""}))?;
        assert_eq!(
            parse(&p),
            json!({"event": "said", "data": {"text": "hi \"you\""}})
        );
        Ok(())
    }
}
