//! Sending messages to clients, groups, uids and the whole system.

use serde::Serialize;

use super::raw;
use crate::{Error, Message};

/// Send a message to one client.
///
/// `msg` is anything that converts into a [`Message`]: `&str`/`String` give a text frame,
/// `Vec<u8>`/`&[u8]` a binary frame.
pub fn send_to_client(client: &str, msg: impl Into<Message>) -> Result<(), Error> {
    Ok(raw::send_to_client(client, &msg.into())?)
}

/// Send a message to several clients; unknown ids are skipped. Returns how many were queued.
pub fn send_to_clients(clients: &[String], msg: impl Into<Message>) -> Result<u32, Error> {
    Ok(raw::send_to_clients(clients, &msg.into())?)
}

/// Send a message to every member of `group` except the clients in `exclude`.
/// Returns how many clients it was queued for.
pub fn send_to_group(
    group: &str,
    msg: impl Into<Message>,
    exclude: &[String],
) -> Result<u32, Error> {
    Ok(raw::send_to_group(group, &msg.into(), exclude)?)
}

/// Send a message to every client of the system except `exclude`.
/// Returns how many clients it was queued for.
pub fn send_to_system(msg: impl Into<Message>, exclude: &[String]) -> Result<u32, Error> {
    Ok(raw::send_to_system(&msg.into(), exclude)?)
}

/// Send a message to every client bound to `uid`. Returns how many clients it was queued for.
pub fn send_to_uid(uid: &str, msg: impl Into<Message>) -> Result<u32, Error> {
    Ok(raw::send_to_uid(uid, &msg.into())?)
}

/// Send `value` as a JSON text frame to one client.
pub fn send_json_to_client<T: Serialize + ?Sized>(client: &str, value: &T) -> Result<(), Error> {
    send_to_client(client, Message::json(value)?)
}

/// Send `value` as a JSON text frame to several clients. Returns how many were queued.
pub fn send_json_to_clients<T: Serialize + ?Sized>(
    clients: &[String],
    value: &T,
) -> Result<u32, Error> {
    send_to_clients(clients, Message::json(value)?)
}

/// Send `value` as a JSON text frame to a group, except `exclude`. Returns how many were queued.
pub fn send_json_to_group<T: Serialize + ?Sized>(
    group: &str,
    value: &T,
    exclude: &[String],
) -> Result<u32, Error> {
    send_to_group(group, Message::json(value)?, exclude)
}

/// Send `value` as a JSON text frame to the whole system, except `exclude`.
/// Returns how many were queued.
pub fn send_json_to_system<T: Serialize + ?Sized>(
    value: &T,
    exclude: &[String],
) -> Result<u32, Error> {
    send_to_system(Message::json(value)?, exclude)
}

/// Send `value` as a JSON text frame to every client bound to `uid`. Returns how many were queued.
pub fn send_json_to_uid<T: Serialize + ?Sized>(uid: &str, value: &T) -> Result<u32, Error> {
    send_to_uid(uid, Message::json(value)?)
}
