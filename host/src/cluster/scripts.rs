//! The Lua scripts of the Redis registry: each multi-key change runs as one script, so it is
//! atomic (a removed client leaves nothing behind, a full system admits no one more) and costs
//! one round trip.
//!
//! Every script gets `ARGV[1]` the systems hash, `ARGV[2]` the system, `ARGV[3]` the key base
//! of the system (`{prefix}{system}:`), and answers [`UNKNOWN_SYSTEM`] when the system does not
//! exist, [`UNKNOWN_CLIENT`] when the client it names does not. Keys are built inside the
//! scripts, which suits one Redis server (not Redis Cluster, whose slots need declared keys).

use redis::Script;

/// Answer of a script for a system that does not exist.
pub const UNKNOWN_SYSTEM: i64 = -100;
/// Answer of a script for a client that does not exist.
pub const UNKNOWN_CLIENT: i64 = -101;

const HEADER: &str = r"
local b = ARGV[3]
if redis.call('HEXISTS', ARGV[1], ARGV[2]) == 0 then return -100 end
";

/// `ARGV[4]` the client: refuse an unknown one.
const CLIENT: &str = r"
local c = ARGV[4]
if redis.call('HEXISTS', b..'clients', c) == 0 then return -101 end
";

/// Registers a system. ARGV: 1 systems hash, 2 system, 3 max or '', 4 '1' to set max on an
/// existing system, 5 max systems. Answers 1 (created), 0 (existed), -1 (too many).
pub(super) const REGISTER_SYSTEM: &str = r"
if redis.call('HEXISTS', ARGV[1], ARGV[2]) == 1 then
  if ARGV[4] == '1' then redis.call('HSET', ARGV[1], ARGV[2], ARGV[3]) end
  return 0
end
if redis.call('HLEN', ARGV[1]) >= tonumber(ARGV[5]) then return -1 end
redis.call('HSET', ARGV[1], ARGV[2], ARGV[3])
return 1
";

/// ARGV: 4 client, 5 its instance ([`crate::ids::instance_of`]), 6 uid or ''. Answers 0, or -1
/// when the system is full.
const ADD_CLIENT: &str = r"
local c = ARGV[4]
local max = redis.call('HGET', ARGV[1], ARGV[2])
if max ~= '' and redis.call('HLEN', b..'clients') >= tonumber(max) then return -1 end
redis.call('HSET', b..'clients', c, ARGV[5])
redis.call('SADD', b..'node:'..ARGV[5], c)
if ARGV[6] ~= '' then
  redis.call('HSET', b..'uids', c, ARGV[6])
  redis.call('SADD', b..'uid:'..ARGV[6], c)
end
return 0
";

/// ARGV: 4 client. Answers, per group the client was in: group, member, remaining members.
const REMOVE_CLIENT: &str = r"
local uid = redis.call('HGET', b..'uids', c)
if uid then
  redis.call('SREM', b..'uid:'..uid, c)
  redis.call('HDEL', b..'uids', c)
end
local out = {}
for _, g in ipairs(redis.call('SMEMBERS', b..'cgroups:'..c)) do
  local gk = b..'groups:'..g
  local m = redis.call('HGET', gk, c) or ''
  redis.call('HDEL', gk, c)
  local others = redis.call('HKEYS', gk)
  if #others == 0 then redis.call('SREM', b..'groups', g) end
  table.insert(out, {g, m, others})
end
redis.call('DEL', b..'cgroups:'..c, b..'info:'..c)
local node = redis.call('HGET', b..'clients', c)
redis.call('SREM', b..'node:'..node, c)
redis.call('HDEL', b..'clients', c)
return out
";

/// ARGV: 4 client, 5 group, 6 member, 7 max groups per client, 8 max groups per system.
/// Answers {new (0/1), members (the client included)}, -1 or -2 at a limit.
const JOIN_GROUP: &str = r"
local g = ARGV[5]
local cg = b..'cgroups:'..c
local new = redis.call('SISMEMBER', cg, g) == 0
if new and redis.call('SCARD', cg) >= tonumber(ARGV[7]) then return -1 end
if redis.call('SISMEMBER', b..'groups', g) == 0 and redis.call('SCARD', b..'groups') >= tonumber(ARGV[8]) then return -2 end
redis.call('SADD', cg, g)
redis.call('SADD', b..'groups', g)
redis.call('HSET', b..'groups:'..g, c, ARGV[6])
local n = 0
if new then n = 1 end
return {n, redis.call('HKEYS', b..'groups:'..g)}
";

/// ARGV: 4 client, 5 group. Answers {member, remaining members}, or -1 when not a member.
const LEAVE_GROUP: &str = r"
local g = ARGV[5]
local gk = b..'groups:'..g
local m = redis.call('HGET', gk, c)
if not m then return -1 end
redis.call('HDEL', gk, c)
redis.call('SREM', b..'cgroups:'..c, g)
local others = redis.call('HKEYS', gk)
if #others == 0 then redis.call('SREM', b..'groups', g) end
return {m, others}
";

/// ARGV: 4 client, 5 uid.
const BIND_UID: &str = r"
local old = redis.call('HGET', b..'uids', c)
if old then redis.call('SREM', b..'uid:'..old, c) end
redis.call('HSET', b..'uids', c, ARGV[5])
redis.call('SADD', b..'uid:'..ARGV[5], c)
return 0
";

