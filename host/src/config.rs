//! Gateway configuration: defaults, then a TOML file, then `WASMGATE_*` environment variables,
//! then command-line flags (later sources win).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the gateway can be told. See the configuration table in the README.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the WebSocket endpoint and the HTTP API listen on.
    pub listen: SocketAddr,
    /// Folder whose `*.wasm` files are loaded as plugins; `None` disables plugins.
    pub plugins_dir: Option<PathBuf>,
    /// Where precompiled plugin code is cached (by content hash) so big components reload fast.
    pub cache_dir: Option<PathBuf>,
    /// Where plugin key-value stores are persisted; defaults to `<plugins_dir>/.kv`.
    pub kv_dir: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `wasmgate=debug,info`.
    pub log_level: String,
    /// This node's id, embedded in every client id. Random when unset; set it in a cluster.
    pub node_id: Option<u32>,
    /// `redis://HOST:PORT[/db]`: turns cluster mode on (registry and delivery over Redis).
    /// Unset: a single node that needs no Redis.
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel of this cluster (several clusters can share a
    /// Redis with different prefixes).
    pub redis_prefix: String,
    /// Bearer token the HTTP API requires. Without one the API answers loopback peers only.
    pub api_token: Option<String>,
    /// How often the server pings each client.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest message (and frame) a client may send; larger closes it with 1009.
    pub max_message_size: usize,
    /// Bytes the socket reads at a time (at least 128), into a buffer of each worker thread:
    /// what the client's WebSocket codec has not taken yet is kept for that client until it
    /// has (see `direct_io`). 16 KiB: a 60 KB frame cost half the server CPU per MB of 1 KiB
    /// reads (5 alternating runs, BENCHMARKS.md issue 12); small messages cost the same.
    pub read_buffer_size: usize,
    /// Per-client outbound queue bound in messages; overflow closes the client with 1008.
    pub max_queue_messages: usize,
    /// Per-client outbound queue bound in bytes; overflow closes the client with 1008.
    pub max_queue_bytes: usize,
    /// Largest HTTP API request body; larger is answered 413.
    pub max_body_size: usize,
    /// On shutdown, how long clients get to receive what is queued before they are dropped.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// How far past `exp` (and before `nbf`) a client's JWT is still accepted, for clock skew.
    #[serde(with = "humantime_serde")]
    pub jwt_leeway: Duration,
    /// Timeouts and caps of the HTTP layer (requests that are not WebSockets).
    pub http: HttpConfig,
    /// Bounds on what callers (API, plugins, clients) can make the gateway hold.
    pub limits: LimitsConfig,
    /// Systems that exist from startup, with their options.
    pub systems: BTreeMap<String, SystemConfig>,
    /// Plugin runtime limits and per-plugin options.
    pub plugin: PluginRuntimeConfig,
    /// Per-plugin options, by plugin name (the file name without `.wasm`).
    pub plugins: BTreeMap<String, PluginConfig>,
}

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Timeouts and caps of the HTTP layer. A peer that sends half a request, or nothing, must not
/// hold a connection (and its file descriptor) forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long a client has to send a request's complete header section (also the first one
    /// after connecting).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept between two requests.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Concurrent HTTP connections that are not (yet) WebSockets; past it new ones are closed
    /// at once. WebSockets are bounded by the systems' `max_connections`.
    pub max_connections: usize,
}

