//! [`RedisKv`]: the plugins' key-value stores in a cluster, shared by every node through Redis.
//!
//! A plugin runs on every node, each node for its own clients; its store must be one store, or
//! a quiz whose players are spread over three nodes keeps three scoreboards. So in cluster
//! mode a plugin's store is a Redis hash, `{prefix}kv:{len}:{plugin}` (values) with
//! `{prefix}kv:{len}:{plugin}:bytes` (keys plus values, for the quota). Every change is one Lua
//! script that checks the same quotas as a single node's store before it writes, so `incr` is
//! atomic and two nodes cannot together pass a quota. What the script measured comes back on a
//! refusal, and the plugin runtime turns it into the single node's exact error
//! ([`crate::plugin::rules`]).
//!
//! The *turn*: a handler that reads, computes and writes must not interleave with the same
//! plugin's handler on another node (a single node serializes its instances the same way). The
//! first key-value call of an event takes `{prefix}kv:{len}:{plugin}:turn` (`SET NX PX`, a
//! token of this node), held until the event ends; a node that finds it taken tries again
//! (5 ms, doubling to 50 ms: only while contended, never while idle). Its expiry,
//! [`TURN_TTL`], frees the turn of a node that died holding it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::broker::{REDIS_TIMEOUT, unavailable, within};
use super::wire::system_base;
use crate::registry::RegistryError;

/// How long a node may hold a plugin's key-value turn: longer than any event may run (the
/// plugin call timeout), short enough that a dead node's turn comes back soon.
pub const TURN_TTL: Duration = Duration::from_secs(10);
/// How long a node waits for a plugin's turn before the key-value call answers `unavailable`.
const TURN_WAIT: Duration = Duration::from_secs(5);

/// ARGV: 1 hash, 2 bytes key, 3 key, 4 value, 5 max keys, 6 max bytes. Answers {0}, or
/// {1, keys, bytes, old} when a quota refuses (old: the entry's current size, 0 when new).
const SET: &str = r"
local h, bk, k, v = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('HGET', h, k)
local old = 0
if cur then old = #k + #cur end
local keys = redis.call('HLEN', h)
local bytes = tonumber(redis.call('GET', bk) or '0')
local after = bytes - old + #k + #v
if (old == 0 and keys >= tonumber(ARGV[5])) or after > tonumber(ARGV[6]) then
  return {1, keys, bytes, old}
end
redis.call('HSET', h, k, v)
redis.call('SET', bk, after)
return {0}
";

/// ARGV: 1 hash, 2 bytes key, 3 key. Answers 1 when the key existed.
const DELETE: &str = r"
local h, bk, k = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', h, k)
if not cur then return 0 end
redis.call('HDEL', h, k)
redis.call('DECRBY', bk, #k + #cur)
return 1
";

/// ARGV: 1 hash, 2 bytes key, 3 key, 4 delta, 5 max keys, 6 max bytes. Answers {0, value as
/// text} (a Lua number would round past 2^53),
/// {1, keys, bytes, old} at a quota, or {2, current raw value} when it is not a decimal
/// integer or would overflow (HINCRBY's own 64-bit checks).
const INCR: &str = r"
local h, bk, k = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HGET', h, k)
local old = 0
if cur then old = #k + #cur end
local keys = redis.call('HLEN', h)
local bytes = tonumber(redis.call('GET', bk) or '0')
if old == 0 and keys >= tonumber(ARGV[5]) then return {1, keys, bytes, old} end
local ok = pcall(redis.call, 'HINCRBY', h, k, ARGV[4])
if not ok then return {2, cur or ''} end
local s = redis.call('HGET', h, k)
local after = bytes - old + #k + #s
if after > tonumber(ARGV[6]) then
  if cur then redis.call('HSET', h, k, cur) else redis.call('HDEL', h, k) end
  return {1, keys, bytes, old}
end
redis.call('SET', bk, after)
return {0, s}
";

/// ARGV: 1 turn key, 2 token, 3 ms. Extends the turn if this node still holds it; 1 if so.
const EXTEND: &str = r"
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('PEXPIRE', ARGV[1], ARGV[3]) end
return 0
";

/// ARGV: 1 turn key, 2 token. Releases the turn if this node still holds it.
const RELEASE: &str = r"
if redis.call('GET', ARGV[1]) == ARGV[2] then return redis.call('DEL', ARGV[1]) end
return 0
";

/// What a refused change measured, for the single-node rule to word the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Keys in the store.
    pub keys: usize,
    /// Keys plus values, in bytes.
    pub bytes: usize,
    /// The entry's current size (0 when new).
    pub old: usize,
}

/// The answer to a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetOutcome {
    /// Written.
    Done,
    /// A quota refused it.
    Refused(Measured),
}

/// The answer to an incr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrOutcome {
    /// The new value.
    Done(i64),
    /// A quota refused it.
    Refused(Measured),
    /// The current value is not a decimal integer, or the sum would overflow: the raw value.
    NotInteger(Vec<u8>),
}

/// The plugins' stores in Redis, for one node.
pub struct RedisKv {
    conn: ConnectionManager,
    prefix: String,
    node: u32,
    set: Script,
    delete: Script,
    incr: Script,
    release: Script,
}

/// A plugin's turn, held until dropped (released in the background: the event that held it is
/// over, nothing waits for the release).
pub struct Turn {
    conn: ConnectionManager,
    key: String,
    token: String,
    release: Script,
    /// When it was taken or last extended.
    since: tokio::time::Instant,
}