/// ARGV: 4 client. Answers {} or {old uid}.
const UNBIND_UID: &str = r"
local old = redis.call('HGET', b..'uids', c)
if not old then return {} end
redis.call('SREM', b..'uid:'..old, c)
redis.call('HDEL', b..'uids', c)
return {old}
";

/// ARGV: 4 client. Answers {} or {uid}.
const UID_OF: &str = r"
local u = redis.call('HGET', b..'uids', c)
if not u then return {} end
return {u}
";

/// ARGV: 4 group. Answers the uids of its members (repeats possible).
const GROUP_UIDS: &str = r"
local out = {}
for _, c in ipairs(redis.call('HKEYS', b..'groups:'..ARGV[4])) do
  local u = redis.call('HGET', b..'uids', c)
  if u then table.insert(out, u) end
end
return out
";

/// ARGV: 4 client. Answers the info map as a flat list.
const INFO: &str = r"
return redis.call('HGETALL', b..'info:'..c)
";

/// ARGV: 4 client, 5 '1' to replace (set) or '0' to merge (update), 6 max entries, 7 max
/// bytes, then key, value pairs. Answers 0, or {-1, entries} / {-2, bytes} over a limit.
const WRITE_INFO: &str = r"
local key = b..'info:'..c
local m = {}
if ARGV[5] == '0' then
  local cur = redis.call('HGETALL', key)
  for i = 1, #cur, 2 do m[cur[i]] = cur[i + 1] end
end
for i = 8, #ARGV, 2 do m[ARGV[i]] = ARGV[i + 1] end
local n, bytes, flat = 0, 0, {}
for k, v in pairs(m) do
  n = n + 1
  bytes = bytes + #k + #v
  table.insert(flat, k)
  table.insert(flat, v)
end
if n > tonumber(ARGV[6]) then return {-1, n} end
if bytes > tonumber(ARGV[7]) then return {-2, bytes} end
redis.call('DEL', key)
if n > 0 then redis.call('HSET', key, unpack(flat)) end
return 0
";

/// ARGV: 4 client. Answers what a node needs to register the client again after Redis lost
/// its data: {uid or '', {group, member, ...}, {info key, value, ...}}.
const SNAPSHOT: &str = r"
local uid = redis.call('HGET', b..'uids', c) or ''
local groups = {}
for _, g in ipairs(redis.call('SMEMBERS', b..'cgroups:'..c)) do
  table.insert(groups, g)
  table.insert(groups, redis.call('HGET', b..'groups:'..g, c) or '')
end
return {uid, groups, redis.call('HGETALL', b..'info:'..c)}
";

/// Registers a live client again from its node's snapshot (Redis lost its data). ARGV: 4
/// client, 5 instance, 6 uid or '', 7 number of groups, then group, member pairs, then info
/// key, value pairs. Limits are not checked again: they were when the state was written.
/// A client still registered is left as it is (the lease only expired during an outage, the
/// data is there and may be newer than the node's copy). Answers 0, or 1 when it was there.
const RESTORE: &str = r"
local c = ARGV[4]
if redis.call('HEXISTS', b..'clients', c) == 1 then return 1 end
redis.call('HSET', b..'clients', c, ARGV[5])
redis.call('SADD', b..'node:'..ARGV[5], c)
if ARGV[6] ~= '' then
  redis.call('HSET', b..'uids', c, ARGV[6])
  redis.call('SADD', b..'uid:'..ARGV[6], c)
end
local ng = tonumber(ARGV[7])
local i = 8
for _ = 1, ng do
  local g = ARGV[i]
  redis.call('SADD', b..'cgroups:'..c, g)
  redis.call('SADD', b..'groups', g)
  redis.call('HSET', b..'groups:'..g, c, ARGV[i + 1])
  i = i + 2
end
local info = b..'info:'..c
redis.call('DEL', info)
while i < #ARGV do
  redis.call('HSET', info, ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 0
";

/// The registry's scripts, loaded once (their SHA is cached by Redis; `invoke_async` falls
/// back to sending the source after a Redis restart).
pub(super) struct Scripts {
    pub(super) add_client: Script,
    pub(super) remove_client: Script,
    pub(super) join_group: Script,
    pub(super) leave_group: Script,
    pub(super) bind_uid: Script,
    pub(super) unbind_uid: Script,
    pub(super) uid_of: Script,
    pub(super) group_uids: Script,
    pub(super) info: Script,
    pub(super) write_info: Script,
    pub(super) snapshot: Script,
    pub(super) restore: Script,
}

fn script(parts: &[&str]) -> Script {
    Script::new(&parts.concat())
}

impl Scripts {
    /// Every script, with its checks in front.
    pub fn new() -> Self {
        Self {
            add_client: script(&[HEADER, ADD_CLIENT]),
            remove_client: script(&[HEADER, CLIENT, REMOVE_CLIENT]),
            join_group: script(&[HEADER, CLIENT, JOIN_GROUP]),
            leave_group: script(&[HEADER, CLIENT, LEAVE_GROUP]),
            bind_uid: script(&[HEADER, CLIENT, BIND_UID]),
            unbind_uid: script(&[HEADER, CLIENT, UNBIND_UID]),
            uid_of: script(&[HEADER, CLIENT, UID_OF]),
            group_uids: script(&[HEADER, GROUP_UIDS]),
            info: script(&[HEADER, CLIENT, INFO]),
            write_info: script(&[HEADER, CLIENT, WRITE_INFO]),
            snapshot: script(&[HEADER, CLIENT, SNAPSHOT]),
            restore: script(&[HEADER, RESTORE]),
        }
    }
}
