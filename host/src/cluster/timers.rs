//! [`RedisTimers`]: plugin timers that fire once in the whole cluster, also when the node that
//! set them dies.
//!
//! A timer still sleeps on the node that set it (a tokio sleep, as on a single node: no
//! polling), but in cluster mode it is also written to Redis: its record in
//! `{prefix}tmr:{len}:{plugin}:rec` (id → JSON: system, payload, bound client, due time, owning
//! instance) and its id in the owning instance's sorted set `{prefix}tmrs:<instance>` (by due
//! time). Ids come from `{prefix}tmr:{len}:{plugin}:ids`, so they are unique cluster-wide and a
//! plugin on any node can cancel any timer.
//!
//! Firing is a claim: when its sleep ends, the owner deletes the record (`HDEL`) and calls
//! `on-timer` only if it was still there. A cancel from any node deletes it too, so the
//! sleeping owner finds nothing and stays quiet. When an instance dies, the node that reaps it
//! ([`super::lease`]) takes its timers over in one script: their records name the new owner
//! and their ids move to its set; it sleeps for what is left of each (a timer already due fires
//! at once). A timer bound to a client is also indexed by the client (`{prefix}tmrc:<client>`):
//! when the client leaves, the node that held it deletes its timers wherever they sleep, and a
//! reaper drops those of the dead instance's clients.

use redis::aio::ConnectionManager;
use redis::{Script, Value};
use serde::{Deserialize, Serialize};

use super::broker::{unavailable, within};
use super::wire::system_base;
use crate::registry::RegistryError;

/// ARGV: 1 ids key, 2 records hash, 3 instance set, 4 plugin, 5 due (ms), 6 record, 7 the
/// bound client's index or ''. Answers the new id.
const CREATE: &str = r"
local id = redis.call('INCR', ARGV[1])
local member = id .. ':' .. ARGV[4]
redis.call('HSET', ARGV[2], id, ARGV[6])
redis.call('ZADD', ARGV[3], ARGV[5], member)
if ARGV[7] ~= '' then redis.call('SADD', ARGV[7], member) end
return id
";

/// ARGV: 1 prefix, 2 records hash, 3 plugin, 4 id. Deletes the timer wherever it sleeps;
/// answers 1 when it was pending (a claim by its owner, or a cancel by anyone).
const TAKE: &str = r"
local r = redis.call('HGET', ARGV[2], ARGV[4])
if not r then return 0 end
local t = cjson.decode(r)
local member = ARGV[4] .. ':' .. ARGV[3]
redis.call('HDEL', ARGV[2], ARGV[4])
redis.call('ZREM', ARGV[1] .. 'tmrs:' .. t.i, member)
if type(t.c) == 'string' then redis.call('SREM', ARGV[1] .. 'tmrc:' .. t.c, member) end
return 1
";

/// ARGV: 1 prefix, 2 client. Deletes every timer bound to the client, whatever node set it;
/// answers how many.
const TAKE_CLIENT: &str = r"
local p = ARGV[1]
local idx = p .. 'tmrc:' .. ARGV[2]
local n = 0
for _, member in ipairs(redis.call('SMEMBERS', idx)) do
  local sep = string.find(member, ':', 1, true)
  local id, plugin = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local rk = p .. 'tmr:' .. string.len(plugin) .. ':' .. plugin .. ':rec'
  local r = redis.call('HGET', rk, id)
  if r then
    redis.call('HDEL', rk, id)
    redis.call('ZREM', p .. 'tmrs:' .. cjson.decode(r).i, member)
    n = n + 1
  end
end
redis.call('DEL', idx)
return n
";

/// ARGV: 1 ids key, 2 records hash, 3 instance set, 4 plugin, 5 due (ms), 6 record, 7 the
/// bound client's index or '', 8 id. Writes back a timer of a node after Redis lost its data
/// (a timer still recorded is left as it is) and keeps the id counter past it.
const RESTORE: &str = r"
local id = ARGV[8]
if redis.call('HEXISTS', ARGV[2], id) == 0 then
  local member = id .. ':' .. ARGV[4]
  redis.call('HSET', ARGV[2], id, ARGV[6])
  redis.call('ZADD', ARGV[3], ARGV[5], member)
  if ARGV[7] ~= '' then redis.call('SADD', ARGV[7], member) end
end
if tonumber(redis.call('GET', ARGV[1]) or '0') < tonumber(id) then redis.call('SET', ARGV[1], id) end
return 0
";

/// ARGV: 1 prefix, 2 dead instance, 3 new owner. Moves the dead instance's timers to the new
/// owner; answers {plugin, id, record} for each.
const TAKE_OVER: &str = r"
local p = ARGV[1]
local from, to = p .. 'tmrs:' .. ARGV[2], p .. 'tmrs:' .. ARGV[3]
local all = redis.call('ZRANGE', from, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #all, 2 do
  local member, due = all[i], all[i + 1]
  local sep = string.find(member, ':', 1, true)
  local id, plugin = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local rk = p .. 'tmr:' .. string.len(plugin) .. ':' .. plugin .. ':rec'
  local r = redis.call('HGET', rk, id)
  if r then
    local t = cjson.decode(r)
    t.i = ARGV[3]
    local j = cjson.encode(t)
    redis.call('HSET', rk, id, j)
    redis.call('ZADD', to, due, member)
    table.insert(out, {plugin, id, j})
  end
end
redis.call('DEL', from)
return out
";

/// A timer as Redis keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    /// The system it was set from.
    #[serde(rename = "s")]
    pub system: String,
    /// Its payload.
    #[serde(rename = "p")]
    pub payload: String,
    /// The client it is bound to.
    #[serde(rename = "c")]
    pub client: Option<String>,
    /// When it is due, in ms since the epoch.
    #[serde(rename = "d")]
    pub due_ms: u64,
    /// The instance whose sleep fires it.
    #[serde(rename = "i")]
    pub instance: String,
}

