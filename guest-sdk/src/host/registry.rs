//! The registry: uids, groups, clients and their info maps.

use std::collections::BTreeMap;

use super::raw;
use crate::Error;

// ---- uids -----------------------------------------------------------------------------------

/// Bind a uid (a user id of the application) to a client. A client has at most one uid; a uid
/// may have several clients.
pub fn bind_uid(client: &str, uid: &str) -> Result<(), Error> {
    Ok(raw::bind_uid(client, uid)?)
}

/// Remove the uid of a client.
pub fn unbind_uid(client: &str) -> Result<(), Error> {
    Ok(raw::unbind_uid(client)?)
}

/// Whether at least one client is bound to `uid`.
pub fn is_uid_online(uid: &str) -> bool {
    raw::is_uid_online(uid)
}

/// The clients bound to `uid`.
pub fn get_client_ids_by_uid(uid: &str) -> Vec<String> {
    raw::get_client_ids_by_uid(uid)
}

/// The uid of a client, if it has one.
pub fn get_uid_by_client_id(client: &str) -> Result<Option<String>, Error> {
    Ok(raw::get_uid_by_client_id(client)?)
}

/// Every uid bound in the system.
pub fn get_all_uid() -> Vec<String> {
    raw::get_all_uid()
}

// ---- groups ---------------------------------------------------------------------------------

/// Add a client to a group with empty member data. The group's other members get an online
/// notice (1001). [`join_group_as`] sets the notice's `userId` and `extend`.
pub fn join_group(client: &str, group: &str) -> Result<(), Error> {
    join_group_as(client, group, "", "")
}

/// Add a client to a group with member data: the online (1001) and offline (1002) notices of
/// the group carry `user_id` and `extend` (like the API's `bind_to_group`). Joining again
/// replaces them.
pub fn join_group_as(client: &str, group: &str, user_id: &str, extend: &str) -> Result<(), Error> {
    let member = crate::Member {
        user_id: user_id.to_owned(),
        extend: extend.to_owned(),
    };
    Ok(raw::join_group(client, group, &member)?)
}

/// The groups a client is in, sorted.
pub fn get_groups_by_client_id(client: &str) -> Result<Vec<String>, Error> {
    Ok(raw::get_groups_by_client_id(client)?)
}

/// Remove a client from a group. The remaining members get an offline notice (1002).
pub fn leave_group(client: &str, group: &str) -> Result<(), Error> {
    Ok(raw::leave_group(client, group)?)
}

/// How many clients a group has.
pub fn get_client_count_by_group(group: &str) -> u32 {
    raw::get_client_count_by_group(group)
}

/// The clients of a group.
pub fn get_client_ids_by_group(group: &str) -> Vec<String> {
    raw::get_client_ids_by_group(group)
}

/// The distinct uids of a group's clients.
pub fn get_uids_by_group(group: &str) -> Vec<String> {
    raw::get_uids_by_group(group)
}

/// How many distinct uids a group has.
pub fn get_uid_count_by_group(group: &str) -> u32 {
    raw::get_uid_count_by_group(group)
}

/// Every group of the system that has at least one member.
pub fn get_all_groups() -> Vec<String> {
    raw::get_all_groups()
}

// ---- clients --------------------------------------------------------------------------------

/// Close a client's connection with a close code (1000, or 3000–4999) and a reason.
pub fn close_client(client: &str, code: u16, reason: &str) -> Result<(), Error> {
    Ok(raw::close_client(client, code, reason)?)
}

/// Whether a client is connected.
pub fn is_online(client: &str) -> bool {
    raw::is_online(client)
}

/// How many clients the system has.
pub fn get_all_client_count() -> u32 {
    raw::get_all_client_count()
}

/// Every client of the system.
pub fn get_all_client_ids() -> Result<Vec<String>, Error> {
    Ok(raw::get_all_client_ids()?)
}

/// A client's info map. If the host returned a key twice, the last value wins.
pub fn get_info(client: &str) -> Result<BTreeMap<String, String>, Error> {
    Ok(raw::get_info(client)?.into_iter().collect())
}

/// One entry of a client's info map.
pub fn get_info_field(client: &str, key: &str) -> Result<Option<String>, Error> {
    Ok(raw::get_info(client)?
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// Replace a client's info map.
///
/// Accepts any iterator of pairs: a `BTreeMap`, a `HashMap`, `[("k", "v")]`, ...
pub fn set_info<K, V>(client: &str, info: impl IntoIterator<Item = (K, V)>) -> Result<(), Error>
where
    K: Into<String>,
    V: Into<String>,
{
    Ok(raw::set_info(client, &to_info(info))?)
}

/// Merge entries into a client's info map (existing keys are overwritten).
pub fn update_info<K, V>(client: &str, info: impl IntoIterator<Item = (K, V)>) -> Result<(), Error>
where
    K: Into<String>,
    V: Into<String>,
{
    Ok(raw::update_info(client, &to_info(info))?)
}

fn to_info<K, V>(info: impl IntoIterator<Item = (K, V)>) -> Vec<(String, String)>
where
    K: Into<String>,
    V: Into<String>,
{
    info.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}