/// Bounds on what API callers, plugins and clients can make the gateway hold. One rule each,
/// enforced in one place (the domain newtypes and the registry).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest system id, group name or uid, in bytes (API and host calls alike).
    pub max_name_bytes: usize,
    /// Groups one client may be in.
    pub max_groups_per_client: usize,
    /// Groups (with at least one member) one system may have.
    pub max_groups_per_system: usize,
    /// Entries in one client's info map.
    pub max_info_entries: usize,
    /// Bytes (keys plus values) of one client's info map.
    pub max_info_bytes: usize,
    /// Systems the gateway may hold (configured, registered and plugin-served together).
    pub max_systems: usize,
    /// Messages per second one client may send (a token bucket holding one second's worth);
    /// past it the gateway stops reading that client until the bucket refills.
    pub client_messages_per_second: u32,
    /// Bytes per second one client may send, enforced like `client_messages_per_second`.
    pub client_bytes_per_second: u64,
    /// A client held back by its rate limits again and again (never a second without) for this
    /// long is closed with 1008 "rate limit exceeded"; 0 never closes (the client is only
    /// slowed).
    #[serde(with = "humantime_serde")]
    pub client_throttle_timeout: Duration,
}

/// Options of one system (tenant).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// When set, clients must connect with `token=<HS256 JWT>`; its `sub` becomes their uid.
    pub jwt_secret: Option<String>,
    /// Upper bound on concurrent clients of this system; unlimited when unset.
    pub max_connections: Option<usize>,
    /// Send online/offline notices (1001/1002) to a group's members when a client joins or
    /// leaves it. Each join notifies every member, so a group of N costs N²/2 notices to
    /// build: turn this off for very large groups. On unless set.
    pub group_notices: bool,
}

/// Limits that apply to every plugin instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginRuntimeConfig {
    /// Deadline of one call into a plugin; a handler that runs longer is interrupted.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Linear memory cap of one plugin instance.
    pub max_memory_bytes: usize,
    /// Client messages waiting for one plugin; when reached, clients are not read until the
    /// plugin catches up (nothing is dropped). Also the number of `on-connect`s that may wait;
    /// past it a new client is refused with 1013.
    pub queue_capacity: usize,
    /// Bytes of client messages waiting for one plugin, bounded like `queue_capacity`.
    pub queue_bytes: usize,
    /// Events of one client that may wait in its plugin's queue (and the same fraction of
    /// `queue_bytes`); a client past its share is not read until its plugin catches up, so one
    /// client cannot fill the queue for everyone.
    pub client_queue_share: usize,
    /// How long the file watcher waits for writes to settle before reloading.
    #[serde(with = "humantime_serde")]
    pub reload_debounce: Duration,
    /// Instances of every plugin that does not say otherwise (`[plugins.<name>] instances`).
    pub instances: Instances,
    /// Request headers a 0.2 plugin's `on-connect` sees in its connect context (names,
    /// case-insensitive). Only these: cookies and authorization headers stay with the gateway
    /// unless listed.
    pub connect_headers: Vec<String>,
}

/// How many instances of a plugin handle its events in parallel: a number from 1 to
/// [`Instances::MAX`], or `"auto"` (one per core). A client's events always go to the same
/// instance, in order; see the plugin README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// This many.
    Count(usize),
    /// One per core (`std::thread::available_parallelism`).
    Auto,
}

impl Instances {
    /// The most instances a plugin may have: each costs its own linear memory.
    pub const MAX: usize = 64;

    /// The number of instances on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Instances::Count(n) => n.clamp(1, Self::MAX),
            Instances::Auto => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(Self::MAX),
        }
    }
}

impl Default for Instances {
    fn default() -> Self {
        Instances::Count(1)
    }
}

impl Serialize for Instances {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Instances::Count(n) => s.serialize_u64(*n as u64),
            Instances::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(format!(
                "instances must be a number from 1 to {} or \"auto\"",
                Instances::MAX
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Count(n) if (1..=Instances::MAX as u64).contains(&n) => {
                Ok(Instances::Count(usize::try_from(n).map_err(|_| bad())?))
            }
            Raw::Text(t) if t == "auto" => Ok(Instances::Auto),
            Raw::Text(t) => match t.parse::<u64>() {
                Ok(n) if (1..=Instances::MAX as u64).contains(&n) => {
                    Ok(Instances::Count(usize::try_from(n).map_err(|_| bad())?))
                }
                _ => Err(bad()),
            },
            Raw::Count(_) => Err(bad()),
        }
    }
}