/// A timer taken over from a dead instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The plugin that set it.
    pub plugin: String,
    /// Its id.
    pub id: u64,
    /// Its record.
    pub record: TimerRecord,
}

/// The plugins' timers in Redis, for one node.
pub struct RedisTimers {
    conn: ConnectionManager,
    prefix: String,
    /// Set when Redis failed: it may come back without its data, and a claim would then find
    /// no record and drop a live timer. Claims wait until the node's lease says the data is
    /// whole (or was written back): [`RedisTimers::sure`].
    unsure: std::sync::atomic::AtomicBool,
    create: Script,
    take: Script,
    take_client: Script,
    take_over: Script,
    restore: Script,
}

impl RedisTimers {
    /// The timers of a node, under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            unsure: std::sync::atomic::AtomicBool::new(false),
            create: Script::new(CREATE),
            take: Script::new(TAKE),
            take_client: Script::new(TAKE_CLIENT),
            take_over: Script::new(TAKE_OVER),
            restore: Script::new(RESTORE),
        }
    }

    fn base(&self, plugin: &str) -> String {
        system_base(&format!("{}tmr:", self.prefix), plugin)
    }

    /// Record a new timer of `plugin`; its cluster-wide id.
    pub async fn create(&self, plugin: &str, record: &TimerRecord) -> Result<u64, RegistryError> {
        self.write(&self.create, plugin, record, None).await
    }

    /// Write back timer `id` of `plugin`, pending on this node, after Redis lost its data.
    pub async fn restore(
        &self,
        plugin: &str,
        id: u64,
        record: &TimerRecord,
    ) -> Result<(), RegistryError> {
        self.write(&self.restore, plugin, record, Some(id)).await?;
        Ok(())
    }

    async fn write(
        &self,
        script: &Script,
        plugin: &str,
        record: &TimerRecord,
        id: Option<u64>,
    ) -> Result<u64, RegistryError> {
        let base = self.base(plugin);
        let json = serde_json::to_string(record).map_err(unavailable)?;
        let mut inv = script.prepare_invoke();
        inv.arg(format!("{base}ids"))
            .arg(format!("{base}rec"))
            .arg(format!("{}tmrs:{}", self.prefix, record.instance))
            .arg(plugin)
            .arg(record.due_ms)
            .arg(json)
            .arg(match &record.client {
                Some(c) => format!("{}tmrc:{c}", self.prefix),
                None => String::new(),
            });
        if let Some(id) = id {
            inv.arg(id);
        }
        let mut conn = self.conn.clone();
        within(inv.invoke_async(&mut conn)).await
    }

    /// Redis failed: claims wait (see the field).
    pub fn unsure(&self) {
        self.unsure
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The registry is whole again (the lease was there, or the node wrote its state back).
    pub fn sure(&self) {
        self.unsure
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Claim due timer `id` of `plugin`: whether it was still pending (here, or cancelled
    /// elsewhere). While Redis may have lost its data, not yet: an error, asked again.
    pub async fn claim(&self, plugin: &str, id: u64) -> Result<bool, RegistryError> {
        if self.unsure.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(unavailable("redis is recovering"));
        }
        let claimed = self.take(plugin, id).await;
        if claimed.is_err() {
            self.unsure();
        }
        claimed
    }

    /// Delete timer `id` of `plugin` wherever it sleeps: whether it was pending. Anyone
    /// cancels it this way; its owner claims it this way ([`RedisTimers::claim`]).
    pub async fn take(&self, plugin: &str, id: u64) -> Result<bool, RegistryError> {
        let mut inv = self.take.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(format!("{}rec", self.base(plugin)))
            .arg(plugin)
            .arg(id);
        let mut conn = self.conn.clone();
        Ok(within(inv.invoke_async::<i64>(&mut conn)).await? == 1)
    }

    /// Delete every timer bound to `client` (it left), set through whatever node: how many.
    pub async fn take_client(&self, client: &str) -> Result<u64, RegistryError> {
        let mut inv = self.take_client.prepare_invoke();
        inv.arg(&self.prefix).arg(client);
        let mut conn = self.conn.clone();
        within(inv.invoke_async(&mut conn)).await
    }

    /// Move the timers of dead instance `dead` to instance `me`.
    pub async fn take_over(&self, dead: &str, me: &str) -> Result<Vec<Adopted>, RegistryError> {
        let mut inv = self.take_over.prepare_invoke();
        inv.arg(&self.prefix).arg(dead).arg(me);
        let mut conn = self.conn.clone();
        let rows: Vec<Value> = within(inv.invoke_async(&mut conn)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let (plugin, id, json): (String, String, String) =
                redis::from_redis_value(row).map_err(unavailable)?;
            let (Ok(id), Ok(record)) = (id.parse(), serde_json::from_str(&json)) else {
                tracing::warn!(plugin, id, "a timer record that cannot be read was skipped");
                continue;
            };
            out.push(Adopted { plugin, id, record });
        }
        Ok(out)
    }
}
