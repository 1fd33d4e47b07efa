//! Test guest `versioned`: answers every text frame `<text>` with `v<N>:<text>`, for hot-reload
//! tests that must tell which version answered.
//!
//! `N` comes from, in order:
//! 1. the init config: a plain string (`"3"`, trimmed) or a JSON object `{"version": 3}` /
//!    `{"version": "3b"}`;
//! 2. else the build-time environment variable `WASMGATE_TEST_VERSION` (`option_env!`, so
//!    `WASMGATE_TEST_VERSION=2 cargo build -p versioned --target wasm32-wasip2` makes a binary
//!    that differs from the default one);
//! 3. else `0`.
//!
//! The config route needs only one binary; the env route gives distinct binaries (distinct
//! content hashes) for tests that swap files.
//!
//! Extras: the text `timer:<ms>` sets a timer (payload: the sender's id) and answers
//! `v<N>:timer-set:<id>`; when it fires the version then loaded sends `v<N>:timer:<id>` to that
//! client, so a test can check that timers fire into the new version. Binary frames are echoed.

use serde_json::Value;
use wasmgate_guest::{Message, Plugin, Timer, export_plugin, host};

/// The version baked in at build time, if any.
const BUILD_VERSION: Option<&str> = option_env!("WASMGATE_TEST_VERSION");

/// The version this instance reports.
struct Versioned {
    /// `N` in `v<N>:`.
    version: String,
}

impl Default for Versioned {
    fn default() -> Self {
        Versioned {
            version: BUILD_VERSION.unwrap_or("0").to_owned(),
        }
    }
}

/// The version named by an init config, if it names one.
fn version_from_config(config: &str) -> Option<String> {
    let config = config.trim();
    if config.is_empty() {
        return None;
    }
    match serde_json::from_str::<Value>(config) {
        Ok(Value::Object(map)) => match map.get("version")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        },
        Ok(Value::String(s)) => Some(s),
        _ => Some(config.to_owned()),
    }
}

impl Plugin for Versioned {
    fn init(&mut self, config: &str) -> Result<(), String> {
        if let Some(v) = version_from_config(config) {
            self.version = v;
        }
        Ok(())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let v = &self.version;
        let reply = match msg {
            Message::Binary(_) => msg,
            Message::Text(text) => match text.strip_prefix("timer:").map(str::parse::<u64>) {
                Some(Ok(ms)) => match host::set_timer(ms, client) {
                    Ok(id) => Message::text(format!("v{v}:timer-set:{id}")),
                    Err(e) => Message::text(format!("v{v}:timer-error:{e}")),
                },
                _ => Message::text(format!("v{v}:{text}")),
            },
        };
        let _ = host::send_to_client(client, reply);
    }

    fn on_timer(&mut self, timer: &Timer) {
        let msg = format!("v{}:timer:{}", self.version, timer.id);
        let _ = host::send_to_client(&timer.payload, msg);
    }
}

export_plugin!(Versioned);

#[cfg(test)]
mod tests {
    use super::version_from_config;

    #[test]
    fn config_forms() {
        assert_eq!(version_from_config(""), None);
        assert_eq!(version_from_config("  "), None);
        assert_eq!(version_from_config(" 3 ").as_deref(), Some("3"));
        assert_eq!(version_from_config("two").as_deref(), Some("two"));
        assert_eq!(
            version_from_config(r#"{"version":4}"#).as_deref(),
            Some("4")
        );
        assert_eq!(
            version_from_config(r#"{"version":"4b"}"#).as_deref(),
            Some("4b")
        );
        assert_eq!(version_from_config(r#""q""#).as_deref(), Some("q"));
        assert_eq!(version_from_config(r#"{"other":1}"#), None);
    }
}