/// Options of one plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// Systems the plugin serves; by default the one named like the plugin.
    pub systems: Vec<String>,
    /// Passed to the plugin's `init`.
    pub config: String,
    /// Instances handling its events in parallel (default: `plugin.instances`, itself 1).
    pub instances: Option<Instances>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugins_dir: None,
            cache_dir: None,
            kv_dir: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            node_id: None,
            redis: None,
            redis_prefix: "wasmgate:".into(),
            api_token: None,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_message_size: 64 * 1024,
            read_buffer_size: 16 * 1024,
            max_queue_messages: 1024,
            max_queue_bytes: 1024 * 1024,
            max_body_size: 1024 * 1024,
            drain_timeout: Duration::from_secs(5),
            jwt_leeway: Duration::ZERO,
            http: HttpConfig::default(),
            limits: LimitsConfig::default(),
            systems: BTreeMap::new(),
            plugin: PluginRuntimeConfig::default(),
            plugins: BTreeMap::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_name_bytes: 256,
            max_groups_per_client: 1000,
            max_groups_per_system: 100_000,
            max_info_entries: 64,
            max_info_bytes: 16 * 1024,
            max_systems: 1000,
            client_messages_per_second: 1000,
            client_bytes_per_second: 4 * 1024 * 1024,
            client_throttle_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            max_connections: None,
            group_notices: true,
        }
    }
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(100),
            max_memory_bytes: 64 * 1024 * 1024,
            queue_capacity: 4096,
            queue_bytes: 16 * 1024 * 1024,
            client_queue_share: 64,
            reload_debounce: Duration::from_millis(200),
            instances: Instances::default(),
            connect_headers: [
                "origin",
                "user-agent",
                "accept-language",
                "x-forwarded-for",
                "x-real-ip",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

impl Config {
    /// Defaults, then `file` (if any), then `WASMGATE_*` variables (nested keys with `__`, e.g.
    /// `WASMGATE_PLUGIN__CALL_TIMEOUT=50ms`).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables naming a configuration key: an unrelated WASMGATE_SOMETHING in the
        // environment must not stop the gateway (unknown keys in files still do).
        let keys = Config::top_level_keys();
        let env = Env::prefixed("WASMGATE_").split("__").filter(move |key| {
            // `split("__")` already turned `HTTP__MAX_CONNECTIONS` into `http.max_connections`.
            let top = key.as_str().split('.').next().unwrap_or_default();
            keys.iter().any(|k| top.eq_ignore_ascii_case(k))
        });
        figment = figment.merge(env);
        figment
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The names of the top-level keys, read from the serialized defaults so that they cannot
    /// drift from the struct (no field skips serialization).
    fn top_level_keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.into_iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        }
    }

    /// Parse a TOML document over the defaults (no environment), for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults() {
        let c = Config::from_toml(
            "ping_interval = \"5s\"\nmax_message_size = 10\n[systems.chat]\njwt_secret = \"s\"\n",
        )
        .expect("valid toml");
        assert_eq!(c.ping_interval, Duration::from_secs(5));
        assert_eq!(c.max_message_size, 10);
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.systems["chat"].jwt_secret.as_deref(), Some("s"));
    }

    #[test]
    fn group_notices_default_on() {
        let c = Config::from_toml("[systems.a]\n[systems.b]\ngroup_notices = false\n")
            .expect("valid toml");
        assert!(c.systems["a"].group_notices);
        assert!(!c.systems["b"].group_notices);
    }

    #[test]
    fn environment_keys_are_the_struct_fields() {
        let keys = Config::top_level_keys();
        for k in [
            "listen",
            "api_token",
            "node_id",
            "systems",
            "plugin",
            "plugins",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        assert_eq!(keys.len(), 24, "one key per field of Config: {keys:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(Config::from_toml("no_such_key = 1").is_err());
    }
}
