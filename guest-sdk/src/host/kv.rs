//! The plugin's key-value store: one per plugin, it survives reloads, traps and restarts.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::raw;
use crate::Error;

/// The value of a key, if set.
pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(raw::kv_get(key)?)
}

/// The value of a key as UTF-8 text. A value that is not UTF-8 gives [`Error::Codec`].
pub fn kv_get_string(key: &str) -> Result<Option<String>, Error> {
    kv_get(key)?
        .map(|bytes| String::from_utf8(bytes).map_err(|e| Error::Codec(e.to_string())))
        .transpose()
}

/// The value of a key decoded from JSON. A value that does not decode as `T` gives
/// [`Error::Codec`].
pub fn kv_get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    kv_get(key)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(Error::from))
        .transpose()
}

/// Set a key to raw bytes (or text: `&str` and `String` work too).
pub fn kv_set(key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
    Ok(raw::kv_set(key, value.as_ref())?)
}

/// Set a key to `value` encoded as JSON.
pub fn kv_set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    kv_set(key, serde_json::to_vec(value)?)
}

/// Delete a key; returns whether it existed.
pub fn kv_delete(key: &str) -> Result<bool, Error> {
    Ok(raw::kv_delete(key)?)
}

/// Add `delta` to an integer key (a missing key counts as 0) and return the new value.
/// Fails with [`Error::InvalidArgument`] if the stored value is not a decimal integer.
pub fn kv_incr(key: &str, delta: i64) -> Result<i64, Error> {
    Ok(raw::kv_incr(key, delta)?)
}

/// Every key that starts with `prefix`, sorted.
pub fn kv_keys(prefix: &str) -> Result<Vec<String>, Error> {
    Ok(raw::kv_keys(prefix)?)
}
