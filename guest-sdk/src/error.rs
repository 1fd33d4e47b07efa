//! The error type of every host call wrapper.

use crate::bindings::wasmgate::plugin::types::Error as WitError;

/// Why a host call failed.
///
/// The first four variants mirror the WIT `error` variant one to one; [`Error::Codec`] is added
/// by the SDK for the JSON helpers (a value that does not serialize, a stored value that does not
/// decode). `Display` prints `<kind>: <detail>` with the kebab-case WIT name as the kind, for
/// example `unknown-client: c-42`, so logs and test assertions read the same on both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The client id is unknown in this system (never connected, or already gone).
    #[error("unknown-client: {0}")]
    UnknownClient(String),
    /// An argument is invalid (empty name, too long, bad close code, ...).
    #[error("invalid-argument: {0}")]
    InvalidArgument(String),
    /// The plugin exceeded a quota (queued messages, timers, key-value store size, ...).
    #[error("quota-exceeded: {0}")]
    QuotaExceeded(String),
    /// The gateway could not complete the call (for example the cluster backend is down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A value could not be encoded to or decoded from JSON (or UTF-8), on the guest side.
    #[error("codec: {0}")]
    Codec(String),
}

impl Error {
    /// The kebab-case name of the variant (`unknown-client`, `invalid-argument`,
    /// `quota-exceeded`, `unavailable`, `codec`): a stable, machine-readable tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnknownClient(_) => "unknown-client",
            Error::InvalidArgument(_) => "invalid-argument",
            Error::QuotaExceeded(_) => "quota-exceeded",
            Error::Unavailable(_) => "unavailable",
            Error::Codec(_) => "codec",
        }
    }

    /// The detail carried by the error, without the kind prefix.
    pub fn detail(&self) -> &str {
        match self {
            Error::UnknownClient(d)
            | Error::InvalidArgument(d)
            | Error::QuotaExceeded(d)
            | Error::Unavailable(d)
            | Error::Codec(d) => d,
        }
    }
}

impl From<WitError> for Error {
    fn from(e: WitError) -> Self {
        match e {
            WitError::UnknownClient(d) => Error::UnknownClient(d),
            WitError::InvalidArgument(d) => Error::InvalidArgument(d),
            WitError::QuotaExceeded(d) => Error::QuotaExceeded(d),
            WitError::Unavailable(d) => Error::Unavailable(d),
        }
    }
}

/// The raw WIT error reads like the SDK's (`unknown-client: c-42`): wit-bindgen's own `Display`
/// for it is the `Debug` form.
impl WitError {
    /// The text of the error, `<kind>: <detail>`.
    pub fn describe(&self) -> String {
        Error::from(self.clone()).to_string()
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Codec(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_errors_map_one_to_one_and_display_with_kind() {
        let cases = [
            (
                WitError::UnknownClient("c1".into()),
                "unknown-client",
                "unknown-client: c1",
            ),
            (
                WitError::InvalidArgument("uid".into()),
                "invalid-argument",
                "invalid-argument: uid",
            ),
            (
                WitError::QuotaExceeded("kv".into()),
                "quota-exceeded",
                "quota-exceeded: kv",
            ),
            (
                WitError::Unavailable("redis".into()),
                "unavailable",
                "unavailable: redis",
            ),
        ];
        for (wit, kind, shown) in cases {
            let e = Error::from(wit);
            assert_eq!(e.kind(), kind);
            assert_eq!(e.to_string(), shown);
        }
    }

    /// Both error types read as text and compose with `?` into `Box<dyn Error>`: the SDK's
    /// and the raw WIT one (for authors on the raw bindings).
    #[test]
    fn errors_are_std_errors() {
        fn std_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
        let sdk = Error::from(WitError::QuotaExceeded("timers".into()));
        std_error(&sdk);
        let raw = WitError::UnknownClient("c9".into());
        std_error(&raw);
        // wit-bindgen's own Display of it is its Debug form; `describe` reads like the SDK's.
        assert_eq!(raw.describe(), "unknown-client: c9");
        let boxed: Box<dyn std::error::Error> = Box::new(sdk);
        assert_eq!(boxed.to_string(), "quota-exceeded: timers");
    }

    #[test]
    fn json_errors_become_codec() {
        let bad = serde_json::from_str::<u32>("\"x\"").map_err(Error::from);
        let Err(e) = bad else {
            panic!("a string must not decode as u32");
        };
        assert_eq!(e.kind(), "codec");
        assert!(e.detail().contains("invalid type"), "{e}");
    }
}