impl Turn {
    /// Called on each key-value call while the turn is held: past half its life, extend it
    /// (a handler slow in its Redis calls must not lose the turn mid-way). An error when the
    /// turn was lost (it expired, and another node may hold it now).
    pub async fn keep(&mut self) -> Result<(), RegistryError> {
        if self.since.elapsed() < TURN_TTL / 2 {
            return Ok(());
        }
        let script = Script::new(EXTEND);
        let mut inv = script.prepare_invoke();
        inv.arg(&self.key)
            .arg(&self.token)
            .arg(TURN_TTL.as_millis() as u64);
        let mut conn = self.conn.clone();
        match tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(1)) => {
                self.since = tokio::time::Instant::now();
                Ok(())
            }
            Ok(Ok(_)) => Err(unavailable(
                "the key-value turn expired before the event ended",
            )),
            Ok(Err(e)) => Err(unavailable(format!("redis: {e}"))),
            Err(_) => Err(unavailable("redis did not answer")),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut conn = self.conn.clone();
        let (key, token) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.token),
        );
        let release = self.release.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut inv = release.prepare_invoke();
                inv.arg(key).arg(token);
                let _ =
                    tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<i64>(&mut conn)).await;
            });
        }
    }
}

fn measured(v: &[Value]) -> Result<Measured, RegistryError> {
    let n = |i: usize| -> Result<usize, RegistryError> {
        match v.get(i) {
            Some(Value::Int(x)) => Ok(usize::try_from(*x).unwrap_or(0)),
            other => Err(unavailable(format!("unexpected redis answer {other:?}"))),
        }
    };
    Ok(Measured {
        keys: n(1)?,
        bytes: n(2)?,
        old: n(3)?,
    })
}

impl RedisKv {
    /// The stores of node `node`, under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str, node: u32) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            node,
            set: Script::new(SET),
            delete: Script::new(DELETE),
            incr: Script::new(INCR),
            release: Script::new(RELEASE),
        }
    }

    fn hash(&self, plugin: &str) -> String {
        // `{prefix}kv:{len}:{plugin}:` as the registry spells a system's base.
        let base = system_base(&format!("{}kv:", self.prefix), plugin);
        base.trim_end_matches(':').to_owned()
    }

    /// Wait for `plugin`'s turn (at most [`TURN_WAIT`]).
    pub async fn turn(&self, plugin: &str) -> Result<Turn, RegistryError> {
        let key = format!("{}:turn", self.hash(plugin));
        let token = format!("{}:{:016x}", self.node, rand::random::<u64>());
        let deadline = tokio::time::Instant::now() + TURN_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(TURN_TTL.as_millis() as u64);
            let mut conn = self.conn.clone();
            let taken: Option<String> = within(set.query_async(&mut conn)).await?;
            if taken.is_some() {
                return Ok(Turn {
                    conn: self.conn.clone(),
                    key,
                    token,
                    release: self.release.clone(),
                    since: tokio::time::Instant::now(),
                });
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(unavailable(format!(
                    "the key-value turn of plugin {plugin} was held by another node for {TURN_WAIT:?}"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The value of `key` in `plugin`'s store.
    pub async fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let mut c = redis::cmd("HGET");
        c.arg(self.hash(plugin)).arg(key);
        let mut conn = self.conn.clone();
        within(c.query_async(&mut conn)).await
    }

    /// Set `key`, within `max_keys` and `max_bytes`.
    pub async fn set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<SetOutcome, RegistryError> {
        let h = self.hash(plugin);
        let mut inv = self.set.prepare_invoke();
        inv.arg(&h)
            .arg(format!("{h}:bytes"))
            .arg(key)
            .arg(value)
            .arg(max_keys)
            .arg(max_bytes);
        let mut conn = self.conn.clone();
        let v: Vec<Value> = within(inv.invoke_async(&mut conn)).await?;
        match v.first() {
            Some(Value::Int(0)) => Ok(SetOutcome::Done),
            _ => Ok(SetOutcome::Refused(measured(&v)?)),
        }
    }

    /// Delete `key`; whether it existed.
    pub async fn delete(&self, plugin: &str, key: &str) -> Result<bool, RegistryError> {
        let h = self.hash(plugin);
        let mut inv = self.delete.prepare_invoke();
        inv.arg(&h).arg(format!("{h}:bytes")).arg(key);
        let mut conn = self.conn.clone();
        Ok(within(inv.invoke_async::<i64>(&mut conn)).await? == 1)
    }

    /// Add `delta` to the decimal integer at `key` (missing counts as 0), atomically.
    pub async fn incr(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        max_keys: usize,
        max_bytes: usize,
    ) -> Result<IncrOutcome, RegistryError> {
        let h = self.hash(plugin);
        let mut inv = self.incr.prepare_invoke();
        inv.arg(&h)
            .arg(format!("{h}:bytes"))
            .arg(key)
            .arg(delta)
            .arg(max_keys)
            .arg(max_bytes);
        let mut conn = self.conn.clone();
        let v: Vec<Value> = within(inv.invoke_async(&mut conn)).await?;
        match (v.first(), v.get(1)) {
            (Some(Value::Int(0)), Some(Value::BulkString(n))) => std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .map(IncrOutcome::Done)
                .ok_or_else(|| unavailable("unexpected redis answer to incr")),
            (Some(Value::Int(2)), Some(Value::BulkString(raw))) => {
                Ok(IncrOutcome::NotInteger(raw.clone()))
            }
            _ => Ok(IncrOutcome::Refused(measured(&v)?)),
        }
    }

    /// Every key of `plugin`'s store starting with `prefix`, sorted.
    pub async fn keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>, RegistryError> {
        let mut c = redis::cmd("HKEYS");
        c.arg(self.hash(plugin));
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = within(c.query_async(&mut conn)).await?;
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }
}
