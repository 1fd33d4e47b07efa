//! The limits a plugin's host calls are held to, as pure checks, in one place: the gateway's
//! host calls enforce them, and the test kit (`wasmgate-testkit`) calls the same functions so a
//! plugin author's tests see the answers the gateway gives. Before, the kit copied numbers and
//! drifted (it capped names at 128 bytes where the gateway allows 256, and enforced no quota).
//!
//! Each check answers a [`Refusal`], which both sides turn into their WIT `error`
//! (`invalid-argument` or `quota-exceeded`, with this message).

use crate::config::{Config, LimitsConfig};
use crate::domain::close::{CloseCode, CloseReason};
use crate::domain::names::{GroupName, Uid};
use crate::gateway::GatewayError;
use crate::registry::{Info, RegistryError};

pub use super::LOG_LINES_PER_EVENT;
pub use super::kv::{MAX_KEY_BYTES, MAX_KEYS, MAX_TOTAL_BYTES, MAX_VALUE_BYTES};
pub use super::timers::{MAX_DELAY, MAX_PAYLOAD_BYTES, MAX_PENDING};

/// Why a host call was refused: the WIT error it becomes, with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `invalid-argument`: the call can never succeed with these arguments.
    #[error("invalid-argument: {0}")]
    InvalidArgument(String),
    /// `quota-exceeded`: a limit of the plugin, the client or the system is reached.
    #[error("quota-exceeded: {0}")]
    QuotaExceeded(String),
}

fn invalid(e: impl Into<GatewayError>) -> Refusal {
    Refusal::InvalidArgument(e.into().to_string())
}

/// A group name (`limits.max_name_bytes`, not empty).
pub fn group(name: &str, limits: &LimitsConfig) -> Result<GroupName, Refusal> {
    GroupName::parse(name, limits).map_err(invalid)
}

/// A uid (same rule as group names).
pub fn uid(uid: &str, limits: &LimitsConfig) -> Result<Uid, Refusal> {
    Uid::parse(uid, limits).map_err(invalid)
}

/// Member data of `join-group` (the API's `bind_to_group` rule): `user-id` at most
/// `limits.max_name_bytes` (it may be empty), `extend` at most `limits.max_info_bytes`.
pub fn member(user_id: &str, extend: &str, limits: &LimitsConfig) -> Result<(), Refusal> {
    if user_id.len() > limits.max_name_bytes {
        return Err(Refusal::InvalidArgument(format!(
            "user-id is {} bytes, over limits.max_name_bytes ({})",
            user_id.len(),
            limits.max_name_bytes
        )));
    }
    if extend.len() > limits.max_info_bytes {
        return Err(Refusal::QuotaExceeded(format!(
            "extend is {} bytes, over limits.max_info_bytes ({})",
            extend.len(),
            limits.max_info_bytes
        )));
    }
    Ok(())
}

/// `close-client`'s code (1000 or 3000–4999) and reason (at most 123 bytes).
pub fn close(code: u16, reason: &str) -> Result<(CloseCode, CloseReason), Refusal> {
    let code = CloseCode::application(code).map_err(invalid)?;
    let reason = CloseReason::parse(reason).map_err(invalid)?;
    Ok((code, reason))
}

/// The code an `on-connect` reject closes with: an invalid one becomes 4000.
pub fn reject_code(code: u16) -> u16 {
    CloseCode::application(code).map_or(4000, CloseCode::get)
}

/// A client's info map after `set-info`/`update-info` (`limits.max_info_entries`,
/// `limits.max_info_bytes`): `quota-exceeded`, as the registry answers.
pub fn info(info: &Info, limits: &LimitsConfig) -> Result<(), Refusal> {
    let max = limits.max_info_entries;
    if info.len() > max {
        let e = RegistryError::InfoTooManyEntries {
            len: info.len(),
            max,
        };
        return Err(Refusal::QuotaExceeded(e.to_string()));
    }
    let len: usize = info.iter().map(|(k, v)| k.len() + v.len()).sum();
    if len > limits.max_info_bytes {
        let e = RegistryError::InfoTooLarge {
            len,
            max: limits.max_info_bytes,
        };
        return Err(Refusal::QuotaExceeded(e.to_string()));
    }
    Ok(())
}

