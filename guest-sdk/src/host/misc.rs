//! Timers, logging, the clock and the current system.

use serde::Serialize;

use super::raw;
use crate::{Error, Level};

/// Call the plugin's `on_timer` once, after `delay_ms` milliseconds, with `payload`. Returns
/// the timer id. Timers survive a hot reload (the new version receives them) but not a restart;
/// `on_timer` runs in the system that set the timer.
pub fn set_timer(delay_ms: u64, payload: &str) -> Result<u64, Error> {
    Ok(raw::set_timer(delay_ms, payload, None)?)
}

/// [`set_timer`] bound to `client`: cancelled when the client leaves (a turn timer of a game),
/// and `on_timer` gets the client in [`crate::Timer::client`]. `unknown-client` if it is not
/// connected to this system.
pub fn set_client_timer(delay_ms: u64, payload: &str, client: &str) -> Result<u64, Error> {
    Ok(raw::set_timer(delay_ms, payload, Some(client))?)
}

/// [`set_client_timer`] with `payload` encoded as JSON.
pub fn set_client_timer_json<T: Serialize + ?Sized>(
    delay_ms: u64,
    payload: &T,
    client: &str,
) -> Result<u64, Error> {
    set_client_timer(delay_ms, &serde_json::to_string(payload)?, client)
}

/// [`set_timer`] with `payload` encoded as JSON; decode it in `on_timer` with
/// `serde_json::from_str`.
pub fn set_timer_json<T: Serialize + ?Sized>(delay_ms: u64, payload: &T) -> Result<u64, Error> {
    set_timer(delay_ms, &serde_json::to_string(payload)?)
}

/// Cancel a timer; returns whether it was still pending.
pub fn cancel_timer(id: u64) -> bool {
    raw::cancel_timer(id)
}

/// Write to the gateway's log, tagged with the plugin's name. The `log_*!` macros format for you.
pub fn log(level: Level, message: &str) {
    raw::log(level, message);
}

/// Milliseconds since the Unix epoch (wall clock of the gateway).
pub fn now_ms() -> u64 {
    raw::now_ms()
}

/// The system the current event belongs to.
pub fn system_id() -> String {
    raw::system_id()
}
