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
//! `join:<group>` joins the sender to a group (answer `v<N>:joined`).
//!
//! For reload tests about timers set by `init`, a JSON config may hold
//! `"init-timer": {"version": "2", "ms": 0, "group": "g", "spin-ms": 50}`: the build of that
//! version sets, in `init`, a timer that sends `v<N>:timer:<id>` to group `g` when it fires (then
//! busy-waits `spin-ms` in `init`); and
//! `"fail-init": "2"`: the build of that version fails `init` (after setting its timer).

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
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(config) else {
            return Ok(());
        };
        let mine = |v: Option<&Value>| v.and_then(Value::as_str) == Some(self.version.as_str());
        if let Some(timer) = map.get("init-timer")
            && mine(timer.get("version"))
        {
            let ms = timer.get("ms").and_then(Value::as_u64).unwrap_or(0);
            let group = timer.get("group").and_then(Value::as_str).unwrap_or("");
            host::set_timer(ms, &format!("group:{group}")).map_err(|e| e.to_string())?;
            // Stay in `init` a while after setting it (`"spin-ms"`): long enough for the timer
            // to be due while this version is not serving yet.
            let spin = timer.get("spin-ms").and_then(Value::as_u64).unwrap_or(0);
            let until = host::now_ms() + spin;
            while host::now_ms() < until {}
        }
        if mine(map.get("fail-init")) {
            return Err(format!("v{} asked to fail init", self.version));
        }
        Ok(())
    }

    fn on_message(&mut self, client: &str, msg: Message) {
        let v = &self.version;
        let reply = match msg {
            Message::Binary(_) => msg,
            Message::Text(text) if text.starts_with("join:") => {
                match host::join_group(client, &text["join:".len()..]) {
                    Ok(()) => Message::text(format!("v{v}:joined")),
                    Err(e) => Message::text(format!("v{v}:join-error:{e}")),
                }
            }
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
        let text = format!("v{}:timer:{}", self.version, timer.id);
        if let Some(group) = timer.payload.strip_prefix("group:") {
            let _ = host::send_to_group(group, text, &[]);
            return;
        }
        let _ = host::send_to_client(&timer.payload, text);
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