/// Joining one more group: the client's groups (`limits.max_groups_per_client`) and the
/// system's (`limits.max_groups_per_system`, counted only when the group is new).
pub fn join(
    client: &str,
    system: &str,
    client_groups: usize,
    system_groups: usize,
    group_exists: bool,
    limits: &LimitsConfig,
) -> Result<(), Refusal> {
    if client_groups >= limits.max_groups_per_client {
        let e = RegistryError::TooManyGroupsForClient {
            client: client.to_owned(),
            max: limits.max_groups_per_client,
        };
        return Err(Refusal::QuotaExceeded(e.to_string()));
    }
    if !group_exists && system_groups >= limits.max_groups_per_system {
        let e = RegistryError::TooManyGroups {
            system: system.to_owned(),
            max: limits.max_groups_per_system,
        };
        return Err(Refusal::QuotaExceeded(e.to_string()));
    }
    Ok(())
}

/// Send calls one event may make: the per-client outbound queue bound (`max_queue_messages`),
/// so one event can never by itself overflow the queue of a client that keeps up.
pub fn sends_per_event(config: &Config) -> u32 {
    u32::try_from(config.max_queue_messages.max(1)).unwrap_or(u32::MAX)
}

/// The refusal of a send past the event's budget.
pub fn too_many_sends(budget: u32) -> Refusal {
    Refusal::QuotaExceeded(format!("at most {budget} sends per event"))
}

/// A key-value key: not empty, at most [`MAX_KEY_BYTES`].
pub fn kv_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() {
        return Err(Refusal::InvalidArgument("empty key".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Refusal::InvalidArgument(format!(
            "key longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Setting `key` to a value of `value_len` bytes in a store of `keys` keys and `bytes` bytes
/// (keys plus values), where the key's current entry takes `old` bytes (0 when new): the
/// store's bytes afterwards.
pub fn kv_set(
    key: &str,
    value_len: usize,
    keys: usize,
    bytes: usize,
    old: usize,
) -> Result<usize, Refusal> {
    kv_key(key)?;
    if value_len > MAX_VALUE_BYTES {
        return Err(Refusal::QuotaExceeded(format!(
            "value larger than {MAX_VALUE_BYTES} bytes"
        )));
    }
    if old == 0 && keys >= MAX_KEYS {
        return Err(Refusal::QuotaExceeded(format!(
            "store holds {MAX_KEYS} keys already"
        )));
    }
    let after = bytes - old + key.len() + value_len;
    if after > MAX_TOTAL_BYTES {
        return Err(Refusal::QuotaExceeded(format!(
            "store would exceed {MAX_TOTAL_BYTES} bytes"
        )));
    }
    Ok(after)
}

/// `kv-incr`: the decimal integer `raw` (missing counts as 0) plus `delta`.
pub fn kv_incr(key: &str, raw: Option<&[u8]>, delta: i64) -> Result<i64, Refusal> {
    kv_key(key)?;
    let current = match raw {
        None => 0,
        Some(raw) => std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                Refusal::InvalidArgument(format!("value of {key} is not a decimal integer"))
            })?,
    };
    current
        .checked_add(delta)
        .ok_or_else(|| Refusal::InvalidArgument(format!("{key} would overflow")))
}

/// A new timer: delay at most [`MAX_DELAY`], payload at most [`MAX_PAYLOAD_BYTES`], fewer than
/// [`MAX_PENDING`] timers of the plugin pending.
pub fn timer(delay_ms: u64, payload_len: usize, pending: usize) -> Result<(), Refusal> {
    if std::time::Duration::from_millis(delay_ms) > MAX_DELAY {
        return Err(Refusal::InvalidArgument(format!(
            "delay longer than {} days",
            MAX_DELAY.as_secs() / 86_400
        )));
    }
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(Refusal::InvalidArgument(format!(
            "payload larger than {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    if pending >= MAX_PENDING {
        return Err(Refusal::QuotaExceeded(format!(
            "{MAX_PENDING} timers pending already"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_answers_its_wit_error() {
        let limits = LimitsConfig::default();
        assert!(group(&"g".repeat(limits.max_name_bytes), &limits).is_ok());
        assert!(matches!(
            group(&"g".repeat(limits.max_name_bytes + 1), &limits),
            Err(Refusal::InvalidArgument(_))
        ));
        assert!(matches!(
            member("", &"x".repeat(limits.max_info_bytes + 1), &limits),
            Err(Refusal::QuotaExceeded(_))
        ));
        assert_eq!(reject_code(1006), 4000);
        assert_eq!(reject_code(4001), 4001);
        assert!(matches!(close(999, ""), Err(Refusal::InvalidArgument(_))));
        assert!(matches!(
            kv_set("k", MAX_VALUE_BYTES + 1, 0, 0, 0),
            Err(Refusal::QuotaExceeded(_))
        ));
        assert!(matches!(
            timer(0, 0, MAX_PENDING),
            Err(Refusal::QuotaExceeded(_))
        ));
        assert_eq!(kv_incr("k", Some(b" 41 "), 1), Ok(42));
    }
}
