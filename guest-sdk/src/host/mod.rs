//! Typed wrappers for every function of the WIT `host` interface.
//!
//! Names mirror the WIT names (`send-to-client` is [`send_to_client`]). Every call acts on the
//! system of the event being handled. Fallible calls return [`Result<_, Error>`](crate::Error);
//! JSON conveniences (`send_json_*`, [`kv_get_json`], [`kv_set_json`], [`set_timer_json`]) sit
//! next to the raw calls.
//!
//! These functions only work inside a component run by the gateway: on a native target (unit
//! tests, doc tests) the generated import stubs panic with `unreachable`. Keep host calls out of
//! native unit tests, or test the pure logic around them.
//!
//! ```no_run
//! use wasmgate_guest::host;
//!
//! # fn demo(client: &str) -> Result<(), wasmgate_guest::Error> {
//! host::bind_uid(client, "alice")?;
//! host::join_group(client, "lobby")?;
//! let n = host::send_json_to_group("lobby", &serde_json::json!({"hello": "alice"}), &[])?;
//! host::kv_set_json("greeted", &n)?;
//! # Ok(())
//! # }
//! ```

mod kv;
mod misc;
mod registry;
mod send;

pub use kv::{
    kv_delete, kv_get, kv_get_json, kv_get_string, kv_incr, kv_keys, kv_set, kv_set_json,
};
pub use misc::{
    cancel_timer, log, now_ms, set_client_timer, set_client_timer_json, set_timer, set_timer_json,
    system_id,
};
pub use registry::{
    bind_uid, close_client, get_all_client_count, get_all_client_ids, get_all_groups, get_all_uid,
    get_client_count_by_group, get_client_ids_by_group, get_client_ids_by_uid,
    get_groups_by_client_id, get_info, get_info_field, get_uid_by_client_id,
    get_uid_count_by_group, get_uids_by_group, is_online, is_uid_online, join_group, join_group_as,
    leave_group, set_info, unbind_uid, update_info,
};
pub use send::{
    send_json_to_client, send_json_to_clients, send_json_to_group, send_json_to_system,
    send_json_to_uid, send_to_client, send_to_clients, send_to_group, send_to_system, send_to_uid,
};

/// The raw generated host interface, for what the wrappers do not cover.
pub(crate) use crate::bindings::wasmgate::plugin::host as raw;
